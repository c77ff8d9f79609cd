"""sqlmig lint: every rule (bad and good), allow comments, the version bump, positions, the three
output formats and the exit codes. No database."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import sqlmig
from sqlmig.checks import lint as linter
from sqlmig.checks.lint_rules import RULES
from sqlmig.cli import main as cli
from sqlmig.config.settings import Config
from sqlmig.errors import InvalidInput
from sqlmig.reports import LintReport
from tests.unit.helpers import pair, write

REPO = Path(__file__).resolve().parents[2]
BASE = """\
CREATE TABLE users (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email    text NOT NULL,
    nickname text,
    age      int
);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint);
CREATE INDEX users_email_idx ON users (email);
"""
UNDER_TEST = "migrations/002_change.sql"


def project(root: Path, *bodies: str, versions: tuple[str, ...] = ()) -> Path:
    """migrations/001_base.sql (users, orders) and one file per body: 002_change.sql, 003_…"""
    tree = pair("001_base", "1.0.0", BASE)
    names = ["002_change", "003_next", "004_last"]
    versions = versions or ("2.0.0", "3.0.0", "4.0.0")
    for name, version, body in zip(names, versions, bodies, strict=False):
        tree |= pair(name, version, body)
    return write(root, tree)


def run_lint(root: Path, *paths: str | Path, lock_timeout: float | None = None) -> LintReport:
    """lint with the migration_lock_timeout setting at `lock_timeout`: by default None (inherit
    the session's, which lint cannot know), so that missing-lock-timeout judges the files alone."""
    return linter.lint(Config(root=root, migration_lock_timeout=lock_timeout), paths)


def rules_in(report: LintReport, path: str = UNDER_TEST) -> set[str]:
    return {f.rule for f in report.findings if f.path == path}


def cli_run(
    root: Path, *args: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str], str]:
    """Run `sqlmig --root ROOT ARGS` in-process from ROOT: (exit code, stdout lines, stderr)."""
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as info:
        cli.main(["--root", str(root), *args])
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out.splitlines(), captured.err


# -- each rule: a statement that breaks it, and one that does not ------------------------------

T = "SET LOCAL lock_timeout = '2s';\n"  # keeps missing-lock-timeout out of the other rules' way
NO_TX = "-- sqlmig: no-transaction\n"

