"""Faults from outside: a runner killed while it waits, its session terminated by a DBA, the
server stopped under it. Each time the exit code and message are the documented ones, nothing is
half-done or done twice, and the next run reports the state accurately and completes.

(SIGKILL of a runner during a transactional and during a no-transaction migration is in
tests/integration/test_concurrency.py: test_sigkill_during_a_transactional_migration_leaves_
nothing_behind and test_sigkill_during_a_no_transaction_migration_blocks_until_repaired.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.db.embedded import SYSTEM_USER, EmbeddedServer, bin_dir
from tests.conftest import Project, fresh_database, query, table_exists
from tests.integration.test_concurrency import (
    LOCK_KEY,
    SLOW_FLAG,
    SLOW_SLEEP,
    lock_holders,
    needs_dead_client_check,  # noqa: F401  (a fixture)
    show,
    sqlmig_backends,
    start,
    wait_for,
)
from tests.torture.helpers import assert_no_traceback, describe, events, rows, run, user_tables


def three_with_a_slow_second(project: Project, *, transactional: bool) -> None:
    project.add(
        1,
        "first",
        "CREATE TABLE first_table (id int);\nINSERT INTO first_table VALUES (1);\n",
        "DROP TABLE first_table;\n",
    )
    project.add(
        2,
        "slow",
        f"CREATE TABLE slow_table (id int);\n{SLOW_SLEEP}\n",
        "DROP TABLE slow_table;\n",
        header="" if transactional else "-- sqlmig: no-transaction\n",
    )
    project.add(3, "third", "CREATE TABLE third_table (id int);\n", "DROP TABLE third_table;\n")


def start_slow_run(project: Project, url: str) -> tuple[subprocess.Popen[str], int]:
    """`up` until it sleeps in migration 2; returns the process and its backend's pid."""
    query(url, f"CREATE TABLE {SLOW_FLAG} ()")
    proc = start(project, "up", url=url)
    print(f"started `sqlmig up` as pid {proc.pid}")

    def sleeping() -> list[int]:
        if proc.poll() is not None:
            show("up (ended too early)", (proc.returncode, *proc.communicate()))
            pytest.fail("sqlmig up ended before it reached the slow statement")
        return [b[0] for b in sqlmig_backends(url) if "pg_sleep" in (b[4] or "") and b[1] == "active"]

    wait_for("the server runs pg_sleep of migration 2 for sqlmig", sleeping, timeout=30)
    return proc, sleeping()[0]


def finish(label: str, proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=30)
    show(label, (proc.returncode, out, err))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def applied_once(url: str, *versions: str) -> None:
    ups = query(
        url,
        """SELECT version, count(*) FROM schema_version_events
                         WHERE action = 'up' AND outcome = 'applied' GROUP BY version ORDER BY 1""",
    )
    print(f"'up applied' events per version: {ups}")
    assert ups == [(v, 1) for v in versions], "each migration applied exactly once"


# -- SIGKILL while waiting for the lock -----------------------------------------------------------


