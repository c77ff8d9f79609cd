"""Run plan steps on a connection; map server errors to MigrationFailed at file:line:column."""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
from psycopg import pq

from sqlmig import sqltext
from sqlmig.connect import session_defaults
from sqlmig.errors import ConnectError, FileProblems, MigrationFailed
from sqlmig.history import History
from sqlmig.models import Migration, PlanStep, Problem, StepResult

_ALLOWED_IN_TRANSACTION = {"SAVEPOINT", "RELEASE", "ROLLBACK_TO"}
_COPY_FROM_STDIN = re.compile(r"COPY\b[^;]*?\bFROM\s+STDIN\b", re.IGNORECASE)


def prepare(step: PlanStep) -> tuple[list[sqltext.Statement], list[Problem], list[str]]:
    """Split a step's SQL and check it can run as the file asks. Returns statements, problems, notes."""
    result = sqltext.split(step.sql)
    stmts = list(result.statements)
    notes: list[str] = []
    if not result.parsed:
        notes.append(f"{step.path}: pglast could not parse the file ({result.parse_error}); "
                     "split it with the fallback lexer and left the SQL to the server")
    problems: list[Problem] = []
    index = sqltext.LineIndex(step.sql)
    for meta in result.meta_commands:
        verdict = _meta_verdict(meta)
        if verdict is not None:
            problems.append(Problem(path=step.path, line=index.position(meta.start)[0],
                                    code="psql-meta-command", message=verdict))
    # The hand-written style wraps the whole file in BEGIN; … COMMIT; the engine adds its own.
    if (len(stmts) >= 2 and stmts[0].transaction_control in ("BEGIN", "START")
            and stmts[-1].transaction_control == "COMMIT"):
        stmts = stmts[1:-1]
    for st in stmts:
        line, _ = index.position(st.start)
        if st.transaction_control and (
            not step.transactional or st.transaction_control not in _ALLOWED_IN_TRANSACTION
        ):
            problems.append(Problem(
                path=step.path, line=line, code="transaction-control",
                message=f"{st.transaction_control} inside a migration: sqlmig runs each file in its "
                        "own transaction; remove it (a whole-file BEGIN; … COMMIT; wrapper is fine)",
            ))
        elif _COPY_FROM_STDIN.match(st.text):
            problems.append(Problem(
                path=step.path, line=line, code="copy-from-stdin",
                message="COPY … FROM stdin with inline data is psql syntax, not SQL; load the "
                        "data with INSERT … VALUES, or COPY from a server-side file",
            ))
        elif st.needs_autocommit and step.transactional:
            problems.append(Problem(
                path=step.path, line=line, code="needs-no-transaction",
                message=f"{st.needs_autocommit} cannot run inside a transaction; put it in its own "
                        "file marked `-- sqlmig: no-transaction`",
            ))
    return stmts, problems, notes


_HARMLESS_META = {"\\echo", "\\qecho", "\\warn", "\\timing", "\\pset", "\\encoding"}
_ON = {"on", "1", "true", "yes", ""}


def _meta_verdict(meta: sqltext.MetaCommand) -> str | None:
    """None when a psql meta-command is harmless to skip; else why it cannot be run."""
    words = meta.text.split()
    if meta.name in _HARMLESS_META or meta.name == "\\.":
        return None  # `\.` ends COPY data, and COPY … FROM stdin is refused on its own line
    if meta.name == "\\set" and len(words) >= 2 and words[1] == "ON_ERROR_STOP":
        if (words[2] if len(words) > 2 else "").lower() in _ON:
            return None  # sqlmig always stops at the first error
        return ("`\\set ON_ERROR_STOP off` asks psql to continue after errors; sqlmig always "
                "stops at the first error and rolls the migration back: remove the line")
    return (f"psql meta-command `{meta.text[:60]}` is not SQL and sqlmig does not run psql: "
            "only `\\set ON_ERROR_STOP on` and `\\echo` are accepted (and skipped); inline an "
            "included file's SQL, or make it its own migration")


def check_all(steps: list[PlanStep]) -> tuple[dict[int, list[sqltext.Statement]], list[str]]:
    """Prepare every step before running any, so a bad file stops the run before it starts."""
    prepared: dict[int, list[sqltext.Statement]] = {}
    problems: list[Problem] = []
    notes: list[str] = []
    for i, step in enumerate(steps):
        stmts, step_problems, step_notes = prepare(step)
        prepared[i] = stmts
        problems.extend(step_problems)
        notes.extend(step_notes)
    if problems:
        raise FileProblems(problems)
    return prepared, notes


def record_fields(mig: Migration, *, status: str, baseline: bool = False,
                  execution_ms: int | None = None) -> dict[str, Any]:
    from sqlmig import __version__

    return {
        "version": str(mig.version), "number": mig.number, "name": mig.name,
        "description": mig.description, "checksum": mig.checksum,
        "rollback_checksum": mig.rollback.checksum, "execution_ms": execution_ms,
        "status": status, "transactional": mig.transactional, "baseline": baseline,
        "sqlmig_version": __version__,
        # Stored so that a later edit can be told apart: formatting only, or the SQL itself.
        "canonical_checksum": sqltext.canonical_checksum(mig.text),
    }


