"""A migration's lock_timeout and statement_timeout, and retrying it after a lock timeout.

Durations are read and shown by sqlmig.config.durations.

Which value a step runs with: its file's header, else (transactional files only) the setting.
A no-transaction file runs with the session's values unless its header says otherwise: what
needs autocommit is mostly CREATE/DROP INDEX CONCURRENTLY, whose waits block nobody, and a lock
or statement timeout in its later phases leaves an INVALID index behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmig.config.durations import server_value
from sqlmig.files.sqltext import Statement

if TYPE_CHECKING:
    from sqlmig.config.settings import Config
    from sqlmig.models import PlanStep


# A lock timeout, or a deadlock: the server rolled the migration back because of another
# session's locks, so running it again from the start is safe and usually succeeds.
RETRYABLE = {"55P03": "lock timeout", "40P01": "deadlock"}


def for_step(step: PlanStep, config: Config | None) -> dict[str, float]:
    """{'lock_timeout': s, 'statement_timeout': s} this step sets; left out = session value."""
    out: dict[str, float] = {}
    own = {"lock_timeout": step.lock_timeout, "statement_timeout": step.statement_timeout}
    configured = {
        "lock_timeout": config.migration_lock_timeout if config else None,
        "statement_timeout": config.statement_timeout if config else None,
    }
    for name, value in own.items():
        if value is None and step.transactional:
            value = configured[name]
        if value is not None:
            out[name] = value
    return out


def set_statements(step: PlanStep, config: Config | None) -> list[Statement]:
    """SET LOCAL (transactional) or SET (no-transaction; RESET ALL undoes it after the file)
    for the step's timeouts, as statements run before the file's own."""
    scope = "LOCAL " if step.transactional else ""
    return [
        Statement(text=f"SET {scope}{name} = '{server_value(value)}'", start=0, kind="VariableSetStmt")
        for name, value in for_step(step, config).items()
    ]
