"""Which recorded snapshot belongs to which state of the history (pure, no database)."""

from __future__ import annotations

from sqlmig.db import drift
from sqlmig.db.history import History
from sqlmig.models import AppliedRecord, StepResult


def rec(version: str, status: str = "applied") -> AppliedRecord:
    return AppliedRecord(version=version, status=status)


def step(direction: str, version: str) -> StepResult:
    return StepResult(
        direction=direction,
        number=1,
        version=version,
        name="x",  # type: ignore[arg-type]
        duration_ms=0,
    )


def test_state_is_the_current_version_and_a_key_of_every_applied_version() -> None:
    version, key = drift.state([rec("1.0.0"), rec("1.10.0"), rec("1.2.0")])
    assert version == "1.10.0"
    assert key == drift.state([rec("1.2.0"), rec("1.0.0"), rec("1.10.0")])[1]
    assert key != drift.state([rec("1.0.0"), rec("1.10.0")])[1]  # same current, another set


def test_rows_not_settled_are_not_part_of_the_state() -> None:
    assert drift.state([rec("1.0.0"), rec("1.1.0", "failed")]) == drift.state([rec("1.0.0")])


def test_nothing_applied_has_its_own_key() -> None:
    assert drift.state([])[0] == drift.NOTHING


def test_applied_after_adds_up_steps_and_removes_down_steps() -> None:
    records = [rec("1.0.0"), rec("1.1.0"), rec("1.2.0")]
    assert drift.applied_after(records, [step("up", "1.3.0")]) == {"1.0.0", "1.1.0", "1.2.0", "1.3.0"}
    assert drift.applied_after(records, [step("down", "1.2.0"), step("down", "1.1.0")]) == {"1.0.0"}


def test_own_tables_are_cut_to_postgresql_identifier_length() -> None:
    assert drift.own_tables(History("public", "schema_version")) == [
        "schema_version",
        "schema_version_events",
        "schema_version_snapshots",
        "schema_version_lease",
    ]  # the lease of --lock-mode transaction (sqlmig.locking.lease)
    long = "h" * 60
    assert [len(n) for n in drift.own_tables(History("public", long))] == [60, 63, 63, 63]
