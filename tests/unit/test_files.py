"""files.load: names, pairs, headers, versions, encodings, checksums. No database."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlmig.errors import ExitCode, FileProblems
from sqlmig.files import load as files
from sqlmig.models import Problem, Version, to_json
from tests.unit.helpers import load, pair, problems, write

BAD_MIGRATION_NAME = "file name does not match NNN_slug.sql (slug is lowercase a-z, 0-9, _)"
BAD_ROLLBACK_NAME = "file name does not match NNN_slug_rollback.sql (slug is lowercase a-z, 0-9, _)"
NOT_POSITIVE = "the number must be a positive integer"
LIKE_A_ROLLBACK = (
    "named like a rollback: rollbacks belong in the rollbacks directory "
    "(a migration's slug cannot end in _rollback)"
)
EMPTY_MIGRATION = "has no SQL statements; it will be recorded as a no-op"
EMPTY_ROLLBACK = "has no SQL statements; rolling back is a no-op"


def missing_rollback(name: str) -> str:
    return (
        f"no rollback: create rollbacks/{name}_rollback.sql (or mark it `-- sqlmig: irreversible <reason>`)"
    )


def not_semver(text: str) -> str:
    return f"{text!r} is not a semantic version MAJOR.MINOR.PATCH (e.g. 1.4.0)"


# -- a good project ----------------------------------------------------------------------------


def test_valid_project_loads_in_numeric_order_with_headers_parsed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            # "10_…" sorts before "2_…" as text: the order must come from the number.
            **pair("10_add_orders", "1.10.0"),
            "migrations/2_users.sql": (
                "-- Migration: 2_users\n-- Version: 1.9.0\n-- Description: the users table\n"
                "-- Author: someone\n-- Date: 2026-01-01\n-- Ticket: DB-1\n\n"
                "CREATE TABLE users (id int);\n"
            ),
            "rollbacks/2_users_rollback.sql": "DROP TABLE users;\n",
        },
    )
    result = load(tmp_path)
    assert [
        (m.number, m.slug, str(m.version), m.path, m.rollback.path, m.name) for m in result.migrations
    ] == [
        (2, "users", "1.9.0", "migrations/2_users.sql", "rollbacks/2_users_rollback.sql", "2_users"),
        (
            10,
            "add_orders",
            "1.10.0",
            "migrations/10_add_orders.sql",
            "rollbacks/10_add_orders_rollback.sql",
            "10_add_orders",
        ),
    ]
    users, orders = result.migrations
    assert users.description == "the users table"
    assert orders.description == "add orders"  # no Description: the slug, spaced
    assert users.transactional and users.rollback.transactional
    assert users.rollback.irreversible is None
    assert users.rollback.text == "DROP TABLE users;\n"
    assert result.warnings == ()


def test_empty_project_loads_with_no_migrations(tmp_path: Path) -> None:
    write(tmp_path, {})
    assert load(tmp_path).migrations == ()


@pytest.mark.parametrize(
    "ignored",
    [
        "README.md",
        ".gitkeep",
        "notes.txt",
        "001_users.sql.bak",
        "001_users.sql~",
        ".001_users.sql.swp",
        "schema.sql.orig",
    ],
)
def test_non_sql_files_are_ignored_in_both_directories(tmp_path: Path, ignored: str) -> None:
    write(
        tmp_path,
        {
            **pair("001_users", "1.0.0"),
            f"migrations/{ignored}": "not sql at all \xff",
            f"rollbacks/{ignored}": "not sql at all",
        },
    )
    assert [m.name for m in load(tmp_path).migrations] == ["001_users"]


def test_missing_migrations_directory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "rollbacks").mkdir()
    assert problems(tmp_path) == [
        (
            "migrations",
            None,
            "missing-directory",
            f"migrations directory {tmp_path / 'migrations'} does not exist: run sqlmig in the "
            "project (the directory holding migrations/), or give --root or migrations_dir",
        ),
    ]


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("001_Add_users.sql", BAD_MIGRATION_NAME),  # uppercase slug
        ("001_add-users.sql", BAD_MIGRATION_NAME),  # dash in slug
        ("add_users.sql", BAD_MIGRATION_NAME),  # no number
        ("001-add_users.sql", BAD_MIGRATION_NAME),  # dash after the number
        ("001_.sql", BAD_MIGRATION_NAME),  # empty slug
        ("001.sql", BAD_MIGRATION_NAME),  # no slug at all
        ("001_add_users.SQL", BAD_MIGRATION_NAME),  # uppercase extension is not skipped
        ("001_add users.sql", BAD_MIGRATION_NAME),  # space
        ("٣_add_users.sql", BAD_MIGRATION_NAME),  # an Arabic-Indic digit is not a number
        ("001_add_users_rollback.sql", LIKE_A_ROLLBACK),  # a rollback in migrations/
        ("000_add_users.sql", NOT_POSITIVE),
        ("0_add_users.sql", NOT_POSITIVE),
    ],
)
def test_malformed_migration_names_are_reported(tmp_path: Path, name: str, message: str) -> None:
    write(tmp_path, {f"migrations/{name}": "-- Version: 1.0.0\nSELECT 1;\n"})
    assert problems(tmp_path) == [(f"migrations/{name}", None, "bad-name", message)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("001_users.sql", BAD_ROLLBACK_NAME),  # forgot _rollback
        ("001_Users_rollback.sql", BAD_ROLLBACK_NAME),
        ("001_users_rollback.SQL", BAD_ROLLBACK_NAME),
        ("users_rollback.sql", BAD_ROLLBACK_NAME),
        ("000_users_rollback.sql", NOT_POSITIVE),
    ],
)
def test_malformed_rollback_names_are_reported(tmp_path: Path, name: str, message: str) -> None:
    write(tmp_path, {f"rollbacks/{name}": "SELECT 1;\n"})
    assert problems(tmp_path) == [(f"rollbacks/{name}", None, "bad-name", message)]


def test_undecodable_file_name_is_reported_printably(tmp_path: Path) -> None:
    write(tmp_path, {})
    bad = os.fsencode(tmp_path / "migrations") + b"/001_caf\xe9.sql"
    Path(os.fsdecode(bad)).write_bytes(b"-- Version: 1.0.0\n")
    with pytest.raises(FileProblems) as info:
        load(tmp_path)
    [problem] = info.value.problems
    assert (problem.path, problem.code) == ("migrations/001_caf\\xe9.sql", "bad-name")
    # What the CLI prints and what --json emits must both be encodable.
    json.dumps(to_json(problem), ensure_ascii=False).encode("utf-8")
    "\n".join(info.value.lines()).encode("utf-8")


def test_duplicate_numbers_are_reported_with_both_paths(tmp_path: Path) -> None:
    write(tmp_path, {**pair("001_a", "1.0.0"), **pair("1_b", "1.1.0")})
    assert problems(tmp_path) == [
        ("migrations/1_b.sql", None, "duplicate-number", "number 1 is also used by migrations/001_a.sql"),
    ]


def test_duplicate_rollback_numbers_are_reported_with_both_paths(tmp_path: Path) -> None:
    write(tmp_path, {**pair("1_a", "1.0.0"), "rollbacks/001_a_rollback.sql": "SELECT 2;\n"})
    assert problems(tmp_path) == [
        (
            "rollbacks/1_a_rollback.sql",
            None,
            "duplicate-number",
            "number 1 is also used by rollbacks/001_a_rollback.sql",
        ),
    ]


# -- pairs -------------------------------------------------------------------------------------


def test_migration_without_rollback_names_the_file_to_create(tmp_path: Path) -> None:
    write(
        tmp_path,
        {**pair("001_users", "1.0.0"), "migrations/002_orders.sql": "-- Version: 1.1.0\nSELECT 1;\n"},
    )
    assert problems(tmp_path) == [
        ("migrations/002_orders.sql", None, "missing-rollback", missing_rollback("002_orders")),
    ]


def test_rollback_without_migration_names_the_expected_migration(tmp_path: Path) -> None:
    write(tmp_path, {**pair("001_users", "1.0.0"), "rollbacks/003_gone_rollback.sql": "SELECT 1;"})
    assert problems(tmp_path) == [
        (
            "rollbacks/003_gone_rollback.sql",
            None,
            "orphan-rollback",
            "rollback without a migration (expected migrations/003_gone.sql)",
        ),
    ]


def test_rollback_whose_slug_differs_is_an_orphan_and_the_migration_lacks_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "migrations/002_add_email.sql": "-- Version: 1.1.0\nSELECT 1;\n",
            "rollbacks/002_add_mail_rollback.sql": "SELECT 1;\n",
        },
    )
    assert problems(tmp_path) == [
        (
            "rollbacks/002_add_mail_rollback.sql",
            None,
            "orphan-rollback",
            "rollback without a migration (expected migrations/002_add_mail.sql)",
        ),
        ("migrations/002_add_email.sql", None, "missing-rollback", missing_rollback("002_add_email")),
    ]


def test_rollback_pairs_by_number_value_not_by_padding(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "migrations/7_users.sql": "-- Version: 1.0.0\nSELECT 1;\n",
            "rollbacks/007_users_rollback.sql": "DROP TABLE users;\n",
        },
    )
    [mig] = load(tmp_path).migrations
    assert (mig.number, mig.rollback.path) == (7, "rollbacks/007_users_rollback.sql")


# -- versions and headers ----------------------------------------------------------------------


def test_missing_version_header_is_reported_at_line_1(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "migrations/001_users.sql": "-- Description: users\nSELECT 1;\n",
            "rollbacks/001_users_rollback.sql": "SELECT 1;\n",
        },
    )
    assert problems(tmp_path) == [
        (
            "migrations/001_users.sql",
            1,
            "missing-version",
            "no `-- Version: MAJOR.MINOR.PATCH` header before the first statement",
        ),
    ]


@pytest.mark.parametrize(
    "version",
    [
        "1.2",
        "v1.2.0",
        "01.2.0",
        "1.02.0",
        "1.2.0.0",
        "1.2.0-beta",
        "1.2.x",
        "",
        "one",
        "1٢.0.0",  # a non-ASCII digit
    ],
)
def test_malformed_version_is_reported_at_its_header_line(tmp_path: Path, version: str) -> None:
    write(
        tmp_path,
        pair("001_users", "1.0.0")
        | {
            "migrations/001_users.sql": f"-- Migration: 001_users\n-- Version: {version}\nSELECT 1;\n",
        },
    )
    assert problems(tmp_path) == [
        ("migrations/001_users.sql", 2, "bad-version", not_semver(version)),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("-- Version: 1.2.3", "1.2.3"),
        ("--Version:1.2.3", "1.2.3"),
        ("--   version :   1.2.3   ", "1.2.3"),
        ("-- VERSION: 10.20.30", "10.20.30"),
        ("-- Version: 0.0.1", "0.0.1"),
    ],
)
def test_version_header_spellings_are_accepted(tmp_path: Path, header: str, expected: str) -> None:
    write(tmp_path, pair("001_users", "x") | {"migrations/001_users.sql": f"{header}\nSELECT 1;\n"})
    assert [str(m.version) for m in load(tmp_path).migrations] == [expected]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("1.1.0", "1.1.0"),  # equal
        ("1.2.0", "1.1.9"),  # lower
        ("2.0.0", "1.99.99"),
        ("1.10.0", "1.9.0"),  # numeric, not text, comparison
    ],
)
def test_non_increasing_versions_are_reported_on_the_later_file(
    tmp_path: Path, first: str, second: str
) -> None:
    write(tmp_path, {**pair("001_a", first), **pair("002_b", second)})
    assert problems(tmp_path) == [
        (
            "migrations/002_b.sql",
            None,
            "version-order",
            f"version {second} must be greater than {first} of migrations/001_a.sql "
            "(versions strictly increase with the number)",
        ),
    ]


def test_versions_compare_numerically_not_as_text(tmp_path: Path) -> None:
    write(tmp_path, {**pair("001_a", "1.9.0"), **pair("002_b", "1.10.0")})
    assert [str(m.version) for m in load(tmp_path).migrations] == ["1.9.0", "1.10.0"]


def test_header_given_twice_is_reported_at_the_second_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair("001_a", "1.0.0")
        | {"migrations/001_a.sql": "-- Version: 1.0.0\n-- Version: 1.0.1\nSELECT 1;\n"},
    )
    assert problems(tmp_path) == [
        ("migrations/001_a.sql", 2, "bad-header", "header `Version:` given twice"),
    ]


@pytest.mark.parametrize(
    ("body", "version", "transactional"),
    [
        # Header lines after the first statement are comments, not headers.
        ("-- Version: 1.0.0\nSELECT 1;\n-- Version: 9.0.0\n", "1.0.0", True),
        ("-- Version: 1.0.0\nSELECT 1;\n-- sqlmig: no-transaction\n", "1.0.0", True),
        # Blank lines and free comments before the headers do not end the header.
        ("\n\n-- a comment without a key\n--\n-- Version: 1.0.0\nSELECT 1;\n", "1.0.0", True),
        # A form feed inside a header comment is part of the comment, as for PostgreSQL.
        ("-- Description: a\x0cb\n-- Version: 1.0.0\nSELECT 1;\n", "1.0.0", True),
        ("-- Version: 1.0.0\r-- sqlmig: no-transaction\rSELECT 1;\r", "1.0.0", False),
    ],
)
def test_header_parsing_stops_at_the_first_statement(
    tmp_path: Path, body: str, version: str, transactional: bool
) -> None:
    write(tmp_path, pair("001_a", "x") | {"migrations/001_a.sql": body})
    [mig] = load(tmp_path).migrations
    assert (str(mig.version), mig.transactional) == (version, transactional)


def test_version_after_the_first_statement_is_missing(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair("001_a", "x") | {"migrations/001_a.sql": "CREATE TABLE t (id int);\n-- Version: 1.0.0\n"},
    )
    assert problems(tmp_path) == [
        (
            "migrations/001_a.sql",
            1,
            "missing-version",
            "no `-- Version: MAJOR.MINOR.PATCH` header before the first statement",
        ),
    ]


# -- directives --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "text", "line", "message"),
    [
        (
            "migrations/001_a.sql",
            "-- Version: 1.0.0\n-- sqlmig: no-transactoin\nSELECT 1;\n",
            2,
            "unknown directive `-- sqlmig: no-transactoin` (known: allow, lock-timeout, no-transaction, "
            "statement-timeout)",
        ),
        # irreversible belongs in the rollback, not in the migration
        (
            "migrations/001_a.sql",
            "-- sqlmig: irreversible drops data\n-- Version: 1.0.0\n",
            1,
            "unknown directive `-- sqlmig: irreversible drops data` (known: allow, lock-timeout, "
            "no-transaction, statement-timeout)",
        ),
        (
            "rollbacks/001_a_rollback.sql",
            "-- Rollback\n\n-- sqlmig: irreversable oops\nSELECT 1;\n",
            3,
            "unknown directive `-- sqlmig: irreversable oops` (known: allow, irreversible, lock-timeout, "
            "no-transaction, statement-timeout)",
        ),
    ],
)
def test_unknown_directive_is_reported_at_its_line(
    tmp_path: Path, rel: str, text: str, line: int, message: str
) -> None:
    write(tmp_path, pair("001_a", "1.0.0") | {rel: text})
    assert problems(tmp_path) == [(rel, line, "bad-header", message)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-- sqlmig: irreversible drops the audit log\n", "drops the audit log"),
        ("-- Rollback of 001_a\n-- sqlmig: irreversible   data is gone  \nSELECT 1;\n", "data is gone"),
        ("--sqlmig:irreversible x\n", "x"),
        ("-- SQLMIG: IRREVERSIBLE Keeps Case\n", "Keeps Case"),
    ],
)
def test_irreversible_rollback_is_parsed_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    write(tmp_path, pair("001_a", "1.0.0", rollback=text))
    set_ = load(tmp_path)
    assert set_.migrations[0].rollback.irreversible == reason
    assert set_.warnings == ()  # a comment-only irreversible rollback is not "empty"


def test_irreversible_without_a_reason_is_refused(tmp_path: Path) -> None:
    write(tmp_path, pair("001_a", "1.0.0", rollback="-- sqlmig: irreversible\n"))
    assert problems(tmp_path) == [
        (
            "rollbacks/001_a_rollback.sql",
            None,
            "bad-header",
            "`-- sqlmig: irreversible` needs a reason after it",
        ),
    ]


@pytest.mark.parametrize(
    ("migration_header", "rollback_header", "expected"),
    [
        ("", "", (True, True)),
        ("-- sqlmig: no-transaction\n", "", (False, True)),
        ("", "-- sqlmig: no-transaction\n", (True, False)),
        ("-- SQLMig: No-Transaction\n", "-- sqlmig: no-transaction\n", (False, False)),
    ],
)
def test_no_transaction_directive_sets_transactional_false(
    tmp_path: Path, migration_header: str, rollback_header: str, expected: tuple[bool, bool]
) -> None:
    write(
        tmp_path,
        {
            "migrations/001_a.sql": f"-- Version: 1.0.0\n{migration_header}CREATE INDEX i ON t (a);\n",
            "rollbacks/001_a_rollback.sql": f"{rollback_header}DROP INDEX i;\n",
        },
    )
    [mig] = load(tmp_path).migrations
    assert (mig.transactional, mig.rollback.transactional) == expected


# -- encoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("which", ["migrations/001_a.sql", "rollbacks/001_a_rollback.sql"])
def test_invalid_utf8_is_reported_at_the_line_of_the_bad_byte(
    tmp_path: Path, newline: str, which: str
) -> None:
    nl = newline.encode()
    raw = b"-- Version: 1.0.0" + nl + b"-- caf\xc3\xa9 is fine" + nl + b"SELECT 'caf\xe9';" + nl
    write(tmp_path, pair("001_a", "1.0.0") | {which: raw})
    offset = raw.index(b"\xe9';")
    assert problems(tmp_path) == [
        (which, 3, "bad-encoding", f"not valid UTF-8 (byte 0xe9 at offset {offset})"),
    ]


def test_utf8_bom_is_accepted_and_not_part_of_the_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair("001_a", "1.0.0") | {"migrations/001_a.sql": b"\xef\xbb\xbf-- Version: 1.0.0\nSELECT 1;\n"},
    )
    [mig] = load(tmp_path).migrations
    assert str(mig.version) == "1.0.0"
    assert mig.text == "-- Version: 1.0.0\nSELECT 1;\n"


# -- empty files are warnings, not errors ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n\n",
        "-- nothing to do yet\n",
        "-- placeholder\n/* a block /* nested */ comment; */\n\n",
    ],
)
def test_empty_or_comment_only_migration_is_a_warning(tmp_path: Path, body: str) -> None:
    write(tmp_path, pair("001_a", "1.0.0", body=body))
    result = load(tmp_path)
    assert [m.name for m in result.migrations] == ["001_a"]
    assert result.warnings == (
        Problem(path="migrations/001_a.sql", code="empty", severity="warning", message=EMPTY_MIGRATION),
    )


@pytest.mark.parametrize("rollback", ["", "   \n", "-- nothing to undo\n", "/* no-op */"])
def test_empty_or_comment_only_rollback_is_a_warning(tmp_path: Path, rollback: str) -> None:
    write(tmp_path, pair("001_a", "1.0.0", rollback=rollback))
    result = load(tmp_path)
    assert [m.rollback.text for m in result.migrations] == [rollback]
    assert result.warnings == (
        Problem(
            path="rollbacks/001_a_rollback.sql", code="empty", severity="warning", message=EMPTY_ROLLBACK
        ),
    )


def test_a_comment_with_a_carriage_return_does_not_hide_the_sql(tmp_path: Path) -> None:
    # Old-Mac line ends: the `--` comment ends at CR, so this file is not empty.
    write(tmp_path, pair("001_a", "1.0.0", body="-- add t\rCREATE TABLE t (id int);\r"))
    assert load(tmp_path).warnings == ()


# -- all at once -------------------------------------------------------------------------------


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **pair("001_users", "1.0.0"),
            **pair("002_Orders", "1.1.0"),  # 1 bad name
            **pair("1_dup", "1.2.0"),  # 2 duplicate number
            "migrations/003_no_undo.sql": "-- Version: 1.3.0\n",  # 3 missing rollback
            "rollbacks/004_orphan_rollback.sql": "SELECT 1;\n",  # 4 orphan rollback
            **pair("005_bad_version", "1.4"),  # 5 bad version
            "migrations/README.md": "ignored",
        },
    )
    with pytest.raises(FileProblems) as info:
        load(tmp_path)
    found = [(p.path, p.code) for p in info.value.problems]
    assert sorted(found) == sorted(
        [
            ("migrations/002_Orders.sql", "bad-name"),
            ("rollbacks/002_Orders_rollback.sql", "bad-name"),
            ("migrations/1_dup.sql", "duplicate-number"),
            ("migrations/003_no_undo.sql", "missing-rollback"),
            ("rollbacks/004_orphan_rollback.sql", "orphan-rollback"),
            ("migrations/005_bad_version.sql", "bad-version"),
        ]
    )
    assert info.value.message == "6 problems in the migration files; nothing was run"
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    lines = info.value.lines()
    assert lines[-1] == info.value.message
    assert "migrations/005_bad_version.sql:1: error: '1.4' is not a semantic version" in lines[-2]


def test_five_different_problems_give_five_entries(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **pair("001_users", "1.0.0"),
            "migrations/002_orders.sql": "-- Version: 1.1.0\n",  # missing-rollback
            "rollbacks/009_gone_rollback.sql": "SELECT 1;\n",  # orphan-rollback
            **pair("003_x", "0.9.0"),  # version-order
            "migrations/bad name.sql": "",  # bad-name
            **pair("004_y", "1.3.0") | {"rollbacks/004_y_rollback.sql": b"SELECT '\xff';\n"},  # bad-encoding
        },
    )
    with pytest.raises(FileProblems) as info:
        load(tmp_path)
    assert sorted(p.code for p in info.value.problems) == [
        "bad-encoding",
        "bad-name",
        "missing-rollback",
        "orphan-rollback",
        "version-order",
    ]
    assert len(info.value.problems) == 5
    assert all(p.path for p in info.value.problems)


def test_warnings_do_not_turn_into_errors_next_to_a_good_project(tmp_path: Path) -> None:
    write(tmp_path, {**pair("001_a", "1.0.0"), **pair("002_b", "1.1.0", body="-- todo\n", rollback="")})
    result = load(tmp_path)
    assert [(w.path, w.code, w.severity) for w in result.warnings] == [
        ("migrations/002_b.sql", "empty", "warning"),
        ("rollbacks/002_b_rollback.sql", "empty", "warning"),
    ]


# -- checksums ---------------------------------------------------------------------------------

LF_TEXT = "-- Version: 1.0.0\n-- Description: users\n\nCREATE TABLE users (id int);\n"


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        (LF_TEXT.encode(), True),
        (LF_TEXT.replace("\n", "\r\n").encode(), True),
        (LF_TEXT.replace("\n", "\r").encode(), True),
        (b"\xef\xbb\xbf" + LF_TEXT.encode(), True),
        (b"\xef\xbb\xbf" + LF_TEXT.replace("\n", "\r\n").encode(), True),
        (LF_TEXT.replace("id int", "id bigint").encode(), False),
        (LF_TEXT.replace("users (", "users  (").encode(), False),
        ((LF_TEXT + "\n").encode(), False),
    ],
    ids=["LF", "CRLF", "CR", "BOM", "BOM+CRLF", "edit", "whitespace", "extra-line"],
)
def test_checksum_ignores_line_ends_and_bom_but_not_edits(tmp_path: Path, variant: bytes, same: bool) -> None:
    write(tmp_path, pair("001_users", "1.0.0") | {"migrations/001_users.sql": variant})
    [mig] = load(tmp_path).migrations
    reference = hashlib.sha256(LF_TEXT.encode()).hexdigest()
    assert (mig.checksum == reference) is same
    assert mig.checksum == files.checksum(variant.decode("utf-8"))


def test_rollback_checksum_is_normalised_too(tmp_path: Path) -> None:
    write(tmp_path, pair("001_a", "1.0.0", rollback="DROP TABLE a;\r\n"))
    [mig] = load(tmp_path).migrations
    assert mig.rollback.checksum == hashlib.sha256(b"DROP TABLE a;\n").hexdigest()


# -- property: nothing but FileProblems ever escapes -------------------------------------------

# Plus the surrogate escapes U+DC80..U+DCFF, which os.fsencode turns into the undecodable
# bytes 0x80..0xFF: names that are not valid UTF-8.
_NAME_CHARS = st.one_of(
    st.characters(exclude_characters="/\x00"),
    st.sampled_from([chr(c) for c in range(0xDC80, 0xDD00)]),
)
_NAME_TEXT = st.lists(_NAME_CHARS, max_size=20).map("".join)  # st.text() would not yield them
_names = st.one_of(
    _NAME_TEXT.filter(bool),
    _NAME_TEXT.map(lambda stem: stem + ".sql"),  # scanned, not skipped
    st.from_regex(r"[0-9]{1,3}_[a-zA-Z0-9_ .-]{0,10}(_rollback)?\.(sql|SQL)", fullmatch=True),
)


def _creatable(name: str) -> bool:
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return name not in (".", "..") and len(raw) <= 200


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(_names.filter(_creatable), max_size=4),
    version=st.text(max_size=20),
    header=st.text(max_size=60),
    body=st.binary(max_size=120),
    rollback=st.binary(max_size=60),
)
def test_load_raises_nothing_but_file_problems(
    names: list[str], version: str, header: str, body: bytes, rollback: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(
            root,
            {
                "migrations/001_a.sql": f"-- Version: {version}\n-- {header}\n".encode(
                    "utf-8", "surrogatepass"
                )
                + body,
                "rollbacks/001_a_rollback.sql": rollback,
            },
        )
        for i, name in enumerate(names):
            where = "rollbacks" if i % 2 else "migrations"
            try:
                (root / where / name).write_bytes(body)
            except (OSError, ValueError):
                continue  # a name this filesystem cannot hold
        try:
            result = load(root)
        except FileProblems as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.severity == "error"
                json.dumps(to_json(problem), ensure_ascii=False).encode("utf-8")
                problem.render().encode("utf-8")
        else:
            assert [m.number for m in result.migrations] == sorted(m.number for m in result.migrations)
            assert all(isinstance(m.version, Version) for m in result.migrations)
            for warning in result.warnings:
                assert warning.severity == "warning"