CASES = [
    ("index-not-concurrent", True, "CREATE INDEX users_age_idx ON users (age);"),
    ("index-not-concurrent", True, "CREATE UNIQUE INDEX orders_user_idx ON public.orders (user_id);"),
    ("index-not-concurrent", False, NO_TX + "CREATE INDEX CONCURRENTLY users_age_idx ON users (age);"),
    ("index-not-concurrent", False, "CREATE TABLE t (a int);\nCREATE INDEX t_a_idx ON t (a);"),
    ("drop-index-not-concurrent", True, "DROP INDEX users_email_idx;"),
    (
        "drop-index-not-concurrent",
        True,
        NO_TX + "CREATE INDEX CONCURRENTLY users_age_idx ON users (age);\nDROP INDEX users_age_idx;",
    ),
    ("drop-index-not-concurrent", False, NO_TX + "DROP INDEX CONCURRENTLY users_email_idx;"),
    (
        "drop-index-not-concurrent",
        False,
        "CREATE TABLE t (a int);\nCREATE INDEX t_a_idx ON t (a);\nDROP INDEX t_a_idx;",
    ),
    ("volatile-default", True, T + "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
    (
        "volatile-default",
        True,
        T + "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp() NOT NULL;",
    ),
    ("volatile-default", True, T + "ALTER TABLE users ADD COLUMN r float8 DEFAULT round(random() * 10);"),
    ("volatile-default", True, T + "ALTER TABLE users ADD COLUMN n bigserial;"),
    ("volatile-default", True, T + "ALTER TABLE orders ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;"),
    (
        "volatile-default",
        True,
        T + "ALTER TABLE users ADD COLUMN age2 int GENERATED ALWAYS AS (age * 2) STORED;",
    ),
    ("volatile-default", False, T + "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT now();"),
    (
        "volatile-default",
        False,
        T + "ALTER TABLE users ADD COLUMN seen timestamptz NOT NULL DEFAULT current_timestamp;",
    ),
    ("volatile-default", False, T + "ALTER TABLE users ADD COLUMN n int NOT NULL DEFAULT 0;"),
    (
        "volatile-default",
        False,
        "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
    ),
    ("required-column", True, T + "ALTER TABLE users ADD COLUMN score int NOT NULL;"),
    ("required-column", False, T + "ALTER TABLE users ADD COLUMN score int NOT NULL DEFAULT 0;"),
    ("required-column", False, T + "ALTER TABLE users ADD COLUMN score int;"),
    ("required-column", False, "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int NOT NULL;"),
    ("column-type-change", True, T + "ALTER TABLE users ALTER COLUMN age TYPE bigint;"),
    ("column-type-change", False, "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;"),
    ("set-not-null", True, T + "ALTER TABLE users ALTER COLUMN nickname SET NOT NULL;"),
    ("set-not-null", False, "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    (
        "constraint-without-not-valid",
        True,
        T + "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);",
    ),
    (
        "constraint-without-not-valid",
        True,
        T + "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users;",
    ),
    (
        "constraint-without-not-valid",
        True,
        T + "ALTER TABLE orders ADD COLUMN buyer bigint REFERENCES users (id);",
    ),
    (
        "constraint-without-not-valid",
        False,
        T + "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID;",
    ),
    (
        "constraint-without-not-valid",
        False,
        T + "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users "
        "NOT VALID;",
    ),
    (
        "validate-in-same-transaction",
        True,
        T + "ALTER TABLE users ADD CONSTRAINT c CHECK (age >= 0) NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT c;",
    ),
    ("validate-in-same-transaction", False, "ALTER TABLE users VALIDATE CONSTRAINT c;"),
    ("constraint-builds-index", True, T + "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);"),
    ("constraint-builds-index", True, T + "ALTER TABLE users ADD COLUMN code text UNIQUE;"),
    (
        "constraint-builds-index",
        False,
        T + "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
    ),
    ("drop-column", True, T + "ALTER TABLE users DROP COLUMN nickname;"),
    ("drop-column", False, "CREATE TABLE t (a int, b int);\nALTER TABLE t DROP COLUMN b;"),
    ("drop-table", True, T + "DROP TABLE orders;"),
    ("drop-table", True, "DROP VIEW IF EXISTS user_emails;"),
    ("drop-table", False, "CREATE TABLE t (a int);\nDROP TABLE t;"),
    ("rename-column", True, T + "ALTER TABLE users RENAME COLUMN nickname TO handle;"),
    ("rename-column", False, "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;"),
    ("rename-table", True, T + "ALTER TABLE orders RENAME TO purchases;"),
    (
        "rename-table",
        False,
        "CREATE TABLE t (a int);\nALTER TABLE t RENAME TO u;\nCREATE INDEX u_a_idx ON u (a);",
    ),
    ("missing-lock-timeout", True, "ALTER TABLE users ADD COLUMN bio text;"),
    ("missing-lock-timeout", True, "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN bio text;"),
    (
        "missing-lock-timeout",
        True,
        "SET lock_timeout = '1s';\nRESET lock_timeout;\nALTER TABLE users ADD COLUMN bio text;",
    ),
    ("missing-lock-timeout", True, "TRUNCATE orders;"),
    ("missing-lock-timeout", True, "LOCK TABLE orders;"),
    ("missing-lock-timeout", True, "DROP TABLE orders;"),
    ("missing-lock-timeout", True, "CREATE RULE r AS ON DELETE TO orders DO INSTEAD NOTHING;"),
    ("missing-lock-timeout", True, NO_TX + "VACUUM (FULL, ANALYZE) orders;"),
    ("missing-lock-timeout", False, NO_TX + "VACUUM (FULL false) orders;"),
    ("missing-lock-timeout", False, "LOCK TABLE orders IN SHARE MODE;"),
    (
        "missing-lock-timeout",
        True,
        NO_TX + "SET LOCAL lock_timeout = '1s';\nALTER TABLE users ADD COLUMN bio text;",
    ),
    ("missing-lock-timeout", False, "SET lock_timeout = '1s';\nALTER TABLE users ADD COLUMN bio text;"),
    ("missing-lock-timeout", False, T + "ALTER TABLE users ADD COLUMN bio text;"),
    (
        "missing-lock-timeout",
        False,
        NO_TX + "SET lock_timeout TO 1000;\nALTER TABLE users ADD COLUMN bio text;",
    ),
    (
        "missing-lock-timeout",
        False,
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users NOT VALID;",
    ),
    ("missing-lock-timeout", False, "ALTER TABLE users VALIDATE CONSTRAINT c;"),
    ("missing-lock-timeout", False, "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b text;"),
    ("prefer-timestamptz", True, "CREATE TABLE t (at timestamp);"),
    ("prefer-timestamptz", True, T + "ALTER TABLE users ADD COLUMN seen timestamp without time zone;"),
    ("prefer-timestamptz", False, "CREATE TABLE t (at timestamptz, b timestamp with time zone);"),
    ("prefer-text", True, "CREATE TABLE t (name varchar(50));"),
    ("prefer-text", True, "CREATE TABLE t (code char(2));"),
    ("prefer-text", True, T + "ALTER TABLE users ALTER COLUMN nickname TYPE character varying(20);"),
    ("prefer-text", False, "CREATE TABLE t (name text, other varchar);"),
    ("prefer-identity", True, "CREATE TABLE t (id serial PRIMARY KEY);"),
    ("prefer-identity", False, "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"),
    ("prefer-numeric", True, "CREATE TABLE t (price money);"),
    ("prefer-numeric", False, "CREATE TABLE t (price numeric(12, 2));"),
    ("unparsed-statement", True, "SELEC 1;"),
    ("unparsed-statement", False, "SELECT 1;"),
]


@pytest.mark.parametrize(
    ("rule", "flagged", "body"),
    CASES,
    ids=[f"{r}-{'bad' if f else 'good'}{i}" for i, (r, f, _) in enumerate(CASES)],
)
def test_rule_flags_the_risky_statement_and_not_the_safe_one(
    tmp_path: Path, rule: str, flagged: bool, body: str
) -> None:
    report = run_lint(project(tmp_path, body + "\n"))
    assert (rule in rules_in(report)) is flagged, report.findings


def test_every_rule_has_a_bad_and_a_good_case() -> None:
    statement_rules = set(RULES) - {"breaking-needs-major", "unused-allow", "allow-needs-reason"}
    assert {r for r, f, _ in CASES if f} == statement_rules
    assert {r for r, f, _ in CASES if not f} == statement_rules


def test_set_not_null_is_fine_after_a_check_validated_in_an_earlier_migration(tmp_path: Path) -> None:
    add = T + "ALTER TABLE users ADD CONSTRAINT users_nick_nn CHECK (nickname IS NOT NULL) NOT VALID;\n"
    validate = "ALTER TABLE users VALIDATE CONSTRAINT users_nick_nn;\n"
    set_nn = T + "ALTER TABLE users ALTER COLUMN nickname SET NOT NULL;\n"
    report = run_lint(project(tmp_path, add, validate, set_nn))
    assert "set-not-null" not in rules_in(report, "migrations/004_last.sql")

    unvalidated = run_lint(project(tmp_path / "b", add, "SELECT 1;\n", set_nn))
    [finding] = [f for f in unvalidated.findings if f.rule == "set-not-null"]
    assert finding.message == (
        "SET NOT NULL on users.nickname scans the whole table under an ACCESS EXCLUSIVE lock: "
        "CHECK users_nick_nn is NOT VALID: VALIDATE CONSTRAINT it in an earlier migration"
    )


def test_unknown_functions_and_stable_ones_are_not_called_volatile(tmp_path: Path) -> None:
    body = T + (
        "ALTER TABLE users ADD COLUMN a date DEFAULT current_date, "
        "ADD COLUMN b timestamptz DEFAULT statement_timestamp(), "
        "ADD COLUMN c text DEFAULT my_func();\n"
    )
    assert "volatile-default" not in rules_in(run_lint(project(tmp_path, body)))


# -- allow comments ------------------------------------------------------------------------------

RENAME = "ALTER TABLE users RENAME COLUMN nickname TO handle;\n"


def test_allow_with_a_reason_suppresses_that_rule_for_that_statement_only(tmp_path: Path) -> None:
    body = (
        T + "-- the app reads handle since release 42\n"
        "-- sqlmig: allow rename-column handle is read by the code deployed with 2.0.0\n"
        + RENAME
        + "ALTER TABLE orders RENAME COLUMN user_id TO buyer_id;\n"
    )
    report = run_lint(project(tmp_path, body))
    assert [(f.rule, f.line) for f in report.findings] == [("rename-column", 6)]
    assert [(f.rule, f.line, f.allowed) for f in report.allowed] == [
        ("rename-column", 5, "handle is read by the code deployed with 2.0.0")
    ]


def test_allow_for_one_rule_leaves_the_other_rules_of_the_statement(tmp_path: Path) -> None:
    body = "-- sqlmig: allow rename-column deliberate\n" + RENAME
    report = run_lint(project(tmp_path, body))
    assert rules_in(report) == {"missing-lock-timeout"}


def test_allow_without_a_reason_is_an_error_and_suppresses_nothing(tmp_path: Path) -> None:
    body = T + "-- sqlmig: allow rename-column\n" + RENAME
    report = run_lint(project(tmp_path, body))
    assert [(f.rule, f.severity, f.line, f.column, f.message) for f in report.findings] == [
        (
            "allow-needs-reason",
            "error",
            3,
            1,
            "`-- sqlmig: allow rename-column` gives no reason, so it suppresses nothing",
        ),
        (
            "rename-column",
            "error",
            4,
            1,
            "RENAME COLUMN users.nickname TO handle: running code that uses nickname breaks",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            T + "-- sqlmig: allow drop-column not needed\n" + RENAME,
            "`-- sqlmig: allow drop-column` suppresses nothing: the statement below has no drop-column "
            "finding",
        ),
        (
            T + "-- sqlmig: allow rename-column deliberate\n\n" + RENAME,
            "`-- sqlmig: allow rename-column` suppresses nothing: it is not on the comment lines right "
            "above a statement",
        ),
        (
            T + "-- sqlmig: allow rename-colum deliberate\n" + RENAME,
            "`-- sqlmig: allow` names an unknown rule `rename-colum` (did you mean rename-column?): it "
            "suppresses nothing",
        ),
        (T + "-- sqlmig: allow\n" + RENAME, "`-- sqlmig: allow` names no rule: it suppresses nothing"),
    ],
)
def test_allow_that_suppresses_nothing_is_a_warning(tmp_path: Path, body: str, message: str) -> None:
    report = run_lint(project(tmp_path, body))
    unused = [(f.severity, f.line, f.message) for f in report.findings if f.rule == "unused-allow"]
    assert unused == [("warning", 3, message)]
    assert "rename-column" in rules_in(report)


