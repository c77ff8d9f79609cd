"""The command line: parse options, make one library call, print, map errors to exit codes.

Here: the root group with the global options, and main(), the one place where errors become exit
codes. The commands live in cli.run (up, down, baseline), cli.inspect (status, history, validate,
check, wait, config, current) and cli.tools (init, new, lint, render, verify, repair, backup, db),
each imported only when one of its commands runs or --help lists them: `sqlmig up` builds no other
command's options. What they share (the run's state, printing) is in cli.common.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

import sqlmig
from sqlmig.cli.common import GlobalOptions, State
from sqlmig.cli.output import Output
from sqlmig.config.redaction import redact
from sqlmig.config.settings import Config, secrets_of
from sqlmig.errors import ExitCode, MigrationFailed, SqlmigError
from sqlmig.models import to_json

# Command name -> "module:attribute" of its click command (or group).
_COMMANDS = {
    "backup": "sqlmig.cli.tools:backup_command",
    "baseline": "sqlmig.cli.run:baseline",
    "check": "sqlmig.cli.inspect:check",
    "config": "sqlmig.cli.inspect:config_command",
    "current": "sqlmig.cli.inspect:current",
    "db": "sqlmig.cli.tools:db",
    "down": "sqlmig.cli.run:down",
    "history": "sqlmig.cli.inspect:history",
    "init": "sqlmig.cli.tools:init",
    "lint": "sqlmig.cli.tools:lint",
    "new": "sqlmig.cli.tools:new",
    "render": "sqlmig.cli.tools:render",
    "repair": "sqlmig.cli.tools:repair",
    "status": "sqlmig.cli.inspect:status",
    "up": "sqlmig.cli.run:up",
    "validate": "sqlmig.cli.inspect:validate",
    "verify": "sqlmig.cli.tools:verify",
    "wait": "sqlmig.cli.inspect:wait",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when asked for (click's "Lazily Loading Subcommands")."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click >= 8.4 suggests close names ("Did you mean 'status'?") from self.commands
            # alone, which holds none of the lazy ones.
            name = getattr(exc, "command_name", None)
            if name is None:
                raise
            raise type(exc)(
                name,
                possibilities=self.list_commands(ctx),  # type: ignore[call-arg]
                ctx=ctx,
            ) from None


@click.group(
    cls=_LazyGroup, lazy_commands=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(sqlmig.__version__, prog_name="sqlmig")
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    help="Project directory holding "
    "migrations/, rollbacks/ and sqlmig.toml (default: nearest parent with migrations/, "
    "sqlmig.toml or [tool.sqlmig] in pyproject.toml).",
)
@click.option(
    "--database-url",
    envvar=None,
    help="PostgreSQL URL; else SQLMIG_DATABASE_URL, "
    "DATABASE_URL, the PG* environment, or the embedded server.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False),
    help="Read the password from this file (Docker secrets); else DATABASE_PASSWORD_FILE.",
)
@click.option(
    "--schema",
    default=None,
    help="Schema of the history table (default public); "
    "any other schema is also put first on the migrations' search_path. "
    "[env: SQLMIG_SCHEMA]",
)
@click.option(
    "--role",
    default=None,
    help="SET ROLE to this role after connecting, so what "
    "migrations create belongs to it (the schema owner), not to the login role. "
    "[env: SQLMIG_ROLE]",
)
@click.option(
    "--table", default=None, help="Name of the history table (default schema_version). [env: SQLMIG_TABLE]"
)
@click.option(
    "--lock-timeout",
    metavar="DURATION",
    default=None,
    help="How long to wait for another run's lock: 300 (seconds, the default), 5min, "
    "500ms; 0 = do not wait. Not --migration-lock-timeout, which bounds a statement's "
    "wait for a table lock. [env: SQLMIG_LOCK_TIMEOUT]",
)
@click.option(
    "--lock-mode",
    type=click.Choice(["session", "transaction"]),
    default=None,
    help="session (default): one session advisory lock per run. transaction: a lock "
    "per migration transaction and a lease for no-transaction files; use it behind "
    "PgBouncer in pool_mode=transaction, where session locks do not hold. "
    "[env: SQLMIG_LOCK_MODE]",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Say more: e.g. files pglast could not parse (left to the server to judge).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="For scripts: no progress, no line per migration, no notices; the result, "
    "the summary line, warnings and errors stay.",
)
# Output options: not settings of the config file, they describe where the output goes (a
# terminal, a CI log, a log collector), not the project.
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="SQLMIG_LOG_FORMAT",
    show_envvar=True,
    help="json: one JSON object per event line on stderr (up/down/baseline progress, "
    "warnings, errors with their exit code); stdout keeps the command's result.",
)
@click.option(
    "--no-color",
    is_flag=True,
    help="No colours (also when NO_COLOR is set); there are never any when the output is not a terminal.",
)
@click.pass_context
def cli(ctx: click.Context, log_format: str, no_color: bool, quiet: bool, **options: Any) -> None:
    """Plain-SQL versioned migrations for PostgreSQL."""
    state = ctx.ensure_object(State)  # main() passes one, so its error handler can read it
    state.options = GlobalOptions(**options)
    state.output = Output(log_format=log_format, no_color=no_color, quiet=quiet)
    state.output.json_logging()


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
            # Config converts a str to a Secret (its field's kind), as for a flag's value
            secrets += secrets_of(Config(database_url=url))  # type: ignore[arg-type]
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
    # A run builds hundreds of thousands of objects that live to its end (10,000 files, their
    # cache entries and history rows: ~900,000 allocations), few of them in cycles, freed by
    # reference counting: collecting every 700 allocations cost ~8 % of a no-op `up`, every
    # 50,000 still 15-20 ms at 10,000 files. A run that allocates more is still collected.
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 20)
    logging.getLogger("psycopg").addFilter(_drop_pipeline_noise)
    args = _globals_first(sys.argv[1:] if argv is None else list(argv))
    state = State()
    try:
        cli.main(args=args, prog_name="sqlmig", standalone_mode=False, obj=state)
    except BaseException as exc:
        # Options not parsed yet (a usage error): the format comes from the raw arguments.
        output = state.output or Output(log_format=_log_format(args))
        output.end()  # a progress line must not run into the error
        code = _report_error(exc, output, state, args)
        if code is None:
            raise  # sys.exit() of a command, or a bug: as it is
        _exit(code)
    _exit(ExitCode.OK)


def _exit(code: int) -> NoReturn:
    # The interpreter's shutdown runs a collection over every object still tracked: those the
    # command imported and built after the freeze above (psycopg, the engine, the history rows
    # are loaded by the command, not before it) cost a no-op `up` ~17 ms there, for nothing.
    gc.freeze()
    sys.exit(code)


def _takes_value(param: click.Parameter | None, arg: str) -> bool:
    return isinstance(param, click.Option) and not param.is_flag and not param.count and "=" not in arg


def _globals_first(args: list[str]) -> list[str]:
    """The group's options moved before the command name when given after it, as dbmate,
    Flyway and Alembic users write them (`sqlmig up --database-url … --role owner`). A
    command's own option of the same name, and everything after `--`, stay where they are."""
    group = {opt: p for p in cli.params for opt in p.opts}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if _takes_value(group.get(args[i].split("=", 1)[0]), args[i]) else 1
    if i >= len(args) or args[i] == "--" or args[i] not in _COMMANDS:
        return args
    command = cli.get_command(click.Context(cli), args[i])
    own = {opt: p for p in (command.params if command else ()) for opt in p.opts}
    moved: list[str] = []
    kept: list[str] = []
    j = i + 1
    while j < len(args):
        arg = args[j]
        name = arg.split("=", 1)[0]
        if arg == "--":
            kept += args[j:]
            break
        if name in own or name not in group:
            width = 2 if name in own and _takes_value(own[name], arg) else 1
            kept += args[j : j + width]
        else:
            width = 2 if _takes_value(group[name], arg) else 1
            moved += args[j : j + width]
        j += width
    return [*args[:i], *moved, args[i], *kept]


