"""One set of rules: every file problem the engine knows is reported by lint, validate, verify,
up --dry-run and render alike, with the same code at the same file:line, before any database
is touched, in migrations and rollbacks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Project, query

# code → (what to write under the project, the path reported, the line reported or None)
Writer = Callable[[Project], None]


def text(path: str, body: str | bytes) -> Writer:
    def write(project: Project) -> None:
        target = project.root / path
        if isinstance(body, bytes):
            target.write_bytes(body)
        else:
            target.write_text(body)

    return write


def pair(name: str, forward: str, rollback: str = "SELECT 1;\n") -> Writer:
    def write(project: Project) -> None:
        (project.migrations / f"{name}.sql").write_text(forward)
        (project.rollbacks / f"{name}_rollback.sql").write_text(rollback)

    return write


def directory(path: str) -> Writer:
    return lambda project: (project.root / path).mkdir()


def link_out(path: str) -> Writer:
    def write(project: Project) -> None:
        outside = project.root.parent / f"{project.root.name}-outside.sql"
        outside.write_text("-- Version: 1.2.0\nSELECT 1;\n")
        os.symlink(outside, project.root / path)

    return write


V = "-- Version: 1.2.0\n"
NO_TX = "-- sqlmig: no-transaction\n"
CASES: dict[str, tuple[list[Writer], str, int | None]] = {
    "bad-name": ([text("migrations/3_BadName.sql", V + "SELECT 1;\n")], "migrations/3_BadName.sql", None),
    "duplicate-number": ([pair("001_again", V + "SELECT 1;\n")], "migrations/001_create_a.sql", None),
    "orphan-rollback": (
        [text("rollbacks/007_ghost_rollback.sql", "SELECT 1;\n")],
        "rollbacks/007_ghost_rollback.sql",
        None,
    ),
    "missing-rollback": ([text("migrations/002_b.sql", V + "SELECT 1;\n")], "migrations/002_b.sql", None),
    "version-order": ([pair("002_b", "-- Version: 1.0.0\nSELECT 1;\n")], "migrations/002_b.sql", None),
    "bad-encoding": (
        [pair("002_b", ""), text("migrations/002_b.sql", b"-- Version: 1.2.0\n-- Gr\xf6\xdfe\nSELECT 1;\n")],
        "migrations/002_b.sql",
        2,
    ),
    "missing-version": ([pair("002_b", "SELECT 1;\n")], "migrations/002_b.sql", 1),
    "bad-version": ([pair("002_b", "-- Version: 1.2\nSELECT 1;\n")], "migrations/002_b.sql", 1),
    "bad-header": ([pair("002_b", V + "-- sqlmig: frobnicate\nSELECT 1;\n")], "migrations/002_b.sql", 2),
    "not-a-file": (
        [directory("migrations/002_b.sql"), text("rollbacks/002_b_rollback.sql", "SELECT 1;\n")],
        "migrations/002_b.sql",
        None,
    ),
    "outside-directory": (
        [link_out("migrations/002_b.sql"), text("rollbacks/002_b_rollback.sql", "SELECT 1;\n")],
        "migrations/002_b.sql",
        None,
    ),
    "psql-meta-command": ([pair("002_b", V + "SELECT 1;\n\\i other.sql\n")], "migrations/002_b.sql", 3),
    "transaction-control": (
        [pair("002_b", V + "SELECT 1;\nCOMMIT;\nSELECT 2;\n")],
        "migrations/002_b.sql",
        3,
    ),
    "copy-from-stdin": ([pair("002_b", V + "COPY a FROM stdin;\n1\n\\.\n")], "migrations/002_b.sql", 2),
    "needs-no-transaction": (
        [pair("002_b", V + "CREATE INDEX CONCURRENTLY a_i ON a (id);\n")],
        "migrations/002_b.sql",
        2,
    ),
    # The same statement checks, on rollbacks.
    "rollback/psql-meta-command": (
        [pair("002_b", V + "SELECT 1;\n", "\\! rm -rf /tmp/x\n")],
        "rollbacks/002_b_rollback.sql",
        1,
    ),
    "rollback/transaction-control": (
        [pair("002_b", V + "SELECT 1;\n", "SELECT 1;\nROLLBACK;\n")],
        "rollbacks/002_b_rollback.sql",
        2,
    ),
    "rollback/needs-no-transaction": (
        [
            pair(
                "002_b",
                V + NO_TX + "CREATE INDEX CONCURRENTLY a_i ON a (id);\n",
                "DROP INDEX CONCURRENTLY a_i;\n",
            )
        ],
        "rollbacks/002_b_rollback.sql",
        1,
    ),
    "rollback/copy-from-stdin": (
        [pair("002_b", V + "SELECT 1;\n", "COPY a FROM stdin;\n\\.\n")],
        "rollbacks/002_b_rollback.sql",
        1,
    ),
}


def reported(project: Project, command: tuple[str, ...], url: str) -> tuple[int, set[tuple]]:
    """(exit code, {(code, path, line)}) as the command reports them: lint's JSON findings,
    else the problems of the JSON error line (--log-format json)."""
    if command[0] == "lint":
        result = project.run("lint", "--json", url=url)
        found = {(f["rule"], f["path"], f["line"]) for f in json.loads(result.stdout)["findings"]}
        return result.returncode, found
    result = project.run("--log-format", "json", *command, url=url)
    assert result.stdout == "", result.stdout
    errors = [
        json.loads(line) for line in result.stderr.splitlines() if json.loads(line).get("event") == "error"
    ]
    assert len(errors) == 1, result.stderr
    return result.returncode, {(p["code"], p["path"], p["line"]) for p in errors[0]["problems"]}


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_reports_every_file_problem_alike(
    project: Project, database_url: str, server_dsn: str, case: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    writers, path, line = CASES[case]
    for write in writers:
        write(project)
    code = case.removeprefix("rollback/")
    expected = (
        code,
        path,
        line
        if code
        in (
            "psql-meta-command",
            "transaction-control",
            "copy-from-stdin",
            "needs-no-transaction",
            "bad-encoding",
            "missing-version",
            "bad-version",
            "bad-header",
        )
        else None,
    )

    for command in (
        ("lint",),
        ("validate",),
        ("verify", "--scratch-url", server_dsn),
        ("up", "--dry-run"),
        ("render", "up"),
        ("up",),
        ("down",),
    ):
        exit_code, found = reported(project, command, database_url)
        # lint names a problem without a line at line 1
        want = expected if command[0] != "lint" else (code, path, expected[2] or 1)
        assert want in found, (command, found)
        assert exit_code == 2, command

    # Nothing was touched: no history table, no scratch database left.
    assert query(database_url, "SELECT to_regclass('schema_version') IS NULL") == [(True,)]
    assert not query(server_dsn, "SELECT 1 FROM pg_database WHERE starts_with(datname, 'sqlmig_verify_')")


def test_the_cases_cover_every_code_files_and_filechecks_know() -> None:
    from sqlmig.files import checks as filechecks

    source = (Path(__file__).resolve().parents[2] / "sqlmig" / "files" / "load.py").read_text()
    import re

    codes = set(re.findall(r'code="([a-z-]+)"', source)) | set(filechecks.CODES)
    codes |= {"not-a-file", "outside-directory"}  # from _refusal's (code, message) pairs
    # Not about a file's content or name: warnings, the cache, and a file changed mid-run.
    codes -= {
        "empty",
        "hidden-file",
        "file-cache-wrong",
        "changed-during-run",
        "unreadable",
        "missing-directory",
    }
    assert codes == {case.removeprefix("rollback/") for case in CASES}
