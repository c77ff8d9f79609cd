"""The command line: parse options, make one library call, print, map errors to exit codes."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import sqlmig
from sqlmig.config import Config, redact, secrets_of
from sqlmig.errors import ExitCode, SqlmigError
from sqlmig.models import Plan, PlanStep, Problem, RepairReport, RunReport, StepResult, to_json
from sqlmig.output import Output

if TYPE_CHECKING:
    from sqlmig.embedded import EmbeddedServer


class _State:
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = options or {}
        self.output: Output | None = None  # set by the group callback from --log-format
        self.step: PlanStep | None = None  # the migration running now, for the error event
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            o = self.options
            self._config = sqlmig.resolve(
                root=Path(o["root"]) if o["root"] else None,
                find_root_from=Path.cwd(),
                given_as="flag",
                flag_names=_flag_names(),
                database_url=o["database_url"],
                password_file=o["password_file"],
                schema_name=o["schema"],
                table=o["table"],
                lock_timeout=o["lock_timeout"],
                lock_mode=o.get("lock_mode"),
                **{name: o.get(name) for name in _DEPLOY_SETTINGS},
            )
            for note in () if o.get("quiet_notes") else self._config._notes:
                err(f"sqlmig: {note}", "yellow", level="warning", event="config")
            if self._config.uses_embedded and not o.get("quiet_embedded"):
                from sqlmig.connect import describe

                err(f"sqlmig: no database configured (--database-url, SQLMIG_DATABASE_URL, "
                    f"DATABASE_URL, PG*): using the {describe(self._config)}; "
                    "`sqlmig db stop` stops it", event="embedded")
        return self._config

    def secrets(self) -> list[str]:
        return secrets_of(self._config) if self._config is not None else []


def _flag_names() -> dict[str, str]:
    """Option name -> how it is spelled (`backup_dir` -> `--backup`), for messages that say where
    a setting came from; the group's options and the running command's."""
    names: dict[str, str] = {}
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        for param in ctx.command.params:
            if isinstance(param, click.Option) and param.name and param.opts:
                names.setdefault(param.name, max(param.opts, key=len))
        ctx = ctx.parent
    return names


def _output() -> Output:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(_State) if ctx is not None else None
    if state is None or state.output is None:
        return Output()
    return state.output


def out(line: str = "", *styles: str) -> None:
    """A line of the command's result (stdout)."""
    _output().out(line, *styles)


def err(text: str, *styles: str, **event: Any) -> None:
    """A line of the log (stderr): an event object with --log-format json (`level`, `event`
    and fields in **event)."""
    _output().err(text, *styles, **event)


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _warn(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for p in problems:
        err(p.render(), "yellow", level="warning", event="warning", path=p.path, line=p.line,
            code=p.code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sqlmig.__version__, prog_name="sqlmig")
@click.option("--root", type=click.Path(file_okay=False), help="Project directory holding "
              "migrations/, rollbacks/ and sqlmig.toml (default: nearest parent with migrations/, "
              "sqlmig.toml or [tool.sqlmig] in pyproject.toml).")
@click.option("--database-url", envvar=None, help="PostgreSQL URL; else SQLMIG_DATABASE_URL, "
              "DATABASE_URL, the PG* environment, or the embedded server.")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="Read the password from this file (Docker secrets); else DATABASE_PASSWORD_FILE.")
@click.option("--schema", default=None, help="Schema of the history table (default public); "
              "any other schema is also put first on the migrations' search_path.")
@click.option("--role", default=None, help="SET ROLE to this role after connecting, so what "
              "migrations create belongs to it (the schema owner), not to the login role.")
@click.option("--table", default=None, help="Name of the history table (default schema_version).")
@click.option("--lock-timeout", type=float, default=None,
              help="Seconds to wait for another run's lock (default 300; 0 = do not wait).")
@click.option("--lock-mode", type=click.Choice(["session", "transaction"]), default=None,
              help="session (default): one session advisory lock per run. transaction: a lock "
              "per migration transaction and a lease for no-transaction files; use it behind "
              "PgBouncer in pool_mode=transaction, where session locks do not hold.")
@click.option("-v", "--verbose", is_flag=True,
              help="Say more: e.g. files pglast could not parse (left to the server to judge).")
