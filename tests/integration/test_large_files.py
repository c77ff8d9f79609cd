"""A large transactional file is sent in parts (its results taken every few MB, so what was sent
is not kept), still as one transaction: all of it or nothing, and a failure named at its line."""

from __future__ import annotations

import pytest

import sqlmig
from sqlmig.engine import execute
from tests.conftest import Project, query, table_exists


def inserts(count: int) -> str:
    return "".join(f"INSERT INTO t VALUES ({i}, 'row {i}');\n" for i in range(count))


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "_SYNC_EVERY", 200)  # a result sync every ~6 statements


def test_a_file_sent_in_parts_is_applied_whole(
    project: Project, database_url: str, small_parts: None
) -> None:
    project.add(
        1, "load", "CREATE TABLE t (id int PRIMARY KEY, body text);\n" + inserts(100), "DROP TABLE t;\n"
    )

    report = sqlmig.up(project.config(database_url))

    assert [s.version for s in report.steps] == ["1.1.0"]
    assert query(database_url, "SELECT count(*) FROM t") == [(100,)]


def test_a_failure_after_some_parts_rolls_back_all_of_the_file_and_names_its_line(
    project: Project, database_url: str, small_parts: None
) -> None:
    body = "CREATE TABLE t (id int PRIMARY KEY, body text);\n" + inserts(60) + inserts(1) + "SELECT 1;\n"
    project.add(1, "load", body, "DROP TABLE t;\n")

    with pytest.raises(sqlmig.MigrationFailed) as failed:
        sqlmig.up(project.config(database_url))

    # The duplicate of row 0 is on line 63: the header, CREATE TABLE, 60 rows, then it.
    assert (failed.value.line, failed.value.sqlstate) == (63, "23505")
    assert failed.value.rolled_back
    assert not table_exists(database_url, "t")
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
