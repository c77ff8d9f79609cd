"""Run plan steps on a connection; map server errors to MigrationFailed at file:line:column."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from sqlmig.about import VERSION as __version__
from sqlmig.config import durations
from sqlmig.db.connect import Connection, reset_session
from sqlmig.db.history import History
from sqlmig.engine import timeouts
from sqlmig.errors import ConnectError, ConnectionLost, FileProblems, MigrationFailed
from sqlmig.files import checks as filechecks
from sqlmig.files import sqltext
from sqlmig.locking.guard import Unlocked
from sqlmig.models import Migration, PlanStep, Problem, RetryNotice, StepResult

if TYPE_CHECKING:
    from sqlmig.config.settings import Config
    from sqlmig.locking.guard import Guard

# Characters of SQL sent in a transaction's pipeline before its results are taken.
_SYNC_EVERY = 4 << 20
# A statement longer than this is never sent in pipeline mode: psycopg (3.3, C implementation)
# can hang for good in a pipeline's sync after one long query (seen from ~0.9 MB on, 1 try in
# 30 at 1 MB, every time at 5 MB; never in 300 tries of 64 KB to 0.5 MB). Sent on its own, its
# round trip costs nothing beside its size.
_PIPELINE_MAX = 64 << 10
# At most this many steps, and about this much SQL, run back to back in one batch (Executor.
# _batch): results, and so progress lines, come once per batch.
_BATCH_STEPS = 50
_BATCH_CHARS = 1 << 20
# Group commit (the `group_commit` setting): every step of a batch but the last commits without
# waiting for its WAL flush; the last one's COMMIT, at the session's own synchronous_commit,
# flushes (and, with synchronous replication, waits for) the WAL of all before it, since WAL is
# one sequence. No result of a batch is taken before that COMMIT returns, so no step is reported
# applied before it is durable; a server crash mid-batch can only undo whole steps that were never
# reported, each with its history row. 1,000 small migrations: ~0.3 s of 1.2 s on this machine.
_NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"


def prepare(
    step: PlanStep, parsed: Mapping[str, Any] | None = None
) -> tuple[list[sqltext.Statement], list[Problem], list[str], str | None]:
    """Split a step's SQL and check it can run as the file asks (filechecks: the same checks
    files.load made). Returns statements, problems, notes, and the canonical checksum if the
    same parse gave it (see sqltext.split). `parsed`: MigrationSet.parsed, whose check of the
    very same text is taken instead of parsing it again (a 50 MB file: ~1.2 s)."""
    up = step.direction == "up"
    checked = (
        filechecks.reuse(parsed, step.path, step.sql, transactional=step.transactional, canonical=up)
        if parsed
        else None
    ) or filechecks.check(
        step.path, step.sql, transactional=step.transactional, rollback=not up, canonical=up
    )
    return (list(checked.statements), list(checked.problems), list(checked.notes), checked.canonical)


def check_all(
    steps: list[PlanStep], parsed: Mapping[str, Any] | None = None
) -> tuple[dict[int, list[sqltext.Statement]], list[str], dict[str, str | None]]:
    """Prepare every step before running any, so a bad file stops the run before it starts.
    Returns the statements by step index, notes, and canonical checksums by version (for
    record_fields: each file is parsed once, not again for its checksum)."""
    prepared: dict[int, list[sqltext.Statement]] = {}
    canonical: dict[str, str | None] = {}
    problems: list[Problem] = []
    notes: list[str] = []
    for i, step in enumerate(steps):
        stmts, step_problems, step_notes, step_canonical = prepare(step, parsed)
        prepared[i] = stmts
        if step_canonical is not None:
            canonical[step.version] = step_canonical
        problems.extend(step_problems)
        notes.extend(step_notes)
    if problems:
        raise FileProblems(problems)
    return prepared, notes, canonical


def record_fields(
    mig: Migration,
    *,
    status: str,
    baseline: bool = False,
    execution_ms: int | None = None,
    canonical: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """A history row's values. `canonical`: canonical checksums already taken, by version."""
    version = str(mig.version)

    return {
        "version": version,
        "number": mig.number,
        "name": mig.name,
        "description": mig.description,
        "checksum": mig.checksum,
        "rollback_checksum": mig.rollback.checksum,
        "execution_ms": execution_ms,
        "status": status,
        "transactional": mig.transactional,
        "baseline": baseline,
        "sqlmig_version": __version__,
        # Stored so that a later edit can be told apart: formatting only, or the SQL itself.
        "canonical_checksum": canonical[version]
        if canonical and version in canonical
        else sqltext.canonical_checksum(mig.text),
    }


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
        # Steps `apply` will be asked for next (see lookahead), and what came of those that
        # already ran in a batch: a StepResult, or the error of their first try.
        self._ahead: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]] = []
        self._outcomes: dict[str, StepResult | MigrationFailed | ConnectError] = {}  # by version

    def lookahead(self, items: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]]) -> None:
        """Tell `apply` (or `revert`: steps of direction down, Migration None) which steps it
        will be asked for, in order, so that it can run transactional ones back to back in one
        pipeline (see _batch): the server then never waits for sqlmig between them. Each call
        still returns its own step's result, or raises its error, in order; steps after a
        failure are never run."""
        self._ahead = list(items)

    def apply(self, step: PlanStep, mig: Migration, stmts: list[sqltext.Statement]) -> StepResult:
        outcome = self._batched(step)
        if isinstance(outcome, StepResult):
            return outcome
        if isinstance(outcome, ConnectError):
            raise outcome
        start = time.perf_counter()

        def once(body: list[sqltext.Statement]) -> None:
            if step.transactional:
                self._in_transaction(step, body, [self._applied(step, mig)])
            else:
                with self._leased(step):
                    self._autocommit(
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

        self._attempts(step, stmts, once, first_failure=outcome)
        return self._result(step, start, stmts)

    def revert(self, step: PlanStep, stmts: list[sqltext.Statement]) -> StepResult:
        outcome = self._batched(step)
        if isinstance(outcome, StepResult):
            return outcome
        if isinstance(outcome, ConnectError):
            raise outcome
        start = time.perf_counter()

        def once(body: list[sqltext.Statement]) -> None:
            done = [
                self.history.together(
                    self.history.delete(step.version),
                    self.history.event("down", "reverted", version=step.version, name=step.name),
                )
            ]
            if step.transactional:
                self._in_transaction(step, body, done)
            else:
                with self._leased(step):
                    self._autocommit(
                        step, body, before=self.history.set_status(step.version, "rolling_back"), after=done
                    )

        self._attempts(step, stmts, once, first_failure=outcome)
        return self._result(step, start, stmts)

    # -- internals ----------------------------------------------------------------------------

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
        the first try, run in a batch (see _batch), failed."""
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

    def _result(
        self, step: PlanStep, start: float, stmts: list, duration_ms: int | None = None
    ) -> StepResult:
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

    def _batched(self, step: PlanStep) -> StepResult | MigrationFailed | ConnectError | None:
        """What came of `step` in a batch, running one if `step` is next and the steps from it
        can go back to back (transactional, in session lock mode); None: it runs on its own."""
        ahead = self._ahead
        if step.version not in self._outcomes and ahead and ahead[0][0] is step:
            n = size = 0
            # A large file runs on its own, sent in parts (see _in_transaction).
            while (
                n < len(ahead)
                and n < _BATCH_STEPS
                and size + len(ahead[n][0].sql) <= _BATCH_CHARS
                and not self.pooled
                and ahead[n][0].transactional
                and all(st.size <= _PIPELINE_MAX for st in ahead[n][2])
            ):
                size += len(ahead[n][0].sql)
                n += 1
            if n > 1:
                batch, self._ahead = ahead[:n], ahead[n:]
                self._batch(batch)
        if self._ahead and self._ahead[0][0] is step:
            self._ahead.pop(0)  # it runs on its own
        return self._outcomes.pop(step.version, None)

    def _bookkeeping(self, step: PlanStep, mig: Migration | None) -> tuple[Any, dict]:
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

    def _batch(self, items: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]]) -> None:
        """Run transactional steps back to back in one pipeline, each in its own transaction
        with its history row, as `apply` does one by one, but without waiting for each one's
        results before sending the next: sqlmig prepares and sends step k+1 while the server
        runs step k. One sync for all: after an error the server skips everything else in the
        pipeline (libpq's pipeline mode), so no later step runs, and an earlier one has
        committed exactly when its COMMIT succeeded. Fills _outcomes; the steps after a failure
        go back to _ahead."""
        sent: list[_Sent] = []
        failure: psycopg.Error | None = None
        grouped = self.config is not None and self.config.group_commit == "on"
        try:
            with self.conn.pipeline():
                for n, (step, mig, stmts) in enumerate(items):
                    one = _Sent(self.conn, step, stmts, [*timeouts.set_statements(step, self.config), *stmts])
                    sent.append(one)
                    one.begin.execute("BEGIN")
                    if grouped and n + 1 < len(items):
                        one.setup.append(self.conn.cursor())
                        one.setup[0].execute(_NO_FLUSH_WAIT)
                    for st in one.body:
                        cur = self.conn.cursor()
                        one.cursors.append(cur)
                        cur.execute(st.text, prepare=False)  # type: ignore[arg-type]
                    one.row.execute(*self._bookkeeping(step, mig), prepare=False)
                    one.commit.execute("COMMIT")
                    reset_session(self.conn)  # as in _in_transaction
        except psycopg.Error as exc:
            failure = exc
        for n, one in enumerate(sent):
            # Done: all of it worked, and its session reset too (else the next BEGIN failed).
            reset = _ok(sent[n + 1].begin) if n + 1 < len(sent) else failure is None
            if one.done() and reset:
                row = one.row.fetchone()
                self._outcomes[one.step.version] = self._result(
                    one.step, 0.0, one.stmts, duration_ms=(row[0] if row else None) or 0
                )
                continue
            assert failure is not None
            self._rollback()
            failed = next((i for i, c in enumerate(one.cursors) if not _ok(c)), None)
            error = self._failure(one.step, one.body, failed, failure, rolled_back=True)
            if grouped and n and isinstance(error, ConnectError):
                # Report none of the steps before it as applied: see _unconfirmed.
                for done in sent[:n]:
                    del self._outcomes[done.step.version]
                error = _unconfirmed(error, [done.step.name for done in sent[:n]])
                one, n = sent[0], 0
            self._log_failure(one.step, error)  # its synchronous commit flushes those before
            self._outcomes[one.step.version] = error
            self._ahead[:0] = items[n + 1 :]
            return

    def _in_transaction(
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
            failed = next((i for i, c in sent if c is None or not _ok(c)), None)
            self._rollback()
            error = self._failure(step, stmts, failed, exc, rolled_back=True)
            self._log_failure(step, error)
            raise error from exc

    def _autocommit(
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
            raise self._failure(step, stmts, None, exc, rolled_back=True) from exc
        for i, st in enumerate(stmts):
            try:
                self.conn.execute(st.text, prepare=False)  # type: ignore[arg-type]
            except psycopg.Error as exc:
                error = self._failure(step, stmts, i, exc, rolled_back=False)
                # The row keeps the error: `status` and `repair` show what stopped it.
                status = "failed" if step.direction == "up" else "rolling_back"
                if isinstance(error, MigrationFailed):
                    self._log_failure(step, error, self.history.finish(step.version, status, error.message))
                else:
                    self._log_failure(step, error)
                raise error from exc
        try:
            with self.conn.transaction():
                for query, params in after:
                    self.conn.execute(query, params)
            reset_session(self.conn)
        except psycopg.Error as exc:
            raise self._failure(step, stmts, None, exc, rolled_back=False) from exc

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

    def _leased(self, step: PlanStep) -> contextlib.AbstractContextManager[None]:
        """The lease around a no-transaction step (--lock-mode transaction), else nothing."""
        return self.guard.leased(step)

    def _log_failure(self, step: PlanStep, error: Exception, *extra: tuple[Any, dict]) -> None:
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

    def _rollback(self) -> None:
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def _failure(
        self,
        step: PlanStep,
        stmts: list[sqltext.Statement],
        failed: int | None,
        exc: psycopg.Error,
        *,
        rolled_back: bool,
    ) -> MigrationFailed | ConnectError:
        if isinstance(exc, psycopg.OperationalError) and (self.conn.closed or self.conn.broken):
            state = (
                "the server rolls back the open transaction; the next run retries it"
                if rolled_back
                else "this no-transaction step stays in state `started`: check the database, "
                "then `sqlmig repair`"
            )
            return ConnectionLost(
                f"{step.path}: connection lost while running {step.name}: {str(exc).strip()}",
                reason=" ".join(str(exc).split()),
                hint=state,
            )
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
        committed: list[int] = []
        if not rolled_back and failed is not None:
            index = sqltext.LineIndex(step.sql)
            # The file's statements before the failed one (not the SETs of its timeouts).
            committed = [
                index.position(st.start)[0]
                for st in stmts[:failed]
                if step.sql[st.start : st.start + st.size] == st.text
            ]
        return MigrationFailed(
            path=step.path,
            line=line,
            column=column,
            sqlstate=diag.sqlstate,
            server_message=diag.message_primary or str(exc).strip(),
            detail=detail,
            server_hint=diag.message_hint,
            rolled_back=rolled_back,
            direction=step.direction,
            version=step.version,
            committed=committed,
        )


def _parts(stmts: list[sqltext.Statement]) -> list[tuple[bool, int, int]]:
    """How a transaction's statements are sent: (alone, first, end) ranges. Runs of short
    statements go in pipelines, a new one after every _SYNC_EVERY characters so that what was
    sent is not all kept until the end (a 50 MB data file would be held twice more); a statement
    over _PIPELINE_MAX goes alone, outside pipeline mode. The first and last parts are always
    pipelines (maybe empty): the first sends BEGIN, the last the history row and COMMIT."""
    parts: list[tuple[bool, int, int]] = []
    lo = pending = 0
    for i, st in enumerate(stmts):
        if st.size > _PIPELINE_MAX:
            parts += [(False, lo, i), (True, i, i + 1)]
            lo, pending = i + 1, 0
            continue
        pending += st.size
        if pending > _SYNC_EVERY:
            parts.append((False, lo, i + 1))
            lo, pending = i + 1, 0
    parts.append((False, lo, len(stmts)))
    return parts


def _unconfirmed(error: ConnectError, names: list[str]) -> ConnectError:
    """A lost connection mid-group (see _NO_FLUSH_WAIT): the steps before it committed, but
    no commit has yet waited for their flush, so a server that crashed may have lost them."""
    listed = names[0] if len(names) == 1 else f"{len(names)} migrations ({names[0]} … {names[-1]})"
    were = "was" if len(names) == 1 else "were"
    return ConnectionLost(
        error.message,
        reason=getattr(error, "reason", error.message),
        hint=(
            f"{error.hint}; {listed}, sent before it in the same group, had committed but {were} "
            "not yet confirmed on disk: `sqlmig status` shows what is applied (all of them, unless "
            "the server crashed)"
        ),
    )


class _Sent:
    """A step of a batch, with the cursors of what was sent for it."""

    def __init__(
        self,
        conn: psycopg.Connection,
        step: PlanStep,
        stmts: list[sqltext.Statement],
        body: list[sqltext.Statement],
    ) -> None:
        self.step = step
        self.stmts = stmts  # the file's statements
        self.body = body  # what runs: the step's SET LOCAL timeouts, then the file's statements
        self.begin = conn.cursor()
        self.setup: list[psycopg.Cursor] = []  # what runs between BEGIN and the body
        self.cursors: list[psycopg.Cursor] = []
        self.row = conn.cursor()  # the history row, RETURNING its execution_ms
        self.commit = conn.cursor()

    def done(self) -> bool:
        return all(_ok(c) for c in (self.begin, *self.setup, *self.cursors, self.row, self.commit))


def _ok(cursor: psycopg.Cursor) -> bool:
    """Whether a statement sent in a pipeline succeeded: psycopg keeps no result for one that
    failed or was skipped after a failure."""
    return cursor.pgresult is not None and cursor.pgresult.status != pq.ExecStatus.FATAL_ERROR
