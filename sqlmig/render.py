"""`sqlmig render`: what `up`/`down` would do, as one self-contained psql script.

For the `docker exec -i db psql` workflow and for the reviewing DBA. The script takes the
engine's advisory lock, creates or upgrades the same history tables (History's statements),
and runs each migration as the engine does: the statements execute.prepare returns, the
history row and event that History.insert/event write (values from execute.record_fields,
inlined with psycopg's own literal quoting), one transaction per file, RESET ALL after it.
Before each step a guard stops psql unless the database is at the version the script expects,
so a script run twice, or against the wrong database, changes nothing.

Rendering reads only the files, unless `from_database` asks to start from the database's
current version (read-only: no lock, nothing created).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import psycopg
from psycopg import sql

from sqlmig import files as files_mod
from sqlmig import lock, plan, sqltext, timeouts
from sqlmig.config import Config
from sqlmig.connect import connect, describe, refused, session_statements
from sqlmig.errors import ConnectError, HistoryInconsistent, InvalidInput
from sqlmig.execute import check_all, record_fields
from sqlmig.history import History
from sqlmig.models import AppliedRecord, Migration, MigrationSet, PlanStep, Version

Direction = Literal["up", "down"]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_DETAIL = "psql script from `sqlmig render`"
_RUN = "psql -X -v ON_ERROR_STOP=1 -d DATABASE -f script.sql"


def render(config: Config, direction: Direction = "up", *, start: str | None = None,
           to: str | None = None, steps: int | None = None, from_database: bool = False,
           allow: Iterable[str] = ()) -> str:
    """The psql script doing what `up` (or `down`) would do; bad input is refused as they do.

    `start` (--from) is the version, or number, the database is assumed to be at: by default
    none for `up` and the newest file for `down`. `to` and `steps` mean what they mean for
    `up`/`down`. `from_database` reads the history instead of assuming, and checks it as `up`
    (with `allow`) or `down` would.
    """
    allow = tuple(allow)
    bad = [a for a in allow if a not in plan.ALLOWABLE]
    if bad:
        raise InvalidInput(f"--allow {bad[0]}: expected one of {', '.join(plan.ALLOWABLE)}")
    if from_database and start is not None:
        raise InvalidInput("give either --from or --from-database, not both")
    if direction == "up" and steps is not None:
        raise InvalidInput("--steps is for `render down`; use --to with `render up`")
    files = files_mod.load(config.root, config.migrations_path, config.rollbacks_path)
    history = History(config.schema_name, config.table, client_of_session=True)
    stored: Mapping[str, str | None] = {}
    warnings: list[str] = []
    if from_database:
        records, stored = _read(config, history)
        errors, drift = plan.validate(files, records, allow if direction == "up" else plan.ALLOWABLE)
        if errors:
            raise HistoryInconsistent(errors, hint="run `sqlmig status` to see why, then "
                                                   "`sqlmig repair` (or --allow for drift)")
        warnings = [p.render() for p in drift]
    else:
        records = _assumed(files, start, direction)
    if direction == "up":
        the_plan = plan.plan_up(files, records, to)
    else:
        the_plan = plan.plan_down(files, records, stored, steps=steps, to=to)
    prepared, notes, canonical = check_all(list(the_plan.steps))

    script = _Script(config, history, direction, canonical)
    script.header(the_plan.steps, records, from_database, notes, warnings)
    by_number = files.by_number()
    applied = list(records)
    for i, step in enumerate(the_plan.steps):
        mig = by_number.get(step.number) if step.number is not None else None
        before = plan.current_version(applied)
        if step.direction == "up":
            assert mig is not None
            applied.append(_record(mig))
            script.apply(step, mig, prepared[i], before, first=i == 0)
        else:
            applied = [r for r in applied if r.version != step.version]
            # Offline, the rollback comes from the file: the row must still have that rollback
            # (the engine would run the text stored in it).
            checksum = None if from_database or mig is None else mig.rollback.checksum
            script.revert(step, prepared[i], before, checksum, first=i == 0)
    script.finish(plan.current_version(applied), len(the_plan.steps))
    return script.text()


def _read(config: Config, history: History) -> tuple[list[AppliedRecord], dict[str, str | None]]:
    """The history as it is now: read-only, no lock, nothing created."""
    conn = connect(config)
    try:
        return history.read(conn), history.rollback_sqls(conn)
    except psycopg.OperationalError as exc:
        raise ConnectError(f"lost the connection to {describe(config)}: {str(exc).strip()}") from exc
    except psycopg.Error as exc:
        raise refused(config, exc) from exc
    finally:
        conn.close()


def _assumed(files: MigrationSet, start: str | None, direction: Direction) -> list[AppliedRecord]:
    """The history `--from` describes: every file up to it applied, as the engine records it."""
    if start is None:
        cut = 0 if direction == "up" or not files.migrations else files.migrations[-1].number
    else:
        try:
            kind, value = plan.parse_target(start)
        except InvalidInput:
            raise InvalidInput(f"--from {start!r}: expected a version like 1.2.0 or a number "
                               "like 3") from None
        if kind == "number":
            if value != 0 and value not in files.by_number():
                raise InvalidInput(f"--from {start}: no migration numbered {value}")
            cut = int(value)  # type: ignore[arg-type]
        else:
            match = [m for m in files.migrations if m.version == value]
            if not match and value != Version(major=0, minor=0, patch=0):
                raise InvalidInput(f"--from {start}: no migration has version {value}")
            cut = match[0].number if match else 0
    return [_record(m) for m in files.migrations if m.number <= cut]


def _record(mig: Migration) -> AppliedRecord:
    # What the history row of `mig` holds for the guards (no parse: its canonical checksum is
    # not needed here).
    return AppliedRecord(version=str(mig.version), number=mig.number, name=mig.name,
                         checksum=mig.checksum, rollback_checksum=mig.rollback.checksum,
                         status="applied")


# -- the script ------------------------------------------------------------------------------


class _Script:
    def __init__(self, config: Config, history: History, direction: Direction,
                 canonical: Mapping[str, str | None]) -> None:
        self.config = config
        self.history = history
        self.direction = direction
        self.canonical = canonical  # the files' canonical checksums, from check_all's parse
        self.key = lock.lock_key(config.qualified_table)
        self.lines: list[str] = []

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def statement(self, text: str) -> None:
        self.lines.append(_terminated(text))

    def bookkeeping(self, pair: tuple[sql.Composable, dict[str, Any]]) -> None:
        self.statement(_inline(*pair))

    # -- sections -------------------------------------------------------------------------------

    def header(self, steps: tuple[PlanStep, ...], records: list[AppliedRecord], from_database: bool,
               notes: list[str], warnings: list[str]) -> None:
        from sqlmig import __version__

        source = ("the migration files and the history read from the database" if from_database
                  else "the migration files alone (the database was not read)")
        current = plan.current_version(records)
        verb = "apply" if self.direction == "up" else "roll back"
        self.add(f"-- sqlmig render {self.direction}: for the history table "
                 f"{self.config.qualified_table}",
                 f"-- Rendered by sqlmig {__version__} from {source}.",
                 f"-- Starts from {_at(current)}; {len(steps)} step(s) to {verb}:")
        for step in steps:
            mode = "  [no-transaction]" if not step.transactional else ""
            self.add(_comment(f"--   {step.name} ({step.version})  {step.path}{mode}"))
        self.add("--",
                 "-- Run it with psql in autocommit mode, never in one transaction (no -1):",
                 f"--   {_RUN}",
                 "-- Each step first checks that the database is at the version this script "
                 "expects, and",
                 "-- otherwise stops psql (exit code 3) before changing anything: running it "
                 "twice is safe.")
        for note in notes:
            self.add(_comment(f"-- note: {note}"))
        self.add("",
                 "\\set ON_ERROR_STOP on",
                 "\\set ON_ERROR_ROLLBACK off",
                 "\\set AUTOCOMMIT on",
                 "\\set QUIET on",
                 "",
                 "-- Each migration commits on its own, as with the engine, and no-transaction ones "
                 "cannot run",
                 "-- inside a transaction: stop if psql wraps the script in one (psql -1).",
                 "SELECT now() <> statement_timestamp() AS sqlmig_in_transaction \\gset",
                 "\\if :sqlmig_in_transaction",
                 "\\warn " + _arg("sqlmig: this script must not run inside one transaction: "
                                  "run it without psql -1 / --single-transaction"),
                 _raise("sqlmig: stopped before changing anything: the script runs inside a "
                        "transaction block"),
                 "\\endif")
        for warning in warnings:
            self.add("\\warn " + _arg(warning))
        self.add("", "-- The engine's session settings, set again after each RESET ALL.",
                 "SELECT current_setting('server_version_num')::int >= 140000 "
                 "AS sqlmig_check_interval \\gset")
        self.session_defaults()
        self.lock()
        self.tables()

    def session_defaults(self) -> None:
        # As connect.session_defaults: a migration whose client vanished is cancelled (PG 14+).
        self.add("\\if :sqlmig_check_interval",
                 "SET client_connection_check_interval = '1s';",
                 "\\endif")
        # --role and --schema's search_path, as connect.session_statements.
        for statement in session_statements(self.config):
            self.statement(statement.as_string(None))

    def lock(self) -> None:
        timeout = self.config.lock_timeout
        message = (f"sqlmig: could not take the migration lock on {self.config.qualified_table} "
                   f"within {timeout:g} s: ")
        fail = sql.SQL(
            "BEGIN RAISE EXCEPTION USING MESSAGE = {} || {},\n"
            "      HINT = 'wait for that run to finish, or end that session; nothing was changed';"
            "\nEND").format(sql.Literal(message), lock.holder_sql(self.key))
        key = sql.Literal(self.key)
        mine = lock.mine_sql(self.key)
        self.add("",
                 f"-- The engine's migration lock: lock_key({self.config.qualified_table!r}), held "
                 "until the end;",
                 f"-- waiting at most {timeout:g} s (--lock-timeout) for another run to finish.")
        pauses = list(lock.poll_delays(timeout))
        if pauses:
            # As the engine waits (sqlmig.lock): tries with pauses, each try its own short
            # statement, so the wait holds no snapshot that another runner's CREATE INDEX
            # CONCURRENTLY would wait for (a pause holds one for at most its length). \gexec
            # runs each generated statement in turn; once the lock is taken the rest do nothing.
            try_sql = sql.SQL(
                "SELECT format('DO $try$ BEGIN IF NOT %s THEN IF NOT pg_try_advisory_lock(%s) THEN "
                "PERFORM pg_sleep(%s); END IF; END IF; END $try$', {mine}, {key}, "
                "least({first} * 2 ^ least(i - 1, 10), {most}))"
                "\n  FROM generate_series(1, {tries}) AS i \\gexec"
            ).format(mine=sql.Literal(mine.as_string(None)), key=key,
                     first=sql.Literal(lock.POLL_FIRST), most=sql.Literal(lock.POLL_MAX),
                     tries=sql.Literal(len(pauses)))
            self.add(try_sql.as_string(None))
        self.add(f"SELECT CASE WHEN {mine.as_string(None)} THEN true "
                 f"ELSE pg_try_advisory_lock({self.key}) END AS sqlmig_locked \\gset",
                 "\\if :sqlmig_locked",
                 "\\else",
                 _do(fail.as_string(None)),
                 "\\endif")

    def tables(self) -> None:
        h = self.history
        name = self.config.qualified_table
        self.add("",
                 f"-- The history table {name} and its event log, created or upgraded in place "
                 "as the engine",
                 "-- does; in the same transaction as the check before the first step, so a "
                 "database at",
                 "-- another version is left untouched.",
                 "BEGIN;",
                 "SET LOCAL client_min_messages = warning;")
        self.add(_terminated(h.schema_missing_query().as_string(None),
                             meta="AS sqlmig_no_schema \\gset"),
                 "\\if :sqlmig_no_schema")
        self.statement(h.create_schema().as_string(None))
        self.add("\\endif")
        self.statement(h.create_table().as_string(None))
        self.add(_terminated(h.shape_query().as_string(None), meta="\\gset sqlmig_"),
                 "\\if :sqlmig_has_version",
                 "\\else",
                 "\\warn " + _arg(f"sqlmig: {name} exists but has no version column: it is not "
                                  "a sqlmig history table; use --table to pick another name"),
                 _raise(f"sqlmig: stopped before changing anything: {name} is not a sqlmig "
                        "history table"),
                 "\\endif")
        for statement in h.add_columns():
            self.statement(statement.as_string(None))
        self.add("\\if :sqlmig_local_applied_at")
        self.statement(h.retype_applied_at().as_string(None))
        self.add("\\endif")
        self.statement(h.number_index().as_string(None))
        self.statement(h.create_events().as_string(None))

    def guard(self, what: str, expected: str | None, version: str = "", number: int | None = None,
              *, must_exist: bool | None = None, rollback_checksum: str | None = None,
              rollback_path: str = "") -> None:
        """Stop psql unless the newest applied version is `expected` and nothing is unsettled;
        `must_exist` also asks for (True) or against (False) a row for version/number, and
        `rollback_checksum` for that row's rollback to be the one the script runs."""
        lit = sql.Literal
        checks = [sql.SQL("state.current IS NOT DISTINCT FROM {}").format(lit(expected)),
                  sql.SQL("state.unsettled IS NULL")]
        reasons = [
            (sql.SQL("state.unsettled IS NOT NULL"),
             sql.SQL("'unsettled migrations ' || state.unsettled || "
                     "' (see `sqlmig status`, then `sqlmig repair`)'")),
            (sql.SQL("state.current IS DISTINCT FROM {}").format(lit(expected)),
             sql.SQL("coalesce('version ' || state.current, 'no applied migration')")),
        ]
        if must_exist is not None:
            checks.append(sql.SQL("state.taken" if must_exist else "NOT state.taken"))
            reasons.append((sql.SQL("NOT state.taken" if must_exist else "state.taken"), lit(
                f"no history row for {version}" if must_exist else
                f"a history row for {version} or number {number} already")))
        if rollback_checksum is not None:
            checks.append(sql.SQL("(state.rollback_checksum IS NULL OR state.rollback_checksum = {})")
                          .format(lit(rollback_checksum)))
            reasons.append((sql.SQL("true"), lit(
                f"that {rollback_path} differs from the rollback stored when {version} was "
                "applied, which `sqlmig down` would run: use `sqlmig down`, or render with "
                "--from-database")))
        cases = sql.SQL("\n            ").join(
            sql.SQL("WHEN {} THEN {}").format(cond, text) for cond, text in reasons[:-1])
        query = sql.SQL(
            "SELECT {ok} AS sqlmig_ok,\n"
            "       {prefix}\n"
            "       || CASE {cases}\n"
            "            ELSE {last} END AS sqlmig_msg\n"
            "  FROM ({state}) AS state"
        ).format(ok=sql.SQL(" AND ").join(checks),
                 prefix=lit(f"sqlmig: stopped {what}: expected {_at(expected)}, found "),
                 cases=cases, last=reasons[-1][1],
                 state=self.history.state_query(version, number))
        self.add(f"-- Check: at {_at(expected)}, nothing unsettled.",
                 _terminated(query.as_string(None), meta="\\gset"),
                 "\\if :sqlmig_ok",
                 "\\else",
                 "\\warn :sqlmig_msg",
                 _raise(f"sqlmig: stopped {what}: the database is not where this script expects "
                        f"it (see above); {'nothing of it was run' if version else 'nothing changed'}"),
                 "\\endif")

    def open_step(self, step: PlanStep, before: str | None, first: bool, **guard: Any) -> None:
        verb = "applying" if step.direction == "up" else "rolling back"
        mode = " [no-transaction]" if not step.transactional else ""
        what = f"before {verb} {step.name} ({step.version})"
        if first:
            # The first check runs inside the history table's transaction.
            self.guard(what, before, step.version, step.number, **guard)
            self.add("COMMIT;")
        self.add("", _comment(f"-- {step.name} ({step.version}): {step.path}{mode}"))
        if not first:
            self.guard(what, before, step.version, step.number, **guard)
        for warning in step.warnings:
            self.add("\\warn " + _arg(warning))
        self.add("\\echo " + _arg(f"{verb} {step.name} ({step.version}){mode}"))

    def body(self, step: PlanStep, stmts: list[sqltext.Statement]) -> None:
        if not stmts:
            done = "applied" if step.direction == "up" else "rolled back"
            self.add("\\warn " + _arg(f"{step.path}: warning: has no SQL statements; "
                                      f"{done} as a no-op"))
        # The step's lock_timeout/statement_timeout, as the engine sets them (sqlmig.timeouts).
        for st in [*timeouts.set_statements(step, self.config), *stmts]:
            self.statement(st.text)

    def close_step(self) -> None:
        self.add("RESET ALL;")
        self.session_defaults()

    def apply(self, step: PlanStep, mig: Migration, stmts: list[sqltext.Statement],
              before: str | None, *, first: bool) -> None:
        h = self.history
        self.open_step(step, before, first, must_exist=False)
        event = h.event("up", "applied", version=step.version, name=step.name, detail=_DETAIL)
        if step.transactional:
            self.add("BEGIN;")
            self.body(step, stmts)
            self.bookkeeping(h.insert(record_fields(mig, status="applied", canonical=self.canonical),
                                         mig.rollback.text))
            self.bookkeeping(event)
        else:
            self.add("-- no-transaction: a `started` row first, then each statement in "
                     "autocommit; if one fails",
                     "-- the row stays `started`: see `sqlmig status` and `sqlmig repair`.")
            self.bookkeeping(h.insert(record_fields(mig, status="started", canonical=self.canonical),
                                         mig.rollback.text))
            self.body(step, stmts)
            self.add("BEGIN;")
            self.bookkeeping(h.finish(step.version, "applied", None))
            self.bookkeeping(event)
        self.add("COMMIT;")
        self.close_step()

    def revert(self, step: PlanStep, stmts: list[sqltext.Statement],
               before: str | None, rollback_checksum: str | None, *, first: bool) -> None:
        h = self.history
        self.open_step(step, before, first, must_exist=True, rollback_checksum=rollback_checksum,
                       rollback_path=step.path)
        if step.transactional:
            self.add("BEGIN;")
            self.body(step, stmts)
        else:
            self.add("-- no-transaction: the row is marked `rolling_back` first, then each "
                     "statement runs in",
                     "-- autocommit; if one fails the row stays `rolling_back`: see "
                     "`sqlmig repair`.")
            self.bookkeeping(h.set_status(step.version, "rolling_back"))
            self.body(step, stmts)
            self.add("BEGIN;")
        self.bookkeeping(h.delete(step.version))
        self.bookkeeping(h.event("down", "reverted", version=step.version, name=step.name,
                                 detail=_DETAIL))
        self.add("COMMIT;")
        self.close_step()

    def finish(self, final: str | None, count: int) -> None:
        if count == 0:
            self.guard("before doing anything", final)
            self.add("COMMIT;")
            done = f"nothing to do; at version {final or 'none'}"
        elif self.direction == "up":
            done = f"at version {final}: {count} applied"
        else:
            done = f"at version {final or '0.0.0'}: {count} rolled back"
        self.add("",
                 f"SELECT pg_advisory_unlock({self.key}) AS sqlmig_unlocked \\gset",
                 "\\echo " + _arg(done))


