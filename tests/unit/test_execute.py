"""prepare.prepare and check_all: what a file may contain, checked before anything runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sqlmig.engine import plan, prepare
from sqlmig.errors import FileProblems
from sqlmig.files.load import load_all
from sqlmig.models import PlanStep, Problem
from tests.unit.helpers import load, pair, write

PATH = "migrations/001_a.sql"
TX_CONTROL = (
    "{} inside a migration: sqlmig runs each file in its own transaction; remove it "
    "(a whole-file BEGIN; … COMMIT; wrapper is fine)"
)
NEEDS_NO_TX = "{} cannot run inside a transaction; put it in its own file marked `-- sqlmig: no-transaction`"


def step(sql: str, *, transactional: bool = True) -> PlanStep:
    return PlanStep(
        direction="up",
        number=1,
        version="1.0.0",
        name="001_a",
        path=PATH,
        transactional=transactional,
        sql=sql,
    )


def found(sql: str, *, transactional: bool = True) -> list[tuple[int | None, str, str]]:
    _, problems, _, _ = prepare.prepare(step(sql, transactional=transactional))
    return [(p.line, p.code, p.message) for p in problems]


@pytest.mark.parametrize(
    "sql",
    [
        "-- Version: 1.0.0\nBEGIN;\nCREATE TABLE a (x int);\nCREATE TABLE b (y int);\nCOMMIT;\n",
        "-- Version: 1.0.0\n\nbegin transaction;\nCREATE TABLE a (x int);\nCREATE TABLE b (y int);\nend;\n",
        "START TRANSACTION;\r\nCREATE TABLE a (x int);\r\nCREATE TABLE b (y int);\r\nCOMMIT;\r\n",
        "BEGIN; CREATE TABLE a (x int); CREATE TABLE b (y int); COMMIT",
    ],
)
def test_whole_file_begin_commit_wrapper_is_stripped(sql: str) -> None:
    stmts, problems, notes, _ = prepare.prepare(step(sql))
    assert [st.text for st in stmts] == ["CREATE TABLE a (x int)", "CREATE TABLE b (y int)"]
    assert (problems, notes) == ([], [])


def test_wrapper_with_nothing_inside_leaves_no_statements() -> None:
    assert prepare.prepare(step("BEGIN;\nCOMMIT;\n"))[:2] == ([], [])


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("-- Version: 1.0.0\nCREATE TABLE a (x int);\nCOMMIT;\nCREATE TABLE b (y int);\n", [(3, "COMMIT")]),
        ("-- Version: 1.0.0\r\nCREATE TABLE a (x int);\r\n\r\n  COMMIT;\r\n", [(4, "COMMIT")]),
        ("-- Version: 1.0.0\nCREATE TABLE a (x int);\nROLLBACK;\n", [(3, "ROLLBACK")]),
        ("BEGIN;\nCREATE TABLE a (x int);\n", [(1, "BEGIN")]),
        ("CREATE TABLE a (x int);\nCOMMIT;\n", [(2, "COMMIT")]),
        # A wrapper around two transactions: the inner COMMIT and BEGIN are refused.
        (
            "BEGIN;\nCREATE TABLE a (x int);\nCOMMIT;\nBEGIN;\nCREATE TABLE b (y int);\nCOMMIT;\n",
            [(3, "COMMIT"), (4, "BEGIN")],
        ),
        # A wrapper that ends in ROLLBACK is not a wrapper.
        ("BEGIN;\nCREATE TABLE a (x int);\nROLLBACK;\n", [(1, "BEGIN"), (3, "ROLLBACK")]),
        ("CREATE TABLE a (x int);\nPREPARE TRANSACTION 'x';\n", [(2, "PREPARE")]),
        ("-- é ü 😀\nSELECT 'ß';\nCOMMIT;\n", [(3, "COMMIT")]),
    ],
)
def test_transaction_control_inside_a_file_is_refused_at_its_line(
    sql: str, expected: list[tuple[int, str]]
) -> None:
    assert found(sql) == [(line, "transaction-control", TX_CONTROL.format(what)) for line, what in expected]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE a (x int);\nSAVEPOINT s;\nUPDATE a SET x = 1;\nROLLBACK TO SAVEPOINT s;\n"
        "RELEASE SAVEPOINT s;\n",
        "BEGIN;\nSAVEPOINT s;\nRELEASE s;\nCOMMIT;\n",
    ],
)
def test_savepoints_are_allowed_in_a_transactional_file(sql: str) -> None:
    assert found(sql) == []


def test_savepoint_in_a_no_transaction_file_is_refused() -> None:
    sql = "CREATE INDEX CONCURRENTLY i ON t (a);\nSAVEPOINT s;\n"
    assert found(sql, transactional=False) == [
        (2, "transaction-control", TX_CONTROL.format("SAVEPOINT")),
    ]


@pytest.mark.parametrize(
    ("sql", "line", "what"),
    [
        (
            "-- Version: 1.2.0\n\nCREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            4,
            "CREATE INDEX CONCURRENTLY",
        ),
        (
            "-- Version: 1.2.0\r\nCREATE TABLE t (a int);\r\nDROP INDEX CONCURRENTLY i;\r\n",
            3,
            "DROP INDEX CONCURRENTLY",
        ),
        ("SELECT 1;\n\n\nREINDEX TABLE CONCURRENTLY t;\n", 4, "REINDEX CONCURRENTLY"),
        ("VACUUM t;\n", 1, "VACUUM"),
        ("SELECT 1; ALTER SYSTEM SET work_mem = '64MB';\n", 1, "ALTER SYSTEM"),
        ("SELECT 1;\nCREATE DATABASE other;\n", 2, "CREATE DATABASE"),
        ("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n", 2, "CREATE INDEX CONCURRENTLY"),
    ],
)
def test_statement_needing_autocommit_in_a_transactional_file_is_refused_at_its_line(
    sql: str, line: int, what: str
) -> None:
    assert found(sql) == [(line, "needs-no-transaction", NEEDS_NO_TX.format(what))]
    assert found(sql, transactional=False) == []


def test_analyze_is_allowed_in_a_transactional_file() -> None:
    assert found("CREATE TABLE t (a int);\nANALYZE t;\n") == []


def test_copy_from_stdin_is_refused_at_its_line() -> None:
    sql = "CREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n2\n\\.\n"
    [problem] = prepare.prepare(step(sql))[1]
    assert (problem.line, problem.code) == (2, "copy-from-stdin")


def test_unparseable_file_is_left_to_the_server_with_a_note() -> None:
    stmts, problems, notes, _ = prepare.prepare(step("CREATE TABLE a (x int);\nCREAT TABLE b;\n"))
    assert [st.text for st in stmts] == ["CREATE TABLE a (x int);", "CREAT TABLE b;"]
    assert problems == []
    assert len(notes) == 1
    assert notes[0].startswith(f"{PATH}: pglast could not parse the file (syntax error at or near")
    assert notes[0].endswith("split it with the fallback lexer and left the SQL to the server")


def test_check_all_reports_every_bad_file_before_running_any(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **pair("001_ok", "1.0.0", "CREATE TABLE a (x int);\n"),
            **pair("002_commit", "1.1.0", "CREATE TABLE b (x int);\nCOMMIT;\n"),
            **pair("003_index", "1.2.0", "CREATE INDEX CONCURRENTLY i ON b (x);\n"),
            **pair(
                "004_marked", "1.3.0", "-- sqlmig: no-transaction\nCREATE INDEX CONCURRENTLY j ON b (x);\n"
            ),
        },
    )
    expected = [
        Problem(
            path="migrations/002_commit.sql",
            line=3,
            code="transaction-control",
            message=TX_CONTROL.format("COMMIT"),
        ),
        Problem(
            path="migrations/003_index.sql",
            line=2,
            code="needs-no-transaction",
            message=NEEDS_NO_TX.format("CREATE INDEX CONCURRENTLY"),
        ),
    ]
    with pytest.raises(FileProblems) as at_load:  # before any connection: files.load
        load(tmp_path)
    assert at_load.value.problems == expected
    files = load_all(tmp_path, tmp_path / "migrations", tmp_path / "rollbacks")[0]
    steps = list(plan.plan_up(files, []).steps)
    assert [s.transactional for s in steps] == [True, False]
    # the same checks, again on the exact text each step runs (e.g. a stored rollback)
    bad = [
        replace(
            steps[0],
            path="migrations/002_commit.sql",
            sql="-- Version: 1.1.0\nCREATE TABLE b (x int);\nCOMMIT;\n",
        )
    ]
    with pytest.raises(FileProblems) as info:
        prepare.check_all(bad)
    assert info.value.problems == expected[:1]
    prepared, notes, _ = prepare.check_all(steps)
    assert [[st.text for st in stmts] for stmts in prepared.values()] == [
        ["CREATE TABLE a (x int)"],
        ["CREATE INDEX CONCURRENTLY j ON b (x)"],
    ]
    assert notes == []
