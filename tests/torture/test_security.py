"""Hostile text and hostile files: what a migration set can make sqlmig write, read or run.

- Text from files (a Description, a rollback's comments, a server's error message) reaches the
  history and the event log as bound parameters (engine) or psycopg's literal quoting (`render`):
  it is stored verbatim and never becomes SQL, on either path.
- The migrations directory cannot make sqlmig read a file outside it (a symlink), and psql
  meta-commands that read files or run programs (`\\i`, `\\ir`, `\\!`, …) are refused at
  file:line with exit 2 before anything runs, wherever they sit on a line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Project, query, table_exists
from tests.integration.test_render import psql, render
from tests.torture.helpers import assert_no_traceback, describe, events, rows, run, user_tables

# Each is a Description: header (one line, no leading/trailing blanks, which a header drops).
NASTY = [
    'it\'s "quoted"; DROP TABLE victims; --',
    "'); DELETE FROM schema_version; --",
    "$$; SELECT pg_sleep(30); $$ $body$ $sqlmig$ $x$",
    "back\\slash \\' \\\\ E'\\x41' and a trailing backslash\\",
    "/* not a comment */ -- nor this; :'var' :\"ident\" :plain",
    "%s %(version)s %% {} {0} {description} ${x}",
    "tab\there, ünïcödé, 😀, \u2028 and \u00a0 inside",
    "\\! touch /tmp/sqlmig-pwned \\i /etc/passwd \\gexec",
]


def nasty_project(project: Project) -> list[str]:
    """One migration per NASTY description; each rollback's comment holds the same text."""
    for n, text in enumerate(NASTY, start=1):
        project.add(
            n,
            f"nasty_{n}",
            f"CREATE TABLE nasty_{n} (id int);\n",
            f"-- undo: {text}\nDROP TABLE nasty_{n};\n",
            header=f"-- Description: {text}\n",
        )
    return NASTY


def stored(url: str) -> list[tuple[str, str]]:
    return query(url, "SELECT description, rollback_sql FROM schema_version ORDER BY number")


def expected(texts: list[str]) -> list[tuple[str, str]]:
    return [(t, f"-- undo: {t}\nDROP TABLE nasty_{n};\n") for n, t in enumerate(texts, start=1)]


def test_hostile_descriptions_are_stored_verbatim_by_the_engine_and_by_the_psql_script(
    project: Project, database_url: str, second_database_url: str
) -> None:
    texts = nasty_project(project)
    # standard_conforming_strings = off makes '\' an escape in plain '…' literals: a rendered
    # script must still store the text verbatim (psycopg writes E'…' when there is a backslash).
    for url in (database_url, second_database_url):
        dbname = query(url, "SELECT current_database()")[0][0]
        query(url, f'ALTER DATABASE "{dbname}" SET standard_conforming_strings = off')
    print("both databases run with standard_conforming_strings = off")

    engine = run(project, "up", url=database_url)
    assert engine.returncode == 0
    script = render(project, "up")
    print(f"rendered script: {len(script.splitlines())} lines; running it with psql")
    by_psql = psql(second_database_url, script)
    print(f"psql -> exit {by_psql.returncode}; stderr: {by_psql.stderr.strip()[-300:]!r}")
    assert by_psql.returncode == 0

    for label, url in (("engine", database_url), ("psql script", second_database_url)):
        got = stored(url)
        print(f"{label}: descriptions stored: {[d for d, _ in got]}")
        assert got == expected(texts), f"{label}: history text differs from the files"
        assert user_tables(url) == {f"nasty_{n}" for n in range(1, len(texts) + 1)}
        assert query(
            url, "SELECT count(*) FROM schema_version_events WHERE action = 'up' AND outcome = 'applied'"
        ) == [(len(texts),)]
    assert not Path("/tmp/sqlmig-pwned").exists()

    # And back: the engine and the script each remove every row and table, nothing else.
    assert run(project, "down", "--to", "0", url=database_url).returncode == 0
    back = psql(second_database_url, render(project, "down", "--to", "0"))
    print(f"psql (render down --to 0) -> exit {back.returncode}")
    assert back.returncode == 0
    for url in (database_url, second_database_url):
        describe(url, ("rows", "tables"))
        assert rows(url) == [] and user_tables(url) == set()


def test_a_hostile_server_error_message_is_stored_verbatim_in_the_event_log(
    project: Project, database_url: str
) -> None:
    message = "it's; DROP TABLE schema_version; -- $$ \\' %s {0} \u2028 😀"
    project.add(
        1,
        "ok",
        "CREATE TABLE kept (id int);\n",
        "DROP TABLE kept;\n",
        header="-- Description: O'Brien; -- \\\n",
    )
    project.add(
        2,
        "raises",
        "CREATE TABLE gone (id int);\n"
        "DO $body$ BEGIN RAISE EXCEPTION '%', $msg$" + message + "$msg$; END $body$;\n",
        "DROP TABLE gone;\n",
    )

    result = run(project, "up", url=database_url)

    assert result.returncode == 3
    assert_no_traceback(result)
    assert message in result.stderr
    describe(database_url)
    assert rows(database_url) == [(1, "1.1.0", "applied")]
    assert table_exists(database_url, "schema_version") and table_exists(database_url, "kept")
    assert not table_exists(database_url, "gone")
    detail = query(
        database_url,
        """SELECT detail FROM schema_version_events
                                     WHERE outcome = 'failed'""",
    )
    print(f"the failure's event detail: {detail}")
    assert len(detail) == 1 and message in detail[0][0]
    assert query(database_url, "SELECT description FROM schema_version") == [("O'Brien; -- \\",)]


