"""Transactional migrations run back to back: each one's statements go out while the server still
runs the one before (one pipeline, no round trip between them), and each is still its own
transaction: after a failure the earlier ones stay, the failed one leaves nothing, and no later
one runs, whatever the failure (a statement, the COMMIT, a lock timeout that is retried)."""

from __future__ import annotations

import psycopg
import pytest

import sqlmig
from tests.conftest import Project, query, table_exists
from tests.listen import listen


def events(url: str) -> list[tuple[str, str]]:
    return [
        (name, outcome)
        for name, outcome in query(url, "SELECT name, outcome FROM schema_version_events ORDER BY id")
    ]


def applied(url: str) -> list[str]:
    return [v for (v,) in query(url, "SELECT version FROM schema_version ORDER BY number")]


def five(project: Project, third: str) -> None:
    for n in (1, 2, 4, 5):
        project.add(n, f"create_t{n}", f"CREATE TABLE t{n} (id int);\n", f"DROP TABLE t{n};\n")
    project.add(3, "third", third, "DROP TABLE t3;\n")


def test_a_failing_statement_keeps_the_earlier_ones_and_runs_none_after(
    project: Project, database_url: str
) -> None:
    five(project, "CREATE TABLE t3 (id int);\nSELECT 1 / 0;\n")
    done: list[str] = []

    with pytest.raises(sqlmig.MigrationFailed) as failed:
        sqlmig.up(project.config(database_url), progress=listen(finished=lambda r: done.append(r.name)))

    error = failed.value
    assert (error.path, error.line, error.column, error.sqlstate) == (
        "migrations/003_third.sql",
        3,
        1,
        "22012",
    )
    assert error.applied_before == ["001_create_t1", "002_create_t2"] == done
    assert applied(database_url) == ["1.1.0", "1.2.0"]
    assert [table_exists(database_url, f"t{n}") for n in range(1, 6)] == [True, True, False, False, False]
    assert events(database_url)[-3:] == [
        ("001_create_t1", "applied"),
        ("002_create_t2", "applied"),
        ("003_third", "failed"),
    ]


def test_a_failing_commit_stops_the_run_too(project: Project, database_url: str) -> None:
    # A deferred foreign key is checked at COMMIT: the statements all succeed, the COMMIT fails.
    five(
        project,
        """
        CREATE TABLE t3 (id int PRIMARY KEY,
                         parent int REFERENCES t3 DEFERRABLE INITIALLY DEFERRED);
        INSERT INTO t3 VALUES (1, 42);
        """,
    )

    with pytest.raises(sqlmig.MigrationFailed) as failed:
        sqlmig.up(project.config(database_url))

    assert (failed.value.path, failed.value.sqlstate) == ("migrations/003_third.sql", "23503")
    assert applied(database_url) == ["1.1.0", "1.2.0"]
    assert [table_exists(database_url, f"t{n}") for n in range(1, 6)] == [True, True, False, False, False]


