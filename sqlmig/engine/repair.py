"""What `repair` finds and fixes: rows a no-transaction step left unfinished, invalid indexes a
failed CONCURRENTLY build left behind, and formatting-only edits of applied files.

Each fix is one statement plus its line in the event log; `repair` (at the end) composes them with
the connection and the lock, and the CLI decides what to print and whether to ask.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from sqlmig.config.settings import Config
from sqlmig.db import indexes
from sqlmig.db.history import History
from sqlmig.engine import plan
from sqlmig.engine.session import guarded, load_files, session
from sqlmig.errors import ConnectError, FileProblems, HistoryInconsistent, InvalidInput, RepairFailed
from sqlmig.models import AppliedRecord, Migration, MigrationSet, Problem
from sqlmig.reports import FormattingChange, InvalidIndex

if TYPE_CHECKING:
    from sqlmig.reports import RepairReport


def invalid_indexes(conn: psycopg.Connection) -> list[InvalidIndex]:
    return [
        InvalidIndex(
            schema_name=schema,
            name=name,
            qualified=qualified,
            table=table,
            definition=definition,
            building_pid=pid,
        )
        for schema, name, qualified, table, definition, pid in indexes.invalid(conn)
    ]


def unfinished(records: Sequence[AppliedRecord]) -> list[AppliedRecord]:
    return [r for r in records if r.status != plan.SETTLED]


def formatting_changes(files: MigrationSet, records: Sequence[AppliedRecord]) -> list[FormattingChange]:
    return [
        FormattingChange(
            version=record.version,
            name=mig.name,
            path=mig.path,
            stored_checksum=record.checksum or "",
            checksum=mig.checksum,
        )
        for record, mig in plan.match(files, records).applied
        if mig is not None and record.status == plan.SETTLED and plan.formatting_only(record, mig)
    ]


# -- fixes (call with the migration lock held) ---------------------------------------------------


def resolve_row(
    conn: psycopg.Connection,
    history: History,
    records: Sequence[AppliedRecord],
    version: str,
    *,
    applied: bool,
) -> str:
    """`--mark-applied` (the step was finished by hand) or `--remove` (it was undone by hand)."""
    record = next((r for r in records if r.version == version), None)
    if record is None:
        raise InvalidInput(f"repair: no history row with version {version}")
    label = record.name or version
    if record.status == plan.SETTLED:
        raise InvalidInput(f"repair: {label} ({version}) is already applied; nothing to repair")
    with conn.transaction():
        if applied:
            conn.execute(*history.set_status(version, plan.SETTLED))
            action = f"marked {label} ({version}) applied"
        else:
            conn.execute(*history.delete(version))
            action = f"removed {label} ({version}) from the history"
        conn.execute(
            *history.event(
                "repair", "ok", version=version, name=record.name, detail=f"{action}; was `{record.status}`"
            )
        )
    return action


def store_formatting(
    conn: psycopg.Connection,
    history: History,
    files: MigrationSet,
    records: Sequence[AppliedRecord],
    versions: Sequence[str],
) -> list[str]:
    """Store the new checksum of formatting-only edits: the named versions, or all of them.

    All or nothing: a named version whose SQL changed is refused before anything is written.
    """
    matched = {r.version: (r, m) for r, m in plan.match(files, records).applied}
    if not versions:
        chosen = [
            (r, m)
            for r, m in matched.values()
            if m is not None and r.status == plan.SETTLED and plan.formatting_only(r, m)
        ]
    else:
        chosen = []
        refused: list[Problem] = []
        for version in dict.fromkeys(versions):
            record, mig = matched.get(version, (None, None))
            if record is None:
                raise InvalidInput(f"repair --accept-formatting: no history row with version {version}")
            label = record.name or version
            if record.status != plan.SETTLED:
                raise InvalidInput(
                    f"repair --accept-formatting: {label} ({version}) is in state "
                    f"`{record.status}`; resolve that first"
                )
            if mig is None:
                raise InvalidInput(
                    f"repair --accept-formatting: {label} ({version}) has no file in migrations/"
                )
            if record.checksum is None or record.checksum == mig.checksum:
                continue  # unchanged (or a hand-written row `up` has yet to adopt): nothing to do
            if not plan.formatting_only(record, mig):
                why = (
                    "its statements changed, not only formatting or comments"
                    if record.canonical_checksum
                    else "no canonical checksum was stored when it was applied (an older sqlmig, an "
                    "adopted row, or a file pglast cannot parse), so a formatting-only edit "
                    "cannot be told from a SQL change"
                )
                refused.append(
                    Problem(
                        path=mig.path,
                        code="changed",
                        message=(
                            f"not accepted: {why}; restore the file as it was applied and put the "
                            "change in a new migration"
                        ),
                    )
                )
                continue
            chosen.append((record, mig))
        if refused:
            raise HistoryInconsistent(
                refused,
                hint="--accept-formatting only records edits that "
                "leave the SQL the same; nothing was changed",
            )
    done: list[str] = []
    with conn.transaction():
        for record, mig in chosen:
            assert mig is not None and record.checksum is not None
            conn.execute(*history.realign(record.version, mig.checksum, record.canonical_checksum))
            action = (
                f"accepted the formatting-only edit of {mig.name} ({record.version}): "
                f"checksum {record.checksum[:12]} -> {mig.checksum[:12]}"
            )
            conn.execute(
                *history.event(
                    "repair", "ok", version=record.version, name=mig.name, detail=f"{action} ({mig.path})"
                )
            )
            done.append(action)
    return done


def rollback_changes(
    files: MigrationSet, records: Sequence[AppliedRecord]
) -> list[tuple[AppliedRecord, Migration]]:
    """Applied migrations whose rollback file differs from the text stored when applied."""
    return [
        (r, m)
        for r, m in plan.match(files, records).applied
        if m is not None and r.rollback_checksum is not None and r.rollback_checksum != m.rollback.checksum
    ]


def store_rollbacks(
    conn: psycopg.Connection,
    history: History,
    files: MigrationSet,
    records: Sequence[AppliedRecord],
    versions: Sequence[str],
) -> list[str]:
    """Store the rollback file's text in place of the one stored when each version was applied
    (so that `down` runs it), logged with both checksums. All or nothing."""
    matched = {r.version: (r, m) for r, m in plan.match(files, records).applied}
    chosen: list[tuple[AppliedRecord, Migration]] = []
    for version in dict.fromkeys(versions):
        record, mig = matched.get(version, (None, None))
        if record is None:
            raise InvalidInput(f"repair --refresh-rollback: no history row with version {version}")
        label = record.name or version
        if mig is None:
            raise InvalidInput(
                f"repair --refresh-rollback: {label} ({version}) has no file in "
                "migrations/, so no rollback file to take"
            )
        if record.rollback_checksum == mig.rollback.checksum:
            continue  # already the stored text
        chosen.append((record, mig))
    done: list[str] = []
    with conn.transaction():
        for record, mig in chosen:
            rb = mig.rollback
            old = (record.rollback_checksum or "none")[:12]
            conn.execute(*history.set_rollback(record.version, rb.text, rb.checksum))
            action = (
                f"stored {rb.path} as the rollback of {mig.name} ({record.version}): "
                f"checksum {old} -> {rb.checksum[:12]}"
            )
            conn.execute(*history.event("repair", "ok", version=record.version, name=mig.name, detail=action))
            done.append(action)
    return done


def pick_indexes(
    conn: psycopg.Connection, found: Sequence[InvalidIndex], names: Sequence[str]
) -> list[InvalidIndex]:
    """The invalid indexes the user named (`schema.index` or an unambiguous `index`)."""
    chosen: list[InvalidIndex] = []
    for name in dict.fromkeys(names):
        hits = [i for i in found if name in (i.qualified, f"{i.schema_name}.{i.name}", i.name)]
        if len(hits) > 1:
            raise InvalidInput(
                f"repair --drop-invalid-index {name}: ambiguous, name one of "
                f"{', '.join(i.qualified for i in hits)}"
            )
        if not hits:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
            what = (
                "is a valid index: repair drops only invalid ones"
                if exists and exists[0]
                else "is not an invalid index in this database"
            )
            raise InvalidInput(f"repair --drop-invalid-index {name}: {what} (`sqlmig repair` lists them)")
        index = hits[0]
        if index.building_pid is not None:
            raise InvalidInput(
                f"repair --drop-invalid-index {name}: a concurrent build is still "
                f"running in backend {index.building_pid}; wait for it or cancel "
                f"it (SELECT pg_cancel_backend({index.building_pid}))"
            )
        chosen.append(index)
    return chosen


def drop_indexes(conn: psycopg.Connection, history: History, targets: Sequence[InvalidIndex]) -> list[str]:
    """DROP INDEX CONCURRENTLY each one, in autocommit, each logged once it is gone."""
    done: list[str] = []
    for index in targets:
        start = time.perf_counter()
        statement = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(index.schema_name, index.name)
        )
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                raise ConnectError(
                    f"lost the connection while running {index.drop_sql}: {str(exc).strip()}"
                ) from exc
            diag = exc.diag
            message = (
                f"{index.drop_sql} failed: ERROR [{diag.sqlstate}]: "
                f"{diag.message_primary or str(exc).strip()}"
            )
            with contextlib.suppress(psycopg.Error):  # the failure itself is what matters
                conn.execute(*history.event("repair", "failed", detail=message))
            before = f"; dropped before the failure: {', '.join(done)}" if done else ""
            raise RepairFailed(
                message + before,
                hint="the index is still there and still invalid; fix the cause "
                "and run the same repair again",
            ) from exc
        ms = round((time.perf_counter() - start) * 1000)
        action = f"dropped invalid index {index.qualified} on {index.table}"
        conn.execute(
            *history.event(
                "repair",
                "ok",
                duration_ms=ms,
                detail=f"{action}: {index.drop_sql}" + (f" ({index.definition})" if index.definition else ""),
            )
        )
        done.append(action)
    return done


def repair(
    config: Config,
    *,
    mark_applied: str | None = None,
    remove: str | None = None,
    accept_formatting: Iterable[str] | None = None,
    drop_invalid_indexes: bool = False,
    drop_index: Iterable[str] = (),
    refresh_rollback: Iterable[str] = (),
) -> RepairReport:
    """Without an action, list what can be repaired (read-only, no lock). With one action, do it
    under the lock; every change is logged in the event log.

    - `mark_applied` / `remove`: resolve a `started`/`failed`/`rolling_back` row after fixing
      the database by hand;
    - `accept_formatting`: store the new checksum of formatting-only edits ([] = all of them);
    - `drop_invalid_indexes` / `drop_index`: DROP INDEX CONCURRENTLY invalid indexes (all / named);
    - `refresh_rollback`: store these versions' rollback files in place of the texts stored when
      they were applied (which `down` runs).
    """
    # Loaded here, not at the top: only this command builds these records (see sqlmig.reports).
    from sqlmig.reports import RepairReport

    names = list(drop_index)
    refresh = list(refresh_rollback)
    chosen = [
        mark_applied is not None,
        remove is not None,
        accept_formatting is not None,
        drop_invalid_indexes or bool(names),
        bool(refresh),
    ]
    if sum(chosen) > 1:
        raise InvalidInput(
            "repair: one action at a time (--mark-applied, --remove, "
            "--accept-formatting, --drop-invalid-index[es], --refresh-rollback)"
        )
    if not any(chosen):
        return _repair_listing(config)
    files = load_files(config) if accept_formatting is not None or refresh else None
    notes: list[str] = []
    with guarded(config, locked=True) as (conn, history, guard):
        if files is not None or mark_applied is not None or remove is not None:
            with guard.locked():
                records = history.read(conn)
                if files is not None and refresh:
                    done = store_rollbacks(conn, history, files, records, refresh)
                elif files is not None:
                    done = store_formatting(conn, history, files, records, list(accept_formatting or ()))
                else:
                    # Either way the index stays invalid: marked applied, the step is taken for
                    # done; removed, its rerun's CREATE INDEX … IF NOT EXISTS skips the index.
                    notes += [
                        f"warning: invalid index {i.qualified} on {i.table} is still "
                        "there: if the step built it, it is not complete; drop it "
                        f"(`sqlmig repair --drop-invalid-index {i.qualified}`) and let "
                        "`up` build it"
                        for i in invalid_indexes(conn)
                    ]
                    version = mark_applied if mark_applied is not None else remove
                    assert version is not None
                    done = [resolve_row(conn, history, records, version, applied=mark_applied is not None)]
        else:
            # DROP INDEX CONCURRENTLY runs in autocommit: under the lease in transaction mode.
            with guard.hold_lease("repair", "drop invalid indexes"):
                found = invalid_indexes(conn)
                if names and not drop_invalid_indexes:
                    targets = pick_indexes(conn, found, names)
                else:
                    targets = [i for i in found if i.building_pid is None]
                    notes += [
                        f"skipped {i.qualified} on {i.table}: a concurrent build is still "
                        f"running in backend {i.building_pid}"
                        for i in found
                        if i.building_pid is not None
                    ]
                done = drop_indexes(conn, history, targets)
    notes += [f"warning: {w.message}" for w in guard.warnings]
    return RepairReport(done=tuple(done), notes=tuple(notes))


def _repair_listing(config: Config) -> RepairReport:
    # Loaded here, not at the top: only this command builds these records (see sqlmig.reports).
    from sqlmig.reports import RepairReport, RollbackChange

    notes: list[str] = []
    try:
        files: MigrationSet | None = load_files(config)
    except FileProblems as exc:
        files = None
        notes.append(f"formatting-only edits not checked: {exc.message} (see `sqlmig validate`)")
    with session(config, locked=False) as (conn, history):
        records = history.read(conn)
        indexes = invalid_indexes(conn)
    return RepairReport(
        unfinished=tuple(unfinished(records)),
        invalid_indexes=tuple(indexes),
        formatting_only=tuple(formatting_changes(files, records)) if files is not None else (),
        rollbacks_changed=tuple(
            RollbackChange(
                version=r.version,
                name=m.name,
                path=m.rollback.path,
                stored_checksum=r.rollback_checksum or "",
                checksum=m.rollback.checksum,
            )
            for r, m in rollback_changes(files, records)
        )
        if files is not None
        else (),
        notes=tuple(notes),
    )
