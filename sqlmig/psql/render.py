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

from sqlmig.about import VERSION as __version__
from sqlmig.config import durations
from sqlmig.config.settings import Config
from sqlmig.db.connect import connect, describe, refused, session_statements
from sqlmig.db.drift import SnapshotStore
from sqlmig.db.history import History
from sqlmig.engine import plan, timeouts
from sqlmig.engine.prepare import check_all, record_fields
from sqlmig.errors import ConnectError, HistoryInconsistent, InvalidInput
from sqlmig.files import load as files_mod
from sqlmig.files import sqltext
from sqlmig.locking import session as lock
from sqlmig.models import AppliedRecord, Migration, MigrationSet, PlanStep, Version

Direction = Literal["up", "down"]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_DETAIL = "psql script from `sqlmig render`"
_RUN = "psql -X -v ON_ERROR_STOP=1 -d DATABASE -f script.sql"


def render(
    config: Config,
    direction: Direction = "up",
    *,
    start: str | None = None,
    to: str | None = None,
    steps: int | None = None,
    from_database: bool = False,
    allow: Iterable[str] = (),
    review: bool = False,
) -> str:
    """The psql script doing what `up` (or `down`) would do; bad input is refused as they do.

    `start` (--from) is the version, or number, the database is assumed to be at: by default
    none for `up` and the newest file for `down`. `to` and `steps` mean what they mean for
    `up`/`down`. `from_database` reads the history instead of assuming, and checks it as `up`
    (with `allow`) or `down` would. `review`: for reading, not running: the SQL of each step as
    written, under its name, mode and timeouts and its lint findings, without the bookkeeping.
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
            raise HistoryInconsistent(
                errors, hint="run `sqlmig status` to see why, then `sqlmig repair` (or --allow for drift)"
            )
        warnings = [p.render() for p in drift]
    else:
        records = _assumed(files, start, direction)
    if direction == "up":
        the_plan = plan.plan_up(files, records, to)
    else:
        the_plan = plan.plan_down(files, records, stored, steps=steps, to=to)
    prepared, notes, canonical = check_all(list(the_plan.steps), files.parsed)

    if review:
        return _review(config, the_plan.steps, prepared, notes)
    script = _Script(config, history, direction, canonical)
    script.start = plan.current_version(records)
    by_number = files.by_number()
    applied = list(records)
    for step in the_plan.steps:  # what each step expects, and the checksums its check compares
        script.expected[step.version] = plan.current_version(applied)
        mig = by_number.get(step.number) if step.number is not None else None
        if step.direction == "up":
            assert mig is not None
            applied.append(_record(mig))
            script.checksums[step.version] = mig.checksum
        else:
            applied = [r for r in applied if r.version != step.version]
            # Offline, the rollback comes from the file: the row must still have that rollback
            # (the engine would run the text stored in it).
            if not from_database and mig is not None:
                script.rollback_checksums[step.version] = mig.rollback.checksum
    script.header(the_plan.steps, records, from_database, notes, warnings)
    script.used = (
        {"sqlmig_applied" if s.transactional else "sqlmig_started" for s in the_plan.steps}
        | {"sqlmig_finished"}
        if direction == "up"
        else {"sqlmig_reverted", *("sqlmig_rolling_back" for s in the_plan.steps if not s.transactional)}
    )
    script.prepare(the_plan.steps[0] if the_plan.steps else None)
    for i, step in enumerate(the_plan.steps):
        if step.direction == "up":
            script.apply(step, by_number[step.number], prepared[i])  # type: ignore[index]
        else:
            script.revert(step, prepared[i])
    script.finish(plan.current_version(applied), len(the_plan.steps))
    return script.text()


def _review(
    config: Config, steps: tuple[PlanStep, ...], prepared: Mapping[int, list[Any]], notes: list[str]
) -> str:
    """The steps' SQL for a reviewer: each file as written, with what the engine adds around
    it (transaction mode, timeouts) and the lint findings on it, as comments."""
    # Loaded here, not at the top: only this command lints (pglast and the rules).
    from sqlmig.checks import lint as linter

    report = linter.lint(
        config,
        [config.root / s.path for s in steps if s.number is not None and (config.root / s.path).is_file()],
    )
    findings: dict[str, list[str]] = {}
    for f in report.findings:
        findings.setdefault(f.path, []).append(f"-- lint: {f.where}: {f.severity} [{f.rule}] {f.message}")
    for f in report.allowed:
        findings.setdefault(f.path, []).append(f"-- lint: {f.where}: allowed [{f.rule}] {f.allowed}")
    verb = "apply" if not steps or steps[0].direction == "up" else "roll back"
    out = [
        f"-- sqlmig render --review: {len(steps)} step(s) to {verb}, for reading (it runs "
        "nothing: `sqlmig render` without --review gives the script to run)",
        *(_comment(f"-- note: {n}") for n in notes),
    ]
    for i, step in enumerate(steps):
        mode = (
            "one transaction with its history row"
            if step.transactional
            else "no-transaction: statement by statement, in autocommit"
        )
        limits = ", ".join(
            f"{k} {durations.format_duration(v)}" for k, v in timeouts.for_step(step, config).items()
        )
        out += [
            "",
            _comment(f"-- == {step.name} ({step.version}): {step.path} =="),
            f"-- runs: {mode}" + (f"; {limits}" if limits else ""),
            *(_comment(w) for w in step.warnings),
            *findings.get(step.path, ()),
            _as_written(step.sql, prepared[i]),
        ]
    return "\n".join(out) + "\n"


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
            raise InvalidInput(
                f"--from {start!r}: expected a version like 1.2.0 or a number like 3"
            ) from None
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
    return AppliedRecord(
        version=str(mig.version),
        number=mig.number,
        name=mig.name,
        checksum=mig.checksum,
        rollback_checksum=mig.rollback.checksum,
        status="applied",
    )


# -- the script ------------------------------------------------------------------------------


class _Script:
    def __init__(
        self, config: Config, history: History, direction: Direction, canonical: Mapping[str, str | None]
    ) -> None:
        self.config = config
        self.history = history
        self.direction = direction
        self.canonical = canonical  # the files' canonical checksums, from check_all's parse
        self.key = lock.lock_key(config.qualified_table)
        self.lines: list[str] = []
        self.prepared: dict[str, list[str]] = {}  # prepared statement -> its parameters' names
        self.expected: dict[str, str | None] = {}  # step version -> the version before it
        self.checksums: dict[str, str] = {}  # up: the file's checksum, for the skip check
        self.rollback_checksums: dict[str, str] = {}  # down, offline: the rollback it runs
        self.start: str | None = None  # the version the plan starts from
        self.used: set[str] = set()  # the bookkeeping statements the steps use

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def statement(self, text: str) -> None:
        self.lines.append(_terminated(text))

    def bookkeeping(self, pair: tuple[sql.Composable, dict[str, Any]]) -> None:
        self.statement(_inline(*pair))

    # -- sections -------------------------------------------------------------------------------

    def header(
        self,
        steps: tuple[PlanStep, ...],
        records: list[AppliedRecord],
        from_database: bool,
        notes: list[str],
        warnings: list[str],
    ) -> None:
        source = (
            "the migration files and the history read from the database"
            if from_database
            else "the migration files alone (the database was not read)"
        )
        current = plan.current_version(records)
        verb = "apply" if self.direction == "up" else "roll back"
        self.add(
            f"-- sqlmig render {self.direction}: for the history table {self.config.qualified_table}",
            f"-- Rendered by sqlmig {__version__} from {source}.",
            f"-- Starts from {_at(current)}; {len(steps)} step(s) to {verb}:",
        )
        for step in steps:
            mode = "  [no-transaction]" if not step.transactional else ""
            self.add(_comment(f"--   {step.name} ({step.version})  {step.path}{mode}"))
        self.add(
            "--",
            "-- Run it with psql in autocommit mode, never in one transaction (no -1):",
            f"--   {_RUN}",
            "-- Each step first checks that the database is at the version this script expects, and",
            "-- otherwise stops psql (exit code 3) before changing anything: running it twice is safe.",
        )
        for note in notes:
            self.add(_comment(f"-- note: {note}"))
        self.add(
            "",
            "\\set ON_ERROR_STOP on",
            "\\set ON_ERROR_ROLLBACK off",
            "\\set AUTOCOMMIT on",
            "\\set QUIET on",
            "\\set sqlmig_ran 0",
            "",
            "-- Each migration commits on its own, as with the engine, and no-transaction ones cannot run",
            "-- inside a transaction: stop if psql wraps the script in one (psql -1).",
            "SELECT now() <> statement_timestamp() AS sqlmig_in_transaction \\gset",
            "\\if :sqlmig_in_transaction",
            "\\warn "
            + _arg(
                "sqlmig: this script must not run inside one transaction: "
                "run it without psql -1 / --single-transaction"
            ),
            _raise("sqlmig: stopped before changing anything: the script runs inside a transaction block"),
            "\\endif",
        )
        for warning in warnings:
            self.add("\\warn " + _arg(warning))
        self.add("", "-- The engine's session settings, set again after each RESET ALL.")
        self.session_defaults()
        self.lock()
        self.tables()

    def session_defaults(self) -> None:
        self.add(*self.session_lines())

    def session_lines(self) -> list[str]:
        # As connect.session_defaults: a migration whose client vanished is cancelled (PG 14+);
        # --role and --schema's search_path, as connect.session_statements.
        return [
            _CHECK_INTERVAL,
            *(_terminated(statement.as_string(None)) for statement in session_statements(self.config)),
        ]

    def lock(self) -> None:
        timeout = self.config.lock_timeout
        message = (
            f"sqlmig: could not take the migration lock on {self.config.qualified_table} "
            f"within {timeout:g} s: "
        )
        fail = sql.SQL(
            "BEGIN RAISE EXCEPTION USING MESSAGE = {} || {},\n"
            "      HINT = 'wait for that run to finish, or end that session; nothing was changed';"
            "\nEND"
        ).format(sql.Literal(message), lock.holder_sql(self.key))
        key = sql.Literal(self.key)
        mine = lock.mine_sql(self.key)
        self.add(
            "",
            f"-- The engine's migration lock: lock_key({self.config.qualified_table!r}), held until the end;",
            f"-- waiting at most {timeout:g} s (--lock-timeout) for another run to finish.",
        )
        pauses = list(lock.poll_delays(timeout))
        if pauses:
            # As the engine waits (sqlmig.locking.session): tries with pauses, each try its own short
            # statement, so the wait holds no snapshot that another runner's CREATE INDEX
            # CONCURRENTLY would wait for (a pause holds one for at most its length). \gexec
            # runs each generated statement in turn; once the lock is taken the rest do nothing.
            try_sql = sql.SQL(
                "SELECT format('DO $try$ BEGIN IF NOT %s THEN IF NOT pg_try_advisory_lock(%s) THEN "
                "PERFORM pg_sleep(%s); END IF; END IF; END $try$', {mine}, {key}, "
                "least({first} * 2 ^ least(i - 1, 10), {most}))"
                "\n  FROM generate_series(1, {tries}) AS i \\gexec"
            ).format(
                mine=sql.Literal(mine.as_string(None)),
                key=key,
                first=sql.Literal(lock.POLL_FIRST),
                most=sql.Literal(lock.POLL_MAX),
                tries=sql.Literal(len(pauses)),
            )
            self.add(try_sql.as_string(None))
        self.add(
            f"SELECT CASE WHEN {mine.as_string(None)} THEN true "
            f"ELSE pg_try_advisory_lock({self.key}) END AS sqlmig_locked \\gset",
            "\\if :sqlmig_locked",
            "\\else",
            _do(fail.as_string(None)),
            "\\endif",
        )

    def tables(self) -> None:
        h = self.history
        name = self.config.qualified_table
        self.add(
            "",
            f"-- The history table {name} and its event log, created or upgraded in place as the engine",
            "-- does; in the same transaction as the check before the first step, so a database at",
            "-- another version is left untouched.",
            "BEGIN;",
            "SET LOCAL client_min_messages = warning;",
        )
        self.add(
            _terminated(h.schema_missing_query().as_string(None), meta="AS sqlmig_no_schema \\gset"),
            "\\if :sqlmig_no_schema",
        )
        self.statement(h.create_schema().as_string(None))
        self.add("\\endif")
        self.statement(h.create_table().as_string(None))
        self.add(
            _terminated(h.shape_query().as_string(None), meta="\\gset sqlmig_"),
            "\\if :sqlmig_has_version",
            "\\else",
            "\\warn "
            + _arg(
                f"sqlmig: {name} exists but has no version column: it is not "
                "a sqlmig history table; use --table to pick another name"
            ),
            _raise(f"sqlmig: stopped before changing anything: {name} is not a sqlmig history table"),
            "\\endif",
        )
        for statement in h.add_columns():
            self.statement(statement.as_string(None))
        self.add("\\if :sqlmig_local_applied_at")
        self.statement(h.retype_applied_at().as_string(None))
        self.add("\\endif")
        self.statement(h.number_index().as_string(None))
        self.statement(h.create_events().as_string(None))
        # The schema snapshots table, as the engine creates it (a snapshot itself is recorded by
        # the next sqlmig run: see docs/psql.md).
        self.statement(SnapshotStore(h).create_sql().as_string(None))

    def prepare(self, first: PlanStep | None) -> None:
        """sqlmig's bookkeeping as named prepared statements (PREPARE changes nothing in the
        database), so that each step reads as one check, the file, and one EXECUTE. The first
        step's check runs here too, in the history table's transaction: a database at another
        version is left untouched."""
        h = self.history
        self.add(
            "",
            "-- sqlmig's bookkeeping, named once: sqlmig_check before each step; "
            "sqlmig_applied, sqlmig_started,",
            "-- sqlmig_finished, sqlmig_rolling_back and sqlmig_reverted write the history "
            "row and its event.",
            "PREPARE sqlmig_check(text, integer, text, text, text, text, text) AS\n"
            f"{h.check_query().as_string(None)};",
        )
        for name, pair in self._bookkeeping_shapes().items():
            if name not in self.used:
                continue
            query, order = _parameterized(*pair)
            self.prepared[name] = order
            self.add(f"PREPARE {name}{query};")
        self.check(first)
        self.add(
            "\\if :sqlmig_done",
            "\\elif :sqlmig_ok",
            "\\else",
            "\\warn :sqlmig_msg",
            _stop("the database is not where this script expects it (see above); nothing was changed"),
            "\\endif",
            "COMMIT;",
        )

    def _bookkeeping_shapes(self) -> dict[str, tuple[sql.Composable, dict[str, Any]]]:
        """The statements the engine writes, with placeholder values (their shape is the same
        for every step; the values go in each EXECUTE)."""
        h = self.history
        fields = {
            "version": "",
            "number": 0,
            "name": "",
            "description": "",
            "checksum": "",
            "rollback_checksum": "",
            "canonical_checksum": "",
            "execution_ms": None,
            "status": "",
            "transactional": True,
            "baseline": False,
            "sqlmig_version": __version__,
        }

        def event(action: str, outcome: str) -> tuple[sql.Composable, dict[str, Any]]:
            return h.event(action, outcome, version="", name="", detail=_DETAIL)

        if self.direction == "up":
            return {
                "sqlmig_applied": _with(h.insert(fields, ""), event("up", "applied")),
                "sqlmig_started": h.insert(fields, ""),
                "sqlmig_finished": _with(h.finish("", "applied", None), event("up", "applied")),
            }
        return {
            "sqlmig_rolling_back": h.set_status("", "rolling_back"),
            "sqlmig_reverted": _with(h.delete(""), event("down", "reverted")),
        }

    def execute(self, name: str, pair: tuple[sql.Composable, dict[str, Any]]) -> None:
        """EXECUTE a prepared bookkeeping statement with this step's values."""
        _, params = pair
        args = ", ".join(sql.Literal(params[key]).as_string(None) for key in self.prepared[name])
        self.add(f"EXECUTE {name}({args});")

    def check(self, step: PlanStep | None) -> None:
        """sqlmig_check for this step (None: no step, only the version the plan starts from),
        into :sqlmig_done, :sqlmig_ok and :sqlmig_msg."""
        if step is None:
            args: list[Any] = [None, None, self.start, None, None, "doing anything", None]
        else:
            verb = "applying" if step.direction == "up" else "rolling back"
            checksum = self.checksums.get(step.version) if step.direction == "up" else None
            args = [
                step.version,
                step.number,
                self.expected[step.version],
                checksum,
                self.rollback_checksums.get(step.version),
                f"{verb} {step.name} ({step.version})",
                step.path,
            ]
        self.add(
            "EXECUTE sqlmig_check("
            + ", ".join(sql.Literal(a).as_string(None) for a in args)
            + ") \\gset sqlmig_"
        )

    def step(self, step: PlanStep, stmts: list[sqltext.Statement], run: list[str]) -> None:
        """One step: its check, then (unless done already) the file as written between the
        engine's transaction and bookkeeping lines `run` holds; a mismatch stops psql."""
        verb, done = ("applying", "applied") if step.direction == "up" else ("rolling back", "rolled back")
        mode = " [no-transaction]" if not step.transactional else ""
        self.add("", _comment(f"-- == {step.name} ({step.version}): {step.path}{mode} =="))
        self.check(step)
        self.add(
            "\\if :sqlmig_done",
            "\\echo " + _arg(f"skipping {step.name} ({step.version}): {done} already"),
            "\\elif :sqlmig_ok",
        )
        for warning in step.warnings:
            self.add("\\warn " + _arg(warning))
        self.add(
            "\\echo " + _arg(f"{verb} {step.name} ({step.version}){mode}"),
            *run,
            "SELECT :sqlmig_ran + 1 AS sqlmig_ran \\gset",
            "\\else",
            "\\warn :sqlmig_msg",
            _stop(
                f"the database is not where this script expects it before {verb} "
                f"{step.name} ({step.version}) (see above); nothing of it was run"
            ),
            "\\endif",
        )

    def body(self, step: PlanStep, stmts: list[sqltext.Statement]) -> list[str]:
        """The step's SET LOCAL timeouts (as the engine sets them), then the file's text as it
        is written, comments included (a whole-file BEGIN; … COMMIT; wrapper left out, as the
        engine leaves it out)."""
        out = [_terminated(st.text) for st in timeouts.set_statements(step, self.config)]
        if not stmts:
            done = "applied" if step.direction == "up" else "rolled back"
            out.append("\\warn " + _arg(f"{step.path}: warning: has no SQL statements; {done} as a no-op"))
        out.append(_as_written(step.sql, stmts))
        return out

    def close(self) -> list[str]:
        return ["RESET ALL;", *self.session_lines()]

    def apply(self, step: PlanStep, mig: Migration, stmts: list[sqltext.Statement]) -> None:
        h = self.history
        event = h.event("up", "applied", version=step.version, name=step.name, detail=_DETAIL)
        run: list[str] = []
        saved = self.lines
        self.lines = run
        if step.transactional:
            self.add("BEGIN;", *self.body(step, stmts))
            self.execute(
                "sqlmig_applied",
                _with(
                    h.insert(
                        record_fields(mig, status="applied", canonical=self.canonical), mig.rollback.text
                    ),
                    event,
                ),
            )
        else:
            self.add(
                "-- no-transaction: a `started` row, then each statement in autocommit; if one fails the row",
                "-- stays `started`: see `sqlmig status` and `sqlmig repair`.",
            )
            self.execute(
                "sqlmig_started",
                h.insert(record_fields(mig, status="started", canonical=self.canonical), mig.rollback.text),
            )
            self.add(*self.body(step, stmts), "BEGIN;")
            self.execute("sqlmig_finished", _with(h.finish(step.version, "applied", None), event))
        self.add("COMMIT;", *self.close())
        self.lines = saved
        self.step(step, stmts, run)

    def revert(self, step: PlanStep, stmts: list[sqltext.Statement]) -> None:
        h = self.history
        done = _with(
            h.delete(step.version),
            h.event("down", "reverted", version=step.version, name=step.name, detail=_DETAIL),
        )
        run: list[str] = []
        saved = self.lines
        self.lines = run
        if step.transactional:
            self.add("BEGIN;", *self.body(step, stmts))
        else:
            self.add(
                "-- no-transaction: the row is marked `rolling_back`, then each statement "
                "runs in autocommit;",
                "-- if one fails the row stays `rolling_back`: see `sqlmig repair`.",
            )
            self.execute("sqlmig_rolling_back", h.set_status(step.version, "rolling_back"))
            self.add(*self.body(step, stmts), "BEGIN;")
        self.execute("sqlmig_reverted", done)
        self.add("COMMIT;", *self.close())
        self.lines = saved
        self.step(step, stmts, run)

    def finish(self, final: str | None, count: int) -> None:
        # :sqlmig_ran counts the steps run (not skipped as done already), as the engine's
        # summary counts them.
        if count == 0:
            done = "\\echo " + _arg(f"nothing to do; at version {final or 'none'}")
        elif self.direction == "up":
            done = f"\\echo {_arg(f'at version {final}:')} :sqlmig_ran 'applied'"
        else:
            at = f"at version {final or '0.0.0'}:"
            done = f"\\echo {_arg(at)} :sqlmig_ran 'rolled back'"
        self.add("", f"SELECT pg_advisory_unlock({self.key}) AS sqlmig_unlocked \\gset", done)


