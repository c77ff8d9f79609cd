"""Records returned by the commands other than up/down/status/validate: backup, wait, check,
repair, new, lint and config. Frozen dataclasses like those of sqlmig.models, kept apart so
that the everyday commands do not pay for building them at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from sqlmig.models import AppliedRecord, BackupReport, RunReport, Source, StatusReport, ValidationReport


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitAttempt:
    """One failed try of `sqlmig wait`: attempt number, the error, the pause before the next."""

    attempt: int
    error: str
    next_in: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitReport:
    attempts: int
    waited_ms: int
    server_version: str
    database: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """`sqlmig check --require RANGE`: does the database's version satisfy the range?"""

    ok: bool
    require: str  # as given
    meaning: str  # what it expands to: `>=1.2.0, <2.0.0`
    current_version: str | None
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidIndex:
    """An index with pg_index.indisvalid = false, e.g. what a failed CREATE INDEX CONCURRENTLY
    leaves: never used by queries, yet updated on every write (and, if unique, enforced)."""

    schema_name: str
    name: str
    qualified: str  # schema.index, quoted where needed
    table: str  # schema.table, quoted where needed
    definition: str | None = None  # pg_get_indexdef; None if the table was locked too long
    building_pid: int | None = None  # a concurrent build is still running in this backend

    _computed: ClassVar[tuple[str, ...]] = ("drop_sql",)  # in to_json, after the fields

    @property
    def drop_sql(self) -> str:
        return f"DROP INDEX CONCURRENTLY {self.qualified};"


@dataclass(frozen=True, slots=True, kw_only=True)
class FormattingChange:
    """An applied file whose bytes changed but whose parsed statements did not."""

    version: str
    name: str
    path: str
    stored_checksum: str
    checksum: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackChange:
    """An applied migration whose rollback file differs from the text stored when applied
    (which `down` runs)."""

    version: str
    name: str
    path: str  # the rollback file
    stored_checksum: str
    checksum: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairReport:
    done: tuple[str, ...] = ()  # what this call changed, one line each (also in the event log)
    unfinished: tuple[AppliedRecord, ...] = ()  # rows left `started`/`failed`/`rolling_back`
    invalid_indexes: tuple[InvalidIndex, ...] = ()
    formatting_only: tuple[FormattingChange, ...] = ()
    rollbacks_changed: tuple[RollbackChange, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NewFiles:
    migration: str
    rollback: str
    number: int
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LintFinding:
    """One statement that breaks one lint rule, at file:line:column (1-based)."""

    rule: str
    severity: Literal["error", "warning"]
    path: str
    line: int
    column: int
    message: str  # what this statement does and why it is risky
    fix: str  # the safe alternative
    allowed: str | None = None  # the reason of the `-- sqlmig: allow` that suppressed it

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LintReport:
    files: tuple[str, ...]  # the files whose findings are reported
    findings: tuple[LintFinding, ...]  # errors and warnings that stand
    allowed: tuple[LintFinding, ...] = ()  # suppressed by `-- sqlmig: allow`, with the reason
    # How many findings are problems that make `up`/`down` refuse a file (exit 2, as validate).
    refused_count: int = 0

    _computed: ClassVar[tuple[str, ...]] = ("error_count", "warning_count", "ok")  # in to_json

    @property
    def error_count(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warning_count(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    @property
    def ok(self) -> bool:
        """No error-level finding stands (warnings do not fail)."""
        return self.error_count == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    value: Any = None  # in effect, secrets redacted; None = not set
    source: Source
    origin: str | None = None  # the flag, the variable or the file it came from


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReport:
    """What `sqlmig config` shows: every setting in effect and where it came from."""

    file: str | None  # the config file read, if any
    database: str  # where sqlmig connects, without a password
    settings: dict[str, Setting]  # by key, in Config's order, `root` first
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetResult:
    """One target of a run over many (`--target`, `--each-schema`…): what its own ordinary run
    did, or why it did not run."""

    name: str
    database: str  # where it connected, without a password (and the schema, with --each-schema)
    outcome: Literal["ok", "failed", "not run"]
    exit_code: int  # its own run's exit code (0 for "not run")
    from_version: str | None = None
    to_version: str | None = None  # after the run (status, validate, check: the current version)
    steps: int = 0  # migrations applied (up) or rolled back (down); pending ones (status)
    duration_ms: int = 0
    message: str | None = None  # the error, the check's verdict, why it did not run
    # The command's own record for this target (not in --json: the fields above say it).
    report: RunReport | StatusReport | ValidationReport | CheckResult | None = field(
        default=None, repr=False, compare=False, metadata={"exclude": True}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetReport:
    """One command over many targets: each target's result in the order they were taken."""

    command: str
    targets: tuple[TargetResult, ...]
    exit_code: int  # the most severe of the targets' (6, 3, 4, 5, 2, 1, 0)
    parallel: int
    canary: int
    duration_ms: int

    _computed: ClassVar[tuple[str, ...]] = ("ok", "failed", "not_run")  # in to_json

    @property
    def ok(self) -> int:
        return sum(t.outcome == "ok" for t in self.targets)

    @property
    def failed(self) -> int:
        return sum(t.outcome == "failed" for t in self.targets)

    @property
    def not_run(self) -> int:
        return sum(t.outcome == "not run" for t in self.targets)


__all__ = [
    "BackupReport",  # defined with RunReport, which holds one (sqlmig.models)
    "CheckResult",
    "ConfigReport",
    "FleetReport",
    "FormattingChange",
    "InvalidIndex",
    "LintFinding",
    "LintReport",
    "NewFiles",
    "RepairReport",
    "RollbackChange",
    "Setting",
    "TargetResult",
    "WaitAttempt",
    "WaitReport",
]
