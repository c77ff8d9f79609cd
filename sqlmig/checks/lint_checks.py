"""The checks behind `sqlmig lint`: which statements break which rule (lint_rules.py), on the AST.

A check looks at one parsed statement (pglast) with what came before it, and never at a database:
- a table is *new* when this same file created it earlier (it is empty and nobody uses it yet);
  any other table is taken to exist and hold rows, including one created by an earlier file of
  the set, since that file may have been applied long ago;
- NOT NULL checks (`CHECK (col IS NOT NULL)`) are remembered across the files of the set, so a
  `SET NOT NULL` can be judged against a check validated in an earlier migration;
- a `SET lock_timeout` earlier in the file bounds how long an ACCESS EXCLUSIVE lock may be waited
  for (`SET LOCAL` only counts in a transactional file: in autocommit it lasts one statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, VariableSetKind

from sqlmig.config.durations import format_duration, parse_duration

# Built-in functions whose value differs per row. now(), current_timestamp and the like are
# STABLE: since PostgreSQL 11 ADD COLUMN evaluates such a default once and stores it in the
# catalog, without touching the rows. Functions of your own are VOLATILE unless declared
# otherwise; the linter cannot see them, so review such defaults by hand.
VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "gen_random_uuid",
        "gen_random_bytes",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "clock_timestamp",
        "timeofday",
        "nextval",
    }
)
_SQL_NAMES = {
    "int8": "bigint",
    "int4": "integer",
    "int2": "smallint",
    "float8": "double precision",
    "float4": "real",
    "bool": "boolean",
    "bpchar": "char",
}
_SERIAL = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})

# ALTER TABLE subcommands that take a lock weaker than ACCESS EXCLUSIVE (PostgreSQL docs, ALTER
# TABLE): SHARE UPDATE EXCLUSIVE or SHARE ROW EXCLUSIVE. Any other subcommand counts as ACCESS
# EXCLUSIVE, the safe assumption.
_WEAKER_SUBCOMMANDS = frozenset(
    {
        AlterTableType.AT_ValidateConstraint,
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_SetOptions,
        AlterTableType.AT_ResetOptions,
        AlterTableType.AT_SetRelOptions,
        AlterTableType.AT_ResetRelOptions,
        AlterTableType.AT_ClusterOn,
        AlterTableType.AT_DropCluster,
        AlterTableType.AT_AttachPartition,
        AlterTableType.AT_EnableTrig,
        AlterTableType.AT_EnableAlwaysTrig,
        AlterTableType.AT_EnableReplicaTrig,
        AlterTableType.AT_DisableTrig,
        AlterTableType.AT_EnableTrigAll,
        AlterTableType.AT_DisableTrigAll,
        AlterTableType.AT_EnableTrigUser,
        AlterTableType.AT_DisableTrigUser,
    }
)
_ACCESS_EXCLUSIVE_MODE = 8  # LOCK TABLE's default mode, AccessExclusiveLock
_RELATIONS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
}


@dataclass(frozen=True)
class Hit:
    rule: str
    offset: int  # character offset in the statement's text
    message: str


@dataclass
class SetState:
    """What the earlier files of the set did that later files depend on."""

    # (table, column) -> {constraint name: validated} for CHECK (column IS NOT NULL)
    not_null_checks: dict[tuple[str, str], dict[str, bool]] = field(default_factory=dict)


@dataclass
class FileState:
    transactional: bool = True
    new_tables: set[str] = field(default_factory=set)
    new_indexes: set[str] = field(default_factory=set)
    added_not_valid: set[tuple[str, str]] = field(default_factory=set)  # (table, constraint)
    # The lock_timeout in force, in seconds: 0 = off, None = the session's (unknown to lint).
    lock_timeout: float | None = None


# A lock wait longer than this queues every query on the table for too long (strong_migrations
# and most guides use 10 s or less); the rule asks for a bounded wait up to this.
LOCK_TIMEOUT_MAX = 10.0


def _lock_wait_problem(seconds: float | None) -> str | None:
    """Why the lock_timeout in force does not bound an ACCESS EXCLUSIVE wait, or None."""
    if seconds is None:
        return "no lock_timeout set (the session's value applies, which may be none)"
    if seconds == 0:
        return "lock_timeout off"
    if seconds > LOCK_TIMEOUT_MAX:
        return f"lock_timeout {format_duration(seconds)}, longer than {format_duration(LOCK_TIMEOUT_MAX)}"
    return None


def check(stmt: ast.Node, fs: FileState, ss: SetState) -> list[Hit]:
    """The rules one statement breaks; updates the file and set state for the next ones."""
    hits: list[Hit] = []
    locked = _access_exclusive_target(stmt, fs)  # judged before this statement's own effects
    unbounded = _lock_wait_problem(fs.lock_timeout) if locked is not None else None
    if locked is not None and unbounded is not None:
        verb, target = locked
        hits.append(
            Hit(
                "missing-lock-timeout",
                0,
                f"{verb} takes an ACCESS EXCLUSIVE lock on {target} with {unbounded}: "
                "while it waits, every query on it waits too",
            )
        )
    if isinstance(stmt, ast.VariableSetStmt):
        _set_variable(stmt, fs)
    elif isinstance(stmt, ast.CreateStmt):
        hits += _create_table(stmt, fs, ss)
    elif isinstance(stmt, ast.CreateTableAsStmt):
        fs.new_tables.add(_name(stmt.into.rel if stmt.into else None))
    elif isinstance(stmt, ast.ViewStmt) and not stmt.replace:
        fs.new_tables.add(_name(stmt.view))
    elif isinstance(stmt, ast.IndexStmt):
        table = _name(stmt.relation)
        if not stmt.concurrent and table not in fs.new_tables:
            hits.append(
                Hit(
                    "index-not-concurrent",
                    0,
                    f"CREATE INDEX on existing table {table} without CONCURRENTLY "
                    "blocks writes to it until the index is built",
                )
            )
        if stmt.idxname and table in fs.new_tables:
            # Dropping it locks only a new table. A new index on an old table is no excuse:
            # DROP INDEX locks the table itself.
            fs.new_indexes.add(stmt.idxname)
    elif isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        hits += _alter_table(stmt, fs, ss)
    elif isinstance(stmt, ast.RenameStmt):
        hits += _rename(stmt, fs)
    elif isinstance(stmt, ast.DropStmt):
        hits += _drop(stmt, fs)
    return hits


# -- statements ---------------------------------------------------------------------------------


def _create_table(stmt: ast.CreateStmt, fs: FileState, ss: SetState) -> list[Hit]:
    table = _name(stmt.relation)
    hits: list[Hit] = []
    for element in stmt.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            hits += _column_types(element)
            for con in element.constraints or ():
                if con.contype == ConstrType.CONSTR_CHECK:
                    _remember_check(ss, table, con, validated=True, column=element.colname)
        elif isinstance(element, ast.Constraint) and element.contype == ConstrType.CONSTR_CHECK:
            _remember_check(ss, table, element, validated=True)
    fs.new_tables.add(table)
    return hits


def _alter_table(stmt: ast.AlterTableStmt, fs: FileState, ss: SetState) -> list[Hit]:
    table = _name(stmt.relation)
    existing = table not in fs.new_tables
    hits: list[Hit] = []
    for cmd in stmt.cmds or ():
        sub = cmd.subtype
        if sub == AlterTableType.AT_AddColumn:
            hits += _column_types(cmd.def_)
            if existing:
                hits += _add_column(cmd.def_, table)
        elif sub == AlterTableType.AT_AlterColumnType:
            hits += _column_types(cmd.def_)
            if existing:
                hits.append(
                    Hit(
                        "column-type-change",
                        _loc(cmd.def_.typeName),
                        f"ALTER COLUMN {cmd.name} TYPE {_type_name(cmd.def_.typeName)} "
                        f"on existing table {table}: rewrites it under an ACCESS "
                        "EXCLUSIVE lock and changes what running code reads",
                    )
                )
        elif sub == AlterTableType.AT_SetNotNull and existing:
            hits += _set_not_null(table, cmd.name, ss)
        elif sub == AlterTableType.AT_DropColumn and existing:
            hits.append(
                Hit(
                    "drop-column",
                    0,
                    f"DROP COLUMN {table}.{cmd.name}: running code that uses it breaks, and its data is gone",
                )
            )
        elif sub == AlterTableType.AT_AddConstraint:
            hits += _add_constraint(cmd.def_, table, existing, fs, ss)
        elif sub == AlterTableType.AT_ValidateConstraint:
            if fs.transactional and (table, cmd.name) in fs.added_not_valid:
                hits.append(
                    Hit(
                        "validate-in-same-transaction",
                        0,
                        f"VALIDATE CONSTRAINT {cmd.name} runs in the transaction that "
                        f"added it NOT VALID: the scan of {table} happens under the "
                        "ADD's lock",
                    )
                )
            for (t, _), checks in ss.not_null_checks.items():
                if t == table and cmd.name in checks:
                    checks[cmd.name] = True
        elif sub == AlterTableType.AT_DropConstraint:
            for (t, _), checks in ss.not_null_checks.items():
                if t == table:
                    checks.pop(cmd.name, None)
    return hits


def _add_column(col: ast.ColumnDef, table: str) -> list[Hit]:
    hits: list[Hit] = []
    name = col.colname
    where = _loc(col)
    constraints = list(col.constraints or ())
    kinds = {c.contype for c in constraints}
    default = next((c.raw_expr for c in constraints if c.contype == ConstrType.CONSTR_DEFAULT), None)
    type_name = _type_name(col.typeName)
    rewrite = None
    if type_name in _SERIAL:
        rewrite = f"{type_name} implies DEFAULT nextval(), a new value for every existing row"
    elif ConstrType.CONSTR_IDENTITY in kinds:
        rewrite = "an identity column takes nextval() for every existing row"
    elif any(c.contype == ConstrType.CONSTR_GENERATED and c.generated_kind == "s" for c in constraints):
        rewrite = "a stored generated column is computed for every existing row"
    elif default is not None:
        volatile = sorted(
            {
                _func_name(n)
                for n in _walk(default)
                if isinstance(n, ast.FuncCall) and _func_name(n) in VOLATILE_FUNCTIONS
            }
        )
        if volatile:
            rewrite = f"DEFAULT calls {', '.join(v + '()' for v in volatile)}, which is volatile"
    if rewrite:
        hits.append(
            Hit(
                "volatile-default",
                where,
                f"ADD COLUMN {name} to existing table {table}: {rewrite}, so the whole "
                "table is rewritten under an ACCESS EXCLUSIVE lock",
            )
        )
    elif (
        (kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY} or col.is_not_null)
        and default is None
        and ConstrType.CONSTR_GENERATED not in kinds
    ):
        hits.append(
            Hit(
                "required-column",
                where,
                f"ADD COLUMN {name} NOT NULL without a DEFAULT: fails if {table} has "
                "rows, and inserts by running code that omits it fail",
            )
        )
    for con in constraints:
        hits += _constraint_hits(con, table, f"ADD COLUMN {name}")
    return hits


def _add_constraint(
    con: ast.Constraint, table: str, existing: bool, fs: FileState, ss: SetState
) -> list[Hit]:
    if con.contype == ConstrType.CONSTR_CHECK:
        _remember_check(ss, table, con, validated=not con.skip_validation)
    if con.skip_validation and con.conname:
        fs.added_not_valid.add((table, con.conname))
    if not existing:
        return []
    name = f"ADD CONSTRAINT {con.conname}" if con.conname else "ADD CONSTRAINT"
    return _constraint_hits(con, table, name)


def _constraint_hits(con: ast.Constraint, table: str, what: str) -> list[Hit]:
    """Constraints added to an existing table: validated in place, or building an index."""
    kind = con.contype
    if kind in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN) and not con.skip_validation:
        label = "CHECK" if kind == ConstrType.CONSTR_CHECK else "FOREIGN KEY"
        return [
            Hit(
                "constraint-without-not-valid",
                _loc(con),
                f"{what} {label} without NOT VALID checks every row of existing table "
                f"{table} while blocking writes",
            )
        ]
    if (
        kind in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION)
        and not con.indexname
    ):
        label = {
            ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
            ConstrType.CONSTR_UNIQUE: "UNIQUE",
            ConstrType.CONSTR_EXCLUSION: "EXCLUDE",
        }[kind]
        return [
            Hit(
                "constraint-builds-index",
                _loc(con),
                f"{what} {label} builds an index on existing table {table} under an ACCESS EXCLUSIVE lock",
            )
        ]
    return []


def _set_not_null(table: str, column: str, ss: SetState) -> list[Hit]:
    checks = ss.not_null_checks.get((table, column), {})
    if any(checks.values()):
        return []
    if checks:
        pending = ", ".join(sorted(checks))
        detail = f"CHECK {pending} is NOT VALID: VALIDATE CONSTRAINT it in an earlier migration"
    else:
        detail = f"no validated CHECK ({column} IS NOT NULL) precedes it"
    return [
        Hit(
            "set-not-null",
            0,
            f"SET NOT NULL on {table}.{column} scans the whole table under an ACCESS "
            f"EXCLUSIVE lock: {detail}",
        )
    ]


def _rename(stmt: ast.RenameStmt, fs: FileState) -> list[Hit]:
    if stmt.relation is None:
        return []
    table = _name(stmt.relation)
    if stmt.renameType in _RELATIONS:
        if table in fs.new_tables:
            fs.new_tables.discard(table)
            fs.new_tables.add(stmt.newname or "?")
            return []
        return [
            Hit(
                "rename-table",
                0,
                f"ALTER {_RELATIONS[stmt.renameType].upper()} {table} RENAME TO "
                f"{stmt.newname}: running code that uses {table} breaks",
            )
        ]
    if (
        stmt.renameType == ObjectType.OBJECT_COLUMN
        and stmt.relationType in _RELATIONS
        and table not in fs.new_tables
    ):
        return [
            Hit(
                "rename-column",
                0,
                f"RENAME COLUMN {table}.{stmt.subname} TO {stmt.newname}: running code that "
                f"uses {stmt.subname} breaks",
            )
        ]
    return []


def _drop(stmt: ast.DropStmt, fs: FileState) -> list[Hit]:
    names = [_qualified_last(obj) for obj in stmt.objects or ()]
    if stmt.removeType in _RELATIONS:
        hits = [
            Hit(
                "drop-table",
                0,
                f"DROP {_RELATIONS[stmt.removeType].upper()} {name}: running code that uses "
                "it breaks, and its data is gone",
            )
            for name in names
            if name not in fs.new_tables
        ]
        fs.new_tables.difference_update(names)
        return hits
    if stmt.removeType == ObjectType.OBJECT_INDEX and not stmt.concurrent:
        old = [name for name in names if name not in fs.new_indexes]
        fs.new_indexes.difference_update(names)
        return [
            Hit(
                "drop-index-not-concurrent",
                0,
                f"DROP INDEX {name} without CONCURRENTLY locks its table against reads and writes",
            )
            for name in old
        ]
    return []


def _set_variable(stmt: ast.VariableSetStmt, fs: FileState) -> None:
    if stmt.kind == VariableSetKind.VAR_RESET_ALL:
        fs.lock_timeout = None
    if (stmt.name or "").lower() != "lock_timeout":
        return
    if stmt.kind != VariableSetKind.VAR_SET_VALUE:  # RESET, SET … TO DEFAULT
        fs.lock_timeout = None
    elif stmt.is_local and not fs.transactional:
        return  # SET LOCAL outside a transaction block lasts one statement: no effect here
    else:
        value = stmt.args[0].val if stmt.args else None
        raw = next((getattr(value, a) for a in ("ival", "sval", "fval") if hasattr(value, a)), "")
        try:
            fs.lock_timeout = parse_duration(str(raw).strip(), bare="ms")  # as the server reads it
        except ValueError:
            fs.lock_timeout = None


# -- locks --------------------------------------------------------------------------------------


def _access_exclusive_target(stmt: ast.Node, fs: FileState) -> tuple[str, str] | None:
    """(statement, what it locks) when it takes ACCESS EXCLUSIVE on a table that exists."""

    def existing(rel: ast.RangeVar | None) -> bool:
        return rel is not None and rel.relname not in fs.new_tables

    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == ObjectType.OBJECT_TABLE:
        strong = [
            c
            for c in stmt.cmds or ()
            if c.subtype not in _WEAKER_SUBCOMMANDS
            and not (
                c.subtype == AlterTableType.AT_AddConstraint and c.def_.contype == ConstrType.CONSTR_FOREIGN
            )
        ]
        if strong and existing(stmt.relation):
            return "ALTER TABLE", _name(stmt.relation)
    elif (
        isinstance(stmt, ast.RenameStmt)
        and existing(stmt.relation)
        and (
            stmt.renameType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_TABCONSTRAINT)
            or (stmt.renameType == ObjectType.OBJECT_COLUMN and stmt.relationType == ObjectType.OBJECT_TABLE)
        )
    ):
        return "ALTER TABLE … RENAME", _name(stmt.relation)
    elif isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_TABLE:
        old = [n for n in map(_qualified_last, stmt.objects or ()) if n not in fs.new_tables]
        if old:
            return "DROP TABLE", old[0]
    elif (
        isinstance(stmt, ast.DropStmt) and stmt.removeType == ObjectType.OBJECT_INDEX and not stmt.concurrent
    ):
        old = [n for n in map(_qualified_last, stmt.objects or ()) if n not in fs.new_indexes]
        if old:
            return "DROP INDEX", f"the table of index {old[0]}"
    elif isinstance(stmt, ast.TruncateStmt):
        old = [r.relname for r in stmt.relations or () if existing(r)]
        if old:
            return "TRUNCATE", old[0]
    elif isinstance(stmt, ast.LockStmt) and stmt.mode == _ACCESS_EXCLUSIVE_MODE:
        old = [r.relname for r in stmt.relations or () if existing(r)]
        if old:
            return "LOCK TABLE", old[0]
    elif isinstance(stmt, ast.RuleStmt) and existing(stmt.relation):
        return "CREATE RULE", _name(stmt.relation)
    elif isinstance(stmt, ast.ClusterStmt) and existing(stmt.relation):
        return "CLUSTER", _name(stmt.relation)
    elif isinstance(stmt, ast.VacuumStmt) and any(
        o.defname == "full" and _option_on(o.arg) for o in stmt.options or ()
    ):
        old = [r.relation.relname for r in stmt.rels or () if existing(r.relation)]
        if old:
            return "VACUUM FULL", old[0]
    return None


def _option_on(arg: Any) -> bool:
    """`VACUUM (FULL)`, `(FULL true)`, `(FULL on)`: on; `(FULL false)`, `(FULL 0)`: off."""
    value = next((getattr(arg, a) for a in ("boolval", "ival", "sval") if hasattr(arg, a)), True)
    return str(value).lower() not in ("false", "off", "0", "no")


# -- types --------------------------------------------------------------------------------------


def _column_types(col: ast.ColumnDef | None) -> list[Hit]:
    if col is None or col.typeName is None:
        return []
    tn = col.typeName
    names = [n.sval for n in tn.names or ()]
    where = _loc(tn)
    label = f"column {col.colname}" if col.colname else "the new type"
    if names == ["pg_catalog", "timestamp"] or names == ["timestamp"]:
        return [Hit("prefer-timestamptz", where, f"{label} is timestamp without time zone: use timestamptz")]
    if names == ["pg_catalog", "varchar"] and tn.typmods:
        return [
            Hit(
                "prefer-text",
                where,
                f"{label} is varchar({_typmod(tn)}): use text (with a CHECK on length if "
                "the limit is a real rule)",
            )
        ]
    if names == ["pg_catalog", "bpchar"]:
        return [
            Hit("prefer-text", where, f"{label} is char({_typmod(tn)}), which pads with spaces: use text")
        ]
    if names[-1:] == ["money"]:
        return [Hit("prefer-numeric", where, f"{label} is money: use numeric(p, s)")]
    if len(names) == 1 and names[0] in _SERIAL:
        return [
            Hit("prefer-identity", where, f"{label} is {names[0]}: use bigint GENERATED ALWAYS AS IDENTITY")
        ]
    return []


# -- helpers ------------------------------------------------------------------------------------


def _remember_check(
    ss: SetState, table: str, con: ast.Constraint, *, validated: bool, column: str | None = None
) -> None:
    """Record CHECK (col IS NOT NULL), the check that lets SET NOT NULL skip its scan."""
    expr = con.raw_expr
    if not (
        isinstance(expr, ast.NullTest)
        and expr.nulltesttype is not None
        and expr.nulltesttype.name == "IS_NOT_NULL"
        and isinstance(expr.arg, ast.ColumnRef)
    ):
        return
    fields = expr.arg.fields or ()
    col = fields[-1].sval if fields and isinstance(fields[-1], ast.String) else column
    if col is None:
        return
    ss.not_null_checks.setdefault((table, col), {})[con.conname or f"<unnamed {col}>"] = validated


def _walk(node: Any) -> Iterator[ast.Node]:
    if isinstance(node, ast.Node):
        yield node
        for attr in node:
            yield from _walk(getattr(node, attr))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item)


def _func_name(call: ast.FuncCall) -> str:
    return str(call.funcname[-1].sval).lower() if call.funcname else "?"


def _type_name(tn: ast.TypeName | None) -> str:
    """The type as written in SQL: `bigint`, `varchar(20)`, `numeric(10, 2)`, `text[]`."""
    if tn is None:
        return "?"
    names = [n.sval for n in tn.names or ()]
    if names[:1] == ["pg_catalog"]:
        names = [_SQL_NAMES.get(names[1], names[1]), *names[2:]]
    mods = f"({_typmod(tn)})" if tn.typmods else ""
    return ".".join(names) + mods + "[]" * len(tn.arrayBounds or ())


def _typmod(tn: ast.TypeName) -> str:
    return ", ".join(str(getattr(m.val, "ival", "?")) for m in tn.typmods or () if isinstance(m, ast.A_Const))


def _qualified_last(obj: Any) -> str:
    parts = obj if isinstance(obj, list | tuple) else (obj,)
    return str(parts[-1].sval) if parts and isinstance(parts[-1], ast.String) else "?"


def _name(rel: Any) -> str:
    """A relation's name (RangeVar.relname), "?" where the tree has none."""
    name = getattr(rel, "relname", None)
    return name if isinstance(name, str) else "?"


def _loc(node: ast.Node | None) -> int:
    location = getattr(node, "location", None)
    return location if isinstance(location, int) and location >= 0 else 0
