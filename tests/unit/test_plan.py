"""plan: files against history rows (validate), and the steps of `up` and `down`. No database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sqlmig.engine import plan
from sqlmig.errors import ExitCode, InvalidInput, Irreversible
from sqlmig.models import AppliedRecord, MigrationSet, PendingMigration, Problem
from tests.unit.helpers import applied, load, pair, write

USERS_RB = "DROP TABLE users;\n"
ORDERS_RB = "DROP TABLE orders;\n"
INDEX_RB = "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY orders_created_idx;\n"


def make_set(root: Path, *, orders_rollback: str = ORDERS_RB) -> MigrationSet:
    """001_users 1.0.0, 002_orders 1.1.0, 003_orders_idx 1.2.0 (no-transaction)."""
    write(
        root,
        {
            **pair("001_users", "1.0.0", "CREATE TABLE users (id int);\n", USERS_RB),
            **pair("002_orders", "1.1.0", "CREATE TABLE orders (id int);\n", orders_rollback),
            **pair(
                "003_orders_idx",
                "1.2.0",
                "-- sqlmig: no-transaction\nCREATE INDEX CONCURRENTLY orders_created_idx ON orders (id);\n",
                INDEX_RB,
            ),
        },
    )
    return load(root)


@pytest.fixture
def mset(tmp_path: Path) -> MigrationSet:
    return make_set(tmp_path)


def rows(mset: MigrationSet, *numbers: int) -> list[AppliedRecord]:
    by_number = mset.by_number()
    return [applied(by_number[n]) for n in numbers]


def adopted(*versions: str) -> list[AppliedRecord]:
    """Rows of a hand-written `schema_version` table: a version and nothing else."""
    return [AppliedRecord(version=v) for v in versions]


def codes(problems: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.path, p.code) for p in problems]


# -- validate ----------------------------------------------------------------------------------


def test_history_in_step_with_files_has_no_problems(mset: MigrationSet) -> None:
    assert plan.validate(mset, rows(mset, 1, 2, 3)) == ([], [])
    assert plan.validate(mset, rows(mset, 1)) == ([], [])
    assert plan.validate(mset, []) == ([], [])


def test_changed_checksum_is_reported_with_both_checksums(mset: MigrationSet) -> None:
    orders = mset.by_number()[2]
    records = [*rows(mset, 1), applied(orders, checksum="ab" * 32)]
    errors, warnings = plan.validate(mset, records)
    assert errors == [
        Problem(
            path="migrations/002_orders.sql",
            code="changed",
            message=f"was edited after it was applied (checksum abababababab in the history, "
            f"{orders.checksum[:12]} on disk); put a new migration instead, or allow with "
            "--allow changed",
        )
    ]
    assert warnings == []


def test_adopted_row_without_checksum_is_not_reported_as_changed(mset: MigrationSet) -> None:
    assert plan.validate(mset, adopted("1.0.0", "1.1.0")) == ([], [])


def test_applied_migration_missing_on_disk_is_reported(mset: MigrationSet) -> None:
    gone = AppliedRecord(version="1.3.0", number=4, name="004_gone", checksum="0" * 64)
    errors, _ = plan.validate(mset, [*rows(mset, 1, 2, 3), gone])
    assert errors == [
        Problem(
            code="missing-file",
            message="applied migration 004_gone (1.3.0) has no file in migrations/ "
            "(allow with --allow missing)",
        )
    ]


def test_adopted_row_with_unknown_version_is_missing(mset: MigrationSet) -> None:
    errors, _ = plan.validate(mset, adopted("1.0.0", "0.9.0"))
    assert [(p.code, p.message) for p in errors] == [
        (
            "missing-file",
            "applied migration 0.9.0 (0.9.0) has no file in migrations/ (allow with --allow missing)",
        ),
    ]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(lambda m: rows(m, 1, 3), id="numbered rows"),
        pytest.param(lambda m: adopted("1.0.0", "1.2.0"), id="adopted rows matched by version"),
    ],
)
def test_pending_migration_below_the_newest_applied_is_out_of_order(
    mset: MigrationSet, history: Callable[[MigrationSet], list[AppliedRecord]]
) -> None:
    errors, _ = plan.validate(mset, history(mset))
    assert errors == [
        Problem(
            path="migrations/002_orders.sql",
            code="out-of-order",
            message="pending, but numbered below the newest applied migration (3); renumber it, or "
            "apply it anyway with --allow out-of-order",
        )
    ]


def test_pending_migrations_above_the_newest_are_in_order(mset: MigrationSet) -> None:
    assert plan.validate(mset, rows(mset, 1)) == ([], [])


@pytest.mark.parametrize("status", ["started", "failed", "rolling_back"])
def test_unsettled_row_is_a_failed_state_naming_the_repair(mset: MigrationSet, status: str) -> None:
    idx = mset.by_number()[3]
    records = [*rows(mset, 1, 2), applied(idx, status=status)]
    errors, warnings = plan.validate(mset, records)
    assert errors == [
        Problem(
            path="migrations/003_orders_idx.sql",
            code="failed-state",
            message=f"003_orders_idx (1.2.0) is in state `{status}`: "
            + (
                "its no-transaction rollback stopped part-way; check the database, then `sqlmig "
                "repair --remove 1.2.0` if you finished the rollback by hand (the migration is "
                "gone), or `sqlmig repair --mark-applied 1.2.0` if you restored what it undid"
                if status == "rolling_back"
                else "a no-transaction step was interrupted or failed; check the database (`sqlmig "
                "repair` lists invalid indexes left behind), then `sqlmig repair --mark-applied "
                "1.2.0` if you finished it by hand, or `sqlmig repair --remove 1.2.0` if you undid "
                "what it did (`up` then runs it again)"
            ),
        )
    ]
    assert warnings == []


def test_failed_state_says_since_when_and_why(mset: MigrationSet) -> None:
    idx = mset.by_number()[3]
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    records = [*rows(mset, 1, 2), applied(idx, status="failed", applied_at=when, error="deadlock detected")]
    [error], _ = plan.validate(mset, records)
    assert error.message.startswith(
        "003_orders_idx (1.2.0) is in state `failed` since 2026-03-04 05:06:07+0000 "
        "(error: deadlock detected): "
    )


def test_version_changed_under_an_applied_number_is_an_error_never_allowed(mset: MigrationSet) -> None:
    orders = mset.by_number()[2]
    records = [*rows(mset, 1), applied(orders, version="1.0.5")]
    errors, _ = plan.validate(mset, records, allow=plan.ALLOWABLE)
    assert errors == [
        Problem(
            path="migrations/002_orders.sql",
            code="version-changed",
            message="was applied as version 1.0.5 but the file now says 1.1.0",
        )
    ]


def _changed(m: MigrationSet) -> list[AppliedRecord]:
    return [*rows(m, 1), applied(m.by_number()[2], checksum="0" * 64)]


def _missing(m: MigrationSet) -> list[AppliedRecord]:
    return [*rows(m, 1, 2, 3), AppliedRecord(version="1.3.0", number=4, name="004_gone")]


def _out_of_order(m: MigrationSet) -> list[AppliedRecord]:
    return rows(m, 1, 3)


def _failed(m: MigrationSet) -> list[AppliedRecord]:
    return [*rows(m, 1, 2), applied(m.by_number()[3], status="started")]


def _everything(m: MigrationSet) -> list[AppliedRecord]:
    # 2 edited, 3 started, 5 gone; nothing pending.
    return [
        applied(m.by_number()[1]),
        applied(m.by_number()[2], checksum="0" * 64),
        applied(m.by_number()[3], status="started"),
        AppliedRecord(version="1.3.0", number=5, name="005_gone"),
    ]


@pytest.mark.parametrize(
    ("history", "allow", "errors", "warnings"),
    [
        (_changed, (), ["changed"], []),
        (_changed, ("changed",), [], ["changed"]),
        (_changed, ("missing", "out-of-order"), ["changed"], []),
        (_missing, (), ["missing-file"], []),
        (_missing, ("missing",), [], ["missing-file"]),
        (_missing, ("changed",), ["missing-file"], []),
        (_out_of_order, (), ["out-of-order"], []),
        (_out_of_order, ("out-of-order",), [], ["out-of-order"]),
        (_failed, (), ["failed-state"], []),
        (_failed, plan.ALLOWABLE, ["failed-state"], []),
        (_failed, ("failed-state", "failed", "started"), ["failed-state"], []),
        (_everything, (), ["changed", "failed-state", "missing-file"], []),
        (_everything, plan.ALLOWABLE, ["failed-state"], ["changed", "missing-file"]),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_allow_turns_drift_into_warnings_but_never_a_failed_state(
    mset: MigrationSet,
    history: Callable[[MigrationSet], list[AppliedRecord]],
    allow: tuple[str, ...],
    errors: list[str],
    warnings: list[str],
) -> None:
    got_errors, got_warnings = plan.validate(mset, history(mset), allow=allow)
    assert sorted(p.code for p in got_errors) == errors
    assert sorted(p.code for p in got_warnings) == warnings
    assert all(p.severity == "error" for p in got_errors)
    assert all(p.severity == "warning" for p in got_warnings)


# -- current version and pending ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "current"),
    [
        ([], None),
        (adopted("1.0.0", "1.10.0", "1.9.0"), "1.10.0"),  # numeric, not text, order
        ([AppliedRecord(version="1.0.0"), AppliedRecord(version="1.1.0", status="started")], "1.0.0"),
        ([AppliedRecord(version="1.0.0", status="failed")], None),
        (adopted("20240101", "20231231"), "20240101"),  # pre-sqlmig versions that are not semver
    ],
)
def test_current_version_is_the_highest_settled_one(
    records: list[AppliedRecord], current: str | None
) -> None:
    assert plan.current_version(records) == current


def test_pending_lists_unapplied_migrations_in_order(mset: MigrationSet) -> None:
    assert plan.pending(mset, rows(mset, 2)) == [
        PendingMigration(
            number=1, version="1.0.0", name="001_users", path="migrations/001_users.sql", transactional=True
        ),
        PendingMigration(
            number=3,
            version="1.2.0",
            name="003_orders_idx",
            path="migrations/003_orders_idx.sql",
            transactional=False,
        ),
    ]


# -- plan_up -----------------------------------------------------------------------------------


def test_plan_up_applies_every_pending_migration_in_order(mset: MigrationSet) -> None:
    result = plan.plan_up(mset, [])
    assert (result.direction, result.current, result.target) == ("up", None, "1.2.0")
    assert [(s.direction, s.number, s.version, s.name, s.path, s.transactional) for s in result.steps] == [
        ("up", 1, "1.0.0", "001_users", "migrations/001_users.sql", True),
        ("up", 2, "1.1.0", "002_orders", "migrations/002_orders.sql", True),
        ("up", 3, "1.2.0", "003_orders_idx", "migrations/003_orders_idx.sql", False),
    ]
    assert [s.sql for s in result.steps] == [m.text for m in mset.migrations]


@pytest.mark.parametrize(
    ("applied_numbers", "to", "expected"),
    [
        ((), "1.1.0", [1, 2]),
        ((), "2", [1, 2]),
        ((), "002", [1, 2]),
        ((), " 1.0.0 ", [1]),
        ((), "3", [1, 2, 3]),
        ((1,), "1.1.0", [2]),
        ((1, 2), "1.1.0", []),
        ((1, 2), "1", []),  # a target below the current version plans nothing (use down)
        ((1, 2, 3), None, []),
    ],
)
def test_plan_up_stops_at_the_target_version_or_number(
    mset: MigrationSet, applied_numbers: tuple[int, ...], to: str | None, expected: list[int]
) -> None:
    result = plan.plan_up(mset, rows(mset, *applied_numbers), to=to)
    assert [s.number for s in result.steps] == expected


def test_plan_up_target_is_current_when_nothing_is_pending(mset: MigrationSet) -> None:
    result = plan.plan_up(mset, rows(mset, 1, 2, 3))
    assert (result.current, result.target, result.steps) == ("1.2.0", "1.2.0", ())


def test_plan_up_skips_adopted_rows_matched_by_version(mset: MigrationSet) -> None:
    result = plan.plan_up(mset, adopted("1.0.0", "1.1.0"))
    assert [s.number for s in result.steps] == [3]
    assert result.current == "1.1.0"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("9", "--to 9: no migration numbered 9"),
        ("0", "--to 0: no migration numbered 0"),
        ("1.9.0", "--to 1.9.0: no migration has version 1.9.0"),
        ("latest", "--to 'latest': expected a version like 1.2.0 or a number like 3"),
        ("1.2", "--to '1.2': expected a version like 1.2.0 or a number like 3"),
        ("-1", "--to '-1': expected a version like 1.2.0 or a number like 3"),
    ],
)
def test_plan_up_unknown_target_is_invalid_input(mset: MigrationSet, to: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        plan.plan_up(mset, [], to=to)
    assert info.value.message == message
    assert info.value.exit_code == ExitCode.INVALID_INPUT


# -- plan_down ---------------------------------------------------------------------------------


def test_plan_down_defaults_to_one_step_newest_first(mset: MigrationSet) -> None:
    result = plan.plan_down(mset, rows(mset, 1, 2, 3), stored={})
    assert (result.direction, result.current, result.target) == ("down", "1.2.0", "1.1.0")
    [step] = result.steps
    assert (
        step.direction,
        step.number,
        step.version,
        step.name,
        step.path,
        step.transactional,
        step.sql,
        step.warnings,
    ) == ("down", 3, "1.2.0", "003_orders_idx", "rollbacks/003_orders_idx_rollback.sql", False, INDEX_RB, ())


@pytest.mark.parametrize(
    ("kwargs", "versions", "target"),
    [
        ({"steps": 0}, [], "1.2.0"),
        ({"steps": 1}, ["1.2.0"], "1.1.0"),
        ({"steps": 2}, ["1.2.0", "1.1.0"], "1.0.0"),
        ({"steps": 3}, ["1.2.0", "1.1.0", "1.0.0"], "0.0.0"),
        ({"steps": 10}, ["1.2.0", "1.1.0", "1.0.0"], "0.0.0"),
        ({"to": "1.1.0"}, ["1.2.0"], "1.1.0"),
        ({"to": "1.0.0"}, ["1.2.0", "1.1.0"], "1.0.0"),
        ({"to": "1.0.5"}, ["1.2.0", "1.1.0"], "1.0.0"),  # between versions: keep what is <= it
        ({"to": "2"}, ["1.2.0"], "1.1.0"),
        ({"to": "1"}, ["1.2.0", "1.1.0"], "1.0.0"),
        ({"to": "0.0.0"}, ["1.2.0", "1.1.0", "1.0.0"], "0.0.0"),
        ({"to": "0"}, ["1.2.0", "1.1.0", "1.0.0"], "0.0.0"),
        ({"to": "1.2.0"}, [], "1.2.0"),
        ({"to": "5.0.0"}, [], "1.2.0"),
    ],
)
def test_plan_down_steps_and_to(
    mset: MigrationSet, kwargs: dict[str, object], versions: list[str], target: str
) -> None:
    result = plan.plan_down(mset, rows(mset, 1, 2, 3), stored={}, **kwargs)  # type: ignore[arg-type]
    assert [s.version for s in result.steps] == versions
    assert result.target == target


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 1, "to": "1.0.0"}, "give either --steps or --to, not both"),
        ({"steps": -1}, "--steps must be 0 or more"),
        ({"to": "one"}, "--to 'one': expected a version like 1.2.0 or a number like 3"),
    ],
)
def test_plan_down_bad_arguments_are_invalid_input(
    mset: MigrationSet, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        plan.plan_down(mset, rows(mset, 1, 2, 3), stored={}, **kwargs)  # type: ignore[arg-type]
    assert info.value.message == message


def test_plan_down_skips_rows_in_a_failed_state(mset: MigrationSet) -> None:
    records = [*rows(mset, 1, 2), applied(mset.by_number()[3], status="started")]
    result = plan.plan_down(mset, records, stored={})
    assert [s.version for s in result.steps] == ["1.1.0"]


def test_irreversible_rollback_refuses_with_path_and_reason_and_plans_nothing(tmp_path: Path) -> None:
    mset = make_set(tmp_path, orders_rollback="-- sqlmig: irreversible orders are kept for audit\n")
    records = rows(mset, 1, 2, 3)
    # One step back does not reach it.
    assert [s.version for s in plan.plan_down(mset, records, stored={}).steps] == ["1.2.0"]
    for kwargs in ({"steps": 2}, {"to": "1.0.0"}, {"to": "0"}):
        with pytest.raises(Irreversible) as info:
            plan.plan_down(mset, records, stored={}, **kwargs)  # type: ignore[arg-type]
        assert info.value.message == (
            "rollbacks/002_orders_rollback.sql: 002_orders (1.1.0) is irreversible: orders are kept for audit"
        )
        assert info.value.hint == (
            "nothing was rolled back; restore from a backup or write a new forward migration"
        )
        assert info.value.exit_code == ExitCode.INVALID_INPUT


def test_stored_irreversible_rollback_refuses_even_if_the_file_changed(mset: MigrationSet) -> None:
    stored = {"1.2.0": "-- sqlmig: irreversible the index took a day to build\n"}
    with pytest.raises(Irreversible, match="the index took a day to build"):
        plan.plan_down(mset, rows(mset, 1, 2, 3), stored=stored)


def test_stored_rollback_text_is_preferred_over_disk_with_a_warning(mset: MigrationSet) -> None:
    stored_sql = "-- as applied\nDROP INDEX CONCURRENTLY orders_created_idx;\n"
    result = plan.plan_down(mset, rows(mset, 1, 2, 3), stored={"1.2.0": stored_sql})
    [step] = result.steps
    assert step.sql == stored_sql
    assert step.transactional  # the stored text has no no-transaction header
    assert step.path == "rollbacks/003_orders_idx_rollback.sql"
    assert step.warnings == (
        "rollbacks/003_orders_idx_rollback.sql: warning: differs from the rollback stored when "
        "003_orders_idx was applied; running the stored one (`sqlmig repair --refresh-rollback "
        "1.2.0` stores the file's)",
    )


@pytest.mark.parametrize(
    "stored_sql",
    [
        INDEX_RB,
        INDEX_RB.replace("\n", "\r\n"),
        INDEX_RB.replace("\n", "\r"),
        None,
    ],
    ids=["same", "CRLF", "CR", "none-stored"],
)
def test_stored_rollback_equal_to_disk_or_absent_gives_no_warning(
    mset: MigrationSet, stored_sql: str | None
) -> None:
    result = plan.plan_down(mset, rows(mset, 1, 2, 3), stored={"1.2.0": stored_sql})
    [step] = result.steps
    assert step.warnings == ()
    assert step.sql == (stored_sql if stored_sql is not None else INDEX_RB)
    assert not step.transactional


def test_stored_rollback_runs_when_the_file_is_gone(mset: MigrationSet) -> None:
    gone = AppliedRecord(version="1.3.0", number=4, name="004_gone")
    result = plan.plan_down(mset, [*rows(mset, 1, 2, 3), gone], stored={"1.3.0": "DROP TABLE gone;\n"})
    [step] = result.steps
    assert (step.number, step.version, step.name, step.path, step.sql, step.transactional) == (
        4,
        "1.3.0",
        "004_gone",
        "stored rollback of 004_gone",
        "DROP TABLE gone;\n",
        True,
    )


def test_no_rollback_on_disk_nor_stored_is_invalid_input(mset: MigrationSet) -> None:
    gone = AppliedRecord(version="1.3.0", number=4, name="004_gone")
    with pytest.raises(InvalidInput) as info:
        plan.plan_down(mset, [*rows(mset, 1, 2, 3), gone], stored={"1.3.0": None})
    assert info.value.message == (
        "cannot roll back 004_gone (1.3.0): no rollback file on disk and none stored in the history"
    )


@pytest.mark.parametrize(
    ("kwargs", "versions"),
    [
        ({}, ["1.1.0"]),
        ({"steps": 2}, ["1.1.0", "1.0.0"]),
        ({"to": "1.0.0"}, ["1.1.0"]),
        ({"to": "0.0.0"}, ["1.1.0", "1.0.0"]),
        ({"to": "1"}, ["1.1.0"]),
        ({"to": "0"}, ["1.1.0", "1.0.0"]),
    ],
)
def test_adopted_rows_are_rolled_back_with_the_file_matched_by_version(
    mset: MigrationSet, kwargs: dict[str, object], versions: list[str]
) -> None:
    result = plan.plan_down(mset, adopted("1.0.0", "1.1.0"), stored={}, **kwargs)  # type: ignore[arg-type]
    assert [(s.version, s.path, s.sql) for s in result.steps] == [
        {
            "1.1.0": ("1.1.0", "rollbacks/002_orders_rollback.sql", ORDERS_RB),
            "1.0.0": ("1.0.0", "rollbacks/001_users_rollback.sql", USERS_RB),
        }[v]
        for v in versions
    ]
