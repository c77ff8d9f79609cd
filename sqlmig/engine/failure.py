"""How a failed step is told: a server error mapped to MigrationFailed at file:line:column."""

from __future__ import annotations

import psycopg
from psycopg import pq

from sqlmig.errors import ConnectError, ConnectionLost, MigrationFailed
from sqlmig.files import sqltext
from sqlmig.models import PlanStep


def unconfirmed(error: ConnectError, names: list[str]) -> ConnectError:
    """A lost connection mid-group (group commit, sqlmig.engine.batch): the steps before it
    committed, but no commit has yet waited for their flush, so a server that crashed may have
    lost them."""
    listed = names[0] if len(names) == 1 else f"{len(names)} migrations ({names[0]} … {names[-1]})"
    were = "was" if len(names) == 1 else "were"
    return ConnectionLost(
        error.message,
        reason=getattr(error, "reason", error.message),
        hint=(
            f"{error.hint}; {listed}, sent before it in the same group, had committed but {were} "
            "not yet confirmed on disk: `sqlmig status` shows what is applied (all of them, unless "
            "the server crashed)"
        ),
    )


def statement_ok(cursor: psycopg.Cursor) -> bool:
    """Whether a statement sent in a pipeline succeeded: psycopg keeps no result for one that
    failed or was skipped after a failure."""
    return cursor.pgresult is not None and cursor.pgresult.status != pq.ExecStatus.FATAL_ERROR


def server_failure(
    conn: psycopg.Connection,
    step: PlanStep,
    stmts: list[sqltext.Statement],
    failed: int | None,
    exc: psycopg.Error,
    *,
    rolled_back: bool,
) -> MigrationFailed | ConnectError:
    """A server error while a step ran, as the user needs it: MigrationFailed at the file's
    line:column with SQLSTATE, message, detail, hint (and the statements a no-transaction step
    committed before it), or ConnectionLost when the connection is gone."""
    if isinstance(exc, psycopg.OperationalError) and (conn.closed or conn.broken):
        state = (
            "the server rolls back the open transaction; the next run retries it"
            if rolled_back
            else "this no-transaction step stays in state `started`: check the database, then `sqlmig repair`"
        )
        return ConnectionLost(
            f"{step.path}: connection lost while running {step.name}: {str(exc).strip()}",
            reason=" ".join(str(exc).split()),
            hint=state,
        )
    diag = exc.diag
    line = column = None
    if failed is not None and failed < len(stmts):
        index = sqltext.LineIndex(step.sql)
        st = stmts[failed]
        offset = st.start
        if diag.statement_position:
            offset += int(diag.statement_position) - 1
        line, column = index.position(offset)
    detail = diag.message_detail
    if diag.context:
        detail = f"{detail}; " if detail else ""
        detail += "CONTEXT: " + diag.context.strip().replace("\n", "; ")
    committed: list[int] = []
    if not rolled_back and failed is not None:
        index = sqltext.LineIndex(step.sql)
        # The file's statements before the failed one (not the SETs of its timeouts).
        committed = [
            index.position(st.start)[0]
            for st in stmts[:failed]
            if step.sql[st.start : st.start + st.size] == st.text
        ]
    return MigrationFailed(
        path=step.path,
        line=line,
        column=column,
        sqlstate=diag.sqlstate,
        server_message=diag.message_primary or str(exc).strip(),
        detail=detail,
        server_hint=diag.message_hint,
        rolled_back=rolled_back,
        direction=step.direction,
        version=step.version,
        committed=committed,
    )