# -- output options (issue 5): not settings of the config file, they describe where the
# output goes (a terminal, a CI log, a log collector), not the project --
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              envvar="SQLMIG_LOG_FORMAT", show_envvar=True,
              help="json: one JSON object per event line on stderr (up/down/baseline progress, "
              "warnings, errors with their exit code); stdout keeps the command's result.")
@click.option("--no-color", is_flag=True, help="No colours (also when NO_COLOR is set); there "
              "are never any when the output is not a terminal.")
# -- end of output options (issue 5) --
@click.pass_context
def cli(ctx: click.Context, log_format: str, no_color: bool, **options: Any) -> None:
    """Plain-SQL versioned migrations for PostgreSQL."""
    state = ctx.ensure_object(_State)  # main() passes one, so its error handler can read it
    state.options.update(options)
    state.output = Output(log_format=log_format, no_color=no_color)
    state.output.json_logging()


def _run_callbacks(state: _State, direction: str) -> dict[str, Any]:
    """What up/down report while they run: warnings, progress (terminal) or events (json), and
    exactly one line per migration."""
    output = _output()
    total = 0
    done = 0

    def on_plan(plan: Plan) -> None:
        nonlocal total
        total = len(plan.steps)
        output.run_started(direction=direction, from_version=plan.current,
                           to_version=plan.target, total=total)

    def on_step(step: PlanStep) -> None:
        for warning in step.warnings:
            err(warning, "yellow", level="warning", event="warning", migration=step.name,
                version=step.version)
        state.step = step
        output.step_started(direction=direction, name=step.name, version=step.version,
                            step=done + 1, total=total)

    def on_done(result: StepResult) -> None:
        nonlocal done
        done += 1
        for warning in result.warnings:
            err(warning, "yellow", level="warning", event="warning", migration=result.name,
                version=result.version)
        output.step_done(direction=direction, name=result.name, version=result.version,
                         duration_ms=result.duration_ms, step=done, total=total)
        state.step = None

    def on_skip(step: PlanStep) -> None:
        # --lock-mode transaction: another runner did this step while this one waited.
        nonlocal done
        done += 1
        state.step = None
        out(f"skipped {step.name} ({step.version}): "
            f"{'applied' if direction == 'up' else 'rolled back'} meanwhile by another runner")

    return {"on_plan": on_plan, "on_step": on_step, "on_done": on_done, "on_skip": on_skip,
            "on_note": _note_printer(state)}


def _finished(report: RunReport, line: str) -> None:
    _output().run_finished(line, direction=report.direction, from_version=report.from_version,
                           to_version=report.to_version, count=len(report.steps),
                           duration_ms=sum(s.duration_ms for s in report.steps))


def _note_printer(state: _State) -> Callable[[str], None] | None:
    if not state.options.get("verbose"):
        return None
    return lambda note: err(f"note: {note}", level="info", event="note")


def _print_plan(report: RunReport, show_sql: bool) -> None:
    assert report.plan is not None
    steps = report.plan.steps
    if not steps:
        out(f"nothing to do; at version {report.from_version or 'none'}")
        return
    verb = "would apply" if report.direction == "up" else "would roll back"
    for step in steps:
        mode = "" if step.transactional else " [no-transaction]"
        out(f"{verb} {step.name} ({step.version}) from {step.path}{mode}")
        if show_sql:
            out(step.sql.rstrip())
            out()
    out(f"dry run: {len(steps)} step(s), {report.from_version or 'none'} -> {report.to_version}; "
        "nothing was changed")


# -- deploy-grade operations (issue 5): options of up/down that are Config settings, the
# callbacks that report retries and the backup, and the wait/backup/check commands --
_DEPLOY_SETTINGS = ("role", "migration_lock_timeout", "statement_timeout", "retries",
                    "retry_delay", "backup_dir")
_DEPLOY_OPTIONS = (
    click.option("--migration-lock-timeout", metavar="DURATION",
                 help="How long a statement of a migration may wait for a table lock (SET LOCAL "
                 "lock_timeout): 5s (default), 500ms, 1min; 0/off = no limit; inherit = the "
                 "role's/database's. Not --lock-timeout, which bounds the wait for another run."),
    click.option("--statement-timeout", metavar="DURATION",
                 help="How long a statement of a migration may run (SET LOCAL statement_timeout); "
                 "default inherit (the role's/database's, usually no limit); 0/off = no limit."),
    click.option("--retries", type=click.IntRange(min=0), default=None,
                 help="Run a migration again this many times after a lock timeout or a deadlock "
                 "rolled it back (default 3)."),
    click.option("--retry-delay", metavar="DURATION",
                 help="Pause before the first retry, doubled for each next one (default 2s)."),
    click.option("--backup", "backup_dir", type=click.Path(file_okay=False), default=None,
                 help="First write a pg_dump -Fc of the database into this directory; if that "
                 "fails, nothing is run. Skipped when there is nothing to do."),
)