def _report_error(exc: BaseException, output: Output, state: State, args: list[str]) -> int | None:
    """Print the error that ends the run; its exit code (None: not ours to report)."""
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        what = "aborted" if isinstance(exc, click.exceptions.Abort) else "interrupted"
        output.failure([what], exit_code=130, error=type(exc).__name__)
        return 130
    if isinstance(exc, click.ClickException):
        if output.json:
            output.failure([exc.format_message()], exit_code=ExitCode.INVALID_INPUT, error=type(exc).__name__)
        else:
            exc.show()
        return ExitCode.INVALID_INPUT
    if not isinstance(exc, SqlmigError):
        return None
    secrets = _known_secrets(args) + state.secrets()
    fields: dict[str, Any] = {"error": type(exc).__name__, "hint": exc.hint}
    if isinstance(exc, MigrationFailed):
        step = state.step
        fields.update(
            migration=step.name if step else None,
            version=step.version if step else None,
            path=exc.path,
            line=exc.line,
            column=exc.column,
            sqlstate=exc.sqlstate,
            detail=exc.detail,
            server_hint=exc.server_hint,
            rolled_back=exc.rolled_back,
            applied_before=exc.applied_before,
        )
    problems = getattr(exc, "problems", None)
    if problems and not all(isinstance(p, str) for p in problems):  # strings: they are `lines`
        fields["problems"] = [to_json(p) for p in problems]
    output.failure(
        [redact(line, *secrets) for line in exc.lines()],
        exit_code=exc.exit_code,
        **_redacted(fields, secrets),
    )
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
