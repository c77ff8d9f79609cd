"""The options of one command over many targets, and how such a run is printed.

up, down, status, validate and check take them; with none of them a command runs on the one
configured database as always (sqlmig.engine.fleet has the semantics).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

import sqlmig
from sqlmig.cli.common import State, current_output, err, out, print_json
from sqlmig.models import to_json

if TYPE_CHECKING:  # loaded by a run over many targets only: one database's run never builds them
    from sqlmig.reports import FleetReport, TargetResult


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    target: tuple[str, ...] = ()
    all_targets: bool = False
    targets_file: str | None = None
    each_schema: str | None = None
    each_schema_query: str | None = None
    parallel: int | None = None
    canary: int = 0
    keep_going: bool = False
    fleet_json: bool = False

    @property
    def given(self) -> bool:
        return bool(
            self.target or self.all_targets or self.targets_file or self.each_schema or self.each_schema_query
        )


_OPTIONS = (
    click.option(
        "--target",
        "target",
        multiple=True,
        metavar="NAME[=URL]",
        help="Run on this database too (repeatable): NAME=URL, or NAME of the [targets] table of "
        "sqlmig.toml. Each target is one ordinary run: its own lock, history and exit code.",
    ),
    click.option("--all-targets", is_flag=True, help="Run on every target of the [targets] table."),
    click.option(
        "--targets",
        "targets_file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Run on the targets of FILE: one `NAME URL` a line (# comments).",
    ),
    click.option(
        "--each-schema",
        metavar="PATTERN",
        help="Run once per schema of the database whose name is LIKE PATTERN (tenant_%), each with "
        "its own history table in that schema, first on the search_path (as --schema).",
    ),
    click.option(
        "--each-schema-query",
        metavar="SQL",
        help="As --each-schema, with the schemas this query returns (first column).",
    ),
    click.option(
        "--parallel",
        type=click.IntRange(min=1),
        default=None,
        help="Targets run at once, each on its own connection (default min(8, targets)).",
    ),
    click.option(
        "--canary",
        type=click.IntRange(min=0),
        default=0,
        help="Run the first K targets one by one first; a failure there stops before the rest.",
    ),
    click.option(
        "--keep-going",
        is_flag=True,
        help="Start the remaining targets after one failed (default: stop starting new ones).",
    ),
)
_JSON = click.option("--json", "fleet_json", is_flag=True, help="With targets: the report as JSON.")
_KEYS = tuple(f.name for f in dataclasses.fields(FleetOptions))


def fleet_options(*, with_json: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The many-targets options, handed to the command as one `fleet: FleetOptions`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {key: kwargs.pop(key) for key in _KEYS if key in kwargs}
            return command(*args, fleet=FleetOptions(**given), **kwargs)

        decorated: Callable[..., Any] = wrapper
        for option in reversed((*_OPTIONS, *((_JSON,) if with_json else ()))):
            decorated = option(decorated)
        return decorated

    return decorate


def run(
    state: State,
    command: str,
    operation: Callable[..., object],
    options: FleetOptions,
    as_json: bool,
    exit_of: Callable[[TargetResult], int] | None = None,
) -> NoReturn:
    """Resolve the targets, run `operation` on each, print a line per target and a summary (or
    the JSON report), and exit with the most severe of their exit codes (`exit_of`: a target's
    code by the command's own rule, e.g. `status --exit-code`)."""
    # Loaded here, not at the top: a run on one database never needs it.
    from sqlmig.engine import fleet

    config = state.configure(embedded_notice=bool(options.each_schema or options.each_schema_query))
    targets = fleet.from_flags(config, options.target, all_targets=options.all_targets)
    if options.targets_file:
        targets += fleet.from_file(Path(options.targets_file))
    if options.each_schema or options.each_schema_query:
        targets += fleet.each_schema(config, like=options.each_schema, query=options.each_schema_query)
    if command in _READS_FILES:
        # Read, checked and parsed once for every target (a bad file stops the run before any
        # target is touched), not once per target.
        operation = functools.partial(operation, files=sqlmig.load_files(config))
    as_json = as_json or options.fleet_json
    progress = _Progress(command, len(targets), live=not as_json and current_output().live)
    report = fleet.run(
        config,
        targets,
        command,
        operation,
        parallel=options.parallel,
        canary=options.canary,
        keep_going=options.keep_going,
        on_done=None if as_json else progress.done,
    )
    progress.end()
    if not as_json:
        for result in report.targets:
            if result.outcome == "not run":
                progress.done(result)
    if exit_of is not None:
        code = fleet.most_severe([report.exit_code, *(exit_of(r) for r in report.targets)])
        report = dataclasses.replace(report, exit_code=code)
    if as_json:
        print_json(to_json(report))
    else:
        out(_summary(report))
    sys.exit(report.exit_code)


class _Progress:
    """A line per target as it ends; on a terminal, a progress line below them."""

    def __init__(self, command: str, total: int, *, live: bool) -> None:
        self.command, self.total, self.live = command, total, live
        self.ended = self.failed = self.steps = 0
        self.lock = threading.Lock()

    def done(self, result: TargetResult) -> None:
        with self.lock:
            self.ended += 1
            self.failed += result.outcome == "failed"
            self.steps += result.steps
            if self.live:
                sys.stderr.write("\r\033[K")
            line = _line(result, self.command)
            if result.outcome == "failed":
                err(line, "red", level="error", event="target_failed", target=result.name)
            else:
                out(line)
            if self.live:
                sys.stderr.write(f"[{self.ended}/{self.total}] {self.failed} failed, {self.steps} steps")
                sys.stderr.flush()

    def end(self) -> None:
        if self.live and self.ended:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


_READS_FILES = ("up", "down", "status", "validate")
_STEPS = {"up": "applied", "down": "rolled back", "status": "pending"}


def _line(r: TargetResult, command: str) -> str:
    took = f"{r.duration_ms / 1000:.2f} s"
    if r.outcome == "not run":
        return f"{r.name}: not run ({r.message})"
    if r.outcome == "failed":
        return f"{r.name}: failed, exit {r.exit_code} ({took}): {r.message}"
    if r.from_version is not None or r.steps or r.to_version is not None:
        moved = (
            f"{r.from_version or 'none'} -> {r.to_version or 'none'}"
            if r.from_version != r.to_version
            else ""
        )
        what = moved or f"at {r.to_version or 'none'}"
        extra = f", {r.steps} {_STEPS.get(command, 'step(s)')}" if r.steps else ""
        note = f"; {r.message}" if r.message else ""
        return f"{r.name}: {what}{extra} ({took}){note}"
    return f"{r.name}: ok ({took})" + (f"; {r.message}" if r.message else "")


def _summary(report: FleetReport) -> str:
    steps = sum(t.steps for t in report.targets)
    return (
        f"{report.command} on {len(report.targets)} target(s), {report.parallel} at once"
        + (f" after {report.canary} canary" if report.canary else "")
        + f": {report.ok} ok, {report.failed} failed, {report.not_run} not run; "
        f"{steps} step(s) in {report.duration_ms / 1000:.2f} s; exit {report.exit_code}"
    )


__all__ = ["FleetOptions", "fleet_options", "run"]
