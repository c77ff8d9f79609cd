"""sqltext: statement splitting with offsets, classification, empty bodies, line positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from sqlmig.files import sqltext
from sqlmig.files.sqltext import LineIndex, is_empty, split

FUNCTION_DOLLAR = (
    "CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "    RETURN i + 1;  -- a semicolon inside the body\n"
    "END\n"
    "$$"
)
FUNCTION_TAGGED = (
    "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
    "BEGIN\n"
    "    NEW.updated_at := now(); RAISE NOTICE $$it's; $$;\n"
    "    RETURN NEW;\n"
    "END\n"
    "$body$"
)
FUNCTION_ATOMIC = (
    "CREATE FUNCTION total(a int, b int) RETURNS int LANGUAGE sql\n"
    "BEGIN ATOMIC\n"
    "    SELECT a + b;\n"
    "    SELECT a - b;\n"
    "END"
)
DO_BLOCK = "DO $do$\nDECLARE n int;\nBEGIN\n    SELECT count(*) INTO n FROM pg_class; PERFORM 1;\nEND\n$do$"

# (id, file text, statement texts in order). Every statement is followed directly by `;`.
GOLDEN = [
    (
        "plain",
        "CREATE TABLE a (x int);\nCREATE TABLE b (y int);\n",
        ["CREATE TABLE a (x int)", "CREATE TABLE b (y int)"],
    ),
    (
        "dollar-quoted function",
        f"{FUNCTION_DOLLAR};\nSELECT add_one(1);\n",
        [FUNCTION_DOLLAR, "SELECT add_one(1)"],
    ),
    ("tagged dollar quote holding $$", f"{FUNCTION_TAGGED};\nSELECT 1;\n", [FUNCTION_TAGGED, "SELECT 1"]),
    ("DO block", f"-- Version: 1.0.0\n\n{DO_BLOCK};\nSELECT 2;\n", [DO_BLOCK, "SELECT 2"]),
    (
        "nested block comments",
        "/* outer /* inner; */ still; comment */ SELECT 1;\n/* x; */ SELECT /* in; */ 2;\n",
        ["SELECT 1", "SELECT /* in; */ 2"],
    ),
    (
        "E-string with escaped quote",
        "INSERT INTO t VALUES (E'it\\'s; fine', 'a''b;c');\nSELECT e'\\\\';\n",
        ["INSERT INTO t VALUES (E'it\\'s; fine', 'a''b;c')", "SELECT e'\\\\'"],
    ),
    (
        "quoted identifiers with semicolons",
        'CREATE TABLE "semi;colon" ("a;b" int, "say ""hi;""" text);\nSELECT 1;\n',
        ['CREATE TABLE "semi;colon" ("a;b" int, "say ""hi;""" text)', "SELECT 1"],
    ),
    (
        "CRLF line ends",
        "-- Version: 1.0.0\r\n\r\nCREATE TABLE a (\r\n  x int\r\n);\r\nSELECT 1;\r\n",
        ["CREATE TABLE a (\r\n  x int\r\n)", "SELECT 1"],
    ),
    (
        "CR line ends",
        "-- Version: 1.0.0\rCREATE TABLE a (x int);\r-- c;\rSELECT 1;\r",
        ["CREATE TABLE a (x int)", "SELECT 1"],
    ),
    (
        "non-ASCII before statements",
        "-- Beschreibung: Grüße, 日本語, 😀\nINSERT INTO t VALUES ('ü;é');\nSELECT 'ß';\n",
        ["INSERT INTO t VALUES ('ü;é')", "SELECT 'ß'"],
    ),
    (
        "header comments and blank lines",
        "-- Version: 1.0.0\n-- Description: x; y\n\n\nSELECT 1;\n\n-- between; statements\n\nSELECT 2;\n",
        ["SELECT 1", "SELECT 2"],
    ),
]
GOLDEN_IDS = [case[0] for case in GOLDEN]


