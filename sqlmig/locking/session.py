"""The session advisory lock that serialises runners on one database, and who holds it.

Session mode (the default). Behind a transaction-pooling PgBouncer use `--lock-mode
transaction` instead (sqlmig.locking.transaction): there a session lock holds for one statement only.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from sqlmig.errors import ConnectError, LockTimeout
from sqlmig.locking.guard import Unlocked
from sqlmig.models import Problem

if TYPE_CHECKING:
    from sqlmig.db.history import History


def lock_key(qualified_table: str) -> int:
    """A signed 64-bit key from the history table's name: the same for every tool that uses it.

    The rendered psql script and any other runner of the same history table compute the same key,
    while two migration sets with their own history tables in one database do not collide.
    """
    digest = hashlib.sha256(f"sqlmig:{qualified_table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _halves(key: int) -> tuple[sql.Literal, sql.Literal]:
    # pg_locks splits a bigint advisory key into two unsigned 32-bit halves.
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return sql.Literal(unsigned >> 32), sql.Literal(unsigned & 0xFFFFFFFF)


def holder_sql(key: int) -> sql.Composed:
    """An SQL expression naming the session that holds `key`: run by the engine on timeout and
    embedded in the rendered psql script, so both say the same thing."""
    hi, lo = _halves(key)
    return sql.SQL(
        """coalesce((SELECT format('held by pid %s (application_name %L, client %s, '
                                   'connected since %s, %s: %L)', a.pid, a.application_name,
                                   coalesce(host(a.client_addr), 'local socket'),
                                   to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SSOF'),
                                   a.state, left(a.query, 80))
                       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                        AND l.classid = {hi}::oid AND l.objid = {lo}::oid
                        AND l.database = (SELECT oid FROM pg_database
                                           WHERE datname = current_database())
                      LIMIT 1), 'held by a session that has since released it')"""
    ).format(hi=hi, lo=lo)


def mine_sql(key: int) -> sql.Composed:
    """An SQL condition: this session holds `key` (for the rendered script's polling)."""
    hi, lo = _halves(key)
    return sql.SQL(
        "EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
        "AND granted AND objsubid = 1 AND classid = {hi}::oid AND objid = {lo}::oid)"
    ).format(hi=hi, lo=lo)


def holder(conn: psycopg.Connection, key: int) -> str:
    row = conn.execute(sql.SQL("SELECT {}").format(holder_sql(key))).fetchone()
    return row[0] if row else "held by a session that has since released it"


# Waiting polls pg_try_advisory_lock with a pause between tries, first short then up to
# POLL_MAX. A blocking pg_advisory_lock would wait inside a statement, holding its snapshot, and
# CREATE INDEX CONCURRENTLY of the runner that holds the lock waits for every older snapshot to
# go: each waits for the other ("deadlock detected", and with many waiters the build itself can
# be the victim, leaving an INVALID index). Between tries this session holds no snapshot and no
# transaction. The price is fairness: waiters are not served in arrival order.
POLL_FIRST = 0.02
POLL_MAX = 0.25


def poll_delays(timeout: float) -> Iterator[float]:
    """The pauses between tries within `timeout` seconds: doubling from POLL_FIRST to
    POLL_MAX; their sum is `timeout` (the last one is cut short)."""
    left, delay = timeout, POLL_FIRST
    while left > 1e-9:
        pause = min(delay, left)
        yield pause
        left -= pause
        delay = min(delay * 2, POLL_MAX)


def acquire(conn: psycopg.Connection, key: int, timeout: float, what: str) -> int:
    """Wait at most `timeout` seconds for the lock; LockTimeout names the holder. Returns the
    server session (backend pid) that took it, for release() to compare."""
    deadline = time.monotonic() + max(timeout, 0.0)
    delays = poll_delays(timeout)
    try:
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (key,)).fetchone()
            if got and got[0]:
                return int(got[1])
            pause = next(delays, None)
            if pause is None:
                break
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        who = holder(conn, key)
    except psycopg.errors.DeadlockDetected as exc:  # not expected while polling; said as it is
        raise LockTimeout(
            f"deadlock detected while waiting for the migration lock on {what}: {str(exc).strip()}",
            hint="run the command again",
        ) from exc
    except psycopg.OperationalError as exc:
        raise ConnectError(f"lost the connection while waiting for the lock: {exc}") from exc
    raise LockTimeout(
        f"could not take the migration lock on {what} within {timeout:g} s: {who}",
        hint="wait for that run to finish, raise --lock-timeout, or end that session",
    )


_POOLER = (
    "a connection pooler in transaction mode (PgBouncer pool_mode=transaction) is "
    "probably between sqlmig and the server, where session locks do not hold: use "
    "--lock-mode transaction"
)


def release(conn: psycopg.Connection, key: int, pid: int | None = None) -> Problem | None:
    """Unlock, and say so when the lock was not ours any more: pg_advisory_unlock returning
    false, or the run ending on another server session than the one that took the lock."""
    if conn.closed:
        return None  # the server released a session lock with the session
    try:
        row = conn.execute("SELECT pg_advisory_unlock(%s), pg_backend_pid()", (key,)).fetchone()
    except psycopg.Error as exc:
        if conn.closed or conn.broken:
            return None  # the session is gone, and its lock with it
        return Problem(
            code="unlock-failed",
            severity="warning",
            message=f"could not release the migration lock: {str(exc).strip()}; the "
            "server releases it when the session ends",
        )
    assert row is not None
    unlocked, now = bool(row[0]), int(row[1])
    if unlocked and (pid is None or pid == now):
        return None
    moved = pid is not None and pid != now
    if not unlocked:
        what = (
            "the migration lock was not held at the end of this run: pg_advisory_unlock "
            f"returned false in server session {now}"
        )
        if moved:
            what += (
                f", not the session {pid} that took it (which may still hold it, keeping "
                "other runners waiting until that server connection closes)"
            )
        else:
            what += " (something released it during the run, e.g. pg_advisory_unlock_all())"
        what += "; another runner may have run at the same time"
    else:
        what = (
            f"this run moved from server session {pid}, which took the migration lock, to "
            f"session {now}, so the lock did not keep other runners out"
        )
    return Problem(code="lock-lost", severity="warning", message=f"{what}{'; ' + _POOLER if moved else ''}")


@contextlib.contextmanager
def held(
    conn: psycopg.Connection, key: int, timeout: float, what: str, warnings: list[Problem] | None = None
) -> Iterator[None]:
    """The session lock around a block; a lost lock found at release goes to `warnings`."""
    pid = acquire(conn, key, timeout, what)
    try:
        yield
    finally:
        problem = release(conn, key, pid)
        if problem is not None and warnings is not None:
            warnings.append(problem)


class SessionLock(Unlocked):
    """Session mode: the one lock of the whole run, taken on entering (then the history tables
    are created or upgraded under it) and released on leaving; a lost lock found at release
    becomes a warning. Nothing changes under it, so the per-transaction hooks of Unlocked stay."""

    def __init__(
        self, conn: psycopg.Connection, history: History, *, key: int, timeout: float, what: str
    ) -> None:
        super().__init__()
        self.conn, self.history = conn, history
        self.key, self.timeout, self.what = key, timeout, what
        self._pid: int | None = None

    def __enter__(self) -> SessionLock:
        self._pid = acquire(self.conn, self.key, self.timeout, self.what)
        try:
            self.history.ensure(self.conn)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        problem = release(self.conn, self.key, self._pid)
        if problem is not None:
            self.warnings.append(problem)
