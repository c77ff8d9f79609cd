"""`sqlmig verify`: prove every rollback on a scratch database, never on the target.

For each migration in order, on a throwaway database: snapshot, apply it, snapshot, run its
rollback, require the schema equal to the one before, re-apply it and require the schema equal
to the one after the first apply. Applying and rolling back go through `ops.up`/`ops.down` on a
Config that points at the scratch database, so transactions, no-transaction files, the history
rows and the lock behave exactly as they do on the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig import drift, lock, ops, schemadiff
from sqlmig.config import Config, Secret, redact
from sqlmig.connect import connect
from sqlmig.errors import ConnectError, InvalidInput, MigrationFailed, SqlmigError
from sqlmig.history import History
from sqlmig.models import Migration


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStep:
    number: int
    version: str
    name: str
    migration: str
    rollback: str
    outcome: Literal["proven", "irreversible", "failed", "not-checked"]
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

    @property
    def failed(self) -> list[VerifyStep]:
        return [s for s in self.steps if s.outcome == "failed"]


OnVerified = Callable[[VerifyStep], None]


def verify(config: Config, *, scratch_url: str | None = None, in_place: bool = False,
           on_step: OnVerified | None = None) -> VerifyReport:
    """Apply, roll back and re-apply every migration on a scratch database.

    By default the scratch database is created on the project's embedded server and dropped at
    the end. `scratch_url`: create it on that server instead; with `in_place`, use the database
    of `scratch_url` itself (it must have no sqlmig history yet; it is left fully migrated).
    The configured target database is never connected to.
    """
    files = ops.load_files(config)  # every file problem is reported before anything is created
    scratch = _Scratch(config, scratch_url, in_place)
    with scratch as cfg:
        history = History(cfg.schema_name, cfg.table)
        conn = connect(cfg)
        try:
            _prepare(conn, cfg, history, in_place)
            timer = _Timer(conn, history)
            before = timer.take()
            steps: list[VerifyStep] = []
            for mig in files.migrations:
                if steps and steps[-1].outcome in ("failed", "not-checked"):
                    steps.append(_step(mig, "not-checked",
                                       note="not checked: an earlier migration failed"))
                    continue
                step, before = _verify_one(cfg, mig, before, timer)
                steps.append(step)
                if on_step:
                    on_step(step)
        except psycopg.OperationalError as exc:
            raise ConnectError(f"lost the connection to the scratch database: "
                               f"{str(exc).strip()}") from exc
        except psycopg.Error as exc:
            raise SqlmigError(f"cannot read the schema of the scratch database: "
                              f"{str(exc).strip()}") from exc
        finally:
            conn.close()
    return VerifyReport(ok=all(s.outcome != "failed" for s in steps), scratch=scratch.description,
                        steps=tuple(steps), snapshot_ms=timer.mean_ms,
                        warnings=tuple(scratch.warnings))


def _verify_one(cfg: Config, mig: Migration, before: schemadiff.Snapshot,
                timer: _Timer) -> tuple[VerifyStep, schemadiff.Snapshot]:
    start = time.perf_counter()

    def finish(outcome: Literal["proven", "irreversible", "failed"], **fields: object) -> VerifyStep:
        return _step(mig, outcome, duration_ms=round((time.perf_counter() - start) * 1000),
                     **fields)

    target = str(mig.number)
    try:
        ops.up(cfg, to=target)
    except MigrationFailed as exc:
        return finish("failed", problems=(f"{mig.path} fails on the scratch database",
                                          *exc.lines())), before
    applied = timer.take()
    if mig.rollback.irreversible:
        return finish("irreversible", note=f"{mig.rollback.path}: irreversible "
                                           f"({mig.rollback.irreversible}); not run"), applied
    try:
        ops.down(cfg, steps=1)
    except MigrationFailed as exc:
        return finish("failed", problems=(f"{mig.rollback.path} fails on the scratch database",
                                          *exc.lines())), applied
    rolled_back = timer.take()
    differences = schemadiff.diff(before, rolled_back)
    if differences:
        return finish("failed", differences=tuple(differences), problems=tuple(
            _rollback_line(mig, d, applied) for d in differences)), rolled_back
    try:
        ops.up(cfg, to=target)
    except MigrationFailed as exc:
        return finish("failed", problems=(
            f"{mig.path} fails when applied again after {mig.rollback.path}: the rollback leaves "
            "something behind that the schema comparison does not see (data, a setting)",
            *exc.lines())), rolled_back
    again = timer.take()
    differences = schemadiff.diff(applied, again)
    if differences:
        return finish("failed", differences=tuple(differences), problems=tuple(
            f"{mig.path} applied again after {mig.rollback.path}: "
            f"{d.line(added='is extra', removed='is missing')} (compared with the first apply)"
            for d in differences)), again
    return finish("proven"), again


def _rollback_line(mig: Migration, d: schemadiff.Difference, applied: schemadiff.Snapshot) -> str:
    path = mig.rollback.path
    if d.change == "added":
        return f"{path} leaves {d.label} behind"
    if d.change == "removed":
        if d.key in applied.objects.get(d.group, {}):
            return f"{path} drops {d.label}, which existed before {mig.name}"
        return f"{path} does not restore {d.label}, which {mig.name} removes"
    changes = ", ".join(c.render() for c in d.changes)
    return f"{path} does not restore {d.label}: {changes} (before {mig.name} → after the rollback)"


def _step(mig: Migration, outcome: Literal["proven", "irreversible", "failed", "not-checked"],
          **fields: object) -> VerifyStep:
    return VerifyStep(number=mig.number, version=str(mig.version), name=mig.name,
                      migration=mig.path, rollback=mig.rollback.path, outcome=outcome,
                      **fields)  # type: ignore[arg-type]


def _prepare(conn: psycopg.Connection, cfg: Config, history: History, in_place: bool) -> None:
    """Create sqlmig's own tables first, so that they are in the very first snapshot."""
    with lock.held(conn, lock.lock_key(cfg.qualified_table), cfg.lock_timeout,
                   cfg.qualified_table):
        if in_place and history.read(conn):
            raise InvalidInput(f"--scratch-in-place: {cfg.qualified_table} of the scratch database "
                               "already has applied migrations; give it an empty database")
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
        snap = drift.take(self.conn, self.history)
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
        if url is None:
            from sqlmig.embedded import EmbeddedServer

            server = EmbeddedServer(config.root)
            self.server_url = server.start()
            self.where = f"the embedded PostgreSQL in {server.home}"
        else:
            self.server_url = url
            self.where = redact(url)
            _refuse_target(config, url)
        # The scratch URL brings its own credentials: the target's password is not sent there.
        # A scratch database is never backed up (up --backup / backup_dir).
        self.admin = dataclasses.replace(config, database_url=Secret(self.server_url),
                                         password=None, backup_dir=None)
        self.description = (f"database {_dbname(url)} on {self.where}" if in_place
                            else self.where)

    def __enter__(self) -> Config:
        if self.in_place:
            return self.admin
        self.name = f"sqlmig_verify_{uuid.uuid4().hex[:12]}"
        with contextlib.closing(connect(self.admin)) as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                    sql.Identifier(self.name)))
            except psycopg.Error as exc:
                raise InvalidInput(
                    f"cannot create a scratch database on {self.where}: "
                    f"{redact(str(exc).strip())}",
                    hint="give --scratch-url a server where this user may CREATE DATABASE, or "
                         "an empty database with --scratch-in-place") from exc
        self.description = f"scratch database {self.name} on {self.where} (dropped afterwards)"
        url = make_conninfo(self.server_url, dbname=self.name)
        return dataclasses.replace(self.admin, database_url=Secret(url))

    def __exit__(self, *exc_info: object) -> None:
        if self.name is None:
            return
        try:
            with contextlib.closing(connect(self.admin)) as conn:
                force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(
                    sql.Identifier(self.name)))
        except (psycopg.Error, ConnectError) as exc:
            self.warnings.append(f"could not drop the scratch database {self.name}: "
                                 f"{redact(str(exc).strip())}; drop it by hand")


def _dbname(url: str) -> str:
    try:
        return conninfo_to_dict(url).get("dbname") or "(default)"
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
        raise InvalidInput("--scratch-url names the configured target database; verify creates "
                           "and drops databases and never runs in the target",
                           hint="point --scratch-url at another server or database")


__all__ = ["VerifyReport", "VerifyStep", "verify"]