def expected_pieces(text: str, stmts: list[str], suffix: str = "") -> list[tuple[int, str]]:
    """(start, text) of each statement, found in order in the file: character offsets."""
    out, pos = [], 0
    for stmt in stmts:
        start = text.index(stmt + ";", pos)
        out.append((start, stmt + suffix))
        pos = start + len(stmt)
    return out


def pieces(text: str) -> list[tuple[int, str]]:
    return [(st.start, st.text) for st in split(text).statements]


@pytest.mark.parametrize(("text", "stmts"), [c[1:] for c in GOLDEN], ids=GOLDEN_IDS)
def test_golden_split_gives_exact_statements_and_character_offsets(text: str, stmts: list[str]) -> None:
    result = split(text)
    assert result.parsed, result.parse_error
    assert [(st.start, st.text) for st in result.statements] == expected_pieces(text, stmts)
    for st in result.statements:
        assert text[st.start :].startswith(st.text)


@pytest.mark.parametrize(
    ("text", "stmts"), [c[1:] for c in GOLDEN if c[0] != "plain"], ids=[i for i in GOLDEN_IDS if i != "plain"]
)
def test_fallback_after_a_syntax_error_splits_the_same_statements(text: str, stmts: list[str]) -> None:
    broken = text + "\nSELEC oops;\n"
    result = split(broken)
    assert not result.parsed
    assert 'syntax error at or near "SELEC"' in (result.parse_error or "")
    # The fallback lexer keeps the `;`; the server is fine with it.
    assert pieces(broken) == [
        *expected_pieces(text, stmts, suffix=";"),
        (len(text) + 1, "SELEC oops;"),
    ]
    # Pieces that parse alone are still classified; the broken one is left to the server.
    kinds = [st.kind for st in split(broken).statements]
    assert kinds[-1] == ""
    assert all(kinds[:-1])


def test_fallback_still_classifies_transaction_control_and_concurrently() -> None:
    text = "CREATE TABLE a (x int);\nCOMMIT;\nCREATE INDEX CONCURRENTLY a_x ON a (x);\nEND;\nSELEC oops;\n"
    result = split(text)
    assert not result.parsed
    assert [(st.transaction_control, st.needs_autocommit) for st in result.statements] == [
        (None, None),
        ("COMMIT", None),
        (None, "CREATE INDEX CONCURRENTLY"),
        ("COMMIT", None),
        (None, None),
    ]


def test_fallback_keeps_a_begin_atomic_body_with_case_in_one_piece() -> None:
    body = (
        "CREATE FUNCTION f(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT CASE WHEN i > 0 THEN 1 ELSE 0 END; SELECT 2; END;"
    )
    result = split(body + "\nSELEC oops;")
    assert not result.parsed
    assert [st.text for st in result.statements] == [body, "SELEC oops;"]
    assert result.statements[0].transaction_control is None


def test_begin_atomic_function_is_one_statement() -> None:
    text = f"{FUNCTION_ATOMIC};\nSELECT total(1, 2);\n"
    result = split(text)
    assert result.parsed
    assert [(st.start, st.text, st.kind) for st in result.statements] == [
        (0, FUNCTION_ATOMIC, "CreateFunctionStmt"),
        (len(FUNCTION_ATOMIC) + 2, "SELECT total(1, 2)", "SelectStmt"),
    ]


def test_non_ascii_offsets_are_characters_not_bytes() -> None:
    text = "-- é😀\nSELECT 1;\nSELECT 'ü';"
    # "-- é😀\n" is 6 characters but 10 bytes.
    assert pieces(text) == [(6, "SELECT 1"), (16, "SELECT 'ü'")]


def test_crlf_offsets_count_both_characters() -> None:
    assert pieces("SELECT 1;\r\nSELECT 2;\r\n") == [(0, "SELECT 1"), (11, "SELECT 2")]


