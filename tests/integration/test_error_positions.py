"""Server errors point at the right line and column of the original file, wherever they are."""

from __future__ import annotations

import pytest

from tests.conftest import Project, query

STATEMENTS = [
    "CREATE TABLE first_t (a int);",
    "-- a comment; with a semicolon\nCREATE TABLE middle_t (\n    b int\n);",
    "INSERT INTO first_t VALUES (1);",
    "CREATE TABLE last_t (c int);",
]
# Each bad statement is a real server error that carries a position: a typo'd keyword and a
# missing table.
BAD = {
    "syntax": ("CREATE TABLE broken (x int,\n    y ingteger_typo_ BROKEN);", "BROKEN", "42601"),
    "undefined": ("INSERT INTO no_such_table\n    VALUES (1);", "no_such_table", "42P01"),
}


def expected_position(text: str, token: str) -> tuple[int, int]:
    offset = text.index(token)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("kind", ["syntax", "undefined"])
@pytest.mark.parametrize("mode", ["transactional", "no-transaction"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_error_position_is_the_line_and_column_in_the_original_file(
    project: Project, database_url: str, where: str, kind: str, mode: str, newline: str
) -> None:
    bad, token, sqlstate = BAD[kind]
    statements = list(STATEMENTS)
    index = {"first": 0, "middle": 2, "last": len(statements)}[where]
    statements.insert(index, bad)
    header = "-- Version: 1.0.0\n-- Description: positions é😀 (non-ASCII before the error)\n"
    if mode == "no-transaction":
        header += "-- sqlmig: no-transaction\n"
    text = (header + "\n\n".join(statements) + "\n").replace("\n", newline)
    (project.migrations / "001_positions.sql").write_bytes(text.encode())
    (project.rollbacks / "001_positions_rollback.sql").write_text("")
    line, column = expected_position(text.replace("\r\n", "\n"), token)

    result = project.run("up", url=database_url)

    print(result.stderr)
    assert result.returncode == 3
    assert f"sqlmig: migrations/001_positions.sql:{line}:{column}: ERROR [{sqlstate}]: " in result.stderr
    status = query(database_url, "SELECT status FROM schema_version")
    if mode == "transactional":
        assert status == []  # rolled back with the migration
        assert query(database_url, "SELECT to_regclass('first_t')") == [(None,)]
    else:
        assert status == [("failed",)]
