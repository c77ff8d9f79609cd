"""The project's config file: sqlmig.toml in the root, else [tool.sqlmig] of its pyproject.toml.

Only finding and reading it lives here; which value wins and its validation are config.settings'.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from sqlmig.errors import ConfigInvalid

CONFIG_FILE = "sqlmig.toml"
# A [tool.sqlmig] table header, or a dotted `tool.sqlmig.key =` line.
_TOOL_SECTION = re.compile(
    r"^[ \t]*(\[[ \t]*tool[ \t]*\.[ \t]*sqlmig[ \t]*[\].]|tool[ \t]*\.[ \t]*sqlmig[ \t]*[.=])", re.M
)


class ConfigFile(NamedTuple):
    label: str  # how messages name it: sqlmig.toml, ../pyproject.toml, /srv/app/sqlmig.toml
    prefix: str  # before a key in messages: "" or "tool.sqlmig."
    values: dict[str, Any]  # the keys as written
    notes: list[str]  # warnings about it (e.g. the other file, ignored)


def find_root(start: Path) -> Path:
    """The project root: the nearest directory holding migrations/, sqlmig.toml or a
    pyproject.toml with [tool.sqlmig] (else `start`)."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (
            (candidate / "migrations").is_dir()
            or (candidate / CONFIG_FILE).is_file()
            or _has_tool_section(candidate / "pyproject.toml")
        ):
            return candidate
    return start


def read(root: Path) -> ConfigFile | None:
    """sqlmig.toml in the root, else [tool.sqlmig] of its pyproject.toml: never both merged."""
    toml_path, pyproject = root / CONFIG_FILE, root / "pyproject.toml"
    if toml_path.is_file():
        notes = []
        if _has_tool_section(pyproject):
            notes.append(
                f"{label(pyproject)}: warning: [tool.sqlmig] is ignored: {label(toml_path)} takes precedence"
            )
        return ConfigFile(label(toml_path), "", _load(toml_path), notes)
    if not _has_tool_section(pyproject):
        return None
    tool = _load(pyproject).get("tool")
    table = tool.get("sqlmig") if isinstance(tool, dict) else None
    if table is None:
        return None  # the pattern matched inside a string
    if not isinstance(table, dict):
        raise ConfigInvalid([f"{label(pyproject)}: tool.sqlmig: expected a table of settings"])
    return ConfigFile(label(pyproject), "tool.sqlmig.", table, [])


def label(path: Path) -> str:
    """The file as the user would type it: relative to the working directory if inside it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _has_tool_section(path: Path) -> bool:
    """Cheap: most pyproject.toml files have no [tool.sqlmig], and are not parsed at all."""
    try:
        return bool(_TOOL_SECTION.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def _load(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([f"{label(path)}: invalid TOML: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigInvalid([f"{label(path)}: not UTF-8 text"]) from exc
    except OSError as exc:
        raise ConfigInvalid([f"{label(path)}: cannot read: {exc.strerror}"]) from exc
