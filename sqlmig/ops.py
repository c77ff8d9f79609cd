"""The public operations, composed as: files → connect → lock → history → plan → execute."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import psycopg

from sqlmig import files as files_mod
from sqlmig import lock, plan
from sqlmig.config import Config
from sqlmig.connect import connect, describe
from sqlmig.errors import HistoryInconsistent, InvalidInput, MigrationFailed, SqlmigError
from sqlmig.execute import Executor, check_all, record_fields
from sqlmig.history import History
from sqlmig.models import (
    AppliedRecord,
    EventRecord,
    MigrationSet,
    NewFiles,
    PlanStep,
    Problem,
    RunReport,
    StatusReport,
    StepResult,
    ValidationReport,
    Version,
)

OnStep = Callable[[PlanStep], None]
OnDone = Callable[[StepResult], None]
OnNote = Callable[[str], None]  # verbose detail, e.g. a file split by the fallback lexer
_REPAIR_HINT = "run `sqlmig status` to see why, then `sqlmig repair` (or --allow for drift)"


def load_files(config: Config) -> MigrationSet:
    return files_mod.load(config.root, config.migrations_path, config.rollbacks_path)


@contextlib.contextmanager
def _session(config: Config, *, locked: bool) -> Iterator[tuple[psycopg.Connection, History]]:
    history = History(config.schema_name, config.table)
    conn = connect(config)
    try:
        if locked:
            key = lock.lock_key(config.qualified_table)
            with lock.held(conn, key, config.lock_timeout, config.qualified_table):
                history.ensure(conn)
                yield conn, history
        else:
            yield conn, history
    except psycopg.OperationalError as exc:
        from sqlmig.errors import ConnectError

        raise ConnectError(f"lost the connection to {describe(config)}: {str(exc).strip()}") from exc
    finally:
        conn.close()


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


def _check(files: MigrationSet, records: list[AppliedRecord], allow: Iterable[str]) -> list:
    errors, warnings = plan.validate(files, records, allow)
    if errors:
        raise HistoryInconsistent(errors, hint=_REPAIR_HINT)
    return warnings


def up(config: Config, *, to: str | None = None, dry_run: bool = False,
       allow: Iterable[str] = (), on_step: OnStep | None = None,
       on_done: OnDone | None = None, on_note: OnNote | None = None) -> RunReport:
    """Apply pending migrations in order, each in its own transaction with its history row."""
    _check_allow(allow)
    files = load_files(config)
    with _session(config, locked=not dry_run) as (conn, history):
        records = history.read(conn)
        if not dry_run:
            records = _adopt(conn, history, files, records)
        warnings = _check(files, records, allow)
        the_plan = plan.plan_up(files, records, to)
        prepared, notes = check_all(list(the_plan.steps))
        if on_note:
            for note in notes:
                on_note(note)
        if dry_run:
            return RunReport(direction="up", dry_run=True, from_version=the_plan.current,
                             to_version=the_plan.target, plan=the_plan,
                             warnings=(*_run_warnings(files), *warnings))
        by_number = files.by_number()
        executor = Executor(conn, history)
        done: list[StepResult] = []
        for i, step in enumerate(the_plan.steps):
            if on_step:
                on_step(step)
            try:
                result = executor.apply(step, by_number[step.number], prepared[i])  # type: ignore[index]
            except MigrationFailed as exc:
                exc.applied_before = [s.name for s in done]
                raise
            done.append(result)
            if on_done:
                on_done(result)
        final = done[-1].version if done else the_plan.current
        return RunReport(direction="up", from_version=the_plan.current, to_version=final,
                         steps=tuple(done), plan=the_plan,
                         warnings=(*_run_warnings(files), *warnings))


def down(config: Config, *, steps: int | None = None, to: str | None = None,
         dry_run: bool = False, on_step: OnStep | None = None,
         on_done: OnDone | None = None, on_note: OnNote | None = None) -> RunReport:
    """Run rollbacks newest first, each in a transaction with the removal of its history row."""
    files = load_files(config)
    with _session(config, locked=not dry_run) as (conn, history):
        records = history.read(conn)
        # Only a failed state blocks `down`: it runs the stored rollback text, so an edited or
        # missing forward file does not make rolling back wrong.
        errors, warnings = plan.validate(files, records, plan.ALLOWABLE)
        if errors:
            raise HistoryInconsistent(errors, hint=_REPAIR_HINT)
        stored = history.rollback_sqls(conn)
        the_plan = plan.plan_down(files, records, stored, steps=steps, to=to)
        prepared, notes = check_all(list(the_plan.steps))
        if on_note:
            for note in notes:
                on_note(note)
        if dry_run:
            return RunReport(direction="down", dry_run=True, from_version=the_plan.current,
                             to_version=the_plan.target, plan=the_plan, warnings=tuple(warnings))
        executor = Executor(conn, history)
        done: list[StepResult] = []
        for i, step in enumerate(the_plan.steps):
            if on_step:
                on_step(step)
            try:
                result = executor.revert(step, prepared[i])
            except MigrationFailed as exc:
                exc.applied_before = [s.name for s in done]
                raise
            done.append(result)
            if on_done:
                on_done(result)
        return RunReport(direction="down", from_version=the_plan.current,
                         to_version=the_plan.target, steps=tuple(done), plan=the_plan,
                         warnings=tuple(warnings))


def status(config: Config) -> StatusReport:
    files = load_files(config)
    with _session(config, locked=False) as (conn, history):
        records = history.read(conn)
    errors, warnings = plan.validate(files, records)
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
    errors, warnings = plan.validate(files, records, allow)
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
    with _session(config, locked=True) as (conn, history):
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
        return RunReport(direction="baseline", from_version=plan.current_version(records),
                         to_version=str(target), steps=tuple(done))


def repair(config: Config, *, mark_applied: str | None = None,
           remove: str | None = None) -> list[str]:
    """Resolve a `started`/`failed`/`rolling_back` row after fixing the database by hand."""
    if (mark_applied is None) == (remove is None):
        raise InvalidInput("repair needs exactly one of --mark-applied VERSION or --remove VERSION")
    version = mark_applied or remove
    assert version is not None
    with _session(config, locked=True) as (conn, history):
        record = next((r for r in history.read(conn) if r.version == version), None)
        if record is None:
            raise InvalidInput(f"repair: no history row with version {version}")
        if record.status == plan.SETTLED:
            raise InvalidInput(f"repair: {record.name or version} ({version}) is already applied; "
                               "nothing to repair")
        with conn.transaction():
            if mark_applied:
                conn.execute(*history.set_status(version, plan.SETTLED))
                action = f"marked {record.name or version} ({version}) applied"
            else:
                conn.execute(*history.delete(version))
                action = f"removed {record.name or version} ({version}) from the history"
            conn.execute(*history.event("repair", "ok", version=version, name=record.name,
                                        detail=f"{action}; was `{record.status}`"))
        return [action]


def new(config: Config, description: str, *, bump: Literal["major", "minor", "patch"] | None = None,
        version: str | None = None) -> NewFiles:
    """Create the next numbered migration and its rollback from a template."""
    if bump and version:
        raise InvalidInput("give either --bump or --version, not both")
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


def _author() -> str:
    try:
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


__all__ = ["SqlmigError", "baseline", "down", "events", "history", "load_files", "new", "repair",
           "status", "up", "validate"]
