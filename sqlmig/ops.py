"""The public operations, composed as: files → connect → lock → history → plan → execute."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg

from sqlmig import drift, lock, plan, txlock
from sqlmig import files as files_mod
from sqlmig.config import Config
from sqlmig.connect import connect, describe, refused, session_statements
from sqlmig.errors import (
    FileProblems,
    HistoryInconsistent,
    InvalidInput,
    MigrationFailed,
    SqlmigError,
)
from sqlmig.execute import Executor, check_all, record_fields
from sqlmig.history import History
from sqlmig.models import (
    AppliedRecord,
    EventRecord,
    MigrationSet,
    Plan,
    PlanStep,
    Problem,
    RetryNotice,
    RunReport,
    StatusReport,
    StepResult,
    ValidationReport,
    Version,
)

if TYPE_CHECKING:  # loaded by the commands that make them (see sqlmig.reports)
    from sqlmig.reports import (
        BackupReport,
        CheckResult,
        LintReport,
        NewFiles,
        RepairReport,
        WaitAttempt,
        WaitReport,
    )

OnStep = Callable[[PlanStep], None]
OnDone = Callable[[StepResult], None]
OnNote = Callable[[str], None]  # verbose detail, e.g. a file split by the fallback lexer
OnPlan = Callable[[Plan], None]  # the steps about to run (not on a dry run): progress [3/12]
OnWait = Callable[["WaitAttempt"], None]  # a failed connection attempt of `wait`, before the pause
OnRetry = Callable[[RetryNotice], None]  # a migration rolled back by a lock timeout, to run again
OnBackup = Callable[["BackupReport"], None]  # the dump written before the first migration
OnSkip = Callable[[PlanStep], None]  # --lock-mode transaction: another runner did this step
_REPAIR_HINT = "run `sqlmig status` to see why, then `sqlmig repair` (or --allow for drift)"


def load_files(config: Config) -> MigrationSet:
    return files_mod.load(config.root, config.migrations_path, config.rollbacks_path)


@contextlib.contextmanager
def _session(config: Config, *, locked: bool) -> Iterator[tuple[psycopg.Connection, History]]:
    """A connection and the history; with `locked`, the whole block holds the migration lock
    (in --lock-mode transaction: the block is one locked transaction)."""
    with _guarded(config, locked=locked) as (conn, history, guard), guard.locked():
        yield conn, history


@contextlib.contextmanager
def _guarded(config: Config, *, locked: bool) -> Iterator[tuple[psycopg.Connection, History,
                                                                 txlock.NoGuard]]:
    """A connection, the history and, with `locked`, the migration lock: one session lock for
    the whole run (session mode), or `guard`, which locks each transaction on its own
    (--lock-mode transaction, behind a transaction pooler; see sqlmig.txlock). Warnings about
    the lock (lost, a lease taken over) end up in `guard.warnings`, read after the block."""
    pooled = config.lock_mode == "transaction"
    history = History(config.schema_name, config.table, step_clock=pooled)
    conn = connect(config)
    key = lock.lock_key(config.qualified_table)
    guard = txlock.NoGuard()
    try:
        if not locked:
            yield conn, history, guard
        elif pooled:
            guard = txlock.TransactionLock(
                conn, history, key=key, timeout=config.lock_timeout, what=config.qualified_table,
                reconnect=lambda: connect(config),
                local_settings=session_statements(config, local=True))
            guard.setup()
            yield conn, history, guard
        else:
            with lock.held(conn, key, config.lock_timeout, config.qualified_table,
                           guard.warnings):
                history.ensure(conn)
                yield conn, history, guard
    except psycopg.OperationalError as exc:
        from sqlmig.errors import ConnectError

        raise ConnectError(f"lost the connection to {describe(config)}: {str(exc).strip()}") from exc
    except psycopg.Error as exc:
        raise refused(config, exc) from exc
    except SqlmigError as exc:
        txlock.attach(exc, guard.warnings)
        raise
    finally:
        conn.close()


def _record(conn: psycopg.Connection, history: History, guard: txlock.NoGuard, action: str, *,
            applied: list[str], if_missing: bool = False) -> Problem | None:
    """drift.record under the lock; in transaction mode from the history as it is by then (other
    runners may have applied some of this run's steps)."""
    try:
        with guard.locked(catalog_path=True):
            return drift.record(conn, history, action, if_missing=if_missing,
                                applied=None if guard.pooled else applied)
    except SqlmigError as exc:  # a lease held too long: the migrations are in, only say so
        return Problem(code="snapshot", severity="warning",
                       message=f"could not record the schema snapshot: {exc.message}")


def _with_lock_warnings(report: RunReport, guard: txlock.NoGuard) -> RunReport:
    if not guard.warnings:
        return report
    return replace(report, warnings=(*report.warnings, *guard.warnings))


def _adopt(conn: psycopg.Connection, history: History, files: MigrationSet,
           records: list[AppliedRecord]) -> list[AppliedRecord]:
    """Give rows written by a hand-written script their number and checksums, matched by version."""
    by_version = {str(m.version): m for m in files.migrations}
    adopted = False
    for record in records:
        mig = by_version.get(record.version)
        if record.number is None and mig is not None:
            fields = record_fields(mig, status="applied")
            conn.execute(*history.adopt(record.version, {**fields,
                                                         "rollback_sql": mig.rollback.text}))
            conn.execute(*history.event("adopt", "ok", version=record.version, name=mig.name,
                                        detail="row from a hand-written history table"))
            adopted = True
    return history.read(conn) if adopted else records


def _run_warnings(files: MigrationSet) -> tuple[Problem, ...]:
    # Empty files are reported by the step that runs them ("applied as a no-op"), not again here.
    return tuple(w for w in files.warnings if w.code != "empty")


def _prepare(the_plan: Plan, on_note: OnNote | None) -> tuple[dict[int, list], dict[str, str | None]]:
    """Split and check every step before any runs; pass the verbose notes on. Returns the
    statements by step index and the canonical checksums taken on the way (see check_all)."""
    prepared, notes, canonical = check_all(list(the_plan.steps))
    if on_note:
        for note in notes:
            on_note(note)
    return prepared, canonical


def _check(files: MigrationSet, records: list[AppliedRecord], allow: Iterable[str]) -> list:
    errors, warnings = plan.validate(files, records, allow)
    if errors:
        raise HistoryInconsistent(errors, hint=_REPAIR_HINT)
    return warnings


def up(config: Config, *, to: str | None = None, dry_run: bool = False,
       allow: Iterable[str] = (), on_step: OnStep | None = None,
       on_done: OnDone | None = None, on_note: OnNote | None = None,
       on_plan: OnPlan | None = None, wait: float | None = None, on_wait: OnWait | None = None,
       on_retry: OnRetry | None = None, on_backup: OnBackup | None = None,
       on_skip: OnSkip | None = None, back_to_back: bool = True) -> RunReport:
    """Apply pending migrations in order, each in its own transaction with its history row.

    `wait`: first wait up to that many seconds for the database (see `wait`). With
    `config.backup_dir`, a pg_dump of the database is written there before the first migration
    runs (not when there is nothing to apply); if it fails, nothing is applied.
    `back_to_back`: send transactional migrations without waiting for each one's result (see
    Executor.lookahead), up to 50 at a time; their on_step/on_done calls then come when the
    group is done, and durations are the server's. False: each one's as it runs, for a live
    progress display."""
    _check_allow(allow)
    files = load_files(config)
    _check_backup_dir(config, dry_run)
    if wait is not None:
        from sqlmig.readiness import wait as wait_for

        wait_for(config, wait, on_wait)
    with _guarded(config, locked=not dry_run) as (conn, history, guard):
        with guard.locked():
            records = history.read(conn)
            if not dry_run:
                records = _adopt(conn, history, files, records)
        warnings = _check(files, records, allow)
        the_plan = plan.plan_up(files, records, to)
        prepared, canonical = _prepare(the_plan, on_note)
        if dry_run:
            return RunReport(direction="up", dry_run=True, from_version=the_plan.current,
                             to_version=the_plan.target, plan=the_plan,
                             warnings=(*_run_warnings(files), *warnings))
        backup = _backup_first(config, conn, history, the_plan, on_backup)
        if on_plan:
            on_plan(the_plan)
        by_number = files.by_number()
        guard.expect(records)
        guard.recheck = txlock.recheck_up(files, allow, to)
        executor = Executor(conn, history, config, on_retry,
                            guard=guard if isinstance(guard, txlock.TransactionLock) else None,
                            canonical=canonical)
        if back_to_back:  # transactional steps without a round trip between them
            executor.lookahead([(step, by_number[step.number], prepared[i])  # type: ignore[index]
                                for i, step in enumerate(the_plan.steps)])
        done: list[StepResult] = []
        skipped: list[str] = []
        final = the_plan.current
        for i, step in enumerate(the_plan.steps):
            if on_step:
                on_step(step)
            mig = by_number[step.number]  # type: ignore[index]
            try:
                result = executor.apply(step, mig, prepared[i])
            except txlock.Skipped:
                skipped.append(f"{step.name} ({step.version})")  # another runner applied it
                final = step.version
                if on_skip:
                    on_skip(step)
                continue
            except MigrationFailed as exc:
                exc.applied_before = [s.name for s in done]
                if done and exc.rolled_back:
                    _record(conn, history, guard, "up", applied=drift.applied_after(records, done))
                raise
            guard.applied(step.version, mig.checksum)
            done.append(result)
            final = result.version
            if on_done:
                on_done(result)
        # The schema this run leaves, for drift checks; a run that applied nothing only fills in
        # a missing snapshot, so that it never makes out-of-band changes look recorded.
        snap_warning = _record(conn, history, guard, "up", if_missing=not done,
                               applied=drift.applied_after(records, done))
        report = RunReport(direction="up", from_version=the_plan.current, to_version=final,
                           steps=tuple(done), plan=the_plan, backup=backup,
                           skipped=tuple(skipped),
                           warnings=(*_run_warnings(files), *warnings,
                                     *([snap_warning] if snap_warning else [])))
    return _with_lock_warnings(report, guard)


def down(config: Config, *, steps: int | None = None, to: str | None = None,
         dry_run: bool = False, on_step: OnStep | None = None,
         on_done: OnDone | None = None, on_note: OnNote | None = None,
         on_plan: OnPlan | None = None, on_retry: OnRetry | None = None,
         on_backup: OnBackup | None = None, on_skip: OnSkip | None = None) -> RunReport:
    """Run rollbacks newest first, each in a transaction with the removal of its history row.
    With `config.backup_dir`, a pg_dump is written there first, as for `up`."""
    files = load_files(config)
    _check_backup_dir(config, dry_run)
    with _guarded(config, locked=not dry_run) as (conn, history, guard):
        with guard.locked():
            records = history.read(conn)
            stored = history.rollback_sqls(conn)
        # Only a failed state blocks `down`: it runs the stored rollback text, so an edited or
        # missing forward file does not make rolling back wrong.
        errors, warnings = plan.validate(files, records, plan.ALLOWABLE)
        if errors:
            raise HistoryInconsistent(errors, hint=_REPAIR_HINT)
        the_plan = plan.plan_down(files, records, stored, steps=steps, to=to)
        prepared, _ = _prepare(the_plan, on_note)
        if dry_run:
            return RunReport(direction="down", dry_run=True, from_version=the_plan.current,
                             to_version=the_plan.target, plan=the_plan, warnings=tuple(warnings))
        backup = _backup_first(config, conn, history, the_plan, on_backup)
        if on_plan:
            on_plan(the_plan)
        guard.expect(records)
        guard.recheck = txlock.recheck_down(files)
        executor = Executor(conn, history, config, on_retry,
                            guard=guard if isinstance(guard, txlock.TransactionLock) else None)
        done: list[StepResult] = []
        skipped: list[str] = []
        for i, step in enumerate(the_plan.steps):
            if on_step:
                on_step(step)
            try:
                result = executor.revert(step, prepared[i])
            except txlock.Skipped:
                skipped.append(f"{step.name} ({step.version})")  # another runner rolled it back
                if on_skip:
                    on_skip(step)
                continue
            except MigrationFailed as exc:
                exc.applied_before = [s.name for s in done]
                if done and exc.rolled_back:
                    _record(conn, history, guard, "down",
                            applied=drift.applied_after(records, done))
                raise
            guard.reverted(step.version)
            done.append(result)
            if on_done:
                on_done(result)
        snap_warning = _record(conn, history, guard, "down", if_missing=not done,
                               applied=drift.applied_after(records, done))
        report = RunReport(direction="down", from_version=the_plan.current,
                           to_version=the_plan.target, steps=tuple(done), plan=the_plan,
                           backup=backup, skipped=tuple(skipped),
                           warnings=(*warnings, *([snap_warning] if snap_warning else [])))
    return _with_lock_warnings(report, guard)


def _check_backup_dir(config: Config, dry_run: bool) -> None:
    """A backup directory that cannot be written stops the run before it connects."""
    if config.backup_dir is not None and not dry_run:
        from sqlmig import dump

        dump.check_directory(config.backup_dir)


def _backup_first(config: Config, conn: psycopg.Connection, history: History, the_plan: Plan,
                  on_backup: OnBackup | None) -> BackupReport | None:
    """With `backup_dir`, dump the database before the first step (under the lock, so it is the
    state this run starts from); when the dump fails the run stops there."""
    if config.backup_dir is None or not the_plan.steps:
        return None
    from sqlmig import dump

    try:
        report = dump.backup(config, conn, config.backup_dir, the_plan.current)
    except SqlmigError as exc:
        with contextlib.suppress(psycopg.Error):
            conn.execute(*history.event("backup", "failed", version=the_plan.current,
                                        detail=exc.message))
        exc.message = f"{exc.message}; the run stopped before migrating: nothing was applied"
        raise
    conn.execute(*history.event("backup", "ok", version=the_plan.current,
                                duration_ms=report.duration_ms, detail=report.path))
    if on_backup:
        on_backup(report)
    return report


def wait(config: Config, timeout: float = 60.0, on_attempt: OnWait | None = None) -> WaitReport:
    """Wait until the database accepts connections: at most `timeout` seconds, trying again
    after a pause that doubles (0.25 s up to 4 s); `on_attempt` hears of each failed try.
    ConnectError (exit 5) on timeout. The embedded server is started, with nothing to wait for."""
    from sqlmig.readiness import wait as wait_for

    return wait_for(config, timeout, on_attempt)


def backup(config: Config, directory: Path | str | None = None) -> BackupReport:
    """pg_dump -Fc of the database into `directory` (default: `config.backup_dir`, else
    `<root>/backups`), named `<database>-<UTC time>-v<current version>.dump`."""
    from sqlmig import dump

    target = Path(directory) if directory is not None else (config.backup_dir
                                                            or config.root / "backups")
    with _session(config, locked=False) as (conn, history):
        return dump.backup(config, conn, target, plan.current_version(history.read(conn)))


def check(config: Config, require: str) -> CheckResult:
    """Does the database's current version satisfy `require` (`>=1.2,<2`, `^1.2`, `~1.2.3`…)?
    InvalidInput for a bad range, before connecting; no version applied is not satisfied."""
    from sqlmig import requirement
    from sqlmig.reports import CheckResult

    try:
        wanted = requirement.parse(require)
    except ValueError as exc:
        raise InvalidInput(f"--require: {exc}") from exc
    with _session(config, locked=False) as (conn, history):
        current = plan.current_version(history.read(conn))
    if current is None:
        ok, message = False, (f"no version applied ({config.qualified_table} is empty or "
                              f"missing); required {wanted.text}")
    else:
        try:
            ok = wanted.satisfied_by(Version.parse(current).key)
        except ValueError:
            ok = False
            message = f"version {current} is not a semantic version; required {wanted.text}"
        else:
            verb = "satisfies" if ok else "does not satisfy"
            message = f"version {current} {verb} {wanted.text} ({wanted.meaning})"
    return CheckResult(ok=ok, require=wanted.text, meaning=wanted.meaning,
                       current_version=current, message=message)


def status(config: Config) -> StatusReport:
    files = load_files(config)
    with _session(config, locked=False) as (conn, history):
        records = history.read(conn)
        drifted, drift_warnings = drift.check(conn, history, records)
    errors, warnings = plan.validate(files, records)
    errors += drifted
    warnings += drift_warnings
    return StatusReport(
        database=describe(config),
        history_table=config.qualified_table,
        current_version=plan.current_version(records),
        applied=tuple(records),
        pending=tuple(plan.pending(files, records)),
        problems=tuple(errors),
        warnings=(*files.warnings, *warnings),
    )


def validate(config: Config, allow: Iterable[str] = ()) -> ValidationReport:
    _check_allow(allow)
    files = load_files(config)
    with _session(config, locked=False) as (conn, history):
        records = history.read(conn)
        drifted, drift_warnings = drift.check(conn, history, records)
    errors, warnings = plan.validate(files, records, allow)
    errors += drifted
    warnings += drift_warnings
    return ValidationReport(ok=not errors, problems=tuple(errors),
                            warnings=(*files.warnings, *warnings))


def history(config: Config, limit: int | None = None) -> list[AppliedRecord]:
    """Applied migrations, newest first."""
    with _session(config, locked=False) as (conn, hist):
        records = list(reversed(hist.read(conn)))
    return records[:limit] if limit is not None else records


def events(config: Config, limit: int | None = None) -> list[EventRecord]:
    with _session(config, locked=False) as (conn, hist):
        return hist.read_events(conn, limit)


def baseline(config: Config, version: str) -> RunReport:
    """Record the files up to `version` as applied without running them (adopting a database)."""
    target = _parse_version(version)
    files = load_files(config)
    if all(m.version != target for m in files.migrations):
        raise InvalidInput(f"baseline {version}: no migration has version {version}")
    with _guarded(config, locked=True) as (conn, history, guard):
        with guard.locked():
            done, records = _baseline(conn, history, files, target)
        snap_warning = _record(conn, history, guard, "baseline", if_missing=not done,
                               applied=drift.applied_after(records, done))
        report = RunReport(direction="baseline", from_version=plan.current_version(records),
                           to_version=str(target), steps=tuple(done),
                           warnings=(snap_warning,) if snap_warning else ())
    return _with_lock_warnings(report, guard)


def _baseline(conn: psycopg.Connection, history: History, files: MigrationSet,
              target: Version) -> tuple[list[StepResult], list[AppliedRecord]]:
    records = _adopt(conn, history, files, history.read(conn))
    errors, _ = plan.validate(files, records, plan.ALLOWABLE)
    if errors:
        raise HistoryInconsistent(errors, hint=_REPAIR_HINT)
    recorded = {r.number for r in records if r.number is not None}
    done: list[StepResult] = []
    with conn.transaction():
        for mig in files.migrations:
            if mig.version > target or mig.number in recorded:
                continue
            conn.execute(*history.insert(
                record_fields(mig, status="applied", baseline=True, execution_ms=0),
                mig.rollback.text))
            conn.execute(*history.event("baseline", "recorded", version=str(mig.version),
                                        name=mig.name, duration_ms=0))
            done.append(StepResult(direction="up", number=mig.number, version=str(mig.version),
                                   name=mig.name, duration_ms=0))
    return done, records


def repair(config: Config, *, mark_applied: str | None = None, remove: str | None = None,
           accept_formatting: Iterable[str] | None = None, drop_invalid_indexes: bool = False,
           drop_index: Iterable[str] = ()) -> RepairReport:
    """Without an action, list what can be repaired (read-only, no lock). With one action, do it
    under the lock; every change is logged in the event log.

    - `mark_applied` / `remove`: resolve a `started`/`failed`/`rolling_back` row after fixing
      the database by hand;
    - `accept_formatting`: store the new checksum of formatting-only edits ([] = all of them);
    - `drop_invalid_indexes` / `drop_index`: DROP INDEX CONCURRENTLY invalid indexes (all / named).
    """
    from sqlmig import repairs
    from sqlmig.reports import RepairReport

    names = list(drop_index)
    chosen = [mark_applied is not None, remove is not None, accept_formatting is not None,
              drop_invalid_indexes or bool(names)]
    if sum(chosen) > 1:
        raise InvalidInput("repair: one action at a time (--mark-applied, --remove, "
                           "--accept-formatting, --drop-invalid-index[es])")
    if not any(chosen):
        return _repair_listing(config)
    files = load_files(config) if accept_formatting is not None else None
    notes: list[str] = []
    with _guarded(config, locked=True) as (conn, history, guard):
        if files is not None or mark_applied is not None or remove is not None:
            with guard.locked():
                records = history.read(conn)
                if files is not None:
                    done = repairs.accept_formatting(conn, history, files, records,
                                                     list(accept_formatting or ()))
                else:
                    if mark_applied is not None:
                        notes += [f"warning: invalid index {i.qualified} on {i.table} is still "
                                  "there: if the step built it, it is not complete; drop it "
                                  f"(`sqlmig repair --drop-invalid-index {i.qualified}`) and let "
                                  "`up` build it" for i in repairs.invalid_indexes(conn)]
                    version = mark_applied if mark_applied is not None else remove
                    assert version is not None
                    done = [repairs.resolve_row(conn, history, records, version,
                                                applied=mark_applied is not None)]
        else:
            # DROP INDEX CONCURRENTLY runs in autocommit: under the lease in transaction mode.
            with guard.hold_lease("repair", "drop invalid indexes"):
                found = repairs.invalid_indexes(conn)
                if names and not drop_invalid_indexes:
                    targets = repairs.pick_indexes(conn, found, names)
                else:
                    targets = [i for i in found if i.building_pid is None]
                    notes += [f"skipped {i.qualified} on {i.table}: a concurrent build is still "
                              f"running in backend {i.building_pid}"
                              for i in found if i.building_pid is not None]
                done = repairs.drop_indexes(conn, history, targets)
    notes += [f"warning: {w.message}" for w in guard.warnings]
    return RepairReport(done=tuple(done), notes=tuple(notes))


def _repair_listing(config: Config) -> RepairReport:
    from sqlmig import repairs
    from sqlmig.reports import RepairReport

    notes: list[str] = []
    try:
        files: MigrationSet | None = load_files(config)
    except FileProblems as exc:
        files = None
        notes.append(f"formatting-only edits not checked: {exc.message} (see `sqlmig validate`)")
    with _session(config, locked=False) as (conn, history):
        records = history.read(conn)
        indexes = repairs.invalid_indexes(conn)
    return RepairReport(
        unfinished=tuple(repairs.unfinished(records)),
        invalid_indexes=tuple(indexes),
        formatting_only=tuple(repairs.formatting_changes(files, records)) if files is not None else (),
        notes=tuple(notes),
    )


def new(config: Config, description: str, *, bump: Literal["major", "minor", "patch"] | None = None,
        version: str | None = None) -> NewFiles:
    """Create the next numbered migration and its rollback from a template."""
    from sqlmig.reports import NewFiles

    if bump and version:
        raise InvalidInput("give either --bump or --version, not both")
    # It goes on the `-- Description:` header line: a line break would end that comment and put
    # the rest into the file as SQL; text that is not UTF-8 could not be written at all.
    if any(c in "\r\n" or "\ud800" <= c <= "\udfff" for c in description):
        raise InvalidInput(f"the description {description!r} must be one line of UTF-8 text")
    slug = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_")
    if not slug:
        raise InvalidInput(f"cannot make a file name from {description!r}: use letters or digits")
    files = load_files(config)
    last = files.migrations[-1] if files.migrations else None
    if version is not None:
        new_version = _parse_version(version)
        if last and not last.version < new_version:
            raise InvalidInput(f"--version {version} must be greater than {last.version} "
                               f"of {last.path}")
    elif last is None:
        new_version = Version(major=1, minor=0, patch=0)
    else:
        new_version = last.version.bump(bump or "minor")
    number = (last.number + 1) if last else 1
    width = max(3, *(len(m.path.rsplit("/", 1)[-1].split("_", 1)[0]) for m in files.migrations)) \
        if files.migrations else 3
    stem = f"{number:0{width}d}_{slug}"
    mig_path = config.migrations_path / f"{stem}.sql"
    rb_path = config.rollbacks_path / f"{stem}_rollback.sql"
    for path in (mig_path, rb_path):
        if path.exists():
            raise InvalidInput(f"{path} already exists")
    config.rollbacks_path.mkdir(parents=True, exist_ok=True)
    today = dt.date.today().isoformat()
    mig_path.write_text(
        f"-- Migration: {stem}\n-- Version: {new_version}\n-- Description: {description}\n"
        f"-- Author: {_author()}\n-- Date: {today}\n\n"
        "-- The forward change, in plain PostgreSQL. sqlmig runs the whole file in one transaction\n"
        "-- with its schema_version row: no BEGIN/COMMIT here. For CREATE INDEX CONCURRENTLY and\n"
        "-- the like, add the header line `-- sqlmig: no-transaction` above.\n"
    )
    rb_path.write_text(
        f"-- Rollback of {stem} (version {new_version})\n\n"
        f"-- Undo exactly what migrations/{stem}.sql does, newest change first.\n"
        "-- If it cannot be undone, make the first line: -- sqlmig: irreversible <reason>\n"
    )
    root = config.root
    return NewFiles(migration=files_mod.relative(mig_path, root),
                    rollback=files_mod.relative(rb_path, root), number=number,
                    version=str(new_version))


def lint(config: Config, paths: Iterable[str | Path] = ()) -> LintReport:
    """Check migrations for statements that lock, rewrite or break; no database is needed.

    Without `paths`, every migration of the project; with them, just those (files of the set are
    judged in its context: earlier files and the previous version)."""
    from sqlmig import linter

    return linter.lint(config, paths)


def _author() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _parse_version(text: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def _check_allow(allow: Iterable[str]) -> None:
    bad = [a for a in allow if a not in plan.ALLOWABLE]
    if bad:
        raise InvalidInput(f"--allow {bad[0]}: expected one of {', '.join(plan.ALLOWABLE)}")


__all__ = ["SqlmigError", "backup", "baseline", "check", "down", "events", "history", "lint",
           "load_files", "new", "repair", "status", "up", "validate", "wait"]