@pytest.mark.usefixtures("needs_dead_client_check")
def test_sigkill_while_waiting_for_the_lock_leaves_the_holder_alone_and_no_trace(
    project: Project, database_url: str
) -> None:
    three_with_a_slow_second(project, transactional=True)
    with psycopg.connect(database_url, autocommit=True, application_name="torture-lock-holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        holder_pid = holder.info.backend_pid
        print(f"another session (pid {holder_pid}) holds the migration lock")
        victim = start(project, "up", url=database_url)  # waits up to the default 300 s
        wait_for(
            "sqlmig polls the advisory lock",
            lambda: any("pg_try_advisory_lock" in b[4] for b in sqlmig_backends(database_url)),
            timeout=20,
        )
        print(f"sqlmig sessions: {sqlmig_backends(database_url)}; SIGKILL to pid {victim.pid}")
        os.kill(victim.pid, signal.SIGKILL)
        killed = finish("up (SIGKILLed while waiting)", victim)
        assert killed.returncode == -signal.SIGKILL

        # The server notices the vanished client and ends its wait: no session, no queued
        # request, and the holder still holds the lock.
        wait_for("the killed runner's session is gone", lambda: not sqlmig_backends(database_url), timeout=10)
        waiting = query(database_url, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        print(f"lock holders: {lock_holders(database_url)}; waiters: {waiting}")
        assert lock_holders(database_url) == [holder_pid]
        assert waiting == []
        assert not table_exists(database_url, "schema_version"), "nothing happens without the lock"
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        print("the holder released the lock")

    result = run(project, "up", url=database_url)
    assert result.returncode == 0
    assert "at version 1.3.0: 3 applied" in result.stdout
    describe(database_url)
    assert rows(database_url) == [(1, "1.1.0", "applied"), (2, "1.2.0", "applied"), (3, "1.3.0", "applied")]
    assert events(database_url) == [
        ("up", "1.1.0", "applied"),
        ("up", "1.2.0", "applied"),
        ("up", "1.3.0", "applied"),
    ], "no stray event of the victim"
    assert query(database_url, "SELECT count(*) FROM first_table") == [(1,)]


# -- pg_terminate_backend of the runner's session --------------------------------------------------


def terminated_mid_second(
    project: Project, url: str, *, transactional: bool, group_commit: str = "on"
) -> subprocess.CompletedProcess[str]:
    """`up` of three migrations whose session a DBA terminates during the slow second one."""
    three_with_a_slow_second(project, transactional=transactional)
    (project.root / "sqlmig.toml").write_text(f'group_commit = "{group_commit}"\n')
    proc, pid = start_slow_run(project, url)
    print(f"a DBA runs pg_terminate_backend({pid})")
    query(url, "SELECT pg_terminate_backend(%s)", (pid,))
    return finish("up (session terminated)", proc)


@pytest.mark.parametrize("group_commit", ["on", "off"])
def test_terminating_the_session_mid_transactional_migration_exits_5_and_the_next_run_completes(
    project: Project, database_url: str, group_commit: str
) -> None:
    result = terminated_mid_second(project, database_url, transactional=True, group_commit=group_commit)

    assert result.returncode == 5
    assert_no_traceback(result)
    # What the history shows, read again on a new connection: 001 committed (with group commit
    # in the same group as 002, its result never reached sqlmig), 002 did not.
    assert "sqlmig: connection lost during `up`: " in result.stderr
    assert (
        "read again on a new connection, the history shows 1 applied by this run, the last "
        "001_first; not applied: 002_slow and 1 after it"
    ) in result.stderr
    assert "hint: run `sqlmig up` again for the rest" in result.stderr
    if group_commit == "on":
        assert "applied 001_first" not in result.stdout, "only what was confirmed is printed"
    else:
        assert "applied 001_first (1.1.0)" in result.stdout
        assert "confirmed on disk" not in result.stderr
    describe(database_url)
    assert rows(database_url) == [(1, "1.1.0", "applied")]
    assert not table_exists(database_url, "slow_table"), "nothing of migration 2 remains"
    assert events(database_url) == [("up", "1.1.0", "applied")]
    assert not lock_holders(database_url)

    query(database_url, f"DROP TABLE {SLOW_FLAG}")
    status = run(project, "status", url=database_url)
    assert status.returncode == 0
    assert "current version: 1.1.0" in status.stdout and "pending:         2" in status.stdout
    again = run(project, "up", url=database_url)
    assert again.returncode == 0
    assert "001_first" not in again.stdout
    assert "applied 002_slow (1.2.0)" in again.stdout and "applied 003_third (1.3.0)" in again.stdout
    applied_once(database_url, "1.1.0", "1.2.0", "1.3.0")
    assert query(database_url, "SELECT count(*) FROM first_table") == [(1,)]


def test_terminating_the_session_mid_no_transaction_migration_leaves_it_started_until_repaired(
    project: Project, database_url: str
) -> None:
    result = terminated_mid_second(project, database_url, transactional=False)

    assert result.returncode == 5
    assert_no_traceback(result)
    assert (
        "the history shows 1 applied by this run, the last 001_first; not applied: "
        "002_slow and 1 after it (its row is `started`)"
    ) in result.stderr
    assert (
        "002_slow ran outside a transaction and may be partly done: check the database, then `sqlmig repair`"
    ) in result.stderr
    describe(database_url)
    assert rows(database_url) == [(1, "1.1.0", "applied"), (2, "1.2.0", "started")]
    assert table_exists(database_url, "slow_table"), "its first statement ran in autocommit"
    query(database_url, f"DROP TABLE {SLOW_FLAG}")

    status = run(project, "status", url=database_url)
    assert "started:         1\n  002_slow (1.2.0)\n" in status.stdout  # counted apart
    listing = run(project, "repair", url=database_url)
    assert listing.returncode == 0
    assert "sqlmig repair --remove 1.2.0" in listing.stdout
    blocked = run(project, "up", url=database_url)
    assert blocked.returncode == 6
    assert_no_traceback(blocked)
    assert not table_exists(database_url, "third_table")

    print("the operator undoes what ran: DROP TABLE slow_table")
    query(database_url, "DROP TABLE slow_table")
    assert run(project, "repair", "--remove", "1.2.0", url=database_url).returncode == 0
    done = run(project, "up", url=database_url)
    assert done.returncode == 0
    assert "applied 002_slow (1.2.0)" in done.stdout and "applied 003_third (1.3.0)" in done.stdout
    assert rows(database_url) == [(1, "1.1.0", "applied"), (2, "1.2.0", "applied"), (3, "1.3.0", "applied")]
    applied_once(database_url, "1.1.0", "1.2.0", "1.3.0")


# -- the server stopped mid-run --------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedServer]:
    """A server of its own, which a test may stop and start (the session's server is shared)."""
    home = Path(tempfile.mkdtemp(prefix="sqlmig-torture-"))
    server = EmbeddedServer(home)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


def stop_immediately(server: EmbeddedServer) -> None:
    """pg_ctl stop -m immediate: every backend dies at once, as in a crash; recovery on start."""
    subprocess.run(
        [str(bin_dir() / "pg_ctl"), "-D", str(server.data_dir), "stop", "-m", "immediate", "-w", "-t", "30"],
        check=True,
        capture_output=True,
        cwd="/",
        user=SYSTEM_USER if os.geteuid() == 0 else None,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("transactional", "group_commit"),
    [(True, "off"), (True, "on"), (False, "on")],
    ids=["transactional", "transactional-group-commit", "no-transaction"],
)
def test_the_server_stopped_mid_run_exits_5_and_after_a_restart_the_next_run_completes(
    project: Project, own_server: EmbeddedServer, transactional: bool, group_commit: str
) -> None:
    three_with_a_slow_second(project, transactional=transactional)
    (project.root / "sqlmig.toml").write_text(f'group_commit = "{group_commit}"\n')
    # With group commit, 001 goes in one group with 002 and its COMMIT does not wait for the
    # flush: the crash keeps it or not (the WAL writer flushes within ~0.2-0.6 s), and sqlmig
    # has not reported it applied. Without (and before a no-transaction step) it is flushed.
    unconfirmed = transactional and group_commit == "on"
    with fresh_database(own_server.url()) as url:
        proc, _ = start_slow_run(project, url)
        print("pg_ctl stop -m immediate while migration 2 sleeps")
        stop_immediately(own_server)
        try:
            result = finish("up (server stopped)", proc)
            assert result.returncode == 5
            assert_no_traceback(result)
            assert "connection lost while running 002_slow" in result.stderr
            assert ("applied 001_first" in result.stdout) is not unconfirmed
            assert (
                "001_first, sent before it in the same group, had committed but was not "
                "yet confirmed on disk" in result.stderr
            ) is unconfirmed

            down = run(project, "status", url=url, label="status (server down)")
            assert down.returncode == 5
            assert_no_traceback(down)
            assert "cannot connect to" in down.stderr
        finally:
            own_server.start()  # also when an assertion failed: the database is dropped after
        print("server started again (crash recovery)")
        first_at = query(url, "SELECT applied_at FROM schema_version WHERE version = '1.1.0'")
        query(url, f"DROP TABLE {SLOW_FLAG}")
        describe(url)
        status = run(project, "status", url=url)
        assert status.returncode == 0
        if unconfirmed and not first_at:
            print("the crash undid 001, never reported applied: all of it, with its row")
            assert rows(url) == [] and user_tables(url) == set()
            assert "current version: none" in status.stdout and "pending:         3" in status.stdout
            again = run(project, "up", url=url)
            assert again.returncode == 0
            assert "at version 1.3.0: 3 applied" in again.stdout
            applied_once(url, "1.1.0", "1.2.0", "1.3.0")
            assert query(url, "SELECT count(*) FROM first_table") == [(1,)]
            return
        assert "current version: 1.1.0" in status.stdout
        if transactional:
            assert rows(url) == [(1, "1.1.0", "applied")]
            assert not table_exists(url, "slow_table")
            assert "pending:         2" in status.stdout
        else:
            assert rows(url) == [(1, "1.1.0", "applied"), (2, "1.2.0", "started")]
            assert "started:         1\n  002_slow (1.2.0)\n" in status.stdout  # counted apart
            assert run(project, "up", url=url).returncode == 6
            query(url, "DROP TABLE slow_table")
            assert run(project, "repair", "--remove", "1.2.0", url=url).returncode == 0

        again = run(project, "up", url=url)
        assert again.returncode == 0
        assert "001_first" not in again.stdout
        assert "applied 002_slow (1.2.0)" in again.stdout
        assert "applied 003_third (1.3.0)" in again.stdout
        applied_once(url, "1.1.0", "1.2.0", "1.3.0")
        assert query(url, "SELECT applied_at FROM schema_version WHERE version = '1.1.0'") == first_at, (
            "migration 1 was not run again"
        )
        assert query(url, "SELECT count(*) FROM first_table") == [(1,)]


def test_a_server_crash_after_a_group_keeps_every_migration_reported_applied(
    project: Project, own_server: EmbeddedServer
) -> None:
    """Group commit: in a group of migrations sent back to back only the last COMMIT waits for
    the WAL flush. With the WAL writer slowed to 10 s, a commit that did not wait would still be
    in the server's memory when it crashes; the group's last COMMIT must have flushed them all
    before `up` printed them."""
    for n in range(1, 51):  # the first group: 50 steps
        project.add(n, f"t{n}", f"CREATE TABLE t_{n} (id int);\n", f"DROP TABLE t_{n};\n")
    # The next group starts by sleeping, so nothing of it fills the WAL page of step 50's COMMIT.
    project.add(51, "slow", f"{SLOW_SLEEP}\nCREATE TABLE t_51 (id int);\n", "DROP TABLE t_51;\n")
    project.add(52, "t52", "CREATE TABLE t_52 (id int);\n", "DROP TABLE t_52;\n")
    with fresh_database(own_server.url()) as url:
        query(url, "ALTER SYSTEM SET wal_writer_delay = '10s'")
        query(url, "SELECT pg_reload_conf()")
        try:
            query(url, f"CREATE TABLE {SLOW_FLAG} ()")
            proc = start(project, "up", url=url)
            wait_for(
                "migration 51 sleeps",
                lambda: any("pg_sleep" in (b[4] or "") and b[1] == "active" for b in sqlmig_backends(url)),
                timeout=60,
            )
            print("pg_ctl stop -m immediate while migration 51 sleeps")
            stop_immediately(own_server)
            try:
                result = finish("up (server crashed)", proc)
            finally:
                own_server.start()
            print("server started again (crash recovery)")
            query(url, "ALTER SYSTEM RESET wal_writer_delay")
            query(url, "SELECT pg_reload_conf()")
        finally:
            with contextlib.suppress(psycopg.Error):
                query(url, "ALTER SYSTEM RESET wal_writer_delay")
                query(url, "SELECT pg_reload_conf()")
        assert result.returncode == 5
        assert_no_traceback(result)
        reported = [line for line in result.stdout.splitlines() if line.startswith("applied ")]
        print(f"{len(reported)} migrations reported applied before the crash")
        assert len(reported) == 50 and "applied 050_t50 (1.50.0)" in reported[-1]
        describe(url, ("rows",))
        assert rows(url) == [(n, f"1.{n}.0", "applied") for n in range(1, 51)]
        assert user_tables(url) >= {f"t_{n}" for n in range(1, 51)}
        assert not table_exists(url, "t_51")

        query(url, f"DROP TABLE {SLOW_FLAG}")
        again = run(project, "up", url=url)
        assert again.returncode == 0
        applied_once(url, *sorted(f"1.{n}.0" for n in range(1, 53)))


# -- the database refuses sqlmig's own statements --------------------------------------------------


@pytest.fixture
def unprivileged_url(database_url: str) -> Iterator[str]:
    """The test database, reached as a fresh login role that owns nothing and may create nothing."""
    role = f"torture_{os.getpid()}_{abs(hash(database_url)) % 10_000}"
    query(database_url, f'CREATE ROLE "{role}" LOGIN')
    query(database_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # as on PostgreSQL 15+
    params = {**conninfo_to_dict(database_url), "user": role}
    params.pop("password", None)
    url = make_conninfo("", **params)
    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError as exc:
        query(database_url, f'DROP ROLE "{role}"')
        pytest.skip(f"cannot log in as a new role without a password here: {exc}")
    try:
        yield url
    finally:
        query(database_url, f'DROP OWNED BY "{role}"')
        query(database_url, f'DROP ROLE "{role}"')


def test_a_login_without_privileges_gets_one_line_and_exit_2_from_every_command(
    project: Project, database_url: str, unprivileged_url: str
) -> None:
    three_with_a_slow_second(project, transactional=True)
    query(database_url, f"DROP TABLE IF EXISTS {SLOW_FLAG}")
    for args in (("up",), ("baseline", "1.1.0")):
        result = run(project, *args, url=unprivileged_url)
        assert result.returncode == 2, "a privilege problem is a configuration problem"
        assert_no_traceback(result)
        assert "ERROR [42501]: permission denied for " in result.stderr
        assert "hint: sqlmig keeps its history in public.schema_version" in result.stderr
    # The history exists, made by its owner: the login may not even read it.
    assert run(project, "up", "--to", "1", url=database_url).returncode == 0
    for args in (
        ("up",),
        ("down",),
        ("status",),
        ("validate",),
        ("history",),
        ("render", "up", "--from-database"),
        ("repair", "--remove", "1.1.0"),
    ):
        result = run(project, *args, url=unprivileged_url)
        assert result.returncode == 2
        assert_no_traceback(result)
        assert "ERROR [42501]: " in result.stderr
    describe(database_url)
    assert rows(database_url) == [(1, "1.1.0", "applied")]
    assert events(database_url) == [("up", "1.1.0", "applied")]


@pytest.mark.parametrize("how", ["read-only", "reserved-schema"])
def test_a_read_only_database_or_a_reserved_schema_is_refused_with_exit_2(
    project: Project, database_url: str, how: str
) -> None:
    three_with_a_slow_second(project, transactional=True)
    query(database_url, f"DROP TABLE IF EXISTS {SLOW_FLAG}")
    if how == "read-only":
        # What a hot standby does to every write.
        dbname = query(database_url, "SELECT current_database()")[0][0]
        query(database_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
        result = run(project, "up", url=database_url)
        assert "ERROR [25006]: cannot execute CREATE" in result.stderr
    else:
        result = run(project, "--schema", "pg_catalog", "up", url=database_url)
        # The schema exists, so sqlmig does not try to create it; the table is refused.
        assert 'ERROR [42501]: permission denied to create "pg_catalog.schema_version"' in result.stderr
    assert result.returncode == 2
    assert_no_traceback(result)
    assert user_tables(database_url) == set()