# -- the migrations directory cannot reach outside itself ---------------------------------------

PASSWD_LIKE = "root:x:0:0:root:/root:/bin/bash\n"


def outside_file(tmp_path: Path, name: str, text: str) -> Path:
    """A file outside the project (the project is tmp_path/project)."""
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def inner(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "migrations").mkdir(parents=True)
    (root / "rollbacks").mkdir()
    return Project(root)


@pytest.mark.parametrize("where", ["migrations", "rollbacks"])
def test_a_symlink_out_of_the_migrations_directory_is_a_file_problem(
    inner: Project, tmp_path: Path, database_url: str, where: str
) -> None:
    inner.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    secret = outside_file(
        tmp_path, "secret.sql", "-- Version: 1.2.0\nCREATE TABLE leaked (line text);\n-- " + PASSWD_LIKE
    )
    if where == "migrations":
        (inner.rollbacks / "002_linked_rollback.sql").write_text("DROP TABLE leaked;\n")
        link = inner.migrations / "002_linked.sql"
    else:
        (inner.migrations / "002_linked.sql").write_text("-- Version: 1.2.0\nSELECT 1;\n")
        link = inner.rollbacks / "002_linked_rollback.sql"
    link.symlink_to(secret)
    # Reaching the file another way round: ../ in the link, and a link to a link.
    other = outside_file(tmp_path, "other.sql", "-- Version: 1.3.0\nCREATE TABLE leaked2 (id int);\n")
    hop = inner.root / "hop.sql"
    hop.symlink_to(os.path.relpath(other, inner.root))
    (inner.migrations / "003_hop.sql").symlink_to("../hop.sql")
    (inner.rollbacks / "003_hop_rollback.sql").write_text("SELECT 1;\n")
    print(
        f"{link.relative_to(inner.root)} -> {secret}; migrations/003_hop.sql -> ../hop.sql -> "
        f"{os.readlink(hop)}"
    )

    for command in (("up",), ("status",), ("validate",), ("render", "up"), ("lint",)):
        result = run(inner, *command, url=database_url)
        assert result.returncode == 2, f"{command}: a link out of the directory is a file problem"
        assert_no_traceback(result)
        # lint reports file problems as findings on stdout (path:line:col: error [code] …)
        said, prefix = (result.stdout, "") if command == ("lint",) else (result.stderr, "sqlmig: ")
        assert f"{prefix}{where}/002_linked" in said
        assert f"{prefix}migrations/003_hop.sql" in said
        assert "outside" in said
        assert "root:x:0:0" not in result.stdout + result.stderr
    describe(database_url)
    assert not table_exists(database_url, "schema_version")
    assert user_tables(database_url) == set()


def test_symlinks_that_stay_inside_the_directory_are_followed(inner: Project, database_url: str) -> None:
    shared = inner.migrations / "shared"
    shared.mkdir()
    (shared / "first.sql.txt").write_text("-- Version: 1.0.0\nCREATE TABLE via_link (id int);\n")
    (inner.migrations / "001_first.sql").symlink_to("shared/first.sql.txt")
    (inner.rollbacks / "001_first_rollback.sql").write_text("DROP TABLE via_link;\n")
    print("migrations/001_first.sql -> shared/first.sql.txt (inside migrations/)")

    result = run(inner, "up", url=database_url)

    assert result.returncode == 0
    assert table_exists(database_url, "via_link")
    assert rows(database_url) == [(1, "1.0.0", "applied")]


def test_a_dangling_or_looping_symlink_is_a_file_problem_not_a_crash(inner: Project, tmp_path: Path) -> None:
    (inner.migrations / "001_loop.sql").symlink_to("001_loop.sql")
    (inner.rollbacks / "001_loop_rollback.sql").write_text("SELECT 1;\n")
    (inner.migrations / "002_gone.sql").symlink_to("no_such_file.sql")
    (inner.rollbacks / "002_gone_rollback.sql").write_text("SELECT 1;\n")
    (inner.migrations / "003_gone_outside.sql").symlink_to(tmp_path / "nowhere.sql")
    (inner.rollbacks / "003_gone_outside_rollback.sql").write_text("SELECT 1;\n")

    result = run(inner, "up", url="postgresql://u:pw@127.0.0.1:1/db")  # never reached

    assert result.returncode == 2
    assert_no_traceback(result)
    for name in ("001_loop", "002_gone", "003_gone_outside"):
        assert f"sqlmig: migrations/{name}.sql" in result.stderr


