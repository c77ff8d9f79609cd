"""Before a run: every step split and checked (a bad file stops the run before it starts), and
the values of a history row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmig.about import VERSION as __version__
from sqlmig.errors import FileProblems
from sqlmig.files import checks as filechecks
from sqlmig.files import sqltext
from sqlmig.models import Migration, PlanStep, Problem


def prepare(
    step: PlanStep, parsed: Mapping[str, Any] | None = None
) -> tuple[list[sqltext.Statement], list[Problem], list[str], str | None]:
    """Split a step's SQL and check it can run as the file asks (filechecks: the same checks
    files.load made). Returns statements, problems, notes, and the canonical checksum if the
    same parse gave it (see sqltext.split). `parsed`: MigrationSet.parsed, whose check of the
    very same text is taken instead of parsing it again (a 50 MB file: ~1.2 s)."""
    up = step.direction == "up"
    checked = (
        filechecks.reuse(parsed, step.path, step.sql, transactional=step.transactional, canonical=up)
        if parsed
        else None
    ) or filechecks.check(
        step.path, step.sql, transactional=step.transactional, rollback=not up, canonical=up
    )
    return (list(checked.statements), list(checked.problems), list(checked.notes), checked.canonical)


def check_all(
    steps: list[PlanStep], parsed: Mapping[str, Any] | None = None
) -> tuple[dict[int, list[sqltext.Statement]], list[str], dict[str, str | None]]:
    """Prepare every step before running any, so a bad file stops the run before it starts.
    Returns the statements by step index, notes, and canonical checksums by version (for
    record_fields: each file is parsed once, not again for its checksum)."""
    prepared: dict[int, list[sqltext.Statement]] = {}
    canonical: dict[str, str | None] = {}
    problems: list[Problem] = []
    notes: list[str] = []
    for i, step in enumerate(steps):
        stmts, step_problems, step_notes, step_canonical = prepare(step, parsed)
        prepared[i] = stmts
        if step_canonical is not None:
            canonical[step.version] = step_canonical
        problems.extend(step_problems)
        notes.extend(step_notes)
    if problems:
        raise FileProblems(problems)
    return prepared, notes, canonical


def record_fields(
    mig: Migration,
    *,
    status: str,
    baseline: bool = False,
    execution_ms: int | None = None,
    canonical: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """A history row's values. `canonical`: canonical checksums already taken, by version."""
    version = str(mig.version)

    return {
        "version": version,
        "number": mig.number,
        "name": mig.name,
        "description": mig.description,
        "checksum": mig.checksum,
        "rollback_checksum": mig.rollback.checksum,
        "execution_ms": execution_ms,
        "status": status,
        "transactional": mig.transactional,
        "baseline": baseline,
        "sqlmig_version": __version__,
        # Stored so that a later edit can be told apart: formatting only, or the SQL itself.
        "canonical_checksum": canonical[version]
        if canonical and version in canonical
        else sqltext.canonical_checksum(mig.text),
    }