def test_last_statement_without_semicolon_is_kept() -> None:
    assert pieces("SELECT 1;\nSELECT 2") == [(0, "SELECT 1"), (10, "SELECT 2")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Unterminated dollar quote: runs to the end, the server reports it.
        (
            "SELECT 1;\nSELECT $$never closed; SELECT 2;",
            [(0, "SELECT 1;"), (10, "SELECT $$never closed; SELECT 2;")],
        ),
        # A `$1` parameter is not a dollar quote.
        ("SELEC $1; SELECT 2;", [(0, "SELEC $1;"), (10, "SELECT 2;")]),
        # A dollar sign inside an identifier is not a quote either.
        ("SELEC a$b; SELECT 2;", [(0, "SELEC a$b;"), (11, "SELECT 2;")]),
        # A non-BMP tag is still a tag.
        ("SELEC $😀$ a; b $😀$; SELECT 2;", [(0, "SELEC $😀$ a; b $😀$;"), (20, "SELECT 2;")]),
        # An unterminated block comment swallows the rest.
        ("SELEC 1; /* open; SELECT 2;", [(0, "SELEC 1;")]),
        # `--` ends at CR as well as LF (old Mac line ends).
        ("-- c; \rSELEC 1;\r-- d\rSELECT 2;", [(7, "SELEC 1;"), (21, "SELECT 2;")]),
        # Empty statements between semicolons are pieces of their own; the server accepts them.
        ("SELEC 1;;SELECT 2;", [(0, "SELEC 1;"), (8, ";"), (9, "SELECT 2;")]),
    ],
)
def test_fallback_lexer_edge_cases(text: str, expected: list[tuple[int, str]]) -> None:
    result = split(text)
    assert not result.parsed
    assert pieces(text) == expected


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "control"),
    [
        ("BEGIN", "BEGIN"),
        ("BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE", "BEGIN"),
        ("START TRANSACTION", "START"),
        ("COMMIT", "COMMIT"),
        ("END", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ROLLBACK"),
        ("SAVEPOINT before_backfill", "SAVEPOINT"),
        ("RELEASE SAVEPOINT before_backfill", "RELEASE"),
        ("ROLLBACK TO SAVEPOINT before_backfill", "ROLLBACK_TO"),
        ("PREPARE TRANSACTION 'x'", "PREPARE"),
        ("COMMIT PREPARED 'x'", "COMMIT_PREPARED"),
        ("SELECT 1", None),
        ("CREATE TABLE begin_commit (x int)", None),
    ],
)
def test_transaction_control_is_classified(sql: str, control: str | None) -> None:
    [st] = split(sql + ";").statements
    assert (st.transaction_control, st.needs_autocommit) == (control, None)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", "CREATE INDEX CONCURRENTLY"),
        ("DROP INDEX CONCURRENTLY i", "DROP INDEX CONCURRENTLY"),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
        ("REINDEX INDEX CONCURRENTLY i", "REINDEX CONCURRENTLY"),
        ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("REINDEX (CONCURRENTLY) TABLE t", "REINDEX CONCURRENTLY"),
        ("REINDEX SCHEMA app", "REINDEX SCHEMA"),
        ("REINDEX DATABASE app", "REINDEX DATABASE"),
        ("REINDEX SYSTEM app", "REINDEX SYSTEM"),
        ("VACUUM", "VACUUM"),
        ("VACUUM ANALYZE t", "VACUUM"),
        ("VACUUM (FULL, ANALYZE) t", "VACUUM"),
        ("CREATE DATABASE app", "CREATE DATABASE"),
        ("DROP DATABASE app", "DROP DATABASE"),
        ("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"),
        ("ALTER SYSTEM RESET ALL", "ALTER SYSTEM"),
        ("CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE"),
        ("DROP TABLESPACE ts", "DROP TABLESPACE"),
        ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", "DETACH PARTITION CONCURRENTLY"),
        ("ALTER TABLE IF EXISTS app.p DETACH PARTITION app.p1 CONCURRENTLY", "DETACH PARTITION CONCURRENTLY"),
        ("CLUSTER", "CLUSTER without a table"),
        ("CLUSTER VERBOSE", "CLUSTER without a table"),
        ("DISCARD ALL", "DISCARD ALL"),
        ("ALTER DATABASE app SET TABLESPACE fast", "ALTER DATABASE SET TABLESPACE"),
    ],
)
def test_statements_that_cannot_run_in_a_transaction_need_autocommit(sql: str, reason: str) -> None:
    [st] = split(f"-- Version: 1.0.0\n{sql};\n").statements
    assert (st.needs_autocommit, st.transaction_control) == (reason, None)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX i ON t (a)",
        "DROP INDEX i",
        "REINDEX TABLE t",
        "REINDEX INDEX i",
        "ANALYZE t",  # unlike VACUUM, ANALYZE runs inside a transaction block
        "ANALYZE",
        "ALTER DATABASE app SET work_mem = '64MB'",
        "ALTER DATABASE app WITH CONNECTION LIMIT 5",
        "ALTER TABLE p DETACH PARTITION p1",
        "ALTER TABLE p DETACH PARTITION p1 FINALIZE",
        "ALTER TABLE p ADD CONSTRAINT c CHECK (a <> '\"concurrent\":true')",
        "CLUSTER t USING t_pkey",
        "CLUSTER t",
        "DISCARD PLANS",
        "DISCARD TEMP",
        "CREATE TABLE concurrently (x int)",
        "SELECT 'VACUUM; CREATE INDEX CONCURRENTLY i ON t (a)'",
    ],
)
def test_ordinary_statements_run_in_a_transaction(sql: str) -> None:
    [st] = split(sql + ";").statements
    assert (st.needs_autocommit, st.transaction_control) == (None, None)


