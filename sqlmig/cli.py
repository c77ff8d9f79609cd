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
from sqlmig.models import PlanStep, Problem, RepairReport, RunReport, StepResult

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
        _json(report.model_dump(mode="json"))
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
        out(f"recorded {s.name} ({s.version}) as applied (baseline, not run)")
    out(f"baseline at version {report.to_version}: {len(report.steps)} recorded")


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
        _json(report.model_dump(mode="json"))
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
        _json(report.model_dump(mode="json"))
    else:
        for line in (linter.format_github if fmt == "github" else linter.format_human)(report):
            out(line)
    if not report.ok:
        sys.exit(ExitCode.CHECK_FAILED)


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
