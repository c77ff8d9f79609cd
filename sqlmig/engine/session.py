"""What every operation starts from: the project's files, and a connection to the database with
the history and, for the commands that change it, the migration lock of the configured mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlmig.config.settings import Config
from sqlmig.db.connect import Connection, connect, open_session
from sqlmig.db.history import History
from sqlmig.files import cache as filecache
from sqlmig.files import load as files_mod
from sqlmig.locking.guard import Guard, Unlocked, attach
from sqlmig.locking.modes import choose
from sqlmig.models import MigrationSet


def load_files(config: Config) -> MigrationSet:
    """Every migration and rollback of the project, checked (FileProblems before any connection)."""
    cache = None
    # No cache (and so no .sqlmig/) where there is no migrations directory: the files' problem
    # is reported and nothing is created.
    if config.file_cache == "on" and config.migrations_path.is_dir():
        cache = filecache.location(config.root, config.migrations_path, config.rollbacks_path)
    return files_mod.load(config.root, config.migrations_path, config.rollbacks_path, cache=cache)


@contextlib.contextmanager
def session(config: Config, *, locked: bool) -> Iterator[tuple[Connection, History]]:
    """A connection and the history; with `locked`, the whole block holds the migration lock
    (in --lock-mode transaction: the block is one locked transaction)."""
    with guarded(config, locked=locked) as (conn, history, guard), guard.locked():
        yield conn, history


@contextlib.contextmanager
def guarded(config: Config, *, locked: bool) -> Iterator[tuple[Connection, History, Guard]]:
    """A connection, the history and, with `locked`, the migration lock of the configured mode
    (sqlmig.locking.guard), held for the block. Warnings about the lock (lost, a lease taken
    over) end up in `guard.warnings`, read after the block, or in the error that ended it."""
    with open_session(config) as (conn, history):
        guard = choose(config, conn, history, reconnect=lambda: connect(config)) if locked else Unlocked()
        try:
            with guard:
                yield conn, history, guard
        except BaseException as exc:
            attach(exc, guard.warnings)
            raise
