"""INVALID indexes: what a failed or interrupted CONCURRENTLY build leaves behind.

Such an index is not used by queries and a UNIQUE one enforces nothing, while a rerun's
`CREATE INDEX … IF NOT EXISTS` takes it for done. `status`, `validate` and `up` report them
(as_problems), `repair` drops them (sqlmig.engine.repair); this module only finds them,
cheaply enough for every `status`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from sqlmig.models import Problem

# Partitioned indexes (relkind 'I') are left out: one made with CREATE INDEX ON ONLY stays
# invalid until every partition's index is attached, by design, and cannot be dropped
# CONCURRENTLY anyway. System schemas (pg_catalog, pg_toast, temp schemas) are not ours.
_INVALID_INDEXES = sql.SQL("""
SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       format('%I.%I', tn.nspname, t.relname), {definition},
       (SELECT p.pid FROM pg_stat_progress_create_index p
         WHERE p.index_relid = i.indexrelid LIMIT 1)
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE NOT i.indisvalid AND c.relkind = 'i'
   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
 ORDER BY n.nspname, c.relname
""")


def invalid(
    conn: psycopg.Connection, *, definitions: bool = True
) -> list[tuple[str, str, str, str, str | None, int | None]]:
    """(schema, index, schema.index, schema.table, definition or None, pid of a build still
    running or None) of every invalid index outside the system schemas."""
    if not definitions:
        return [
            tuple(r)
            for r in conn.execute(  # type: ignore[misc]
                _INVALID_INDEXES.format(definition=sql.NULL)
            ).fetchall()
        ]
    # pg_get_indexdef locks the index: a session holding ACCESS EXCLUSIVE on the table (a long
    # ALTER TABLE) would block the listing, so wait a second and then list without definitions.
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '1s'")
            rows = conn.execute(
                _INVALID_INDEXES.format(definition=sql.SQL("pg_get_indexdef(i.indexrelid)"))
            ).fetchall()
    except psycopg.errors.LockNotAvailable:
        rows = conn.execute(_INVALID_INDEXES.format(definition=sql.NULL)).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def as_problems(conn: psycopg.Connection) -> tuple[list[Problem], list[Problem]]:
    """INVALID indexes, as problems (left by a failed or interrupted CONCURRENTLY build: the
    index is not used and a UNIQUE one enforces nothing, while a rerun's IF NOT EXISTS would
    take it as done), and as warnings those a concurrent build is still making. Every schema
    but the system ones: which migration made an index is not recorded, and an invalid index
    is never what anybody meant."""
    broken, building = [], []
    for _, _, qualified, table, _, pid in invalid(conn, definitions=False):
        if pid is not None:
            building.append(
                Problem(
                    code="index-building",
                    severity="warning",
                    message=f"index {qualified} on {table} is being built (backend {pid})",
                )
            )
        else:
            broken.append(
                Problem(
                    code="invalid-index",
                    message=f"invalid index {qualified} on {table}: a CONCURRENTLY build failed or "
                    "was interrupted; drop it (`sqlmig repair --drop-invalid-index "
                    f"{qualified}`) and build it again",
                )
            )
    return broken, building