def _parameterized(query: sql.Composable, params: Mapping[str, Any]) -> tuple[str, list[str]]:
    """`(types) AS query` for PREPARE, each %(name)s as $n; and the names in $n order."""
    order: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[0] == "%%":
            return "%"
        if m[1] not in order:
            order.append(m[1])
        return f"${order.index(m[1]) + 1}"

    text = _PLACEHOLDER.sub(number, query.as_string(None))
    types = ", ".join(_TYPES.get(name, "text") for name in order)
    return f"({types}) AS\n{text}", order


def _with(
    first: tuple[sql.Composable, dict[str, Any]], second: tuple[sql.Composable, dict[str, Any]]
) -> tuple[sql.Composable, dict[str, Any]]:
    """Two bookkeeping statements as one, `WITH w AS (first) second`: like History.together,
    but ending in the second statement (an INSERT), so that psql prints no result row."""
    return (sql.SQL("WITH w AS ({})\n{}").format(first[0], second[0]), {**first[1], **second[1]})


# The types of the bookkeeping parameters that are not text.
_TYPES = {
    "number": "integer",
    "execution_ms": "integer",
    "duration_ms": "integer",
    "transactional": "boolean",
    "baseline": "boolean",
}


def _as_written(text: str, stmts: list[sqltext.Statement]) -> str:
    """A file's text as written, for psql: without a whole-file BEGIN; … COMMIT; wrapper (the
    statements the engine runs are `stmts`), and ended by `;` so that what follows is a
    statement of its own."""
    if not stmts:
        return text.strip("\n")
    everything = sqltext.split(text).statements
    start, end = 0, len(text)
    if len(everything) == len(stmts) + 2 and everything[0].transaction_control in ("BEGIN", "START"):
        start, end = _end_of(text, everything[0]), everything[-1].start
    body = text[start:end].strip("\n")
    last = stmts[-1]
    after = text[last.start + last.size : end].lstrip()
    if not (after.startswith(";") or last.text.rstrip().endswith(";")):
        body += "\n;"
    return body


