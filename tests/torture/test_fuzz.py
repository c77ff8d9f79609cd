"""Generated bad input through the real CLI: only documented errors and exit codes, never a
traceback, never a partial run.

- migration sets with generated names, headers, versions and encodings, run with `up` against a
  real database: exit 0/2/3/6, and the history matches exactly the tables that exist;
- generated settings in sqlmig.toml and SQLMIG_* variables, and generated command lines:
  exit 0/1/2 (0/1/2/5 where a database URL itself is generated);

Hypothesis runs a modest number of examples (each is a subprocess), with no example database, so
that a run is reproducible from its seed alone; every example prints what it wrote and got.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Project, fresh_database, query, table_exists
from tests.torture.helpers import assert_no_traceback, run, run_bytes, user_tables

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any sqlmig or libpq setting of the caller."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SQLMIG_", "PG")) and k not in ("DATABASE_URL", "DATABASE_PASSWORD_FILE")
    }
    env.update(extra)
    return env


@pytest.fixture
def scratch_dirs() -> list[Path]:
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def new_project(made: list[Path]) -> Project:
    """A project of its own per example (pytest's tmp_path is one per test, not per example)."""
    root = Path(tempfile.mkdtemp(prefix="sqlmig-fuzz-"))
    made.append(root)
    (root / "migrations").mkdir()
    (root / "rollbacks").mkdir()
    return Project(root)


# -- generated migration sets ----------------------------------------------------------------------

SEMVER = st.tuples(st.integers(0, 3), st.integers(0, 12), st.integers(0, 3)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}"
)
VERSION = st.one_of(
    SEMVER,
    SEMVER,
    st.sampled_from(
        [
            "",
            "1.0",
            "v1.0.0",
            "1.0.0-rc.1",
            "01.02.03",
            "1.0.0.0",
            "1.0.0 # note",
            "99999999999999999999.0.0",
            "\u0661.\u0660.\u0660",
            "1.0.0\u00a0",
            "-1.0.0",
        ]
    ),
    st.text(max_size=12),
)
HEADER_LINE = st.one_of(
    VERSION.map(lambda v: f"-- Version: {v}"),
    st.text(max_size=40).map(lambda d: f"-- Description: {d}"),
    st.sampled_from(
        [
            "-- sqlmig: no-transaction",
            "-- sqlmig: allow reason",
            "-- sqlmig: bogus",
            "-- Author: someone",
            "-- Version:",
            "--Version:1.0.0",
            "-- VERSION: 2.0.0",
            "-- Date: tomorrow",
            "-- sqlmig: lock-timeout 5s",
            "-- sqlmig: statement-timeout banana",
            "-- sqlmig: irreversible why",
            "-- sqlmig:",
            "-- Description: x",
            "-- Description: y",
        ]
    ),
    st.text(max_size=30).map(lambda t: "-- " + t),
)
SLUG = st.from_regex(r"[a-z0-9_]{1,10}", fullmatch=True)
NAME = st.one_of(
    st.tuples(st.integers(0, 12), SLUG, st.sampled_from(["{n:03d}_{s}", "{n}_{s}", "{n:05d}_{s}"])).map(
        lambda t: t[2].format(n=t[0], s=t[1])
    ),
    st.from_regex(r"[0-9]{0,3}[_-]?[a-zA-Z0-9_ .\u00e9-]{0,10}", fullmatch=True).filter(
        lambda s: s not in ("", ".", "..") and not s.startswith(".")
    ),
)
ENCODING = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"])
NEWLINE = st.sampled_from(["\n", "\n", "\r\n", "\r"])
CORRUPTION = st.one_of(
    st.none(), st.none(), st.tuples(st.sampled_from([b"\x00", b"\xff", b"\xc3"]), st.floats(0, 1))
)
ROLLBACK = st.sampled_from(["pair", "pair", "pair", "missing", "orphan", "irreversible", "empty"])


@dataclass
class FileSpec:
    name: str
    extension: str
    header: list[str]
    encoding: str
    newline: str
    corruption: tuple[bytes, float] | None
    rollback: str


FILE = st.builds(
    FileSpec,
    name=NAME,
    extension=st.sampled_from([".sql"] * 6 + [".SQL", ".sql.bak"]),
    header=st.lists(HEADER_LINE, max_size=4),
    encoding=ENCODING,
    newline=NEWLINE,
    corruption=CORRUPTION,
    rollback=ROLLBACK,
)


