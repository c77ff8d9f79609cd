"""A normalized description of a database schema read from the catalogs, and a pure diff of two.

`take` reads every kind of object in one pipelined round trip (one query per kind) and leaves
out system schemas, objects that belong to extensions (the extension itself is listed) and
sqlmig's own history/events/snapshots tables. Nothing in a snapshot depends on OIDs, physical
order or data, so the same schema built twice, or built, rolled back and rebuilt, gives the same
snapshot. Column order is not compared: PostgreSQL cannot move a column, so a rollback that
re-adds a dropped column could never pass.

Objects are grouped by kind, keyed by their quoted, schema-qualified name; attributes whose name
starts with `_` are structure (the table an index or column belongs to), not compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq

from sqlmig.db.compare import FORMAT, Snapshot

_OWN = """WITH own AS (
  SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = %(schema)s AND c.relname = ANY (%(tables)s::text[]))
"""
# System schemas: pg_catalog, pg_toast, pg_temp_N…, information_schema (names starting with pg_
# are reserved, so no user schema is hidden by this).
# `scope`: one schema, or NULL for all of them (see take).
_USER_NS = (
    "left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema' "
    "AND (%(scope)s::text IS NULL OR n.nspname = %(scope)s::text)"
)


def _member(catalog: str, oid: str) -> str:
    # IN, not EXISTS: the planner makes it one hashed set of the (few) extension members, not a
    # pg_depend probe per row, which cost 25 of the column query's 40 ms at 1,000 tables. The
    # set is found from the extensions (pg_depend's index on the referenced object), not by a
    # scan of all of pg_depend, which grows with every table of every tenant.
    return (
        f"({oid} IN (SELECT e.objid FROM pg_extension x JOIN pg_depend e "
        "ON e.refclassid = 'pg_extension'::regclass AND e.refobjid = x.oid "
        f"WHERE e.classid = '{catalog}'::regclass AND e.deptype = 'e'))"
    )


def _acl(column: str, kind: str, owner: str) -> str:
    # NULL means "the default privileges": spell them out, so GRANT then REVOKE compares equal.
    return (
        f"(SELECT jsonb_agg(a::text ORDER BY a::text) FROM unnest(coalesce({column}, "
        f'acldefault(({kind})::"char", {owner}))) a)'
    )


def _enabled(column: str) -> str:
    """Triggers and rules share the firing-mode letters (origin, disabled, replica, always)."""
    return (
        f"CASE {column} WHEN 'O' THEN 'yes' WHEN 'D' THEN 'no' "
        "WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END"
    )


_REL = "quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
# A table-level object (column, constraint, trigger…) of a user table that is not ours.
_TABLE_OK = f"{_USER_NS} AND c.oid NOT IN (SELECT oid FROM own) AND NOT {_member('pg_class', 'c.oid')}"

# Each query returns (key, attributes). Keys are unique within a kind.
_QUERIES: dict[str, str] = {
    "schema": f"""
SELECT quote_ident(n.nspname), json_strip_nulls(json_build_object(
         'kind', 'schema', 'owner', pg_get_userbyid(n.nspowner),
         'privileges', {_acl("n.nspacl", "'n'", "n.nspowner")},
         'comment', obj_description(n.oid, 'pg_namespace')))
  FROM pg_namespace n
 WHERE {_USER_NS} AND NOT {_member("pg_namespace", "n.oid")}""",
    "extension": """
