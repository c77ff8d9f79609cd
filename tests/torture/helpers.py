"""Shared by the torture tests: running the CLI, reading the database back, explaining it all.

Every helper prints what it ran and what it saw, so a failing test explains itself (pytest shows
the captured output of a failing test).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable

from tests.conftest import SQLMIG, Project, query, table_exists
from tests.integration.test_concurrency import show, start, wait_for  # noqa: F401  (re-exported)

# What sqlmig itself writes to stderr: its own `sqlmig: …` lines, a file's warning
# (`migrations/001_a.sql: warning: …`, `rollbacks/…:3: warning: …`), or with --log-format json
# one JSON object per line.
_OWN_LINE = re.compile(r'^(sqlmig: |\S[^:]*(:\d+)?: warning: |\{"timestamp": )')
# What click writes for a usage error.
_USAGE_LINE = re.compile(r"^(Usage: |Try '|Error: |\s*$)")


def run(
    project: Project,
    *args: str,
    url: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    label: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Project.run, printed."""
    began = time.monotonic()
    result = project.run(*args, url=url, env=env, timeout=timeout)
    show(f"{label or ' '.join(args)}  [{time.monotonic() - began:.2f} s]", result)
    return result


def run_bytes(
    cwd: os.PathLike[str] | str, argv: list[str | bytes], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The CLI with arguments that may be raw bytes (not UTF-8), as a shell could pass them."""
    done = subprocess.run([*SQLMIG, *argv], cwd=cwd, env=env, capture_output=True, timeout=timeout)
    result = subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
    )
    show(" ".join(repr(a) if isinstance(a, bytes) else a for a in argv), result)
    return result


def assert_no_traceback(result: subprocess.CompletedProcess[str], *, usage_ok: bool = False) -> None:
    """No Python traceback, and stderr holds only sqlmig's own lines (or click's usage error)."""
    assert "Traceback (most recent call last)" not in result.stderr + result.stdout, (
        "a traceback reached the user"
    )
    if usage_ok and result.stderr.startswith("Usage: "):
        return  # click's usage error, or the help it shows for a bare `sqlmig`
    # split("\n"), not splitlines(): a U+2028 inside a server's message is not a new line.
    for line in result.stderr.rstrip("\n").split("\n") if result.stderr else ():
        assert _OWN_LINE.match(line) or (usage_ok and _USAGE_LINE.match(line)), (
            f"stderr line not from sqlmig: {line!r}"
        )


def rows(url: str, table: str = "schema_version") -> list[tuple]:
    """(number, version, status) of every history row, or [] when there is no history table."""
    if not table_exists(url, f"public.{table}"):
        return []
    return query(url, f"SELECT number, version, status FROM {table} ORDER BY number")


def events(url: str, table: str = "schema_version") -> list[tuple]:
    """(action, version, outcome) of every event, oldest first."""
    if not table_exists(url, f"public.{table}_events"):
        return []
    return query(url, f"SELECT action, version, outcome FROM {table}_events ORDER BY id")


def user_tables(url: str) -> set[str]:
    """Tables in public other than sqlmig's own."""
    names = query(
        url,
        """SELECT relname FROM pg_class
                           WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'""",
    )
    return {n for (n,) in names if not n.startswith("schema_version")}


def describe(url: str, what: Iterable[str] = ("rows", "events", "tables")) -> None:
    """Print the database state the assertions below look at."""
    if "rows" in what:
        print(f"  history rows: {rows(url)}")
    if "events" in what:
        print(f"  events: {events(url)}")
    if "tables" in what:
        print(f"  user tables: {sorted(user_tables(url))}")