def _deploy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_DEPLOY_OPTIONS):
        command = option(command)
    return command


def _deploy_callbacks() -> dict[str, Any]:
    from sqlmig.models import BackupReport, RetryNotice

    def on_retry(notice: RetryNotice) -> None:
        err(f"sqlmig: retrying {notice.name} ({notice.version}) in {notice.delay:g} s: try "
            f"{notice.attempt} of {notice.attempts} failed: {notice.error}", "yellow",
            level="warning", event="migration_retry", migration=notice.name,
            version=notice.version, attempt=notice.attempt, attempts=notice.attempts,
            sqlstate=notice.sqlstate, delay=notice.delay)

    def on_backup(report: BackupReport) -> None:
        err(f"sqlmig: {_backup_line(report)}", level="info", event="backup", path=report.path,
            size_bytes=report.size_bytes, duration_ms=report.duration_ms,
            pg_dump=report.pg_dump, pg_dump_version=report.pg_dump_version)

    return {"on_retry": on_retry, "on_backup": on_backup}


def _backup_line(report: Any) -> str:
    size = report.size_bytes
    shown = f"{size} B" if size < 10_000 else (f"{size / 1e3:.0f} kB" if size < 10_000_000
                                               else f"{size / 1e6:.0f} MB")
    note = f" ({report.note})" if report.note else ""
    return (f"backup: {report.path} ({shown} in {report.duration_ms} ms, pg_dump "
            f"{report.pg_dump_version} from {report.pg_dump}){note}")


def _no_backup_note(state: _State, report: RunReport) -> None:
    if state.config.backup_dir is not None and report.backup is None:
        why = "a dry run" if report.dry_run else "nothing to do"
        err(f"sqlmig: no backup written: {why}", level="info", event="backup_skipped")


def _on_wait_attempt(attempt: Any) -> None:
    err(f"sqlmig: waiting for the database: attempt {attempt.attempt} failed: {attempt.error}; "
        f"next try in {attempt.next_in:g} s", level="info", event="wait_attempt",
        attempt=attempt.attempt, error=attempt.error, next_in=attempt.next_in)


@cli.command()
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to keep trying.")
@click.pass_obj
def wait(state: _State, timeout: float) -> None:
    """Wait until the database accepts connections (exit 0), or exit 5 after --timeout.

    One line per failed attempt on stderr; the pause between attempts doubles from 0.25 s up to
    4 s. Wrong credentials or a malformed URL fail at once. With the embedded server (nothing
    configured) it is started, and there is nothing to wait for."""
    report = sqlmig.wait(state.config, timeout, _on_wait_attempt)
    out(f"ready: {report.database} on PostgreSQL {report.server_version} after "
        f"{report.attempts} attempt{'s' if report.attempts != 1 else ''} in {report.waited_ms} ms")


@cli.command("backup")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to write it (default: the backup_dir setting, else <root>/backups).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def backup_command(state: _State, directory: str | None, as_json: bool) -> None:
    """Write a pg_dump -Fc of the database: <database>-<UTC time>-v<version>.dump."""
    report = sqlmig.backup(state.config, directory)
    if as_json:
        _json(to_json(report))
    else:
        out(_backup_line(report))


@cli.command()
@click.option("--require", "require", required=True, metavar="RANGE",
              help="Versions the code can run with: '>=1.2,<2', '^1.2', '~1.2.3', '2'…")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def check(state: _State, require: str, as_json: bool) -> None:
    """Exit 0 if the database's version satisfies RANGE, 1 if not (or nothing is applied), 2 for
    a bad range. Reads only the history table: usable as a readiness probe."""
    result = sqlmig.check(state.config, require)
    if as_json:
        _json(to_json(result))
    else:
        out(f"{'ok' if result.ok else 'not ok'}: {result.message}")
    if not result.ok:
        sys.exit(ExitCode.CHECK_FAILED)
