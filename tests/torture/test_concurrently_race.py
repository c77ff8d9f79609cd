"""Sixteen runners racing a CREATE INDEX CONCURRENTLY build, and a DROP INDEX CONCURRENTLY rollback.

A runner that waits for the migration lock must hold no snapshot: CREATE INDEX CONCURRENTLY
waits for every transaction with an older snapshot to end, so a waiter blocked inside
`SELECT pg_advisory_lock(...)` and the builder that holds the lock wait for each other
("deadlock detected"; with 16 runners the build itself can be the victim and leave an INVALID
index). Every round starts 16 `up` runners at once on a fresh database with 50 migrations, 5 of
them no-transaction index builds on tables with rows; every runner must exit 0 (or 4, lock
timeout), each migration be applied exactly once, and no index be left invalid. Session lock
mode, transaction lock mode, and transaction lock mode through a real PgBouncer.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests import pgbouncer
from tests.conftest import Project, fresh_database, query
from tests.integration.test_concurrency import show, start

RUNNERS = 16
MIGRATIONS = 50
BUILDS = (10, 20, 30, 40, 50)  # the no-transaction CREATE INDEX CONCURRENTLY migrations
ROUNDS = int(os.environ.get("SQLMIG_TORTURE_ROUNDS", "20"))
TX = ("--lock-mode", "transaction")


def fifty_migrations(project: Project) -> list[str]:
    """5 tables of 20,000 rows, small DDL, and 5 concurrent index builds, one on each table."""
    names = []
    for n in range(1, MIGRATIONS + 1):
        if n in BUILDS:
            table = f"t{BUILDS.index(n)}"
            # The pause widens the window in which other runners are waiting for the lock.
            project.add(
                n,
                f"index_{table}",
                f"SELECT pg_sleep(0.2);\nCREATE INDEX CONCURRENTLY {table}_v ON {table} (v);\n",
                None,
                header="-- sqlmig: no-transaction\n",
            )
            (project.rollbacks / f"{n:03d}_index_{table}_rollback.sql").write_text(
                f"-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY {table}_v;\n"
            )
            names.append(f"{n:03d}_index_{table}")
        elif n <= len(BUILDS):
            table = f"t{n - 1}"
            project.add(
                n,
                f"table_{table}",
                f"CREATE TABLE {table} (id int PRIMARY KEY, v int);\n"
                f"INSERT INTO {table} SELECT g, g % 97 FROM generate_series(1, 20000) g;\n",
                f"DROP TABLE {table};\n",
            )
            names.append(f"{n:03d}_table_{table}")
        else:
            project.add(n, f"c{n}", f"CREATE TABLE c{n} (id int);\n", f"DROP TABLE c{n};\n")
            names.append(f"{n:03d}_c{n}")
    return sorted(names)


def invalid_indexes(url: str) -> list[str]:
    return [r[0] for r in query(url, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")]


def finish_all(procs: list[subprocess.Popen[str]], label: str) -> list[tuple[int, str, str]]:
    results = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
        if proc.returncode not in (0, 4):
            show(f"{label} runner #{i}", results[-1])
    return results


def assert_round(url: str, results: list[tuple[int, str, str]], names: list[str], label: str) -> None:
    codes = [rc for rc, _, _ in results]
    assert all(rc in (0, 4) for rc in codes), f"{label}: exit codes {codes}"
    applied = sorted(
        line.split()[1] for _, out, _ in results for line in out.splitlines() if line.startswith("applied ")
    )
    assert applied == names, f"{label}: each migration applied by exactly one runner"
    history = query(url, "SELECT version, status FROM schema_version ORDER BY number")
    assert len(history) == MIGRATIONS and {s for _, s in history} == {"applied"}, label
    events = query(
        url, "SELECT count(*) FROM schema_version_events WHERE action = 'up' AND outcome = 'applied'"
    )
    assert events == [(MIGRATIONS,)], label
    assert invalid_indexes(url) == [], f"{label}: an index was left INVALID"
    built = query(url, "SELECT count(*) FROM pg_indexes WHERE indexname ~ '^t[0-9]_v$'")
    assert built == [(len(BUILDS),)], label


@pytest.fixture
def bouncer(server_dsn: str) -> Iterator[pgbouncer.PgBouncer]:
    if pgbouncer.find() is None:
        pytest.skip("pgbouncer is not installed (./test.sh installs it when run as root)")
    # A pool as large as the runners: the point here is the lock, not the pool's queue.
    with pgbouncer.running(server_dsn, pool_size=RUNNERS + 2) as running:
        yield running


def race(
    project: Project,
    server_dsn: str,
    names: list[str],
    args: tuple[str, ...],
    label: str,
    through: pgbouncer.PgBouncer | None = None,
) -> None:
    began = time.monotonic()
    for r in range(ROUNDS):
        with fresh_database(server_dsn) as url:
            target = through.url(url) if through is not None else url
            procs = [start(project, *args, "up", url=target) for _ in range(RUNNERS)]
            assert_round(url, finish_all(procs, f"{label} round {r}"), names, f"{label} round {r}")
    print(f"{label}: {ROUNDS} rounds of {RUNNERS} runners in {time.monotonic() - began:.1f} s")


def test_sixteen_session_mode_runners_never_deadlock_a_concurrent_index_build(
    project: Project, server_dsn: str
) -> None:
    race(project, server_dsn, fifty_migrations(project), (), "session mode")


def test_sixteen_transaction_mode_runners_never_deadlock_a_concurrent_index_build(
    project: Project, server_dsn: str
) -> None:
    race(project, server_dsn, fifty_migrations(project), TX, "transaction mode")


def test_sixteen_transaction_mode_runners_through_pgbouncer_never_deadlock_an_index_build(
    project: Project, server_dsn: str, bouncer: pgbouncer.PgBouncer
) -> None:
    race(
        project, server_dsn, fifty_migrations(project), TX, "transaction mode via pgbouncer", through=bouncer
    )


@pytest.mark.parametrize("mode", [(), TX], ids=["session", "transaction"])
def test_a_drop_index_concurrently_rollback_racing_sixteen_ups_leaves_every_index_valid(
    project: Project, server_dsn: str, mode: tuple[str, ...]
) -> None:
    names = fifty_migrations(project)
    for r in range(max(1, ROUNDS // 4)):
        with fresh_database(server_dsn) as url:
            assert project.run(*mode, "up", url=url).returncode == 0
            # Down to before 040: rolls back 050 and 040, whose rollbacks DROP INDEX
            # CONCURRENTLY, while sixteen ups start behind it and apply them again.
            down = start(project, *mode, "down", "--to", "1.39.0", url=url)
            time.sleep(0.1)
            ups = [start(project, *mode, "up", url=url) for _ in range(RUNNERS)]
            results = finish_all([down, *ups], f"down+ups round {r}")
            codes = [rc for rc, _, _ in results]
            assert all(rc in (0, 4) for rc in codes), f"round {r}: exit codes {codes}"
            assert invalid_indexes(url) == [], f"round {r}: an index was left INVALID"
            history = query(
                url, "SELECT count(*), count(DISTINCT version) FROM schema_version WHERE status = 'applied'"
            )
            assert history == [(MIGRATIONS, MIGRATIONS)], f"round {r}: {history}"
            assert len(names) == MIGRATIONS
