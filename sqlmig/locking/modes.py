"""The migration lock of the configured mode, chosen once (see sqlmig.locking.guard)."""

from __future__ import annotations

from collections.abc import Callable

from sqlmig.config.settings import Config
from sqlmig.db.connect import Connection, session_statements
from sqlmig.db.history import History
from sqlmig.locking.guard import Guard
from sqlmig.locking.session import SessionLock, lock_key


def choose(config: Config, conn: Connection, history: History, reconnect: Callable[[], Connection]) -> Guard:
    """The lock of `config.lock_mode` for this connection (not taken yet: enter it)."""
    key = lock_key(config.qualified_table)
    if config.lock_mode == "transaction":
        # Loaded here, not at the top: the runs that are not behind PgBouncer never use it.
        from sqlmig.locking.transaction import TransactionLock

        return TransactionLock(
            conn,
            history,
            key=key,
            timeout=config.lock_timeout,
            what=config.qualified_table,
            reconnect=reconnect,
            local_settings=session_statements(config, local=True),
        )
    return SessionLock(conn, history, key=key, timeout=config.lock_timeout, what=config.qualified_table)


__all__ = ["choose"]
