"""Typed errors. Each carries what the user needs and the exit code DESIGN.md gives it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmig.models import Problem


class ExitCode:
    OK = 0
    CHECK_FAILED = 1
    INVALID_INPUT = 2
    MIGRATION_FAILED = 3
    LOCK_TIMEOUT = 4
    CANNOT_CONNECT = 5
    INCONSISTENT = 6


class SqlmigError(Exception):
    exit_code: int = ExitCode.INVALID_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """What the CLI prints, one actionable line each."""
        out = [self.message]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class InvalidInput(SqlmigError):
    """Bad arguments or configuration (not the migration files: see FileProblems)."""

    exit_code = ExitCode.INVALID_INPUT


class ConfigInvalid(InvalidInput):
    """Settings that do not validate, every one reported: each line names where it was set and
    the key (`sqlmig.toml: lock_timeout: …`, `SQLMIG_SCHEMA: …`, `--lock-timeout: …`)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems[0])

    def lines(self) -> list[str]:
        return list(self.problems)


class FileProblems(SqlmigError):
    """Every problem found in the migration files, collected before any connection."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the migration files; nothing was run",
        )

    def lines(self) -> list[str]:
        return [p.render() for p in self.problems] + [self.message]


class ConnectError(SqlmigError):
    exit_code = ExitCode.CANNOT_CONNECT


class ConnectionLost(ConnectError):
    """The connection went away while a run was changing the database. `reason`: what the
    driver said; the run reads the history again before it reports (see engine.apply._after_loss)."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class LockTimeout(SqlmigError):
    exit_code = ExitCode.LOCK_TIMEOUT


class HistoryInconsistent(SqlmigError):
    """Files and history disagree (drift, failed state, missing files, out-of-order)."""

    exit_code = ExitCode.INCONSISTENT

    def __init__(self, problems: Sequence[Problem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"history and files disagree ({count} problem{'s' if count != 1 else ''}); nothing was run",
            hint=hint,
        )

    def lines(self) -> list[str]:
        out = [p.render() for p in self.problems] + [self.message]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class Irreversible(SqlmigError):
    """`down` reached a rollback marked `-- sqlmig: irreversible`."""

    exit_code = ExitCode.INVALID_INPUT


class BackupFailed(SqlmigError):
    """pg_dump could not be run or did not finish (no suitable pg_dump, a directory that cannot
    be written, a dump error): the run stopped before migrating. Cannot connect is ConnectError."""

    exit_code = ExitCode.INVALID_INPUT


class RepairFailed(SqlmigError):
    """A statement `repair` ran (DROP INDEX CONCURRENTLY) failed on the server."""

    exit_code = ExitCode.MIGRATION_FAILED


class MigrationFailed(SqlmigError):
    """A migration or rollback failed on the server and its transaction was rolled back."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(
        self,
        *,
        path: str,
        line: int | None,
        column: int | None,
        sqlstate: str | None,
        server_message: str,
        detail: str | None = None,
        server_hint: str | None = None,
        applied_before: Sequence[str] = (),
        rolled_back: bool = True,
        direction: str = "up",
        version: str | None = None,
        committed: Sequence[int] = (),
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.sqlstate = sqlstate
        self.server_message = server_message
        self.detail = detail
        self.server_hint = server_hint
        self.applied_before = list(applied_before)
        self.rolled_back = rolled_back
        self.direction = direction  # "down": a rollback failed
        self.version = version
        # A no-transaction file: the lines of its statements that committed before the failure.
        self.committed = list(committed)
        self.attempts = 1  # tries made, with the retries after lock timeouts (sqlmig.engine.timeouts)
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        state = f" [{sqlstate}]" if sqlstate else ""
        super().__init__(f"{where}: ERROR{state}: {server_message}")

    def lines(self) -> list[str]:
        out = [self.message]
        if self.detail:
            out.append(f"DETAIL: {self.detail}")
        if self.server_hint:
            out.append(f"HINT: {self.server_hint}")
        out.append(self._state())
        if self.sqlstate in ("55P03", "40P01"):
            tried = f"tried {self.attempts} times; " if self.attempts > 1 else ""
            out.append(
                f"{tried}other sessions hold locks this migration needs (look for long "
                "transactions on its tables in pg_stat_activity and pg_locks): run it again when "
                "they are done, or raise --migration-lock-timeout / --retries"
            )
        if self.applied_before:
            done = "rolled back" if self.direction == "down" else "applied"
            out.append(f"{done} before the failure: {span(self.applied_before)}")
        return out

    def _state(self) -> str:
        """What the failure left: the truth for this direction and transaction mode."""
        v = self.version or "VERSION"
        lines = ("lines " if len(self.committed) > 1 else "line ") + ", ".join(map(str, self.committed))
        if self.direction == "down":
            if self.rolled_back:
                return "the failed rollback was rolled back; the migration is still applied"
            if not self.committed:
                return (
                    "nothing of this no-transaction rollback committed (its first statement "
                    "failed): the migration is still whole; it is recorded as `rolling_back`: "
                    f"`sqlmig repair --mark-applied {v}` returns it to `applied`"
                )
            return (
                f"this no-transaction rollback stopped part-way: its statements at {lines} "
                "committed; it is recorded as `rolling_back`: finish the rollback by "
                f"hand, then `sqlmig repair --remove {v}` (the migration is gone), or restore "
                f"what it undid, then `sqlmig repair --mark-applied {v}`"
            )
        if self.rolled_back:
            return "the failed migration was rolled back; nothing of it remains"
        if not self.committed:
            return (
                "nothing of this no-transaction migration committed (its first statement "
                "failed; a failed CREATE INDEX CONCURRENTLY can still leave an INVALID index: "
                "`sqlmig repair` lists them); it is recorded as `failed`: fix the cause, then "
                f"`sqlmig repair --remove {v}` and `sqlmig up` again"
            )
        return (
            f"this no-transaction migration stopped part-way: its statements at {lines} "
            f"committed; it is recorded as `failed`: finish it by hand, then `sqlmig repair "
            f"--mark-applied {v}`, or undo them, then `sqlmig repair --remove {v}` and `sqlmig "
            "up` again"
        )


def span(names: Sequence[str], most: int = 3) -> str:
    """A list of names for one line: all of a few, else a count and the first and last."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{len(names)} migrations, {names[0]} … {names[-1]}"
