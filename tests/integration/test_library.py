"""`import sqlmig`: the same operations as the CLI, as typed functions, on a real PostgreSQL."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

import sqlmig
from sqlmig.config.settings import Secret
from sqlmig.locking.session import lock_key
from sqlmig.models import (
    AppliedRecord,
    EventRecord,
    Migration,
    Plan,
    PlanStep,
    RunReport,
    StatusReport,
    StepResult,
    ValidationReport,
    to_json,
)
from sqlmig.reports import NewFiles
from tests.conftest import Project, query, table_exists
from tests.listen import listen


def three_tables(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")


def config(project: Project, url: str, **overrides: object) -> sqlmig.Config:
    return sqlmig.resolve(root=project.root, database_url=url, environ={}, **overrides)


def test_up_returns_a_run_report_with_one_step_per_migration(project: Project, database_url: str) -> None:
    three_tables(project)
    started: list[PlanStep] = []
    finished: list[StepResult] = []

    report = sqlmig.up(
        config(project, database_url), progress=listen(started=started.append, finished=finished.append)
    )

    assert isinstance(report, RunReport)
    assert report.direction == "up" and not report.dry_run
    assert report.from_version is None
    assert report.to_version == "1.2.0"
    assert [(s.number, s.version, s.name, s.direction) for s in report.steps] == [
        (1, "1.0.0", "001_create_a", "up"),
        (2, "1.1.0", "002_create_b", "up"),
        (3, "1.2.0", "003_create_c", "up"),
    ]
    assert all(s.duration_ms >= 0 for s in report.steps)
    assert (
        [s.name for s in started]
        == [s.name for s in finished]
        == ["001_create_a", "002_create_b", "003_create_c"]
    )
    assert table_exists(database_url, "c")

    again = sqlmig.up(config(project, database_url))
    assert again.steps == ()
    assert again.to_version == "1.2.0"


def test_up_to_and_dry_run(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url)

    plan = sqlmig.up(cfg, dry_run=True)
    assert plan.dry_run and plan.steps == ()
    assert plan.plan is not None
    assert [s.name for s in plan.plan.steps] == ["001_create_a", "002_create_b", "003_create_c"]
    assert plan.plan.steps[0].sql.endswith("CREATE TABLE a (id int);\n")
    assert not table_exists(database_url, "public.schema_version")

    report = sqlmig.up(cfg, to="1.1.0")
    assert [s.version for s in report.steps] == ["1.0.0", "1.1.0"]
    assert not table_exists(database_url, "c")


def test_status_returns_a_status_report(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url)
    sqlmig.up(cfg, to="2")

    report = sqlmig.status(cfg)

    assert isinstance(report, StatusReport)
    assert report.current_version == "1.1.0"
    assert report.history_table == "public.schema_version"
    assert [r.version for r in report.applied] == ["1.0.0", "1.1.0"]
    assert all(isinstance(r, AppliedRecord) and r.status == "applied" for r in report.applied)
    assert [(p.number, p.name, p.path) for p in report.pending] == [
        (3, "003_create_c", "migrations/003_create_c.sql")
    ]
    assert report.problems == ()


def test_down_history_events_and_validate(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url)
    sqlmig.up(cfg)

    report = sqlmig.down(cfg, steps=2)

    assert report.direction == "down"
    assert [s.name for s in report.steps] == ["003_create_c", "002_create_b"]
    assert report.to_version == "1.0.0"
    assert not table_exists(database_url, "b")
    rows = sqlmig.history(cfg)
    assert [r.version for r in rows] == ["1.0.0"]
    events = sqlmig.events(cfg)
    assert all(isinstance(e, EventRecord) for e in events)
    assert [(e.action, e.version) for e in events] == [
        ("down", "1.1.0"),
        ("down", "1.2.0"),
        ("up", "1.2.0"),
        ("up", "1.1.0"),
        ("up", "1.0.0"),
    ]
    assert [(e.action, e.version) for e in sqlmig.events(cfg, 1)] == [("down", "1.1.0")]
    result = sqlmig.validate(cfg)
    assert isinstance(result, ValidationReport) and result.ok


def test_a_failed_migration_raises_migration_failed_with_its_location(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(
        2,
        "x",
        "CREATE TABLE x1 (id int);\nCREATE TABLE x2 (id int,, b int);\n",
        "DROP TABLE x1;\n",
        version="1.1.0",
    )
    done: list[str] = []

    with pytest.raises(sqlmig.MigrationFailed) as info:
        sqlmig.up(config(project, database_url), progress=listen(finished=lambda r: done.append(r.name)))

    error = info.value
    assert isinstance(error, sqlmig.SqlmigError)
    assert error.exit_code == sqlmig.ExitCode.MIGRATION_FAILED == 3
    assert (error.path, error.line, error.column, error.sqlstate) == ("migrations/002_x.sql", 3, 25, "42601")
    assert error.server_message == 'syntax error at or near ","'
    assert error.rolled_back
    assert error.applied_before == ["001_create_a"]
    assert done == ["001_create_a"]
    assert not table_exists(database_url, "x1")


def test_drift_raises_history_inconsistent_with_the_problems(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url)
    sqlmig.up(cfg, to="2")
    edited = project.migrations / "001_create_a.sql"
    edited.write_text(edited.read_text() + "-- and one more thing\nSELECT 1;\n")

    with pytest.raises(sqlmig.HistoryInconsistent) as info:
        sqlmig.up(cfg)

    assert info.value.exit_code == 6
    assert [(p.code, p.path) for p in info.value.problems] == [("changed", "migrations/001_create_a.sql")]
    assert not table_exists(database_url, "c")
    report = sqlmig.up(cfg, allow=["changed"])
    assert [s.name for s in report.steps] == ["003_create_c"]
    assert [(p.code, p.severity) for p in report.warnings] == [("changed", "warning")]


def test_bad_files_raise_file_problems_listing_each_one(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", None, version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="0.9.0")
    (project.rollbacks / "007_gone_rollback.sql").write_text("SELECT 1;\n")

    with pytest.raises(sqlmig.FileProblems) as info:
        sqlmig.up(config(project, "postgresql://u:s3cret@127.0.0.1:1/db"))

    assert info.value.exit_code == 2
    assert sorted((p.code, p.path) for p in info.value.problems) == [
        ("missing-rollback", "migrations/001_create_a.sql"),
        ("orphan-rollback", "rollbacks/007_gone_rollback.sql"),
    ]
    # 002's version is below 001's, but 001 could not be loaded: fix the rollback and it shows.
    (project.rollbacks / "001_create_a_rollback.sql").write_text("DROP TABLE a;\n")
    (project.rollbacks / "007_gone_rollback.sql").unlink()
    with pytest.raises(sqlmig.FileProblems) as info:
        sqlmig.load_files(config(project, "postgresql://u:s3cret@127.0.0.1:1/db"))
    assert [(p.code, p.path) for p in info.value.problems] == [
        ("version-order", "migrations/002_create_b.sql")
    ]


def test_connection_and_lock_errors_are_typed(project: Project, database_url: str) -> None:
    three_tables(project)
    with pytest.raises(sqlmig.ConnectError) as info:
        sqlmig.status(config(project, "postgresql://u:s3cret@127.0.0.1:1/db"))
    assert info.value.exit_code == 5
    assert "s3cret" not in "\n".join(info.value.lines())

    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("public.schema_version"),))
        pid = holder.info.backend_pid
        with pytest.raises(sqlmig.LockTimeout) as lock_info:
            sqlmig.up(config(project, database_url, lock_timeout=0))
    assert lock_info.value.exit_code == 4
    assert f"held by pid {pid} " in lock_info.value.message
    assert not table_exists(database_url, "a")


def test_an_irreversible_rollback_raises_irreversible(project: Project, database_url: str) -> None:
    project.add(
        1,
        "create_a",
        "CREATE TABLE a (id int);\n",
        "-- sqlmig: irreversible the data cannot come back\n",
        version="1.0.0",
    )
    cfg = config(project, database_url)
    sqlmig.up(cfg)

    with pytest.raises(sqlmig.Irreversible) as info:
        sqlmig.down(cfg)

    assert "the data cannot come back" in info.value.message
    assert info.value.exit_code == 2
    assert table_exists(database_url, "a")


def test_baseline_repair_and_new(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url)
    query(database_url, "CREATE TABLE a (id int)")

    report = sqlmig.baseline(cfg, "1.0.0")
    assert report.direction == "baseline"
    assert [s.name for s in report.steps] == ["001_create_a"]
    assert [(r.version, r.baseline) for r in sqlmig.history(cfg)] == [("1.0.0", True)]

    with pytest.raises(sqlmig.InvalidInput):
        sqlmig.repair(cfg, remove="1.0.0")  # nothing to repair

    created = sqlmig.new(cfg, "add user phone", bump="patch")
    assert isinstance(created, NewFiles)
    assert (created.migration, created.rollback, created.number, created.version) == (
        "migrations/004_add_user_phone.sql",
        "rollbacks/004_add_user_phone_rollback.sql",
        4,
        "1.2.1",
    )
    assert (project.root / created.migration).is_file()
    report = sqlmig.up(cfg)
    assert [s.name for s in report.steps] == ["002_create_b", "003_create_c", "004_add_user_phone"]
    assert report.steps[-1].warnings == (
        f"{created.migration}: warning: has no SQL statements; applied as a no-op",
    )


def test_a_custom_history_table_and_schema(project: Project, database_url: str) -> None:
    three_tables(project)
    cfg = config(project, database_url, schema_name="ops", table="migrations_applied")

    sqlmig.up(cfg, to="1.0.0")

    assert query(database_url, "SELECT version FROM ops.migrations_applied") == [("1.0.0",)]
    assert table_exists(database_url, "ops.migrations_applied_events")
    assert not table_exists(database_url, "public.schema_version")
    assert sqlmig.status(cfg).current_version == "1.0.0"
    # A second project with the default table in the same database is independent.
    assert sqlmig.status(config(project, database_url)).current_version is None


def test_records_and_config_validate_and_serialize_with_pydantic_as_they_are(
    project: Project, database_url: str
) -> None:
    """DESIGN.md's library gives pydantic-ready records: sqlmig does not import pydantic (issue
    6: ~60 ms of every command), but pydantic v2 takes its dataclasses as they are."""
    pydantic = pytest.importorskip("pydantic")
    three_tables(project)
    cfg = config(project, database_url)
    plans: list[Plan] = []
    run = sqlmig.up(cfg, progress=listen(planned=plans.append))
    records: list[object] = [
        run,
        *plans,
        *run.steps,
        sqlmig.status(cfg),
        *sqlmig.history(cfg),
        *sqlmig.load_files(cfg).migrations,
    ]

    for record in records:
        adapter = pydantic.TypeAdapter(type(record))
        dumped = adapter.dump_python(record, mode="json")
        assert dumped == to_json(record), type(record).__name__  # what --json prints
        if isinstance(record, Migration):  # its text is not in its JSON
            dumped = {
                **dumped,
                "source": record.text,
                "rollback": {**dumped["rollback"], "source": record.rollback.text},
            }
        assert adapter.validate_python(dumped) == record, type(record).__name__
        assert adapter.json_schema()["type"] == "object"
    rows = pydantic.TypeAdapter(list[AppliedRecord]).dump_python(sqlmig.history(cfg), mode="json")
    assert sorted((row["version"], row["number"], row["status"]) for row in rows) == [
        ("1.0.0", 1, "applied"),
        ("1.1.0", 2, "applied"),
        ("1.2.0", 3, "applied"),
    ]

    # A configuration dumps with its secrets masked, and validates from plain strings.
    secret = dataclasses.replace(
        sqlmig.resolve(
            root=project.root, environ={}, database_url="postgresql://app_user:s3cret-pw@db.example/app"
        ),
        password=Secret("p4ss-w0rd"),
    )
    adapter = pydantic.TypeAdapter(sqlmig.Config)
    dumped = adapter.dump_python(secret, mode="json")
    assert dumped["password"] == "**********"
    assert "p4ss-w0rd" not in adapter.dump_json(secret).decode()
    assert "s3cret-pw" not in adapter.dump_json(secret).decode()
    back = adapter.validate_python({**adapter.dump_python(secret), "password": "other"})
    assert back.password is not None and back.password.get_secret_value() == "other"
