"""The command line: parse options, make one library call, print, map errors to exit codes."""

from __future__ import annotations

import contextlib
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
from sqlmig.models import PlanStep, Problem, RunReport, StepResult

if TYPE_CHECKING:
    from sqlmig.embedded import EmbeddedServer


class _State:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            o = self.options
            self._config = sqlmig.resolve(
                root=Path(o["root"]) if o["root"] else _default_root(),
                database_url=o["database_url"],
                password_file=Path(o["password_file"]) if o["password_file"] else None,
                schema_name=o["schema"],
                table=o["table"],
                lock_timeout=o["lock_timeout"],
            )
            if self._config.uses_embedded and not o.get("quiet_embedded"):
                from sqlmig.connect import describe

                err(f"sqlmig: no database configured (--database-url, SQLMIG_DATABASE_URL, "
                    f"DATABASE_URL, PG*): using the {describe(self._config)}; "
                    "`sqlmig db stop` stops it")
        return self._config


def _default_root() -> Path:
    from sqlmig.files import find_root

    return find_root(Path.cwd())


def out(line: str = "") -> None:
    click.echo(line)


def err(line: str) -> None:
    click.echo(line, err=True)


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _warn(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for p in problems:
        err(p.render())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sqlmig.__version__, prog_name="sqlmig")
@click.option("--root", type=click.Path(file_okay=False), help="Project directory holding "
              "migrations/ and rollbacks/ (default: nearest parent with migrations/).")
@click.option("--database-url", envvar=None, help="PostgreSQL URL; else SQLMIG_DATABASE_URL, "
              "DATABASE_URL, the PG* environment, or the embedded server.")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="Read the password from this file (Docker secrets); else DATABASE_PASSWORD_FILE.")
@click.option("--schema", default=None, help="Schema of the history table (default public).")
@click.option("--table", default=None, help="Name of the history table (default schema_version).")
@click.option("--lock-timeout", type=float, default=None,
              help="Seconds to wait for another run's lock (default 300; 0 = do not wait).")