def encode(text: str, spec: FileSpec) -> bytes:
    raw = text.replace("\n", spec.newline).encode(spec.encoding, "replace")
    if spec.corruption is not None:
        byte, where = spec.corruption
        at = int(len(raw) * where)
        raw = raw[:at] + byte + raw[at:]
    return raw


def write_set(project: Project, specs: list[FileSpec]) -> dict[str, str]:
    """Write the files; returns {migration file stem: the table its body creates}."""
    tables: dict[str, str] = {}
    for i, spec in enumerate(specs):
        filename = spec.name + spec.extension
        table = f"fz_{i}"
        body = "\n".join([*spec.header, f"CREATE TABLE {table} (id int);", ""])
        (project.migrations / filename).write_bytes(encode(body, spec))
        tables[spec.name] = table
        stem = spec.name if spec.rollback != "orphan" else spec.name + "_other"
        rollback = {"irreversible": "-- sqlmig: irreversible fuzzed\n", "empty": ""}.get(
            spec.rollback, f"DROP TABLE {table};\n"
        )
        if spec.rollback != "missing":
            (project.rollbacks / f"{stem}_rollback.sql").write_bytes(encode(rollback, spec))
        print(
            f"  wrote migrations/{filename!r} ({spec.encoding}, newline {spec.newline!r}, "
            f"corruption {spec.corruption}, rollback {spec.rollback}): {body!r}"
        )
    return tables


@settings(FUZZ, max_examples=15)
@given(specs=st.lists(FILE, min_size=1, max_size=4, unique_by=lambda s: s.name + s.extension))
@example(
    specs=[
        FileSpec(
            "001_nul",
            ".sql",
            ["-- Version: 1.0.0", "-- Description: a"],
            "utf-8",
            "\n",
            (b"\x00", 0.5),
            "pair",
        )
    ]
)
@example(specs=[FileSpec("001_wide", ".sql", ["-- Version: 1.0.0"], "utf-16-le", "\n", None, "pair")])
def test_generated_migration_sets_through_up_exit_0_2_3_or_6_and_never_half_apply(
    server_dsn: str, scratch_dirs: list[Path], specs: list[FileSpec]
) -> None:
    project = new_project(scratch_dirs)
    print(f"--- example: {len(specs)} file(s)")
    tables = write_set(project, specs)
    with fresh_database(server_dsn) as url:
        result = run(project, "up", url=url, env=clean_env())

        assert result.returncode in (0, 2, 3, 6)
        assert_no_traceback(result)
        history = (
            query(url, "SELECT name, status FROM schema_version ORDER BY number")
            if table_exists(url, "public.schema_version")
            else []
        )
        existing = user_tables(url)
        print(f"  history: {history}; tables: {sorted(existing)}")
        settled = {tables[name] for name, status in history if status == "applied"}
        unsettled = {tables[name] for name, status in history if status != "applied"}
        # Exactly the applied migrations' tables exist: none recorded without its SQL having run,
        # none left behind by a migration that is not recorded. (A no-transaction file that
        # failed stays `failed`, its statements done so far kept: that is documented.)
        assert settled <= existing, "a migration is recorded as applied but its SQL did not run"
        assert existing - settled <= unsettled, "SQL ran for a migration that is not recorded"
        if result.returncode == 2:
            assert "nothing was run" in result.stderr
            assert history == [] and existing == set()
        if result.returncode == 0:
            on_disk = [p for p in project.migrations.iterdir() if p.suffix == ".sql"]
            assert len(history) == len(on_disk), "exit 0 but not every file was applied"
            assert unsettled == set()
        if result.returncode == 3:
            assert "ERROR" in result.stderr


# -- generated settings: sqlmig.toml and SQLMIG_* -------------------------------------------------


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON's escapes are TOML's (most of the time)


