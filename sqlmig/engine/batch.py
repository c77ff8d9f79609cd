"""Back to back: transactional steps sent in one pipeline without waiting for each one's results
(up and down's default under the session lock)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from sqlmig.db.connect import reset_session
from sqlmig.engine import timeouts
from sqlmig.engine.failure import server_failure, statement_ok, unconfirmed
from sqlmig.errors import ConnectError, MigrationFailed
from sqlmig.files import sqltext
from sqlmig.models import Migration, PlanStep, StepResult

if TYPE_CHECKING:
    from sqlmig.engine.execute import Executor

# A statement longer than this is never sent in pipeline mode: psycopg (3.3, C implementation)
# can hang for good in a pipeline's sync after one long query (seen from ~0.9 MB on, 1 try in
# 30 at 1 MB, every time at 5 MB; never in 300 tries of 64 KB to 0.5 MB). Sent on its own, its
# round trip costs nothing beside its size.
PIPELINE_MAX = 64 << 10
# At most this many steps, and about this much SQL, run back to back in one batch: results,
# and so progress lines, come once per batch.
_BATCH_STEPS = 50
_BATCH_CHARS = 1 << 20
# Group commit (the `group_commit` setting): every step of a batch but the last commits without
# waiting for its WAL flush; the last one's COMMIT, at the session's own synchronous_commit,
# flushes (and, with synchronous replication, waits for) the WAL of all before it, since WAL is
# one sequence. No result of a batch is taken before that COMMIT returns, so no step is reported
# applied before it is durable; a server crash mid-batch can only undo whole steps that were never
# reported, each with its history row. 1,000 small migrations: ~0.3 s of 1.2 s on this machine.
_NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"


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
        return all(statement_ok(c) for c in (self.begin, *self.setup, *self.cursors, self.row, self.commit))


class BackToBack:
    """The steps `apply`/`revert` will be asked for, in order, and what came of those that
    already ran in a batch (a StepResult, or the error of their first try), by version."""

    def __init__(
        self, executor: Executor, items: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]]
    ) -> None:
        self.ex = executor
        self.conn = executor.conn
        self.ahead = list(items)
        self.outcomes: dict[str, StepResult | MigrationFailed | ConnectError] = {}

    def outcome(self, step: PlanStep) -> StepResult | MigrationFailed | ConnectError | None:
        """What came of `step` in a batch, running one if `step` is next and the steps from it
        can go back to back (transactional, in session lock mode); None: it runs on its own."""
        ahead = self.ahead
        if step.version not in self.outcomes and ahead and ahead[0][0] is step:
            n = size = 0
            # A large file runs on its own, sent in parts (see Executor.in_transaction).
            while (
                n < len(ahead)
                and n < _BATCH_STEPS
                and size + len(ahead[n][0].sql) <= _BATCH_CHARS
                and not self.ex.pooled
                and ahead[n][0].transactional
                and all(st.size <= PIPELINE_MAX for st in ahead[n][2])
            ):
                size += len(ahead[n][0].sql)
                n += 1
            if n > 1:
                batch, self.ahead = ahead[:n], ahead[n:]
                self._run(batch)
        if self.ahead and self.ahead[0][0] is step:
            self.ahead.pop(0)  # it runs on its own
        return self.outcomes.pop(step.version, None)

    def _run(self, items: list[tuple[PlanStep, Migration | None, list[sqltext.Statement]]]) -> None:
        """Run transactional steps back to back in one pipeline, each in its own transaction
        with its history row, as `apply` does one by one, but without waiting for each one's
        results before sending the next: sqlmig prepares and sends step k+1 while the server
        runs step k. One sync for all: after an error the server skips everything else in the
        pipeline (libpq's pipeline mode), so no later step runs, and an earlier one has
        committed exactly when its COMMIT succeeded. Fills `outcomes`; the steps after a failure
        go back to `ahead`."""
        sent: list[_Sent] = []
        failure: psycopg.Error | None = None
        grouped = self.ex.config is not None and self.ex.config.group_commit == "on"
        try:
            with self.conn.pipeline():
                for n, (step, mig, stmts) in enumerate(items):
                    body = [*timeouts.set_statements(step, self.ex.config), *stmts]
                    one = _Sent(self.conn, step, stmts, body)
                    sent.append(one)
                    one.begin.execute("BEGIN")
                    if grouped and n + 1 < len(items):
                        one.setup.append(self.conn.cursor())
                        one.setup[0].execute(_NO_FLUSH_WAIT)
                    for st in one.body:
                        cur = self.conn.cursor()
                        one.cursors.append(cur)
                        cur.execute(st.text, prepare=False)  # type: ignore[arg-type]
                    one.row.execute(*self.ex.bookkeeping(step, mig), prepare=False)
                    one.commit.execute("COMMIT")
                    reset_session(self.conn)  # as in Executor.in_transaction
        except psycopg.Error as exc:
            failure = exc
        for n, one in enumerate(sent):
            # Done: all of it worked, and its session reset too (else the next BEGIN failed).
            reset = statement_ok(sent[n + 1].begin) if n + 1 < len(sent) else failure is None
            if one.done() and reset:
                row = one.row.fetchone()
                self.outcomes[one.step.version] = self.ex.result(
                    one.step, 0.0, one.stmts, duration_ms=(row[0] if row else None) or 0
                )
                continue
            assert failure is not None
            self.ex.rollback()
            failed = next((i for i, c in enumerate(one.cursors) if not statement_ok(c)), None)
            error = server_failure(self.conn, one.step, one.body, failed, failure, rolled_back=True)
            if grouped and n and isinstance(error, ConnectError):
                # Report none of the steps before it as applied: see _unconfirmed.
                for done in sent[:n]:
                    del self.outcomes[done.step.version]
                error = unconfirmed(error, [done.step.name for done in sent[:n]])
                one, n = sent[0], 0
            self.ex.log_failure(one.step, error)  # its synchronous commit flushes those before
            self.outcomes[one.step.version] = error
            self.ahead[:0] = items[n + 1 :]
            return
