"""What the command modules of the CLI share: the run's state and the ways to print.

cli/main.py (the root group, main) and every module of commands (run, inspect, tools) import this
one, and it imports none of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

import sqlmig
from sqlmig.cli.output import Output
from sqlmig.config.durations import parse_duration
from sqlmig.config.settings import Config, secrets_of
from sqlmig.models import PlanStep, Problem


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The group's options (before or after the command name), as given; None = not given."""

    root: str | None = None
    database_url: str | None = None
    password_file: str | None = None
    schema: str | None = None
    role: str | None = None
    table: str | None = None
    lock_timeout: str | None = None
    lock_mode: str | None = None
    verbose: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """The options of up/down that are settings too (cli.run's deploy options)."""

    migration_lock_timeout: str | None = None
    statement_timeout: str | None = None
    retries: int | None = None
    retry_delay: str | None = None
    backup_dir: str | None = None


class State:
    """One invocation: the group's options, the output, and the configuration once resolved."""

    def __init__(self) -> None:
        self.options = GlobalOptions()
        self.output: Output | None = None  # set by the group callback from --log-format
        self.step: PlanStep | None = None  # the migration running now, for the error event
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The configuration, resolved on first use with the defaults of `configure`."""
        return self._config if self._config is not None else self.configure()

    def configure(
        self, *, run: RunSettings | None = None, embedded_notice: bool = True, notes: bool = True
    ) -> Config:
        """Resolve the configuration from the group's options and the command's own settings
        (`run`); `embedded_notice`/`notes`: say on stderr that the embedded server is used, and
        what resolving noticed (off where stdout is the answer, or the notes are the report)."""
        if self._config is not None:
            return self._config
        o, r = self.options, run or RunSettings()
        self._config = sqlmig.resolve(
            root=Path(o.root) if o.root else None,
            find_root_from=Path.cwd(),
            given_as="flag",
            flag_names=_flag_names(),
            database_url=o.database_url,
            password_file=o.password_file,
            schema_name=o.schema,
            table=o.table,
            lock_timeout=o.lock_timeout,
            lock_mode=o.lock_mode,
            role=o.role,
            migration_lock_timeout=r.migration_lock_timeout,
            statement_timeout=r.statement_timeout,
            retries=r.retries,
            retry_delay=r.retry_delay,
            backup_dir=r.backup_dir,
        )
        for note in self._config.resolve_notes if notes else ():
            err(f"sqlmig: {note}", "yellow", level="warning", event="config")
        if (
            self._config.uses_embedded
            and embedded_notice
            and self._config.migrations_path.is_dir()  # else it is not started
            and not _embedded_running(self._config)
        ):  # said once, when it starts
            # Loaded here: psycopg (0.14 s) is not imported by commands that never connect.
            from sqlmig.db.connect import describe

            # migrate.sh says how it is called (SQLMIG_COMMAND_NAME), so that the advice
            # is a command the user can run as it is.
            command = os.environ.get("SQLMIG_COMMAND_NAME") or "sqlmig"
            err(
                f"sqlmig: no database configured (--database-url, SQLMIG_DATABASE_URL, "
                f"DATABASE_URL, PG*): using the {describe(self._config)}; "
                f"`{command} db stop` stops it",
                event="embedded",
            )
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


def current_output() -> Output:
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx is not None else None
    if state is None or state.output is None:
        return Output()
    return state.output


class _Duration(click.ParamType):
    """A duration as every timeout takes it (sqlmig.engine.timeouts): 300, 5s, 500ms, 5min, 0/off;
    a bad value is a usage error naming the option."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def _embedded_running(config: Config) -> bool:
    # Loaded here, not at the top: the embedded server matters only when no database is configured.
    from sqlmig.db.embedded import EmbeddedServer

    return EmbeddedServer(config.root).running()


def out(line: str = "", *styles: str) -> None:
    """A line of the command's result (stdout)."""
    current_output().out(line, *styles)


def err(text: str, *styles: str, **event: Any) -> None:
    """A line of the log (stderr): an event object with --log-format json (`level`, `event`
    and fields in **event)."""
    current_output().err(text, *styles, **event)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def warn(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for p in problems:
        err(p.render(), "yellow", level="warning", event="warning", path=p.path, line=p.line, code=p.code)


# Lines printed by `up` and by `wait` / `backup`.
def backup_line(report: Any) -> str:
    size = report.size_bytes
    shown = (
        f"{size} B"
        if size < 10_000
        else (f"{size / 1e3:.0f} kB" if size < 10_000_000 else f"{size / 1e6:.0f} MB")
    )
    note = f" ({report.note})" if report.note else ""
    return (
        f"backup: {report.path} ({shown} in {report.duration_ms} ms, pg_dump "
        f"{report.pg_dump_version} from {report.pg_dump}){note}"
    )


def on_wait_attempt(attempt: Any) -> None:
    err(
        f"sqlmig: waiting for the database: attempt {attempt.attempt} failed: {attempt.error}; "
        f"next try in {attempt.next_in:g} s",
        level="info",
        event="wait_attempt",
        attempt=attempt.attempt,
        error=attempt.error,
        next_in=attempt.next_in,
    )
