"""render: the psql text it produces and the input it refuses, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

import sqlmig
from sqlmig.errors import FileProblems, InvalidInput, Irreversible
from sqlmig.psql.render import _arg, _inline, _terminated
from tests.unit.helpers import pair, write


@pytest.mark.parametrize(
    ("text", "meta", "expected"),
    [
        ("SELECT 1", None, "SELECT 1;"),
        ("SELECT 1;\n", None, "SELECT 1;"),  # the fallback lexer keeps the terminator
        ("SELECT 1 -- trailing", None, "SELECT 1 -- trailing\n;"),
        ("SELEC 1 -- not the end ;", None, "SELEC 1 -- not the end ;\n;"),
        ("SELECT 1 AS a", "\\gset", "SELECT 1 AS a \\gset"),
        ("SELECT 1 AS a -- c", "\\gset", "SELECT 1 AS a -- c\n\\gset"),
    ],
)
def test_each_statement_is_terminated_outside_any_trailing_comment(
    text: str, meta: str | None, expected: str
) -> None:
    assert _terminated(text, meta) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("applying 001_a (1.0.0)", "'applying 001_a (1.0.0)'"),
        ("it's :var \\n", "'it''s :var \\\\n'"),
        ("two\nlines", "'two lines'"),
    ],
)
def test_echo_arguments_are_quoted_so_psql_takes_them_literally(text: str, expected: str) -> None:
    assert _arg(text) == expected


def test_bookkeeping_values_are_inlined_with_psycopg_literals() -> None:
    query = sql.SQL("INSERT INTO {} (a, b, c, d) VALUES (%(a)s, %(b)s, %(c)s, %(d)s) -- 100%%")
    text = _inline(query.format(sql.Identifier("s", "t")), {"a": "it's; $$ \\", "b": None, "c": 3, "d": True})

    assert text == ("INSERT INTO \"s\".\"t\" (a, b, c, d) VALUES ( E'it''s; $$ \\\\', NULL, 3, true) -- 100%")


def config(root: Path, **overrides: object) -> sqlmig.Config:
    return sqlmig.resolve(root=root, environ={}, **overrides)


def test_render_needs_no_database_and_guards_every_step(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **pair("001_a", "1.0.0", "CREATE TABLE a (x int);\n"),
            **pair("002_b", "1.1.0", "CREATE TABLE b (x int);\n"),
        },
    )

    script = sqlmig.render(config(tmp_path, table="my_history", lock_timeout=0))

    # One check per step (and the first again before anything is created), one bookkeeping line.
    assert script.count("EXECUTE sqlmig_check(") == 3
    assert script.count("\\elif :sqlmig_ok") == 3
    assert "EXECUTE sqlmig_check('1.0.0', 1, NULL, " in script
    assert "EXECUTE sqlmig_check('1.1.0', 2, '1.0.0', " in script
    assert script.count("EXECUTE sqlmig_applied(") == 2
    assert 'INSERT INTO "public"."my_history" (' in script
    assert "pg_try_advisory_lock(" in script and "lock_timeout" not in script.split("-- The history")[0]
    assert script.endswith("\\echo 'at version 1.1.0:' :sqlmig_ran 'applied'\n")


def test_render_refuses_what_up_and_down_refuse(tmp_path: Path) -> None:
    write(tmp_path / "bad", pair("001_a", "1.0.0", "CREATE TABLE a (x int);\nCOMMIT;\n"))
    with pytest.raises(FileProblems) as refused:
        sqlmig.render(config(tmp_path / "bad"), "up")
    assert refused.value.problems[0].code == "transaction-control"

    write(
        tmp_path,
        {
            **pair("001_a", "1.0.0", "CREATE TABLE a (x int);\n"),
            **pair("002_b", "1.1.0", "SELECT 1;\n", rollback="-- sqlmig: irreversible it is gone\n"),
        },
    )
    with pytest.raises(Irreversible):
        sqlmig.render(config(tmp_path), "down")
    with pytest.raises(InvalidInput, match="--from 3: no migration numbered 3"):
        sqlmig.render(config(tmp_path), "down", start="3")
