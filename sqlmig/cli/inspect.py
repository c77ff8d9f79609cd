"""The commands that only look: status, history, validate, check, wait, config."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

import click

import sqlmig
from sqlmig.cli.common import DURATION, State, current_output, on_wait_attempt, out, print_json, warn
from sqlmig.cli.fleet import FleetOptions, fleet_options
from sqlmig.cli.fleet import run as run_fleet
from sqlmig.db.drift import DRIFT_HINT
from sqlmig.errors import ExitCode
from sqlmig.models import Problem, to_json

if TYPE_CHECKING:
    from sqlmig.reports import TargetResult

_NEWEST = 10  # applied migrations `status` lists


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--exit-code", is_flag=True, help="Exit 1 if migrations are pending, 6 if history and files disagree."
)
@fleet_options(with_json=False)
@click.pass_obj
def status(state: State, as_json: bool, exit_code: bool, fleet: FleetOptions) -> None:
    """Current version, applied and pending migrations, problems.

    Example: sqlmig status --exit-code || echo "pending or inconsistent"
    """
    if fleet.given:
        judge = _status_exit if exit_code else None
        run_fleet(state, "status", sqlmig.status, fleet, as_json=as_json, exit_of=judge)
    report = sqlmig.status(state.config)
    if as_json:
        print_json(to_json(report))
    else:
        out(f"database:        {report.database}")
        out(f"history table:   {report.history_table}")
        out(f"current version: {report.current_version or 'none'}")
        applied = [r for r in report.applied if r.status == "applied"]
        out(f"applied:         {len(applied)}")
        # A row left by a no-transaction step that stopped is not applied: counted apart.
        for kind in ("started", "failed", "rolling_back"):
            rows = [r for r in report.applied if r.status == kind]
            if rows:
                out(f"{kind + ':':<17}{len(rows)}")
            for rec in rows:
                out(f"  {rec.name or rec.version} ({rec.version})" + (f": {rec.error}" if rec.error else ""))
        out(f"pending:         {len(report.pending)}")
        # Applied and pending together, as Flyway's `info` lists them: the newest applied (all
        # of them are in `sqlmig history`), then what `up` would run.
        shown = applied[-_NEWEST:]
        if len(applied) > len(shown):
            out(f"  … {len(applied) - len(shown)} applied before (sqlmig history)")
        for rec in shown:
            when = f" {rec.applied_at:%Y-%m-%d %H:%M}" if rec.applied_at else ""
            out(f"  {rec.name or rec.version} ({rec.version}){' ' * 4}applied{when}")
        for pending in report.pending:
            mode = " [no-transaction]" if not pending.transactional else ""
            out(f"  {pending.name} ({pending.version}){mode}{' ' * 4}pending")
        warn(report.warnings)
        for problem in report.problems:
            out(problem.render())
        _drift_hint(report.problems)
    if exit_code:
        if report.problems:
            sys.exit(ExitCode.INCONSISTENT)
        if report.pending:
            sys.exit(ExitCode.CHECK_FAILED)


@click.command()
@click.pass_obj
def current(state: State) -> None:
    """Print the database's version on one line (`2.1.0`, or `none`), for scripts and probes.

    Example: test "$(./migrate.sh current)" = 2.1.0
    """
    state.configure(embedded_notice=False)  # stdout is the answer; the notice goes nowhere
    out(sqlmig.current(state.config) or "none")


@click.command()
@click.option("--limit", type=click.IntRange(min=1), help="Show only the newest N.")
@click.option("--events", "show_events", is_flag=True, help="Show the event log instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(state: State, limit: int | None, show_events: bool, as_json: bool) -> None:
    """Applied migrations (or the event log), newest first.

    Example: sqlmig history --limit 5; sqlmig history --events --json
    """
    if show_events:
        evs = sqlmig.events(state.config, limit)
        if as_json:
            print_json([to_json(e) for e in evs])
            return
        output = current_output()
        for e in evs:
            # when, what (migration and version), outcome, how long, who@host, which sqlmig, why
            target = f" {e.name or ''} ({e.version})" if e.version else ""
            outcome = output.style(e.outcome, "red") if e.outcome == "failed" else e.outcome
            took = f" {e.duration_ms} ms" if e.duration_ms is not None else ""
            who = (e.actor or "?") + (f"@{e.client_host}" if e.client_host else "")
            tool = f" (sqlmig {e.sqlmig_version})" if e.sqlmig_version else ""
            detail = f": {e.detail}" if e.detail else ""
            out(f"{e.at:%Y-%m-%d %H:%M:%S%z} {e.action}{target} {outcome}{took} by {who}{tool}{detail}")
        return
    records = sqlmig.history(state.config, limit)
    if as_json:
        print_json([to_json(r) for r in records])
        return
    if not records:
        out("no migrations applied")
    else:
        out(f"{'VERSION':<10} {'MIGRATION':<40} {'STATUS':<8} {'APPLIED AT':<24} {'TOOK':>8} BY")
    for r in records:
        when = f"{r.applied_at:%Y-%m-%d %H:%M:%S%z}" if r.applied_at else "?"
        took = f"{r.execution_ms} ms" if r.execution_ms is not None else "-"
        flag = " baseline" if r.baseline else ""
        login = (
            f" (login {r.login_user})"
            if r.login_user and r.applied_by and r.login_user != r.applied_by
            else ""
        )  # --role
        out(
            f"{r.version:<10} {r.name or '-':<40} {r.status:<8} {when} {took:>8} "
            f"{r.applied_by or '-'}{login}{flag}"
        )


@click.command()
@click.option(
    "--allow",
    multiple=True,
    type=click.Choice(["changed", "missing", "out-of-order"]),
    help="Report this kind of drift as a warning instead of an error.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fleet_options(with_json=False)
@click.pass_obj
def validate(state: State, allow: tuple[str, ...], as_json: bool, fleet: FleetOptions) -> None:
    """Check files against the database; exit 6 if they disagree.

    Example: sqlmig validate --allow out-of-order
    """
    if fleet.given:
        run_fleet(state, "validate", functools.partial(sqlmig.validate, allow=allow), fleet, as_json=as_json)
    report = sqlmig.validate(state.config, allow)
    if as_json:
        print_json(to_json(report))
    else:
        warn(report.warnings)
        for p in report.problems:
            out(p.render())
        _drift_hint(report.problems)
        out(
            "ok: files and history agree"
            if report.ok
            else f"{len(report.problems)} problem(s): history and files disagree"
        )
    if not report.ok:
        sys.exit(ExitCode.INCONSISTENT)


def _status_exit(result: TargetResult) -> int:
    """`status --exit-code` of one target: 6 for problems, 1 for pending migrations."""
    if result.outcome != "ok":
        return result.exit_code
    return ExitCode.INCONSISTENT if result.message else ExitCode.CHECK_FAILED if result.steps else ExitCode.OK


def _drift_hint(problems: tuple[Problem, ...] | list[Problem]) -> None:
    if any(p.code == "drift" for p in problems):
        out(f"hint: {DRIFT_HINT}")


# A readiness probe, and waiting for the database.
@click.command()
@click.option(
    "--require",
    "require",
    required=True,
    metavar="RANGE",
    help="Versions the code can run with: '>=1.2,<2', '^1.2', '~1.2.3', '2'…",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fleet_options(with_json=False)
@click.pass_obj
def check(state: State, require: str, as_json: bool, fleet: FleetOptions) -> None:
    """Exit 0 if the database's version satisfies RANGE, 1 if not (or nothing is applied), 2 for
    a bad range. Reads only the history table: usable as a readiness probe.

    Example: sqlmig check --require '>=2.1,<3'
    """
    if fleet.given:
        run_fleet(state, "check", functools.partial(sqlmig.check, require=require), fleet, as_json=as_json)
    result = sqlmig.check(state.config, require)
    if as_json:
        print_json(to_json(result))
    else:
        out(f"{'ok' if result.ok else 'not ok'}: {result.message}")
    if not result.ok:
        sys.exit(ExitCode.CHECK_FAILED)


@click.command()
@click.option(
    "--timeout",
    type=DURATION,
    default=60.0,
    show_default=True,
    metavar="DURATION",
    help="How long to keep trying: 60 (seconds), 2min, 500ms.",
)
@click.pass_obj
def wait(state: State, timeout: float) -> None:
    """Wait until the database accepts connections (exit 0), or exit 5 after --timeout.

    One line per failed attempt on stderr; the pause between attempts doubles from 0.25 s up to
    4 s. Wrong credentials or a malformed URL fail at once. With the embedded server (nothing
    configured) it is started, and there is nothing to wait for.

    Example: sqlmig wait --timeout 2min && sqlmig up
    """
    report = sqlmig.wait(state.config, timeout, on_wait_attempt)
    out(
        f"ready: {report.database} on PostgreSQL {report.server_version} after "
        f"{report.attempts} attempt{'s' if report.attempts != 1 else ''} in {report.waited_ms} ms"
    )


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def config_command(state: State, as_json: bool) -> None:
    """The settings in effect and where each comes from: flag, env, file or default. Passwords
    are redacted; no database is used.

    Example: SQLMIG_LOCK_TIMEOUT=1min sqlmig config --json
    """
    state.configure(embedded_notice=False, notes=False)  # the notes are part of this report
    report = sqlmig.explain_config(state.config)
    if as_json:
        print_json(to_json(report))
        return
    out(f"config file: {report.file or 'none (no sqlmig.toml, no [tool.sqlmig] in pyproject.toml)'}")
    out(f"database:    {report.database}")
    rows = [
        (key, _setting_text(s.value), _setting_source(s.source, s.origin))
        for key, s in report.settings.items()
    ]
    key_width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 48)
    for key, value, source in rows:
        out(f"{key:<{key_width}}  {value:<{value_width}}  {source}")
    for note in report.notes:
        out(f"note: {note}")


def _setting_source(source: str, origin: str | None) -> str:
    if origin is None:
        return source
    return f"{source} ({origin})" if source == "default" else f"{source} {origin}"


def _setting_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
