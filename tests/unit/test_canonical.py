"""The canonical checksum: the same for formatting-only edits, different for any SQL change."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sqlmig.engine import plan
from sqlmig.files import sqltext
from sqlmig.files.sqltext import canonical_checksum
from tests.unit.helpers import applied, load, pair, write

BASE = """\
-- Version: 1.1.0
-- Description: orders
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    status text NOT NULL DEFAULT 'new',
    qty integer NOT NULL DEFAULT 5 CHECK (qty > 0)
) WITH (fillfactor = 90);
CREATE INDEX orders_status_idx ON orders (status) WHERE qty > 1;
CREATE FUNCTION orders_total() RETURNS bigint LANGUAGE sql AS $$ SELECT sum(qty) FROM orders $$;
"""


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(BASE.replace("\n", "\r\n"), id="crlf"),
        pytest.param("\ufeff" + BASE, id="bom"),
        pytest.param(BASE.replace("    ", "\t").replace(" (", "("), id="whitespace"),
        pytest.param(BASE.replace("(\n    id", "(id").replace(",\n    ", ", "), id="reflowed"),
        pytest.param(
            "-- a new note on top\n\n" + BASE + "\n/* trailing\n /* nested */ comment */\n", id="comments"
        ),
        pytest.param(
            BASE.replace("-- Description: orders", "-- Description: the orders table"),
            id="description-header",
        ),
        pytest.param(
            BASE.replace("CREATE TABLE orders", "create table ORDERS")
            .replace("NOT NULL", "not null")
            .replace("bigint PRIMARY", "BIGINT primary"),
            id="keyword-and-identifier-case",
        ),
        pytest.param(BASE.replace("orders (status)", '"orders" ("status")'), id="needless-quotes"),
        pytest.param(BASE.replace("qty integer", "qty int"), id="type-alias"),
        pytest.param(BASE.replace("fillfactor = 90", "fillfactor=90"), id="option-spacing"),
        # DefElem.arg_location moves too: dropping only `location` keys would call this a SQL change.
        pytest.param(
            BASE.replace("RETURNS bigint LANGUAGE sql AS", "RETURNS bigint\n    LANGUAGE sql\nAS"),
            id="function-header-reflowed",
        ),
    ],
)
def test_formatting_only_edits_keep_the_canonical_checksum(edited: str) -> None:
    assert canonical_checksum(edited) == canonical_checksum(BASE) is not None


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(BASE.replace("DEFAULT 5", "DEFAULT 6"), id="number-constant"),
        pytest.param(BASE.replace("DEFAULT 'new'", "DEFAULT 'New'"), id="string-constant"),
        pytest.param(BASE.replace("qty > 0", "qty > 0.0"), id="constant-type"),
        pytest.param(BASE.replace("fillfactor = 90", "fillfactor = 80"), id="option-value"),
        pytest.param(BASE.replace("qty integer", "qty bigint"), id="column-type"),
        pytest.param(BASE.replace("status text", "state text"), id="column-name"),
        pytest.param(BASE.replace("orders (status)", '"Orders" (status)'), id="quoted-identifier"),
        pytest.param(BASE.replace("WHERE qty > 1", ""), id="dropped-clause"),
        pytest.param(BASE.replace("sum(qty) FROM", "sum(qty)  FROM"), id="inside-a-dollar-body"),
        pytest.param(BASE + "ANALYZE orders;\n", id="added-statement"),
        pytest.param(BASE.replace("CREATE INDEX", "CREATE UNIQUE INDEX"), id="unique"),
    ],
)
def test_sql_changes_change_the_canonical_checksum(edited: str) -> None:
    assert canonical_checksum(edited) != canonical_checksum(BASE)


def test_a_statement_at_the_very_start_equals_one_after_a_comment() -> None:
    # libpg_query omits a location of 0, so the first statement's position must not count.
    assert canonical_checksum("CREATE TABLE t (a int);") == canonical_checksum(
        "-- note\nCREATE TABLE t (a int);"
    )


def test_an_unparseable_file_has_no_canonical_checksum() -> None:
    assert canonical_checksum("CREATE TABLE t (a int DEFALT 5);") is None


def test_psql_meta_commands_count_but_their_spacing_does_not() -> None:
    sql = "CREATE TABLE t (a int);\n"
    with_meta = "\\set ON_ERROR_STOP on\n" + sql
    assert canonical_checksum(with_meta) is not None
    assert canonical_checksum(with_meta) != canonical_checksum(sql)
    assert canonical_checksum("\\set  ON_ERROR_STOP   on\n\n" + sql) == canonical_checksum(with_meta)


# -- plan.formatting_only: what validate builds on -------------------------------------------------


def _migration(tmp_path, body: str, header: str = ""):
    return load(write(tmp_path, pair("001_orders", "1.1.0", header + body))).migrations[0]


def test_formatting_only_needs_a_stored_canonical_checksum(tmp_path) -> None:
    mig = _migration(tmp_path / "a", BASE.split("\n", 1)[1])
    edited = _migration(tmp_path / "b", "-- note\n" + BASE.split("\n", 1)[1])
    record = applied(mig, canonical_checksum=canonical_checksum(mig.text), transactional=True)
    assert plan.formatting_only(record, edited)
    assert not plan.formatting_only(replace(record, canonical_checksum=None), edited)
    assert not plan.formatting_only(record, mig)  # unchanged bytes: nothing to report


def test_a_changed_no_transaction_header_is_not_formatting(tmp_path) -> None:
    body = "CREATE INDEX a_idx ON a (id);\n"
    mig = _migration(tmp_path / "a", body, "-- sqlmig: no-transaction\n")
    edited = _migration(tmp_path / "b", body)
    record = applied(mig, canonical_checksum=canonical_checksum(mig.text), transactional=False)
    assert canonical_checksum(edited.text) == record.canonical_checksum
    assert not plan.formatting_only(record, edited)


def test_validate_reports_formatting_only_as_a_warning_not_an_error(tmp_path) -> None:
    mig = _migration(tmp_path / "a", "CREATE TABLE a (id int);\n")
    edited = load(write(tmp_path / "b", pair("001_orders", "1.1.0", "create table a ( id int ) ;\n")))
    record = applied(mig, canonical_checksum=canonical_checksum(mig.text))
    errors, warnings = plan.validate(edited, [record])
    assert errors == []
    assert [(w.path, w.code, w.severity) for w in warnings] == [
        ("migrations/001_orders.sql", "formatting-only", "warning")
    ]
    assert (
        warnings[0]
        .render()
        .startswith("migrations/001_orders.sql: warning: formatting-only change since it was applied")
    )
    assert "sqlmig repair --accept-formatting 1.1.0" in warnings[0].message


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE a (id int);\n",
        "-- Version: 1.0.0\n\\set ON_ERROR_STOP on\nCREATE TABLE a (id int DEFAULT 5);\n\\echo done\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nSELECT f();\n",
        "".join(f"INSERT INTO t VALUES ({i}, 'row {i}');\n" for i in range(40_000)),  # in pieces
    ],
)
def test_split_takes_the_canonical_checksum_from_its_own_parse(text: str) -> None:
    # up parses each pending file once: the checksum it stores comes from split's parse.
    assert sqltext.split(text, canonical=True).canonical == sqltext.canonical_checksum(text) is not None


def test_split_leaves_the_canonical_checksum_of_crlf_text_to_canonical_checksum() -> None:
    assert sqltext.split("CREATE TABLE a (id int);\r\n", canonical=True).canonical is None
    # unparseable: no canonical form
    assert sqltext.split("CREATE TABLE (;\n", canonical=True).canonical is None