def test_allow_in_the_header_right_above_the_first_statement_loads_and_applies(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair("001_base", "1.0.0", BASE)
        | {
            "migrations/002_change.sql": "-- Version: 2.0.0\n-- sqlmig: allow drop-table legacy, unused\n"
            "DROP TABLE orders;\n",
            "rollbacks/002_change_rollback.sql": "SELECT 1;\n",
        },
    )
    report = run_lint(tmp_path)
    assert [f.rule for f in report.allowed] == ["drop-table"]
    assert rules_in(report) == {"missing-lock-timeout"}


def test_allow_text_inside_a_statement_is_not_a_directive(tmp_path: Path) -> None:
    body = T + "COMMENT ON TABLE users IS '\n-- sqlmig: allow drop-table x\n';\n"
    assert run_lint(project(tmp_path, body)).findings == ()


# -- semantic versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "version", "flagged"),
    [
        ("1.0.0", "1.1.0", True),
        ("1.0.0", "1.0.1", True),
        ("1.0.0", "2.0.0", False),
        ("1.0.0", "3.0.0", False),
        ("0.1.0", "0.2.0", False),  # below 1.0.0 a MINOR bump may break (as Cargo and npm read it)
        ("0.1.0", "0.1.1", True),
    ],
)
def test_breaking_statement_needs_a_major_bump(
    tmp_path: Path, previous: str, version: str, flagged: bool
) -> None:
    write(
        tmp_path,
        pair("001_base", previous, BASE)
        | pair("002_change", version, T + "ALTER TABLE users DROP COLUMN nickname;\n"),
    )
    report = run_lint(tmp_path)
    found = [f for f in report.findings if f.rule == "breaking-needs-major"]
    if not flagged:
        assert found == []
        return
    assert [(f.path, f.line, f.column, f.severity, f.message) for f in found] == [
        (
            UNDER_TEST,
            3,
            1,
            "error",
            f"drop-column is breaking for running code, but version {version} is not a major bump "
            f"over {previous} of migrations/001_base.sql: make it {int(previous[0]) + 1}.0.0",
        )
    ]