# -- text helpers ----------------------------------------------------------------------------


def _inline(query: sql.Composable, params: Mapping[str, Any]) -> str:
    """The query with each %(name)s replaced by psycopg's literal for that value (sql.Literal),
    as psycopg's client-side binding does: the engine binds the same values server-side."""
    return _PLACEHOLDER.sub(
        lambda m: "%" if m[0] == "%%" else sql.Literal(params[m[1]]).as_string(None),
        query.as_string(None))


def _terminated(text: str, meta: str | None = None) -> str:
    """A statement ready for psql: ended by `;` (or by a meta-command such as \\gset), which
    goes on a line of its own when the last line may end in a `--` comment."""
    text = text.rstrip()
    if "--" in text.rsplit("\n", 1)[-1]:
        return f"{text}\n{meta or ';'}"  # a spare `;` after a real one is an empty statement
    if meta:
        return f"{text} {meta}"
    return text if text.endswith(";") else f"{text};"  # the fallback lexer keeps the `;`


def _do(body: str) -> str:
    tag = "$sqlmig$"
    n = 0
    while tag in body:
        n += 1
        tag = f"$sqlmig{n}$"
    return f"DO {tag}\n{body}\n{tag};"


def _raise(message: str) -> str:
    return _do(sql.SQL("BEGIN RAISE EXCEPTION USING MESSAGE = {}; END").format(
        sql.Literal(message)).as_string(None))


def _arg(text: str) -> str:
    """One argument of \\echo/\\warn: single-quoted, so psql neither splits nor interpolates it."""
    flat = " ".join(text.split())
    return "'" + flat.replace("\\", "\\\\").replace("'", "''") + "'"


def _comment(text: str) -> str:
    return " ".join(text.splitlines())


def _at(version: str | None) -> str:
    return f"version {version}" if version else "no applied migration"


__all__ = ["render"]