@click.option("-v", "--verbose", is_flag=True,
              help="Say more: e.g. files pglast could not parse (left to the server to judge).")
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Plain-SQL versioned migrations for PostgreSQL."""
    ctx.obj = _State(options)


def _steps_printer(verb: str) -> tuple[Callable[[PlanStep], None], Callable[[StepResult], None]]:
    def on_step(step: PlanStep) -> None:
        for warning in step.warnings:
            err(warning)

    def on_done(result: StepResult) -> None:
        for warning in result.warnings:
            err(warning)
        out(f"{verb} {result.name} ({result.version}) in {result.duration_ms} ms")

    return on_step, on_done


def _note_printer(state: _State) -> Callable[[str], None] | None:
    return (lambda note: err(f"note: {note}")) if state.options.get("verbose") else None


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


@cli.command()
@click.option("--to", "to", help="Stop at this version (1.2.0) or migration number (3).")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@click.option("--allow", multiple=True, type=click.Choice(["changed", "missing", "out-of-order"]),
              help="Proceed despite this kind of drift (repeatable).")
@click.pass_obj
def up(state: _State, to: str | None, dry_run: bool, allow: tuple[str, ...]) -> None:
    """Apply pending migrations, each in its own transaction."""
    on_step, on_done = _steps_printer("applied")
    report = sqlmig.up(state.config, to=to, dry_run=dry_run, allow=allow, on_step=on_step,
                       on_done=on_done, on_note=_note_printer(state))
    _warn(report.warnings)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        total = sum(s.duration_ms for s in report.steps)
        out(f"at version {report.to_version}: {len(report.steps)} applied in {total} ms")
    else:
        out(f"already up to date at version {report.to_version or 'none (no migrations)'}")


@cli.command()
@click.option("--steps", type=int, help="How many migrations to roll back (default 1).")
@click.option("--to", "to", help="Roll back everything above this version; 0.0.0 or 0 = all.")
@click.option("--dry-run", is_flag=True, help="Show the plan and its SQL; change nothing.")
@click.pass_obj
def down(state: _State, steps: int | None, to: str | None, dry_run: bool) -> None:
    """Roll back applied migrations, newest first."""
    on_step, on_done = _steps_printer("rolled back")
    report = sqlmig.down(state.config, steps=steps, to=to, dry_run=dry_run, on_step=on_step,
                         on_done=on_done, on_note=_note_printer(state))
    _warn(report.warnings)
    if dry_run:
        _print_plan(report, show_sql=True)
    elif report.steps:
        out(f"at version {report.to_version}: {len(report.steps)} rolled back")
    else:
        out(f"nothing to roll back; at version {report.from_version or 'none'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 if migrations are pending, 6 if history and files disagree.")
@click.pass_obj
def status(state: _State, as_json: bool, exit_code: bool) -> None:
    """Current version, applied and pending migrations, problems."""
    report = sqlmig.status(state.config)
    if as_json:
        _json(report.model_dump(mode="json"))
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
            _json([e.model_dump(mode="json") for e in evs])
            return
        for e in evs:
            target = f" {e.name or ''} ({e.version})" if e.version else ""
            took = f" {e.duration_ms} ms" if e.duration_ms is not None else ""
            detail = f": {e.detail}" if e.detail else ""
            out(f"{e.at:%Y-%m-%d %H:%M:%S%z} {e.action}{target} {e.outcome}{took} "
                f"by {e.actor}@{e.client_host}{detail}")
        return
    records = sqlmig.history(state.config, limit)
    if as_json:
        _json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        out("no migrations applied")
    for r in records:
        when = f"{r.applied_at:%Y-%m-%d %H:%M:%S%z}" if r.applied_at else "?"
        took = f"{r.execution_ms} ms" if r.execution_ms is not None else "-"
        flag = " baseline" if r.baseline else ""
        out(f"{r.version:<10} {r.name or '-':<40} {r.status:<8} {when} {took:>8} "
            f"{r.applied_by or '-'}{flag}")


@cli.command()
@click.option("--allow", multiple=True, type=click.Choice(["changed", "missing", "out-of-order"]),
              help="Report this kind of drift as a warning instead of an error.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def validate(state: _State, allow: tuple[str, ...], as_json: bool) -> None:
    """Check files against the database; exit 6 if they disagree."""
    report = sqlmig.validate(state.config, allow)
    if as_json:
        _json(report.model_dump(mode="json"))
    else:
        _warn(report.warnings)
        for p in report.problems:
            out(p.render())
        out("ok: files and history agree" if report.ok else
            f"{len(report.problems)} problem(s): history and files disagree")
    if not report.ok:
        sys.exit(ExitCode.INCONSISTENT)


@cli.command()
@click.argument("version")
@click.pass_obj
def baseline(state: _State, version: str) -> None:
    """Record migrations up to VERSION as applied without running them."""
    report = sqlmig.baseline(state.config, version)
    for s in report.steps:
        out(f"recorded {s.name} ({s.version}) as applied (baseline, not run)")
    out(f"baseline at version {report.to_version}: {len(report.steps)} recorded")


@cli.command()
@click.option("--mark-applied", metavar="VERSION", help="The step completed: mark it applied.")
@click.option("--remove", metavar="VERSION", help="Undo done by hand: forget the row, so `up` "
              "runs it again.")
@click.pass_obj
def repair(state: _State, mark_applied: str | None, remove: str | None) -> None:
    """Resolve a migration left `started`/`failed` by a no-transaction step."""
    for line in sqlmig.repair(state.config, mark_applied=mark_applied, remove=remove):
        out(line)


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
        _json(st.model_dump(mode="json"))
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
            secrets += secrets_of(Config.model_validate({"database_url": url}))
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
    logging.getLogger("psycopg").addFilter(_drop_pipeline_noise)
    try:
        cli.main(args=argv, prog_name="sqlmig", standalone_mode=False)
    except click.exceptions.Abort:
        err("sqlmig: aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.INVALID_INPUT)
    except SqlmigError as exc:
        secrets = _known_secrets(sys.argv[1:] if argv is None else argv)
        for line in exc.lines():
            err(redact(f"sqlmig: {line}", *secrets))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err("sqlmig: interrupted")
        sys.exit(130)
    sys.exit(ExitCode.OK)


if __name__ == "__main__":
    main()