def test_version_check_counts_allowed_breaking_statements_and_can_be_allowed_itself(tmp_path: Path) -> None:
    body = (
        T + "-- sqlmig: allow drop-column nothing reads it since 1.0.0\n"
        "ALTER TABLE users DROP COLUMN nickname;\n"
    )
    write(tmp_path, pair("001_base", "1.0.0", BASE) | pair("002_change", "1.1.0", body))
    assert rules_in(run_lint(tmp_path)) == {"breaking-needs-major"}

    body = body.replace("ALTER", "-- sqlmig: allow breaking-needs-major it was never shipped\nALTER")
    write(tmp_path, pair("002_change", "1.1.0", body))
    report = run_lint(tmp_path)
    assert report.findings == ()
    assert [f.rule for f in report.allowed] == ["drop-column", "breaking-needs-major"]


def test_new_tables_do_not_make_a_file_breaking(tmp_path: Path) -> None:
    body = "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;\nDROP TABLE t;\n"
    write(tmp_path, pair("001_base", "1.0.0", BASE) | pair("002_change", "1.1.0", body))
    assert run_lint(tmp_path).findings == ()


# -- which files ---------------------------------------------------------------------------------


def test_files_given_are_linted_alone_but_in_the_context_of_the_set(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair("001_base", "1.0.0", BASE)
        | pair("002_change", "1.1.0", "ALTER TABLE users DROP COLUMN nickname;\n")
        | pair("003_next", "1.2.0", "DROP TABLE orders;\n"),
    )
    report = run_lint(tmp_path, tmp_path / "migrations/002_change.sql")
    assert report.files == ("migrations/002_change.sql",)
    assert {f.path for f in report.findings} == {UNDER_TEST}
    assert rules_in(report) == {"missing-lock-timeout", "drop-column", "breaking-needs-major"}


