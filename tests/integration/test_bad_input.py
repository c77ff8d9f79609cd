"""What a user sees when the SQL, the files, the database or the lock are not as they should be.

Each case runs the real CLI against a real PostgreSQL and checks the exit code, the message a
user acts on (file:line:column, SQLSTATE, the holder of the lock) and that nothing half-done
remains in the database.
"""

from __future__ import annotations

import subprocess
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.locking.session import lock_key
from tests.conftest import Project, query, table_exists

UNREACHABLE = "postgresql://u:s3cret@127.0.0.1:1/db"


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def versions(url: str) -> list[str]:
    if not table_exists(url, "public.schema_version"):
        return []
    return [v for (v,) in query(url, "SELECT version FROM schema_version ORDER BY number")]


def first(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")


# -- SQL errors ----------------------------------------------------------------------------------


def test_a_syntax_error_names_file_line_and_column_and_leaves_nothing_of_that_migration(
    project: Project, database_url: str
) -> None:
    first(project)
    project.add(
        2,
        "x",
        """
        -- Description: two tables, the second one broken

        CREATE TABLE x_first (id int);

        CREATE TABLE x_second (
            id int,
            name text NOT NULL DEFALT 'n'
        );

        CREATE TABLE x_third (id int);
        """,
        "DROP TABLE x_third;\nDROP TABLE x_second;\nDROP TABLE x_first;\n",
        version="1.1.0",
    )
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")

    result = project.run("up", url=database_url)

    # Line 8 of the file, column 24: where `DEFALT` starts.
    assert result.returncode == 3, result.stderr
    assert (
        'sqlmig: migrations/002_x.sql:8:24: ERROR [42601]: syntax error at or near "DEFALT"'
        in result.stderr.splitlines()
    )
    assert "applied before the failure: 001_create_a" in result.stderr
    assert "Traceback" not in result.stderr
    # Only sqlmig's own lines: no driver noise around the error a user has to read.
    assert all(line.startswith("sqlmig: ") for line in result.stderr.splitlines()), result.stderr
    assert "applied 001_create_a (1.0.0)" in result.stdout
    assert versions(database_url) == ["1.0.0"]
    assert table_exists(database_url, "a")
    assert not table_exists(database_url, "x_first")
    assert not table_exists(database_url, "c")
    events = query(database_url, "SELECT action, version, outcome FROM schema_version_events ORDER BY id")
    assert events == [("up", "1.0.0", "applied"), ("up", "1.1.0", "failed")]


@pytest.mark.parametrize(
    ("failing", "location", "sqlstate", "extra"),
    [
        pytest.param(
            "-- the bad one:\n  SELECT 1 / (SELECT count(*) FROM r WHERE id > 5);\n",
            "5:3",
            "22012",
            "division by zero",
            id="division-by-zero",
        ),
        pytest.param(
            "-- a duplicate key:\n  INSERT INTO r\n  VALUES (1);\n",
            "5:3",
            "23505",
            "DETAIL: Key (id)=(1) already exists.",
            id="unique-violation",
        ),
        pytest.param(
            "-- a typo:\n  SELECT no_such_fn(1);\n",
            "5:10",
            "42883",
            "HINT: No function matches the given name and argument types.",
            id="undefined-function-with-hint",
        ),
    ],
)
def test_a_runtime_error_in_a_middle_statement_names_its_line(
    project: Project, database_url: str, failing: str, location: str, sqlstate: str, extra: str
) -> None:
    first(project)
    body = (
        "CREATE TABLE r (id int PRIMARY KEY);\n"
        "INSERT INTO r VALUES (1);\n"
        f"{failing}"
        "CREATE TABLE r_after (id int);\n"
    )
    project.add(2, "runtime", body, "DROP TABLE r_after;\nDROP TABLE r;\n", version="1.1.0")

    result = project.run("up", url=database_url)

    assert result.returncode == 3, result.stderr
    assert f"sqlmig: migrations/002_runtime.sql:{location}: ERROR [{sqlstate}]: " in result.stderr
    assert extra in result.stderr
    assert versions(database_url) == ["1.0.0"]
    assert not table_exists(database_url, "r")
    assert not table_exists(database_url, "r_after")


def test_an_error_raised_at_commit_fails_the_migration_and_leaves_nothing(
    project: Project, database_url: str
) -> None:
    first(project)
    project.add(
        2,
        "deferred",
        """
        CREATE TABLE parent (id int PRIMARY KEY);
        CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
        INSERT INTO child VALUES (42);
        """,
        "DROP TABLE child;\nDROP TABLE parent;\n",
        version="1.1.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 3, result.stderr
    assert "sqlmig: migrations/002_deferred.sql: ERROR [23503]: " in result.stderr
    assert versions(database_url) == ["1.0.0"]
    assert not table_exists(database_url, "parent")


def test_a_failed_migration_can_be_fixed_and_applied_on_the_next_run(
    project: Project, database_url: str
) -> None:
    first(project)
    path = project.add(
        2, "x", "CREATE TABLE x1 (id int);\nSELECT 1/0;\n", "DROP TABLE x1;\n", version="1.1.0"
    )
    assert project.run("up", url=database_url).returncode == 3

    path.write_text(path.read_text().replace("SELECT 1/0;\n", "SELECT 1;\n"))
    result = ok(project.run("up", url=database_url))

    assert "applied 002_x (1.1.0)" in result.stdout
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert table_exists(database_url, "x1")


# -- file problems -------------------------------------------------------------------------------


def test_every_file_problem_is_reported_together_before_any_connection(project: Project) -> None:
    first(project)
    (project.migrations / "3_BadName.sql").write_text("-- Version: 1.3.0\nSELECT 1;\n")
    project.add(2, "dup_a", "SELECT 1;\n", "SELECT 1;\n", version="1.2.0")
    project.add(2, "dup_b", "SELECT 1;\n", "SELECT 1;\n", version="1.2.1")
    project.add(4, "no_undo", "SELECT 1;\n", None, version="1.4.0")
    project.add(5, "bad_version", "SELECT 1;\n", "SELECT 1;\n", version="1.5")
    (project.rollbacks / "009_ghost_rollback.sql").write_text("SELECT 1;\n")
    project.add(6, "no_version", "SELECT 1;\n", "SELECT 1;\n", version="")

    # The URL points nowhere: reaching it would be exit 5, so exit 2 proves no connection.
    result = project.run("up", url=UNREACHABLE)

    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "sqlmig: migrations/3_BadName.sql: error: file name does not match NNN_slug.sql" in err
    assert (
        "sqlmig: migrations/002_dup_b.sql: error: number 2 is also used by migrations/002_dup_a.sql"
    ) in err
    assert (
        "sqlmig: migrations/004_no_undo.sql: error: no rollback: create "
        "rollbacks/004_no_undo_rollback.sql" in err
    )
    assert "sqlmig: rollbacks/009_ghost_rollback.sql: error: rollback without a migration" in err
    assert "sqlmig: migrations/005_bad_version.sql:1: error: '1.5' is not a semantic version" in err
    assert "sqlmig: migrations/006_no_version.sql:1: error: no `-- Version: MAJOR.MINOR.PATCH` header" in err
    assert "problems in the migration files; nothing was run" in err
    assert "connect" not in err
    assert "s3cret" not in err + result.stdout
    # The same for every command that reads the files.
    for command in (("status",), ("validate",), ("down",)):
        assert project.run(*command, url=UNREACHABLE).returncode == 2


def test_a_version_that_does_not_increase_with_the_number_is_a_file_problem(project: Project) -> None:
    first(project)
    project.add(2, "create_b", "SELECT 1;\n", "SELECT 1;\n", version="1.2.0")
    project.add(3, "create_c", "SELECT 1;\n", "SELECT 1;\n", version="1.1.0")

    result = project.run("up", url=UNREACHABLE)

    assert result.returncode == 2
    assert (
        "sqlmig: migrations/003_create_c.sql: error: version 1.1.0 must be greater than "
        "1.2.0 of migrations/002_create_b.sql"
    ) in result.stderr


# -- connecting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["env", "option", "keyword-dsn", "password-file"])
def test_an_unreachable_database_exits_5_without_traceback_or_password(project: Project, how: str) -> None:
    first(project)
    if how == "env":
        result = project.run("up", url=UNREACHABLE)
    elif how == "option":
        result = project.run("--database-url", UNREACHABLE, "status")
    elif how == "password-file":
        secret = project.root / "db_password"
        secret.write_text("s3cret\n")
        result = project.run("--password-file", str(secret), "up", url="postgresql://u@127.0.0.1:1/db")
    else:
        result = project.run("--database-url", "host=127.0.0.1 port=1 user=u password=s3cret dbname=db", "up")

    assert result.returncode == 5, result.stderr
    assert "cannot connect to " in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stdout
    assert "s3cret" not in result.stderr


def test_a_wrong_password_exits_5_and_is_not_echoed(project: Project, database_url: str) -> None:
    first(project)
    params = conninfo_to_dict(database_url)
    if not params.get("host") or str(params["host"]).startswith("/"):
        pytest.skip("server reached over a Unix socket, where authentication is trust")
    params["password"] = "Wr0ngPassw0rd"

    result = project.run("up", url=make_conninfo("", **params))

    if result.returncode == 0:
        pytest.skip("the server trusts this connection: no password is checked")
    assert result.returncode == 5, result.stderr
    assert "Wr0ngPassw0rd" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# -- the lock ------------------------------------------------------------------------------------


def test_a_held_lock_times_out_with_4_naming_the_holder(project: Project, database_url: str) -> None:
    first(project)
    key = lock_key("public.schema_version")
    with psycopg.connect(database_url, autocommit=True, application_name="other-deploy") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        pid = holder.info.backend_pid

        started = time.monotonic()
        result = project.run("--lock-timeout", "1", "up", url=database_url, timeout=30)
        elapsed = time.monotonic() - started

    assert result.returncode == 4, result.stderr
    assert elapsed < 10
    assert "could not take the migration lock on public.schema_version within 1 s" in result.stderr
    assert f"held by pid {pid} (application_name 'other-deploy'" in result.stderr
    assert not table_exists(database_url, "a")
    # Once released, the same command runs.
    ok(project.run("--lock-timeout", "1", "up", url=database_url))
    assert table_exists(database_url, "a")


# -- unusual but valid files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty"),
        pytest.param("-- nothing to do yet\n/* a block\n   comment */\n\n", id="comment-only"),
    ],
)
def test_a_migration_without_statements_is_a_recorded_no_op_with_a_warning(
    project: Project, database_url: str, body: str
) -> None:
    project.add(1, "placeholder", body, "", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = ok(project.run("up", url=database_url))

    assert "migrations/001_placeholder.sql: warning: has no SQL statements" in result.stderr
    assert "applied 001_placeholder (1.0.0)" in result.stdout
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert table_exists(database_url, "b")
    ok(project.run("down", "--to", "0", url=database_url))
    assert versions(database_url) == []


@pytest.mark.parametrize(
    ("begin", "commit"),
    [
        ("BEGIN;", "COMMIT;"),
        ("begin transaction;", "end;"),
        ("START TRANSACTION;", "COMMIT WORK;"),
    ],
)
def test_a_whole_file_begin_commit_wrapper_is_accepted(
    project: Project, database_url: str, begin: str, commit: str
) -> None:
    project.add(
        1,
        "wrapped",
        f"""
        {begin}
        CREATE TABLE w1 (id int);
        CREATE TABLE w2 (id int);
        {commit}
        """,
        f"{begin}\nDROP TABLE w2;\nDROP TABLE w1;\n{commit}\n",
        version="1.0.0",
    )

    ok(project.run("up", url=database_url))

    assert versions(database_url) == ["1.0.0"]
    assert table_exists(database_url, "w1") and table_exists(database_url, "w2")
    ok(project.run("down", url=database_url))
    assert not table_exists(database_url, "w1")


def test_savepoints_inside_a_migration_are_allowed(project: Project, database_url: str) -> None:
    project.add(
        1,
        "savepoints",
        """
        CREATE TABLE kept (id int);
        SAVEPOINT before_experiment;
        CREATE TABLE discarded (id int);
        ROLLBACK TO SAVEPOINT before_experiment;
        RELEASE SAVEPOINT before_experiment;
        """,
        "DROP TABLE kept;\n",
        version="1.0.0",
    )

    ok(project.run("up", url=database_url))

    assert table_exists(database_url, "kept")
    assert not table_exists(database_url, "discarded")
    assert versions(database_url) == ["1.0.0"]


def test_a_wrapped_file_that_fails_leaves_nothing_behind(project: Project, database_url: str) -> None:
    # The wrapper is replaced by the engine's transaction, so the history row goes with it.
    project.add(
        1,
        "wrapped",
        """
        BEGIN;
        CREATE TABLE w1 (id int);
        SELECT 1/0;
        COMMIT;
        """,
        "DROP TABLE w1;\n",
        version="1.0.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 3
    assert "migrations/001_wrapped.sql:4:1: ERROR [22012]" in result.stderr
    assert not table_exists(database_url, "w1")
    assert versions(database_url) == []


def test_a_commit_in_the_middle_of_a_file_is_refused_before_anything_runs(
    project: Project, database_url: str
) -> None:
    first(project)
    project.add(
        2,
        "mid_commit",
        """
        CREATE TABLE m1 (id int);
        COMMIT;
        CREATE TABLE m2 (id int);
        """,
        "DROP TABLE m2;\nDROP TABLE m1;\n",
        version="1.1.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 2, result.stderr
    assert "sqlmig: migrations/002_mid_commit.sql:3: error: COMMIT inside a migration" in result.stderr
    # Checked before the run starts: not even the good migration 001 was applied.
    assert not table_exists(database_url, "a")
    assert not table_exists(database_url, "m1")
    assert versions(database_url) == []


def test_create_index_concurrently_in_a_transactional_file_is_refused_with_advice(
    project: Project, database_url: str
) -> None:
    first(project)
    project.add(
        2,
        "index_a",
        "CREATE INDEX CONCURRENTLY a_id_idx ON a (id);\n",
        "DROP INDEX a_id_idx;\n",
        version="1.1.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 2, result.stderr
    assert (
        "sqlmig: migrations/002_index_a.sql:2: error: CREATE INDEX CONCURRENTLY cannot run "
        "inside a transaction" in result.stderr
    )
    assert "-- sqlmig: no-transaction" in result.stderr
    assert not table_exists(database_url, "a")
    assert versions(database_url) == []


def test_create_index_concurrently_in_a_no_transaction_file_works(
    project: Project, database_url: str
) -> None:
    first(project)
    project.add(
        2,
        "index_a",
        "CREATE INDEX CONCURRENTLY a_id_idx ON a (id);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_id_idx;\n",
        version="1.1.0",
        header="-- sqlmig: no-transaction\n",
    )

    ok(project.run("up", url=database_url))

    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'a_id_idx'::regclass") == [
        (True,)
    ]
    assert query(
        database_url, "SELECT status, transactional FROM schema_version WHERE version = '1.1.0'"
    ) == [("applied", False)]
    ok(project.run("down", url=database_url))
    assert not table_exists(database_url, "a_id_idx")
    assert versions(database_url) == ["1.0.0"]


# -- a no-transaction migration that fails part-way ------------------------------------------------


def failing_no_transaction(project: Project) -> None:
    first(project)
    project.add(
        2,
        "index_needed",
        """
        CREATE TABLE IF NOT EXISTS nt (id int);
        CREATE INDEX CONCURRENTLY IF NOT EXISTS needed_id_idx ON needed (id);
        """,
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS needed_id_idx;\n"
        "DROP TABLE IF EXISTS nt;\n",
        version="1.1.0",
        header="-- sqlmig: no-transaction\n",
    )
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")


def test_a_failed_no_transaction_migration_is_recorded_failed_and_blocks_up(
    project: Project, database_url: str
) -> None:
    failing_no_transaction(project)

    result = project.run("up", url=database_url)

    assert result.returncode == 3, result.stderr
    # CREATE INDEX gives no error position: the statement's start is the best location.
    assert (
        'sqlmig: migrations/002_index_needed.sql:4:1: ERROR [42P01]: relation "needed" '
        "does not exist" in result.stderr
    )
    assert "recorded as `failed`" in result.stderr
    # The first statement ran in autocommit and stays: that is what `failed` warns about.
    assert table_exists(database_url, "nt")
    assert query(
        database_url, "SELECT version, status, error IS NOT NULL FROM schema_version ORDER BY number"
    ) == [("1.0.0", "applied", False), ("1.1.0", "failed", True)]
    assert not table_exists(database_url, "c")

    status = project.run("status", url=database_url)
    assert "failed:          1" in status.stdout.splitlines()  # counted apart from applied
    assert (
        "  002_index_needed (1.1.0): migrations/002_index_needed.sql:4:1: ERROR [42P01]: "
        'relation "needed" does not exist' in status.stdout.splitlines()
    )
    assert "current version: 1.0.0" in status.stdout
    assert project.run("status", "--exit-code", url=database_url).returncode == 6

    again = project.run("up", url=database_url)
    assert again.returncode == 6
    assert "002_index_needed (1.1.0) is in state `failed`" in again.stderr
    assert "sqlmig repair --remove 1.1.0" in again.stderr
    assert not table_exists(database_url, "c")
    # `down` is blocked the same way: the database is in a state no rollback file describes.
    assert project.run("down", url=database_url).returncode == 6


def test_repair_remove_after_fixing_the_database_lets_up_run_it_again(
    project: Project, database_url: str
) -> None:
    failing_no_transaction(project)
    assert project.run("up", url=database_url).returncode == 3
    query(database_url, "CREATE TABLE needed (id int)")  # the operator fixes the cause

    result = ok(project.run("repair", "--remove", "1.1.0", url=database_url))

    assert result.stdout.strip() == "removed 002_index_needed (1.1.0) from the history"
    assert versions(database_url) == ["1.0.0"]
    events = ok(project.run("history", "--events", url=database_url)).stdout.splitlines()
    assert " repair 002_index_needed (1.1.0) ok " in events[0]
    assert "was `failed`" in events[0]

    result = ok(project.run("up", url=database_url))
    assert "applied 002_index_needed (1.1.0)" in result.stdout
    assert "applied 003_create_c (1.2.0)" in result.stdout
    assert query(database_url, "SELECT version, status FROM schema_version ORDER BY number") == [
        ("1.0.0", "applied"),
        ("1.1.0", "applied"),
        ("1.2.0", "applied"),
    ]
    assert table_exists(database_url, "needed_id_idx")


def test_repair_mark_applied_after_finishing_by_hand_lets_up_continue(
    project: Project, database_url: str
) -> None:
    failing_no_transaction(project)
    assert project.run("up", url=database_url).returncode == 3
    # The operator finishes the step by hand.
    query(database_url, "CREATE TABLE needed (id int)")
    query(database_url, "CREATE INDEX CONCURRENTLY needed_id_idx ON needed (id)")

    result = ok(project.run("repair", "--mark-applied", "1.1.0", url=database_url))

    assert result.stdout.strip() == "marked 002_index_needed (1.1.0) applied"
    result = ok(project.run("up", url=database_url))
    assert [line.split(" in ")[0] for line in result.stdout.splitlines()[:-1]] == [
        "applied 003_create_c (1.2.0)"
    ]
    assert query(database_url, "SELECT version, status FROM schema_version ORDER BY number") == [
        ("1.0.0", "applied"),
        ("1.1.0", "applied"),
        ("1.2.0", "applied"),
    ]
    events = ok(project.run("history", "--events", url=database_url)).stdout
    assert " repair 002_index_needed (1.1.0) ok " in events


def test_repair_of_an_applied_or_unknown_version_is_invalid_input(
    project: Project, database_url: str
) -> None:
    first(project)
    ok(project.run("up", url=database_url))

    applied = project.run("repair", "--remove", "1.0.0", url=database_url)
    unknown = project.run("repair", "--mark-applied", "9.9.9", url=database_url)
    neither = project.run("repair", url=database_url)  # no action: lists, and finds nothing

    assert applied.returncode == 2 and "already applied; nothing to repair" in applied.stderr
    assert unknown.returncode == 2 and "no history row with version 9.9.9" in unknown.stderr
    assert neither.returncode == 0 and neither.stdout.strip() == "nothing to repair"
    assert versions(database_url) == ["1.0.0"]


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("up", "--to", "banana"),
        ("down", "--steps", "1", "--to", "1.0.0"),
        ("down", "--steps", "-1"),
        ("up", "--allow", "everything"),
        ("no-such-command",),
    ],
)
def test_bad_arguments_exit_2_without_traceback(
    project: Project, database_url: str, args: tuple[str, ...]
) -> None:
    first(project)
    result = project.run(*args, url=database_url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not table_exists(database_url, "a")


# -- text that is not plain ASCII ------------------------------------------------------------------


def test_non_ascii_text_is_split_into_the_right_statements(project: Project, database_url: str) -> None:
    project.add(
        1,
        "names",
        """
        -- Prénoms accentués, € and 😀: several bytes per character in UTF-8.
        CREATE TABLE names (v text);  INSERT INTO names VALUES ('José'), ('Zoë 😀');
        COMMENT ON TABLE names IS 'naïve café';
        INSERT INTO names VALUES ('€');
        """,
        "DROP TABLE names;\n",
        version="1.0.0",
    )

    ok(project.run("up", url=database_url))

    assert query(database_url, "SELECT v FROM names ORDER BY v") == [("José",), ("Zoë 😀",), ("€",)]
    assert query(database_url, "SELECT obj_description('names'::regclass)") == [("naïve café",)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_an_error_after_non_ascii_text_names_the_right_line_and_column(
    project: Project, database_url: str, newline: str
) -> None:
    body = (
        "-- Version: 1.0.0",
        "CREATE TABLE t (v text);",
        "INSERT INTO t VALUES ('über €');  INSERT INTO t VALUES ('😀');",
        "  SELECT nope FROM t;",
        "",
    )
    (project.migrations / "001_t.sql").write_bytes(newline.join(body).encode())
    (project.rollbacks / "001_t_rollback.sql").write_text("DROP TABLE t;\n")

    result = project.run("up", url=database_url)

    assert result.returncode == 3, result.stderr
    assert (
        'sqlmig: migrations/001_t.sql:4:10: ERROR [42703]: column "nope" does not exist'
        in result.stderr.splitlines()
    )
    assert not table_exists(database_url, "t")
