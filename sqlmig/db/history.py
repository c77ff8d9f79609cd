"""The only module with SQL for the history table and its event log."""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Container, Iterable
from dataclasses import MISSING, fields
from datetime import datetime
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import pq, sql

from sqlmig.about import VERSION as __version__
from sqlmig.errors import HistoryInconsistent
from sqlmig.models import AppliedRecord, EventRecord, Problem, version_key

# What format_type calls the `applied_at TIMESTAMP` of a hand-written table.
LOCAL_TIMESTAMP = "timestamp without time zone"

# Added one by one with ADD COLUMN IF NOT EXISTS, so a hand-written
# (version, applied_at, description) table, or one from an older sqlmig, is upgraded in place.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("applied_at", "timestamptz NOT NULL DEFAULT now()"),
    ("description", "text"),
    ("number", "bigint"),
    ("name", "text"),
    ("checksum", "text"),
    ("rollback_checksum", "text"),
    ("rollback_sql", "text"),
    ("applied_by", "text DEFAULT current_user"),
    ("execution_ms", "integer"),
    ("status", "text NOT NULL DEFAULT 'applied'"),
    ("transactional", "boolean"),
    ("baseline", "boolean NOT NULL DEFAULT false"),
    ("sqlmig_version", "text"),
    ("error", "text"),
    ("canonical_checksum", "text"),  # of the parsed statements: tells formatting from SQL edits
    # Who logged in; applied_by is current_user, the role the migration ran as (--role).
    ("login_user", "text DEFAULT session_user"),
)


# What read() selects: every column but the rollback text, which only `down` needs.
_READ_COLUMNS = ("version", *(name for name, _ in _COLUMNS if name != "rollback_sql"))
# AppliedRecord's slots in that order, then rollback_sql (not read): _records sets them directly.
_SLOTS = (*_READ_COLUMNS, "rollback_sql")
assert {f.name for f in fields(AppliedRecord)} == set(_SLOTS)
_SETTERS = tuple(getattr(AppliedRecord, name).__set__ for name in _SLOTS)
# The columns whose field's default is not None (status, baseline): a NULL there (a hand-written
# table may allow it) must become the default.
_DEFAULTED = itemgetter(
    *(
        _READ_COLUMNS.index(f.name)
        for f in fields(AppliedRecord)
        if f.default is not None and f.default is not MISSING
    )
)
_EVENT_FIELDS = tuple(f.name for f in fields(EventRecord))