class Executor:
    def __init__(self, conn: psycopg.Connection, history: History) -> None:
        self.conn = conn
        self.history = history

    def apply(self, step: PlanStep, mig: Migration, stmts: list[sqltext.Statement]) -> StepResult:
        start = time.perf_counter()
        if step.transactional:
            self._in_transaction(step, stmts, [
                self.history.insert(record_fields(mig, status="applied"), mig.rollback.text),
                self.history.event("up", "applied", version=step.version, name=step.name),
            ])
        else:
            self._autocommit(step, stmts,
                             before=self.history.insert(record_fields(mig, status="started"),
                                                        mig.rollback.text),
                             after=[self.history.finish(step.version, "applied", None),
                                    self.history.event("up", "applied", version=step.version,
                                                       name=step.name)])
        return self._result(step, start, stmts)

    def revert(self, step: PlanStep, stmts: list[sqltext.Statement]) -> StepResult:
        start = time.perf_counter()
        done = [self.history.delete(step.version),
                self.history.event("down", "reverted", version=step.version, name=step.name)]
        if step.transactional:
            self._in_transaction(step, stmts, done)
        else:
            self._autocommit(step, stmts, before=self.history.set_status(step.version,
                                                                         "rolling_back"),
                             after=done)
        return self._result(step, start, stmts)

    # -- internals ----------------------------------------------------------------------------

    def _result(self, step: PlanStep, start: float, stmts: list) -> StepResult:
        warnings = list(step.warnings)
        if not stmts:
            done = "applied" if step.direction == "up" else "rolled back"
            warnings.append(f"{step.path}: warning: has no SQL statements; {done} as a no-op")
        return StepResult(direction=step.direction, number=step.number, version=step.version,
                          name=step.name, duration_ms=round((time.perf_counter() - start) * 1000),
                          warnings=tuple(warnings))

    def _in_transaction(self, step: PlanStep, stmts: list[sqltext.Statement],
                        bookkeeping: list[tuple[Any, dict]]) -> None:
        """Body, history row and COMMIT in one pipeline: one round trip per migration."""
        cursors: list[psycopg.Cursor] = []
        try:
            with self.conn.pipeline():
                self.conn.execute("BEGIN")
                for st in stmts:
                    cur = self.conn.cursor()
                    cursors.append(cur)
                    cur.execute(st.text, prepare=False)  # type: ignore[arg-type]
                for query, params in bookkeeping:
                    self.conn.execute(query, params, prepare=False)
                self.conn.execute("COMMIT")
                # Each file starts from a clean session, as with one `psql -1 -f` per file: a
                # plain SET in one migration must not leak into the next.
                self.conn.execute("RESET ALL")
                session_defaults(self.conn)
        except psycopg.Error as exc:
            failed = next((i for i, c in enumerate(cursors)
                           if c.pgresult is None or c.pgresult.status == pq.ExecStatus.FATAL_ERROR),
                          None)
            self._rollback()
            error = self._failure(step, stmts, failed, exc, rolled_back=True)
            self._log_failure(step, error)
            raise error from exc

    def _autocommit(self, step: PlanStep, stmts: list[sqltext.Statement],
                    before: tuple[Any, dict], after: list[tuple[Any, dict]]) -> None:
        """no-transaction: a visible `started` row first, so a crash is never silent."""
        try:
            self.conn.execute(*before)
        except psycopg.Error as exc:
            raise self._failure(step, stmts, None, exc, rolled_back=True) from exc
        for i, st in enumerate(stmts):
            try:
                self.conn.execute(st.text, prepare=False)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                error = self._failure(step, stmts, i, exc, rolled_back=False)
                if step.direction == "up":
                    self._log_failure(step, error, self.history.finish(step.version, "failed",
                                                                       error.message))
                else:
                    self._log_failure(step, error)
                raise error from exc
        try:
            with self.conn.transaction():
                for query, params in after:
                    self.conn.execute(query, params)
            self.conn.execute("RESET ALL")
            session_defaults(self.conn)
        except psycopg.Error as exc:
            raise self._failure(step, stmts, None, exc, rolled_back=False) from exc

    def _log_failure(self, step: PlanStep, error: Exception, *extra: tuple[Any, dict]) -> None:
        if self.conn.closed or self.conn.broken:
            return  # nothing can be written; the next run reads the state left behind
        try:
            for query, params in extra:
                self.conn.execute(query, params)
            self.conn.execute(*self.history.event(step.direction, "failed", version=step.version,
                                                  name=step.name, detail=str(error)))
        except psycopg.Error:
            pass  # the failure itself is what the user must see

    def _rollback(self) -> None:
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def _failure(self, step: PlanStep, stmts: list[sqltext.Statement], failed: int | None,
                 exc: psycopg.Error, *, rolled_back: bool) -> MigrationFailed | ConnectError:
        if isinstance(exc, psycopg.OperationalError) and (self.conn.closed or self.conn.broken):
            state = ("the server rolls back the open transaction; the next run retries it"
                     if rolled_back else
                     "this no-transaction step stays in state `started`: check the database, "
                     "then `sqlmig repair`")
            return ConnectError(f"{step.path}: connection lost while running {step.name}: "
                                f"{str(exc).strip()}", hint=state)
        diag = exc.diag
        line = column = None
        if failed is not None and failed < len(stmts):
            index = sqltext.LineIndex(step.sql)
            st = stmts[failed]
            offset = st.start
            if diag.statement_position:
                offset += int(diag.statement_position) - 1
            line, column = index.position(offset)
        detail = diag.message_detail
        if diag.context:
            detail = f"{detail}; " if detail else ""
            detail += "CONTEXT: " + diag.context.strip().replace("\n", "; ")
        return MigrationFailed(
            path=step.path, line=line, column=column, sqlstate=diag.sqlstate,
            server_message=diag.message_primary or str(exc).strip(),
            detail=detail, server_hint=diag.message_hint, rolled_back=rolled_back,
        )