def test_a_file_outside_the_set_is_linted_alone_without_a_version_check(tmp_path: Path) -> None:
    write(tmp_path, pair("001_base", "1.0.0", BASE))
    draft = tmp_path / "draft.sql"
    draft.write_text("-- Version: 1.0.1\nALTER TABLE users DROP COLUMN nickname;\n")
    report = run_lint(tmp_path, draft)
    assert report.files == ("draft.sql",)
    assert {(f.path, f.rule) for f in report.findings} == {
        ("draft.sql", "drop-column"),
        ("draft.sql", "missing-lock-timeout"),
    }


def test_a_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nope\.sql: no such file"):
        run_lint(project(tmp_path), "nope.sql")


def test_a_file_that_is_not_utf8_is_invalid_input(tmp_path: Path) -> None:
    (project(tmp_path) / "latin1.sql").write_bytes(b"-- Gr\xf6\xdfe\nSELECT 1;\n")
    with pytest.raises(InvalidInput, match=r"latin1\.sql:1: not valid UTF-8"):
        run_lint(tmp_path, tmp_path / "latin1.sql")


def test_crlf_files_get_the_same_positions_and_allows(tmp_path: Path) -> None:
    body = (
        T + "-- sqlmig: allow drop-column unused since 1.0\n"
        "ALTER TABLE users DROP COLUMN age;\nCREATE TABLE t (at timestamp);\n"
    )
    write(
        tmp_path,
        pair("001_base", "1.0.0", BASE)
        | {
            "migrations/002_change.sql": ("-- Version: 2.0.0\n" + body).replace("\n", "\r\n"),
            "rollbacks/002_change_rollback.sql": "SELECT 1;\r\n",
        },
    )
    report = run_lint(tmp_path)
    assert [(f.rule, f.line, f.column) for f in report.findings] == [("prefer-timestamptz", 5, 20)]
    assert [(f.rule, f.line) for f in report.allowed] == [("drop-column", 4)]