class History:
    """Statements for one history table `schema.table` and its `schema.table_events` log."""

    def __init__(
        self, schema: str, table: str, *, step_clock: bool = False, client_of_session: bool = False
    ) -> None:
        self.schema = schema
        self.table_name = table
        self.table = sql.Identifier(schema, table)
        self.events = sql.Identifier(schema, f"{table}_events")
        self.qualified = f"{schema}.{table}"
        # When a step started, for applied_at and durations: the transaction's start, except in
        # --lock-mode transaction, where the transaction starts before waiting for the lock and
        # sqlmig.locking.transaction notes the time the lock was granted (SET LOCAL sqlmig.step_started).
        self.since = sql.SQL(
            "coalesce(to_timestamp(nullif(current_setting('sqlmig.step_started', true), '')::float8), now())"
            if step_clock
            else "now()"
        )
        # Who ran it, for the event log: this machine's name, or for the rendered psql script
        # (run elsewhere, later) the address of the session that runs it.
        self.client = (
            sql.SQL("coalesce(host(inet_client_addr()), 'local socket')")
            if client_of_session
            else sql.SQL("%(host)s")
        )

    # -- reading ------------------------------------------------------------------------------

    def read(self, conn: psycopg.Connection) -> list[AppliedRecord]:
        """All rows, oldest first; [] when the table does not exist yet. One query."""
        # The columns of today's table, by name (the rollback text is left out: only `down`
        # needs it), typed by psycopg and put into records without a call per field (see
        # _records): 10,000 rows in 18 ms, where to_jsonb(t) rows, parsed and validated one by
        # one, took 300 ms. An older or hand-written table lacks some of them (status and
        # history do not upgrade it): to_jsonb reads any shape.
        names = _READ_COLUMNS
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), self.table
        )
        in_transaction = conn.info.transaction_status != pq.TransactionStatus.IDLE
        try:
            # Inside a transaction (--lock-mode transaction), a savepoint keeps the fallback's
            # error from aborting it.
            with conn.transaction() if in_transaction else contextlib.nullcontext():
                rows = conn.execute(query).fetchall()
            found = _records(rows)
        except psycopg.errors.UndefinedColumn:
            query = sql.SQL("SELECT to_jsonb(t) - 'rollback_sql' FROM {} t").format(self.table)
            found = [_clean(row[0]) for row in conn.execute(query).fetchall()]
        except psycopg.errors.UndefinedTable:
            return []
        return sorted(found, key=_order)

    def fingerprint_query(self) -> sql.Composed:
        """(row count, fingerprint()) of the whole table in one row: what --lock-mode
        transaction compares, under the lock, with the history a run expects."""
        return sql.SQL(
            "SELECT count(*), encode(sha256(convert_to(coalesce(string_agg("
            "version::text || E'\\t' || status || E'\\t' || coalesce(checksum, ''), E'\\n' "
            "ORDER BY version::text COLLATE \"C\"), ''), 'UTF8')), 'hex') FROM {}"
        ).format(self.table)

    def rollback_sqls(self, conn: psycopg.Connection) -> dict[str, str | None]:
        """version -> the rollback text stored when it was applied."""
        query = sql.SQL("SELECT version, rollback_sql FROM {}").format(self.table)
        try:
            return {str(v): text for v, text in conn.execute(query).fetchall()}
        except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
            return {}

    def read_events(self, conn: psycopg.Connection, limit: int | None) -> list[EventRecord]:
        query = sql.SQL(
            "SELECT id, at, action, version, name, outcome, duration_ms, actor, client_host,"
            " sqlmig_version, detail FROM {} ORDER BY id DESC"
        ).format(self.events)
        if limit is not None:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
        try:
            rows = conn.execute(query).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
        return [EventRecord(**dict(zip(_EVENT_FIELDS, row, strict=True))) for row in rows]

    # -- creating and upgrading -----------------------------------------------------------------

    def ensure(self, conn: psycopg.Connection) -> list[str]:
        """Create or upgrade the tables; call with the lock held. Returns what was changed."""
        changes: list[str] = []
        existing, has_events = self._columns(conn)
        if existing is None:
            if not self._schema_exists(conn):
                conn.execute(self.create_schema())
            conn.execute(self.create_table())
            existing = {"version": "character varying"}
            changes.append(f"created {self.qualified}")
        elif "version" not in existing:
            raise HistoryInconsistent(
                [
                    Problem(
                        code="foreign-table", message=f"{self.qualified} exists but has no `version` column"
                    )
                ],
                hint="use --table to pick another history table name",
            )
        missing = [n for n, _ in _COLUMNS if n not in existing]
        retype = existing.get("applied_at") == LOCAL_TIMESTAMP
        if missing or retype:
            with conn.transaction():
                for statement in self.add_columns(existing):
                    conn.execute(statement)
                if retype:
                    conn.execute(self.retype_applied_at())
                conn.execute(self.number_index())
            if len(existing) > 1:
                changes.append(f"upgraded {self.qualified}: added {', '.join(missing)}")
        if not has_events:
            conn.execute(self.create_events())
        return changes

    # The shape of both tables is written down once, in the statements below: `ensure` runs the
    # ones a live table needs, and the rendered psql script (sqlmig.psql.render) runs them all,
    # idempotently, under the same lock.

    def create_schema(self) -> sql.Composed:
        """Run only when the schema is missing (see ensure, and the rendered script's \\if):
        CREATE SCHEMA IF NOT EXISTS checks CREATE on the database first, which a
        least-privilege owner role (CREATE on its own schema only) does not have."""
        return sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema))

    def schema_missing_query(self) -> sql.Composed:
        return sql.SQL("SELECT to_regnamespace({}) IS NULL").format(
            sql.Literal(sql.Identifier(self.schema).as_string(None))
        )

    def create_table(self) -> sql.Composed:
        """A bare history table; every other column comes from add_columns."""
        return sql.SQL("CREATE TABLE IF NOT EXISTS {} (version varchar(50) PRIMARY KEY)").format(self.table)

    def _schema_exists(self, conn: psycopg.Connection) -> bool:
        row = conn.execute(self.schema_missing_query()).fetchone()
        return not (row and row[0])

    def add_columns(self, existing: Container[str] = ()) -> list[sql.Composed]:
        """ADD COLUMN IF NOT EXISTS for every column not in `existing`."""
        return [
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + ddl).format(
                self.table, sql.Identifier(name)
            )
            for name, ddl in _COLUMNS
            if name not in existing
        ]

    def retype_applied_at(self) -> sql.Composed:
        # Hand-written tables store local time without zone: keep the meaning.
        return sql.SQL("ALTER TABLE {} ALTER COLUMN applied_at TYPE timestamptz").format(self.table)

    def number_index(self) -> sql.Composed:
        return sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (number)").format(
            sql.Identifier(f"{self.table_name}_number_key"), self.table
        )

    def create_events(self) -> sql.Composed:
        return sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                 id bigserial PRIMARY KEY,
                 at timestamptz NOT NULL DEFAULT clock_timestamp(),
                 action text NOT NULL,
                 version text,
                 name text,
                 outcome text NOT NULL,
                 duration_ms integer,
                 actor text NOT NULL DEFAULT current_user,
                 client_host text,
                 sqlmig_version text,
                 detail text)"""
        ).format(self.events)

    def shape_query(self) -> sql.Composed:
        """For the psql script, which cannot look before it writes: does the table have a
        `version` column (else it is someone else's table), is applied_at still local time?"""
        return sql.SQL(
            """SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = {name}::regclass
                                AND attname = 'version' AND attnum > 0 AND NOT attisdropped)
                        AS has_version,
                      EXISTS (SELECT FROM pg_attribute WHERE attrelid = {name}::regclass
                                AND attname = 'applied_at' AND NOT attisdropped
                                AND format_type(atttypid, NULL) = {local})
                        AS local_applied_at"""
        ).format(name=sql.Literal(self.table.as_string(None)), local=sql.Literal(LOCAL_TIMESTAMP))

    def check_query(self) -> sql.Composed:
        """The rendered script's check before each step, to PREPARE once: parameters $1 the
        step's version, $2 its number, $3 the version the database must be at, $4 the file's
        checksum (up) or NULL (down), $5 the rollback checksum the script runs (down) or NULL,
        $6 what the step does and $7 the rollback file (for the message); $1 NULL: no step, only
        the version is checked. One row: `done` (up: the exact row, version and
        checksum, is applied; down: no row and the database is below the version: skip it),
        `ok` (at $3, nothing unsettled, and for up no row for this version or number, for down
        its row with that rollback), and `msg`, why not."""
        key = (
            "(SELECT array_agg(d[1]::numeric ORDER BY i) FROM regexp_matches({}, '[0-9]+', "
            "'g') WITH ORDINALITY AS x(d, i))"
        )
        return sql.SQL(
            "SELECT CASE WHEN $1::text IS NULL THEN false\n"
            "            WHEN $4::text IS NOT NULL THEN mine = 'applied' AND same\n"
            "            ELSE NOT taken AND (current IS NULL OR "
            + key.format("current")
            + " < "
            + key.format("$1::text")
            + ") END AS done,\n"
            "       current IS NOT DISTINCT FROM $3::text AND unsettled IS NULL\n"
            "         AND CASE WHEN $1::text IS NULL THEN true\n"
            "                  WHEN $4::text IS NOT NULL THEN NOT taken\n"
            "                  ELSE mine = 'applied' AND (stored IS NULL OR $5::text IS NULL\n"
            "                                             OR stored = $5::text) END AS ok,\n"
            "       'sqlmig: stopped before ' || $6::text || ': expected '\n"
            "         || coalesce('version ' || $3::text, 'no applied migration') || ', found '\n"
            "         || CASE WHEN unsettled IS NOT NULL THEN 'unsettled migrations ' || unsettled\n"
            "                      || ' (see `sqlmig status`, then `sqlmig repair`)'\n"
            "                 WHEN current IS DISTINCT FROM $3::text\n"
            "                 THEN coalesce('version ' || current, 'no applied migration')\n"
            "                 WHEN $4::text IS NOT NULL\n"
            "                 THEN 'a history row for ' || $1::text || ' or number ' || $2::int\n"
            "                      || ' already, with another checksum'\n"
            "                 WHEN mine IS DISTINCT FROM 'applied' THEN 'no history row for ' || $1::text\n"
            "                 ELSE 'that ' || $7::text || ' differs from the rollback stored when '\n"
            "                      || $1::text || ' was applied, which `sqlmig down` would run: '\n"
            "                      || 'use `sqlmig down`, or render with --from-database' END AS msg\n"
            "  FROM (SELECT (SELECT version FROM {t} WHERE status = 'applied'\n"
            "                 ORDER BY " + key.format("version") + " DESC NULLS LAST LIMIT 1) AS current,\n"
            "               (SELECT string_agg(version || ' (' || status || ')', ', ' ORDER BY version)\n"
            "                  FROM {t} WHERE status <> 'applied') AS unsettled,\n"
            "               EXISTS (SELECT FROM {t} WHERE version = $1::text OR number = $2::int) AS taken,\n"
            "               (SELECT status FROM {t} WHERE version = $1::text) AS mine,\n"
            "               EXISTS (SELECT FROM {t}\n"
            "                        WHERE version = $1::text AND checksum = $4::text) AS same,\n"
            "               (SELECT rollback_checksum FROM {t} WHERE version = $1::text) AS stored) AS s"
        ).format(t=self.table)

    def events_exist(self, conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.events.as_string(conn),)).fetchone()
        return bool(row and row[0])

    def _columns(self, conn: psycopg.Connection) -> tuple[dict[str, str] | None, bool]:
        """The history table's columns (None: no table), and whether the events table exists:
        one round trip, where a CREATE TABLE IF NOT EXISTS of it each run would be another."""
        rows = conn.execute(
            """SELECT a.attname, format_type(a.atttypid, NULL), to_regclass(%s) IS NOT NULL
                 FROM pg_attribute a
                WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped""",
            (self.events.as_string(conn), sql.Identifier(self.schema, self.table_name).as_string(conn)),
        ).fetchall()
        if not rows:
            return None, False
        return {name: typ for name, typ, _ in rows}, rows[0][2]

    # -- writing: (query, params) pairs so the executor can send them with a migration --------

    def insert(self, record: dict[str, Any], rollback_sql: str | None) -> tuple[sql.Composed, dict]:
        query = sql.SQL(
            """INSERT INTO {} (version, number, name, description, checksum, rollback_checksum,
                   canonical_checksum, rollback_sql, execution_ms, status, transactional,
                   baseline, sqlmig_version, applied_at, applied_by)
               VALUES (%(version)s, %(number)s, %(name)s, %(description)s, %(checksum)s,
                   %(rollback_checksum)s, %(canonical_checksum)s, %(rollback_sql)s,
                   coalesce(%(execution_ms)s,
                            (extract(epoch FROM clock_timestamp() - {since}) * 1000)::integer),
                   %(status)s, %(transactional)s, %(baseline)s, %(sqlmig_version)s,
                   {since}, current_user)"""
        ).format(self.table, since=self.since)
        return query, {**record, "rollback_sql": rollback_sql}

    def together(
        self, *parts: tuple[sql.Composable, dict], returning: str | None = None, elapsed: bool = False
    ) -> tuple[sql.Composed, dict]:
        """Bookkeeping statements (insert, event…) as one statement of data-modifying CTEs:
        within a migration's pipeline each statement costs ~0.15 ms of client and server time,
        as much as a small migration's DDL. `returning`: a column of the first part's rows,
        which the statement returns. The parts touch different tables, so the order in which
        PostgreSQL runs them does not matter; a parameter named in two parts has one value."""
        params: dict[str, Any] = {}
        for _, part_params in parts:
            for key, value in part_params.items():
                assert params.get(key, value) == value, f"parameter {key} given two values"
                params[key] = value
        first, *rest = (query for query, _ in parts)
        ctes = [
            sql.SQL("p0 AS ({}{})").format(
                first, sql.SQL(f" RETURNING {returning}") if returning else sql.SQL("")
            )
        ]
        ctes += [sql.SQL("p{} AS ({})").format(sql.Literal(i + 1), query) for i, query in enumerate(rest)]
        tail: sql.Composable = sql.SQL(f"SELECT {returning} FROM p0" if returning else "SELECT")
        if elapsed:  # the transaction's server time so far, in ms: a rollback's duration
            tail = sql.SQL("SELECT (extract(epoch FROM clock_timestamp() - {}) * 1000)::integer").format(
                self.since
            )
        return sql.SQL("WITH {} {}").format(sql.SQL(", ").join(ctes), tail), params

    def finish(self, version: str, status: str, error: str | None) -> tuple[sql.Composed, dict]:
        """Mark a no-transaction migration applied or failed, with its wall time so far."""
        query = sql.SQL(
            """UPDATE {} SET status = %(status)s, error = %(error)s,
                   execution_ms = (extract(epoch FROM clock_timestamp() - applied_at) * 1000)::integer
                WHERE version = %(version)s"""
        ).format(self.table)
        return query, {"version": version, "status": status, "error": error}

    def delete(self, version: str) -> tuple[sql.Composed, dict]:
        return sql.SQL("DELETE FROM {} WHERE version = %(version)s").format(self.table), {"version": version}

    def set_status(self, version: str, status: str) -> tuple[sql.Composed, dict]:
        return sql.SQL("UPDATE {} SET status = %(status)s WHERE version = %(version)s").format(self.table), {
            "version": version,
            "status": status,
        }

    def adopt(self, version: str, fields: dict[str, Any]) -> tuple[sql.Composed, dict]:
        """Fill in number/name/checksums of a row written by a hand-written script."""
        query = sql.SQL(
            """UPDATE {} SET number = %(number)s, name = %(name)s, checksum = %(checksum)s,
                   rollback_checksum = %(rollback_checksum)s, rollback_sql = %(rollback_sql)s,
                   canonical_checksum = %(canonical_checksum)s, transactional = %(transactional)s,
                   description = coalesce(description, %(description)s)
                WHERE version = %(version)s AND number IS NULL"""
        ).format(self.table)
        return query, {**fields, "version": version}

    def realign(self, version: str, checksum: str, canonical: str | None) -> tuple[sql.Composed, dict]:
        """Record a file's new checksums after a formatting-only edit (`repair --accept-formatting`)."""
        query = sql.SQL(
            """UPDATE {} SET checksum = %(checksum)s, canonical_checksum = %(canonical)s
                WHERE version = %(version)s"""
        ).format(self.table)
        return query, {"version": version, "checksum": checksum, "canonical": canonical}

    def set_rollback(self, version: str, text: str, checksum: str) -> tuple[sql.Composed, dict]:
        """Store a rollback's text and checksum (`repair --refresh-rollback`)."""
        query = sql.SQL(
            """UPDATE {} SET rollback_sql = %(text)s, rollback_checksum = %(checksum)s
                WHERE version = %(version)s"""
        ).format(self.table)
        return query, {"version": version, "text": text, "checksum": checksum}

    def event(
        self,
        action: str,
        outcome: str,
        *,
        version: str | None = None,
        name: str | None = None,
        duration_ms: int | None = None,
        detail: str | None = None,
    ) -> tuple[sql.Composed, dict]:
        query = sql.SQL(
            """INSERT INTO {} (action, version, name, outcome, duration_ms, actor, client_host,
                   sqlmig_version, detail)
               VALUES (%(action)s, %(version)s, %(name)s, %(outcome)s,
                   coalesce(%(duration_ms)s,
                            (extract(epoch FROM clock_timestamp() - {since}) * 1000)::integer),
                   CASE WHEN session_user = current_user THEN current_user::text
                        ELSE session_user || ' as ' || current_user END,
                   {client}, %(sqlmig_version)s, %(detail)s)"""
        ).format(self.events, since=self.since, client=self.client)
        return query, {
            "action": action,
            "version": version,
            "name": name,
            "outcome": outcome,
            "duration_ms": duration_ms,
            "host": _HOST,
            "sqlmig_version": __version__,
            "detail": detail,
        }