# -- end of deploy-grade operations (issue 5) --


@cli.command()
@click.option("--to", "to", help="Stop at this version (1.2.0) or migration number (3).")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@click.option("--allow", multiple=True, type=click.Choice(["changed", "missing", "out-of-order"]),
              help="Proceed despite this kind of drift (repeatable).")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="First wait up to this long for the database to accept connections (as "
              "`sqlmig wait`).")
@_deploy_options
@click.pass_obj
def up(state: _State, to: str | None, dry_run: bool, allow: tuple[str, ...], wait_s: float | None,
       **settings: Any) -> None:
    """Apply pending migrations, each in its own transaction."""
    state.options.update(settings)
    report = sqlmig.up(state.config, to=to, dry_run=dry_run, allow=allow, wait=wait_s,
                       on_wait=_on_wait_attempt, **_run_callbacks(state, "up"),
                       **_deploy_callbacks(),
                       # A live progress line shows the migration running now: one at a time.
                       back_to_back=not _output().live)
    _warn(report.warnings)
    _no_backup_note(state, report)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        total = sum(s.duration_ms for s in report.steps)
        _finished(report, f"at version {report.to_version}: {len(report.steps)} applied in "
                          f"{total} ms")
    else:
        _finished(report, "already up to date at version "
                          f"{report.to_version or 'none (no migrations)'}")


@cli.command()
@click.option("--steps", type=int, help="How many migrations to roll back (default 1).")
@click.option("--to", "to", help="Roll back everything above this version; 0.0.0 or 0 = all.")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@_deploy_options
@click.pass_obj
def down(state: _State, steps: int | None, to: str | None, dry_run: bool,
         **settings: Any) -> None:
    """Roll back applied migrations, newest first."""
    state.options.update(settings)
    report = sqlmig.down(state.config, steps=steps, to=to, dry_run=dry_run,
                         **_run_callbacks(state, "down"), **_deploy_callbacks())
    _warn(report.warnings)
    _no_backup_note(state, report)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        _finished(report, f"at version {report.to_version}: {len(report.steps)} rolled back")
    else:
        _finished(report, f"nothing to roll back; at version {report.from_version or 'none'}")


@cli.command()
@click.argument("direction", type=click.Choice(["up", "down"]))
@click.option("--from", "start", metavar="VERSION|NUMBER",
              help="The version the database is at (default: none for up, the newest for down).")
@click.option("--to", "to", metavar="VERSION|NUMBER",
              help="As for up/down: stop at (up) or roll back above (down) this.")
@click.option("--steps", type=int, help="render down: how many to roll back (default 1).")
@click.option("--from-database", is_flag=True,
              help="Read the history (read-only) to start from the database's version.")
@click.option("--allow", multiple=True, type=click.Choice(["changed", "missing", "out-of-order"]),
              help="With --from-database: proceed despite this kind of drift (repeatable).")
@click.pass_obj
def render(state: _State, direction: str, start: str | None, to: str | None, steps: int | None,
           from_database: bool, allow: tuple[str, ...]) -> None:
    """Print a psql script that does what up/down would do (for docker exec / DBA review)."""
    if not from_database:
        state.options["quiet_embedded"] = True  # rendering from the files needs no database
    click.echo(sqlmig.render(state.config, direction, start=start, to=to,  # type: ignore[arg-type]
                             steps=steps, from_database=from_database, allow=allow), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 if migrations are pending, 6 if history and files disagree.")
@click.pass_obj
def status(state: _State, as_json: bool, exit_code: bool) -> None:
    """Current version, applied and pending migrations, problems."""
    report = sqlmig.status(state.config)
    if as_json:
        _json(to_json(report))
    else:
        out(f"database:        {report.database}")
        out(f"history table:   {report.history_table}")
        out(f"current version: {report.current_version or 'none'}")
        out(f"applied:         {len(report.applied)}")
        for rec in report.applied:
            if rec.status != "applied":
                out(f"  {rec.name or rec.version} ({rec.version}): {rec.status.upper()}")
        out(f"pending:         {len(report.pending)}")
        for p in report.pending:
            mode = " [no-transaction]" if not p.transactional else ""
            out(f"  {p.name} ({p.version}){mode}")
        _warn(report.warnings)
        for p in report.problems:
            out(p.render())
        _drift_hint(report.problems)
    if exit_code:
        if report.problems:
            sys.exit(ExitCode.INCONSISTENT)
        if report.pending:
            sys.exit(ExitCode.CHECK_FAILED)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="Show only the newest N.")