def test_a_step_blocked_in_a_batch_is_retried_and_the_rest_follows(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_t", "CREATE TABLE t (id int);\n", "DROP TABLE t;\n")
    sqlmig.up(project.config(database_url))
    for n, sql in (
        (2, "CREATE TABLE u (id int);\n"),
        (3, "ALTER TABLE t ADD COLUMN note text;\n"),
        (4, "CREATE TABLE v (id int);\n"),
    ):
        project.add(n, f"step_{n}", sql, "SELECT 1;\n")
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    notices: list[sqlmig.RetryNotice] = []

    def release(notice: sqlmig.RetryNotice) -> None:
        notices.append(notice)
        holder.rollback()  # the lock goes before the retry

    try:
        report = sqlmig.up(
            project.config(database_url, migration_lock_timeout="100ms", retries=2, retry_delay=0.05),
            progress=listen(retrying=release),
        )
    finally:
        holder.close()

    assert [(n.name, n.attempt, n.sqlstate) for n in notices] == [("003_step_3", 1, "55P03")]
    assert [s.name for s in report.steps] == ["002_step_2", "003_step_3", "004_step_4"]
    assert applied(database_url) == ["1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    assert events(database_url)[-5:] == [
        ("002_step_2", "applied"),
        ("003_step_3", "failed"),
        ("003_step_3", "retrying"),
        ("003_step_3", "applied"),
        ("004_step_4", "applied"),
    ]


def test_each_step_reports_its_own_result_in_order(project: Project, database_url: str) -> None:
    for n in range(1, 8):
        project.add(
            n,
            f"create_t{n}",
            f"CREATE TABLE t{n} (id int);\n" if n != 4 else "-- empty\n",
            f"DROP TABLE IF EXISTS t{n};\n",
        )
    started: list[str] = []
    finished: list[sqlmig.StepResult] = []

    report = sqlmig.up(
        project.config(database_url),
        progress=listen(started=lambda s: started.append(s.name), finished=finished.append),
    )

    names = [f"00{n}_create_t{n}" for n in range(1, 8)]
    assert started == [r.name for r in finished] == [s.name for s in report.steps] == names
    assert all(isinstance(r.duration_ms, int) and r.duration_ms >= 0 for r in finished)
    assert [bool(r.warnings) for r in finished] == [n == 4 for n in range(1, 8)]
    assert applied(database_url) == [f"1.{n}.0" for n in range(1, 8)]


def test_a_large_file_among_small_ones_runs_on_its_own_sent_in_parts(
    project: Project, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmig.engine import batch, execute

    monkeypatch.setattr(batch, "_BATCH_CHARS", 300)  # 003 is "large": it runs alone
    monkeypatch.setattr(execute, "_SYNC_EVERY", 200)  # and its results are taken in parts
    rows = "".join(f"INSERT INTO t3 VALUES ({i});\n" for i in range(40))
    five(project, "CREATE TABLE t3 (id int PRIMARY KEY);\n" + rows + "INSERT INTO t3 VALUES (7);\n")

    with pytest.raises(sqlmig.MigrationFailed) as failed:
        sqlmig.up(project.config(database_url))

    assert (failed.value.path, failed.value.line, failed.value.sqlstate) == (
        "migrations/003_third.sql",
        43,
        "23505",
    )
    assert applied(database_url) == ["1.1.0", "1.2.0"]
    project.add(3, "third", "CREATE TABLE t3 (id int PRIMARY KEY);\n" + rows, "DROP TABLE t3;\n")
    sqlmig.up(project.config(database_url))
    assert applied(database_url) == ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]
    assert query(database_url, "SELECT count(*) FROM t3") == [(40,)]


# -- rollbacks, back to back too (issue 19) --------------------------------------------------------


def test_rollbacks_go_back_to_back_and_each_reports_in_order(project: Project, database_url: str) -> None:
    five(project, "CREATE TABLE t3 (id int);\n")
    sqlmig.up(project.config(database_url))
    seen: list[tuple[str, list[bool]]] = []

    def on_step(step: sqlmig.PlanStep) -> None:  # what the server had done when it was reported
        seen.append((step.name, [table_exists(database_url, f"t{n}") for n in range(1, 6)]))

    report = sqlmig.down(project.config(database_url), to="0", progress=listen(started=on_step))

    assert [s.name for s in report.steps] == [
        "005_create_t5",
        "004_create_t4",
        "003_third",
        "002_create_t2",
        "001_create_t1",
    ]
    assert all(isinstance(s.duration_ms, int) and s.duration_ms >= 0 for s in report.steps)
    # The first step is reported before anything runs; by the second, all five had run in one
    # pipeline (one at a time, the others would still be there).
    assert seen[:2] == [("005_create_t5", [True] * 5), ("004_create_t4", [False] * 5)]
    assert applied(database_url) == []
    assert [e for e in events(database_url) if e[1] == "reverted"] == [
        (f"00{n}_{'third' if n == 3 else f'create_t{n}'}", "reverted") for n in (5, 4, 3, 2, 1)
    ]


def test_a_failing_rollback_in_a_batch_keeps_the_ones_before_and_runs_none_after(
    project: Project, database_url: str
) -> None:
    for n in (1, 2, 3, 4, 5):
        project.add(
            n,
            f"create_t{n}",
            f"CREATE TABLE t{n} (id int);\n",
            "DROP TABLE nope;\n" if n == 3 else f"DROP TABLE t{n};\n",
        )
    sqlmig.up(project.config(database_url))

    with pytest.raises(sqlmig.MigrationFailed) as failed:
        sqlmig.down(project.config(database_url), to="0")

    error = failed.value
    assert (error.path, error.line, error.sqlstate, error.direction) == (
        "rollbacks/003_create_t3_rollback.sql",
        1,
        "42P01",
        "down",
    )
    assert error.applied_before == ["005_create_t5", "004_create_t4"]
    assert "the failed rollback was rolled back; the migration is still applied" in error.lines()
    assert applied(database_url) == ["1.1.0", "1.2.0", "1.3.0"]
    assert [table_exists(database_url, f"t{n}") for n in range(1, 6)] == [True, True, True, False, False]
