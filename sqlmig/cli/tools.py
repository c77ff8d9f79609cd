"""The tools around the migrations: new, lint, render, verify, repair, backup, and `db` (the
embedded server)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

import sqlmig
from sqlmig.cli.common import State, backup_line, err, out, print_json
from sqlmig.errors import ExitCode, span
from sqlmig.models import to_json

if TYPE_CHECKING:
    from sqlmig.db.embedded import EmbeddedServer
    from sqlmig.reports import RepairReport


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option(
    "--requirement",
    metavar="REQ",
    help="What the project's migrate.sh installs: a "
    "version (sqlmig==0.1.0), a wheel path or a git URL (default: this sqlmig's "
    "version).",
)
@click.pass_obj
def init(state: State, directory: str, requirement: str | None) -> None:
    """Set up sqlmig in a project: migrations/, rollbacks/, sqlmig.toml, migrate.sh and the
    .gitignore line; an existing file is never overwritten.

    Example: sqlmig init services/billing --requirement ./wheels/sqlmig-0.1.0-py3-none-any.whl
    """
    from pathlib import Path

    # Loaded here, not at the top: only `init` scaffolds.
    from sqlmig.authoring.scaffold import init as scaffold

    report = scaffold(Path(directory), requirement=requirement)
    for name in report.created:
        out(f"created {name}")
    for name in report.kept:
        out(f"kept    {name} (there already)")
    out("next:")
    for line in report.next_steps:
        out(f"  {line}")


@click.command()
@click.argument("description")
@click.option(
    "--bump",
    type=click.Choice(["major", "minor", "patch"]),
    help="Which part of the last version to increase (default minor).",
)
@click.option("--major", "bump", flag_value="major", help="Same as --bump major (breaking).")
@click.option("--minor", "bump", flag_value="minor", help="Same as --bump minor (the default).")
@click.option("--patch", "bump", flag_value="patch", help="Same as --bump patch.")
@click.option("--version", "version", help="Give the version explicitly.")
@click.pass_obj
def new(state: State, description: str, bump: str | None, version: str | None) -> None:
    """Create the next migration and its rollback from a template.

    Example: sqlmig new "add user phone" --major
    """
    state.configure(embedded_notice=False)
    created = sqlmig.new(state.config, description, bump=bump, version=version)  # type: ignore[arg-type]
    out(f"created {created.migration} (version {created.version})")
    out(f"created {created.rollback}")


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["human", "json", "github"]),
    default=None,
    help="human (default), json, or github (GitHub Actions annotations).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def lint(state: State, files: tuple[str, ...], fmt: str | None, as_json: bool) -> None:
    """Check migrations and rollbacks (all, or FILES) for locking, rewriting or breaking
    statements and for what `up`/`down` would refuse; exit 1 on an error-level finding, 2 when
    a file would be refused. No database is used.

    Example: sqlmig lint --format github   # annotations in a GitHub Actions job
    """
    # Loaded here, not at the top: only this command lints (pglast and the rules).
    from sqlmig.checks import lint as linter

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} contradict each other")
    state.configure(embedded_notice=False)
    report = sqlmig.lint(state.config, files)
    if as_json or fmt == "json":
        print_json(to_json(report))
    else:
        for line in (linter.format_github if fmt == "github" else linter.format_human)(report):
            out(line)
    if report.refused_count:
        sys.exit(ExitCode.INVALID_INPUT)
    if not report.ok:
        sys.exit(ExitCode.CHECK_FAILED)


@click.command()
@click.argument("direction", type=click.Choice(["up", "down"]))
@click.option(
    "--from",
    "start",
    metavar="VERSION|NUMBER",
    help="The version the database is at (default: none for up, the newest for down).",
)
@click.option(
    "--to",
    "to",
    metavar="VERSION|NUMBER",
    help="As for up/down: stop at (up) or roll back above (down) this.",
)
@click.option("--steps", type=int, help="render down: how many to roll back (default 1).")
@click.option(
    "--from-database", is_flag=True, help="Read the history (read-only) to start from the database's version."
)
@click.option(
    "--allow",
    multiple=True,
    type=click.Choice(["changed", "missing", "out-of-order"]),
    help="With --from-database: proceed despite this kind of drift (repeatable).",
)
@click.option(
    "--review",
    is_flag=True,
    help="For reading, not running: each step's SQL as written, with its transaction "
    "mode, timeouts and lint findings, without the bookkeeping.",
)
@click.option(
    "--each-schema",
    metavar="PATTERN",
    help="One script per schema of the database whose name is LIKE PATTERN, one after the other "
    "(each with its own history table and lock, as `up --each-schema`); reads the schema list.",
)
@click.pass_obj
def render(
    state: State,
    direction: str,
    start: str | None,
    to: str | None,
    steps: int | None,
    from_database: bool,
    allow: tuple[str, ...],
    review: bool,
    each_schema: str | None,
) -> None:
    """Print a psql script that does what up/down would do (for docker exec / DBA review).

    Example: sqlmig render up --from-database | docker exec -i db psql -X -U app app
    """
    if not from_database and not each_schema:
        state.configure(embedded_notice=False)  # rendering from the files needs no database
    options = {"start": start, "to": to, "steps": steps, "from_database": from_database, "allow": allow}
    if not each_schema:
        click.echo(sqlmig.render(state.config, direction, review=review, **options), nl=False)  # type: ignore[arg-type]
        return
    # Loaded here, not at the top: only a render over tenant schemas needs it.
    from sqlmig.engine import fleet

    targets = fleet.each_schema(state.config, like=each_schema)
    fleet.check_names(targets)
    for n, target in enumerate(targets):
        # Each part is the whole script of one schema; with ON_ERROR_STOP the first that
        # stops stops the session, and running it again skips what each part finds applied.
        # Between parts, the session is made new: the next part prepares its statements again.
        click.echo(
            ("RESET ALL;\nRESET ROLE;\nDEALLOCATE ALL;\n" if n else "")
            + f"\\echo sqlmig: schema {target.schema}"
        )
        script = sqlmig.render(fleet.config_for(state.config, target), direction, review=review, **options)  # type: ignore[arg-type]
        click.echo(script, nl=False)


@click.command()
@click.option(
    "--scratch-url",
    help="A server where sqlmig may CREATE and DROP a scratch "
    "database (default: the project's embedded server). Never the target.",
)
@click.option(
    "--scratch-in-place",
    is_flag=True,
    help="Use the database of --scratch-url itself "
    "(empty, no sqlmig history) instead of creating one; it is left fully migrated.",
)
@click.option(
    "--fail-fast",
    is_flag=True,
    help="Stop at the first rollback that fails or leaks (default: go on, and name every one).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Start from the state an earlier run proved the "
    "same first migrations on (kept on the scratch server), and check only the rest.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify(
    state: State,
    scratch_url: str | None,
    scratch_in_place: bool,
    fail_fast: bool,
    incremental: bool,
    as_json: bool,
) -> None:
    """Prove every rollback on a scratch database: apply, roll back, compare the schema, re-apply.
    Exit 1 if a rollback fails or does not restore the schema (all are checked, and listed, unless
    --fail-fast). The target database is never touched.

    Example: sqlmig verify --incremental --scratch-url postgresql://ci@localhost/postgres
    """
    # Loaded here, not at the top: only this command verifies.
    from sqlmig.checks.verify import VerifyStep
    from sqlmig.checks.verify import verify as run_verify

    state.configure(embedded_notice=False)  # the target is not used, embedded or not

    cached: list[str] = []

    def on_step(step: VerifyStep) -> None:
        label = f"{step.name} ({step.version})"
        if cached and not (step.outcome == "proven" and step.note):
            out(f"proven by an earlier run with the same files (--incremental): {span(cached)}")
            cached.clear()
        if step.outcome == "proven" and step.note:  # --incremental: said once, below
            cached.append(step.name)
        elif step.outcome == "proven":
            out(f"proven {label}: rollback restores the schema, re-apply matches ({step.duration_ms} ms)")
        elif step.outcome == "irreversible":
            out(f"skipped {label}: {step.note}")
        else:
            out(f"{'LEAKY' if step.outcome == 'leaky' else 'FAILED'} {label}:")
            for line in step.problems:
                out(f"  {line}")

    report = run_verify(
        state.config,
        scratch_url=scratch_url,
        in_place=scratch_in_place,
        on_step=None if as_json else on_step,
        fail_fast=fail_fast,
        incremental=incremental,
    )
    if as_json:
        print_json(to_json(report))
    else:
        for warning in report.warnings:
            err(f"sqlmig: warning: {warning}")
        if cached:  # every migration was proven earlier
            out(f"proven by an earlier run with the same files (--incremental): {span(cached)}")
        unchecked = [s for s in report.steps if s.outcome == "not-checked"]
        if unchecked:
            out(
                f"not checked ({(unchecked[0].note or '').removeprefix('not checked: ')}): "
                f"{span([s.name for s in unchecked])}"
            )
        verdict = "verified" if report.ok else "verify FAILED"
        out(
            f"{verdict}: {report.summary} ({report.duration_ms / 1000:.1f} s), on the "
            f"{report.scratch}; the target database was not touched"
        )
    if not report.ok:
        sys.exit(ExitCode.CHECK_FAILED)


@click.command()
@click.option("--mark-applied", metavar="VERSION", help="The step completed: mark it applied.")
@click.option("--remove", metavar="VERSION", help="Undo done by hand: forget the row, so `up` runs it again.")
@click.option(
    "--accept-formatting",
    is_flag=True,
    help="Record the new checksum of applied files "
    "edited only in formatting or comments: the VERSIONs given, else all of them.",
)
@click.option(
    "--drop-invalid-indexes",
    is_flag=True,
    help="DROP INDEX CONCURRENTLY every invalid index (what a failed CREATE INDEX CONCURRENTLY leaves).",
)
@click.option(
    "--drop-invalid-index",
    "drop_index",
    multiple=True,
    metavar="NAME",
    help="Drop this invalid index (schema.index); repeatable.",
)
@click.option(
    "--refresh-rollback",
    "refresh",
    multiple=True,
    metavar="VERSION",
    help="Store the rollback file of this applied version in place of the text stored "
    "when it was applied, which `down` runs; repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("versions", nargs=-1, metavar="[VERSION]...")
@click.pass_obj
def repair(
    state: State,
    mark_applied: str | None,
    remove: str | None,
    accept_formatting: bool,
    drop_invalid_indexes: bool,
    drop_index: tuple[str, ...],
    refresh: tuple[str, ...],
    as_json: bool,
    versions: tuple[str, ...],
) -> None:
    """List what needs repair, or repair one thing (logged in the event log).

    Without an option: migrations left `started`/`failed`/`rolling_back` by a no-transaction
    step, invalid indexes, formatting-only edits of applied files, rollback files that differ
    from the stored text, and the command that fixes each. On a terminal it offers to drop the
    invalid indexes.

    Example: sqlmig repair; sqlmig repair --remove 1.4.0
    """
    if versions and not accept_formatting:
        raise click.UsageError("VERSION arguments go with --accept-formatting")
    acting = any((mark_applied, remove, accept_formatting, drop_invalid_indexes, drop_index, refresh))
    report = sqlmig.repair(
        state.config,
        mark_applied=mark_applied,
        remove=remove,
        accept_formatting=versions if accept_formatting else None,
        drop_invalid_indexes=drop_invalid_indexes,
        drop_index=drop_index,
        refresh_rollback=refresh,
    )
    if as_json:
        print_json(to_json(report))
        return
    for note in report.notes:
        err(f"sqlmig: {note}")
    if acting:
        for line in report.done:
            out(line)
        if not report.done:
            out(
                "nothing to do: no invalid indexes"
                if drop_invalid_indexes or drop_index
                else "nothing to do: the stored rollback is already the file's"
                if refresh
                else "nothing to do: no formatting-only edits to accept"
            )
        return
    _print_repairs(report)
    droppable = [i.qualified for i in report.invalid_indexes if i.building_pid is None]
    if (
        droppable
        and sys.stdin.isatty()
        and sys.stdout.isatty()
        and click.confirm(
            f"drop {len(droppable)} invalid index(es) now with DROP INDEX CONCURRENTLY?", default=False
        )
    ):
        for line in sqlmig.repair(state.config, drop_index=droppable).done:
            out(line)


def _print_repairs(report: RepairReport) -> None:
    for rec in report.unfinished:
        since = f" since {rec.applied_at:%Y-%m-%d %H:%M:%S%z}" if rec.applied_at else ""
        cause = f": {rec.error}" if rec.error else ""
        out(f"{rec.name or rec.version} ({rec.version}) is `{rec.status}`{since}{cause}")
        if rec.status == "rolling_back":  # a no-transaction rollback stopped part-way
            out(f"  rollback finished by hand (the migration is gone)? sqlmig repair --remove {rec.version}")
            out(
                f"  its changes restored by hand (the migration is whole)? sqlmig repair "
                f"--mark-applied {rec.version}"
            )
        else:
            out(f"  finished by hand? sqlmig repair --mark-applied {rec.version}")
            out(
                f"  undone by hand?   sqlmig repair --remove {rec.version}   (then `sqlmig up` runs it again)"
            )
    for idx in report.invalid_indexes:
        out(
            f"invalid index {idx.qualified} on {idx.table}"
            + (f": {idx.definition}" if idx.definition else " (definition unavailable: locked)")
        )
        if idx.building_pid is not None:
            out(f"  a concurrent build is still running in backend {idx.building_pid}: leave it")
        else:
            out(f"  drop it: sqlmig repair --drop-invalid-index {idx.qualified}   (SQL: {idx.drop_sql})")
    if len(report.invalid_indexes) > 1:
        out("  drop them all: sqlmig repair --drop-invalid-indexes")
    if report.unfinished and report.invalid_indexes:
        out(
            "after a failed CREATE INDEX CONCURRENTLY: drop its invalid index, `sqlmig repair "
            "--remove VERSION`, fix the cause (e.g. duplicate rows), then `sqlmig up`"
        )
    for rb in report.rollbacks_changed:
        out(
            f"{rb.path} differs from the rollback stored when {rb.name} ({rb.version}) was "
            f"applied (checksum {rb.stored_checksum[:12]} in the history, {rb.checksum[:12]} on "
            "disk); `down` runs the stored one"
        )
        out(f"  store the file's: sqlmig repair --refresh-rollback {rb.version}")
    for change in report.formatting_only:
        out(
            f"formatting-only edit of {change.path} ({change.version}): same statements, checksum "
            f"{change.stored_checksum[:12]} in the history, {change.checksum[:12]} on disk"
        )
        out(f"  record it: sqlmig repair --accept-formatting {change.version}")
    if not (
        report.unfinished or report.invalid_indexes or report.formatting_only or report.rollbacks_changed
    ):
        out("nothing to repair")


@click.command("backup")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write it (default: the backup_dir setting, else <root>/backups).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def backup_command(state: State, directory: str | None, as_json: bool) -> None:
    """Write a pg_dump -Fc of the database: <database>-<UTC time>-v<version>.dump.

    Example: sqlmig backup --dir /backups
    """
    report = sqlmig.backup(state.config, directory)
    if as_json:
        print_json(to_json(report))
    else:
        out(backup_line(report))


@click.group()
def db() -> None:
    """Manage the embedded PostgreSQL used when no database is configured.

    Example: psql "$(sqlmig db url)"; sqlmig db stop
    """


def _embedded(state: State) -> EmbeddedServer:
    # Loaded here, not at the top: the embedded server matters only when no database is configured.
    from sqlmig.db.embedded import EmbeddedServer

    state.configure(embedded_notice=False)
    return EmbeddedServer(state.config.root)


@db.command("start")
@click.pass_obj
def db_start(state: State) -> None:
    """Start it (initialising .sqlmig/ on first use)."""
    url = _embedded(state).start()
    out(url)


@db.command("stop")
@click.pass_obj
def db_stop(state: State) -> None:
    """Stop it."""
    out("stopped" if _embedded(state).stop() else "not running")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def db_status(state: State, as_json: bool) -> None:
    """Whether it runs, where its data lives, its URL."""
    st = _embedded(state).status()
    if as_json:
        print_json(to_json(st))
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
def db_url(state: State) -> None:
    """Print its connection URL (starting it if needed), e.g. psql "$(sqlmig db url)"."""
    out(_embedded(state).start())