SELECT quote_ident(x.extname), json_build_object(
         'kind', 'extension', 'version', x.extversion, 'schema', x.extnamespace::regnamespace::text)
  FROM pg_extension x""",
    "type": f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname), json_strip_nulls(json_build_object(
         'kind', CASE t.typtype WHEN 'e' THEN 'enum type' WHEN 'd' THEN 'domain'
                                WHEN 'c' THEN 'composite type' WHEN 'r' THEN 'range type' END,
         '_schema', quote_ident(n.nspname),
         'labels', CASE WHEN t.typtype = 'e' THEN (
             SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
              WHERE e.enumtypid = t.oid) END,
         'base type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
         'not null', CASE WHEN t.typtype = 'd' THEN t.typnotnull END,
         'default', t.typdefault,
         'checks', CASE WHEN t.typtype = 'd' THEN (
             SELECT jsonb_agg(k.conname || ': ' || pg_get_constraintdef(k.oid) ORDER BY k.conname)
               FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c') END,
         'attributes', CASE WHEN t.typtype = 'c' THEN (
             SELECT jsonb_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                              ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
                AND NOT a.attisdropped) END,
         'subtype', CASE WHEN t.typtype = 'r' THEN (
             SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) END,
         'owner', pg_get_userbyid(t.typowner),
         'privileges', {_acl("t.typacl", "'T'", "t.typowner")},
         'comment', obj_description(t.oid, 'pg_type')))
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE {_USER_NS} AND t.typtype IN ('e', 'd', 'c', 'r')
   AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   AND NOT {_member("pg_type", "t.oid")}""",
    "relation": _OWN
    + f"""
SELECT {_REL}, json_strip_nulls(json_build_object(
         'kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                   WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                   WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' END,
         '_schema', quote_ident(n.nspname),
         '_parent', (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname)
                       FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                       JOIN pg_namespace tn ON tn.oid = t.relnamespace
                      WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                        AND d.deptype IN ('a', 'i') LIMIT 1),
         'owner', pg_get_userbyid(c.relowner),
         'privileges', {_acl("c.relacl", "CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END", "c.relowner")},
         'unlogged', CASE WHEN c.relpersistence = 'u' THEN true END,
         'options', (SELECT jsonb_agg(o ORDER BY o) FROM unnest(c.reloptions) o),
         'row security', CASE WHEN c.relrowsecurity THEN
                           CASE WHEN c.relforcerowsecurity THEN 'forced' ELSE 'enabled' END END,
         'partition key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
         'partition of', (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
                            FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhrelid = c.oid AND c.relispartition),
         'partition bound', CASE WHEN c.relispartition
                              THEN pg_get_expr(c.relpartbound, c.oid) END,
         'inherits', (SELECT jsonb_agg(quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
                                       ORDER BY i.inhseqno)
                        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                        JOIN pg_namespace pn ON pn.oid = p.relnamespace
                       WHERE i.inhrelid = c.oid AND NOT c.relispartition),
         'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
         'sequence', format_type(s.seqtypid, NULL) || ' start ' || s.seqstart
                     || ' increment ' || s.seqincrement || ' min ' || s.seqmin
                     || ' max ' || s.seqmax || ' cache ' || s.seqcache
                     || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END,
         'comment', ds.description))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
  LEFT JOIN pg_description ds ON ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass
                             AND ds.objsubid = 0
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_TABLE_OK}
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass
                      AND d.refobjid IN (SELECT oid FROM own))""",
    "column": _OWN
    + f"""
SELECT {_REL} || '.' || quote_ident(a.attname), json_strip_nulls(json_build_object(
         'kind', 'column', '_parent', {_REL},
         'type', format_type(a.atttypid, a.atttypmod),
         'not null', a.attnotnull,
         'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
         'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid)
                             || CASE a.attgenerated WHEN 's' THEN ' stored' ELSE ' virtual' END END,
         'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
         'collation', CASE WHEN a.attcollation <> t.typcollation THEN (
             SELECT quote_ident(co.collname) FROM pg_collation co WHERE co.oid = a.attcollation) END,
         'privileges', CASE WHEN a.attacl IS NOT NULL THEN (
             SELECT jsonb_agg(x::text ORDER BY x::text) FROM unnest(a.attacl) x) END,
         'comment', ds.description))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_description ds ON ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass
                             AND ds.objsubid = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f') AND {_TABLE_OK}""",
    # NOT NULL constraints (PostgreSQL 18 lists them here too) are the column's `not null`.
    "constraint": _OWN
    + f"""
SELECT {_REL} || '.' || quote_ident(k.conname), json_strip_nulls(json_build_object(
         'kind', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint'
                   WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check constraint'
                   WHEN 'x' THEN 'exclusion constraint' END,
         '_parent', {_REL},
         'definition', pg_get_constraintdef(k.oid),
         'validated', k.convalidated,
         'comment', ds.description))
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_description ds ON ds.objoid = k.oid
                             AND ds.classoid = 'pg_constraint'::regclass AND ds.objsubid = 0
 WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND {_TABLE_OK}
   -- a foreign key to a partitioned table has one internal copy per referenced partition
   AND (k.conparentid = 0 OR NOT EXISTS (SELECT 1 FROM pg_constraint p
                                          WHERE p.oid = k.conparentid AND p.conrelid = k.conrelid))""",
    # Indexes that implement a constraint are described by the constraint.
    "index": _OWN
    + f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(ic.relname), json_strip_nulls(json_build_object(
         'kind', 'index', '_parent', {_REL},
         'definition', pg_get_indexdef(i.indexrelid),
         'valid', i.indisvalid,
         'clustered', CASE WHEN i.indisclustered THEN true END,
         'comment', ds.description))
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_description ds ON ds.objoid = i.indexrelid
                             AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = 0
 WHERE {_TABLE_OK}
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                      AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))""",
    "function": f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname)
         || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       json_strip_nulls(json_build_object(
         'kind', CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure'
                   WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function' END,
         '_schema', quote_ident(n.nspname),
         'returns', pg_get_function_result(p.oid),
         'language', (SELECT lanname FROM pg_language WHERE oid = p.prolang),
         'definition', CASE WHEN p.prokind <> 'a' THEN 'md5 ' || md5(pg_get_functiondef(p.oid))
                            ELSE (SELECT g.aggtransfn::text || ' ' || g.aggfinalfn::text || ' '
                                         || format_type(g.aggtranstype, NULL)
                                         || coalesce(' ' || g.agginitval, '')
                                    FROM pg_aggregate g WHERE g.aggfnoid = p.oid) END,
         'owner', pg_get_userbyid(p.proowner),
         'privileges', {_acl("p.proacl", "'f'", "p.proowner")},
         'comment', obj_description(p.oid, 'pg_proc')))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER_NS} AND NOT {_member("pg_proc", "p.oid")}""",
    "trigger": _OWN
    + f"""
SELECT {_REL} || '.' || quote_ident(g.tgname), json_strip_nulls(json_build_object(
         'kind', 'trigger', '_parent', {_REL},
         'definition', pg_get_triggerdef(g.oid),
         'enabled', {_enabled("g.tgenabled")},
         'comment', obj_description(g.oid, 'pg_trigger')))
  FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT g.tgisinternal AND {_TABLE_OK}""",
    "rule": _OWN
    + f"""
SELECT {_REL} || '.' || quote_ident(r.rulename), json_strip_nulls(json_build_object(
         'kind', 'rule', '_parent', {_REL},
         'definition', pg_get_ruledef(r.oid),
         'enabled', {_enabled("r.ev_enabled")},
         'comment', obj_description(r.oid, 'pg_rewrite')))
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE r.rulename <> '_RETURN' AND {_TABLE_OK}""",
    "policy": _OWN
    + f"""
SELECT {_REL} || '.' || quote_ident(pol.polname), json_strip_nulls(json_build_object(
         'kind', 'policy', '_parent', {_REL},
         'command', CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                      WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
         'permissive', pol.polpermissive,
         'roles', (SELECT jsonb_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
                                    ORDER BY 1) FROM unnest(pol.polroles) r),
         'using', pg_get_expr(pol.polqual, pol.polrelid),
         'with check', pg_get_expr(pol.polwithcheck, pol.polrelid)))
  FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_TABLE_OK}""",
}


