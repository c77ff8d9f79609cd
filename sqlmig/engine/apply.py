"""The operations that change the database: up, down, baseline, composed as
files → connect → lock → history → plan → execute → report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import psycopg

from sqlmig.config.settings import Config
from sqlmig.db import drift, indexes
from sqlmig.db.connect import connect
from sqlmig.db.history import History
from sqlmig.engine import plan
from sqlmig.engine.execute import Executor
from sqlmig.engine.prepare import check_all, record_fields
from sqlmig.engine.progress import Progress
from sqlmig.engine.session import guarded, load_files
from sqlmig.errors import (
    ConnectionLost,
    HistoryInconsistent,
    InvalidInput,
    MigrationFailed,
    SqlmigError,
)
from sqlmig.files import load as files_mod
from sqlmig.locking.guard import Guard, Skipped
from sqlmig.models import (
    AppliedRecord,
    MigrationSet,
    Plan,
    PlanStep,
    Problem,
    RunReport,
    StepResult,
    Version,
)

if TYPE_CHECKING:  # loaded by the commands that make them (see sqlmig.reports)
    from sqlmig.reports import BackupReport


def _repair_hint(errors: list[Problem]) -> str:
    """Where to go next: `repair` only where it has something to do (a row left unfinished);
    an edited, missing or out-of-order file is resolved as its line says."""
    if any(e.code == "failed-state" for e in errors):
        return (
            "`sqlmig repair` lists what the unfinished step left behind (invalid indexes) "
            "and the command that resolves its row"
        )
    return "each line says what to do; `sqlmig status` shows the whole history"


def _record(
    conn: psycopg.Connection,
    history: History,
    guard: Guard,
    action: str,
    *,
    applied: Iterable[str],
    if_missing: bool = False,
) -> Problem | None:
    """drift.record under the lock; in transaction mode from the history as it is by then (other
    runners may have applied some of this run's steps)."""
    try:
        with guard.locked(catalog_path=True):
            return drift.record(
                conn, history, action, if_missing=if_missing, applied=None if guard.pooled else applied
            )
    except SqlmigError as exc:  # a lease held too long: the migrations are in, only say so
        return Problem(
            code="snapshot",
            severity="warning",
            message=f"could not record the schema snapshot: {exc.message}",
        )


def _with_lock_warnings(report: RunReport, guard: Guard) -> RunReport:
    if not guard.warnings:
        return report
    return replace(report, warnings=(*report.warnings, *guard.warnings))


def _adopt(
    conn: psycopg.Connection, history: History, files: MigrationSet, records: list[AppliedRecord]
) -> list[AppliedRecord]:
    """Give rows written by a hand-written script their number and checksums, matched by version."""
    if all(record.number is not None for record in records):
        return records  # sqlmig's own rows, as nearly always
    by_version = {str(m.version): m for m in files.migrations}
    adopted = False
    for record in records:
        mig = by_version.get(record.version)
        if record.number is None and mig is not None:
            fields = record_fields(mig, status="applied")
            conn.execute(*history.adopt(record.version, {**fields, "rollback_sql": mig.rollback.text}))
            conn.execute(
                *history.event(
                    "adopt",
                    "ok",
                    version=record.version,
                    name=mig.name,
                    detail="row from a hand-written history table",
                )
            )
            adopted = True
    return history.read(conn) if adopted else records


def _run_warnings(files: MigrationSet) -> tuple[Problem, ...]:
    # Empty files are reported by the step that runs them ("applied as a no-op"), not again here.
    return tuple(w for w in files.warnings if w.code != "empty")


def _prepare(
    the_plan: Plan, progress: Progress, files: MigrationSet
) -> tuple[dict[int, list], dict[str, str | None]]:
    """Split and check every step before any runs (files.load's parse of a file reused); pass
    the verbose notes on. Returns the statements by step index and the canonical checksums
    taken on the way (see check_all)."""
    prepared, notes, canonical = check_all(list(the_plan.steps), files.parsed)
    for note in notes:
        progress.note(note)
    return prepared, canonical


def _check(
    files: MigrationSet, records: list[AppliedRecord], allow: Iterable[str], matched: plan.Matched
) -> list:
    errors, warnings = plan.validate(files, records, allow, matched=matched)
    if errors:
        raise HistoryInconsistent(errors, hint=_repair_hint(errors))
    return warnings


def up(
    config: Config,
    *,
    to: str | None = None,
    dry_run: bool = False,
    allow: Iterable[str] = (),
    wait: float | None = None,
    progress: Progress | None = None,
    back_to_back: bool = True,
    files: MigrationSet | None = None,
) -> RunReport:
    """Apply pending migrations in order, each in its own transaction with its history row.

    `wait`: first wait up to that many seconds for the database (see `wait`). With
    `config.backup_dir`, a pg_dump of the database is written there before the first migration
    runs (not when there is nothing to apply); if it fails, nothing is applied.
    `back_to_back`: send transactional migrations without waiting for each one's result (see
    Executor.lookahead), up to 50 at a time; `progress` then hears of them when the group is
    done, and durations are the server's. False: each one's as it runs, for a live progress
    display. `files`: the project's files already loaded (load_files), e.g. once for many
    targets (sqlmig.engine.fleet): each file is then read and parsed once, not per target."""
    progress = progress or Progress()
    plan.check_allow(allow)
    files = files or load_files(config)
    _check_backup_dir(config, dry_run)
    if wait is not None:
        # Loaded here, not at the top: only `up --wait` waits.
        from sqlmig.deploy.wait import wait as wait_for

        wait_for(config, wait, progress.waiting)
    with guarded(config, locked=not dry_run) as (conn, history, guard):
        with guard.locked():
            records = history.read(conn)
            if not dry_run:
                records = _adopt(conn, history, files, records)
        matched = plan.match(files, records)  # once, for the checks and the plan
        warnings = _check(files, records, allow, matched)
        the_plan = plan.plan_up(files, records, to, matched=matched)
        by_number = files.by_number()
        # Every text this run applies or stores, read now (files the file cache vouched for were
        # not): one edited since the start stops the run before anything has changed.
        files_mod.read_texts(by_number[step.number] for step in the_plan.steps)  # type: ignore[index]
        prepared, canonical = _prepare(the_plan, progress, files)
        if dry_run:
            return RunReport(
                direction="up",
                dry_run=True,
                from_version=the_plan.current,
                to_version=the_plan.target,
                plan=the_plan,
                warnings=(*_run_warnings(files), *warnings),
            )
        backup = _backup_first(config, conn, history, the_plan, progress)
        progress.planned(the_plan)
        guard.expect(records, plan.recheck_up(files, allow, to))
        executor = Executor(conn, history, config, progress.retrying, guard=guard, canonical=canonical)
        if back_to_back:  # transactional steps without a round trip between them
            executor.lookahead(
                [
                    (step, by_number[step.number], prepared[i])  # type: ignore[index]
                    for i, step in enumerate(the_plan.steps)
                ]
            )

        def apply(i: int, step: PlanStep) -> StepResult:
            mig = by_number[step.number]  # type: ignore[index]
            result = executor.apply(step, mig, prepared[i])
            guard.applied(step.version, mig.checksum)
            return result

        done, skipped, final = _each_step(config, conn, history, guard, records, the_plan, progress, apply)
        # The schema this run leaves, for drift checks; a run that applied nothing only fills in
        # a missing snapshot, so that it never makes out-of-band changes look recorded.
        snap_warning = _record(
            conn, history, guard, "up", if_missing=not done, applied=drift.applied_after(records, done)
        )
        invalid = _invalid_after(conn, the_plan, done)
        report = RunReport(
            direction="up",
            from_version=the_plan.current,
            to_version=final,
            steps=tuple(done),
            plan=the_plan,
            backup=backup,
            skipped=tuple(skipped),
            warnings=(*_run_warnings(files), *warnings, *([snap_warning] if snap_warning else []), *invalid),
        )
    return _with_lock_warnings(report, guard)


def down(
    config: Config,
    *,
    steps: int | None = None,
    to: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    back_to_back: bool = True,
    files: MigrationSet | None = None,
) -> RunReport:
    """Run rollbacks newest first, each in a transaction with the removal of its history row.
    With `config.backup_dir`, a pg_dump is written there first, as for `up`. `back_to_back`:
    transactional rollbacks go without a round trip between them, as `up` sends migrations.
    `files`: as for `up`."""
    progress = progress or Progress()
    files = files or load_files(config)
    _check_backup_dir(config, dry_run)
    with guarded(config, locked=not dry_run) as (conn, history, guard):
        with guard.locked():
            records = history.read(conn)
            stored = history.rollback_sqls(conn)
        # Only a failed state blocks `down`: it runs the stored rollback text, so an edited or
        # missing forward file does not make rolling back wrong.
        errors, warnings = plan.validate(files, records, plan.ALLOWABLE)
        if errors:
            raise HistoryInconsistent(errors, hint=_repair_hint(errors))
        the_plan = plan.plan_down(files, records, stored, steps=steps, to=to)
        prepared, _ = _prepare(the_plan, progress, files)
        if dry_run:
            return RunReport(
                direction="down",
                dry_run=True,
                from_version=the_plan.current,
                to_version=the_plan.target,
                plan=the_plan,
                warnings=tuple(warnings),
            )
        backup = _backup_first(config, conn, history, the_plan, progress)
        progress.planned(the_plan)
        guard.expect(records, plan.recheck_down(files))
        executor = Executor(conn, history, config, progress.retrying, guard=guard)
        if back_to_back:
            executor.lookahead([(step, None, prepared[i]) for i, step in enumerate(the_plan.steps)])

        def revert(i: int, step: PlanStep) -> StepResult:
            result = executor.revert(step, prepared[i])
            guard.reverted(step.version)
            return result

        done, skipped, _ = _each_step(config, conn, history, guard, records, the_plan, progress, revert)
        snap_warning = _record(
            conn, history, guard, "down", if_missing=not done, applied=drift.applied_after(records, done)
        )
        report = RunReport(
            direction="down",
            from_version=the_plan.current,
            to_version=the_plan.target,
            steps=tuple(done),
            plan=the_plan,
            backup=backup,
            skipped=tuple(skipped),
            warnings=(*warnings, *([snap_warning] if snap_warning else [])),
        )
    return _with_lock_warnings(report, guard)


def _invalid_after(conn: psycopg.Connection, the_plan: Plan, done: list[StepResult]) -> list[Problem]:
    """A no-transaction step "applied" over an INVALID index (CREATE INDEX CONCURRENTLY IF NOT
    EXISTS after an interrupted build) must not pass unseen: such indexes, as warnings."""
    ran = {r.version for r in done}
    if not any(not s.transactional for s in the_plan.steps if s.version in ran):
        return []
    return [replace(p, severity="warning") for p in indexes.as_problems(conn)[0]]


def _each_step(
    config: Config,
    conn: psycopg.Connection,
    history: History,
    guard: Guard,
    records: list[AppliedRecord],
    the_plan: Plan,
    progress: Progress,
    run: Callable[[int, PlanStep], StepResult],
) -> tuple[list[StepResult], list[str], str | None]:
    """Run the plan's steps in order (`run` does one: apply or revert), telling `progress`.
    Returns what ran, what another runner did meanwhile (--lock-mode transaction), and the
    version reached. A failed step stops the run; the snapshot of what the steps before it
    left is recorded first, so drift checks see the schema as it is."""
    done: list[StepResult] = []
    skipped: list[str] = []
    final = the_plan.current
    for i, step in enumerate(the_plan.steps):
        progress.started(step)
        try:
            result = run(i, step)
        except Skipped:
            skipped.append(f"{step.name} ({step.version})")  # another runner did it meanwhile
            final = step.version
            progress.skipped(step)
            continue
        except MigrationFailed as exc:
            exc.applied_before = [s.name for s in done]
            if done and exc.rolled_back:
                _record(conn, history, guard, the_plan.direction, applied=drift.applied_after(records, done))
            raise
        except ConnectionLost as exc:
            raise _after_loss(config, history, the_plan, exc) from exc
        done.append(result)
        final = result.version
        progress.finished(result)
    return done, skipped, final


def _after_loss(config: Config, history: History, the_plan: Plan, exc: ConnectionLost) -> ConnectionLost:
    """What a lost connection left, from the history read again on a new connection: steps sent
    back to back may have committed without their results reaching this run, so the step the
    lost connection was on says nothing about which did."""
    try:
        fresh = connect(config)
        try:
            records = history.read(fresh)
        finally:
            fresh.close()
    except (SqlmigError, psycopg.Error) as err:
        reason = err.message if isinstance(err, SqlmigError) else str(err).strip()
        return ConnectionLost(
            exc.message,
            reason=exc.reason,
            hint=(
                f"{exc.hint}; the history could not be read again to tell which migrations "
                f"committed ({reason}): `sqlmig status` shows what is applied"
            ),
        )
    state = {r.version: r.status for r in records}
    up = the_plan.direction == "up"
    done = [
        s for s in the_plan.steps if (state.get(s.version) == "applied" if up else s.version not in state)
    ]
    left = [s for s in the_plan.steps if s not in done]
    verb = "applied" if up else "rolled back"
    said = f"{len(done)} {verb} by this run, the last {done[-1].name}" if done else f"none {verb} by this run"
    hint = f"run `sqlmig {the_plan.direction}` again for the rest"
    if left:
        said += f"; not {verb}: {left[0].name}"
        if len(left) > 1:
            said += f" and {len(left) - 1} after it"
        stuck = state.get(left[0].version)
        if stuck in ("started", "failed", "rolling_back"):
            said += f" (its row is `{stuck}`)"
            hint = (
                f"{left[0].name} ran outside a transaction and may be partly done: check "
                "the database, then `sqlmig repair`"
            )
    return ConnectionLost(
        f"connection lost during `{the_plan.direction}`: {exc.reason}; read again on a new "
        f"connection, the history shows {said}",
        reason=exc.reason,
        hint=hint,
    )


def _check_backup_dir(config: Config, dry_run: bool) -> None:
    """A backup directory that cannot be written stops the run before it connects."""
    if config.backup_dir is not None and not dry_run:
        # Loaded here, not at the top: only `up --backup` dumps.
        from sqlmig.deploy import backup as dump

        dump.check_directory(config.backup_dir)


def _backup_first(
    config: Config, conn: psycopg.Connection, history: History, the_plan: Plan, progress: Progress
) -> BackupReport | None:
    """With `backup_dir`, dump the database before the first step (under the lock, so it is the
    state this run starts from); when the dump fails the run stops there."""
    if config.backup_dir is None or not the_plan.steps:
        return None
    # Loaded here, not at the top: only `up --backup` dumps.
    from sqlmig.deploy import backup as dump

    try:
        report = dump.dump(config, conn, config.backup_dir, the_plan.current)
    except SqlmigError as exc:
        with contextlib.suppress(psycopg.Error):
            conn.execute(*history.event("backup", "failed", version=the_plan.current, detail=exc.message))
        exc.message = f"{exc.message}; the run stopped before migrating: nothing was applied"
        raise
    conn.execute(
        *history.event(
            "backup", "ok", version=the_plan.current, duration_ms=report.duration_ms, detail=report.path
        )
    )
    progress.backed_up(report)
    return report


def baseline(config: Config, version: str) -> RunReport:
    """Record the files up to `version` as applied without running them (adopting a database)."""
    target = plan.parse_version(version)
    files = load_files(config)
    if all(m.version != target for m in files.migrations):
        raise InvalidInput(f"baseline {version}: no migration has version {version}")
    with guarded(config, locked=True) as (conn, history, guard):
        with guard.locked():
            done, records = _baseline(conn, history, files, target)
        snap_warning = _record(
            conn, history, guard, "baseline", if_missing=not done, applied=drift.applied_after(records, done)
        )
        report = RunReport(
            direction="baseline",
            from_version=plan.current_version(records),
            to_version=str(target),
            steps=tuple(done),
            warnings=(snap_warning,) if snap_warning else (),
        )
    return _with_lock_warnings(report, guard)


def _baseline(
    conn: psycopg.Connection, history: History, files: MigrationSet, target: Version
) -> tuple[list[StepResult], list[AppliedRecord]]:
    records = _adopt(conn, history, files, history.read(conn))
    errors, _ = plan.validate(files, records, plan.ALLOWABLE)
    if errors:
        raise HistoryInconsistent(errors, hint=_repair_hint(errors))
    recorded = {r.number for r in records if r.number is not None}
    done: list[StepResult] = []
    with conn.transaction():
        for mig in files.migrations:
            if mig.version > target or mig.number in recorded:
                continue
            conn.execute(
                *history.insert(
                    record_fields(mig, status="applied", baseline=True, execution_ms=0), mig.rollback.text
                )
            )
            conn.execute(
                *history.event("baseline", "recorded", version=str(mig.version), name=mig.name, duration_ms=0)
            )
            done.append(
                StepResult(
                    direction="up", number=mig.number, version=str(mig.version), name=mig.name, duration_ms=0
                )
            )
    return done, records


__all__ = ["baseline", "down", "up"]
