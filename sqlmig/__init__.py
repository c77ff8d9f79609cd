"""sqlmig: plain-SQL versioned migrations for PostgreSQL.

    import sqlmig
    config = sqlmig.resolve(root=Path("."), database_url="postgresql://…")
    report = sqlmig.up(config)
"""

from __future__ import annotations

__version__ = "0.1.0"

from sqlmig.config import Config, resolve
from sqlmig.errors import (
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
from sqlmig.ops import (
    baseline,
    down,
    events,
    history,
    lint,
    load_files,
    new,
    repair,
    status,
    up,
    validate,
)
from sqlmig.render import render
from sqlmig.verification import VerifyReport, verify

__all__ = [
    "Config",
    "ConnectError",
    "ExitCode",
    "FileProblems",
    "HistoryInconsistent",
    "InvalidInput",
    "Irreversible",
    "LockTimeout",
    "MigrationFailed",
    "RepairFailed",
    "SqlmigError",
    "VerifyReport",
    "__version__",
    "baseline",
    "down",
    "events",
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
]
