"""Concurrent runners, killed runners and a held lock, on a real PostgreSQL server.

Every test prints what it started and what it saw, so a failure explains itself (pytest shows the
captured output of a failing test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.locking.session import lock_key
from tests.conftest import SQLMIG, Project, query, table_exists

LOCK_KEY = lock_key("public.schema_version")
# A migration sleeps only while this table exists, so the run after the kill is quick while the
# file itself stays byte-for-byte the same (it was never applied, but the point is a plain retry).
SLOW_FLAG = "public.go_slow"
SLOW_SLEEP = f"SELECT pg_sleep(CASE WHEN to_regclass('{SLOW_FLAG}') IS NULL THEN 0 ELSE 30 END);"


# -- helpers ----------------------------------------------------------------------------------


def start(project: Project, *args: str, url: str) -> subprocess.Popen[str]:
    """Start the CLI without waiting for it, as a second deploy job would."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    env["SQLMIG_DATABASE_URL"] = url
    return subprocess.Popen(
        [*SQLMIG, *args], cwd=project.root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll until check() is true; returns the seconds it took, fails after `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    took = time.monotonic() - began
    print(f"  ... {what}: after {took:.2f} s")
    return took


def show(label: str, result: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> None:
    rc, out, err = (
        (result.returncode, result.stdout, result.stderr)
        if isinstance(result, subprocess.CompletedProcess)
        else result
    )
    print(f"$ sqlmig {label} -> exit {rc}")
    for line in out.rstrip().splitlines():
        print(f"  stdout| {line}")
    for line in err.rstrip().splitlines():
        print(f"  stderr| {line}")


def sqlmig_backends(url: str) -> list[tuple]:
    """Sessions of sqlmig on this test's database: (pid, state, wait_event_type, wait_event, query)."""
    return query(
        url,
        """SELECT pid, state, wait_event_type, wait_event, left(query, 120)
                           FROM pg_stat_activity
                          WHERE datname = current_database() AND application_name = 'sqlmig'
                            AND pid <> pg_backend_pid()""",
    )


def lock_holders(url: str) -> list[int]:
    unsigned = LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    rows = query(
        url,
        """SELECT l.pid FROM pg_locks l
                          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                            AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
                            AND l.database = (SELECT oid FROM pg_database
                                               WHERE datname = current_database())""",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    )
    return [r[0] for r in rows]


def history_rows(url: str) -> list[tuple]:
    return query(
        url,
        """SELECT version, number, name, checksum, rollback_checksum, status,
                                transactional
                           FROM schema_version ORDER BY number""",
    )


def applied_events(url: str) -> dict[str, int]:
    rows = query(
        url,
        """SELECT version, count(*) FROM schema_version_events
                          WHERE action = 'up' AND outcome = 'applied' GROUP BY version""",
    )
    return {v: n for v, n in rows}


def kill_during_sleep(project: Project, url: str) -> None:
    """Start `up`, wait until the server runs the slow statement, SIGKILL the runner, and wait
    until the server has noticed and ended that session (so its lock is free)."""
    query(url, f"CREATE TABLE {SLOW_FLAG} ()")
    proc = start(project, "up", url=url)
    print(f"started `sqlmig up` as pid {proc.pid}; waiting for pg_sleep in pg_stat_activity")

    def sleeping() -> bool:
        if proc.poll() is not None:
            show("up (ended before the kill)", (proc.returncode, *proc.communicate()))
            pytest.fail("sqlmig up ended before it reached the slow statement")
        return any("pg_sleep" in (b[4] or "") and b[1] == "active" for b in sqlmig_backends(url))

    wait_for("the server runs pg_sleep for sqlmig", sleeping, timeout=30)
    backends = sqlmig_backends(url)
    print(f"sqlmig sessions before the kill: {backends}")
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    show("up (SIGKILLed)", (proc.returncode, out, err))
    assert proc.returncode == -signal.SIGKILL
    # The server must notice the vanished client and end the session, releasing the advisory lock
    # and rolling back the open transaction, instead of sleeping 30 s and then committing with
    # nobody watching (sqlmig sets client_connection_check_interval on PostgreSQL 14+).
    wait_for(
        "the killed runner's session is gone and the lock is free",
        lambda: not sqlmig_backends(url) and not lock_holders(url),
        timeout=10,
    )
    query(url, f"DROP TABLE {SLOW_FLAG}")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def other_database_url(server_dsn: str) -> Iterator[str]:
    """A second fresh database, for a reference run."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    yield make_conninfo("", **params)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def needs_dead_client_check(server_dsn: str) -> None:
    version = query(server_dsn, "SELECT current_setting('server_version_num')::int")[0][0]
    if version < 140000:
        pytest.skip(
            f"server {version} < 14 has no client_connection_check_interval: a killed "
            "runner's statement runs to its end before the lock is released"
        )


# -- tests ------------------------------------------------------------------------------------


def six_migrations(project: Project) -> None:
    project.add(
        1,
        "accounts",
        """
        CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);
        SELECT pg_sleep(0.2);
    """,
        "DROP TABLE accounts;",
    )
    project.add(
        2,
        "orders",
        """
        CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts);
        INSERT INTO accounts VALUES (1, 'a@example.com');
    """,
        "DROP TABLE orders;",
    )
    project.add(
        3,
        "audit",
        """
        SELECT pg_sleep(0.2);
        CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());
    """,
        "DROP TABLE audit;",
    )
    project.add(
        4,
        "accounts_name",
        "ALTER TABLE accounts ADD COLUMN name text;",
        "ALTER TABLE accounts DROP COLUMN name;",
    )
    project.add(
        5, "orders_index", "CREATE INDEX orders_account ON orders (account_id);", "DROP INDEX orders_account;"
    )
    project.add(
        6,
        "counters",
        """
        CREATE TABLE counters (name text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
        SELECT pg_sleep(0.2);
        INSERT INTO counters (name) VALUES ('accounts');
    """,
        "DROP TABLE counters;",
    )


def test_eight_concurrent_runners_apply_each_migration_exactly_once(
    project: Project, database_url: str, other_database_url: str
) -> None:
    six_migrations(project)
    procs = [start(project, "up", url=database_url) for _ in range(8)]
    print(f"started 8 `sqlmig up` at once: pids {[p.pid for p in procs]}")
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out, err))
        show(f"up #{i}", results[-1])
    assert [rc for rc, _, _ in results] == [0] * 8, "every concurrent runner must exit 0"

    applied_lines = [
        line for _, out, _ in results for line in out.splitlines() if line.startswith("applied ")
    ]
    print(f"'applied' lines over all runners: {applied_lines}")
    assert sorted(line.split()[1] for line in applied_lines) == [
        "001_accounts",
        "002_orders",
        "003_audit",
        "004_accounts_name",
        "005_orders_index",
        "006_counters",
    ], "each migration is applied by exactly one runner"

    rows = history_rows(database_url)
    print(f"history after 8 concurrent runs: {[(r[0], r[1], r[2], r[5]) for r in rows]}")
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r[5] == "applied" for r in rows)
    events = applied_events(database_url)
    print(f"'up applied' events per version: {events}")
    assert events == {f"1.{n}.0": 1 for n in range(1, 7)}
    assert query(database_url, "SELECT count(*) FROM accounts") == [(1,)]
    assert query(database_url, "SELECT name, n FROM counters") == [("accounts", 0)]

    single = project.run("up", url=other_database_url)
    show("up (one runner, reference database)", single)
    assert single.returncode == 0
    reference = history_rows(other_database_url)
    assert rows == reference, "concurrent runs must leave the same history as a single run"

    def columns(url: str) -> list[tuple]:
        return query(
            url,
            """SELECT table_name, column_name, data_type FROM information_schema.columns
                              WHERE table_schema = 'public' ORDER BY 1, 2""",
        )

    assert columns(database_url) == columns(other_database_url)


def test_sigkill_during_a_transactional_migration_leaves_nothing_behind(
    project: Project, database_url: str, needs_dead_client_check: None
) -> None:
    project.add(
        1,
        "first",
        """
        CREATE TABLE first_table (id int);
        INSERT INTO first_table VALUES (1);
    """,
        "DROP TABLE first_table;",
    )
    project.add(
        2,
        "slow",
        f"""
        CREATE TABLE slow_table (id int);
        {SLOW_SLEEP}
    """,
        "DROP TABLE slow_table;",
    )
    project.add(3, "third", "CREATE TABLE third_table (id int);", "DROP TABLE third_table;")

    kill_during_sleep(project, database_url)
    rows = history_rows(database_url)
    print(
        f"history after the kill: {[(r[0], r[5]) for r in rows]}; "
        f"slow_table exists: {table_exists(database_url, 'slow_table')}"
    )
    assert [(r[0], r[5]) for r in rows] == [("1.1.0", "applied")], (
        "migration 2 must be rolled back with the killed session, not committed later"
    )
    assert not table_exists(database_url, "slow_table")
    first_applied_at = query(database_url, "SELECT applied_at FROM schema_version WHERE version = '1.1.0'")

    result = project.run("up", url=database_url, timeout=60)
    show("up (after the kill)", result)
    assert result.returncode == 0
    assert "001_first" not in result.stdout, "migration 1 must not run again"
    assert "applied 002_slow (1.2.0)" in result.stdout
    assert "applied 003_third (1.3.0)" in result.stdout

    rows = history_rows(database_url)
    print(f"history: {[(r[0], r[5]) for r in rows]}; events: {applied_events(database_url)}")
    assert [(r[1], r[5]) for r in rows] == [(1, "applied"), (2, "applied"), (3, "applied")]
    assert applied_events(database_url) == {"1.1.0": 1, "1.2.0": 1, "1.3.0": 1}
    assert query(database_url, "SELECT count(*) FROM first_table") == [(1,)]
    assert (
        query(database_url, "SELECT applied_at FROM schema_version WHERE version = '1.1.0'")
        == first_applied_at
    )
    assert query(database_url, "SELECT count(*) FROM pg_class WHERE relname = 'slow_table'") == [(1,)]


@pytest.mark.parametrize("resolution", ["remove", "mark-applied"])
def test_sigkill_during_a_no_transaction_migration_blocks_until_repaired(
    project: Project, database_url: str, needs_dead_client_check: None, resolution: str
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    project.add(
        2,
        "online",
        f"""
        CREATE TABLE online_table (id int);
        {SLOW_SLEEP}
    """,
        "DROP TABLE online_table;",
        header="-- sqlmig: no-transaction\n",
    )
    project.add(3, "third", "CREATE TABLE third_table (id int);", "DROP TABLE third_table;")

    kill_during_sleep(project, database_url)
    rows = history_rows(database_url)
    print(
        f"history after the kill: {[(r[0], r[5]) for r in rows]}; online_table exists: "
        f"{table_exists(database_url, 'online_table')}"
    )
    assert [(r[0], r[5]) for r in rows] == [("1.1.0", "applied"), ("1.2.0", "started")]
    assert table_exists(database_url, "online_table"), "statement 1 ran in autocommit"

    blocked = project.run("up", url=database_url)
    show("up (after the kill)", blocked)
    assert blocked.returncode == 6
    assert "`started`" in blocked.stderr and "1.2.0" in blocked.stderr
    assert "repair" in blocked.stderr
    assert not table_exists(database_url, "third_table"), "a failed state blocks later migrations"

    status = project.run("status", url=database_url)
    show("status", status)
    assert status.returncode == 0
    assert "started:         1\n  002_online (1.2.0)\n" in status.stdout
    status_code = project.run("status", "--exit-code", url=database_url)
    show("status --exit-code", status_code)
    assert status_code.returncode == 6

    if resolution == "remove":
        print("operator undoes statement 1 by hand: DROP TABLE online_table")
        query(database_url, "DROP TABLE online_table")
        repaired = project.run("repair", "--remove", "1.2.0", url=database_url)
    else:
        print("operator completes the step by hand (the sleep has nothing left to do)")
        repaired = project.run("repair", "--mark-applied", "1.2.0", url=database_url)
    show(f"repair --{resolution} 1.2.0", repaired)
    assert repaired.returncode == 0

    final = project.run("up", url=database_url, timeout=60)
    show("up (after repair)", final)
    assert final.returncode == 0
    assert ("applied 002_online (1.2.0)" in final.stdout) == (resolution == "remove")
    assert "applied 003_third (1.3.0)" in final.stdout
    rows = history_rows(database_url)
    print(f"history: {[(r[0], r[5]) for r in rows]}")
    assert [(r[1], r[5]) for r in rows] == [(1, "applied"), (2, "applied"), (3, "applied")]
    assert table_exists(database_url, "online_table") and table_exists(database_url, "third_table")
    repairs = query(
        database_url,
        """SELECT version, outcome FROM schema_version_events
                                      WHERE action = 'repair'""",
    )
    print(f"repair events: {repairs}")
    assert repairs == [("1.2.0", "ok")]


def test_held_lock_times_out_naming_the_holder_then_succeeds_once_released(
    project: Project, database_url: str
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    with psycopg.connect(database_url, autocommit=True, application_name="test-lock-holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        print(
            f"another session (pid {pid}, application_name test-lock-holder) holds "
            f"pg_advisory_lock({LOCK_KEY})"
        )

        began = time.monotonic()
        timed_out = project.run("--lock-timeout", "1", "up", url=database_url)
        took = time.monotonic() - began
        show(f"--lock-timeout 1 up (took {took:.2f} s)", timed_out)
        assert timed_out.returncode == 4
        assert f"pid {pid}" in timed_out.stderr
        assert "test-lock-holder" in timed_out.stderr
        assert 1 <= took < 15
        assert not table_exists(database_url, "schema_version"), "nothing happens without the lock"

        proc = start(project, "--lock-timeout", "10", "up", url=database_url)
        print(f"started `sqlmig --lock-timeout 10 up` as pid {proc.pid}")
        wait_for(
            "sqlmig polls the advisory lock",
            lambda: any("pg_try_advisory_lock" in b[4] for b in sqlmig_backends(database_url)),
            timeout=20,
        )
        time.sleep(1)
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        print("released the lock after 1 s")
        out, err = proc.communicate(timeout=30)
        show("--lock-timeout 10 up", (proc.returncode, out, err))
        assert proc.returncode == 0
        assert "applied 001_first (1.1.0)" in out
    assert [(r[0], r[5]) for r in history_rows(database_url)] == [("1.1.0", "applied")]
    assert not lock_holders(database_url), "the run releases its lock when it ends"
