"""The session advisory lock that serialises runners on one database, and who holds it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import psycopg

from sqlmig.errors import ConnectError, LockTimeout


def lock_key(qualified_table: str) -> int:
    """A signed 64-bit key from the history table's name: the same for every tool that uses it.

    The rendered psql script and any other runner of the same history table compute the same key,
    while two migration sets with their own history tables in one database do not collide.
    """
    digest = hashlib.sha256(f"sqlmig:{qualified_table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _holder(conn: psycopg.Connection, key: int) -> str:
    # pg_locks splits a bigint advisory key into two unsigned 32-bit halves.
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        """
        SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket'),
               a.backend_start, a.state, left(a.query, 80)
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return "held by a session that has since released it"
    pid, app, client, since, state, query = row
    return (f"held by pid {pid} (application_name '{app}', client {client}, "
            f"connected since {since:%Y-%m-%d %H:%M:%S%z}, {state}: {query!r})")


def acquire(conn: psycopg.Connection, key: int, timeout: float, what: str) -> None:
    """Wait at most `timeout` seconds for the lock; LockTimeout names the holder."""
    try:
        if timeout <= 0:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got and got[0]:
                return
        else:
            # lock_timeout bounds the wait inside the server, so waiters queue fairly
            # instead of polling, and a kill of this process drops the wait with the session.
            wait_ms = max(1, round(timeout * 1000))  # 0ms would mean "wait forever"
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{wait_ms}ms",))
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                return
            except psycopg.errors.LockNotAvailable:
                pass
            finally:
                if not conn.closed:
                    # Back to the session's own value (ALTER ROLE/DATABASE … SET lock_timeout,
                    # PGOPTIONS), not 0: the migrations run with what the DBA configured.
                    conn.execute("RESET lock_timeout")
        holder = _holder(conn, key)
    except psycopg.OperationalError as exc:
        raise ConnectError(f"lost the connection while waiting for the lock: {exc}") from exc
    raise LockTimeout(
        f"could not take the migration lock on {what} within {timeout:g} s: {holder}",
        hint="wait for that run to finish, raise --lock-timeout, or end that session",
    )


def release(conn: psycopg.Connection, key: int) -> None:
    if conn.closed:
        return  # the server released a session lock with the session
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@contextlib.contextmanager
def held(conn: psycopg.Connection, key: int, timeout: float, what: str) -> Iterator[None]:
    acquire(conn, key, timeout, what)
    try:
        yield
    finally:
        release(conn, key)
