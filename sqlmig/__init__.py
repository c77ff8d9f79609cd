"""sqlmig: plain-SQL versioned migrations for PostgreSQL.

import sqlmig
config = sqlmig.resolve(root=Path("."), database_url="postgresql://…")
report = sqlmig.up(config)
"""

from __future__ import annotations

__version__ = "0.1.0"

from sqlmig.config import Config, explain_config, resolve
from sqlmig.errors import (
    BackupFailed,
    ConfigInvalid,
    ConnectError,
    ExitCode,
    FileProblems,
    HistoryInconsistent,
    InvalidInput,
    Irreversible,
    LockTimeout,
    MigrationFailed,
    RepairFailed,
    SqlmigError,
)
from sqlmig.maintenance import backup, check, lint, new, repair, wait
from sqlmig.models import RetryNotice
from sqlmig.ops import baseline, current, down, events, history, load_files, status, up, validate
from sqlmig.render import render


def __getattr__(name: str) -> object:
    # `verify` and the other commands' records load on first use: up, down and status skip
    # importing them.
    if name in ("verify", "VerifyReport"):
        from sqlmig import verification

        return getattr(verification, name)
    if name in ("BackupReport", "CheckResult", "ConfigReport", "WaitAttempt", "WaitReport"):
        from sqlmig import reports

        return getattr(reports, name)
    raise AttributeError(f"module 'sqlmig' has no attribute {name!r}")


__all__ = [
    "BackupFailed",
    "BackupReport",
    "CheckResult",
    "Config",
    "ConfigInvalid",
    "ConfigReport",
    "ConnectError",
    "ExitCode",
    "FileProblems",
    "HistoryInconsistent",
    "InvalidInput",
    "Irreversible",
    "LockTimeout",
    "MigrationFailed",
    "RepairFailed",
    "RetryNotice",
    "SqlmigError",
    "VerifyReport",
    "WaitAttempt",
    "WaitReport",
    "__version__",
    "backup",
    "baseline",
    "check",
    "current",
    "down",
    "events",
    "explain_config",
    "history",
    "lint",
    "load_files",
    "new",
    "render",
    "repair",
    "resolve",
    "status",
    "up",
    "validate",
    "verify",
    "wait",
]
