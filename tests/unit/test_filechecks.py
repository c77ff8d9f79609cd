"""filechecks: the one set of statement checks, and its shortcut (problems() parses only a file
that may break one) agreeing with the full check on every file we have."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlmig.files import checks as filechecks

REPO = Path(__file__).resolve().parents[2]
CRAFTED = [
    "CREATE TABLE a (id int);\n",
    "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
    "CREATE TABLE a (id int);\nCOMMIT;\n",
    "SAVEPOINT s;\nRELEASE s;\n",
    "CREATE INDEX CONCURRENTLY i ON a (id);\n",
    "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN COMMIT; RETURN 1; END $$;\n",
    "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n",
    "-- COMMIT in a comment\nSELECT 'VACUUM';\n",
    "/* nested /* BEGIN */ END */ SELECT 1;\n",
    "COPY a FROM stdin;\n1\n\\.\n",
    "SELECT 1;\n\\i other.sql\n",
    "\\set ON_ERROR_STOP on\nSELECT 1;\n",
    "VACUUM a;\n",
    "ANALYZE a;\n",
    "CLUSTER;\n",
    "CREATE DATABASE d;\n",
    "ALTER TABLE a DETACH PARTITION b CONCURRENTLY;\n",
    "REINDEX TABLE CONCURRENTLY a;\n",
    "DISCARD ALL;\n",
    "END;\n",
    "ABORT;\n",
    "PREPARE TRANSACTION 'x';\n",
    "CREATE TABLE tablespace_like (concurrently int);\n",
    "SELECT E'\\\\';\nSELECT 1;\n",
    "SELECT 1; START TRANSACTION;\n",
]


def _files() -> list[tuple[str, str]]:
    paths = sorted(
        [*REPO.glob("migrations/*.sql"), *REPO.glob("rollbacks/*.sql"), *REPO.glob("tests/corpus/**/*.sql")]
    )
    return [(p.name, p.read_text()) for p in paths] + [(f"crafted{i}", t) for i, t in enumerate(CRAFTED)]


@pytest.mark.parametrize(("name", "text"), _files())
@pytest.mark.parametrize("transactional", [True, False])
def test_the_shortcut_finds_what_the_full_check_finds(name: str, text: str, transactional: bool) -> None:
    full = filechecks.check(name, text, transactional=transactional).problems
    assert filechecks.problems(name, text, transactional=transactional) == full


def test_a_rollback_is_named_a_rollback() -> None:
    [problem] = filechecks.check(
        "rollbacks/1_a_rollback.sql", "SELECT 1;\nCOMMIT;\n", transactional=True, rollback=True
    ).problems
    assert (problem.code, problem.line) == ("transaction-control", 2)
    assert problem.message.startswith("COMMIT inside a rollback:")
