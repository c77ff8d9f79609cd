"""Runners racing on one database: readers beside writers, `up` against `down`.

(Eight concurrent `up` runners, SIGKILL during a migration and a held lock are in
tests/integration/test_concurrency.py; these tests mix the commands.)
"""

from __future__ import annotations

import json
import random
import subprocess
import time

from tests.conftest import Project, query, table_exists
from tests.integration.test_concurrency import (
    history_rows,
    lock_holders,
    show,
    six_migrations,
    start,
)
from tests.torture.helpers import run


def finish(label: str, proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    show(label, (proc.returncode, out, err))
    return proc.returncode, out, err


def test_eight_mixed_up_status_validate_runners_exit_0_and_apply_each_migration_once(
    project: Project, database_url: str, second_database_url: str
) -> None:
    six_migrations(project)  # 6 migrations, three of them sleep 0.2 s
    # The readers start while the writers run, at different points of the run: before the
    # history table exists, while it is being created, between migrations, after the end.
    kinds = ["up", "status", "validate", "up", "status", "validate", "up", "status"]
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    began = time.monotonic()
    for kind in kinds:
        args = ("up",) if kind == "up" else (kind, "--json")
        procs.append((kind, start(project, *args, url=database_url)))
        time.sleep(0.15)
    print(f"started {kinds} at 0.15 s intervals: pids {[p.pid for _, p in procs]}")
    results = [(kind, *finish(f"{kind} #{i}", proc)) for i, (kind, proc) in enumerate(procs)]
    print(f"all done after {time.monotonic() - began:.2f} s")

    assert [rc for _, rc, _, _ in results] == [0] * 8, "every runner exits 0 (the ups wait)"
    applied = sorted(
        line.split()[1]
        for kind, _, out, _ in results
        if kind == "up"
        for line in out.splitlines()
        if line.startswith("applied ")
    )
    print(f"'applied' lines over the 3 ups: {applied}")
    assert applied == [
        "001_accounts",
        "002_orders",
        "003_audit",
        "004_accounts_name",
        "005_orders_index",
        "006_counters",
    ], "each migration applied exactly once"
    for kind, _, out, _ in results:
        if kind == "status":
            report = json.loads(out)
            print(
                f"status saw {len(report['applied'])} applied + {len(report['pending'])} pending "
                f"at {report['current_version']}, problems {report['problems']}"
            )
            assert len(report["applied"]) + len(report["pending"]) == 6, "a consistent read"
            assert report["problems"] == []
        elif kind == "validate":
            assert json.loads(out)["ok"] is True

    single = run(project, "up", url=second_database_url, label="up (one runner, reference)")
    assert single.returncode == 0
    assert history_rows(database_url) == history_rows(second_database_url), (
        "the history of the race is the history of a single run"
    )
    counts = query(
        database_url,
        """SELECT action, outcome, count(*) FROM schema_version_events
                                     GROUP BY 1, 2 ORDER BY 1, 2""",
    )
    print(f"events: {counts}")
    assert counts == [("up", "applied", 6)]
    assert not lock_holders(database_url)


# -- up racing down ------------------------------------------------------------------------------

N = 6


def paired_migrations(project: Project) -> None:
    """Migration n creates t{n}_a, sleeps, creates t{n}_b; its rollback undoes both the same way.
    Number 4 runs without a transaction, statement by statement."""
    for n in range(1, N + 1):
        header = "-- sqlmig: no-transaction\n" if n == 4 else ""
        project.add(
            n,
            f"pair_{n}",
            f"CREATE TABLE t{n}_a (id int);\nSELECT pg_sleep(0.1);\nCREATE TABLE t{n}_b (id int);\n",
            f"{header}DROP TABLE t{n}_b;\nSELECT pg_sleep(0.1);\nDROP TABLE t{n}_a;\n",
            header=header,
        )


def consistent_state(url: str) -> int:
    """Check the history and the schema agree; return how many migrations are applied."""
    rows = query(url, "SELECT number, status FROM schema_version ORDER BY number")
    tables = {n: (table_exists(url, f"t{n}_a"), table_exists(url, f"t{n}_b")) for n in range(1, N + 1)}
    print(f"  rows {rows}; tables (a, b) {tables}")
    assert all(status == "applied" for _, status in rows), "no migration left half-done"
    applied = [n for n, _ in rows]
    assert applied == list(range(1, len(applied) + 1)), "the applied ones are 1..k"
    for n, (a, b) in tables.items():
        assert a == b == (n in applied), f"migration {n}: tables {a, b} but applied={n in applied}"
    net = dict(
        query(
            url,
            """SELECT version, sum(CASE WHEN action = 'up' THEN 1 ELSE -1 END)
                                FROM schema_version_events
                               WHERE (action, outcome) IN (('up', 'applied'), ('down', 'reverted'))
                               GROUP BY version""",
        )
    )
    assert {v for v, k in net.items() if k} == {f"1.{n}.0" for n in applied}, (
        f"event log (ups minus downs per version): {net}"
    )
    assert all(k in (0, 1) for k in net.values()), f"event log: {net}"
    assert not lock_holders(url), "the lock is free once both runners are done"
    return len(applied)


def test_up_racing_down_each_completes_or_exits_4_and_leaves_a_consistent_state(
    project: Project, database_url: str
) -> None:
    paired_migrations(project)
    assert run(project, "up", url=database_url).returncode == 0
    assert consistent_state(database_url) == N
    seed = random.randrange(2**32)
    print(f"random seed {seed} (rounds differ in who starts first, the gap and the lock wait)")
    rng = random.Random(seed)
    for round_ in range(4):
        before = consistent_state(database_url)
        wait = rng.choice(["0", "30"])  # 0: whoever comes second gives up at once (exit 4)
        order = rng.sample(["up", "down"], 2)
        gap = rng.uniform(0, 0.4)
        print(
            f"round {round_}: at {before} applied; {order[0]} then {order[1]} {gap:.2f} s "
            f"later, --lock-timeout {wait}"
        )
        procs = {}
        for i, kind in enumerate(order):
            args = ("up",) if kind == "up" else ("down", "--steps", "2")
            procs[kind] = start(project, "--lock-timeout", wait, *args, url=database_url)
            if i == 0:
                time.sleep(gap)
        codes = {kind: finish(f"round {round_}: {kind}", proc)[0] for kind, proc in procs.items()}
        assert set(codes.values()) <= ({0, 4} if wait == "0" else {0}), codes
        assert 0 in codes.values(), "one of them holds the lock first and completes"
        after = consistent_state(database_url)
        # The result is that of the two runs one after the other, in one order or the other.
        if codes == {"up": 0, "down": 0}:
            expected = {N - 2, N}  # up then down, or down then up
        elif codes["up"] == 0:
            expected = {N}
        else:
            expected = {before - 2}
        print(f"round {round_}: exit codes {codes}; {after} applied (expected one of {expected})")
        assert after in expected
