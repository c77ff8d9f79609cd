"""The `sqlmig[pydantic]` extra (sqlmig.schemas): the real `--json` output of every command that
has one, from the CLI against a real database, validates as its record type, the record dumps
back to what was printed, and each has a JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project

schemas = pytest.importorskip("sqlmig.schemas")


def printed_as(dumped: Any, printed: Any) -> bool:
    """Every value pydantic dumps is what the command printed (the command may print more: the
    properties to_json adds, such as LintReport.error_count)."""
    if isinstance(dumped, dict):
        return isinstance(printed, dict) and all(
            k in printed and printed_as(v, printed[k]) for k, v in dumped.items()
        )
    if isinstance(dumped, list):
        return (
            isinstance(printed, list)
            and len(dumped) == len(printed)
            and all(printed_as(d, p) for d, p in zip(dumped, printed, strict=True))
        )
    return bool(dumped == printed)


def test_every_json_output_is_what_its_schema_says(
    example_project: Project, database_url: str, server_dsn: str, tmp_path: Path
) -> None:
    project = example_project
    assert project.run("up", url=database_url).returncode == 0
    commands = {
        "status": ["status", "--json"],
        "validate": ["validate", "--json"],
        "history": ["history", "--json"],
        "history --events": ["history", "--events", "--json"],
        "check": ["check", "--require", ">=1", "--json"],
        "config": ["config", "--json"],
        "lint": ["lint", "--json"],
        "verify": ["verify", "--scratch-url", server_dsn, "--json"],
        "repair": ["repair", "--json"],
        "backup": ["backup", "--dir", str(tmp_path / "backups"), "--json"],
        "db status": ["db", "status", "--json"],
        "targets": ["up", "--target", f"main={database_url}", "--json"],
    }
    assert set(commands) == set(schemas.OUTPUTS), "a --json output without its schema, or the reverse"
    for name, args in commands.items():
        result = project.run(*args, url=database_url, timeout=300)
        assert result.returncode in (0, 1), f"{name}: exit {result.returncode}\n{result.stderr}"
        printed = json.loads(result.stdout)
        assert printed, name
        adapter = schemas.adapter(name)
        record = adapter.validate_json(result.stdout)
        assert printed_as(adapter.dump_python(record, mode="json"), printed), name
        schema = schemas.json_schema(name)
        assert schema["type"] in ("object", "array"), name


def test_an_unknown_output_name_says_which_there_are() -> None:
    with pytest.raises(KeyError, match="'stats': no --json output by that name; one of status, validate"):
        schemas.adapter("stats")