def test_problems_with_the_set_are_findings_with_the_engines_code(tmp_path: Path) -> None:
    write(tmp_path, {"migrations/001_a.sql": "SELECT 1;\n", "rollbacks/001_a_rollback.sql": "\n"})
    report = run_lint(tmp_path)
    assert [(f.rule, f.where, f.severity) for f in report.findings] == [
        ("missing-version", "migrations/001_a.sql:1:1", "error")
    ]
    assert report.refused_count == 1 and not report.ok


def test_library_exposes_lint(tmp_path: Path) -> None:
    report = sqlmig.lint(sqlmig.resolve(root=project(tmp_path, "SELECT 1;\n")))
    assert isinstance(report, LintReport)
    assert report.ok and report.files == (
        "migrations/001_base.sql",
        UNDER_TEST,
        "rollbacks/001_base_rollback.sql",
        "rollbacks/002_change_rollback.sql",
    )


# -- positions -----------------------------------------------------------------------------------


def test_positions_are_line_and_character_column_of_the_exact_node(tmp_path: Path) -> None:
    body = (
        "-- Größe: non-ASCII before the statements must not shift columns\n"
        'CREATE TABLE t (a text, "größe" timestamp, c varchar(9));\n'
        "\tALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid(),\n"
        "    ADD CONSTRAINT users_age_check CHECK (age > 0);\n"
    )
    report = run_lint(project(tmp_path, body))
    assert [(f.rule, f.line, f.column) for f in report.findings] == [
        ("prefer-timestamptz", 3, 33),
        ("prefer-text", 3, 46),
        ("missing-lock-timeout", 4, 2),
        ("volatile-default", 4, 31),
        ("constraint-without-not-valid", 5, 9),
    ]


# -- output formats and exit codes ---------------------------------------------------------------

BAD = (
    T
    + "-- sqlmig: allow rename-column code moved to handle in 2.0.0\n"
    + RENAME
    + "CREATE TABLE t (at timestamp);\nALTER TABLE users DROP COLUMN age;\n"
)


