"""One command over many targets: tenant schemas, several databases, several servers.

Each target is exactly one ordinary run of the command (its own connection, lock, history table
and transactions, its own exit code), so everything that holds for one database holds for each:
a target that fails keeps the migrations before the failure, a rerun applies only what is
missing, two fleets over the same targets serialise on each target's lock.

Order: the targets run in the order they were given (`--target` and `--targets FILE` as written,
`--all-targets` as the `[targets]` table lists them, `--each-schema` sorted by schema name). The
first `canary` run one after the other, before any other is touched; then up to `parallel` at
once, each on its own connection. Unless `keep_going`, no target starts after one failed (those
running finish). The exit code is the most severe of the targets': 6, 3, 4, 5, 2, 1, 0.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from psycopg import sql

from sqlmig.config import file as configfile
from sqlmig.config.settings import TARGETS_TABLE, Config, InvalidSettings, Secret
from sqlmig.db.connect import describe, open_session, reusing
from sqlmig.errors import ExitCode, InvalidInput, SqlmigError
from sqlmig.models import RunReport, StatusReport, ValidationReport
from sqlmig.reports import CheckResult, FleetReport, TargetResult

# Most severe first: a history that needs an operator, a failed migration, a lock not had, a
# database not reached, bad input, a check not satisfied, success.
SEVERITY = (ExitCode.INCONSISTENT, 3, 4, 5, 2, 1, 0)
PARALLEL_DEFAULT = 8


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where one run goes: a database (None: the configured one) and optionally a schema (the
    history table inside it, and first on the search_path, as `--schema` does)."""

    name: str
    database_url: Secret | None = None
    schema: str | None = None
    role: str | None = None
    password_file: str | None = None


def most_severe(codes: Iterable[int]) -> int:
    codes = set(codes)
    return next((c for c in SEVERITY if c in codes), ExitCode.OK)


def from_flags(config: Config, given: Sequence[str], *, all_targets: bool = False) -> list[Target]:
    """`--target NAME=URL` (a database by URL) and `--target NAME` (one of the `[targets]` table
    of sqlmig.toml); `all_targets`: every one of that table, in its order."""
    table = _table(config)
    targets: list[Target] = list(table.values()) if all_targets else []
    for text in given:
        name, eq, url = text.partition("=")
        name = name.strip()
        if not name:
            raise InvalidInput(f"--target {text!r}: expected NAME=URL, or NAME of the [targets] table")
        if eq:
            targets.append(Target(name=name, database_url=Secret(url.strip())))
        elif name in table:
            targets.append(table[name])
        else:
            known = ", ".join(table) or "none in sqlmig.toml"
            raise InvalidInput(f"--target {name}: no such target in [targets] ({known})")
    return targets


def from_file(path: Path) -> list[Target]:
    """`--targets FILE`: one `NAME URL` a line (the URL may be libpq's `key=value …` form);
    blank lines and lines starting with `#` are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InvalidInput(f"--targets {path}: cannot read it: {exc.strerror}") from exc
    targets = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, _, url = text.partition(" ")
        if not url.strip():
            # The line is not echoed: a URL without its name would still carry its password.
            raise InvalidInput(f"{path}:{number}: expected `NAME URL` (a name, a space, a connection URL)")
        targets.append(Target(name=name, database_url=Secret(url.strip())))
    return targets


def each_schema(config: Config, *, like: str | None = None, query: str | None = None) -> list[Target]:
    """One target per schema of the configured database whose name is LIKE `like`, or that
    `query` returns (its first column), sorted by name."""
    with open_session(config) as (conn, _):
        if query is not None:
            rows = conn.execute(sql.SQL(query)).fetchall()  # type: ignore[arg-type]  # the user's own SQL
        else:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY nspname", (like,)
            ).fetchall()
    names = sorted({str(row[0]) for row in rows if row and row[0] is not None})
    return [Target(name=name, schema=name) for name in names]


def check_names(targets: Sequence[Target]) -> None:
    if not targets:
        raise InvalidInput("no targets: nothing matched the pattern, the file or the list given")
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise InvalidInput(f"target {target.name!r} is given twice")
        seen.add(target.name)


def config_for(config: Config, target: Target) -> Config:
    """The configuration of one target's run: the project's, with its database and schema."""
    changes: dict[str, Any] = {}
    if target.database_url is not None:
        changes["database_url"] = target.database_url
    if target.schema is not None:
        changes["schema_name"] = target.schema
    if target.role is not None:
        changes["role"] = target.role
    if target.password_file is not None:
        try:
            password = Path(target.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidInput(
                f"target {target.name}: cannot read password file {target.password_file}: {exc.strerror}"
            ) from exc
        changes["password"] = Secret(password)
    try:
        return dataclasses.replace(config, **changes)
    except InvalidSettings as exc:
        raise InvalidInput(
            "; ".join(f"target {target.name}: {name}: {message}" for name, message in exc.errors)
        ) from exc


def run(
    config: Config,
    targets: Sequence[Target],
    command: str,
    operation: Callable[[Config], object],
    *,
    parallel: int | None = None,
    canary: int = 0,
    keep_going: bool = False,
    on_done: Callable[[TargetResult], None] | None = None,
) -> FleetReport:
    """Run `operation` (sqlmig.up, status… with its arguments bound) once per target; see the
    module's docstring for the order. `on_done` hears of each target as it ends (from the
    worker's thread, one at a time)."""
    check_names(targets)
    if canary < 0 or (parallel is not None and parallel < 1):
        raise InvalidInput("--parallel must be 1 or more, --canary 0 or more")
    workers = min(parallel or PARALLEL_DEFAULT, len(targets))
    began = time.perf_counter()
    results: dict[str, TargetResult] = {}
    told = threading.Lock()
    stop = threading.Event()

    def one(target: Target) -> None:
        result = _run_one(config, target, operation)
        with told:
            results[target.name] = result
            if result.outcome == "failed" and not keep_going:
                stop.set()
            if on_done is not None:
                on_done(result)

    first, rest = list(targets[:canary]), list(targets[canary:])
    with reusing():
        for target in first:
            one(target)
            if results[target.name].outcome == "failed":
                stop.set()  # a failed canary: the rest is never touched, --keep-going or not
                break
    if not stop.is_set() and rest:
        queue = iter(rest)
        take = threading.Lock()

        def worker() -> None:
            with reusing():  # one connection per worker and database, cleaned between targets
                while not stop.is_set():
                    with take:
                        target = next(queue, None)
                    if target is None:
                        return
                    one(target)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sqlmig-target") as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()  # a bug in a worker is raised here, not lost
    ordered = tuple(
        results.get(t.name)
        or TargetResult(
            name=t.name,
            database=_where(config, t),
            outcome="not run",
            exit_code=ExitCode.OK,
            message="not started: an earlier target failed",
        )
        for t in targets
    )
    return FleetReport(
        command=command,
        targets=ordered,
        exit_code=most_severe(r.exit_code for r in ordered),
        parallel=workers,
        canary=min(canary, len(targets)),
        duration_ms=round((time.perf_counter() - began) * 1000),
    )