@click.option("--events", "show_events", is_flag=True, help="Show the event log instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(state: _State, limit: int | None, show_events: bool, as_json: bool) -> None:
    """Applied migrations (or the event log), newest first."""
    if show_events:
        evs = sqlmig.events(state.config, limit)
        if as_json:
            _json([to_json(e) for e in evs])
            return
        output = _output()
        for e in evs:
            # when, what (migration and version), outcome, how long, who@host, which sqlmig, why
            target = f" {e.name or ''} ({e.version})" if e.version else ""
            outcome = output.style(e.outcome, "red") if e.outcome == "failed" else e.outcome
            took = f" {e.duration_ms} ms" if e.duration_ms is not None else ""
            who = (e.actor or "?") + (f"@{e.client_host}" if e.client_host else "")
            tool = f" (sqlmig {e.sqlmig_version})" if e.sqlmig_version else ""
            detail = f": {e.detail}" if e.detail else ""
            out(f"{e.at:%Y-%m-%d %H:%M:%S%z} {e.action}{target} {outcome}{took} by {who}{tool}"
                f"{detail}")
        return
    records = sqlmig.history(state.config, limit)
    if as_json:
        _json([to_json(r) for r in records])
        return
    if not records:
        out("no migrations applied")
    for r in records:
        when = f"{r.applied_at:%Y-%m-%d %H:%M:%S%z}" if r.applied_at else "?"
        took = f"{r.execution_ms} ms" if r.execution_ms is not None else "-"
        flag = " baseline" if r.baseline else ""
        login = (f" (login {r.login_user})" if r.login_user and r.applied_by
                 and r.login_user != r.applied_by else "")  # --role
        out(f"{r.version:<10} {r.name or '-':<40} {r.status:<8} {when} {took:>8} "
            f"{r.applied_by or '-'}{login}{flag}")


@cli.command()
@click.option("--allow", multiple=True, type=click.Choice(["changed", "missing", "out-of-order"]),
              help="Report this kind of drift as a warning instead of an error.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def validate(state: _State, allow: tuple[str, ...], as_json: bool) -> None:
    """Check files against the database; exit 6 if they disagree."""
    report = sqlmig.validate(state.config, allow)
    if as_json:
        _json(to_json(report))
    else:
        _warn(report.warnings)
        for p in report.problems:
            out(p.render())
        _drift_hint(report.problems)
        out("ok: files and history agree" if report.ok else
            f"{len(report.problems)} problem(s): history and files disagree")
    if not report.ok:
        sys.exit(ExitCode.INCONSISTENT)


def _drift_hint(problems: tuple[Problem, ...] | list[Problem]) -> None:
    if any(p.code == "drift" for p in problems):
        from sqlmig.drift import DRIFT_HINT

        out(f"hint: {DRIFT_HINT}")


@cli.command()
@click.option("--scratch-url", help="A server where sqlmig may CREATE and DROP a scratch "
              "database (default: the project's embedded server). Never the target.")
@click.option("--scratch-in-place", is_flag=True, help="Use the database of --scratch-url itself "
              "(empty, no sqlmig history) instead of creating one; it is left fully migrated.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify(state: _State, scratch_url: str | None, scratch_in_place: bool, as_json: bool) -> None:
    """Prove every rollback on a scratch database: apply, roll back, compare the schema, re-apply.
    Exit 1 if a rollback does not restore the schema. The target database is never touched."""
    from sqlmig.verification import VerifyStep

    state.options["quiet_embedded"] = True  # the target is not used, embedded or not

    def on_step(step: VerifyStep) -> None:
        label = f"{step.name} ({step.version})"
        if step.outcome == "proven":
            out(f"proven {label}: rollback restores the schema, re-apply matches "
                f"({step.duration_ms} ms)")
        elif step.outcome == "irreversible":
            out(f"skipped {label}: {step.note}")
        else:
            out(f"FAILED {label}:")
            for line in step.problems:
                out(f"  {line}")

    report = sqlmig.verify(state.config, scratch_url=scratch_url, in_place=scratch_in_place,
                           on_step=None if as_json else on_step)
    if as_json:
        _json(to_json(report))
    else:
        for warning in report.warnings:
            err(f"sqlmig: warning: {warning}")
        proven = sum(s.outcome == "proven" for s in report.steps)
        skipped = sum(s.outcome == "irreversible" for s in report.steps)
        unchecked = [s.name for s in report.steps if s.outcome == "not-checked"]
        if unchecked:
            out(f"not checked after the failure: {', '.join(unchecked)}")
        extra = f", {skipped} irreversible skipped" if skipped else ""
        verdict = "verified" if report.ok else "verify FAILED"
        out(f"{verdict}: {proven} of {len(report.steps)} rollbacks proven{extra}, on the "
            f"{report.scratch}; the target database was not touched")
    if not report.ok:
        sys.exit(ExitCode.CHECK_FAILED)


@cli.command()
@click.argument("version")
@click.pass_obj
def baseline(state: _State, version: str) -> None:
    """Record migrations up to VERSION as applied without running them."""
    report = sqlmig.baseline(state.config, version)
    for s in report.steps:
        _output().recorded(f"recorded {s.name} ({s.version}) as applied (baseline, not run)",
                           migration=s.name, version=s.version)
    _finished(report, f"baseline at version {report.to_version}: {len(report.steps)} recorded")


@cli.command()
@click.option("--mark-applied", metavar="VERSION", help="The step completed: mark it applied.")
@click.option("--remove", metavar="VERSION", help="Undo done by hand: forget the row, so `up` "
              "runs it again.")
@click.option("--accept-formatting", is_flag=True, help="Record the new checksum of applied files "
              "edited only in formatting or comments: the VERSIONs given, else all of them.")
@click.option("--drop-invalid-indexes", is_flag=True, help="DROP INDEX CONCURRENTLY every invalid "
              "index (what a failed CREATE INDEX CONCURRENTLY leaves).")
@click.option("--drop-invalid-index", "drop_index", multiple=True, metavar="NAME",
              help="Drop this invalid index (schema.index); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("versions", nargs=-1, metavar="[VERSION]...")
@click.pass_obj
def repair(state: _State, mark_applied: str | None, remove: str | None, accept_formatting: bool,
           drop_invalid_indexes: bool, drop_index: tuple[str, ...], as_json: bool,
           versions: tuple[str, ...]) -> None:
    """List what needs repair, or repair one thing (logged in the event log).

    Without an option: migrations left `started`/`failed` by a no-transaction step, invalid
    indexes, formatting-only edits of applied files, and the command that fixes each. On a
    terminal it offers to drop the invalid indexes.
    """
    if versions and not accept_formatting:
        raise click.UsageError("VERSION arguments go with --accept-formatting")
    acting = any((mark_applied, remove, accept_formatting, drop_invalid_indexes, drop_index))
    report = sqlmig.repair(state.config, mark_applied=mark_applied, remove=remove,
                           accept_formatting=versions if accept_formatting else None,
                           drop_invalid_indexes=drop_invalid_indexes, drop_index=drop_index)
    if as_json:
        _json(to_json(report))
        return
    for note in report.notes:
        err(f"sqlmig: {note}")
    if acting:
        for line in report.done:
            out(line)
        if not report.done:
            out("nothing to do: no invalid indexes" if drop_invalid_indexes or drop_index else
                "nothing to do: no formatting-only edits to accept")
        return
    _print_repairs(report)
    droppable = [i.qualified for i in report.invalid_indexes if i.building_pid is None]
    if droppable and sys.stdin.isatty() and sys.stdout.isatty() and click.confirm(
            f"drop {len(droppable)} invalid index(es) now with DROP INDEX CONCURRENTLY?",
            default=False):
        for line in sqlmig.repair(state.config, drop_index=droppable).done:
            out(line)


def _print_repairs(report: RepairReport) -> None:
    for rec in report.unfinished:
        since = f" since {rec.applied_at:%Y-%m-%d %H:%M:%S%z}" if rec.applied_at else ""
        cause = f": {rec.error}" if rec.error else ""
        out(f"{rec.name or rec.version} ({rec.version}) is `{rec.status}`{since}{cause}")
        out(f"  finished by hand? sqlmig repair --mark-applied {rec.version}")
        out(f"  undone by hand?   sqlmig repair --remove {rec.version}   (then `sqlmig up` runs it "
            "again)")
    for idx in report.invalid_indexes:
        out(f"invalid index {idx.qualified} on {idx.table}"
            + (f": {idx.definition}" if idx.definition else " (definition unavailable: locked)"))
        if idx.building_pid is not None:
            out(f"  a concurrent build is still running in backend {idx.building_pid}: leave it")
        else:
            out(f"  drop it: sqlmig repair --drop-invalid-index {idx.qualified}   "
                f"(SQL: {idx.drop_sql})")
    if len(report.invalid_indexes) > 1:
        out("  drop them all: sqlmig repair --drop-invalid-indexes")
    if report.unfinished and report.invalid_indexes:
        out("after a failed CREATE INDEX CONCURRENTLY: drop its invalid index, `sqlmig repair "
            "--remove VERSION`, fix the cause (e.g. duplicate rows), then `sqlmig up`")
    for change in report.formatting_only:
        out(f"formatting-only edit of {change.path} ({change.version}): same statements, checksum "
            f"{change.stored_checksum[:12]} in the history, {change.checksum[:12]} on disk")
        out(f"  record it: sqlmig repair --accept-formatting {change.version}")
    if not (report.unfinished or report.invalid_indexes or report.formatting_only):
        out("nothing to repair")


@cli.command()
@click.argument("description")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]),
              help="Which part of the last version to increase (default minor).")
@click.option("--version", "version", help="Give the version explicitly.")
@click.pass_obj
def new(state: _State, description: str, bump: str | None, version: str | None) -> None:
    """Create the next migration and its rollback from a template."""
    state.options["quiet_embedded"] = True
    created = sqlmig.new(state.config, description, bump=bump, version=version)  # type: ignore[arg-type]
    out(f"created {created.migration} (version {created.version})")
    out(f"created {created.rollback}")


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["human", "json", "github"]), default=None,
              help="human (default), json, or github (GitHub Actions annotations).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def lint(state: _State, files: tuple[str, ...], fmt: str | None, as_json: bool) -> None:
    """Check migrations (all, or FILES) for locking, rewriting or breaking statements; exit 1 on
    an error-level finding. No database is used."""
    from sqlmig import linter

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} contradict each other")
    state.options["quiet_embedded"] = True
    report = sqlmig.lint(state.config, files)
    if as_json or fmt == "json":
        _json(to_json(report))
    else:
        for line in (linter.format_github if fmt == "github" else linter.format_human)(report):
            out(line)
    if not report.ok:
        sys.exit(ExitCode.CHECK_FAILED)


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def config_command(state: _State, as_json: bool) -> None:
    """The settings in effect and where each comes from: flag, env, file or default. Passwords
    are redacted; no database is used."""
    state.options["quiet_embedded"] = True
    state.options["quiet_notes"] = True  # they are part of this report
    report = sqlmig.explain_config(state.config)
    if as_json:
        _json(to_json(report))
        return
    out(f"config file: {report.file or 'none (no sqlmig.toml, no [tool.sqlmig] in pyproject.toml)'}")
    out(f"database:    {report.database}")
    rows = [(key, _setting_text(s.value), _setting_source(s.source, s.origin))
            for key, s in report.settings.items()]
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


