"""Frozen dataclasses passed between modules and returned by the public API."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from functools import lru_cache, total_ordering
from pathlib import PurePath
from typing import Any, Literal, NamedTuple

# ASCII digits only (\d also takes '١٢'); \Z, not $, which would accept a trailing newline.
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\Z")


# Not pydantic: importing it and building its models took ~60 ms of the 0.20 s that a no-op
# `sqlmig up` or `sqlmig status` may take. Nothing here validates or coerces: callers
# pass the declared types (tuples, not lists; floats for float fields). to_json below is
# model_dump(mode="json"); dataclasses.replace is model_copy(update=…).


@total_ordering
@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        if len(text.strip()) > 50:
            # The history's version column is varchar(50), as in hand-written tables.
            raise ValueError(f"version {text.strip()[:20]!r}… is longer than 50 characters")
        match = _SEMVER.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version MAJOR.MINOR.PATCH (e.g. 1.4.0)")
        return cls(major=int(match[1]), minor=int(match[2]), patch=int(match[3]))

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def bump(self, part: Literal["major", "minor", "patch"]) -> Version:
        if part == "major":
            return Version(major=self.major + 1, minor=0, patch=0)
        if part == "minor":
            return Version(major=self.major, minor=self.minor + 1, patch=0)
        return Version(major=self.major, minor=self.minor, patch=self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)


ZERO = Version(major=0, minor=0, patch=0)


# A run orders the same history versions more than once (drift key, current version); bounded,
# so a service that embeds sqlmig for years does not keep every version it ever saw.
@lru_cache(maxsize=1 << 14)
def version_key(text: str) -> tuple[int, ...]:
    """Order version strings from the history, which may predate sqlmig and not be semver."""
    # Version.parse(text).key without building a Version (10,000 rows are sorted by it); a
    # semantic version over 50 characters, which that refuses, gives the same numbers below.
    major, _, rest = text.partition(".")
    minor, _, patch = rest.partition(".")
    if major.isdigit() and minor.isdigit() and patch.isdigit() and text.isascii():
        # 1.2.3 without a regex (0.4 of the time; versions are sorted 2-3 times per run); with
        # leading zeros too, which both ways below read as the same numbers.
        return (int(major), int(minor), int(patch))
    match = _SEMVER.match(text) or _SEMVER.match(text.strip())
    if match is not None:
        return tuple(map(int, match.groups()))
    return tuple(int(p) for p in re.findall(r"\d+", text)) or (0,)


# Where a setting came from (Config.origin, `sqlmig config`).
Source = Literal["flag", "argument", "env", "file", "default"]

# The status of a history row whose migration is in (the others: started, failed, rolling_back).
SETTLED = "applied"


def current_version(records: Iterable[AppliedRecord]) -> str | None:
    """The newest settled version of the history, None when nothing is applied."""
    settled = [r.version for r in records if r.status == SETTLED]
    return max(settled, key=version_key) if settled else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with the files or the history, located as precisely as we know."""

    path: str | None = None
    line: int | None = None
    code: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "") + ": "
        label = "warning: " if self.severity == "warning" else "error: "
        return f"{where}{label}{self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    path: str
    checksum: str
    irreversible: str | None = None
    transactional: bool = True
    # From `-- sqlmig: lock-timeout 5s` / `statement-timeout 10min`: seconds, 0 = no limit,
    # None = not in the header (the settings apply).
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    # The text, or where to read it when first used: a file the file cache vouched for
    # (sqlmig.files.cache) is not read by a run that never needs its text.
    source: str | Unread = field(repr=False, compare=False, metadata={"exclude": True})

    @property
    def text(self) -> str:
        return _text(self)


class Unread(NamedTuple):
    """A file not read yet: `checksum` is what its text must still hash to when it is.

    Records do no I/O of their own: the loader (sqlmig.files.load) hands them a subclass whose
    `read` opens the file and checks it; this base is only its data."""

    path: str  # to open
    rel: str  # to name in messages
    checksum: str
    cache: str | None = None  # the file cache that vouched for it (removed if it was wrong)

    def read(self, record: Migration | Rollback) -> str:
        raise NotImplementedError(f"{self.rel}: no reader was given for this file")


