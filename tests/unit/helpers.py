"""Throwaway migration projects on disk for the unit tests (no database)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from sqlmig.errors import FileProblems
from sqlmig.files import load as files
from sqlmig.models import AppliedRecord, Migration, MigrationSet

OK_ROLLBACK = "SELECT 1;\n"


def write(root: Path, tree: Mapping[str, str | bytes]) -> Path:
    """Create migrations/ and rollbacks/ under root and write each file byte for byte."""
    (root / "migrations").mkdir(parents=True, exist_ok=True)
    (root / "rollbacks").mkdir(parents=True, exist_ok=True)
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def pair(name: str, version: str, body: str = "SELECT 1;\n", rollback: str = OK_ROLLBACK) -> dict[str, str]:
    """A migration `name` (e.g. "001_users") with a Version header, and its rollback."""
    return {
        f"migrations/{name}.sql": f"-- Version: {version}\n{body}",
        f"rollbacks/{name}_rollback.sql": rollback,
    }


def load(root: Path) -> MigrationSet:
    return files.load(root, root / "migrations", root / "rollbacks")


def problems(root: Path) -> list[tuple[str | None, int | None, str, str]]:
    """(path, line, code, message) of every problem load() reports, in its order."""
    with pytest.raises(FileProblems) as info:
        load(root)
    return [(p.path, p.line, p.code, p.message) for p in info.value.problems]


def applied(mig: Migration, **changes: object) -> AppliedRecord:
    """The history row sqlmig writes when it applies `mig`."""
    fields: dict[str, object] = {
        "version": str(mig.version),
        "number": mig.number,
        "name": mig.name,
        "description": mig.description,
        "checksum": mig.checksum,
        "rollback_checksum": mig.rollback.checksum,
    }
    fields.update(changes)
    return AppliedRecord(**fields)  # type: ignore[arg-type]
