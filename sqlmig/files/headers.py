"""The header of a migration or rollback file: its leading `-- Key: value` comment lines and
`-- sqlmig: …` directives, and what the directives mean (no-transaction, timeouts).

No file is read here: sqlmig.files.load passes the text, or the file cache what it kept of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlmig.config.durations import parse_duration

# The newlines PostgreSQL's lexer ends a `--` comment at (str.splitlines also splits at \f, \v…).
_NEWLINE = re.compile(r"\r\n|\r|\n")
_HEADER_LINE = re.compile(r"^--\s*(?P<key>[A-Za-z][A-Za-z0-9_-]*)\s*:\s*(?P<value>.*?)\s*$")
_KNOWN_KEYS = {"version", "description", "migration", "author", "date", "sqlmig", "ticket"}


@dataclass
class Header:
    values: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (value, line)
    directives: list[tuple[str, int]] = field(default_factory=list)  # `-- sqlmig: …` lines
    problems: list[tuple[int, str]] = field(default_factory=list)


# The header: blank and `--` comment lines at the top (blank as str.strip sees it). One regex
# finds where it ends, so a 50 MB data migration is not split into lines to read three.
_HEADER_BLOCK = re.compile(r"(?:[^\S\r\n]*(?:--[^\r\n]*)?(?:\r\n|\r|\n))*")


def parse_header(text: str) -> Header:
    header = Header()
    if not (text.startswith("--") or text[:1].isspace()):
        return header  # the first line is SQL (most rollbacks): no header to look for
    # Line by line with str.find while the lines end in LF alone (twice as fast as the regexes
    # below, for 10,000 files); a CR anywhere in the header sends it the general way.
    pos, lineno, n = 0, 0, len(text)
    while pos <= n:
        end = text.find("\n", pos)
        if end < 0:
            end = n
        line = text[pos:end]
        if "\r" in line:
            return _parse_header_cr(text)
        lineno += 1
        stripped = line.strip()
        if stripped:
            if not stripped.startswith("--"):
                break
            match = _HEADER_LINE.match(stripped)
            if match is not None:
                _add(header, match, lineno)
        pos = end + 1
    return header


def _parse_header_cr(text: str) -> Header:
    """parse_header for line ends of any kind (CRLF, CR, LF)."""
    header = Header()
    block = _HEADER_BLOCK.match(text)
    assert block is not None  # it matches the empty string
    # With the line after it, which may be a last comment line without a line end.
    after = _NEWLINE.search(text, block.end())
    head = text[: after.start() if after else len(text)]
    for lineno, line in enumerate(_NEWLINE.split(head), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = _HEADER_LINE.match(stripped)
        if match is not None:
            _add(header, match, lineno)
    return header


def _add(header: Header, match: re.Match[str], lineno: int) -> None:
    key = match["key"].lower()
    if key == "sqlmig":
        header.directives.append((match["value"], lineno))
    elif key in _KNOWN_KEYS:
        if key in header.values:
            header.problems.append((lineno, f"header `{match['key']}:` given twice"))
        header.values[key] = (match["value"], lineno)


def directives(header: Header, allowed: frozenset[str]) -> tuple[dict[str, str], list[tuple[int, str]]]:
    found: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    if not header.directives:
        return found, problems
    for value, lineno in header.directives:
        word, _, rest = value.partition(" ")
        word = word.lower()
        if word in allowed:
            found[word] = rest.strip()
        else:
            problems.append(
                (lineno, f"unknown directive `-- sqlmig: {value}` (known: {', '.join(sorted(allowed))})")
            )
    return found, problems


# `-- sqlmig: lock-timeout 5s` / `-- sqlmig: statement-timeout 10min`: this file's bounds,
# instead of the --migration-lock-timeout / --statement-timeout settings (see sqlmig.engine.timeouts).
_TIMEOUTS = {"lock-timeout": "lock_timeout", "statement-timeout": "statement_timeout"}
# `allow` is for `sqlmig lint` (an excuse for the statement below it), read by linter.py.
MIGRATION_DIRECTIVES = frozenset({"allow", "no-transaction", *_TIMEOUTS})
ROLLBACK_DIRECTIVES = frozenset({"allow", "irreversible", "no-transaction", *_TIMEOUTS})


def parse_timeouts(header: Header, found: dict[str, str]) -> tuple[dict[str, float], list[tuple[int, str]]]:
    values: dict[str, float] = {}
    problems: list[tuple[int, str]] = []
    if not found:
        return values, problems
    for word, field_name in _TIMEOUTS.items():
        if word not in found:
            continue
        line = next((ln for value, ln in header.directives if value.partition(" ")[0].lower() == word), 1)
        try:
            values[field_name] = parse_duration(found[word], bare=None)
        except ValueError as exc:
            problems.append((line, f"`-- sqlmig: {word}`: {exc}"))
    return values, problems
