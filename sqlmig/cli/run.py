"""The commands that change the version: up, down, baseline, and how their progress is printed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

import sqlmig
from sqlmig.cli.common import (
    DURATION,
    RunSettings,
    State,
    backup_line,
    current_output,
    err,
    on_wait_attempt,
    out,
    warn,
)
from sqlmig.cli.fleet import FleetOptions, fleet_options
from sqlmig.cli.fleet import run as run_fleet
from sqlmig.engine.progress import Progress
from sqlmig.models import Plan, PlanStep, RunReport, StepResult

if TYPE_CHECKING:  # annotations only: building the report classes costs ~5 ms at import
    from sqlmig.models import BackupReport, RetryNotice
    from sqlmig.reports import WaitAttempt


class _Printer(Progress):
    """What up/down report while they run: warnings, progress (terminal) or events (json), and
    exactly one line per migration; retries and the backup on stderr."""

    def __init__(self, state: State, direction: str) -> None:
        self.state, self.direction = state, direction
        self.output = current_output()
        self.total = self.done = 0

    def waiting(self, attempt: WaitAttempt) -> None:
        on_wait_attempt(attempt)

    def planned(self, plan: Plan) -> None:
        self.total = len(plan.steps)
        self.output.run_started(
            direction=self.direction, from_version=plan.current, to_version=plan.target, total=self.total
        )

    def note(self, text: str) -> None:
        if self.state.options.verbose:
            err(f"note: {text}", level="info", event="note")

    def started(self, step: PlanStep) -> None:
        for warning in step.warnings:
            err(
                warning, "yellow", level="warning", event="warning", migration=step.name, version=step.version
            )
        self.state.step = step
        self.output.step_started(
            direction=self.direction,
            name=step.name,
            version=step.version,
            step=self.done + 1,
            total=self.total,
        )

    def finished(self, result: StepResult) -> None:
        self.done += 1
        for warning in result.warnings:
            err(
                warning,
                "yellow",
                level="warning",
                event="warning",
                migration=result.name,
                version=result.version,
            )
        self.output.step_done(
            direction=self.direction,
            name=result.name,
            version=result.version,
            duration_ms=result.duration_ms,
            step=self.done,
            total=self.total,
        )
        self.state.step = None

    def skipped(self, step: PlanStep) -> None:
        self.done += 1
        self.state.step = None
        out(
            f"skipped {step.name} ({step.version}): "
            f"{'applied' if self.direction == 'up' else 'rolled back'} meanwhile by another runner"
        )

    def retrying(self, notice: RetryNotice) -> None:
        err(
            f"sqlmig: retrying {notice.name} ({notice.version}) in {notice.delay:g} s: try "
            f"{notice.attempt} of {notice.attempts} failed: {notice.error}",
            "yellow",
            level="warning",
            event="migration_retry",
            migration=notice.name,
            version=notice.version,
            attempt=notice.attempt,
            attempts=notice.attempts,
            sqlstate=notice.sqlstate,
            delay=notice.delay,
        )

    def backed_up(self, report: BackupReport) -> None:
        err(
            f"sqlmig: {backup_line(report)}",
            level="info",
            event="backup",
            path=report.path,
            size_bytes=report.size_bytes,
            duration_ms=report.duration_ms,
            pg_dump=report.pg_dump,
            pg_dump_version=report.pg_dump_version,
        )


def _finished(report: RunReport, line: str) -> None:
    current_output().run_finished(
        line,
        direction=report.direction,
        from_version=report.from_version,
        to_version=report.to_version,
        count=len(report.steps),
        duration_ms=sum(s.duration_ms for s in report.steps),
    )


def _print_plan(report: RunReport, show_sql: bool) -> None:
    assert report.plan is not None
    steps = report.plan.steps
    if not steps:
        out(f"nothing to do; at version {report.from_version or 'none'}")
        return
    verb = "would apply" if report.direction == "up" else "would roll back"
    for step in steps:
        mode = "" if step.transactional else " [no-transaction]"
        # plan_down warns when it runs the text stored at apply time, not the differing file
        source = (
            f"the text stored when it was applied ({step.path} differs)"
            if any("differs from the rollback stored" in w for w in step.warnings)
            else step.path
        )
        out(f"{verb} {step.name} ({step.version}) from {source}{mode}")
        if show_sql:
            out(step.sql.rstrip())
            out()
    out(
        f"dry run: {len(steps)} step(s), {report.from_version or 'none'} -> {report.to_version}; "
        "nothing was changed"
    )


# Options of up/down that are Config settings too (RunSettings), and how retries and the backup
# are reported.
_DEPLOY_OPTIONS = (
    click.option(
        "--migration-lock-timeout",
        metavar="DURATION",
        help="How long a statement of a migration may wait for a table lock (SET LOCAL "
        "lock_timeout): 5s (default), 500ms, 1min; 0/off = no limit; inherit = the "
        "role's/database's. Not --lock-timeout, which bounds the wait for another run. "
        "[env: SQLMIG_MIGRATION_LOCK_TIMEOUT]",
    ),
    click.option(
        "--statement-timeout",
        metavar="DURATION",
        help="How long a statement of a migration may run (SET LOCAL statement_timeout); "
        "default inherit (the role's/database's, usually no limit); 0/off = no limit. "
        "[env: SQLMIG_STATEMENT_TIMEOUT]",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=None,
        help="Run a migration again this many times after a lock timeout or a deadlock "
        "rolled it back (default 3). [env: SQLMIG_RETRIES]",
    ),
    click.option(
        "--retry-delay",
        metavar="DURATION",
        help="Pause before the first retry, doubled for each next one (default 2s). "
        "[env: SQLMIG_RETRY_DELAY]",
    ),
    click.option(
        "--backup",
        "backup_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="First write a pg_dump -Fc of the database into this directory; if that "
        "fails, nothing is run. Skipped when there is nothing to do. [env: SQLMIG_BACKUP_DIR]",
    ),
)


def _deploy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_DEPLOY_OPTIONS):
        command = option(command)
    return command


def _no_backup_note(state: State, report: RunReport) -> None:
    if state.config.backup_dir is not None and report.backup is None:
        why = "a dry run" if report.dry_run else "nothing to do"
        err(f"sqlmig: no backup written: {why}", level="info", event="backup_skipped")


@click.command()
@click.option("--to", "to", help="Stop at this version (1.2.0) or migration number (3).")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@click.option(
    "--allow",
    multiple=True,
    type=click.Choice(["changed", "missing", "out-of-order"]),
    help="Proceed despite this kind of drift (repeatable).",
)
@click.option(
    "--wait",
    "wait_s",
    type=DURATION,
    default=None,
    metavar="DURATION",
    help="First wait up to this long for the database to accept connections (as "
    "`sqlmig wait`): 30 (seconds), 2min.",
)
@_deploy_options
@fleet_options(with_json=True)
@click.pass_obj
def up(
    state: State,
    to: str | None,
    dry_run: bool,
    allow: tuple[str, ...],
    wait_s: float | None,
    fleet: FleetOptions,
    **settings: Any,
) -> None:
    """Apply pending migrations, each in its own transaction.

    Example: DATABASE_URL=postgresql://app@db/app sqlmig up --to 2.1.0 --dry-run;
    sqlmig up --each-schema 'tenant_%' --parallel 8 --canary 2
    """
    # With targets, the configured database may be none of them: no embedded-server notice.
    config = state.configure(run=RunSettings(**settings), embedded_notice=not fleet.given)
    if fleet.given:
        operation = functools.partial(sqlmig.up, to=to, dry_run=dry_run, allow=allow, wait=wait_s)
        run_fleet(state, "up", operation, fleet, as_json=False)
    report = sqlmig.up(
        config,
        to=to,
        dry_run=dry_run,
        allow=allow,
        wait=wait_s,
        progress=_Printer(state, "up"),
        # A live progress line shows the migration running now: one at a time.
        back_to_back=not current_output().live,
    )
    warn(report.warnings)
    _no_backup_note(state, report)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        total = sum(s.duration_ms for s in report.steps)
        _finished(report, f"at version {report.to_version}: {len(report.steps)} applied in {total} ms")
    else:
        _finished(report, f"already up to date at version {report.to_version or 'none (no migrations)'}")


@click.command()
@click.option("--steps", type=int, help="How many migrations to roll back (default 1).")
@click.option("--to", "to", help="Roll back everything above this version; 0.0.0 or 0 = all.")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@_deploy_options
@fleet_options(with_json=True)
@click.pass_obj
def down(
    state: State, steps: int | None, to: str | None, dry_run: bool, fleet: FleetOptions, **settings: Any
) -> None:
    """Roll back applied migrations, newest first.

    Example: sqlmig down --steps 2; sqlmig down --to 1.4.0 --dry-run
    """
    # With targets, the configured database may be none of them: no embedded-server notice.
    config = state.configure(run=RunSettings(**settings), embedded_notice=not fleet.given)
    if fleet.given:
        operation = functools.partial(sqlmig.down, steps=steps, to=to, dry_run=dry_run)
        run_fleet(state, "down", operation, fleet, as_json=False)
    report = sqlmig.down(
        config,
        steps=steps,
        to=to,
        dry_run=dry_run,
        progress=_Printer(state, "down"),
        back_to_back=not current_output().live,
    )
    warn(report.warnings)
    _no_backup_note(state, report)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        _finished(report, f"at version {report.to_version}: {len(report.steps)} rolled back")
    else:
        _finished(report, f"nothing to roll back; at version {report.from_version or 'none'}")


@click.command()
@click.argument("version")
@click.pass_obj
def baseline(state: State, version: str) -> None:
    """Record migrations up to VERSION as applied without running them.

    Example: sqlmig baseline 1.7.0   # the schema already matches files up to 1.7.0
    """
    report = sqlmig.baseline(state.config, version)
    for s in report.steps:
        current_output().recorded(
            f"recorded {s.name} ({s.version}) as applied (baseline, not run)",
            migration=s.name,
            version=s.version,
        )
    _finished(report, f"baseline at version {report.to_version}: {len(report.steps)} recorded")
