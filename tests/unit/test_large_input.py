"""Large files and fast paths: parsing in pieces, checksums from the raw bytes, the header read
without splitting the whole file. Each must give exactly what the plain way gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sqlmig.files import headers, sqltext
from sqlmig.files import load as files

# Fragments that put `;` and line ends where a naive cut would go wrong: in `--` comments, block
# comments, literals, dollar-quoted and BEGIN ATOMIC bodies, parentheses (CREATE RULE).
FRAGMENTS = [
    "SELECT 1;\n",
    "SELECT 1",
    "CREATE TABLE t (a int);\n",
    "-- note;\n",
    "-- note;",
    "/* x;\n */",
    "'a;\nb'",
    "E'it\\';\n'",
    "$$x;\ny$$",
    "$t$ $$;\n $t$",
    '"semi;\ncolon"',
    " ",
    "\n",
    "\r\n",
    ";",
    "é",
    "😀",
    "CREATE INDEX CONCURRENTLY i ON t (a);\n",
    "BEGIN;\n",
    "COMMIT;\n",
    "VACUUM;\n",
    "ANALYZE t;\n",
    "x IN (1, 2)",
    "ARRAY[1,\n2]",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\n SELECT 2;\n END;\n",
    "CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1;\n SELECT 2);\n",
    "SELEC oops;\n",
]


def key(result: sqltext.SplitResult) -> tuple:
    # Not the parse error's text: pglast's character index in it is one off after non-ASCII
    # text, which a piece without any gets right.
    return (
        result.parsed,
        result.parse_error is None,
        [(s.start, s.text, s.kind, s.transaction_control, s.needs_autocommit) for s in result.statements],
    )


@settings(max_examples=400, deadline=None)
@given(hs.lists(hs.sampled_from(FRAGMENTS), max_size=14), hs.sampled_from([8, 20, 60]))
def test_a_file_parsed_in_pieces_splits_and_hashes_as_when_parsed_whole(
    fragments: list[str], piece: int
) -> None:
    text = "".join(fragments)
    whole = key(sqltext.split(text)), sqltext.canonical_checksum(text)
    saved = sqltext._PIECE
    sqltext._PIECE = piece
    try:
        assert (key(sqltext.split(text)), sqltext.canonical_checksum(text)) == whole
    finally:
        sqltext._PIECE = saved


def test_a_large_data_migration_splits_into_its_statements() -> None:
    rows = ",\n".join(f"({i}, 'row {i}; -- not a comment\n{'x' * 50}')" for i in range(2000))
    stmt = f"INSERT INTO t (id, body) VALUES\n{rows}"
    text = "-- Version: 1.0.0\n" + f"{stmt};\n" * 12  # ~1.6 MB: more than one piece
    assert len(text) > sqltext._PIECE

    result = sqltext.split(text)

    assert result.parsed
    assert [(s.kind, s.text) for s in result.statements] == [("InsertStmt", stmt)] * 12
    assert result.statements[1].start == text.index(stmt, result.statements[0].start + 1)


def test_statement_text_is_sliced_from_the_body_or_given() -> None:
    body = "SELECT 1; SELECT 2;"
    sliced = sqltext.Statement(start=10, kind="SelectStmt", body=body, end=18)
    given_ = sqltext.Statement(text="SET LOCAL lock_timeout = '5s'", start=0, kind="VariableSetStmt")
    assert (sliced.text, sliced.start) == ("SELECT 2", 10)
    assert (given_.text, given_.start, given_.transaction_control) == (
        "SET LOCAL lock_timeout = '5s'",
        0,
        None,
    )


@pytest.mark.parametrize(
    "edited",
    [
        "-- a new comment\nSELECT 1 WHERE a IN (1, 2) AND b = ARRAY[1, 2];",
        "SELECT 1 WHERE a IN (1,2) AND b = ARRAY[1,2];",
        "select 1\nwhere a in (\n  1,\n  2\n) and b = array[1, 2];",
    ],
)
def test_in_lists_and_arrays_do_not_tie_the_canonical_checksum_to_positions(edited: str) -> None:
    # libpg_query records where an IN list or ARRAY[…] starts and ends (list_start, …).
    base = "SELECT 1 WHERE a IN (1, 2) AND b = ARRAY[1, 2];"
    assert sqltext.canonical_checksum(edited) == sqltext.canonical_checksum(base) is not None
    assert sqltext.canonical_checksum(base.replace("(1, 2)", "(1, 3)")) != sqltext.canonical_checksum(base)


@pytest.mark.parametrize(
    "raw",
    [
        b"-- Version: 1.0.0\nSELECT 1;\n",
        b"\xef\xbb\xbf-- Version: 1.0.0\r\nSELECT 1;\r\n",
        b"-- Version: 1.0.0\rSELECT 1;\r",
        b"\xef\xbb\xbf\xef\xbb\xbfSELECT 1;\n",
        "-- Beschreibung: Grüße\nSELECT '😀';\n".encode(),
        b"",
    ],
)
def test_the_checksum_read_from_the_bytes_is_the_checksum_of_the_text(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "001_a.sql"
    path.write_bytes(raw)

    text, checksum = files._read(str(path), "migrations/001_a.sql", [])

    assert text is not None
    assert checksum == files.checksum(text)
    if b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf"):
        assert checksum == hashlib.sha256(raw).hexdigest()


def _split_header(text: str) -> headers.Header:
    """parse_header as it was: every line of the file, until the first one of SQL."""
    header = headers.Header()
    for lineno, line in enumerate(headers._NEWLINE.split(text), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = headers._HEADER_LINE.match(stripped)
        if match is None:
            continue
        name = match["key"].lower()
        if name == "sqlmig":
            header.directives.append((match["value"], lineno))
        elif name in headers._KNOWN_KEYS:
            if name in header.values:
                header.problems.append((lineno, f"header `{match['key']}:` given twice"))
            header.values[name] = (match["value"], lineno)
    return header


@settings(max_examples=500, deadline=None)
@given(
    hs.lists(
        hs.sampled_from(
            [
                "-- Version: 1.0.0",
                "--Version:2.0.0",
                "-- sqlmig: no-transaction",
                "-- Description: x",
                "--",
                "- -",
                "x",
                "SELECT 1;",
                "/* c */",
                " ",
                "\t",
                "\u00a0",
                "\x0c",
                "\u2028",
                "\x85",
                "\r\n",
                "\n",
                "\r",
            ]
        ),
        max_size=12,
    )
)
def test_the_header_is_read_as_when_every_line_was_split(parts: list[str]) -> None:
    text = "".join(parts)
    assert headers.parse_header(text) == _split_header(text)
