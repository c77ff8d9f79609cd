"""`sqlmig verify`: prove every rollback on a scratch database, never on the target.

For each migration in order, on a throwaway database: apply it, snapshot, run its rollback,
require the schema equal to the one before, re-apply it and require the schema equal to the one
after the first apply. It goes on after a rollback that fails or leaks (unless --fail-fast),
from the migration's applied state, so one run names every leaky rollback; only a migration that
cannot be applied stops it (what follows depends on it).

Two ways to run one migration's check, with the same verdict:
- fast, when the migration and its rollback are both transactional: one transaction on one
  connection: apply (with its history row, its SET LOCAL timeouts) → snapshot → SAVEPOINT →
  rollback → snapshot → compare → re-apply → snapshot → compare → ROLLBACK TO SAVEPOINT →
  COMMIT. The savepoint brings back the applied state exactly, whatever the rollback did.
  Should anything fail in it, the transaction is rolled back and the migration checked again
  the slow way, so the verdict and the error are the engine's own.
- the engine's own way, otherwise: its Executor, on the scratch connection, runs each file as
  `up` and `down` do (transactions, no-transaction files statement by statement, history
  rows, timeouts, retries). After a leak, the applied state is rebuilt on a fresh scratch
  database (every migration up to this one applied by `up`), not taken from the leaked one.
Function bodies are compared with their whitespace normalized (see snapshot.take).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.checks import verify_cache
from sqlmig.config.redaction import redact
from sqlmig.config.settings import Config, Secret
from sqlmig.db import compare as schemadiff
from sqlmig.db import drift, snapshot
from sqlmig.db.connect import connect, reset_session
from sqlmig.db.history import History
from sqlmig.engine import apply, plan, timeouts
from sqlmig.engine.execute import Executor
from sqlmig.engine.prepare import prepare, record_fields
from sqlmig.engine.session import load_files
from sqlmig.errors import ConnectError, InvalidInput, MigrationFailed, SqlmigError
from sqlmig.files import sqltext
from sqlmig.locking import session as lock
from sqlmig.models import Migration, PlanStep

Outcome = Literal["proven", "leaky", "failed", "irreversible", "not-checked"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStep:
    number: int
    version: str
    name: str
    migration: str
    rollback: str
    # proven; leaky: the rollback ran but the schema is not as before (or re-applying differs);
    # failed: the migration or its rollback raised an error; irreversible: not run.
    outcome: Outcome
    note: str | None = None
    problems: tuple[str, ...] = ()
    differences: tuple[schemadiff.Difference, ...] = ()
    duration_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    ok: bool
    scratch: str
    steps: tuple[VerifyStep, ...]
    snapshot_ms: float  # mean time of one schema snapshot on the scratch database
    warnings: tuple[str, ...] = ()
    duration_ms: int = 0

    @property
    def failed(self) -> list[VerifyStep]:
        return [s for s in self.steps if s.outcome in ("failed", "leaky")]

    def count(self, outcome: Outcome) -> int:
        return sum(s.outcome == outcome for s in self.steps)

    @property
    def summary(self) -> str:
        """`proven 37, leaky 5, failed 0, irreversible 1` (and `not checked N` when some were
        not)."""
        parts = [f"{o} {self.count(o)}" for o in ("proven", "leaky", "failed", "irreversible")]
        if self.count("not-checked"):
            parts.append(f"not checked {self.count('not-checked')}")
        return ", ".join(parts)


OnVerified = Callable[[VerifyStep], None]


def verify(
    config: Config,
    *,
    scratch_url: str | None = None,
    in_place: bool = False,
    on_step: OnVerified | None = None,
    fail_fast: bool = False,
    incremental: bool = False,
) -> VerifyReport:
    """Apply, roll back and re-apply every migration on a scratch database.

    By default the scratch database is created on the project's embedded server and dropped at
    the end. `scratch_url`: create it on that server instead; with `in_place`, use the database
    of `scratch_url` itself (it must have no sqlmig history yet; it is left fully migrated).
    `fail_fast`: stop at the first rollback that fails or leaks. `incremental`: start from the
    scratch database an earlier run proved the same first migrations on, and keep this one's
    for the next (see verify_cache). The configured target database is never connected to.
    """
    began = time.perf_counter()
    # Every file problem (filechecks too, in migrations and rollbacks) is reported here, before
    # anything is created or run.
    files = load_files(config)
    if incremental and in_place:
        raise InvalidInput(
            "--incremental keeps a copy of the scratch database; it cannot go with --scratch-in-place"
        )
    scratch = _Scratch(config, scratch_url, in_place)
    cached, prefix_keys = scratch.cached(files.migrations) if incremental else (0, [])
    steps: list[VerifyStep] = []
    with scratch as cfg:
        run = _Run(cfg, scratch, in_place, files.parsed)
        try:
            before = run.start()
            stop: str | None = None
            for i, mig in enumerate(files.migrations):
                if i < cached:
                    steps.append(_step(mig, "proven", note=_CACHED))
                    if on_step:
                        on_step(steps[-1])
                    continue
                if stop is not None:
                    steps.append(_step(mig, "not-checked", note=f"not checked: {stop}"))
                    continue
                step, before = run.one(mig, before, files.migrations[: i + 1])
                steps.append(step)
                if on_step:
                    on_step(step)
                if step.outcome in ("failed", "leaky"):
                    if step.note != _APPLIED:
                        stop = f"{step.name} could not be applied" if step.note is None else step.note
                    elif fail_fast:
                        stop = f"--fail-fast stopped at {step.name}"
        except psycopg.OperationalError as exc:
            raise ConnectError(f"lost the connection to the scratch database: {str(exc).strip()}") from exc
        except psycopg.Error as exc:
            raise SqlmigError(f"cannot read the schema of the scratch database: {str(exc).strip()}") from exc
        finally:
            run.close()
        if (
            incremental
            and cached < len(steps)
            and all(s.outcome in ("proven", "irreversible") for s in steps)
        ):
            scratch.keep(prefix_keys[-1])
    return VerifyReport(
        ok=all(s.outcome in ("proven", "irreversible") for s in steps),
        scratch=scratch.description,
        steps=tuple(steps),
        snapshot_ms=run.timer.mean_ms,
        warnings=tuple(scratch.warnings),
        duration_ms=round((time.perf_counter() - began) * 1000),
    )


# A step --incremental did not check again: the same files were proven by an earlier run.
_CACHED = "proven by an earlier run with the same files (--incremental)"
# A failed or leaky step's note when the run could go on from the migration's applied state.
_APPLIED = "the migration is applied again: the next ones are checked from its applied state"


class _Run:
    """One verify run's connection and state on the scratch database."""

    def __init__(self, cfg: Config, scratch: _Scratch, in_place: bool, parsed: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.parsed = parsed  # files.load's parses (MigrationSet.parsed)
        self.scratch = scratch
        self.in_place = in_place
        self.history = History(cfg.schema_name, cfg.table)
        self.conn = connect(cfg)
        self.timer = _Timer(self.conn, self.history)

    def start(self) -> schemadiff.Snapshot:
        _prepare(self.conn, self.cfg, self.history, self.in_place)
        return self.timer.take()

    def close(self) -> None:
        self.conn.close()

    def one(
        self, mig: Migration, before: schemadiff.Snapshot, upto: tuple[Migration, ...]
    ) -> tuple[VerifyStep, schemadiff.Snapshot]:
        start = time.perf_counter()
        fast = mig.transactional and mig.rollback.transactional and not mig.rollback.irreversible
        # Each file split once (files.load's parse reused), for every run of it below.
        up, down = _steps(mig)
        steps = _Steps(up, down, prepare(up, self.parsed)[0], prepare(down, self.parsed)[0])
        found = self._fast(mig, before, steps) if fast else None
        if found is None:
            found = self._slow(mig, before, upto, steps)
        outcome, fields, after = found
        return _step(mig, outcome, duration_ms=round((time.perf_counter() - start) * 1000), **fields), after

    # -- one transaction, a savepoint --------------------------------------------------------

    def _fast(
        self, mig: Migration, before: schemadiff.Snapshot, steps: _Steps
    ) -> tuple[Outcome, dict[str, object], schemadiff.Snapshot] | None:
        """The check in one transaction (see the module's doc); None: run it the slow way."""
        up = steps.up
        conn, history = self.conn, self.history
        try:
            with conn.transaction():
                _run(conn, up, steps.up_sql, self.cfg)
                conn.execute(*history.insert(record_fields(mig, status="applied"), mig.rollback.text))
                conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT would check
                applied = self.timer.take()
                with conn.transaction(force_rollback=True):  # SAVEPOINT … ROLLBACK TO it
                    _run(conn, steps.down, steps.down_sql, self.cfg)
                    conn.execute(*history.delete(up.version))
                    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    rolled_back = self.timer.take()
                    verdict = _compare(mig, before, rolled_back, applied)
                    if verdict is None:
                        _run(conn, up, steps.up_sql, self.cfg)
                        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                        verdict = _compare_again(mig, applied, self.timer.take())
        except psycopg.OperationalError:
            raise
        except psycopg.Error:
            # Not always an error of the files: in one transaction some DDL behaves otherwise
            # (ALTER TYPE … ADD VALUE, then using it). The slow way decides, as the engine would.
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            return None
        finally:
            if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                reset_session(conn)
        if verdict is None:
            return "proven", {}, applied
        return "leaky", {**verdict, "note": _APPLIED}, applied

    # -- the engine's own path ---------------------------------------------------------------

    def _slow(
        self, mig: Migration, before: schemadiff.Snapshot, upto: tuple[Migration, ...], steps: _Steps
    ) -> tuple[Outcome, dict[str, object], schemadiff.Snapshot]:
        up, down = steps.up, steps.down
        # The engine's executor, on this connection: what `up` and `down` run, without a new
        # connection, lock, history read and recorded snapshot for each of the three runs.
        executor = Executor(self.conn, self.history, self.cfg)
        try:
            executor.apply(up, mig, steps.up_sql)
        except MigrationFailed as exc:
            return "failed", {"problems": (f"{mig.path} fails on the scratch database", *exc.lines())}, before
        applied = self.timer.take()
        if mig.rollback.irreversible:
            return (
                "irreversible",
                {"note": f"{mig.rollback.path}: irreversible ({mig.rollback.irreversible}); not run"},
                applied,
            )
        try:
            executor.revert(down, steps.down_sql)
        except MigrationFailed as exc:
            failed: dict[str, object] = {
                "problems": (f"{mig.rollback.path} fails on the scratch database", *exc.lines())
            }
            return "failed", {**failed, "note": self._rebuild(upto)}, self.timer.take()
        rolled_back = self.timer.take()
        verdict = _compare(mig, before, rolled_back, applied)
        if verdict is not None:
            return "leaky", {**verdict, "note": self._rebuild(upto)}, self.timer.take()
        try:
            executor.apply(up, mig, steps.up_sql)
        except MigrationFailed as exc:
            return (
                "leaky",
                {
                    "problems": (
                        f"{mig.path} fails when applied again after {mig.rollback.path}: the rollback "
                        "leaves something behind that the schema comparison does not see (data, a "
                        "setting)",
                        *exc.lines(),
                    ),
                    "note": self._rebuild(upto),
                },
                self.timer.take(),
            )
        again = self.timer.take()
        verdict = _compare_again(mig, applied, again)
        if verdict is not None:
            return "leaky", {**verdict, "note": self._rebuild(upto)}, self.timer.take()
        return "proven", {}, again

    def _rebuild(self, upto: tuple[Migration, ...]) -> str:
        """The applied state of upto[-1] on a fresh scratch database: the leaked one is
        dropped (in place, its schema cannot be trusted any more: the run stops there)."""
        if self.in_place:
            return "--scratch-in-place: the scratch database cannot be rebuilt; not going on"
        self.conn.close()
        self.cfg = self.scratch.renew()
        self.conn = connect(self.cfg)
        self.timer.conn = self.conn
        _prepare(self.conn, self.cfg, self.history, False)
        apply.up(self.cfg, to=str(upto[-1].number))
        return _APPLIED


def _steps(mig: Migration) -> tuple[PlanStep, PlanStep]:
    """The up and down steps of a migration, as plan_up and plan_down make them."""
    return plan.step_of(mig, "up"), plan.step_of(mig, "down")


class _Steps(NamedTuple):
    """A migration's up and down steps and their statements (sqlmig.engine.prepare)."""

    up: PlanStep
    down: PlanStep
    up_sql: list[sqltext.Statement]
    down_sql: list[sqltext.Statement]


def _run(conn: psycopg.Connection, step: PlanStep, stmts: list[sqltext.Statement], cfg: Config) -> None:
    """A step's statements as the engine sends them in a transaction (timeouts first)."""
    for st in [*timeouts.set_statements(step, cfg), *stmts]:
        conn.execute(st.text, prepare=False)  # type: ignore[arg-type]


def _compare(
    mig: Migration,
    before: schemadiff.Snapshot,
    rolled_back: schemadiff.Snapshot,
    applied: schemadiff.Snapshot,
) -> dict[str, object] | None:
    differences = schemadiff.diff(before, rolled_back)
    if not differences:
        return None
    return {
        "differences": tuple(differences),
        "problems": tuple(
            line for d in differences for line in _rollback_lines(mig, d, applied, before, rolled_back)
        ),
    }


def _compare_again(
    mig: Migration, applied: schemadiff.Snapshot, again: schemadiff.Snapshot
) -> dict[str, object] | None:
    differences = schemadiff.diff(applied, again)
    if not differences:
        return None
    return {
        "differences": tuple(differences),
        "problems": tuple(
            f"{mig.path} applied again after {mig.rollback.path}: "
            f"{d.line(added='is extra', removed='is missing')} (compared with the first apply)"
            for d in differences
        ),
    }


def _rollback_lines(
    mig: Migration,
    d: schemadiff.Difference,
    applied: schemadiff.Snapshot,
    before: schemadiff.Snapshot,
    after: schemadiff.Snapshot,
) -> list[str]:
    path = mig.rollback.path
    if d.change == "added":
        return [f"{path} leaves {d.label} behind"]
    if d.change == "removed":
        if d.key in applied.objects.get(d.group, {}):
            return [f"{path} drops {d.label}, which existed before {mig.name}"]
        return [f"{path} does not restore {d.label}, which {mig.name} removes"]
    changes = ", ".join(c.render() for c in d.changes)
    lines = [f"{path} does not restore {d.label}: {changes} (before {mig.name} → after the rollback)"]
    old = before.objects.get(d.group, {}).get(d.key, {}).get("_source")
    new = after.objects.get(d.group, {}).get(d.key, {}).get("_source")
    if isinstance(old, str) and isinstance(new, str):
        lines += _differing_lines(old, new)
    return lines


_DIFF_LINES = 20


def _differing_lines(old: str, new: str) -> list[str]:
    """The lines of two definitions that differ, `-` before, `+` after the rollback."""
    out = [
        f"    {line}"
        for line in difflib.unified_diff(
            old.splitlines(), new.splitlines(), "before", "after the rollback", n=0, lineterm=""
        )
        if not line.startswith(("---", "+++", "@@"))
    ]
    if len(out) > _DIFF_LINES:
        out = [*out[:_DIFF_LINES], f"    … {len(out) - _DIFF_LINES} more lines differ"]
    return out


def _step(mig: Migration, outcome: Outcome, **fields: object) -> VerifyStep:
    return VerifyStep(
        number=mig.number,
        version=str(mig.version),
        name=mig.name,
        migration=mig.path,
        rollback=mig.rollback.path,
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


def _prepare(conn: psycopg.Connection, cfg: Config, history: History, in_place: bool) -> None:
    """Create sqlmig's own tables first, so that they are in the very first snapshot."""
    with lock.held(conn, lock.lock_key(cfg.qualified_table), cfg.lock_timeout, cfg.qualified_table):
        if in_place and history.read(conn):
            raise InvalidInput(
                f"--scratch-in-place: {cfg.qualified_table} of the scratch database "
                "already has applied migrations; give it an empty database"
            )
        history.ensure(conn)
        drift.SnapshotStore(history).ensure(conn)


class _Timer:
    def __init__(self, conn: psycopg.Connection, history: History) -> None:
        self.conn = conn
        self.history = history
        self.total = 0.0
        self.count = 0

    def take(self) -> schemadiff.Snapshot:
        start = time.perf_counter()
        snap = snapshot.take(self.conn, self.history.schema, drift.own_tables(self.history), sources=True)
        self.total += time.perf_counter() - start
        self.count += 1
        return snap

    @property
    def mean_ms(self) -> float:
        return round(self.total / self.count * 1000, 1) if self.count else 0.0


class _Scratch(contextlib.AbstractContextManager):
    """The scratch database: created (and dropped on exit) unless `in_place`."""

    def __init__(self, config: Config, url: str | None, in_place: bool) -> None:
        if in_place and url is None:
            raise InvalidInput("--scratch-in-place needs --scratch-url")
        self.in_place = in_place
        self.warnings: list[str] = []
        self.name: str | None = None
        self.template: str | None = None  # --incremental: the kept database to start from
        self.tag = verify_cache.project_tag(config)
        if url is None:
            # Loaded here, not at the top: the embedded server matters only when no database is configured.
            from sqlmig.db.embedded import EmbeddedServer

            server = EmbeddedServer(config.root)
            self.server_url = server.start()
            self.where = f"the embedded PostgreSQL in {server.home}"
        else:
            self.server_url = url
            self.where = redact(url)
            _refuse_target(config, url)
        # The scratch URL brings its own credentials: the target's password is not sent there.
        # A scratch database is never backed up (up --backup / backup_dir).
        self.admin = dataclasses.replace(
            config, database_url=Secret(self.server_url), password=None, backup_dir=None
        )
        self.description = f"database {_dbname(url)} on {self.where}" if in_place else self.where

    def __enter__(self) -> Config:
        if self.in_place:
            return self.admin
        self.name = f"sqlmig_verify_{uuid.uuid4().hex[:12]}"
        with contextlib.closing(connect(self.admin)) as conn:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(self.name), sql.Identifier(self.template or "template0")
                    )
                )
            except psycopg.Error as exc:
                raise InvalidInput(
                    f"cannot create a scratch database on {self.where}: {redact(str(exc).strip())}",
                    hint="give --scratch-url a server where this user may CREATE DATABASE, or "
                    "an empty database with --scratch-in-place",
                ) from exc
        self.description = f"scratch database {self.name} on {self.where} (dropped afterwards)"
        url = make_conninfo(self.server_url, dbname=self.name)
        return dataclasses.replace(self.admin, database_url=Secret(url))

    def cached(self, migrations: tuple[Migration, ...]) -> tuple[int, list[str]]:
        """How many of the first migrations an earlier run proved (its kept database becomes
        this run's template), and every prefix's key."""
        try:
            with contextlib.closing(connect(self.admin)) as conn:
                prefix_keys = verify_cache.keys(self.admin, migrations, conn.info.server_version // 10000)
                found = verify_cache.find(conn, self.tag, prefix_keys)
        except psycopg.Error as exc:
            raise ConnectError(
                f"cannot read the databases of {self.where}: {redact(str(exc).strip())}"
            ) from exc
        if found is None:
            return 0, prefix_keys
        self.template = found[1]
        return found[0], prefix_keys

    def keep(self, key: str) -> None:
        """Keep the scratch database (all proven) for the next --incremental run."""
        assert self.name is not None
        try:
            with contextlib.closing(connect(self.admin)) as conn:
                verify_cache.keep(conn, self.name, self.tag, key)
        except (psycopg.Error, ConnectError) as exc:
            self.warnings.append(
                f"could not keep the proven database for --incremental: {redact(str(exc).strip())}"
            )

    def renew(self) -> Config:
        """A new, empty scratch database in place of the current one (dropped)."""
        self.__exit__()
        return self.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self.name is None:
            return
        try:
            with contextlib.closing(connect(self.admin)) as conn:
                force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(self.name)))
        except (psycopg.Error, ConnectError) as exc:
            self.warnings.append(
                f"could not drop the scratch database {self.name}: "
                f"{redact(str(exc).strip())}; drop it by hand"
            )


def _dbname(url: str | None) -> str:
    try:
        return str(conninfo_to_dict(url or "").get("dbname") or "(default)")
    except psycopg.ProgrammingError:
        return "(default)"


def _refuse_target(config: Config, scratch_url: str) -> None:
    """Never run verify in the configured target database, even when told to."""
    if config.database_url is None:
        return
    try:
        target = conninfo_to_dict(config.database_url.get_secret_value())
        scratch = conninfo_to_dict(scratch_url)
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(f"--scratch-url: {redact(str(exc).strip())}") from exc

    def where(d: dict) -> tuple:
        return (d.get("host") or "", str(d.get("port") or "5432"), d.get("dbname") or "")

    if where(target) == where(scratch) and scratch.get("dbname"):
        raise InvalidInput(
            "--scratch-url names the configured target database; verify creates "
            "and drops databases and never runs in the target",
            hint="point --scratch-url at another server or database",
        )


__all__ = ["VerifyReport", "VerifyStep", "verify"]
