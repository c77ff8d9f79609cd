"""`--lock-mode session|transaction` through a real PgBouncer in transaction pooling mode.

Behind `pool_mode = transaction` each transaction may run on another server connection: a
session advisory lock is held by whichever server session ran `pg_advisory_lock`, not by the
runner. These tests start their own PgBouncer (tests/pgbouncer.py: pool of 2 server connections
per database, so the runners really share them) and show the trap in session mode, and that
transaction mode (a transaction-level lock per migration, a lease for no-transaction files) keeps
every migration applied exactly once. Skipped when no `pgbouncer` binary is installed
(`./test.sh` installs the Debian package when it runs as root with apt).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from sqlmig.db.connect import connect
from sqlmig.db.history import History
from sqlmig.locking.session import lock_key, release
from sqlmig.locking.transaction import TransactionLock
from tests import pgbouncer
from tests.conftest import Project, query, table_exists
from tests.integration.test_concurrency import (
    LOCK_KEY,
    applied_events,
    history_rows,
    lock_holders,
    show,
    six_migrations,
    start,
    wait_for,
)

TX = ("--lock-mode", "transaction")


@pytest.fixture(scope="module")
def bouncer(server_dsn: str) -> Iterator[pgbouncer.PgBouncer]:
    if pgbouncer.find() is None:
        pytest.skip(
            "pgbouncer is not installed (Debian: apt-get install pgbouncer; ./test.sh "
            "installs it when run as root with apt)"
        )
    with pgbouncer.running(server_dsn, pool_size=2) as running:
        print(
            f"pgbouncer on 127.0.0.1:{running.port}, pool_mode=transaction, "
            f"default_pool_size={running.pool_size}"
        )
        yield running


def run_all(procs: list, what: str) -> list[tuple[int, str, str]]:
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
        show(f"{what} #{i}", results[-1])
    return results


def lines(results: list[tuple[int, str, str]], prefix: str) -> list[str]:
    return [line for _, out, _ in results for line in out.splitlines() if line.startswith(prefix)]


def lease_rows(url: str) -> list[tuple]:
    return query(url, "SELECT holder, action, version FROM schema_version_lease")


def server_sessions(url: str) -> int:
    return query(
        url,
        """SELECT count(*) FROM pg_stat_activity
                          WHERE datname = current_database() AND pid <> pg_backend_pid()""",
    )[0][0]


def assert_each_applied_once(
    results: list[tuple[int, str, str]], names: list[str], url: str, reference_url: str
) -> None:
    assert [rc for rc, _, _ in results] == [0] * len(results), "every runner must exit 0"
    applied = lines(results, "applied ")
    print(f"'applied' lines over all runners: {applied}")
    print(f"'skipped' lines (done by another runner meanwhile): {len(lines(results, 'skipped '))}")
    assert sorted(line.split()[1] for line in applied) == names, (
        "each migration is applied by exactly one runner"
    )
    rows = history_rows(url)
    print(f"history: {[(r[0], r[2], r[5]) for r in rows]}")
    events = applied_events(url)
    print(f"'up applied' events per version: {events}")
    assert events == {r[0]: 1 for r in rows}
    assert len(rows) == len(names)
    assert rows == history_rows(reference_url), "same history as a single run"
    assert not lock_holders(url), "no server session keeps the lock"
    assert lease_rows(url) == []


# -- (1) and (2): many runners in transaction mode ----------------------------------------------


def test_eight_transaction_mode_runners_through_pgbouncer_apply_each_migration_once(
    project: Project, database_url: str, second_database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    six_migrations(project)
    url = bouncer.url(database_url)
    reference = project.run("up", url=second_database_url)
    show("up (one runner, direct, reference database)", reference)
    assert reference.returncode == 0

    procs = [start(project, *TX, "up", url=url) for _ in range(8)]
    print(f"started 8 `sqlmig --lock-mode transaction up` through pgbouncer: {[p.pid for p in procs]}")
    peak = 0
    while any(p.poll() is None for p in procs):
        peak = max(peak, server_sessions(database_url))
        time.sleep(0.05)
    print(f"server sessions on the database during the run: at most {peak} (pool size {bouncer.pool_size})")
    assert peak <= bouncer.pool_size, "8 runners shared the pool's server connections"
    results = run_all(procs, "--lock-mode transaction up")
    assert_each_applied_once(
        results,
        ["001_accounts", "002_orders", "003_audit", "004_accounts_name", "005_orders_index", "006_counters"],
        database_url,
        second_database_url,
    )
    assert query(database_url, "SELECT count(*) FROM accounts") == [(1,)]
    assert query(database_url, "SELECT name, n FROM counters") == [("accounts", 0)]
    status = project.run(*TX, "status", "--exit-code", url=url)
    show("--lock-mode transaction status --exit-code", status)
    assert status.returncode == 0, "nothing pending, and the snapshot recorded matches (no drift)"


def test_eight_runners_with_a_no_transaction_file_then_three_concurrent_downs(
    project: Project, database_url: str, second_database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    six_migrations(project)
    project.add(
        7,
        "orders_online_index",
        """
        SELECT pg_sleep(1.5);
        CREATE INDEX CONCURRENTLY orders_account_online ON orders (account_id);
    """,
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY orders_account_online;",
        header="-- sqlmig: no-transaction\n",
    )
    project.add(8, "after_online", "CREATE TABLE after_online (id int);", "DROP TABLE after_online;")
    url = bouncer.url(database_url)
    reference = project.run("up", url=second_database_url)
    assert reference.returncode == 0

    procs = [start(project, *TX, "up", url=url) for _ in range(8)]
    print(f"started 8 runners: {[p.pid for p in procs]}; waiting for the lease of 007")
    wait_for(
        "a runner holds the lease for 007",
        lambda: any(
            r[2] == "1.7.0"
            for r in (lease_rows(database_url) if table_exists(database_url, "schema_version_lease") else [])
        ),
        timeout=60,
    )
    holder = lease_rows(database_url)
    print(f"lease while 007 runs: {holder}")
    results = run_all(procs, "--lock-mode transaction up")
    assert_each_applied_once(
        results,
        [
            "001_accounts",
            "002_orders",
            "003_audit",
            "004_accounts_name",
            "005_orders_index",
            "006_counters",
            "007_orders_online_index",
            "008_after_online",
        ],
        database_url,
        second_database_url,
    )
    valid = query(
        database_url,
        """SELECT indisvalid FROM pg_index
                                    WHERE indexrelid = 'orders_account_online'::regclass""",
    )
    assert valid == [(True,)]
    lease_events = query(
        database_url,
        """SELECT outcome FROM schema_version_events
                                           WHERE action = 'lease'""",
    )
    assert lease_events == [], "no lease expired: the holder kept it and released it"

    downs = [start(project, *TX, "down", "--to", "0", url=url) for _ in range(3)]
    results = run_all(downs, "--lock-mode transaction down --to 0")
    assert [rc for rc, _, _ in results] == [0, 0, 0]
    reverted = query(
        database_url,
        """SELECT version, count(*) FROM schema_version_events
                                       WHERE action = 'down' AND outcome = 'reverted'
                                       GROUP BY version""",
    )
    print(f"'down reverted' events per version: {reverted}")
    assert sorted(reverted) == [(f"1.{n}.0", 1) for n in range(1, 9)], "each rollback ran exactly once"
    assert history_rows(database_url) == []
    assert not table_exists(database_url, "accounts")


# -- (3): why: the session lock through transaction pooling -----------------------------------


def test_session_mode_through_transaction_pooling_loses_its_lock_and_says_so(
    project: Project, database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    """Pool of 2 server connections, S1 and S2. The test pins S1 in an open transaction, so
    sqlmig takes its session lock on S2; while the migration sleeps, a second client queues
    for S2 and gets it when the migration commits; then S1 is freed, so the rest of the run,
    unlock included, lands on S1. Every step is forced by the pool, not by timing."""
    project.add(
        1,
        "slow",
        """
        CREATE TABLE slow_table (id int);
        SELECT pg_sleep(2);
    """,
        "DROP TABLE slow_table;",
    )
    url = bouncer.url(database_url)
    with (
        psycopg.connect(url, autocommit=True, application_name="test-pin-s1") as pin1,
        psycopg.connect(url, autocommit=True, application_name="test-pin-s2") as pin2,
    ):
        pin1.execute("BEGIN")
        s1 = pin1.execute("SELECT pg_backend_pid()").fetchone()[0]
        print(f"test client pins server session {s1} (S1) in an open transaction")
        proc = start(project, "--lock-mode", "session", "up", url=url)

        def sleeping() -> bool:
            return bool(
                query(
                    database_url,
                    """SELECT 1 FROM pg_stat_activity
                                                WHERE query LIKE 'SELECT pg_sleep(2)%%'
                                                  AND state = 'active'""",
                )
            )

        wait_for("sqlmig's migration sleeps on S2", sleeping, timeout=30)
        taken = lock_holders(database_url)
        print(f"session lock held by server session(s) {taken}")
        assert taken and s1 not in taken
        got: list[int] = []

        def pin_s2() -> None:
            pin2.execute("BEGIN")  # waits in pgbouncer until the migration's transaction ends
            got.append(pin2.execute("SELECT pg_backend_pid()").fetchone()[0])

        thread = threading.Thread(target=pin_s2)
        thread.start()
        thread.join(timeout=30)
        print(f"second test client got server session {got} (S2) after the migration committed")
        assert got == taken
        pin1.execute("COMMIT")
        print("S1 freed: the rest of sqlmig's run goes there")
        out, err = proc.communicate(timeout=60)
        show("--lock-mode session up (through pool_mode=transaction)", (proc.returncode, out, err))
        assert proc.returncode == 0
        assert "applied 001_slow (1.1.0)" in out
        assert "pg_advisory_unlock returned false" in err
        assert "--lock-mode transaction" in err
        left = lock_holders(database_url)
        print(f"after sqlmig exited, the lock is still held by server session(s) {left}")
        assert left == taken, "the pooled server session keeps the lock after the run"
        pin2.execute("COMMIT")
    events = query(database_url, "SELECT outcome FROM schema_version_events WHERE action = 'up'")
    assert events == [("applied",)]


def test_transaction_mode_waits_for_a_transaction_lock_held_through_pgbouncer(
    project: Project, database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    url = bouncer.url(database_url)
    with psycopg.connect(url, autocommit=True, application_name="test-lock-holder") as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        print("a client holds pg_advisory_xact_lock in an open transaction through pgbouncer")
        began = time.monotonic()
        blocked = project.run(*TX, "--lock-timeout", "1", "up", url=url)
        show(f"--lock-mode transaction --lock-timeout 1 up ({time.monotonic() - began:.1f} s)", blocked)
        assert blocked.returncode == 4
        assert "test-lock-holder" in blocked.stderr
        assert not query(database_url, "SELECT to_regclass('first_table')")[0][0]
        holder.execute("COMMIT")
    done = project.run(*TX, "up", url=url)
    show("--lock-mode transaction up", done)
    assert done.returncode == 0 and "applied 001_first (1.1.0)" in done.stdout


# -- (4): the unlock result is checked ---------------------------------------------------------


def test_session_mode_reports_a_lock_lost_during_the_run(project: Project, database_url: str) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    project.add(2, "unlock", "SELECT pg_advisory_unlock_all();", "SELECT 1;")
    result = project.run("up", url=database_url)
    show("up (a migration releases every advisory lock of its session)", result)
    assert result.returncode == 0
    assert (
        "warning: the migration lock was not held at the end of this run: "
        "pg_advisory_unlock returned false" in result.stderr
    )


def test_release_returns_a_warning_when_the_lock_is_not_held(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        assert release(conn, lock_key("public.schema_version"), pid) is not None
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert release(conn, LOCK_KEY, pid) is None
        moved = release(conn, LOCK_KEY, pid + 1)
        assert moved is not None and "--lock-mode transaction" in moved.message


# -- the lease ----------------------------------------------------------------------------------


def test_a_live_lease_outlasts_its_ttl_by_heartbeats_and_keeps_other_runners_out(
    project: Project, database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    url = bouncer.url(database_url)
    config = project.config(url, lock_mode="transaction")
    conn = connect(config)
    try:
        history = History("public", "schema_version", step_clock=True)
        runner = TransactionLock(
            conn,
            history,
            key=LOCK_KEY,
            timeout=5,
            what="test",
            reconnect=lambda: connect(config),
            ttl=1.0,
            heartbeat=0.2,
        )
        runner.setup()
        with runner.hold_lease("test", "a long no-transaction step"):
            time.sleep(1.5)  # longer than the TTL: only the heartbeats keep the lease
            print(f"lease after 1.5 s: {lease_rows(database_url)}")
            blocked = project.run(*TX, "--lock-timeout", "1", "up", url=url)
            show("--lock-mode transaction --lock-timeout 1 up (lease held)", blocked)
            assert blocked.returncode == 4
            assert runner.holder in blocked.stderr and "lease" in blocked.stderr
        assert runner.warnings == [], "the lease was never lost"
        assert lease_rows(database_url) == []
    finally:
        conn.close()
    done = project.run(*TX, "up", url=url)
    assert done.returncode == 0 and "applied 001_first (1.1.0)" in done.stdout


def _dead_lease(url: str, version: str, name: str) -> None:
    query(
        url,
        """INSERT INTO schema_version_lease (holder, action, version, name, client_host,
                      application_name, acquired_at, heartbeat_at, expires_at)
                  VALUES ('deadhost:4242:0badcafe', 'up', %s, %s, 'deadhost', 'sqlmig',
                          now() - interval '5 min', now() - interval '2 min',
                          now() - interval '90 s')""",
        (version, name),
    )


def test_an_expired_lease_is_reported_then_taken_over_and_its_started_step_blocks(
    project: Project, database_url: str, bouncer: pgbouncer.PgBouncer
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);", "DROP TABLE first_table;")
    project.add(
        2,
        "online",
        "CREATE INDEX CONCURRENTLY first_id ON first_table (id);",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY first_id;",
        header="-- sqlmig: no-transaction\n",
    )
    project.add(3, "third", "CREATE TABLE third_table (id int);", "DROP TABLE third_table;")
    url = bouncer.url(database_url)
    first = project.run(*TX, "up", "--to", "1", url=url)
    assert first.returncode == 0
    # A runner died while 002 ran: its `started` row and its lease, long expired.
    query(
        database_url,
        """INSERT INTO schema_version (version, number, name, status,
                               transactional) VALUES ('1.2.0', 2, '002_online', 'started', false)""",
    )
    _dead_lease(database_url, "1.2.0", "002_online")

    blocked = project.run(*TX, "up", url=url)
    show("--lock-mode transaction up (dead runner's lease and started row)", blocked)
    assert blocked.returncode == 6
    assert "`started`" in blocked.stderr
    assert "deadhost:4242:0badcafe" in blocked.stderr and "expired" in blocked.stderr
    assert lease_rows(database_url) == [], "reported (event), then taken over"
    assert not table_exists(database_url, "third_table"), "the started row blocks the run"

    repaired = project.run(*TX, "repair", "--remove", "1.2.0", url=url)
    show("--lock-mode transaction repair --remove 1.2.0", repaired)
    assert repaired.returncode == 0

    _dead_lease(database_url, "1.9.0", "009_gone")  # died after its step was resolved
    done = project.run(*TX, "up", url=url)
    show("--lock-mode transaction up (after repair)", done)
    assert done.returncode == 0
    assert "warning: the lease of a runner that stopped renewing it expired" in done.stderr
    assert "applied 002_online (1.2.0)" in done.stdout and "applied 003_third" in done.stdout
    events = query(
        database_url,
        """SELECT version, outcome FROM schema_version_events
                                     WHERE action = 'lease' ORDER BY id""",
    )
    print(f"lease events: {events}")
    assert events == [("1.2.0", "expired"), ("1.9.0", "expired")]
    assert lease_rows(database_url) == []


def test_the_history_fingerprint_is_the_same_in_sql_and_in_python(
    project: Project, database_url: str
) -> None:
    """Transaction mode skips the full re-read only when they agree: they must, or every
    migration would pay for reading the whole history."""
    from sqlmig.db.history import fingerprint

    six_migrations(project)
    assert project.run(*TX, "up", "--to", "4", url=database_url).returncode == 0
    history = History("public", "schema_version")
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT version, status, checksum FROM schema_version").fetchall()
        conn.execute("UPDATE schema_version SET checksum = NULL WHERE version = '1.2.0'")
        rows_null = conn.execute("SELECT version, status, checksum FROM schema_version").fetchall()
        count, digest = conn.execute(history.fingerprint_query()).fetchone()
    assert count == 4 and len(rows) == 4
    assert digest == fingerprint(rows_null) != fingerprint(rows)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE schema_version")
        assert conn.execute(history.fingerprint_query()).fetchone() == (0, fingerprint([]))