def _end_of(text: str, st: sqltext.Statement) -> int:
    """Where a statement's terminating `;` ends."""
    i = st.start + st.size
    semi = text.find(";", i)
    return semi + 1 if semi >= 0 else i


# -- text helpers ----------------------------------------------------------------------------


def _inline(query: sql.Composable, params: Mapping[str, Any]) -> str:
    """The query with each %(name)s replaced by psycopg's literal for that value (sql.Literal),
    as psycopg's client-side binding does: the engine binds the same values server-side."""
    return _PLACEHOLDER.sub(
        lambda m: "%" if m[0] == "%%" else sql.Literal(params[m[1]]).as_string(None), query.as_string(None)
    )


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


# As connect.session_defaults: a migration whose client vanished is cancelled (PG 14+).
_CHECK_INTERVAL = (
    "DO $sqlmig$ BEGIN IF current_setting('server_version_num')::int >= 140000 "
    "THEN PERFORM set_config('client_connection_check_interval', '1s', false); "
    "END IF; END $sqlmig$;"
)


def _stop(why: str) -> str:
    """One line that stops psql (ON_ERROR_STOP: exit code 3) with `sqlmig: stopped: why`."""
    message = sql.Literal(f"sqlmig: stopped: {why}").as_string(None)
    return f"DO $sqlmig$ BEGIN RAISE EXCEPTION USING MESSAGE = {message}; END $sqlmig$;"


def _raise(message: str) -> str:
    return _do(
        sql.SQL("BEGIN RAISE EXCEPTION USING MESSAGE = {}; END").format(sql.Literal(message)).as_string(None)
    )


def _arg(text: str) -> str:
    """One argument of \\echo/\\warn: single-quoted, so psql neither splits nor interpolates it."""
    flat = " ".join(text.split())
    return "'" + flat.replace("\\", "\\\\").replace("'", "''") + "'"


def _comment(text: str) -> str:
    return " ".join(text.splitlines())


def _at(version: str | None) -> str:
    return f"version {version}" if version else "no applied migration"


__all__ = ["render"]