def test_statement_kind_is_the_pglast_node_name() -> None:
    assert [st.kind for st in split("CREATE TABLE a (x int); SELECT 1; BEGIN;").statements] == [
        "CreateStmt",
        "SelectStmt",
        "TransactionStmt",
    ]


# -- is_empty ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "empty"),
    [
        ("", True),
        ("  \n\t\r\n", True),
        ("-- Version: 1.0.0\n-- Description: nothing\n", True),
        ("-- no newline at the end", True),
        ("/* block */", True),
        ("/* outer /* inner */ still comment; */\n-- and a line\n", True),
        ("-- a\r\n/* b */\r\n", True),
        ("SELECT 1", False),
        (";", False),
        ("-- Version: 1.0.0\nSELECT 1;\n", False),
        ("/* a */ SELECT 1; /* b */", False),
        ("-- a comment ended by CR\rSELECT 1;\r", False),
        ("/* outer /* inner */ */ SELECT 1;", False),
    ],
)
def test_is_empty_only_for_comments_and_whitespace(text: str, empty: bool) -> None:
    assert sqltext.is_empty(text) is empty


# -- LineIndex ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_index_gives_one_based_line_and_column(nl: str) -> None:
    text = f"ab{nl}cde{nl}{nl}f"
    index = LineIndex(text)
    assert index.position(0) == (1, 1)
    assert index.position(1) == (1, 2)
    assert index.position(text.index("c")) == (2, 1)
    assert index.position(text.index("e")) == (2, 3)
    assert index.position(text.index("f")) == (4, 1)
    assert index.position(len(text)) == (4, 2)  # just past the end


def test_line_index_matches_split_offsets() -> None:
    text = "-- Version: 1.0.0\r\n\r\nCREATE TABLE a (x int);\r\n  SELECT 1;"
    index = LineIndex(text)
    assert [index.position(st.start) for st in split(text).statements] == [(3, 1), (4, 3)]


def test_line_index_counts_characters_not_bytes() -> None:
    text = "-- ü\nSELECT 'é', 😀"
    assert LineIndex(text).position(text.index("😀")) == (2, 13)


@given(hs.text(alphabet=hs.sampled_from(list("-/*\\ \t\r\nab;'$\f")), max_size=40))
def test_is_empty_fast_path_agrees_with_the_lexer(text: str) -> None:
    from sqlmig.files.sqltext import lex_statements

    assert is_empty(text) == (not any(lex_statements(text)))
