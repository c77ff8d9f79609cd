"""The migration lock as the engine sees it, whatever the lock mode: one protocol, chosen once.

- `SessionLock` (sqlmig.locking.session, the default): one session advisory lock for the whole
  run; nothing can change under it, so the per-transaction hooks do nothing.
- `TransactionLock` (sqlmig.locking.transaction, `--lock-mode transaction`, behind a
  transaction-pooling PgBouncer): every transaction locks on its own and reads the history
  again; a no-transaction step holds a lease (sqlmig.locking.lease).
- `Unlocked`: the read-only commands, which take no lock.

`sqlmig.locking.modes.choose` picks one from the configuration; the engine then only calls the
protocol.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from sqlmig.models import AppliedRecord, PlanStep, Problem

# Decide, from the history as it is now (read under the lock), whether `step` still has to run:
# True = run it, False = another runner did it (skip); raise HistoryInconsistent to stop.
Recheck = Callable[[PlanStep, list[AppliedRecord]], bool]


class Guard(Protocol):
    """What the engine asks of the migration lock. Used as a context manager: entering takes
    the lock (or, per transaction, prepares to), leaving releases it."""

    # Each transaction takes the lock on its own (the executor leaves BEGIN and the session's
    # cleanup to the guard, and does not send steps back to back).
    pooled: bool
    # Warnings about the lock (lost, a lease taken over), read after the run.
    warnings: list[Problem]

    def __enter__(self) -> Guard: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def locked(self, *, catalog_path: bool = False) -> AbstractContextManager[None]:
        """A block of reads and writes of the history that must hold the lock throughout."""
        ...

    def hold_lease(self, action: str, name: str) -> AbstractContextManager[None]:
        """Autocommit work that is not a step (repair's DROP INDEX CONCURRENTLY)."""
        ...

    def expect(self, records: Sequence[AppliedRecord], recheck: Recheck) -> None:
        """The history the plan was made from, and how to decide again from a newer one."""
        ...

    def applied(self, version: str, checksum: str | None) -> None: ...

    def reverted(self, version: str) -> None: ...

    def begin(self, step: PlanStep) -> None:
        """Open the transaction of a transactional step (pooled guards only); raises Skipped
        when another runner did the step meanwhile."""
        ...

    def leased(self, step: PlanStep) -> AbstractContextManager[None]:
        """Around a no-transaction step's statements."""
        ...


class Skipped(Exception):  # a signal, not a failure
    """Another runner applied (or rolled back) this step while this run waited for the lock."""

    def __init__(self, step: PlanStep) -> None:
        super().__init__(f"{step.name} ({step.version})")
        self.step = step


class Unlocked:
    """No lock at all (status, history, backup…); also the base of the session lock, under
    which nothing changes between transactions."""

    pooled = False

    def __init__(self) -> None:
        self.warnings: list[Problem] = []

    def __enter__(self) -> Unlocked:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def locked(self, *, catalog_path: bool = False) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def hold_lease(self, action: str, name: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def expect(self, records: Sequence[AppliedRecord], recheck: Recheck) -> None:
        pass

    def applied(self, version: str, checksum: str | None) -> None:
        pass

    def reverted(self, version: str) -> None:
        pass

    def begin(self, step: PlanStep) -> None:
        pass

    def leased(self, step: PlanStep) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


def attach(exc: BaseException, warnings: Sequence[Problem]) -> None:
    """Add a run's lock warnings to the error that ended it, so they are not lost."""
    from sqlmig.errors import HistoryInconsistent, SqlmigError

    if not isinstance(exc, SqlmigError):
        return
    fresh = [w for w in warnings if w not in getattr(exc, "problems", ())]
    if not fresh:
        return
    if isinstance(exc, HistoryInconsistent):
        exc.problems.extend(fresh)
    else:
        extra = "; ".join(f"warning: {w.message}" for w in fresh)
        exc.hint = f"{exc.hint}; {extra}" if exc.hint else extra


__all__ = ["Guard", "Recheck", "Skipped", "Unlocked", "attach"]
