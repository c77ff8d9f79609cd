"""What up and down tell while they run: one listener object instead of a callback per event."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # records of other commands: not built by a run that does not make them
    from sqlmig.models import BackupReport, Plan, PlanStep, RetryNotice, StepResult
    from sqlmig.reports import WaitAttempt


class Progress:
    """Every method does nothing here: subclass it and override what you want to hear (the
    CLI's prints the progress line, one line per migration, or JSON events).

    With back-to-back sending (up/down's default) `started` and `finished` of a group of
    transactional steps come when the group is done; durations are the server's."""

    def waiting(self, attempt: WaitAttempt) -> None:
        """`up --wait`: a failed connection attempt, before the pause."""

    def backed_up(self, report: BackupReport) -> None:
        """The dump written before the first step (`--backup`)."""

    def planned(self, plan: Plan) -> None:
        """The steps about to run (not on a dry run): for a progress display [3/12]."""

    def note(self, text: str) -> None:
        """Verbose detail, e.g. a file split by the fallback lexer."""

    def started(self, step: PlanStep) -> None:
        """A step is about to run."""

    def finished(self, result: StepResult) -> None:
        """A step is in (committed with its history row)."""

    def retrying(self, notice: RetryNotice) -> None:
        """A step rolled back by a lock timeout or a deadlock, to run again after a pause."""

    def skipped(self, step: PlanStep) -> None:
        """--lock-mode transaction: another runner did this step while this one waited."""


__all__ = ["Progress"]
