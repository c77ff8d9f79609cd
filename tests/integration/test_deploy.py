"""Deploy-grade operations on a real server: lock and statement timeouts with retries, --role and
--schema, independent migration sets side by side, backups with pg_dump, `check` and `wait`.

Tests print what they ran and saw (show()), so a failure explains itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlmig
from sqlmig.db import embedded
from sqlmig.deploy.backup import candidates, choose
from tests.conftest import SQLMIG, Project, query, table_exists
from tests.listen import listen


def show(label: str, result: subprocess.CompletedProcess[str]) -> None:
    print(f"$ sqlmig {label} -> exit {result.returncode}")
    for line in result.stdout.rstrip().splitlines():
        print(f"  stdout| {line}")
    for line in result.stderr.rstrip().splitlines():
        print(f"  stderr| {line}")


def run(project: Project, *args: str, url: str | None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = project.run(*args, url=url, **kwargs)  # type: ignore[arg-type]
    show(" ".join(args), result)
    return result


def start(project: Project, *args: str, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    env["SQLMIG_DATABASE_URL"] = url
    return subprocess.Popen(
        [*SQLMIG, *args], cwd=project.root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen[str], label: str) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    show(label, result)
    return result


def wait_until(what: str, check: object, timeout: float = 30) -> None:
    began = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - began > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def events(url: str, table: str = "public.schema_version_events") -> list[tuple]:
    return query(url, f"SELECT action, name, outcome, detail FROM {table} ORDER BY id")


# -- lock_timeout and retries ---------------------------------------------------------------------


@pytest.fixture
def locked_table(project: Project, database_url: str) -> Iterator[psycopg.Connection]:
    """Table t applied by 001; another session holds ACCESS EXCLUSIVE on it (rollback() frees it)."""
    project.add(1, "create_t", "CREATE TABLE t (id int);", "DROP TABLE t;")
    project.add(2, "alter_t", "ALTER TABLE t ADD COLUMN note text;", "ALTER TABLE t DROP COLUMN note;")
    assert run(project, "up", "--to", "1", url=database_url).returncode == 0
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    try:
        yield holder
    finally:
        holder.close()


def test_migration_blocked_by_a_table_lock_is_retried_and_applied_once_the_lock_goes(
    project: Project, database_url: str, locked_table: psycopg.Connection
) -> None:
    proc = start(
        project,
        "up",
        "--migration-lock-timeout",
        "200ms",
        "--retries",
        "20",
        "--retry-delay",
        "0.1",
        url=database_url,
    )
    wait_until("a retry in the event log", lambda: any(e[2] == "retrying" for e in events(database_url)))
    locked_table.rollback()  # the other session ends its transaction mid-retries
    result = finish(proc, "up (lock released mid-retries)")
    assert result.returncode == 0
    assert re.search(
        r"^sqlmig: retrying 002_alter_t \(1\.2\.0\) in 0\.1 s: try 1 of 21 failed: "
        r"migrations/002_alter_t\.sql:2:1: ERROR \[55P03\]: canceling statement due "
        r"to lock timeout$",
        result.stderr,
        re.M,
    )
    assert "applied 002_alter_t (1.2.0)" in result.stdout
    assert query(
        database_url,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'note'",
    ) == [(1,)]
    log = [(e[1], e[2]) for e in events(database_url) if e[1] == "002_alter_t"]
    assert log[-1] == ("002_alter_t", "applied")
    assert ("002_alter_t", "retrying") in log
    retry = next(e for e in events(database_url) if e[2] == "retrying")
    assert retry[3].startswith(
        "try 1 of 21 rolled back by a lock timeout; next try in 0.1 s: "
        "migrations/002_alter_t.sql:2:1: ERROR [55P03]"
    )


def test_migration_still_blocked_after_the_last_retry_fails_with_exit_3_naming_55p03(
    project: Project, database_url: str, locked_table: psycopg.Connection
) -> None:
    result = run(
        project,
        "up",
        "--migration-lock-timeout",
        "100ms",
        "--retries",
        "2",
        "--retry-delay",
        "50ms",
        url=database_url,
    )
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert [line.split(": try")[0] for line in lines if "retrying" in line] == [
        "sqlmig: retrying 002_alter_t (1.2.0) in 0.05 s",
        "sqlmig: retrying 002_alter_t (1.2.0) in 0.1 s",
    ]
    assert (
        "sqlmig: migrations/002_alter_t.sql:2:1: ERROR [55P03]: canceling statement due to lock timeout"
    ) in lines
    assert "sqlmig: the failed migration was rolled back; nothing of it remains" in lines
    assert any(line.startswith("sqlmig: tried 3 times; other sessions hold locks") for line in lines)
    locked_table.rollback()
    assert query(database_url, "SELECT version FROM schema_version ORDER BY number") == [("1.1.0",)]
    assert [e[2] for e in events(database_url) if e[1] == "002_alter_t"] == [
        "failed",
        "retrying",
        "failed",
        "retrying",
        "failed",
    ]


def test_library_reports_each_retry_through_the_callback(
    project: Project, database_url: str, locked_table: psycopg.Connection
) -> None:
    notices: list[sqlmig.RetryNotice] = []
    config = project.config(database_url, migration_lock_timeout="100ms", retries=1, retry_delay=0.05)
    with pytest.raises(sqlmig.MigrationFailed) as info:
        sqlmig.up(config, progress=listen(retrying=notices.append))
    assert (info.value.sqlstate, info.value.attempts) == ("55P03", 2)
    assert [(n.name, n.attempt, n.attempts, n.sqlstate, n.delay) for n in notices] == [
        ("002_alter_t", 1, 2, "55P03", 0.05)
    ]


SEEN = "INSERT INTO seen SELECT {n}, current_setting('lock_timeout'), current_setting('statement_timeout');"


def test_timeouts_come_from_settings_or_the_header_and_do_not_outlive_their_file(
    project: Project, database_url: str
) -> None:
    project.add(1, "settings", "CREATE TABLE seen (n int, lock text, statement text);\n" + SEEN.format(n=1))
    project.add(
        2,
        "header",
        SEEN.format(n=2),
        header="-- sqlmig: lock-timeout 300ms\n-- sqlmig: statement-timeout 10min\n",
    )
    project.add(3, "no_tx_plain", SEEN.format(n=3), header="-- sqlmig: no-transaction\n")
    project.add(
        4, "no_tx_header", SEEN.format(n=4), header="-- sqlmig: no-transaction\n-- sqlmig: lock-timeout 2s\n"
    )
    project.add(5, "settings_again", SEEN.format(n=5))
    assert run(project, "up", "--statement-timeout", "1h", url=database_url).returncode == 0
    assert query(database_url, "SELECT * FROM seen ORDER BY n") == [
        (1, "5s", "1h"),  # the settings: --migration-lock-timeout's default, --statement-timeout
        (2, "300ms", "10min"),  # the file's header wins
        (3, "0", "0"),  # no-transaction: the session's values unless its header says
        (4, "2s", "0"),
        (5, "5s", "1h"),  # a no-transaction file's SET is reset after it
    ]


def test_inherit_leaves_the_databases_own_lock_timeout(project: Project, database_url: str) -> None:
    dbname = conninfo_to_dict(database_url)["dbname"]
    query(database_url, f"ALTER DATABASE \"{dbname}\" SET lock_timeout = '7s'")
    project.add(1, "seen", "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS v;")
    config = project.config(database_url, migration_lock_timeout="inherit")
    sqlmig.up(config)
    assert query(database_url, "SELECT v FROM seen") == [("7s",)]


# -- --role and --schema --------------------------------------------------------------------------


@pytest.fixture
def roles(server_dsn: str, database_url: str) -> Iterator[tuple[str, str, str]]:
    """(owner, deployer, deployer's URL): owner NOLOGIN may create in the test database;
    deployer LOGIN is a member of owner."""
    tag = uuid.uuid4().hex[:8]
    owner, deployer = f"owner_{tag}", f"deployer_{tag}"
    dbname = conninfo_to_dict(database_url)["dbname"]
    query(server_dsn, f"CREATE ROLE {owner} NOLOGIN")
    query(server_dsn, f"CREATE ROLE {deployer} LOGIN PASSWORD 'pw-{tag}' IN ROLE {owner}")
    query(server_dsn, f'GRANT CREATE ON DATABASE "{dbname}" TO {owner}')
    params = conninfo_to_dict(database_url)
    params.update(user=deployer, password=f"pw-{tag}")
    try:
        yield owner, deployer, make_conninfo("", **params)
    finally:
        query(database_url, f"DROP OWNED BY {owner}, {deployer} CASCADE")
        query(server_dsn, f"DROP ROLE {deployer}")
        query(server_dsn, f"DROP ROLE {owner}")


def test_role_makes_the_schema_owner_own_what_migrations_create_and_does_not_leak(
    project: Project, database_url: str, roles: tuple[str, str, str]
) -> None:
    owner, deployer, deployer_url = roles
    # The first file switches role itself; the next one must still run as --role.
    project.add(1, "create_t", f"CREATE TABLE t (id int);\nSET ROLE {deployer};")
    project.add(
        2,
        "create_u",
        "CREATE TABLE u (id int);\n"
        "CREATE TABLE seen AS SELECT current_user::text AS cu, session_user::text AS su, "
        "current_setting('search_path') AS path;",
    )
    result = run(project, "--role", owner, "--schema", "app", "up", url=deployer_url)
    assert result.returncode == 0
    owners = query(
        database_url,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'app' ORDER BY tablename",
    )
    assert {t: o for t, o in owners} == {
        "schema_version": owner,
        "schema_version_events": owner,
        "t": owner,
        "u": owner,
        "seen": owner,
        "schema_version_snapshots": owner,
    }
    assert query(database_url, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'") == [
        (owner,)
    ]
    assert query(database_url, "SELECT * FROM app.seen") == [(owner, deployer, "app, public")]
    # applied_by is current_user (the first file ended as the login), login_user session_user.
    assert query(
        database_url, "SELECT version, applied_by, login_user FROM app.schema_version ORDER BY number"
    ) == [("1.1.0", deployer, deployer), ("1.2.0", owner, deployer)]
    assert [
        e[0]
        for e in query(
            database_url, "SELECT actor FROM app.schema_version_events WHERE name = '002_create_u'"
        )
    ] == [f"{deployer} as {owner}"]
    history = run(project, "--role", owner, "--schema", "app", "history", url=deployer_url)
    assert f" {owner} (login {deployer})" in history.stdout


def test_role_the_login_is_not_a_member_of_is_invalid_input(
    project: Project, database_url: str, roles: tuple[str, str, str]
) -> None:
    _, _, deployer_url = roles
    project.add(1, "create_t", "CREATE TABLE t (id int);")
    result = run(project, "--role", "pg_database_owner", "up", url=deployer_url)
    assert result.returncode == 2
    assert "sqlmig: --role pg_database_owner: permission denied to set role" in result.stderr


def meet(me: str, other: str) -> str:
    """A migration that finishes only if the other project's migration runs at the same time."""
    return f"""
        CREATE TABLE {me}_t (id int);
        DO $$
        BEGIN
          FOR i IN 1..400 LOOP  -- marker meet_{me}
            PERFORM pg_stat_clear_snapshot();  -- else pg_stat_activity is read once per transaction
            IF EXISTS (SELECT FROM pg_stat_activity WHERE pid <> pg_backend_pid()
                          AND datname = current_database()
                          AND query LIKE '%marker meet_' || '{other}%') THEN
              PERFORM pg_sleep(0.5);  -- long enough for the other one to see this one
              RETURN;
            END IF;
            PERFORM pg_sleep(0.05);
          END LOOP;
          RAISE EXCEPTION 'project {me} never ran at the same time as project {other}';
        END $$;
        """


@pytest.mark.parametrize("option", ["--schema", "--table"])
def test_two_migration_sets_with_their_own_history_run_together_without_blocking(
    tmp_path: Path, database_url: str, option: str
) -> None:
    projects = {}
    for me, other in (("a", "b"), ("b", "a")):
        root = tmp_path / me
        (root / "migrations").mkdir(parents=True)
        (root / "rollbacks").mkdir()
        projects[me] = Project(root)
        projects[me].add(1, "meet", meet(me, other))
    procs = {me: start(p, option, f"set_{me}", "up", url=database_url) for me, p in projects.items()}
    results = {me: finish(proc, f"{option} set_{me} up") for me, proc in procs.items()}
    assert {me: r.returncode for me, r in results.items()} == {"a": 0, "b": 0}
    for me in ("a", "b"):
        table = f"set_{me}.schema_version" if option == "--schema" else f"public.set_{me}"
        assert query(database_url, f"SELECT version FROM {table}") == [("1.1.0",)]
        assert table_exists(database_url, f"set_{me}.{me}_t" if option == "--schema" else f"{me}_t")


# -- backups --------------------------------------------------------------------------------------


def dump_tools(url: str) -> tuple[str, str]:
    """pg_dump and the pg_restore beside it, of a major version that can read this server."""
    with psycopg.connect(url) as conn:
        major = conn.info.server_version // 10000
    tool, _ = choose(candidates(), major)
    return tool.path, str(Path(tool.path).with_name("pg_restore"))


def test_up_with_backup_writes_a_dump_pg_restore_can_read_before_migrating(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    project.add(1, "create_t", "CREATE TABLE t (id int);")
    project.add(2, "create_u", "CREATE TABLE u (id int);")
    assert run(project, "up", "--to", "1", url=database_url).returncode == 0
    backups = tmp_path / "backups"
    result = run(project, "up", "--backup", str(backups), url=database_url)
    assert result.returncode == 0
    dumps = list(backups.iterdir())
    dbname = conninfo_to_dict(database_url)["dbname"]
    assert len(dumps) == 1
    assert re.fullmatch(rf"{dbname}-\d{{8}}T\d{{6}}Z-v1\.1\.0\.dump", dumps[0].name)
    pg_dump, pg_restore = dump_tools(database_url)
    assert f"sqlmig: backup: {dumps[0]} (" in result.stderr
    assert f"pg_dump {sqlmig.deploy.backup.tool_version(pg_dump)[0]} from {pg_dump})" in result.stderr
    listing = subprocess.run(
        [pg_restore, "--list", str(dumps[0])], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"TABLE public t ", listing)
    assert not re.search(r"TABLE public u ", listing)  # taken before 002 ran
    assert [(e[0], e[2]) for e in events(database_url)] == [
        ("up", "applied"),
        ("backup", "ok"),
        ("up", "applied"),
    ]
    # Nothing to do: no dump, and it says so.
    again = run(project, "up", "--backup", str(backups), url=database_url)
    assert again.returncode == 0 and len(list(backups.iterdir())) == 1
    assert "sqlmig: no backup written: nothing to do" in again.stderr


def test_backup_to_a_directory_that_cannot_be_written_stops_the_run_before_anything(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    project.add(1, "create_t", "CREATE TABLE t (id int);")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    result = run(project, "up", "--backup", str(blocker / "backups"), url=database_url)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"sqlmig: cannot write a backup to {blocker / 'backups'}: Not a directory"
    )
    assert not table_exists(database_url, "public.t")
    assert not table_exists(database_url, "public.schema_version")  # not even connected


FAKE_PG_DUMP = """#!/bin/sh
# Records how sqlmig runs pg_dump, then runs the real one; fails when asked to.
case "$1" in --version) echo "pg_dump (PostgreSQL) 99.1"; exit 0;; esac
printf '%s\\n' "$@" > "$FAKE_DIR/argv"
printf '%s' "$PGPASSWORD" > "$FAKE_DIR/pgpassword"
if [ -n "$FAKE_FAIL" ]; then
  echo "pg_dump: error: query failed: permission denied for table t" >&2; exit 1
fi
exec "$REAL_BIN/pg_dump" "$@"
"""


@pytest.fixture
def fake_pg_dump(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "pg_dump"
    script.write_text(FAKE_PG_DUMP)
    script.chmod(0o755)
    # sqlmig checks the archive with the pg_restore beside the pg_dump it ran.
    (bin_dir / "pg_restore").symlink_to(embedded.bin_dir() / "pg_restore")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DIR": str(tmp_path),
        "REAL_BIN": str(embedded.bin_dir()),
    }


def test_backup_passes_the_password_in_pgpassword_never_on_the_command_line(
    project: Project, database_url: str, tmp_path: Path, fake_pg_dump: dict[str, str]
) -> None:
    params = conninfo_to_dict(database_url)
    params["password"] = "s3cret-Pw"  # not checked by a trust server; the point is where it goes
    url = make_conninfo("", **params)
    result = run(project, "backup", "--dir", str(tmp_path / "b"), url=url, env=fake_pg_dump)
    assert result.returncode == 0
    argv = (tmp_path / "argv").read_text().splitlines()
    assert (tmp_path / "pgpassword").read_text() == "s3cret-Pw"
    assert "s3cret-Pw" not in "\n".join(argv) + result.stdout + result.stderr
    assert argv[:3] == ["--format=custom", argv[1], "--no-password"]
    assert argv[1].startswith(f"--file={tmp_path / 'b'}/") and argv[1].endswith(".dump.partial")
    assert any(a.startswith("--dbname=") and "password" not in a for a in argv)
    assert result.stdout.startswith(f"backup: {tmp_path / 'b'}/")
    assert "pg_dump 99.1 from " in result.stdout


def test_a_failing_pg_dump_stops_up_before_any_migration(
    project: Project, database_url: str, tmp_path: Path, fake_pg_dump: dict[str, str]
) -> None:
    project.add(1, "create_t", "CREATE TABLE t (id int);")
    backups = tmp_path / "b"
    result = run(
        project, "up", "--backup", str(backups), url=database_url, env={**fake_pg_dump, "FAKE_FAIL": "1"}
    )
    assert result.returncode == 2
    assert (
        "permission denied for table t; the run stopped before migrating: nothing was applied"
    ) in result.stderr
    assert not table_exists(database_url, "public.t")
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    assert [(e[0], e[2]) for e in events(database_url)] == [("backup", "failed")]
    assert list(backups.iterdir()) == []  # no partial file left behind


# -- check ----------------------------------------------------------------------------------------


def test_check_exit_codes_around_the_current_version(project: Project, database_url: str) -> None:
    project.add(1, "a", "SELECT 1;", version="1.2.0")
    first = run(project, "check", "--require", ">=1.2", url=database_url)
    assert (first.returncode, first.stdout) == (
        1,
        "not ok: no version applied (public.schema_version is empty or missing); required >=1.2\n",
    )
    assert run(project, "up", url=database_url).returncode == 0
    for require, code in ((">=1.2", 0), (">=1.2,<2", 0), ("<1.2", 1), ("^1.3", 1), ("~1.2", 0), ("2", 1)):
        assert run(project, "check", "--require", require, url=database_url).returncode == code
    ok = run(project, "check", "--require", ">=1.2,<2", url=database_url)
    assert ok.stdout == "ok: version 1.2.0 satisfies >=1.2,<2 (>=1.2.0, <2.0.0)\n"
    bad = run(project, "check", "--require", ">=1.2 <2", url=database_url)
    assert bad.returncode == 2 and "is not a comparator" in bad.stderr
    as_json = run(project, "check", "--require", "^1.2", "--json", url=database_url)
    assert '"ok": true' in as_json.stdout and '"current_version": "1.2.0"' in as_json.stdout


def test_check_as_a_library_call(project: Project, database_url: str) -> None:
    project.add(1, "a", "SELECT 1;", version="2.0.0")
    config = project.config(database_url)
    sqlmig.up(config)
    result = sqlmig.check(config, "<2")
    assert (result.ok, result.current_version, result.meaning) == (False, "2.0.0", "<2.0.0")
    assert sqlmig.check(config, "^2").ok


# -- wait -----------------------------------------------------------------------------------------


def test_wait_returns_at_once_when_the_database_is_up(project: Project, database_url: str) -> None:
    result = run(project, "wait", "--timeout", "5", url=database_url)
    assert result.returncode == 0
    assert re.fullmatch(r"ready: \S+ on PostgreSQL .+ after 1 attempt in \d+ ms\n", result.stdout)


def test_wait_gives_up_with_exit_5_and_one_line_per_attempt(project: Project) -> None:
    url = "postgresql://someone:hunter22@127.0.0.1:9/nothing"  # the discard port: refused
    result = run(project, "wait", "--timeout", "1.5", url=url)
    assert result.returncode == 5
    attempts = [line for line in result.stderr.splitlines() if "waiting for the database" in line]
    assert len(attempts) >= 3
    assert re.match(
        r"sqlmig: waiting for the database: attempt 1 failed: .*; next try in 0\.25 s$", attempts[0]
    )
    assert "attempt 2 failed" in attempts[1] and "next try in 0.5 s" in attempts[1]
    assert "did not accept connections within 1.5 s" in result.stderr
    assert "hunter22" not in result.stderr + result.stdout


def test_wait_as_a_library_call_reports_each_failed_attempt() -> None:
    seen: list[sqlmig.WaitAttempt] = []
    config = sqlmig.resolve(database_url="postgresql://x@127.0.0.1:9/none")
    began = time.monotonic()
    with pytest.raises(sqlmig.ConnectError):
        sqlmig.wait(config, 1.0, seen.append)
    assert time.monotonic() - began < 5
    assert [a.attempt for a in seen] == list(range(1, len(seen) + 1))
    assert seen[0].next_in == 0.25


def test_wait_is_immediate_with_the_embedded_server(server_dsn: str) -> None:
    if os.environ.get("SQLMIG_TEST_DSN"):
        pytest.skip("the test server is not the embedded one")
    # The session's embedded server lives in <home>/.sqlmig/run; a project rooted at <home> with
    # nothing configured uses it, already running.
    home = Path(conninfo_to_dict(server_dsn)["host"]).parent.parent
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL") and not k.startswith("PG")
    }
    # A project: where there is no migrations/, sqlmig starts no embedded server.
    (home / "migrations").mkdir(exist_ok=True)
    try:
        result = subprocess.run(
            [*SQLMIG, "--root", str(home), "wait", "--timeout", "0"],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
            cwd=home,
        )
    finally:
        (home / "migrations").rmdir()
    show("wait (embedded)", result)
    assert result.returncode == 0
    assert "after 1 attempt" in result.stdout


def test_up_wait_waits_then_migrates(project: Project, database_url: str) -> None:
    project.add(1, "a", "CREATE TABLE t (id int);")
    result = run(project, "up", "--wait", "10", url=database_url)
    assert result.returncode == 0 and table_exists(database_url, "public.t")


def test_up_wait_gives_up_with_exit_5_before_anything(project: Project) -> None:
    project.add(1, "a", "CREATE TABLE t (id int);")
    result = run(project, "up", "--wait", "0.5", url="postgresql://x@127.0.0.1:9/none")
    assert result.returncode == 5
    assert "waiting for the database: attempt 1 failed" in result.stderr


def test_wait_succeeds_once_a_server_comes_up_during_the_wait(project: Project) -> None:
    # A dedicated server, stopped, so the wait really starts against nothing.
    import shutil
    import tempfile

    from sqlmig.db.embedded import EmbeddedServer

    home = Path(tempfile.mkdtemp(prefix="sqlmig-wait-"))
    server = EmbeddedServer(home)
    url = server.start()
    server.stop()
    project.add(1, "a", "CREATE TABLE t (id int);")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["SQLMIG_DATABASE_URL"] = url
    try:
        waiter = subprocess.Popen(
            [*SQLMIG, "up", "--wait", "60"],
            cwd=project.root,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)  # a few failed attempts first
        server.start()
        out, err = waiter.communicate(timeout=90)
        print("stdout:", out, "stderr:", err, sep="\n")
        assert waiter.returncode == 0
        assert "waiting for the database: attempt 1 failed" in err
        assert "applied 001_a (1.1.0)" in out
        assert table_exists(url, "public.t")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
