"""`--lock-mode transaction`: a migration lock that holds behind a transaction-pooling PgBouncer.

Behind `pool_mode = transaction` each transaction may run on another server connection, so a
session advisory lock taken by one statement says nothing about the next (the trap that bites
Flyway, Atlas and golang-migrate users: both runners "hold" the lock, or a pooled server session
keeps it after the run). In this mode nothing relies on session state:

- Every transaction that reads the history for a decision or writes it starts with
  `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout; pg_advisory_xact_lock(key)`
  (the key of session mode, so a session-mode runner or a rendered psql script excludes it too),
  and the lock goes with the COMMIT or ROLLBACK. READ COMMITTED, whatever the database's
  default, so the statements after the lock see what the previous holder committed.
- A migration's transaction takes the lock, then reads the history again (a fingerprint first:
  one row; the whole history only when it differs from what this run expects) and skips the
  migration if another runner applied it meanwhile, or stops if the history changed in a way
  the plan did not foresee; then body, history row and COMMIT in that same transaction.
- A no-transaction file has no transaction to hold the lock: its runner holds a lease instead
  (sqlmig.locking.lease), taken under the lock; every locked transaction of another runner that finds
  a live lease rolls back and polls until it is gone, for at most --lock-timeout.
- Settings are SET LOCAL (lock_timeout, client_connection_check_interval, --role, --schema's
  search_path); the connection uses no server-side prepared statements (prepare_threshold=None).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import psycopg
from psycopg import pq, sql

from sqlmig.db.history import History, fingerprint
from sqlmig.errors import HistoryInconsistent, InvalidInput, LockTimeout
from sqlmig.locking import lease as lease_mod
from sqlmig.locking import session as lock
from sqlmig.locking.guard import Recheck, Skipped, Unlocked
from sqlmig.models import AppliedRecord, PlanStep, Problem


class TransactionLock(Unlocked):
    """The transaction-level migration lock and the lease, for one connection of one run."""

    pooled = True

    def __init__(
        self,
        conn: psycopg.Connection,
        history: History,
        *,
        key: int,
        timeout: float,
        what: str,
        reconnect: Callable[[], psycopg.Connection],
        local_settings: Sequence[sql.Composable] = (),
        ttl: float = lease_mod.TTL,
        heartbeat: float = lease_mod.HEARTBEAT,
        poll: float = lease_mod.POLL,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.history = history
        self.key = key
        self.timeout = timeout
        self.what = what
        self.reconnect = reconnect
        self.local_settings = tuple(local_settings)
        self.ttl, self.heartbeat, self.poll = ttl, heartbeat, poll
        self.lease_table = lease_mod.LeaseTable(history)
        self.holder = lease_mod.new_holder()
        self.recheck: Recheck | None = None
        self._expected: dict[str, tuple[str, str | None]] | None = None
        self._lease_ready = False
        self._reported: set[str] = set()

    # -- what the run expects the history to be ----------------------------------------------

    def expect(self, records: Sequence[AppliedRecord], recheck: Recheck) -> None:
        self._expected = {r.version: (r.status, r.checksum) for r in records}
        self.recheck = recheck

    def applied(self, version: str, checksum: str | None) -> None:
        if self._expected is not None:
            self._expected[version] = ("applied", checksum)

    def reverted(self, version: str) -> None:
        if self._expected is not None:
            self._expected.pop(version, None)

    # -- locked transactions -------------------------------------------------------------------

    def __enter__(self) -> TransactionLock:
        self.setup()
        return self

    def setup(self) -> None:
        """Create or upgrade the history, event and lease tables, under the lock."""

        def create() -> None:
            self.history.ensure(self.conn)
            self.conn.execute(self.lease_table.create())

        with self._transaction(prepare=create):
            pass
        self._lease_ready = True

    @contextlib.contextmanager
    def locked(self, *, catalog_path: bool = False) -> Iterator[None]:
        """One transaction holding the lock: COMMIT at the end, ROLLBACK on an exception.

        `catalog_path`: search_path = pg_catalog, as a schema snapshot wants (sqlmig.db.snapshot).
        """
        with self._transaction():
            if catalog_path:
                self.conn.execute("SET LOCAL search_path = pg_catalog")
            yield

    def begin(self, step: PlanStep) -> None:
        """Open the transaction of a transactional step: locked, and the step still to do.

        Leaves the transaction open for the executor (body, history row, COMMIT); raises
        Skipped (transaction rolled back) when another runner did the step meanwhile.
        """
        state = self._open(fingerprint=True)
        try:
            self._still_to_do(step, state)
        except BaseException:
            self._rollback()
            raise

    def leased(self, step: PlanStep) -> contextlib.AbstractContextManager[None]:
        """Hold the lease while a no-transaction step runs (its statements in autocommit);
        raises Skipped when another runner did the step meanwhile."""
        return self._leased(
            step.direction, step.version, step.name, lambda state: self._still_to_do(step, state)
        )

    def hold_lease(self, action: str, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the lease around autocommit work that is not a step (repair's DROP INDEX
        CONCURRENTLY)."""
        return self._leased(action, None, name, None)

    @contextlib.contextmanager
    def _leased(
        self,
        action: str,
        version: str | None,
        name: str,
        check: Callable[[tuple[int, str] | None], None] | None,
    ) -> Iterator[None]:
        state = self._open(fingerprint=check is not None)
        try:
            if check is not None:
                check(state)
            self.conn.execute(*self.lease_table.take(self.holder, action, version, name, self.ttl))
            self._commit()
        except BaseException:
            self._rollback()
            raise
        beat = lease_mod.Heartbeat(
            self.reconnect, self.lease_table, self.holder, ttl=self.ttl, interval=self.heartbeat
        )
        try:
            with beat:
                yield
        finally:
            self._release(beat, f"{name} ({version})" if version else name)

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, prepare: Callable[[], None] | None = None) -> Iterator[None]:
        self._open(prepare=prepare)
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._commit()

    def _open(
        self, *, fingerprint: bool = False, prepare: Callable[[], None] | None = None
    ) -> tuple[int, str] | None:
        """BEGIN, take the lock, wait out a live lease of another runner. Returns the history's
        (row count, fingerprint) when asked, as read under the lock."""
        deadline = time.monotonic() + self.timeout
        while True:
            lease_cur, state_cur = self._lock(deadline, fingerprint=fingerprint)
            try:
                if prepare is not None:
                    prepare()
                    current = lease_mod.current(self.conn, self.lease_table)
                else:
                    current = self._lease_row(lease_cur)
                if current is None or current.holder == self.holder:
                    break
                if current.expired:
                    self._take_over(current)
                    break
            except BaseException:
                self._rollback()
                raise
            self._rollback()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(
                    f"could not take the migration lock on {self.what} within "
                    f"{self.timeout:g} s: a no-transaction step holds the lease: "
                    f"{current.describe()}",
                    hint="wait for that run to finish, or raise --lock-timeout; if that runner "
                    "is gone, its lease expires by itself (then `sqlmig status` shows its "
                    "step `started`: see `sqlmig repair`)",
                )
            time.sleep(min(self.poll, remaining))
        if state_cur is None:
            return None
        row = state_cur.fetchone()
        assert row is not None
        return int(row[0]), str(row[1])

    def _lock(self, deadline: float, *, fingerprint: bool) -> tuple[Any, Any]:
        """BEGIN, the lock, the session's settings as SET LOCAL, and the reads a decision needs,
        in one round trip per try. The lock is tried, never waited for inside the server: a
        waiting statement would hold a snapshot that a CREATE INDEX CONCURRENTLY of another
        runner waits for (see lock.acquire). Raises LockTimeout naming the holder."""
        delays = lock.poll_delays(max(0.0, deadline - time.monotonic()))
        while True:
            lease_cur, state_cur, got = self._try_lock(fingerprint=fingerprint)
            row = got.fetchone()
            if row and row[0]:
                return lease_cur, state_cur
            self._rollback()
            pause = next(delays, None)
            if pause is None:
                self._timed_out()
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def _try_lock(self, *, fingerprint: bool) -> tuple[Any, Any, Any]:
        conn = self.conn
        lease_cur = state_cur = None
        try:
            with conn.pipeline():
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (self.key,))
                if conn.info.server_version >= 140000:
                    # A runner that dies mid-statement must not leave its migration running.
                    conn.execute("SELECT set_config('client_connection_check_interval', '1s', true)")
                # When the step starts, for its history row: now() is BEGIN, before the wait.
                conn.execute(
                    "SELECT set_config('sqlmig.step_started', "
                    "extract(epoch FROM clock_timestamp())::text, true)"
                )
                for statement in self.local_settings:
                    conn.execute(statement.as_string(conn))
                if self._lease_ready:
                    lease_cur = conn.execute(self.lease_table.read())
                if fingerprint:
                    state_cur = conn.execute(self.history.fingerprint_query())
        except psycopg.errors.InsufficientPrivilege as exc:
            self._rollback()
            raise InvalidInput(
                f"cannot lock {self.what}: {str(exc).strip()}",
                hint="with --role, the login role must be a member of that role",
            ) from exc
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            self._rollback()
            raise InvalidInput(f"cannot lock {self.what}: {str(exc).strip()}") from exc
        return lease_cur, state_cur, got

    def _timed_out(self) -> NoReturn:
        holder = lock.holder(self.conn, self.key)
        raise LockTimeout(
            f"could not take the migration lock on {self.what} within {self.timeout:g} s: {holder}",
            hint="wait for that run to finish, raise --lock-timeout, or end that session",
        )

    def _lease_row(self, cur: Any) -> lease_mod.Lease | None:
        if cur is None:
            return None
        row = cur.fetchone()
        return lease_mod.Lease(*row) if row else None

    def _take_over(self, old: lease_mod.Lease) -> None:
        """Report an expired lease (its holder died), then delete it; in this transaction."""
        message = (
            f"the lease of a runner that stopped renewing it expired: {old.describe()}; "
            "that runner died or lost the database; taken over"
        )
        if old.holder not in self._reported:
            self._reported.add(old.holder)
            self.warnings.append(Problem(code="lease-expired", severity="warning", message=message))
        self.conn.execute(
            *self.history.event("lease", "expired", version=old.version, name=old.name, detail=message)
        )
        self.conn.execute(*self.lease_table.release(old.holder))

    def _still_to_do(self, step: PlanStep, state: tuple[int, str] | None) -> None:
        """Skip (raise Skipped) or stop (HistoryInconsistent) unless `step` is still next."""
        assert state is not None
        count, digest = state
        expected = self._expected
        if expected is not None:
            # Still to do as far as this run knows: not applied (up), or applied (down). The
            # last full read may already have shown it done by another runner.
            todo = (
                step.version not in expected
                if step.direction == "up"
                else expected.get(step.version, ("",))[0] == "applied"
            )
            if (
                todo
                and count == len(expected)
                and digest == fingerprint((v, s, c) for v, (s, c) in expected.items())
            ):
                return  # nobody changed the history since this run last looked: the common case
        records = self.history.read(self.conn)
        self._expected = {r.version: (r.status, r.checksum) for r in records}
        if self.recheck is None:
            return
        try:
            still = self.recheck(step, records)
        except HistoryInconsistent as exc:
            exc.problems.extend(self.warnings)
            raise
        if not still:
            raise Skipped(step)

    def _release(self, beat: lease_mod.Heartbeat, what: str) -> None:
        problem = None
        if self.conn.closed or self.conn.broken:
            return  # the lease expires by itself; the step's row says what happened
        try:
            row = self.conn.execute(*self.lease_table.release(self.holder)).fetchone()
        except psycopg.Error as exc:
            problem = (
                f"could not release the lease held while running {what}: "
                f"{str(exc).strip()}; it expires by itself within {self.ttl:g} s"
            )
        else:
            if row is None or beat.lost:
                problem = (
                    f"the lease held while running {what} was taken over by another "
                    "runner (it had expired: heartbeats did not reach the database"
                    + (f": {beat.problem}" if beat.problem else "")
                    + ")"
                )
        if problem:
            self.warnings.append(Problem(code="lease-lost", severity="warning", message=problem))

    def _commit(self) -> None:
        if self.conn.info.transaction_status == pq.TransactionStatus.INERROR:
            self.conn.execute("ROLLBACK")
        elif self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")


__all__ = ["TransactionLock"]
