"""The public operations beside applying and inspecting: repair, new, lint, backup, check and
wait. They share ops' connection, lock and file loading; apart, so that ops stays the one
breath of up/down/status (files → connect → lock → history → plan → execute)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from sqlmig import files as files_mod
from sqlmig import plan
from sqlmig.config import Config
from sqlmig.errors import FileProblems, InvalidInput, SqlmigError
from sqlmig.history import History
from sqlmig.models import MigrationSet, Version
from sqlmig.ops import OnWait, _guarded, _parse_version, _session, load_files

if TYPE_CHECKING:  # loaded by the commands that make them (see sqlmig.reports)
    from sqlmig.reports import (
        BackupReport,
        CheckResult,
        LintReport,
        NewFiles,
        RepairReport,
        WaitReport,
    )


# A longer slug is refused (Alembic cuts its slugs at 40 characters; we say so instead).
_SLUG_MAX = 100


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

    target = Path(directory) if directory is not None else (config.backup_dir or config.root / "backups")
    with _session(config, locked=False) as (conn, history):
        current = plan.current_version(history.read(conn))
        try:
            report = dump.backup(config, conn, target, current)
        except SqlmigError as exc:
            _log_backup(conn, history, "failed", current, detail=exc.message)
            raise
        _log_backup(conn, history, "ok", current, detail=report.path, duration_ms=report.duration_ms)
        return report


def _log_backup(
    conn: psycopg.Connection, history: History, outcome: str, version: str | None, **fields: Any
) -> None:
    """The event of a standalone backup, as `up --backup` logs its own; where sqlmig has no
    event log yet (a backup before the first migration) there is nothing to log it in."""
    if not history.events_exist(conn):
        return
    with contextlib.suppress(psycopg.Error):  # a read-only role may dump but not log
        conn.execute(*history.event("backup", outcome, version=version, **fields))


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
        ok, message = (
            False,
            (f"no version applied ({config.qualified_table} is empty or missing); required {wanted.text}"),
        )
    else:
        try:
            ok = wanted.satisfied_by(Version.parse(current).key)
        except ValueError:
            ok = False
            message = f"version {current} is not a semantic version; required {wanted.text}"
        else:
            verb = "satisfies" if ok else "does not satisfy"
            message = f"version {current} {verb} {wanted.text} ({wanted.meaning})"
    return CheckResult(
        ok=ok, require=wanted.text, meaning=wanted.meaning, current_version=current, message=message
    )


def repair(
    config: Config,
    *,
    mark_applied: str | None = None,
    remove: str | None = None,
    accept_formatting: Iterable[str] | None = None,
    drop_invalid_indexes: bool = False,
    drop_index: Iterable[str] = (),
    refresh_rollback: Iterable[str] = (),
) -> RepairReport:
    """Without an action, list what can be repaired (read-only, no lock). With one action, do it
    under the lock; every change is logged in the event log.

    - `mark_applied` / `remove`: resolve a `started`/`failed`/`rolling_back` row after fixing
      the database by hand;
    - `accept_formatting`: store the new checksum of formatting-only edits ([] = all of them);
    - `drop_invalid_indexes` / `drop_index`: DROP INDEX CONCURRENTLY invalid indexes (all / named);
    - `refresh_rollback`: store these versions' rollback files in place of the texts stored when
      they were applied (which `down` runs).
    """
    from sqlmig import repairs
    from sqlmig.reports import RepairReport

    names = list(drop_index)
    refresh = list(refresh_rollback)
    chosen = [
        mark_applied is not None,
        remove is not None,
        accept_formatting is not None,
        drop_invalid_indexes or bool(names),
        bool(refresh),
    ]
    if sum(chosen) > 1:
        raise InvalidInput(
            "repair: one action at a time (--mark-applied, --remove, "
            "--accept-formatting, --drop-invalid-index[es], --refresh-rollback)"
        )
    if not any(chosen):
        return _repair_listing(config)
    files = load_files(config) if accept_formatting is not None or refresh else None
    notes: list[str] = []
    with _guarded(config, locked=True) as (conn, history, guard):
        if files is not None or mark_applied is not None or remove is not None:
            with guard.locked():
                records = history.read(conn)
                if files is not None and refresh:
                    done = repairs.refresh_rollback(conn, history, files, records, refresh)
                elif files is not None:
                    done = repairs.accept_formatting(
                        conn, history, files, records, list(accept_formatting or ())
                    )
                else:
                    # Either way the index stays invalid: marked applied, the step is taken for
                    # done; removed, its rerun's CREATE INDEX … IF NOT EXISTS skips the index.
                    notes += [
                        f"warning: invalid index {i.qualified} on {i.table} is still "
                        "there: if the step built it, it is not complete; drop it "
                        f"(`sqlmig repair --drop-invalid-index {i.qualified}`) and let "
                        "`up` build it"
                        for i in repairs.invalid_indexes(conn)
                    ]
                    version = mark_applied if mark_applied is not None else remove
                    assert version is not None
                    done = [
                        repairs.resolve_row(conn, history, records, version, applied=mark_applied is not None)
                    ]
        else:
            # DROP INDEX CONCURRENTLY runs in autocommit: under the lease in transaction mode.
            with guard.hold_lease("repair", "drop invalid indexes"):
                found = repairs.invalid_indexes(conn)
                if names and not drop_invalid_indexes:
                    targets = repairs.pick_indexes(conn, found, names)
                else:
                    targets = [i for i in found if i.building_pid is None]
                    notes += [
                        f"skipped {i.qualified} on {i.table}: a concurrent build is still "
                        f"running in backend {i.building_pid}"
                        for i in found
                        if i.building_pid is not None
                    ]
                done = repairs.drop_indexes(conn, history, targets)
    notes += [f"warning: {w.message}" for w in guard.warnings]
    return RepairReport(done=tuple(done), notes=tuple(notes))


def _repair_listing(config: Config) -> RepairReport:
    from sqlmig import repairs
    from sqlmig.reports import RepairReport, RollbackChange

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
        rollbacks_changed=tuple(
            RollbackChange(
                version=r.version,
                name=m.name,
                path=m.rollback.path,
                stored_checksum=r.rollback_checksum or "",
                checksum=m.rollback.checksum,
            )
            for r, m in repairs.rollback_changes(files, records)
        )
        if files is not None
        else (),
        notes=tuple(notes),
    )


def new(
    config: Config,
    description: str,
    *,
    bump: Literal["major", "minor", "patch"] | None = None,
    version: str | None = None,
) -> NewFiles:
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
    if len(slug) > _SLUG_MAX:
        raise InvalidInput(
            f"the description makes a file name slug of {len(slug)} characters: at most "
            f"{_SLUG_MAX} (file names are at most 255 bytes, and a name is for finding the file)",
            hint="give a short description; say more in the file's `-- Description:` line",
        )
    if config.migrations_path.is_dir() and not config.rollbacks_path.exists():
        # `new` writes the first rollback there: a missing rollbacks/ is not yet a problem.
        try:
            config.rollbacks_path.mkdir(parents=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create {config.rollbacks_path}: {exc.strerror}") from exc
    files = load_files(config)
    last = files.migrations[-1] if files.migrations else None
    if version is not None:
        new_version = _parse_version(version)
        if last and not last.version < new_version:
            raise InvalidInput(f"--version {version} must be greater than {last.version} of {last.path}")
    elif last is None:
        new_version = Version(major=1, minor=0, patch=0)
    else:
        new_version = last.version.bump(bump or "minor")
    number = (last.number + 1) if last else 1
    width = (
        max(3, *(len(m.path.rsplit("/", 1)[-1].split("_", 1)[0]) for m in files.migrations))
        if files.migrations
        else 3
    )
    stem = f"{number:0{width}d}_{slug}"
    mig_path = config.migrations_path / f"{stem}.sql"
    rb_path = config.rollbacks_path / f"{stem}_rollback.sql"
    for path in (mig_path, rb_path):
        if path.exists():
            raise InvalidInput(f"{path} already exists")
    try:
        config.rollbacks_path.mkdir(parents=True, exist_ok=True)
        _write_new(mig_path, rb_path, stem, new_version, description, config.migration_lock_timeout)
    except OSError as exc:
        raise InvalidInput(f"cannot write {exc.filename or mig_path}: {exc.strerror or exc}") from exc
    root = config.root
    return NewFiles(
        migration=files_mod.relative(mig_path, root),
        rollback=files_mod.relative(rb_path, root),
        number=number,
        version=str(new_version),
    )


def _write_new(
    mig_path: Path,
    rb_path: Path,
    stem: str,
    new_version: Version,
    description: str,
    lock_timeout: float | None,
) -> None:
    from sqlmig.timeouts import format_duration

    today = dt.date.today().isoformat()
    # The bound of table-lock waits, stated in the file where the reviewer sees it: the
    # project's setting when it is one (lint's missing-lock-timeout then passes wherever the
    # file runs, `inherit` included), else 5s.
    bound = format_duration(lock_timeout) if lock_timeout and lock_timeout <= 10 else "5s"
    mig_path.write_text(
        f"-- Migration: {stem}\n-- Version: {new_version}\n-- Description: {description}\n"
        f"-- Author: {_author()}\n-- Date: {today}\n-- sqlmig: lock-timeout {bound}\n\n"
        "-- The forward change, in plain PostgreSQL. sqlmig runs the whole file in one transaction\n"
        "-- with its schema_version row: no BEGIN/COMMIT here. For CREATE INDEX CONCURRENTLY and\n"
        "-- the like, add the header line `-- sqlmig: no-transaction` above.\n"
    )
    rb_path.write_text(
        f"-- Rollback of {stem} (version {new_version})\n\n"
        f"-- Undo exactly what migrations/{stem}.sql does, newest change first.\n"
        "-- If it cannot be undone, make the first line: -- sqlmig: irreversible <reason>\n"
    )


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


__all__ = ["backup", "check", "lint", "new", "repair", "wait"]