def _run_one(config: Config, target: Target, operation: Callable[[Config], object]) -> TargetResult:
    began = time.perf_counter()
    where = _where(config, target)
    try:
        report = operation(config_for(config, target))
    except SqlmigError as exc:
        return TargetResult(
            name=target.name,
            database=where,
            outcome="failed",
            exit_code=exc.exit_code,
            duration_ms=round((time.perf_counter() - began) * 1000),
            message=exc.message + (f" ({exc.hint})" if exc.hint else ""),
        )
    fields = _summary(report)
    return TargetResult(
        name=target.name,
        database=where,
        duration_ms=round((time.perf_counter() - began) * 1000),
        report=report,  # type: ignore[arg-type]  # one of the four, or _summary raised
        **fields,
    )


def _summary(report: object) -> dict[str, Any]:
    """outcome, exit code and versions of one target's report, as the single command's exit
    code would say (validate: 6 when the history and files disagree; check: 1 when unmet)."""
    if isinstance(report, RunReport):
        return {
            "outcome": "ok",
            "exit_code": ExitCode.OK,
            "from_version": report.from_version,
            "to_version": report.to_version,
            "steps": len(report.steps),
        }
    if isinstance(report, StatusReport):
        return {
            "outcome": "ok",
            "exit_code": ExitCode.OK,
            "from_version": report.current_version,
            "to_version": report.current_version,
            "steps": len(report.pending),
            "message": "; ".join(p.render() for p in report.problems) or None,
        }
    if isinstance(report, ValidationReport):
        return {
            "outcome": "ok" if report.ok else "failed",
            "exit_code": ExitCode.OK if report.ok else ExitCode.INCONSISTENT,
            "message": "; ".join(p.render() for p in report.problems) or None,
        }
    if isinstance(report, CheckResult):
        return {
            "outcome": "ok" if report.ok else "failed",
            "exit_code": ExitCode.OK if report.ok else ExitCode.CHECK_FAILED,
            "from_version": report.current_version,
            "to_version": report.current_version,
            "message": report.message,
        }
    raise TypeError(f"no summary for {type(report).__name__}")


def _where(config: Config, target: Target) -> str:
    try:
        shown = describe(config_for(config, target))
    except SqlmigError:
        shown = target.name
    return f"{shown}, schema {target.schema}" if target.schema else shown


def _table(config: Config) -> dict[str, Target]:
    """The `[targets]` table of sqlmig.toml: `name = "URL"`, or `name = { url = "…", schema =
    "…", role = "…", password_file = "…" }` (a path relative to the file)."""
    file = configfile.read(config.root)
    raw = file.values.get(TARGETS_TABLE) if file is not None else None
    if raw is None:
        return {}
    assert file is not None
    where = f"{file.label}: {file.prefix}targets"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a table of name = URL")
    targets: dict[str, Target] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            targets[name] = Target(name=name, database_url=Secret(value))
            continue
        unknown = set(value) - {"url", "schema", "role", "password_file"} if isinstance(value, dict) else {0}
        if unknown or not isinstance(value.get("url", ""), str):
            raise InvalidInput(
                f"{where}.{name}: expected a URL, or a table of url, schema, role, password_file"
            )
        password_file = value.get("password_file")
        if password_file is not None and not Path(password_file).is_absolute():
            password_file = str(config.root / password_file)
        targets[name] = Target(
            name=name,
            database_url=Secret(value["url"]) if value.get("url") else None,
            schema=value.get("schema"),
            role=value.get("role"),
            password_file=password_file,
        )
    return targets


__all__ = [
    "PARALLEL_DEFAULT",
    "Target",
    "check_names",
    "config_for",
    "each_schema",
    "from_file",
    "from_flags",
    "most_severe",
    "run",
]