def _text(record: Migration | Rollback) -> str:
    source = record.source
    if isinstance(source, str):
        return source
    text = source.read(record)
    # Memoized in the frozen record: every later use must see the text this one checked.
    object.__setattr__(record, "source", text)
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    number: int
    slug: str
    path: str
    version: Version
    description: str
    transactional: bool = True
    lock_timeout: float | None = None  # header values, as for Rollback
    statement_timeout: float | None = None
    checksum: str
    source: str | Unread = field(repr=False, compare=False, metadata={"exclude": True})
    rollback: Rollback

    @property
    def text(self) -> str:
        return _text(self)

    @property
    def name(self) -> str:
        """The file's stem, `001_initial_schema`: how the history and messages name it."""
        return self.path.rsplit("/", 1)[-1].removesuffix(".sql")


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationSet:
    migrations: tuple[Migration, ...]
    warnings: tuple[Problem, ...] = ()
    # path -> (text, filechecks.Checked) of the files files.load parsed: execute reuses them.
    parsed: Mapping[str, Any] = field(
        default_factory=dict, repr=False, compare=False, metadata={"exclude": True}
    )

    def by_number(self) -> dict[int, Migration]:
        return {m.number: m for m in self.migrations}


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedRecord:
    """A row of the history table. Rows adopted from a hand-written table lack most fields."""

    version: str
    number: int | None = None
    name: str | None = None
    description: str | None = None
    checksum: str | None = None
    rollback_checksum: str | None = None
    canonical_checksum: str | None = None  # of the parse tree: None for older rows, unparseable
    rollback_sql: str | None = field(default=None, repr=False, metadata={"exclude": True})
    applied_at: datetime | None = None
    applied_by: str | None = None  # current_user: the role it ran as (--role), owner of objects
    login_user: str | None = None  # session_user: who logged in (differs with --role)
    execution_ms: int | None = None
    status: str = "applied"
    transactional: bool | None = None
    baseline: bool = False
    sqlmig_version: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    id: int
    at: datetime
    action: str
    version: str | None = None
    name: str | None = None
    outcome: str
    duration_ms: int | None = None
    actor: str | None = None
    client_host: str | None = None
    sqlmig_version: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStep:
    direction: Literal["up", "down"]
    number: int | None
    version: str
    name: str
    path: str
    transactional: bool
    sql: str = field(repr=False)
    warnings: tuple[str, ...] = ()
    lock_timeout: float | None = None  # the file's header values (see sqlmig.engine.timeouts)
    statement_timeout: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    direction: Literal["up", "down"]
    current: str | None
    target: str | None
    steps: tuple[PlanStep, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    direction: Literal["up", "down"]
    number: int | None
    version: str
    name: str
    duration_ms: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryNotice:
    """A migration rolled back by a lock timeout or deadlock, about to run again."""

    direction: Literal["up", "down"]
    name: str
    version: str
    attempt: int  # the try that failed, 1-based
    attempts: int  # tries in all: 1 + retries
    sqlstate: str | None
    error: str  # the failure, file:line:col: ERROR [55P03]: …
    delay: float  # seconds until the next try


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupReport:
    """A pg_dump -Fc of the database (`sqlmig backup`, `up --backup DIR`)."""

    path: str
    database: str
    version: str | None  # the database's version when it was dumped
    size_bytes: int
    duration_ms: int
    pg_dump: str  # the program used
    pg_dump_version: str
    server_version: str
    note: str | None = None  # why this pg_dump (e.g. the one on PATH is older than the server)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    direction: Literal["up", "down", "baseline"]
    dry_run: bool = False
    from_version: str | None
    to_version: str | None
    steps: tuple[StepResult, ...] = ()
    plan: Plan | None = None
    warnings: tuple[Problem, ...] = ()
    backup: BackupReport | None = None
    # --lock-mode transaction: planned steps another runner did meanwhile, as "name (version)".
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingMigration:
    number: int
    version: str
    name: str
    path: str
    transactional: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    database: str
    history_table: str
    current_version: str | None
    applied: tuple[AppliedRecord, ...]
    pending: tuple[PendingMigration, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    ok: bool
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()


def to_json(obj: Any) -> Any:
    """`obj` as JSON-ready lists, dicts and scalars: what `--json` prints (and what pydantic's
    model_dump(mode="json") gave). Dataclasses become dicts of their fields, less those marked
    `metadata={"exclude": True}`, then the properties named in their `_computed`; tuples become
    lists; datetimes ISO 8601 (`Z` for UTC); paths strings."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_json(getattr(obj, name)) for name in _json_names(type(obj))}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return _iso(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


@lru_cache(maxsize=64)  # one entry per record type: `--json` of 10,000 rows asks 10,000 times
def _json_names(cls: type) -> tuple[str, ...]:
    return (
        *(f.name for f in fields(cls) if not f.metadata.get("exclude")),
        *getattr(cls, "_computed", ()),
    )


def _iso(value: datetime) -> str:
    # As pydantic wrote them: 2026-01-01T01:02:03.004500Z, 2026-01-01T00:00:00+02:00; an
    # offset to the minute.
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat()
    text = value.replace(tzinfo=None).isoformat()
    seconds = int(offset.total_seconds())
    if seconds == 0:
        return text + "Z"
    minutes = abs(seconds) // 60
    return f"{text}{'-' if seconds < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