# verify's function query: a body is compared with its whitespace normalized (indentation, blank
# lines, line breaks: a rollback that restores a function written otherwise is no leak), and its
# whole definition comes along, uncompared (`_source`), to show the lines that really differ.
_DEFINITION = "'definition', CASE WHEN p.prokind <> 'a' THEN 'md5 ' || md5(pg_get_functiondef(p.oid))"
_SOURCED = dict(
    _QUERIES,
    function=_QUERIES["function"].replace(
        _DEFINITION,
        (
            "'_source', CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,\n"
            "         'definition', CASE WHEN p.prokind <> 'a' THEN 'md5 ' || md5(regexp_replace("
            r"btrim(pg_get_functiondef(p.oid), E' \t\r\n'), E'\\s+', ' ', 'g'))"
        ),
    ),
)
assert _SOURCED["function"] != _QUERIES["function"]


def take(
    conn: psycopg.Connection,
    own_schema: str,
    own_tables: Sequence[str],
    *,
    sources: bool = False,
    scope: str | None = None,
) -> Snapshot:
    """Read the schema of the connected database, leaving out `own_schema`.`own_tables`.
    `sources`: functions as verify compares them (see _SOURCED); not for recorded snapshots.
    `scope`: only the objects of this schema (and the extensions), else every user schema.

    One round trip: the queries go out together in a pipeline (see `run`). Raises psycopg.Error.
    """
    params = {"schema": own_schema, "tables": list(own_tables), "scope": scope}
    queries = _SOURCED if sources else _QUERIES
    cursors = run(conn, [(_aggregated(q), params if "%(" in q else None) for q in queries.values()])
    objects = {
        kind: cur.fetchone()[0]  # type: ignore[index]
        for kind, cur in zip(_QUERIES, cursors, strict=True)
    }
    return Snapshot(server_version=conn.info.server_version // 10000, objects=objects)


def fingerprint(
    conn: psycopg.Connection, own_schema: str, own_tables: Sequence[str], *, scope: str | None = None
) -> str:
    """The fingerprint of the live schema (see `document`), computed by the server: the
    snapshot itself is not sent, parsed and hashed here (2 MB of JSON at 1,000 tables)."""
    params = {"schema": own_schema, "tables": list(own_tables), "scope": scope}
    [cur] = run(conn, [(f"SELECT {FINGERPRINT_OF.format('d.doc')} FROM ({document()}) AS d(doc)", params)])
    return cur.fetchone()[0]  # type: ignore[index]


# The fingerprint of a snapshot document, in SQL: what `sqlmig status` compares.
FINGERPRINT_OF = "encode(sha256(convert_to(({})::text, 'UTF8')), 'hex')"

# Every catalog a snapshot reads, directly or through pg_get_*def / format_type. DDL that can
# change a snapshot inserts, deletes or updates (giving it a new xmin) a row of one of them, while
# VACUUM and ANALYZE update pg_class in place (same xmin) and leave the stamp alone.
_STAMPED = (
    "pg_namespace",
    "pg_extension",
    "pg_type",
    "pg_enum",
    "pg_range",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_constraint",
    "pg_index",
    "pg_inherits",
    "pg_sequence",
    "pg_depend",
    "pg_description",
    "pg_proc",
    "pg_aggregate",
    "pg_language",
    "pg_trigger",
    "pg_rewrite",
    "pg_policy",
    "pg_collation",
    "pg_opclass",
    "pg_operator",
)


def stamp() -> str:
    """A query for the catalog stamp: per catalog the row count and the sum of the rows' xmin,
    and the role names (owners print by name; pg_authid itself is not readable by all).

    Equal stamps mean no catalog row was added, removed or updated since, so the schema, and its
    fingerprint, are what they were: `status` then skips the fingerprint, ~10x the cost (8 vs
    84 ms at 1,000 tables). Unequal stamps prove nothing (a temporary table, a TRUNCATE or a
    REINDEX change them too): the fingerprint decides, as without a stamp. The database's whole
    catalogs are stamped, not only the snapshot's objects: filtering would cost what it saves.
    """
    # The sum of the xmins without turning each into text (3 vs 8 ms at 1,000 tables): age(x)
    # is C - x modulo 2^32 for the transaction's reference xid C, so (rows * C - sum of ages)
    # modulo 2^32 is the sum of the xmins, whatever C is. Rows made by initdb (xmin 1, not a
    # normal xid) have age INT_MAX whatever C is, so they are counted apart.
    parts = " UNION ALL ".join(
        f"SELECT '{c}' AS c, count(*) AS n, count(*) FILTER (WHERE age(xmin) = {_SPECIAL}) AS k,"
        f" sum(age(xmin)) FILTER (WHERE age(xmin) <> {_SPECIAL}) AS s FROM pg_catalog.{c}"
        for c in _STAMPED
    )
    # mod(), not %: this text goes into queries with parameters, where % is a placeholder.
    xmins = f"mod(mod((n - k) * r.ref - coalesce(s, 0), {_MOD}) + {_MOD}, {_MOD})"
    return (
        f"SELECT md5(string_agg(c || ':' || n || ':' || k || ':' || {xmins}, ',' ORDER BY c)"
        " || ';' || (SELECT string_agg(oid::text || ' ' || rolname, ',' ORDER BY oid)"
        f" FROM pg_catalog.pg_roles)) FROM ({parts}) AS x,"
        " (SELECT age('3'::xid)::bigint + 3 AS ref) AS r"
    )  # 3: the first normal xid


_SPECIAL = 2147483647  # what age() gives for a xid that is not normal (bootstrap, frozen)
_MOD = 4294967296


def document() -> str:
    """A query for the whole snapshot as one jsonb document, kind → name → attributes, to run
    under `run` with the parameters `schema`, `tables` and `scope`. jsonb's text is canonical (keys in
    one order, no duplicates, no whitespace choices): its SHA-256 is the fingerprint."""
    kinds = ", ".join(f"'{kind}', ({_aggregated(q)})::jsonb" for kind, q in _QUERIES.items())
    return f"SELECT jsonb_build_object({kinds})"


def run(
    conn: psycopg.Connection, queries: Sequence[tuple[str, dict[str, Any] | None]], *, read_only: bool = True
) -> list[psycopg.Cursor]:
    """Run catalog queries in one round trip, in a pipeline, and return their cursors.

    On an idle connection they run in one transaction (REPEATABLE READ, so all see the same
    catalogs; READ ONLY unless told otherwise) with `search_path` set to pg_catalog alone, so
    that names print schema-qualified whatever the role's or session's search_path: the same
    schema reads the same for every user (a monitoring role running `status` included).
    """
    own_transaction = conn.info.transaction_status == pq.TransactionStatus.IDLE
    try:
        with conn.pipeline():
            if own_transaction:
                conn.execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ" + (" READ ONLY" if read_only else ""),
                    prepare=False,
                )
                conn.execute("SET LOCAL search_path = pg_catalog", prepare=False)
            else:  # in the caller's transaction (verify): pg_catalog alone too, then back
                saved = conn.cursor()
                saved.execute(
                    "SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', true)",
                    prepare=False,
                )
            cursors = [conn.cursor() for _ in queries]
            for cur, (query, params) in zip(cursors, queries, strict=True):
                cur.execute(query, params, prepare=False)  # type: ignore[arg-type]
            if own_transaction:
                conn.execute("COMMIT", prepare=False)
        if not own_transaction:
            row = saved.fetchone()
            conn.execute(
                "SELECT set_config('search_path', %s, true)", (row[0] if row else "",), prepare=False
            )
    except psycopg.Error:
        if own_transaction and not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise
    return cursors


def _aggregated(query: str) -> str:
    # One JSON object per kind: one value to parse instead of one per row. Keys are unique;
    # were one not, the ordering makes the same one win every time.
    return f"SELECT coalesce(json_object_agg(k, a ORDER BY k, a::text), '{{}}') FROM ({query}\n) AS q(k, a)"


__all__ = ["FINGERPRINT_OF", "FORMAT", "document", "fingerprint", "run", "stamp", "take"]