KEYS = [
    "migrations_dir",
    "rollbacks_dir",
    "database_url",
    "password_file",
    "schema",
    "table",
    "lock_timeout",
    "connect_timeout",
    "application_name",
    "role",
    "migration_lock_timeout",
    "statement_timeout",
    "retries",
    "retry_delay",
    "lock_mode",
    # not settings, or spelled another way
    "root",
    "password",
    "schema_name",
    "lock-timeout",
    "Table",
    "tool",
    "backup",
]
TOML_VALUE = st.one_of(
    st.text(max_size=16).map(_toml_string),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.booleans().map(lambda b: str(b).lower()),
    st.sampled_from(
        [
            "[]",
            '[1, "a"]',
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
            '"5s"',
            '"10min"',
            '"off"',
            '"inherit"',
            '"-5s"',
            '"1e400s"',
            "inf",
            "-inf",
            "nan",
            "1e308",
            "0",
            "-1",
            '""',
            '"public"',
            '"transaction"',
            '"session"',
            '"pg_catalog"',
            '"postgresql://u:pw@127.0.0.1:1/x"',
            '"."',
            '"/"',
            '"/dev/null"',
            '"migrations"',
            '"\\u0000"',
            "2147483648",
            "1e-9",
        ]
    ),
)
TOML_LINE = st.one_of(
    st.tuples(st.sampled_from(KEYS), TOML_VALUE).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.tuples(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True), TOML_VALUE).map(
        lambda kv: f"{kv[0]} = {kv[1]}"
    ),
    st.sampled_from(
        [
            "[tool.sqlmig]",
            "[section]",
            "= 1",
            "key =",
            "[[x]]",
            "lock_timeout = 1\nlock_timeout = 2",
            "\ufeff",
            "# comment",
        ]
    ),
    st.text(max_size=20),
)
# The environment cannot hold NUL characters.
ENV_VALUE = st.one_of(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=16),
    st.sampled_from(["inf", "nan", "1e308", "-1", "0", "5s", "off", "a,b", "transaction", "9" * 30]),
)
ENV_KEYS = [
    "SQLMIG_LOCK_TIMEOUT",
    "SQLMIG_CONNECT_TIMEOUT",
    "SQLMIG_SCHEMA",
    "SQLMIG_TABLE",
    "SQLMIG_APPLICATION_NAME",
    "SQLMIG_MIGRATION_LOCK_TIMEOUT",
    "SQLMIG_STATEMENT_TIMEOUT",
    "SQLMIG_RETRIES",
    "SQLMIG_RETRY_DELAY",
    "SQLMIG_LOCK_MODE",
    "SQLMIG_ROLE",
    "SQLMIG_MIGRATIONS_DIR",
    "SQLMIG_PASSWORD_FILE",
    "SQLMIG_NO_SUCH_SETTING",
    "SQLMIG_LOG_FORMAT",
    "DATABASE_PASSWORD_FILE",
]


@settings(FUZZ, max_examples=10)
@given(
    lines=st.lists(TOML_LINE, max_size=5),
    env=st.dictionaries(st.sampled_from(ENV_KEYS), ENV_VALUE, max_size=3),
)
@example(lines=["lock_timeout = inf"], env={})
@example(lines=[], env={"SQLMIG_LOCK_TIMEOUT": "1e308"})
@example(lines=['application_name = "\\u0000"'], env={})
@example(lines=["statement_timeout = inf", "migration_lock_timeout = nan"], env={})
@example(lines=['schema = "pg_catalog"'], env={"SQLMIG_STATEMENT_TIMEOUT": "99999999d"})
def test_generated_settings_exit_0_1_or_2_without_traceback(
    server_dsn: str, scratch_dirs: list[Path], lines: list[str], env: dict[str, str]
) -> None:
    project = new_project(scratch_dirs)
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    toml = "\n".join(lines) + "\n"
    (project.root / "sqlmig.toml").write_text(toml, encoding="utf-8")
    print(f"--- sqlmig.toml:\n{toml}--- environment: {env}")
    with fresh_database(server_dsn) as url:
        # The URL comes from the environment, which wins over the file: a generated
        # database_url in the file must never make this run look elsewhere (or start the
        # embedded server).
        result = run(project, "up", env=clean_env(**env, SQLMIG_DATABASE_URL=url), timeout=60)

    assert result.returncode in (0, 1, 2)
    assert_no_traceback(result, usage_ok=True)


# -- generated command lines ------------------------------------------------------------------------

COMMANDS = [
    "up",
    "down",
    "status",
    "validate",
    "history",
    "render",
    "baseline",
    "repair",
    "new",
    "lint",
    "config",
    "check",
    "--help",
    "-h",
    "--version",
    "nonsense",
]
OPTIONS = [
    "--to",
    "--steps",
    "--dry-run",
    "--allow",
    "--json",
    "--exit-code",
    "--limit",
    "--events",
    "--from",
    "--from-database",
    "--mark-applied",
    "--remove",
    "--accept-formatting",
    "--drop-invalid-indexes",
    "--drop-invalid-index",
    "--bump",
    "--version",
    "--format",
    "--schema",
    "--table",
    "--lock-timeout",
    "--root",
    "--password-file",
    "--role",
    "--lock-mode",
    "-v",
    "--verbose",
    "--",
    "-",
    "--no-color",
    "--log-format",
    "--lock-timeout=inf",
    "--to=1.0.0",
    "-x",
]
VALUES = [
    "0",
    "-1",
    "1",
    "2",
    "1.0.0",
    "1.1.0",
    "9.9.9",
    "0.0.0",
    "inf",
    "nan",
    "1e308",
    "-0",
    "",
    " ",
    "up",
    "down",
    "changed",
    "missing",
    "out-of-order",
    "everything",
    "major",
    "json",
    "github",
    "text",
    "transaction",
    "public",
    "Robert'); DROP TABLE x;--",
    "a" * 70,
    "..",
    "/dev/null",
    "%s",
    "\u00e9",
    "\u202e",
    "\t",
    "-",
    ">=1.0.0",
    "^1",
]
TOKEN = st.one_of(
    st.sampled_from(COMMANDS),
    st.sampled_from(OPTIONS),
    st.sampled_from(VALUES),
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8),
)
# Left out: `db` and `verify` (they start the embedded server), `wait` and `backup` (slow by
# design), and a generated --database-url (tested below).
# `new` with --root would write files wherever the generated root points.
UNSAFE = {"db", "verify", "wait", "backup", "--database-url"}


