"""sqlmig: plain-SQL versioned migrations for PostgreSQL.

import sqlmig
config = sqlmig.resolve(root=Path("."), database_url="postgresql://…")
report = sqlmig.up(config)

Every name below loads its module on first use, so a command pays only for what it runs (a
no-op `up` never imports lint, verify or render). docs/architecture.md maps the packages.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

from sqlmig.about import VERSION as __version__

if TYPE_CHECKING:
    from sqlmig.authoring.new import new
    from sqlmig.authoring.scaffold import init
    from sqlmig.checks.lint import lint
    from sqlmig.checks.verify import VerifyReport, verify
    from sqlmig.config.settings import Config, resolve
    from sqlmig.deploy.backup import backup
    from sqlmig.deploy.require import check
    from sqlmig.deploy.wait import wait
    from sqlmig.engine.apply import baseline, down, up
    from sqlmig.engine.inspect import current, events, explain_config, history, status, validate
    from sqlmig.engine.progress import Progress
    from sqlmig.engine.repair import repair
    from sqlmig.engine.session import load_files
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
    from sqlmig.models import (
        AppliedRecord,
        BackupReport,
        EventRecord,
        Migration,
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
    from sqlmig.psql.render import render
    from sqlmig.reports import (
        CheckResult,
        ConfigReport,
        LintReport,
        NewFiles,
        RepairReport,
        WaitAttempt,
        WaitReport,
    )

# Public name -> the module that defines it.
_EXPORTS = MappingProxyType(
    {
        **dict.fromkeys(["Config", "resolve"], "sqlmig.config.settings"),
        **dict.fromkeys(
            ["current", "events", "explain_config", "history", "status", "validate"], "sqlmig.engine.inspect"
        ),
        **dict.fromkeys(["baseline", "down", "up"], "sqlmig.engine.apply"),
        **dict.fromkeys(["load_files"], "sqlmig.engine.session"),
        **dict.fromkeys(["Progress"], "sqlmig.engine.progress"),
        **dict.fromkeys(["repair"], "sqlmig.engine.repair"),
        **dict.fromkeys(["new"], "sqlmig.authoring.new"),
        **dict.fromkeys(["init"], "sqlmig.authoring.scaffold"),
        **dict.fromkeys(["lint"], "sqlmig.checks.lint"),
        **dict.fromkeys(["VerifyReport", "verify"], "sqlmig.checks.verify"),
        **dict.fromkeys(["backup"], "sqlmig.deploy.backup"),
        **dict.fromkeys(["check"], "sqlmig.deploy.require"),
        **dict.fromkeys(["wait"], "sqlmig.deploy.wait"),
        **dict.fromkeys(["render"], "sqlmig.psql.render"),
        **dict.fromkeys(
            [
                "BackupFailed",
                "ConfigInvalid",
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
            ],
            "sqlmig.errors",
        ),
        **dict.fromkeys(
            [
                "AppliedRecord",
                "BackupReport",
                "EventRecord",
                "Migration",
                "MigrationSet",
                "Plan",
                "PlanStep",
                "Problem",
                "RetryNotice",
                "RunReport",
                "StatusReport",
                "StepResult",
                "ValidationReport",
                "Version",
            ],
            "sqlmig.models",
        ),
        **dict.fromkeys(
            [
                "CheckResult",
                "ConfigReport",
                "LintReport",
                "NewFiles",
                "RepairReport",
                "WaitAttempt",
                "WaitReport",
            ],
            "sqlmig.reports",
        ),
    }
)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sqlmig' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AppliedRecord",
    "BackupFailed",
    "BackupReport",
    "CheckResult",
    "Config",
    "ConfigInvalid",
    "ConfigReport",
    "ConnectError",
    "EventRecord",
    "ExitCode",
    "FileProblems",
    "HistoryInconsistent",
    "InvalidInput",
    "Irreversible",
    "LintReport",
    "LockTimeout",
    "Migration",
    "MigrationFailed",
    "MigrationSet",
    "NewFiles",
    "Plan",
    "PlanStep",
    "Problem",
    "Progress",
    "RepairFailed",
    "RepairReport",
    "RetryNotice",
    "RunReport",
    "SqlmigError",
    "StatusReport",
    "StepResult",
    "ValidationReport",
    "VerifyReport",
    "Version",
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
    "init",
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
