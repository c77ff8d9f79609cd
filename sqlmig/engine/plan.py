"""Pure functions: compare files with the history, choose the steps of `up` and `down`. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from sqlmig.errors import HistoryInconsistent, InvalidInput, Irreversible
from sqlmig.files.load import checksum, parse_rollback
from sqlmig.files.sqltext import canonical_checksum
from sqlmig.models import (
    SETTLED,
    AppliedRecord,
    Migration,
    MigrationSet,
    PendingMigration,
    Plan,
    PlanStep,
    Problem,
    Version,
    current_version,
    version_key,
)

if TYPE_CHECKING:
    from sqlmig.locking.guard import Recheck

ALLOWABLE = ("changed", "missing", "out-of-order")


@dataclass(frozen=True)
class Matched:
    """Files and history rows paired up."""

    applied: list[tuple[AppliedRecord, Migration | None]]
    pending: list[Migration]


def match(files: MigrationSet, records: Iterable[AppliedRecord]) -> Matched:
    by_number = files.by_number()
    by_version: dict[str, Migration] | None = None  # built when needed: rarely, 10,000 str()s
    applied: list[tuple[AppliedRecord, Migration | None]] = []
    taken: set[int] = set()
    for record in records:
        if record.number is not None:
            mig = by_number.get(record.number)
        else:  # a row from a hand-written table has only a version until sqlmig adopts it
            if by_version is None:
                by_version = {str(m.version): m for m in files.migrations}
            mig = by_version.get(record.version)
        if mig is not None:
            taken.add(mig.number)
        applied.append((record, mig))
    pending = [m for m in files.migrations if m.number not in taken]
    return Matched(applied=applied, pending=pending)


def _number(record: AppliedRecord, mig: Migration | None) -> int | None:
    """A row adopted from a hand-written table has no number; its file (matched by version) has."""
    if record.number is not None:
        return record.number
    return mig.number if mig is not None else None


def validate(
    files: MigrationSet,
    records: list[AppliedRecord],
    allow: Iterable[str] = (),
    *,
    matched: Matched | None = None,
) -> tuple[list[Problem], list[Problem]]:
    """Return (errors, warnings). `allow` turns the named kinds of drift into warnings.
    `matched`: match(files, records), when the caller has it already."""
    allowed = set(allow)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    matched = matched or match(files, records)

    def report(kind: str, problem: Problem) -> None:
        if kind in allowed:
            warnings.append(replace(problem, severity="warning"))
        else:
            errors.append(problem)

    for record, mig in matched.applied:
        label = record.name or record.version
        if record.status != SETTLED:
            since = f" since {record.applied_at:%Y-%m-%d %H:%M:%S%z}" if record.applied_at else ""
            cause = f" (error: {record.error})" if record.error else ""
            errors.append(
                Problem(
                    path=mig.path if mig else None,
                    code="failed-state",
                    message=f"{label} ({record.version}) is in state `{record.status}`{since}{cause}: "
                    f"{resolve_hint(record)}",
                )
            )
            continue
        if mig is None:
            report(
                "missing",
                Problem(
                    code="missing-file",
                    message=f"applied migration {label} ({record.version}) has no file in migrations/ "
                    "(allow with --allow missing)",
                ),
            )
            continue
        if record.number is not None and str(mig.version) != record.version:
            errors.append(
                Problem(
                    path=mig.path,
                    code="version-changed",
                    message=f"was applied as version {record.version} but the file now says {mig.version}",
                )
            )
        if record.rollback_checksum is not None and record.rollback_checksum != mig.rollback.checksum:
            warnings.append(
                Problem(
                    path=mig.rollback.path,
                    code="rollback-changed",
                    severity="warning",
                    message=f"differs from the rollback stored when {label} was applied (checksum "
                    f"{record.rollback_checksum[:12]} in the history, "
                    f"{mig.rollback.checksum[:12]} on disk); `down` runs the stored one: "
                    f"`sqlmig repair --refresh-rollback {record.version}` records the file's",
                )
            )
        if record.checksum is not None and record.checksum != mig.checksum:
            if formatting_only(record, mig):
                warnings.append(
                    Problem(
                        path=mig.path,
                        code="formatting-only",
                        severity="warning",
                        message=f"formatting-only change since it was applied (same statements; "
                        f"checksum {record.checksum[:12]} in the history, {mig.checksum[:12]} "
                        f"on disk): `sqlmig repair --accept-formatting {record.version}` "
                        "records the new checksum",
                    )
                )
                continue
            report(
                "changed",
                Problem(
                    path=mig.path,
                    code="changed",
                    message=f"was edited after it was applied (checksum {record.checksum[:12]} in the "
                    f"history, {mig.checksum[:12]} on disk); put a new migration instead, or "
                    "allow with --allow changed",
                ),
            )
    newest = max((n for r, m in matched.applied if (n := _number(r, m)) is not None), default=0)
    for mig in matched.pending:
        if mig.number < newest:
            report(
                "out-of-order",
                Problem(
                    path=mig.path,
                    code="out-of-order",
                    message=f"pending, but numbered below the newest applied migration ({newest}); "
                    "renumber it, or apply it anyway with --allow out-of-order",
                ),
            )
    return errors, warnings


def resolve_hint(record: AppliedRecord) -> str:
    """What to check and run for a row a no-transaction step left unfinished. A `rolling_back`
    row is a rollback that stopped part-way: finished by hand, the migration is gone (--remove);
    undone by hand, it is whole again (--mark-applied). A `started`/`failed` one the other way."""
    v = record.version
    if record.status == "rolling_back":
        return (
            "its no-transaction rollback stopped part-way; check the database, then "
            f"`sqlmig repair --remove {v}` if you finished the rollback by hand (the migration "
            f"is gone), or `sqlmig repair --mark-applied {v}` if you restored what it undid"
        )
    return (
        "a no-transaction step was interrupted or failed; check the database (`sqlmig "
        "repair` lists invalid indexes left behind), then `sqlmig repair --mark-applied "
        f"{v}` if you finished it by hand, or `sqlmig repair --remove {v}` if you undid what "
        "it did (`up` then runs it again)"
    )


def formatting_only(record: AppliedRecord, mig: Migration) -> bool:
    """The file's bytes changed since it was applied, but not its statements.

    Needs the canonical checksum stored at apply time: a row without one (written by an older
    sqlmig or adopted before it, or of a file pglast could not parse) cannot tell, so any edit is
    real.
    A changed `-- Version:` or `-- sqlmig: no-transaction` header is not formatting either.
    """
    if record.checksum is None or record.checksum == mig.checksum or not record.canonical_checksum:
        return False
    if str(mig.version) != record.version or (
        record.transactional is not None and record.transactional != mig.transactional
    ):
        return False
    return canonical_checksum(mig.text) == record.canonical_checksum


def pending(
    files: MigrationSet, records: list[AppliedRecord], *, matched: Matched | None = None
) -> list[PendingMigration]:
    return [
        PendingMigration(
            number=m.number, version=str(m.version), name=m.name, path=m.path, transactional=m.transactional
        )
        for m in (matched or match(files, records)).pending
    ]


def parse_version(text: str) -> Version:
    """A version given on the command line (baseline, new --version): InvalidInput if malformed."""
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def parse_target(text: str) -> tuple[str, int | Version]:
    """`--to` takes a version (1.2.0) or a migration number (3)."""
    text = text.strip()
    if text.isdigit():
        return "number", int(text)
    try:
        return "version", Version.parse(text)
    except ValueError as exc:
        raise InvalidInput(f"--to {text!r}: expected a version like 1.2.0 or a number like 3") from exc


def step_of(mig: Migration, direction: Literal["up", "down"] = "up") -> PlanStep:
    """The step that applies `mig` (up), or runs its rollback file (down)."""
    source = mig if direction == "up" else mig.rollback
    return PlanStep(
        direction=direction,
        number=mig.number,
        version=str(mig.version),
        name=mig.name,
        path=source.path,
        transactional=source.transactional,
        sql=source.text,
        lock_timeout=source.lock_timeout,
        statement_timeout=source.statement_timeout,
    )


def plan_up(
    files: MigrationSet,
    records: list[AppliedRecord],
    to: str | None = None,
    *,
    matched: Matched | None = None,
) -> Plan:
    todo = (matched or match(files, records)).pending
    target = None
    if to is not None:
        kind, value = parse_target(to)
        if kind == "number":
            if value not in files.by_number():
                raise InvalidInput(f"--to {to}: no migration numbered {value}")
            todo = [m for m in todo if m.number <= value]
        else:
            if all(m.version != value for m in files.migrations):
                raise InvalidInput(f"--to {to}: no migration has version {value}")
            todo = [m for m in todo if m.version <= value]  # type: ignore[operator]
        target = to
    steps = tuple(step_of(m) for m in todo)
    current = current_version(records)
    final = steps[-1].version if steps else current
    return Plan(direction="up", current=current, target=target or final, steps=steps)


def plan_down(
    files: MigrationSet,
    records: list[AppliedRecord],
    stored: Mapping[str, str | None],
    steps: int | None = None,
    to: str | None = None,
) -> Plan:
    """Roll back newest first; `stored` maps version -> rollback text kept in the history."""
    if steps is not None and to is not None:
        raise InvalidInput("give either --steps or --to, not both")
    matched = match(files, records)
    applied = [(r, m) for r, m in reversed(matched.applied) if r.status == SETTLED]
    if to is not None:
        kind, value = parse_target(to)
        if kind == "number":
            # A row without a known number (adopted, file gone) only goes with `--to 0`.
            chosen = [
                (r, m) for r, m in applied if (value == 0 if (n := _number(r, m)) is None else n > value)
            ]
        else:
            chosen = [(r, m) for r, m in applied if version_key(r.version) > value.key]  # type: ignore[union-attr]
    else:
        count = 1 if steps is None else steps
        if count < 0:
            raise InvalidInput("--steps must be 0 or more")
        chosen = applied[:count]

    out: list[PlanStep] = []
    for record, mig in chosen:
        label = record.name or record.version
        text = stored.get(record.version)
        warnings: list[str] = []
        path = f"stored rollback of {label}"
        if mig is not None:
            path = mig.rollback.path
            if text is None:
                text = mig.rollback.text
            elif checksum(text) != mig.rollback.checksum:
                warnings.append(
                    f"{mig.rollback.path}: warning: differs from the rollback stored when "
                    f"{label} was applied; running the stored one (`sqlmig repair "
                    f"--refresh-rollback {record.version}` stores the file's)"
                )
        if text is None:
            raise InvalidInput(
                f"cannot roll back {label} ({record.version}): no rollback file on disk and none "
                "stored in the history"
            )
        rollback, _ = parse_rollback(path, text)
        if rollback.irreversible:
            stored_only = warnings and mig is not None and mig.rollback.irreversible is None
            raise Irreversible(
                f"{path}: {label} ({record.version}) is irreversible: {rollback.irreversible}"
                + (" (as stored when it was applied; the file now differs)" if stored_only else ""),
                hint=(
                    f"nothing was rolled back; `sqlmig repair --refresh-rollback "
                    f"{record.version}` stores the file's rollback, which `down` then runs"
                    if stored_only
                    else "nothing was rolled back; restore from a backup or write a new forward migration"
                ),
            )
        out.append(
            PlanStep(
                direction="down",
                number=record.number,
                version=record.version,
                name=label,
                path=path,
                transactional=rollback.transactional,
                sql=text,
                warnings=tuple(warnings),
                lock_timeout=rollback.lock_timeout,
                statement_timeout=rollback.statement_timeout,
            )
        )
    remaining = [r for r, _ in applied if all(r.version != s.version for s in out)]
    return Plan(
        direction="down",
        current=current_version(records),
        target=current_version(remaining) or "0.0.0",
        steps=tuple(out),
    )


_CHANGED_HINT = (
    "the history changed while this run waited for the lock (another runner); "
    "see `sqlmig status`, then run the command again"
)


def recheck_up(files: MigrationSet, allow: Iterable[str], to: str | None) -> Recheck:
    """For `up`: run the step if it is still the first pending one; skip it if it is applied;
    stop if the history is inconsistent now or another migration became pending before it."""

    def recheck(step: PlanStep, records: list[AppliedRecord]) -> bool:
        errors, _ = validate(files, records, allow)
        if errors:
            raise HistoryInconsistent(errors, hint=_CHANGED_HINT)
        todo = plan_up(files, records, to).steps
        if all(s.number != step.number for s in todo):
            return False
        if todo[0].number != step.number:
            raise HistoryInconsistent(
                [
                    Problem(
                        path=todo[0].path,
                        code="changed-meanwhile",
                        message=f"{todo[0].name} ({todo[0].version}) is pending again: it was rolled "
                        "back while this run waited for the lock; nothing more was applied",
                    )
                ],
                hint=_CHANGED_HINT,
            )
        return True

    return recheck


def recheck_down(files: MigrationSet) -> Recheck:
    """For `down`: roll the step back if it is still the newest applied migration; skip it if
    it is gone; stop if a newer one was applied meanwhile, or on a failed state."""

    def recheck(step: PlanStep, records: list[AppliedRecord]) -> bool:
        errors, _ = validate(files, records, ALLOWABLE)
        if errors:
            raise HistoryInconsistent(errors, hint=_CHANGED_HINT)
        settled = [r for r in records if r.status == SETTLED]
        if all(r.version != step.version for r in settled):
            return False
        newest = settled[-1]
        if newest.version != step.version:
            raise HistoryInconsistent(
                [
                    Problem(
                        code="changed-meanwhile",
                        message=f"{newest.name or newest.version} ({newest.version}) was applied while "
                        f"this run waited for the lock to roll back {step.name}; nothing more "
                        "was rolled back",
                    )
                ],
                hint=_CHANGED_HINT,
            )
        return True

    return recheck


def check_allow(allow: Iterable[str]) -> None:
    bad = [a for a in allow if a not in ALLOWABLE]
    if bad:
        raise InvalidInput(f"--allow {bad[0]}: expected one of {', '.join(ALLOWABLE)}")
