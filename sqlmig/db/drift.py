"""Schema drift: the snapshot recorded after each run, and the comparison status/validate make.

After `up`, `down` and `baseline` the engine records a snapshot of the resulting schema (see
snapshot.py) with its fingerprint in `<history>_snapshots`, one row per version, replaced when
that version is reached again. Not one per history row: snapshotting after each of 1,000
migrations of a run would cost more than the migrations themselves, while drift only needs the
schema as the last run left it. A row also keeps the set of applied versions it was taken at,
so a state reached without sqlmig recording it (a rendered psql script, an out-of-order file)
is never compared with a snapshot of another state.

`status` and `validate` take one live snapshot when a row exists for the current state, compare
fingerprints, and only on a mismatch load the recorded snapshot to say what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import psycopg
from psycopg import pq, sql

from sqlmig.about import VERSION as __version__
from sqlmig.db import snapshot
from sqlmig.db.compare import Snapshot, diff
from sqlmig.db.history import History
from sqlmig.models import SETTLED, AppliedRecord, Problem, StepResult, version_key

SUFFIX = "_snapshots"
# The key of the row for "nothing applied"; never a semantic version.
NOTHING = "none"
_NAMEDATALEN = 63


def own_tables(history: History) -> list[str]:
    """sqlmig's own tables, which a snapshot leaves out (names cut as PostgreSQL cuts them)."""
    # The lease table of --lock-mode transaction (sqlmig.locking.lease) is sqlmig's too.
    names = [
        history.table_name,
        f"{history.table_name}_events",
        f"{history.table_name}{SUFFIX}",
        f"{history.table_name}_lease",
    ]
    return [n.encode()[:_NAMEDATALEN].decode(errors="ignore") for n in names]


def scope(history: History) -> str | None:
    """What drift watches: with the history table in `public` (the default), every schema of the
    database; with `--schema S`, schema S only, where the migrations' objects go (first on the
    search_path). Tenants in schemas of their own, or two projects in one database, are then not
    each other's drift."""
    return None if history.schema == "public" else history.schema


def take(conn: psycopg.Connection, history: History) -> Snapshot:
    return snapshot.take(conn, history.schema, own_tables(history), scope=scope(history))


def state(records: list[AppliedRecord]) -> tuple[str, str]:
    """(current version or NOTHING, a key of the whole set of applied versions)."""
    return _state(r.version for r in records if r.status == SETTLED)


def _state(versions: Iterable[str]) -> tuple[str, str]:
    # dict.fromkeys, not set: the history comes in version order, which the sort then only
    # checks (n comparisons, not n log n: 10 vs 25 ms at 10,000).
    settled = sorted(dict.fromkeys(versions), key=version_key)
    key = hashlib.sha256("\n".join(settled).encode()).hexdigest()
    return (settled[-1] if settled else NOTHING), key


def applied_after(records: list[AppliedRecord], steps: Iterable[StepResult]) -> set[str]:
    """The applied versions once the steps of a run are done, without reading the history
    again (which costs more than the snapshot with 10,000 rows); `record` puts them in order."""
    versions = {r.version for r in records if r.status == SETTLED}
    for step in steps:
        if step.direction == "up":
            versions.add(step.version)
        else:
            versions.discard(step.version)
    return versions


class Recorded(NamedTuple):
    applied_key: str
    fingerprint: str
    format: int
    server_version: int
    recorded_at: Any
    unchanged: bool  # the catalogs still have the stamp taken with the snapshot


