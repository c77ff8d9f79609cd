"""Run plan steps on a connection; map server errors to MigrationFailed at file:line:column."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from sqlmig.config import durations
from sqlmig.db.connect import Connection, reset_session
from sqlmig.db.history import History
from sqlmig.engine import timeouts
from sqlmig.engine.batch import PIPELINE_MAX, BackToBack
from sqlmig.engine.failure import server_failure, statement_ok
from sqlmig.engine.prepare import record_fields
from sqlmig.errors import ConnectError, MigrationFailed
from sqlmig.files import sqltext
from sqlmig.locking.guard import Unlocked
from sqlmig.models import Migration, PlanStep, RetryNotice, StepResult

if TYPE_CHECKING:
    from sqlmig.config.settings import Config
    from sqlmig.locking.guard import Guard

# Characters of SQL sent in a transaction's pipeline before its results are taken.
_SYNC_EVERY = 4 << 20


class Executor:
    def __init__(
        self,
        conn: Connection,
        history: History,
        config: Config | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
        guard: Guard | None = None,
        canonical: Mapping[str, str | None] | None = None,
    ) -> None:
        self.conn = conn
        self.history = history
        self.canonical = canonical  # checksums check_all already took, by version
        self.config = config  # timeouts and retries (sqlmig.engine.timeouts); None = neither
        self.on_retry = on_retry
        # The migration lock (sqlmig.locking.guard). A pooled one (--lock-mode transaction)
        # opens each step's transaction itself (lock, history re-read) and a no-transaction step
        # runs under its lease; under the session lock (or none) the executor sends BEGIN and
        # may send steps back to back.
        self.guard: Guard = guard if guard is not None else Unlocked()
        self.pooled = self.guard.pooled
        self._batch: BackToBack | None = None  # see lookahead

    def lookahead(self, items: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]]) -> None:
        """Tell `apply` (or `revert`: steps of direction down, Migration None) which steps it
        will be asked for, in order, so that it can run transactional ones back to back in one
        pipeline (sqlmig.engine.batch): the server then never waits for sqlmig between them.
        Each call still returns its own step's result, or raises its error, in order; steps
        after a failure are never run."""
        self._batch = BackToBack(self, items)

    def apply(self, step: PlanStep, mig: Migration, stmts: list[sqltext.Statement]) -> StepResult:
        def once(body: list[sqltext.Statement]) -> None:
            if step.transactional:
                self.in_transaction(step, body, [self._applied(step, mig)])
            else:
                with self.guard.leased(step):
                    self.autocommit(
                        step,
                        body,
                        before=self.history.insert(
                            record_fields(mig, status="started", canonical=self.canonical), mig.rollback.text
                        ),
                        after=[
                            self.history.finish(step.version, "applied", None),
                            self.history.event("up", "applied", version=step.version, name=step.name),
                        ],
                    )

        return self._step(step, stmts, once)

    def revert(self, step: PlanStep, stmts: list[sqltext.Statement]) -> StepResult:
        def once(body: list[sqltext.Statement]) -> None:
            done = [
                self.history.together(
                    self.history.delete(step.version),
                    self.history.event("down", "reverted", version=step.version, name=step.name),
                )
            ]
            if step.transactional:
                self.in_transaction(step, body, done)
            else:
                with self.guard.leased(step):
                    self.autocommit(
                        step, body, before=self.history.set_status(step.version, "rolling_back"), after=done
                    )

        return self._step(step, stmts, once)

    def _step(
        self, step: PlanStep, stmts: list[sqltext.Statement], once: Callable[[list[sqltext.Statement]], None]
    ) -> StepResult:
        """What came of `step` in a batch (sqlmig.engine.batch), else `once` run under its
        timeouts and retries."""
        outcome = self._batch.outcome(step) if self._batch is not None else None
        if isinstance(outcome, StepResult):
            return outcome
        if isinstance(outcome, ConnectError):
            raise outcome
        start = time.perf_counter()
        self._attempts(step, stmts, once, first_failure=outcome)
        return self.result(step, start, stmts)

    def _attempts(
        self,
        step: PlanStep,
        stmts: list[sqltext.Statement],
        once: Callable[[list[sqltext.Statement]], None],
        first_failure: MigrationFailed | None = None,
    ) -> None:
        """Run a step behind its SET [LOCAL] lock_timeout/statement_timeout. A transactional step
        rolled back by a lock timeout or a deadlock runs again from the start, after a pause
        that doubles, at most `retries` times. A no-transaction step is never run again: its
        statements commit one by one, and a CREATE INDEX CONCURRENTLY that timed out may have
        left an invalid index, so it stays `failed` for `sqlmig repair`. `first_failure`: how
        the first try, run in a batch (sqlmig.engine.batch), failed."""
        body = [*timeouts.set_statements(step, self.config), *stmts]
        retries = self.config.retries if self.config is not None else 0
        attempt = 1
        while True:
            try:
                if first_failure is not None:
                    failed, first_failure = first_failure, None
                    raise failed
                once(body)
                return
            except MigrationFailed as exc:
                if not (
                    step.transactional
                    and exc.rolled_back
                    and attempt <= retries
                    and exc.sqlstate in timeouts.RETRYABLE
                ):
                    exc.attempts = attempt
                    raise
                assert self.config is not None
                notice = RetryNotice(
                    direction=step.direction,
                    name=step.name,
                    version=step.version,
                    attempt=attempt,
                    attempts=retries + 1,
                    sqlstate=exc.sqlstate,
                    error=exc.message,
                    delay=durations.retry_delay(self.config.retry_delay, attempt),
                )
            self._log_retry(step, notice)
            if self.on_retry:
                self.on_retry(notice)
            time.sleep(notice.delay)
            attempt += 1

    def _log_retry(self, step: PlanStep, notice: RetryNotice) -> None:
        cause = timeouts.RETRYABLE.get(notice.sqlstate or "", notice.sqlstate)
        detail = (
            f"try {notice.attempt} of {notice.attempts} rolled back by a {cause}; "
            f"next try in {notice.delay:g} s: {notice.error}"
        )
        with contextlib.suppress(psycopg.Error):
            self.conn.execute(
                *self.history.event(
                    step.direction, "retrying", version=step.version, name=step.name, detail=detail
                )
            )

    def result(self, step: PlanStep, start: float, stmts: list, duration_ms: int | None = None) -> StepResult:
        warnings = list(step.warnings)
        if not stmts:
            done = "applied" if step.direction == "up" else "rolled back"
            warnings.append(f"{step.path}: warning: has no SQL statements; {done} as a no-op")
        if duration_ms is None:
            duration_ms = round((time.perf_counter() - start) * 1000)
        return StepResult(
            direction=step.direction,
            number=step.number,
            version=step.version,
            name=step.name,
            duration_ms=duration_ms,
            warnings=tuple(warnings),
        )

    def bookkeeping(self, step: PlanStep, mig: Migration | None) -> tuple[Any, dict]:
        """A step's history change and event as one statement returning its server time in ms:
        the applied row (up), or the row's removal (down)."""
        if step.direction == "up":
            assert mig is not None
            return self._applied(step, mig, returning="execution_ms")
        return self.history.together(
            self.history.delete(step.version),
            self.history.event("down", "reverted", version=step.version, name=step.name),
            elapsed=True,
        )

    def in_transaction(
        self, step: PlanStep, stmts: list[sqltext.Statement], bookkeeping: list[tuple[Any, dict]]
    ) -> None:
        """Body, history row and COMMIT in one pipeline: one round trip per migration. A large
        body goes in parts (see _parts), still in the one transaction."""
        guard = self.guard
        if self.pooled:
            guard.begin(step)  # BEGIN, the lock, the history re-read; raises Skipped if done
        parts = _parts(stmts)
        sent: list[tuple[int, psycopg.Cursor | None]] = []  # of the current part, by index
        try:
            for n, (alone, lo, hi) in enumerate(parts):
                sent = []
                if alone:
                    sent.append((lo, None))
                    self.conn.execute(stmts[lo].text, prepare=False)  # type: ignore[arg-type]
                    continue
                with self.conn.pipeline():
                    if n == 0 and not self.pooled:
                        self.conn.execute("BEGIN")
                    for i in range(lo, hi):
                        cur = self.conn.cursor()
                        sent.append((i, cur))
                        cur.execute(stmts[i].text, prepare=False)  # type: ignore[arg-type]
                    if n + 1 < len(parts):
                        continue
                    for query, params in bookkeeping:
                        self.conn.execute(query, params, prepare=False)
                    if self.pooled:
                        # Behind a transaction pooler, the file's own SET/SET ROLE would outlive
                        # it on a pooled server connection: undone before COMMIT, not after.
                        self.conn.execute("RESET ALL")
                        self.conn.execute("RESET ROLE")
                    self.conn.execute("COMMIT")
                    if not self.pooled:
                        # Each file starts from a clean session, as with one `psql -1 -f` per
                        # file: a plain SET in one migration must not leak into the next.
                        reset_session(self.conn)
        except psycopg.Error as exc:
            failed = next((i for i, c in sent if c is None or not statement_ok(c)), None)
            self.rollback()
            error = server_failure(self.conn, step, stmts, failed, exc, rolled_back=True)
            self.log_failure(step, error)
            raise error from exc

    def autocommit(
        self,
        step: PlanStep,
        stmts: list[sqltext.Statement],
        before: tuple[Any, dict],
        after: list[tuple[Any, dict]],
    ) -> None:
        """no-transaction: a visible `started` row first, so a crash is never silent."""
        try:
            self.conn.execute(*before)
        except psycopg.Error as exc:
            raise server_failure(self.conn, step, stmts, None, exc, rolled_back=True) from exc
        for i, st in enumerate(stmts):
            try:
                self.conn.execute(st.text, prepare=False)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                error = server_failure(self.conn, step, stmts, i, exc, rolled_back=False)
                # The row keeps the error: `status` and `repair` show what stopped it.
                status = "failed" if step.direction == "up" else "rolling_back"
                if isinstance(error, MigrationFailed):
                    self.log_failure(step, error, self.history.finish(step.version, status, error.message))
                else:
                    self.log_failure(step, error)
                raise error from exc
        try:
            with self.conn.transaction():
                for query, params in after:
                    self.conn.execute(query, params)
            reset_session(self.conn)
        except psycopg.Error as exc:
            raise server_failure(self.conn, step, stmts, None, exc, rolled_back=False) from exc

    def _applied(
        self, step: PlanStep, mig: Migration, returning: str | None = None
    ) -> tuple[sql.Composed, dict]:
        """The history row of an applied transactional migration and its event, one statement."""
        return self.history.together(
            self.history.insert(
                record_fields(mig, status="applied", canonical=self.canonical), mig.rollback.text
            ),
            self.history.event("up", "applied", version=step.version, name=step.name),
            returning=returning,
        )

    def log_failure(self, step: PlanStep, error: Exception, *extra: tuple[Any, dict]) -> None:
        if self.conn.closed or self.conn.broken:
            return  # nothing can be written; the next run reads the state left behind
        try:
            for query, params in extra:
                self.conn.execute(query, params)
            self.conn.execute(
                *self.history.event(
                    step.direction, "failed", version=step.version, name=step.name, detail=str(error)
                )
            )
        except psycopg.Error:
            pass  # the failure itself is what the user must see

    def rollback(self) -> None:
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")


def _parts(stmts: list[sqltext.Statement]) -> list[tuple[bool, int, int]]:
    """How a transaction's statements are sent: (alone, first, end) ranges. Runs of short
    statements go in pipelines, a new one after every _SYNC_EVERY characters so that what was
    sent is not all kept until the end (a 50 MB data file would be held twice more); a statement
    over PIPELINE_MAX goes alone, outside pipeline mode. The first and last parts are always
    pipelines (maybe empty): the first sends BEGIN, the last the history row and COMMIT."""
    parts: list[tuple[bool, int, int]] = []
    lo = pending = 0
    for i, st in enumerate(stmts):
        if st.size > PIPELINE_MAX:
            parts += [(False, lo, i), (True, i, i + 1)]
            lo, pending = i + 1, 0
            continue
        pending += st.size
        if pending > _SYNC_EVERY:
            parts.append((False, lo, i + 1))
            lo, pending = i + 1, 0
    parts.append((False, lo, len(stmts)))
    return parts
