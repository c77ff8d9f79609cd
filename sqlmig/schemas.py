"""The `sqlmig[pydantic]` extra: pydantic TypeAdapters of sqlmig's records, and the JSON Schema
of what each command prints with `--json`, for a service that embeds sqlmig or a pipeline that
checks the output it parses.

sqlmig itself never imports pydantic (about 60 ms of every command's start-up); its records are
frozen dataclasses that pydantic v2 takes as they are. This module is imported only by whoever
asks for it:

    from sqlmig import schemas
    schemas.adapter("status").validate_json(completed.stdout)   # a StatusReport
    schemas.json_schema("status")                                # its JSON Schema
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import Any

try:
    import pydantic
except ImportError as exc:  # the extra is not installed
    raise ImportError("sqlmig.schemas needs pydantic: pip install 'sqlmig[pydantic]'") from exc

from sqlmig.checks.verify import VerifyReport
from sqlmig.db.embedded import ServerStatus
from sqlmig.models import AppliedRecord, BackupReport, EventRecord, StatusReport, ValidationReport
from sqlmig.reports import CheckResult, ConfigReport, FleetReport, LintReport, RepairReport

# The command line whose `--json` output each type describes.
OUTPUTS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "status": StatusReport,
        "validate": ValidationReport,
        "history": list[AppliedRecord],
        "history --events": list[EventRecord],
        "check": CheckResult,
        "config": ConfigReport,
        "lint": LintReport,
        "verify": VerifyReport,
        "repair": RepairReport,
        "backup": BackupReport,
        "db status": ServerStatus,
        # up, down, status, validate and check over many targets (docs/targets.md)
        "targets": FleetReport,
    }
)


@lru_cache(maxsize=len(OUTPUTS))
def adapter(command: str) -> pydantic.TypeAdapter[Any]:
    """The TypeAdapter of what `sqlmig <command> --json` prints (see OUTPUTS for the names)."""
    try:
        kind = OUTPUTS[command]
    except KeyError:
        raise KeyError(f"{command!r}: no --json output by that name; one of {', '.join(OUTPUTS)}") from None
    return pydantic.TypeAdapter(kind)


def json_schema(command: str) -> dict[str, Any]:
    """The JSON Schema of what `sqlmig <command> --json` prints, as pydantic serializes it."""
    return adapter(command).json_schema(mode="serialization")


__all__ = ["OUTPUTS", "adapter", "json_schema"]
