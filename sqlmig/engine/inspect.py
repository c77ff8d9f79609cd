"""The read-only operations: status, validate, history, current, events, and the resolved
configuration (explain_config). None takes the migration lock."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmig.config.redaction import redact
from sqlmig.config.settings import Config, Secret, secrets_of, settings
from sqlmig.db import drift, indexes
from sqlmig.db.connect import describe
from sqlmig.engine import plan
from sqlmig.engine.session import load_files, session
from sqlmig.models import (
    AppliedRecord,
    EventRecord,
    MigrationSet,
    StatusReport,
    ValidationReport,
)

if TYPE_CHECKING:  # built only by `sqlmig config` (see sqlmig.reports)
    from sqlmig.reports import ConfigReport


def status(config: Config, *, files: MigrationSet | None = None) -> StatusReport:
    """Current version, applied and pending migrations, problems. `files`: as for `up`."""
    files = files or load_files(config)
    with session(config, locked=False) as (conn, history):
        records = history.read(conn)
        drifted, drift_warnings = drift.check(conn, history, records)
        broken, building = indexes.as_problems(conn)
    matched = plan.match(files, records)
    errors, warnings = plan.validate(files, records, matched=matched)
    errors += drifted + broken
    warnings += drift_warnings + building
    return StatusReport(
        database=describe(config),
        history_table=config.qualified_table,
        current_version=plan.current_version(records),
        applied=tuple(records),
        pending=tuple(plan.pending(files, records, matched=matched)),
        problems=tuple(errors),
        warnings=(*files.warnings, *warnings),
    )


def validate(
    config: Config, allow: Iterable[str] = (), *, files: MigrationSet | None = None
) -> ValidationReport:
    """Files against the history and the schema. `files`: as for `up`."""
    plan.check_allow(allow)
    files = files or load_files(config)
    with session(config, locked=False) as (conn, history):
        records = history.read(conn)
        drifted, drift_warnings = drift.check(conn, history, records)
        broken, building = indexes.as_problems(conn)
    errors, warnings = plan.validate(files, records, allow)
    errors += drifted + broken
    warnings += drift_warnings + building
    return ValidationReport(ok=not errors, problems=tuple(errors), warnings=(*files.warnings, *warnings))


def history(config: Config, limit: int | None = None) -> list[AppliedRecord]:
    """Applied migrations, newest first."""
    with session(config, locked=False) as (conn, hist):
        records = list(reversed(hist.read(conn)))
    return records[:limit] if limit is not None else records


def current(config: Config) -> str | None:
    """The newest applied version (None: nothing applied), from the history alone: the files are
    not read, for probes and scripts that only ask where the database is."""
    with session(config, locked=False) as (conn, hist):
        return plan.current_version(hist.read(conn))


def events(config: Config, limit: int | None = None) -> list[EventRecord]:
    with session(config, locked=False) as (conn, hist):
        return hist.read_events(conn, limit)


def explain_config(config: Config) -> ConfigReport:
    """Every setting of `config` and where it came from, with secrets redacted."""
    from sqlmig.reports import ConfigReport, Setting

    secrets = secrets_of(config)
    effective: dict[str, Any] = {
        "migrations_dir": config.migrations_path,
        "rollbacks_dir": config.rollbacks_path,
    }
    shown: dict[str, Setting] = {}
    for name, key in {"root": "root", **settings()}.items():
        value = getattr(config, name)
        if value is None:
            value = effective.get(name)
        if isinstance(value, Secret):
            # Only a URL can be shown without its password; any other secret not at all.
            value = redact(value.get_secret_value(), *secrets) if name == "database_url" else "***"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple | list | set | frozenset):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        kind, origin = config.origin(name)
        shown[key] = Setting(value=value, source=kind, origin=origin)
    return ConfigReport(
        file=config.file,
        database=describe(config),
        settings=shown,
        notes=config.notes,
    )


__all__ = ["current", "events", "explain_config", "history", "status", "validate"]
