"""`sqlmig render`: the psql script, run by the real psql, does what the engine does.

Each test renders a script with the CLI, feeds it to /usr/bin/psql on stdin exactly as
`sqlmig render up | docker exec -i db psql -X -v ON_ERROR_STOP=1 …` would, and compares the
database with one that `sqlmig up`/`down` migrated, or checks that a guard stopped it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from sqlmig.locking.session import lock_key
from tests.conftest import SQLMIG, Project, query, table_exists
from tests.integration.test_concurrency import start
from tests.integration.test_psql_parity import CORPUS
from tests.integration.test_psql_parity import state as corpus_state

PSQL = "/usr/bin/psql" if Path("/usr/bin/psql").exists() else (shutil.which("psql") or "psql")
LOCK_KEY = lock_key("public.schema_version")

# The engine also records a schema snapshot after each run, for drift checks (drift.py); psql
# cannot take one, and a state without a snapshot is never compared, so that table is left out.
COLUMNS = """SELECT table_name, column_name, ordinal_position, data_type, column_default, is_nullable
               FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name <> 'schema_version_snapshots'
              ORDER BY 1, 3"""
INDEXES = """SELECT x.tablename, x.indexname, x.indexdef, i.indisvalid
               FROM pg_indexes x
               JOIN pg_class c ON c.relname = x.indexname AND c.relnamespace = 'public'::regnamespace
               JOIN pg_index i ON i.indexrelid = c.oid
              WHERE x.schemaname = 'public' AND x.tablename <> 'schema_version_snapshots'
              ORDER BY 1, 2"""
# Everything the engine writes, except what depends on when and how fast it ran.
ROWS = """SELECT to_jsonb(t) - 'applied_at' - 'execution_ms' FROM schema_version t
           ORDER BY number NULLS FIRST, version"""
EVENTS = """SELECT action, version, name, outcome, actor, sqlmig_version
              FROM schema_version_events ORDER BY id"""


def psql(
    url: str, script: str, *options: str, stop: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The documented way to run a rendered script: psql in autocommit mode, script on stdin."""
    args = [PSQL, "-X", *options, *(["-v", "ON_ERROR_STOP=1"] if stop else []), "-d", url, "-f", "-"]
    # Bytes in and out: a CR inside a string literal (a CRLF file) must reach psql as it is.
    done = subprocess.run(args, input=script.encode(), capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(args, done.returncode, done.stdout.decode(), done.stderr.decode())


def render(project: Project, *args: str, url: str | None = None, options: tuple[str, ...] = ()) -> str:
    """The script exactly as `sqlmig [options] render args` prints it (no newline translation)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    if url is not None:
        env["SQLMIG_DATABASE_URL"] = url
    result = subprocess.run(
        [*SQLMIG, *options, "render", *args], cwd=project.root, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, f"render {args}: exit {result.returncode}\n{result.stderr!r}"
    return result.stdout.decode()


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def stopped(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 3, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def snapshot(url: str) -> dict[str, list]:
    out: dict[str, list] = {"columns": query(url, COLUMNS), "indexes": query(url, INDEXES)}
    if table_exists(url, "public.schema_version"):
        out["rows"] = [r[0] for r in query(url, ROWS)]
    if table_exists(url, "public.schema_version_events"):
        out["events"] = query(url, EVENTS)
    return out


def versions(url: str) -> list[tuple[str, str]]:
    return query(url, "SELECT version, status FROM schema_version ORDER BY number NULLS FIRST")


def four_tables(project: Project, third: str = "CREATE TABLE c (id int PRIMARY KEY);\n") -> None:
    for number, name in ((1, "a"), (2, "b"), (4, "d")):
        project.add(
            number, f"create_{name}", f"CREATE TABLE {name} (id int PRIMARY KEY);\n", f"DROP TABLE {name};\n"
        )
    project.add(3, "create_c", third, "DROP TABLE c;\n")


# -- (1) the same end state as `sqlmig up` ----------------------------------------------------


def test_rendered_example_project_leaves_the_same_database_as_up(
    example_project: Project, database_url: str, second_database_url: str
) -> None:
    script = render(example_project, "up")

    result = ok(psql(database_url, script))
    ok(example_project.run("up", url=second_database_url))

    assert result.stdout.splitlines() == [
        "applying 001_initial_schema (1.0.0)",
        "applying 002_add_user_last_login (1.1.0)",
        "applying 003_create_audit_events (1.2.0)",
        "applying 004_index_audit_events_created_at (1.2.1) [no-transaction]",
        "applying 005_rename_display_name (2.0.0)",
        "at version 2.0.0: 5 applied",
    ]
    mine, engine = snapshot(database_url), snapshot(second_database_url)
    assert mine["columns"] == engine["columns"]
    assert mine["indexes"] == engine["indexes"]
    assert mine["rows"] == engine["rows"]  # checksums, rollback text, status, sqlmig_version…
    assert mine["events"] == engine["events"]
    assert len(mine["rows"]) == 5 and ("users", "full_name") in {c[:2] for c in mine["columns"]}
    assert all(valid for *_, valid in mine["indexes"])  # the CONCURRENTLY index is valid
    assert query(database_url, "SELECT DISTINCT detail FROM schema_version_events") == [
        ("psql script from `sqlmig render`",)
    ]

    status = example_project.run("status", "--exit-code", url=database_url)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "current version: 2.0.0" in status.stdout and "pending:         0" in status.stdout
    assert "error" not in status.stdout + status.stderr


def test_render_is_offline_and_prints_only_the_script(example_project: Project) -> None:
    # No database anywhere: rendering reads only the files, and says nothing on stderr.
    result = example_project.run("render", "up", env={"SQLMIG_DATABASE_URL": ""})

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("-- sqlmig render up: for the history table public.schema_version")
    assert "\\set ON_ERROR_STOP on" in result.stdout
    assert f"pg_try_advisory_lock({LOCK_KEY})" in result.stdout
    assert "pg_advisory_lock(" not in result.stdout, "waiting never blocks inside a statement"
    assert result.stdout.rstrip().endswith("\\echo 'at version 2.0.0:' :sqlmig_ran 'applied'")


# -- (2) and (3) the guards ---------------------------------------------------------------------


def test_running_the_script_twice_skips_what_is_applied_and_changes_nothing(
    example_project: Project, database_url: str
) -> None:
    script = render(example_project, "up")
    ok(psql(database_url, script))
    before = snapshot(database_url)

    again = ok(psql(database_url, script))

    assert again.stdout.splitlines() == [
        "skipping 001_initial_schema (1.0.0): applied already",
        "skipping 002_add_user_last_login (1.1.0): applied already",
        "skipping 003_create_audit_events (1.2.0): applied already",
        "skipping 004_index_audit_events_created_at (1.2.1): applied already",
        "skipping 005_rename_display_name (2.0.0): applied already",
        "at version 2.0.0: 0 applied",
    ]
    assert snapshot(database_url) == before
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(5,)]


def test_a_script_stopped_part_way_runs_again_from_where_it_stopped(
    project: Project, database_url: str, second_database_url: str
) -> None:
    # Step 2 of 4 hits a lock timeout; the same reviewed file, run again, skips step 1 (its
    # exact row is applied) and goes on: the result is what the engine leaves.
    four_tables(project)
    script = render(project, "up")
    query(database_url, "CREATE TABLE b (id int)")  # step 2 fails: b exists
    first = stopped(psql(database_url, script))
    assert 'relation "b" already exists' in first.stderr
    assert [v for v, _ in versions(database_url)] == ["1.1.0"]
    query(database_url, "DROP TABLE b")

    again = ok(psql(database_url, script))

    assert again.stdout.splitlines() == [
        "skipping 001_create_a (1.1.0): applied already",
        "applying 002_create_b (1.2.0)",
        "applying 003_create_c (1.3.0)",
        "applying 004_create_d (1.4.0)",
        "at version 1.4.0: 3 applied",
    ]
    ok(project.run("up", url=second_database_url))
    assert snapshot(database_url) == snapshot(second_database_url)
    # A real mismatch still stops it: the row of step 1 with another checksum.
    query(database_url, "UPDATE schema_version SET checksum = 'edited' WHERE version = '1.1.0'")
    stop = stopped(psql(database_url, script))
    assert (
        "sqlmig: stopped before applying 001_create_a (1.1.0): expected no applied migration, "
        "found version 1.4.0"
    ) in stop.stderr


def test_a_database_at_another_version_is_left_untouched(example_project: Project, database_url: str) -> None:
    ok(example_project.run("up", "--to", "1", url=database_url))
    before = snapshot(database_url)
    script = render(example_project, "up", "--from", "1.1.0")

    result = stopped(psql(database_url, script))

    assert (
        "sqlmig: stopped before applying 003_create_audit_events (1.2.0): expected version "
        "1.1.0, found version 1.0.0"
    ) in result.stderr
    assert result.stdout == ""
    assert snapshot(database_url) == before


def test_a_fresh_database_gets_not_even_the_history_table_when_the_version_is_wrong(
    example_project: Project, database_url: str
) -> None:
    script = render(example_project, "up", "--from", "2")

    result = stopped(psql(database_url, script))

    assert "expected version 1.1.0, found no applied migration" in result.stderr
    assert not table_exists(database_url, "public.schema_version")
    assert snapshot(database_url) == {"columns": [], "indexes": []}


def test_a_script_with_nothing_to_do_only_checks_the_version(
    example_project: Project, database_url: str
) -> None:
    script = render(example_project, "up", "--from", "2.0.0")
    ok(example_project.run("up", "--to", "1.0.0", url=database_url))

    assert (
        "sqlmig: stopped before doing anything: expected version 2.0.0, found version "
        "1.0.0" in stopped(psql(database_url, script)).stderr
    )
    ok(example_project.run("up", url=database_url))
    assert ok(psql(database_url, script)).stdout == "nothing to do; at version 2.0.0\n"


def test_psql_single_transaction_is_refused_before_anything_runs(
    example_project: Project, database_url: str
) -> None:
    result = stopped(psql(database_url, render(example_project, "up"), "-1"))

    assert "must not run inside one transaction" in result.stderr
    assert snapshot(database_url) == {"columns": [], "indexes": []}


# -- (4) a failure stops psql where the engine stops -------------------------------------------


def test_a_failure_in_migration_3_of_4_keeps_1_and_2_like_the_engine(
    project: Project, database_url: str, second_database_url: str
) -> None:
    four_tables(project, third="CREATE TABLE c (id int PRIMARY KEY);\nSELECT 1 / 0;\n")
    script = render(project, "up")

    result = stopped(psql(database_url, script))
    engine = project.run("up", url=second_database_url)

    assert engine.returncode == 3
    assert "ERROR:  division by zero" in result.stderr
    assert result.stdout.splitlines() == [
        "applying 001_create_a (1.1.0)",
        "applying 002_create_b (1.2.0)",
        "applying 003_create_c (1.3.0)",
    ]
    assert versions(database_url) == [("1.1.0", "applied"), ("1.2.0", "applied")]
    assert not table_exists(database_url, "c") and not table_exists(database_url, "d")
    mine, theirs = snapshot(database_url), snapshot(second_database_url)
    assert (mine["columns"], mine["indexes"], mine["rows"]) == (
        theirs["columns"],
        theirs["indexes"],
        theirs["rows"],
    )


def test_a_failed_no_transaction_step_leaves_its_row_started_and_blocks_the_next_run(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    project.add(
        2,
        "index_a",
        "CREATE INDEX CONCURRENTLY a_idx ON no_such_table (id);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_idx;\n",
        header="-- sqlmig: no-transaction\n",
    )
    script = render(project, "up")

    assert 'relation "no_such_table" does not exist' in stopped(psql(database_url, script)).stderr

    # psql cannot catch the error to mark the row `failed` as the engine does: it stays `started`,
    # which blocks every later run until an operator repairs it, as after a killed engine run.
    assert versions(database_url) == [("1.1.0", "applied"), ("1.2.0", "started")]
    assert project.run("status", "--exit-code", url=database_url).returncode == 6
    again = stopped(psql(database_url, script))
    assert "found unsettled migrations 1.2.0 (started)" in again.stderr


# -- (5) render down ----------------------------------------------------------------------------


def test_render_down_rolls_back_like_down(
    example_project: Project, database_url: str, second_database_url: str
) -> None:
    for url in (database_url, second_database_url):
        ok(example_project.run("up", url=url))

    result = ok(psql(database_url, render(example_project, "down", "--to", "1.1.0")))
    ok(example_project.run("down", "--to", "1.1.0", url=second_database_url))

    assert result.stdout.splitlines() == [
        "rolling back 005_rename_display_name (2.0.0)",
        "rolling back 004_index_audit_events_created_at (1.2.1) [no-transaction]",
        "rolling back 003_create_audit_events (1.2.0)",
        "at version 1.1.0: 3 rolled back",
    ]
    assert snapshot(database_url) == snapshot(second_database_url)
    assert [v for v, _ in versions(database_url)] == ["1.0.0", "1.1.0"]

    # The rest, from 1.1.0 down to nothing; then the same script again skips both steps.
    script = render(example_project, "down", "--from", "1.1.0", "--to", "0")
    ok(psql(database_url, script))
    ok(example_project.run("down", "--to", "0", url=second_database_url))
    assert snapshot(database_url) == snapshot(second_database_url)
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    assert ok(psql(database_url, script)).stdout.splitlines() == [
        "skipping 002_add_user_last_login (1.1.0): rolled back already",
        "skipping 001_initial_schema (1.0.0): rolled back already",
        "at version 0.0.0: 0 rolled back",
    ]


def test_render_down_refuses_an_irreversible_rollback_like_down(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    project.add(
        2,
        "drop_col",
        "ALTER TABLE a DROP COLUMN id;\n",
        "-- sqlmig: irreversible the column's data is gone\n",
    )

    result = project.run("render", "down")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "irreversible: the column's data is gone" in result.stderr


def test_offline_down_stops_on_an_edited_rollback_and_from_database_runs_the_stored_one(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    ok(project.run("up", url=database_url))
    (project.rollbacks / "001_create_a_rollback.sql").write_text("DROP TABLE a CASCADE;\n")

    offline = stopped(psql(database_url, render(project, "down")))
    assert (
        "rollbacks/001_create_a_rollback.sql differs from the rollback stored when 1.1.0 was applied"
    ) in offline.stderr
    assert table_exists(database_url, "a")

    # Reading the history, the script runs the stored text, as `sqlmig down` does.
    script = render(project, "down", "--from-database", url=database_url)
    assert "DROP TABLE a;" in script and "CASCADE" not in script.split("\\set ON_ERROR_STOP")[1]
    ok(psql(database_url, script))
    assert not table_exists(database_url, "a")
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]


# -- (6) the history row is exact, whatever the text --------------------------------------------


def test_the_rendered_insert_stores_quotes_semicolons_and_dollars_verbatim(
    project: Project, database_url: str, second_database_url: str
) -> None:
    description = "it's \"quoted\"; DROP TABLE t; $$ $x$ E'\\n' \\\\ :foo :'bar' -- end"
    rollback = (
        "-- undo it's; $$ not a body $$ \\ back\\slash\n\\echo rolling back\nDROP TABLE t; -- ' unbalanced\n"
    )
    project.add(
        1, "quoting", "CREATE TABLE t (a text);\n", rollback, header=f"-- Description: {description}\n"
    )

    ok(psql(database_url, render(project, "up")))
    ok(project.run("up", url=second_database_url))

    assert query(database_url, "SELECT description, rollback_sql FROM schema_version") == [
        (description, rollback)
    ]
    assert snapshot(database_url)["rows"] == snapshot(second_database_url)["rows"]
    ok(psql(database_url, render(project, "down")))
    assert not table_exists(database_url, "t")


# -- (7) the lock -------------------------------------------------------------------------------


def test_the_script_waits_for_the_engines_lock_and_gives_up_after_its_bound(
    example_project: Project, database_url: str, tmp_path: Path
) -> None:
    bounded = render(example_project, "up", options=("--lock-timeout", "1"))
    waiting = render(example_project, "up", options=("--lock-timeout", "10"))
    with psycopg.connect(database_url, autocommit=True, application_name="render-lock-holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

        began = time.monotonic()
        result = stopped(psql(database_url, bounded))
        took = time.monotonic() - began

        assert 0.9 <= took < 10, took
        assert (
            "sqlmig: could not take the migration lock on public.schema_version within 1 s: held by pid"
        ) in result.stderr
        assert "render-lock-holder" in result.stderr
        assert not table_exists(database_url, "public.schema_version")

        # A longer bound: the script waits for the lock and goes on once it is released.
        script = tmp_path / "waiting.sql"
        script.write_text(waiting)
        with script.open() as stdin:
            proc = subprocess.Popen(
                [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", "-"],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        # It polls (tries, pauses, tries again: no statement waits holding a snapshot).
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()
        assert not query(
            database_url, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ), "nobody queues inside the server"
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == "at version 2.0.0: 5 applied"
    assert query(
        database_url,
        """SELECT count(*) FROM pg_locks
                                   WHERE locktype = 'advisory'""",
    ) == [(0,)]


# -- the history table: created, adopted, refused ------------------------------------------------


def test_a_hand_written_history_table_is_upgraded_in_place_like_the_engine_does(
    example_project: Project, database_url: str, second_database_url: str
) -> None:
    first = (example_project.migrations / "001_initial_schema.sql").read_text()
    for url in (database_url, second_database_url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(first)
            conn.execute("""CREATE TABLE schema_version (version VARCHAR(50) PRIMARY KEY,
                                                         applied_at TIMESTAMP, description TEXT)""")
            conn.execute("INSERT INTO schema_version VALUES ('1.0.0', '2024-01-02 03:04:05', 'by hand')")

    ok(psql(database_url, render(example_project, "up", "--from", "1.0.0")))
    ok(example_project.run("up", url=second_database_url))

    history_columns = [c for c in snapshot(database_url)["columns"] if c[0] == "schema_version"]
    assert history_columns == [
        c for c in snapshot(second_database_url)["columns"] if c[0] == "schema_version"
    ]
    assert query(
        database_url,
        """SELECT description, applied_at = '2024-01-02 03:04:05'::timestamp
                                     FROM schema_version WHERE version = '1.0.0'""",
    ) == [("by hand", True)]
    assert [v for v, _ in versions(database_url)] == ["1.0.0", "1.1.0", "1.2.0", "1.2.1", "2.0.0"]
    assert example_project.run("status", "--exit-code", url=database_url).returncode == 0


def test_someone_elses_schema_version_table_is_left_alone(
    example_project: Project, database_url: str
) -> None:
    query(database_url, "CREATE TABLE schema_version (id int)")

    result = stopped(psql(database_url, render(example_project, "up")))

    assert "public.schema_version exists but has no version column" in result.stderr
    assert query(
        database_url,
        """SELECT column_name FROM information_schema.columns
                                   WHERE table_name = 'schema_version'""",
    ) == [("id",)]
    assert not table_exists(database_url, "public.schema_version_events")


# -- from the database, and tricky SQL ----------------------------------------------------------


def test_from_database_renders_only_the_pending_migrations(
    example_project: Project, database_url: str
) -> None:
    ok(example_project.run("up", "--to", "1.1.0", url=database_url))

    script = render(example_project, "up", "--from-database", url=database_url)

    assert "-- Starts from version 1.1.0; 3 step(s) to apply:" in script
    assert "applying 002" not in script
    ok(psql(database_url, script))
    assert example_project.run("status", "--exit-code", url=database_url).returncode == 0


def test_the_psql_corpus_renders_and_rolls_back_like_the_engine(
    tmp_path: Path, database_url: str, second_database_url: str
) -> None:
    shutil.copytree(CORPUS / "migrations", tmp_path / "migrations")
    shutil.copytree(CORPUS / "rollbacks", tmp_path / "rollbacks")
    corpus = Project(tmp_path)

    ok(psql(database_url, render(corpus, "up")))
    ok(corpus.run("up", url=second_database_url))
    assert corpus_state(database_url) == corpus_state(second_database_url)
    assert snapshot(database_url)["rows"] == snapshot(second_database_url)["rows"]

    ok(psql(database_url, render(corpus, "down", "--to", "0")))
    ok(corpus.run("down", "--to", "0", url=second_database_url))
    assert corpus_state(database_url) == corpus_state(second_database_url) == {"schema": []}


def test_a_last_statement_ending_in_a_comment_is_still_terminated(
    project: Project, database_url: str
) -> None:
    # No semicolon and no newline after the last statement's comment: the `;` psql needs must not
    # end up inside the comment (which would glue the history INSERT onto the statement).
    project.add(
        1,
        "trailing",
        "CREATE TABLE t (a int);\nCREATE TABLE u (a int) -- no semicolon",
        "DROP TABLE u; DROP TABLE t -- last",
    )

    ok(psql(database_url, render(project, "up")))
    assert table_exists(database_url, "u") and versions(database_url) == [("1.1.0", "applied")]
    ok(psql(database_url, render(project, "down")))
    assert not table_exists(database_url, "t")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("up", "--from", "9.9.9"), "--from 9.9.9: no migration has version 9.9.9"),
        (("up", "--from", "nope"), "--from 'nope': expected a version like 1.2.0 or a number like 3"),
        (("up", "--to", "7"), "--to 7: no migration numbered 7"),
        (("up", "--steps", "1"), "--steps is for `render down`"),
        (("up", "--from", "1", "--from-database"), "give either --from or --from-database"),
    ],
)
def test_bad_arguments_are_refused_with_exit_2(
    example_project: Project, args: tuple[str, ...], message: str
) -> None:
    result = example_project.run("render", *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_rendered_script_waiting_for_the_lock_does_not_deadlock_a_concurrent_index_build(
    project: Project, database_url: str
) -> None:
    # The engine holds the lock while it builds an index CONCURRENTLY, which waits for every
    # older snapshot; the script started meanwhile waits for the lock without holding one.
    project.add(
        1,
        "t",
        "CREATE TABLE t (id int);\nINSERT INTO t SELECT generate_series(1, 1000);\n",
        "DROP TABLE t;\n",
    )
    project.add(
        2,
        "t_id",
        "SELECT pg_sleep(1);\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        None,
        header="-- sqlmig: no-transaction\n",
    )
    (project.rollbacks / "002_t_id_rollback.sql").write_text("DROP INDEX t_id;\n")
    script = render(project, "up", "--from", "1.1.0")
    assert project.run("up", "--to", "1.1.0", url=database_url).returncode == 0
    engine = start(project, "up", url=database_url)
    time.sleep(0.5)

    result = psql(database_url, script)
    _out, err = engine.communicate(timeout=60)

    assert engine.returncode == 0, err
    assert "deadlock" not in result.stderr + err
    # It waited, then took the lock and found the engine's work done: it skips that step.
    assert result.returncode == 0, result.stderr
    assert "skipping 002_t_id (1.2.0): applied already" in result.stdout
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass") == [
        (True,)
    ]
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(2,)]


# -- issue 15: the same bookkeeping tables, and a script a DBA can read ---------------------------


def test_the_script_leaves_the_same_schema_as_the_engine_its_own_tables_included(
    example_project: Project, database_url: str, second_database_url: str
) -> None:
    from sqlmig.db import snapshot as catalog

    ok(psql(database_url, render(example_project, "up")))
    ok(example_project.run("up", url=second_database_url))

    def everything(url: str) -> str:  # nothing left out, sqlmig's tables included
        with psycopg.connect(url, autocommit=True) as conn:
            return catalog.take(conn, "-", []).canonical()

    assert everything(database_url) == everything(second_database_url)
    assert table_exists(database_url, "public.schema_version_snapshots")


def test_the_script_keeps_each_files_text_and_its_comments(example_project: Project) -> None:
    script = render(example_project, "up")
    for path in sorted(example_project.migrations.glob("*.sql")):
        body = path.read_text().strip("\n")
        assert body in script, path.name  # as written, comments included
    # One check and one bookkeeping line per step; the bookkeeping itself is named once.
    assert script.count("EXECUTE sqlmig_check(") == 6  # 5 steps, and the first before any change
    assert script.count("PREPARE sqlmig_applied") == 1
    sql_lines = sum(
        len(p.read_text().splitlines())
        for p in [*example_project.migrations.glob("*.sql"), *example_project.rollbacks.glob("*.sql")]
    )  # rollbacks: in the rows
    print(f"{len(script.splitlines())} lines for {sql_lines} lines of migrations and rollbacks")
    # A fixed part (lock, tables, the named bookkeeping) and about 20 lines around each file.
    assert len(script.splitlines()) <= sql_lines + 220 + 20 * 5


def test_render_review_shows_each_steps_sql_with_its_mode_and_lint_findings(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int); -- the table\n", "DROP TABLE a;\n")
    project.add(2, "index_a", "CREATE INDEX a_id ON a (id);\n", "DROP INDEX a_id;\n")

    review = render(project, "up", "--review")

    assert review.splitlines() == [
        "-- sqlmig render --review: 2 step(s) to apply, for reading (it runs nothing: `sqlmig "
        "render` without --review gives the script to run)",
        "",
        "-- == 001_create_a (1.1.0): migrations/001_create_a.sql ==",
        "-- runs: one transaction with its history row; lock_timeout 5s",
        "-- Version: 1.1.0",
        "CREATE TABLE a (id int); -- the table",
        "",
        "-- == 002_index_a (1.2.0): migrations/002_index_a.sql ==",
        "-- runs: one transaction with its history row; lock_timeout 5s",
        "-- lint: migrations/002_index_a.sql:2:1: error [index-not-concurrent] CREATE INDEX on "
        "existing table a without CONCURRENTLY blocks writes to it until the index is built",
        "-- Version: 1.2.0",
        "CREATE INDEX a_id ON a (id);",
    ]
    assert "sqlmig_check" not in review and "schema_version" not in review