class SnapshotStore:
    """SQL for `<schema>.<history table>_snapshots`."""

    def __init__(self, history: History) -> None:
        self.table = sql.Identifier(history.schema, own_tables(history)[2])
        self.scope = scope(history)

    def ensure(self, conn: psycopg.Connection) -> None:
        """Create the table if needed; call with the migration lock held."""
        conn.execute(self.create_sql())

    def create_sql(self) -> sql.Composed:
        """The table (and a column older tables lack), for ensure and the rendered script."""
        return sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                 version text PRIMARY KEY,
                 applied_key text NOT NULL,
                 fingerprint text NOT NULL,
                 format integer NOT NULL,
                 server_version integer NOT NULL,
                 snapshot json NOT NULL,
                 action text NOT NULL,
                 recorded_at timestamptz NOT NULL DEFAULT now(),
                 recorded_by text NOT NULL DEFAULT current_user,
                 sqlmig_version text,
                 catalog_stamp text);
               -- Tables made before the stamp (see snapshot.stamp) get it here.
               ALTER TABLE {} ADD COLUMN IF NOT EXISTS catalog_stamp text"""
        ).format(self.table, self.table)

    def meta(self, conn: psycopg.Connection, version: str, *, stamp: bool = False) -> Recorded | None:
        """The row for `version` without its snapshot; None if there is none (or no table).
        With `stamp`, `unchanged` says whether the catalogs still have the recorded stamp."""
        # The stamp is of every catalog row in the database: in a schema of its own (tenants),
        # the others' changes move it all the time, so it is neither taken nor compared there.
        stamped = stamp and self.scope is None
        unchanged = sql.SQL(f"catalog_stamp = ({snapshot.stamp()})" if stamped else "false")
        query = sql.SQL(
            "SELECT applied_key, fingerprint, format, server_version, recorded_at, "
            "coalesce({}, false) FROM {} WHERE version = %s"
        ).format(unchanged, self.table)
        try:
            row = conn.execute(query, (version,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except psycopg.errors.UndefinedColumn:
            # Recorded by an older sqlmig, read by a command that does not upgrade the table.
            return self.meta(conn, version) if stamp else None
        return Recorded(*row) if row else None

    def load(self, conn: psycopg.Connection, version: str) -> Snapshot:
        row = conn.execute(
            sql.SQL("SELECT format, server_version, snapshot FROM {} WHERE version = %s").format(self.table),
            (version,),
        ).fetchone()
        assert row is not None
        return Snapshot(format=row[0], server_version=row[1], objects=row[2])

    def write(
        self, conn: psycopg.Connection, version: str, applied_key: str, action: str, history: History
    ) -> None:
        """Take the snapshot and record it, with its fingerprint, in one statement: the server
        builds the document and hashes it, and nothing of it travels to sqlmig and back."""
        table = self.table.as_string(conn)
        stamp = snapshot.stamp() if self.scope is None else "NULL"  # see meta
        query = f"""INSERT INTO {table} AS s (version, applied_key, fingerprint, format, server_version,
                   snapshot, action, sqlmig_version, catalog_stamp)
               SELECT %(version)s, %(key)s, {snapshot.FINGERPRINT_OF.format("d.doc")},
                   %(format)s, %(server)s, d.doc::json, %(action)s, %(sqlmig)s, ({stamp})
                 FROM ({snapshot.document()} OFFSET 0) AS d(doc)  -- built once, not per use
               ON CONFLICT (version) DO UPDATE SET applied_key = EXCLUDED.applied_key,
                   fingerprint = EXCLUDED.fingerprint, format = EXCLUDED.format,
                   server_version = EXCLUDED.server_version, snapshot = EXCLUDED.snapshot,
                   action = EXCLUDED.action, recorded_at = now(), recorded_by = current_user,
                   sqlmig_version = EXCLUDED.sqlmig_version,
                   catalog_stamp = EXCLUDED.catalog_stamp"""
        snapshot.run(
            conn,
            [
                (
                    query,
                    {
                        "version": version,
                        "key": applied_key,
                        "format": snapshot.FORMAT,
                        "server": conn.info.server_version // 10000,
                        "action": action,
                        "sqlmig": __version__,
                        "schema": history.schema,
                        "tables": own_tables(history),
                        "scope": scope(history),
                    },
                )
            ],
            read_only=False,
        )


def _comparable(rec: Recorded, conn: psycopg.Connection) -> bool:
    return rec.format == snapshot.FORMAT and rec.server_version == conn.info.server_version // 10000


def record(
    conn: psycopg.Connection,
    history: History,
    action: str,
    *,
    applied: Iterable[str] | None = None,
    if_missing: bool = False,
) -> Problem | None:
    """Record the schema as it is now for the current state; with the lock held.

    `applied`: the applied versions (see `applied_after`; read from the history if not given,
    and nothing is recorded while a row is in a failed state). `if_missing`: only when no
    usable row exists yet (a run that changed nothing must not overwrite the recorded schema,
    or it would hide drift). A failure here never fails the run that has already committed its
    migrations: it comes back as a warning.
    """
    try:
        store = SnapshotStore(history)
        if applied is None:
            records = history.read(conn)
            if any(r.status != SETTLED for r in records):
                return None  # a failed no-transaction step: not a schema to compare with
            applied = (r.version for r in records)
        version, key = _state(applied)
        if if_missing:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                store.ensure(conn)  # --lock-mode transaction: a missing table would abort it
            rec = store.meta(conn, version)
            if rec is not None and rec.applied_key == key and _comparable(rec, conn):
                return None  # before ensure(), whose DDL costs a no-op `up` a millisecond
        store.ensure(conn)
        store.write(conn, version, key, action, history)
        return None
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        return Problem(
            code="snapshot",
            severity="warning",
            message=f"could not record the schema snapshot: {str(exc).strip()}; "
            "drift is not checked until a later run records one",
        )


def check(
    conn: psycopg.Connection, history: History, records: list[AppliedRecord]
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings): how the live schema differs from the one recorded for this state.

    Nothing when no snapshot was recorded for the current state (a database migrated by an
    older sqlmig or by a psql script), or while a failed state needs `repair`.
    """
    if any(r.status != SETTLED for r in records):
        return [], []
    version, key = state(records)
    store = SnapshotStore(history)
    try:
        rec = store.meta(conn, version, stamp=True)
        if rec is None or rec.applied_key != key:
            return [], []
        if not _comparable(rec, conn):
            return [], [
                Problem(
                    code="drift",
                    severity="warning",
                    message=f"the schema snapshot of {version} was recorded by another sqlmig or "
                    f"PostgreSQL {rec.server_version}: not compared; the next `sqlmig up` "
                    "records a new one",
                )
            ]
        # Untouched catalogs need no more; else the server hashes the live schema, and only
        # when that differs are both snapshots read.
        if (
            rec.unchanged
            or snapshot.fingerprint(conn, history.schema, own_tables(history), scope=scope(history))
            == rec.fingerprint
        ):
            return [], []
        differences = diff(store.load(conn, version), take(conn, history))
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        return [], [
            Problem(
                code="drift",
                severity="warning",
                message=f"could not compare the schema with its snapshot: {str(exc).strip()}",
            )
        ]
    at = f"of {version}" if version != NOTHING else "with nothing applied"
    when = f", {rec.recorded_at:%Y-%m-%d %H:%M}" if rec.recorded_at else ""
    words = {"added": "was added outside sqlmig", "removed": "was dropped outside sqlmig"}
    return [
        Problem(
            code="drift", message=f"schema drift: {d.line(**words)} (since the recorded schema {at}{when})"
        )
        for d in differences
    ], []


DRIFT_HINT = (
    "the live schema differs from the one sqlmig recorded after its last run: undo the "
    "change, or make it a migration and run `sqlmig up`"
)

__all__ = [
    "DRIFT_HINT",
    "SnapshotStore",
    "applied_after",
    "check",
    "own_tables",
    "record",
    "scope",
    "state",
    "take",
]