@cli.group()
def db() -> None:
    """Manage the embedded PostgreSQL used when no database is configured."""


def _embedded(state: _State) -> EmbeddedServer:
    from sqlmig.embedded import EmbeddedServer

    state.options["quiet_embedded"] = True
    return EmbeddedServer(state.config.root)


@db.command("start")
@click.pass_obj
def db_start(state: _State) -> None:
    """Start it (initialising .sqlmig/ on first use)."""
    url = _embedded(state).start()
    out(url)


@db.command("stop")
@click.pass_obj
def db_stop(state: _State) -> None:
    """Stop it."""
    out("stopped" if _embedded(state).stop() else "not running")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def db_status(state: _State, as_json: bool) -> None:
    """Whether it runs, where its data lives, its URL."""
    st = _embedded(state).status()
    if as_json:
        _json(to_json(st))
    else:
        out(f"running:  {'yes, pid ' + str(st.pid) if st.running else 'no'}")
        out(f"data:     {st.data_dir} (PostgreSQL {st.server_version or 'not initialised'})")
        out(f"log:      {st.log_file}")
        if st.url:
            out(f"url:      {st.url}")
    if not st.running:
        sys.exit(ExitCode.CHECK_FAILED)


@db.command("url")
@click.pass_obj
def db_url(state: _State) -> None:
    """Print its connection URL (starting it if needed), e.g. psql "$(sqlmig db url)"."""
    out(_embedded(state).start())


