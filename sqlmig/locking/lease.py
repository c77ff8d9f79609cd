"""The lease: what keeps other runners out while a no-transaction file runs in transaction lock mode.

Behind a transaction-pooling PgBouncer (`--lock-mode transaction`) the migration lock is a
transaction-level advisory lock, so it exists only while a transaction is open. A no-transaction
file (CREATE INDEX CONCURRENTLY…) runs outside any transaction, so instead its runner holds a
*lease*: the single row of `<schema>.<history table>_lease`, naming the holder, what it runs and
until when the lease is good. The protocol (README, "Lock modes"):

- The row is only taken, replaced or read for a decision by a transaction that holds the
  transaction-level migration lock (sqlmig.locking.transaction), so two runners never both see it free;
  only its holder renews or deletes it without the lock.
- Taking it: under that lock, no live lease of another holder -> INSERT … ON CONFLICT DO UPDATE
  with `expires_at = clock_timestamp() + TTL` (server time: the runners' clocks do not matter).
- While the statements run, a heartbeat thread on its own connection pushes `expires_at` on every
  HEARTBEAT seconds, each in its own one-statement transaction (WHERE holder = me: a lease taken
  over is never renewed by its old holder, who learns it lost the lease).
- Any other locked transaction that finds a live lease of another holder rolls back and polls
  again, for at most --lock-timeout, then fails naming the holder (exit 4).
- A lease past `expires_at` means its holder died (or lost the database for a whole TTL): the
  next locked transaction reports it (a warning, and a `lease expired` event in the same
  transaction) and deletes it. The step it ran stays `started`, which stops every later run
  until `sqlmig repair`, exactly as after a killed runner in session mode.
- Releasing: DELETE … WHERE holder = me, in the transaction that records the outcome or right
  after it; 0 rows means the lease was lost meanwhile, which is reported.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from sqlmig.db.history import History

SUFFIX = "_lease"
TTL = 30.0  # seconds a lease stays good without a heartbeat
HEARTBEAT = 5.0  # seconds between heartbeats: several may be lost before the lease expires
POLL = 0.5  # seconds between looks at a live lease of another runner


def new_holder() -> str:
    """This runner's id: host, pid and a random part (pids repeat across containers)."""
    import secrets

    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Lease:
    holder: str
    action: str
    version: str | None
    name: str | None
    application_name: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    expired: bool
    now: datetime

    def describe(self) -> str:
        what = f"{self.name} ({self.version})" if self.version else (self.name or "a step")
        ago = (self.now - self.heartbeat_at).total_seconds()
        return (
            f"runner {self.holder} (application_name '{self.application_name}') running "
            f"{self.action} {what} since {self.acquired_at:%Y-%m-%d %H:%M:%S%z}, last "
            f"heartbeat {ago:.0f} s ago, lease good until {self.expires_at:%H:%M:%S%z}"
        )


class LeaseTable:
    """SQL for the one-row table `<schema>.<history table>_lease`."""

    def __init__(self, history: History) -> None:
        self.table = sql.Identifier(history.schema, f"{history.table_name}{SUFFIX}")

    def create(self) -> sql.Composed:
        return sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                 singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                 holder text NOT NULL,
                 action text NOT NULL,
                 version text,
                 name text,
                 client_host text,
                 application_name text,
                 acquired_at timestamptz NOT NULL,
                 heartbeat_at timestamptz NOT NULL,
                 expires_at timestamptz NOT NULL)"""
        ).format(self.table)

    def read(self) -> sql.Composed:
        return sql.SQL(
            "SELECT holder, action, version, name, application_name, acquired_at, heartbeat_at,"
            " expires_at, expires_at <= clock_timestamp(), clock_timestamp() FROM {}"
        ).format(self.table)

    def take(
        self, holder: str, action: str, version: str | None, name: str | None, ttl: float
    ) -> tuple[sql.Composed, dict]:
        query = sql.SQL(
            """INSERT INTO {} AS l (singleton, holder, action, version, name, client_host,
                   application_name, acquired_at, heartbeat_at, expires_at)
               VALUES (true, %(holder)s, %(action)s, %(version)s, %(name)s, %(host)s,
                   current_setting('application_name'), clock_timestamp(), clock_timestamp(),
                   clock_timestamp() + make_interval(secs => %(ttl)s))
               ON CONFLICT (singleton) DO UPDATE SET holder = EXCLUDED.holder,
                   action = EXCLUDED.action, version = EXCLUDED.version, name = EXCLUDED.name,
                   client_host = EXCLUDED.client_host,
                   application_name = EXCLUDED.application_name,
                   acquired_at = EXCLUDED.acquired_at, heartbeat_at = EXCLUDED.heartbeat_at,
                   expires_at = EXCLUDED.expires_at"""
        ).format(self.table)
        return query, {
            "holder": holder,
            "action": action,
            "version": version,
            "name": name,
            "host": socket.gethostname(),
            "ttl": ttl,
        }

    def renew(self, holder: str, ttl: float) -> tuple[sql.Composed, dict]:
        query = sql.SQL(
            """UPDATE {} SET heartbeat_at = clock_timestamp(),
                   expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
                WHERE holder = %(holder)s RETURNING expires_at"""
        ).format(self.table)
        return query, {"holder": holder, "ttl": ttl}

    def release(self, holder: str) -> tuple[sql.Composed, dict]:
        query = sql.SQL("DELETE FROM {} WHERE holder = %(holder)s RETURNING holder").format(self.table)
        return query, {"holder": holder}


def current(conn: psycopg.Connection, table: LeaseTable) -> Lease | None:
    row = conn.execute(table.read()).fetchone()
    return Lease(*row) if row else None


class Heartbeat:
    """Renews a lease every `interval` seconds on a connection of its own, in a thread.

    `lost` is set when the renewal finds no row of ours (another runner took the lease over
    after it expired); `problem` keeps the last connection error, and the lease is only at risk
    when those last longer than the TTL. The main thread never waits for a heartbeat.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        table: LeaseTable,
        holder: str,
        *,
        ttl: float = TTL,
        interval: float = HEARTBEAT,
    ) -> None:
        self._connect = connect
        self._table = table
        self._holder = holder
        self._ttl = ttl
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlmig-lease-heartbeat", daemon=True)
        self.lost = False
        self.renewals = 0
        self.problem: str | None = None

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 10)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = self._connect()
                    row = conn.execute(*self._table.renew(self._holder, self._ttl)).fetchone()
                except Exception as exc:  # any failure here is only reported
                    self.problem = str(exc).strip() or type(exc).__name__
                    continue
                if row is None:
                    self.lost = True
                    return
                self.renewals += 1
                self.problem = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


__all__ = ["HEARTBEAT", "POLL", "SUFFIX", "TTL", "Heartbeat", "Lease", "LeaseTable", "current", "new_holder"]