def test_a_fifo_or_a_directory_named_like_a_migration_is_a_file_problem_not_a_hang(inner: Project) -> None:
    inner.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    os.mkfifo(inner.migrations / "002_pipe.sql")  # reading it would wait for a writer forever
    (inner.rollbacks / "002_pipe_rollback.sql").write_text("SELECT 1;\n")
    (inner.migrations / "003_dir.sql").mkdir()
    (inner.rollbacks / "003_dir_rollback.sql").write_text("SELECT 1;\n")
    os.mkfifo(inner.migrations / "pipe")
    (inner.migrations / "004_link.sql").symlink_to("pipe")
    (inner.rollbacks / "004_link_rollback.sql").write_text("SELECT 1;\n")

    for command in ("up", "status", "lint"):
        result = run(inner, command, url="postgresql://u:pw@127.0.0.1:1/db", timeout=30)
        assert result.returncode == 2
        assert_no_traceback(result)
        for name in ("002_pipe", "003_dir", "004_link"):
            if command == "lint":  # findings, on stdout
                assert (
                    f"migrations/{name}.sql:1:1: error [not-a-file] not a regular file "
                    "(a directory, FIFO, socket, device or broken symlink)"
                ) in result.stdout
            else:
                assert (
                    f"sqlmig: migrations/{name}.sql: error: not a regular file (a directory, "
                    "FIFO, socket, device or broken symlink)"
                ) in result.stderr
        # Each is reported once: its rollback is no orphan.
        if command == "lint":
            assert result.stdout.count("not a regular file") == 3
        else:
            assert "sqlmig: 3 problems in the migration files; nothing was run" in result.stderr


# -- psql meta-commands that read files or run programs ------------------------------------------

MARKER = "sqlmig-torture-meta-ran"


# (variant, text after a first line `CREATE TABLE t (id int);`, the line psql reads it on)
META_VARIANTS = [
    ("i_traversal", "\\i ../../etc/passwd\n", 3),
    ("ir_traversal", "\\ir ../../../../etc/passwd\n", 3),
    ("include_indented", "  \\include /etc/passwd\n", 3),
    ("include_relative", "\\include_relative ../rollbacks/x.sql\n", 3),
    ("i_after_a_statement", "SELECT 1; \\i ../../etc/passwd\n", 3),
    ("shell_after_a_statement", "CREATE TABLE t2 (id int); \\! touch {marker}\n", 3),
    ("g_to_a_file", "SELECT 1 \\g {marker}\n", 3),
    ("after_a_comment", "/* c */ \\ir x.sql\n", 3),
    ("o_after_a_dollar_body", "SELECT $$ body $$; \\o {marker}\n", 3),
    ("inside_a_statement", "CREATE TABLE t3 (\n  id int \\i /etc/passwd\n);\n", 4),
]


def test_psql_meta_commands_that_read_or_run_are_refused_at_their_line_wherever_they_sit(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / MARKER
    for n, (variant, text, _) in enumerate(META_VARIANTS, start=1):
        body = f"CREATE TABLE t_{n} (id int);\n" + text.format(marker=marker)
        project.add(n, variant, body, f"DROP TABLE t_{n};\n")
        print(f"migrations/{n:03d}_{variant}.sql:\n-- Version: 1.{n}.0\n{body}")

    # Every file's problem is reported in one run (the engine checks all files before the first).
    for command in (("up",), ("render", "up"), ("up", "--dry-run")):
        result = run(project, *command, url=database_url)
        assert result.returncode == 2, f"{command}: a psql meta-command is refused before running"
        assert_no_traceback(result)
        for n, (variant, _, line) in enumerate(META_VARIANTS, start=1):
            assert (
                f"sqlmig: migrations/{n:03d}_{variant}.sql:{line}: error: psql meta-command" in result.stderr
            ), f"{variant} not refused at line {line}"
        assert "root:x:0:0" not in result.stdout + result.stderr
    describe(database_url)
    assert rows(database_url) == [] and user_tables(database_url) == set()
    assert events(database_url) == []
    assert not marker.exists(), "nothing may run the meta-command"


def test_a_meta_command_in_a_rollback_is_refused_by_up_down_and_render_down(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / MARKER
    project.add(1, "first", "CREATE TABLE t (id int);\n", "DROP TABLE t;\n")
    assert run(project, "up", url=database_url).returncode == 0
    (project.rollbacks / "001_first_rollback.sql").write_text(f"DROP TABLE t; \\! touch {marker}\n")

    # A set whose rollback `down` would refuse is refused as a whole, before connecting.
    for command in (("up",), ("down",), ("render", "down")):
        result = run(project, *command, url=database_url)
        assert result.returncode == 2
        assert_no_traceback(result)
        assert "sqlmig: rollbacks/001_first_rollback.sql:1: error: psql meta-command" in result.stderr
    assert rows(database_url) == [(1, "1.1.0", "applied")]
    assert table_exists(database_url, "t")
    assert not marker.exists()