def _known_secrets(argv: list[str]) -> list[str]:
    """Every password we could have been given, so no error line can echo one."""
    import os

    urls = [os.environ.get("SQLMIG_DATABASE_URL"), os.environ.get("DATABASE_URL")]
    for i, arg in enumerate(argv):
        if arg == "--database-url" and i + 1 < len(argv):
            urls.append(argv[i + 1])
        elif arg.startswith("--database-url="):
            urls.append(arg.split("=", 1)[1])
    secrets: list[str] = []
    for url in filter(None, urls):
        with contextlib.suppress(SqlmigError):
            secrets += secrets_of(Config(database_url=url))
    pw_file = os.environ.get("DATABASE_PASSWORD_FILE")
    if pw_file:
        with contextlib.suppress(OSError):
            secrets.append(Path(pw_file).read_text().strip())
    return secrets


def _drop_pipeline_noise(record: logging.LogRecord) -> bool:
    # psycopg logs "error ignored terminating <Pipeline …>: pipeline aborted" when a statement
    # of a migration fails inside the pipeline; the error itself is reported properly below.
    return not str(record.msg).startswith("error ignored terminating")


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where errors become exit codes."""
    # A run builds tens of thousands of objects that live to its end (10,000 files and history
    # rows), few of them in cycles: collecting every 700 allocations cost ~8 % of a no-op `up`.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    logging.getLogger("psycopg").addFilter(_drop_pipeline_noise)
    args = sys.argv[1:] if argv is None else list(argv)
    state = _State()
    try:
        cli.main(args=args, prog_name="sqlmig", standalone_mode=False, obj=state)
    except BaseException as exc:
        # Options not parsed yet (a usage error): the format comes from the raw arguments.
        output = state.output or Output(log_format=_log_format(args))
        output.end()  # a progress line must not run into the error
        code = _report_error(exc, output, state, args)
        if code is None:
            raise  # sys.exit() of a command, or a bug: as it is
        sys.exit(code)
    sys.exit(ExitCode.OK)


def _report_error(exc: BaseException, output: Output, state: _State, args: list[str]) -> int | None:
    """Print the error that ends the run; its exit code (None: not ours to report)."""
    from sqlmig.errors import MigrationFailed

    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        what = "aborted" if isinstance(exc, click.exceptions.Abort) else "interrupted"
        output.failure([what], exit_code=130, error=type(exc).__name__)
        return 130
    if isinstance(exc, click.ClickException):
        if output.json:
            output.failure([exc.format_message()], exit_code=ExitCode.INVALID_INPUT,
                           error=type(exc).__name__)
        else:
            exc.show()
        return ExitCode.INVALID_INPUT
    if not isinstance(exc, SqlmigError):
        return None
    secrets = _known_secrets(args) + state.secrets()
    fields: dict[str, Any] = {"error": type(exc).__name__, "hint": exc.hint}
    if isinstance(exc, MigrationFailed):
        step = state.step
        fields.update(migration=step.name if step else None, version=step.version if step else None,
                      path=exc.path, line=exc.line, column=exc.column, sqlstate=exc.sqlstate,
                      detail=exc.detail, server_hint=exc.server_hint,
                      rolled_back=exc.rolled_back, applied_before=exc.applied_before)
    problems = getattr(exc, "problems", None)
    if problems and not all(isinstance(p, str) for p in problems):  # strings: they are `lines`
        fields["problems"] = [to_json(p) for p in problems]
    output.failure([redact(line, *secrets) for line in exc.lines()], exit_code=exc.exit_code,
                   **_redacted(fields, secrets))
    return exc.exit_code


def _redacted(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, *secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, secrets) for v in value]
    return value


def _log_format(args: list[str]) -> str:
    import os

    for i, arg in enumerate(args):
        if arg == "--log-format" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1]
    return os.environ.get("SQLMIG_LOG_FORMAT") or "text"


if __name__ == "__main__":
    main()