_HOST = socket.gethostname()


def fingerprint(rows: Iterable[tuple[str, str, str | None]]) -> str:
    """What History.fingerprint_query computes, from (version, status, checksum) rows."""
    lines = sorted(
        (f"{v}\t{s}\t{c or ''}" for v, s, c in rows), key=lambda line: line.split("\t", 1)[0].encode()
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _records(rows: list[tuple[Any, ...]]) -> list[AppliedRecord]:
    """AppliedRecords from rows of _READ_COLUMNS, typed by psycopg: each slot set directly,
    not through __init__, whose frozen setattr per field takes twice as long (26 ms for
    10,000 rows). A row with NULL where the field's default is not None goes through __init__,
    which puts the default there."""
    new, cls, setters, defaulted = object.__new__, AppliedRecord, _SETTERS, _DEFAULTED
    out: list[AppliedRecord] = []
    for row in rows:
        if None in defaulted(row):
            out.append(
                AppliedRecord(**{k: v for k, v in zip(_READ_COLUMNS, row, strict=True) if v is not None})
            )
            continue
        record = new(cls)
        for set_slot, value in zip(setters, (*row, None), strict=True):
            set_slot(record, value)
        out.append(record)
    return out


_FIELDS = frozenset(f.name for f in fields(AppliedRecord))


def _clean(row: dict[str, Any]) -> AppliedRecord:
    """A record from a to_jsonb row of any table: other columns are left out, NULLs take the
    field's default, and JSON's strings become the version and applied_at."""
    if row.get("version") is not None:
        row["version"] = str(row["version"])
    if isinstance(row.get("applied_at"), str):
        row["applied_at"] = datetime.fromisoformat(row["applied_at"])
    return AppliedRecord(**{k: v for k, v in row.items() if v is not None and k in _FIELDS})


def _order(record: AppliedRecord) -> tuple:
    # Rows adopted from a hand-written table have no number yet: order them by version.
    if record.number is not None:
        return (record.number, ())  # numbers are unique: no need to look at the version
    return (-1, version_key(record.version))