def test_human_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli_run(project(tmp_path, BAD), "lint", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    assert out == [
        f"{UNDER_TEST}:5:20: warning [prefer-timestamptz] column at is timestamp without time "
        "zone: use timestamptz",
        f"    fix: {RULES['prefer-timestamptz'].fix}",
        f"{UNDER_TEST}:6:1: error [drop-column] DROP COLUMN users.age: running code that uses it "
        "breaks, and its data is gone",
        f"    fix: {RULES['drop-column'].fix}",
        f"{UNDER_TEST}:4:1: allowed [rename-column] code moved to handle in 2.0.0",
        "lint: 4 files, 1 error, 1 warning, 1 allowed",
    ]


def test_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli_run(project(tmp_path, BAD), "lint", "--json", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    data = json.loads("\n".join(out))
    assert data["files"] == [
        "migrations/001_base.sql",
        UNDER_TEST,
        "rollbacks/001_base_rollback.sql",
        "rollbacks/002_change_rollback.sql",
    ]
    assert (data["error_count"], data["warning_count"], data["ok"]) == (1, 1, False)
    assert data["findings"][1] == {
        "rule": "drop-column",
        "severity": "error",
        "path": UNDER_TEST,
        "line": 6,
        "column": 1,
        "message": "DROP COLUMN users.age: running code that uses it breaks, and its data is gone",
        "fix": RULES["drop-column"].fix,
        "allowed": None,
    }
    assert data["allowed"][0]["allowed"] == "code moved to handle in 2.0.0"
    code_fmt, out_fmt, _ = cli_run(
        tmp_path, "lint", "--format", "json", capsys=capsys, monkeypatch=monkeypatch
    )
    assert (code_fmt, out_fmt) == (code, out)


def test_github_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli_run(
        project(tmp_path, BAD), "lint", "--format", "github", capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 1
    assert out == [
        f"::warning file={UNDER_TEST},line=5,col=20,title=prefer-timestamptz::column at is "
        f"timestamp without time zone: use timestamptz. Fix: {RULES['prefer-timestamptz'].fix}",
        f"::error file={UNDER_TEST},line=6,col=1,title=drop-column::DROP COLUMN users.age: "
        f"running code that uses it breaks, and its data is gone. Fix: {RULES['drop-column'].fix}",
        f"::notice file={UNDER_TEST},line=4,col=1,title=allowed rename-column::RENAME COLUMN "
        "users.nickname TO handle: running code that uses nickname breaks. Allowed: code moved "
        "to handle in 2.0.0",
        "lint: 4 files, 1 error, 1 warning, 1 allowed",
    ]


def test_github_output_escapes_properties_and_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    (tmp_path / "odd,name.sql").write_text("CREATE TABLE t (p money);\n")
    code, out, _ = cli_run(
        tmp_path, "lint", "--format", "github", "odd,name.sql", capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 0
    assert out[0].startswith("::warning file=odd%2Cname.sql,line=1,col=19,title=prefer-numeric::")


def test_warnings_alone_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli_run(
        project(tmp_path, "CREATE TABLE t (c char(3));\n"), "lint", capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 0
    assert out[-1] == "lint: 4 files, 0 errors, 1 warning, 0 allowed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lint", "missing.sql"), "sqlmig: missing.sql: no such file"),
        (("lint", "--json", "--format", "github"), "--json and --format github contradict each other"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    code, out, err = cli_run(project(tmp_path), *args, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert message in err
    assert out == []


def test_broken_migration_set_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"migrations/001_a.sql": "SELECT 1;\n", "rollbacks/001_a_rollback.sql": "\n"})
    code, out, _ = cli_run(tmp_path, "lint", capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert out[0] == (
        "migrations/001_a.sql:1:1: error [missing-version] no `-- Version: "
        "MAJOR.MINOR.PATCH` header before the first statement"
    )


# -- the repository itself -----------------------------------------------------------------------


def test_example_project_passes_lint_with_its_deliberate_risks_allowed() -> None:
    report = linter.lint(Config(root=REPO))  # the settings in force: the default 5s lock_timeout
    assert report.findings == ()
    assert report.ok
    assert [(f.path, f.rule) for f in report.allowed] == [
        ("migrations/005_rename_display_name.sql", "rename-column")
    ]


def test_readme_documents_every_rule_with_its_severity() -> None:
    readme = (REPO / "docs" / "lint.md").read_text()
    for rule in RULES.values():
        assert re.search(rf"^\| `{re.escape(rule.id)}` \| {rule.severity} \|", readme, re.M), rule.id


# -- rules agree with the settings in force, and with what up/down refuse ----------------------

ADD_BIO = "ALTER TABLE users ADD COLUMN bio text;\n"


@pytest.mark.parametrize(
    ("setting", "body", "message"),
    [
        (5.0, ADD_BIO, None),  # the default --migration-lock-timeout: bounded, no finding
        (10.0, ADD_BIO, None),
        (30.0, ADD_BIO, "with lock_timeout 30s, longer than 10s"),
        (0.0, ADD_BIO, "with lock_timeout off"),
        (None, ADD_BIO, "with no lock_timeout set (the session's value applies, which may be none)"),
        # a no-transaction file runs with the session's value: the setting does not reach it
        (5.0, NO_TX + ADD_BIO, "with no lock_timeout set"),
        (5.0, "-- sqlmig: lock-timeout 1min\n" + ADD_BIO, "with lock_timeout 1min, longer than 10s"),
        (0.0, "-- sqlmig: lock-timeout 3s\n" + ADD_BIO, None),
        (5.0, "SET LOCAL lock_timeout = 0;\n" + ADD_BIO, "with lock_timeout off"),
        (5.0, "SET LOCAL lock_timeout = 20000;\n" + ADD_BIO, "with lock_timeout 20s, longer than 10s"),
    ],
)
def test_missing_lock_timeout_judges_the_timeout_in_force(
    tmp_path: Path, setting: float | None, body: str, message: str | None
) -> None:
    report = run_lint(project(tmp_path, body), lock_timeout=setting)
    found = [f.message for f in report.findings if f.rule == "missing-lock-timeout"]
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and message in found[0], found


def test_new_files_pass_the_projects_own_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path)
    for description in ("add users", "add phone"):
        code, _, _ = cli_run(tmp_path, "new", description, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 0
    path = next((tmp_path / "migrations").glob("*_add_phone.sql"))
    path.write_text(path.read_text() + ADD_BIO)  # what a user then writes under the template
    code, out, _ = cli_run(tmp_path, "lint", capsys=capsys, monkeypatch=monkeypatch)
    assert (code, out[-1]) == (0, "lint: 6 files, 0 errors, 0 warnings, 0 allowed")
    # the template states the bound in the file, so it passes where the setting is `inherit` too
    assert "-- sqlmig: lock-timeout 5s\n" in path.read_text()
    assert run_lint(tmp_path, lock_timeout=None).findings == ()


@pytest.mark.parametrize(
    ("path", "text", "code", "line"),
    [
        (
            "migrations/002_change.sql",
            "-- Version: 2.0.0\nSELECT 1;\nCREATE INDEX CONCURRENTLY i ON users (age);\n",
            "needs-no-transaction",
            3,
        ),
        ("migrations/002_change.sql", "-- Version: 2.0.0\nSELECT 1;\nCOMMIT;\n", "transaction-control", 3),
        ("migrations/002_change.sql", "-- Version: 2.0.0\n\\i other.sql\n", "psql-meta-command", 2),
        (
            "migrations/002_change.sql",
            "-- Version: 2.0.0\nCOPY users FROM stdin;\n\\.\n",
            "copy-from-stdin",
            2,
        ),
        (
            "rollbacks/002_change_rollback.sql",
            "SELECT 1;\nDROP INDEX CONCURRENTLY users_email_idx;\n",
            "needs-no-transaction",
            2,
        ),
        ("rollbacks/002_change_rollback.sql", "SELECT 1;\nCOMMIT;\n", "transaction-control", 2),
    ],
)
def test_lint_reports_what_up_and_down_refuse_in_migrations_and_rollbacks(
    tmp_path: Path, path: str, text: str, code: str, line: int
) -> None:
    project(tmp_path, "SELECT 1;\n")
    (tmp_path / path).write_text(text)
    report = run_lint(tmp_path)
    assert [(f.rule, f.where) for f in report.findings] == [(code, f"{path}:{line}:1")]
    assert report.refused_count == 1
    # the file alone, as `sqlmig lint FILE` in a pre-commit hook
    alone = run_lint(tmp_path, tmp_path / path)
    assert [(f.rule, f.where) for f in alone.findings] == [(code, f"{path}:{line}:1")]


def test_rollbacks_are_linted_for_locks_but_not_for_breaking_what_they_undo(tmp_path: Path) -> None:
    project(tmp_path, T + "ALTER TABLE users ADD COLUMN bio text;\n")
    (tmp_path / "rollbacks/002_change_rollback.sql").write_text(
        "ALTER TABLE users DROP COLUMN bio;\nDROP INDEX users_email_idx;\n"
    )
    report = run_lint(tmp_path)
    assert [(f.rule, f.where) for f in report.findings] == [
        ("missing-lock-timeout", "rollbacks/002_change_rollback.sql:1:1"),
        ("missing-lock-timeout", "rollbacks/002_change_rollback.sql:2:1"),
        ("drop-index-not-concurrent", "rollbacks/002_change_rollback.sql:2:1"),
    ]


def test_a_refused_file_is_still_linted_so_one_run_shows_everything(tmp_path: Path) -> None:
    project(tmp_path, "SELECT 1;\n")
    (tmp_path / "migrations/002_change.sql").write_text(
        "-- Version: 2.0.0\nCREATE INDEX users_age_idx ON users (age);\nCOMMIT;\n"
    )
    report = run_lint(tmp_path)
    assert [(f.rule, f.where) for f in report.findings] == [
        ("index-not-concurrent", "migrations/002_change.sql:2:1"),
        ("transaction-control", "migrations/002_change.sql:3:1"),
    ]
    assert report.refused_count == 1