def safe(argv: list[str]) -> bool:
    words = {t.split("=")[0] for t in argv}
    return not (UNSAFE & words or {"new", "--root"} <= words)


@settings(FUZZ, max_examples=12)
@given(argv=st.lists(TOKEN, max_size=6).filter(safe))
@example(argv=["--lock-timeout", "inf", "up"])
@example(argv=["--lock-timeout", "1e12", "up"])
@example(argv=["--lock-timeout", "1e308", "down"])
@example(argv=["render", "up", "--lock-timeout", "inf"])
@example(argv=["--lock-timeout", "inf", "render", "up"])
def test_generated_command_lines_exit_0_1_or_2_without_traceback(
    server_dsn: str, scratch_dirs: list[Path], argv: list[str]
) -> None:
    project = new_project(scratch_dirs)
    project.add(
        1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n", version="1.0.0"
    )
    project.add(
        2, "second", "CREATE TABLE second_table (id int);\n", "DROP TABLE second_table;\n", version="1.1.0"
    )
    with fresh_database(server_dsn) as url:
        result = run(
            project, *argv, env=clean_env(SQLMIG_DATABASE_URL=url), label=" ".join(repr(a) for a in argv)
        )
    assert result.returncode in (0, 1, 2)
    assert_no_traceback(result, usage_ok=True)


@pytest.mark.parametrize(
    ("command", "url"),
    [
        ("up", "postgresql://u:pw@[::1/db"),
        ("status", "postgresql://u:pw@127.0.0.1:notaport/db"),
        ("validate", "postgresql://u@127.0.0.1:1/db?sslmode=bogus"),
        ("history", "postgresql://u@127.0.0.1:1/db?no_such_parameter=1"),
        ("down", "host=127.0.0.1 port=1 dbname='unterminated"),
        ("up", "not a url at all"),
        ("status", "mysql://u@127.0.0.1:1/db"),
    ],
)
def test_a_malformed_database_url_is_invalid_input_with_one_line_and_no_traceback(
    project: Project, command: str, url: str
) -> None:
    # Issue 16: what is wrong with the URL (exit 2), not "cannot connect" (exit 5)
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    result = run(project, "--database-url", url, command, env=clean_env(PGCONNECT_TIMEOUT="2"))
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "sqlmig: the database URL " in result.stderr and " is malformed: " in result.stderr
    assert ":pw@" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [b"new", b"caf\xe9 \xff"],
        [b"new", b"add users\nDROP TABLE users;"],
        [b"new", b"add users\rDROP TABLE users;"],
        [b"--schema", b"\xff", b"status"],
        [b"--role", b"\xff", b"status"],
        [b"up", b"--to", b"\xff"],
        [b"lint", b"migrations/\xff.sql"],
        [b"check", b"--require", b"\xff"],
        [b"\xff"],
    ],
    ids=lambda a: repr(b" ".join(a))[2:-1],
)
def test_arguments_that_are_not_utf8_or_break_a_header_exit_2_and_write_nothing(
    project: Project, database_url: str, argv: list[bytes]
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    before = sorted(p.name for p in (*project.migrations.iterdir(), *project.rollbacks.iterdir()))
    result = run_bytes(project.root, list(argv), clean_env(SQLMIG_DATABASE_URL=database_url))
    assert result.returncode == 2
    assert_no_traceback(result, usage_ok=True)
    after = sorted(p.name for p in (*project.migrations.iterdir(), *project.rollbacks.iterdir()))
    print(f"files before: {before}; after: {after}")
    assert after == before, "a refused `new` leaves no file behind"
