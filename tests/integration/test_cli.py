"""The command line as a deploy pipeline and an operator use it, against a real PostgreSQL.

Every test runs `sqlmig` in a subprocess on a fresh database and checks what a user sees: exit
codes, the lines that matter on stdout/stderr, rows in schema_version and the tables that exist.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlmig
from tests.conftest import Project, query, table_exists

APPLIED_LINE = re.compile(r"^applied (\d{3}_\w+) \((\d+\.\d+\.\d+)\) in \d+ ms$")
ROLLED_BACK_LINE = re.compile(r"^rolled back (\d{3}_\w+) \((\d+\.\d+\.\d+)\) in \d+ ms$")


def three_tables(project: Project) -> None:
    """001 → table a (1.0.0), 002 → table b (1.1.0), 003 → table c (1.2.0)."""
    project.add(1, "create_a", "CREATE TABLE a (id int PRIMARY KEY);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int PRIMARY KEY);\n", "DROP TABLE b;\n", version="1.1.0")
    project.add(3, "create_c", "CREATE TABLE c (id int PRIMARY KEY);\n", "DROP TABLE c;\n", version="1.2.0")


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def versions(url: str) -> list[str]:
    return [v for (v,) in query(url, "SELECT version FROM schema_version ORDER BY number")]


def history_exists(url: str) -> bool:
    return table_exists(url, "public.schema_version")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- up ----------------------------------------------------------------------------------------


def test_up_applies_every_migration_in_order_and_prints_one_line_each(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    result = ok(project.run("up", url=database_url))

    lines = result.stdout.splitlines()
    applied = [APPLIED_LINE.match(line) for line in lines[:3]]
    assert all(applied), result.stdout
    assert [(m[1], m[2]) for m in applied if m] == [
        ("001_create_a", "1.0.0"),
        ("002_create_b", "1.1.0"),
        ("003_create_c", "1.2.0"),
    ]
    assert re.fullmatch(r"at version 1\.2\.0: 3 applied in \d+ ms", lines[3])
    assert len(lines) == 4
    rows = query(
        database_url,
        "SELECT number, version, name, status, baseline, checksum, "
        "applied_by = current_user FROM schema_version ORDER BY applied_at, number",
    )
    assert [r[:5] for r in rows] == [
        (1, "1.0.0", "001_create_a", "applied", False),
        (2, "1.1.0", "002_create_b", "applied", False),
        (3, "1.2.0", "003_create_c", "applied", False),
    ]
    assert rows[0][5] == sha256((project.migrations / "001_create_a.sql").read_text())
    assert all(r[6] for r in rows)
    for table in ("a", "b", "c"):
        assert table_exists(database_url, table)


def test_second_up_reports_already_up_to_date_and_changes_nothing(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    before = query(database_url, "SELECT version, applied_at FROM schema_version ORDER BY number")

    result = ok(project.run("up", url=database_url))

    assert result.stdout.strip() == "already up to date at version 1.2.0"
    assert query(database_url, "SELECT version, applied_at FROM schema_version ORDER BY number") == before


def test_up_to_a_version_stops_at_that_version(project: Project, database_url: str) -> None:
    three_tables(project)
    result = ok(project.run("up", "--to", "1.1.0", url=database_url))

    assert [APPLIED_LINE.match(x)[1] for x in result.stdout.splitlines()[:2]] == [  # type: ignore[index]
        "001_create_a",
        "002_create_b",
    ]
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert table_exists(database_url, "b")
    assert not table_exists(database_url, "c")


def test_up_to_a_migration_number_stops_at_that_number(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "1", url=database_url))
    assert versions(database_url) == ["1.0.0"]

    ok(project.run("up", "--to", "2", url=database_url))
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert not table_exists(database_url, "c")


def test_up_to_an_unknown_version_is_invalid_input(project: Project, database_url: str) -> None:
    three_tables(project)
    result = project.run("up", "--to", "1.5.0", url=database_url)
    assert result.returncode == 2
    assert "no migration has version 1.5.0" in result.stderr
    assert not table_exists(database_url, "a")


def test_up_dry_run_prints_the_sql_and_changes_nothing(project: Project, database_url: str) -> None:
    three_tables(project)
    result = ok(project.run("up", "--dry-run", url=database_url))

    assert "would apply 001_create_a (1.0.0) from migrations/001_create_a.sql" in result.stdout
    assert "would apply 003_create_c (1.2.0) from migrations/003_create_c.sql" in result.stdout
    assert "CREATE TABLE a (id int PRIMARY KEY);" in result.stdout
    assert "CREATE TABLE c (id int PRIMARY KEY);" in result.stdout
    assert "nothing was changed" in result.stdout
    assert not history_exists(database_url)
    assert not table_exists(database_url, "public.schema_version_events")
    assert not table_exists(database_url, "a")


# -- down --------------------------------------------------------------------------------------


def test_down_rolls_back_the_newest_migration_by_default(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    result = ok(project.run("down", url=database_url))

    lines = result.stdout.splitlines()
    match = ROLLED_BACK_LINE.match(lines[0])
    assert match and (match[1], match[2]) == ("003_create_c", "1.2.0"), result.stdout
    assert lines[1] == "at version 1.1.0: 1 rolled back"
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert not table_exists(database_url, "c")
    assert table_exists(database_url, "b")


def test_down_steps_rolls_back_that_many_newest_first(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    result = ok(project.run("down", "--steps", "2", url=database_url))

    names = [m[1] for m in map(ROLLED_BACK_LINE.match, result.stdout.splitlines()) if m]
    assert names == ["003_create_c", "002_create_b"]
    assert versions(database_url) == ["1.0.0"]
    assert not table_exists(database_url, "b")
    assert not table_exists(database_url, "c")
    assert table_exists(database_url, "a")


def test_down_to_a_version_keeps_that_version(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    result = ok(project.run("down", "--to", "1.0.0", url=database_url))

    assert result.stdout.splitlines()[-1] == "at version 1.0.0: 2 rolled back"
    assert versions(database_url) == ["1.0.0"]
    assert table_exists(database_url, "a")
    assert not table_exists(database_url, "b")


def test_down_to_zero_removes_every_migration(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    result = ok(project.run("down", "--to", "0.0.0", url=database_url))

    assert result.stdout.splitlines()[-1] == "at version 0.0.0: 3 rolled back"
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    for table in ("a", "b", "c"):
        assert not table_exists(database_url, table)
    # The history table itself stays: it is the record of what happened.
    assert history_exists(database_url)
    result = ok(project.run("down", url=database_url))
    assert result.stdout.strip() == "nothing to roll back; at version none"


def test_down_refuses_an_irreversible_rollback_and_rolls_back_nothing(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(
        2,
        "drop_legacy",
        "CREATE TABLE legacy (id int);\nDROP TABLE legacy;\n",
        "-- sqlmig: irreversible data is destroyed\n",
        version="2.0.0",
    )
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="2.1.0")
    ok(project.run("up", url=database_url))

    # 003 would be rolled back first, but the plan reaches 002 and refuses before running any.
    result = project.run("down", "--steps", "2", url=database_url)

    assert result.returncode == 2, result.stderr
    assert (
        "sqlmig: rollbacks/002_drop_legacy_rollback.sql: 002_drop_legacy (2.0.0) is "
        "irreversible: data is destroyed"
    ) in result.stderr.splitlines()
    assert "nothing was rolled back" in result.stderr
    assert "rolled back 003" not in result.stdout
    assert versions(database_url) == ["1.0.0", "2.0.0", "2.1.0"]
    assert table_exists(database_url, "c")


def test_down_runs_the_rollback_stored_at_apply_time_when_the_file_was_edited(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    (project.rollbacks / "003_create_c_rollback.sql").write_text(
        "CREATE TABLE edited_rollback_ran (id int);\n"
    )

    result = ok(project.run("down", url=database_url))

    assert (
        "rollbacks/003_create_c_rollback.sql: warning: differs from the rollback stored when "
        "003_create_c was applied; running the stored one"
    ) in result.stderr
    assert not table_exists(database_url, "c")
    assert not table_exists(database_url, "edited_rollback_ran")
    assert versions(database_url) == ["1.0.0", "1.1.0"]


def test_down_works_from_an_older_checkout_without_the_newer_files(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    (project.migrations / "003_create_c.sql").unlink()
    (project.rollbacks / "003_create_c_rollback.sql").unlink()

    result = ok(project.run("down", url=database_url))

    assert "rolled back 003_create_c (1.2.0) in " in result.stdout
    assert not table_exists(database_url, "c")
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    # And the checkout is consistent again.
    ok(project.run("validate", url=database_url))


def test_down_dry_run_prints_the_rollback_sql_and_changes_nothing(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    result = ok(project.run("down", "--steps", "2", "--dry-run", url=database_url))

    lines = result.stdout.splitlines()
    assert "would roll back 003_create_c (1.2.0) from rollbacks/003_create_c_rollback.sql" in lines
    assert "would roll back 002_create_b (1.1.0) from rollbacks/002_create_b_rollback.sql" in lines
    assert "DROP TABLE c;" in lines and "DROP TABLE b;" in lines
    assert lines[-1] == "dry run: 2 step(s), 1.2.0 -> 1.0.0; nothing was changed"
    assert versions(database_url) == ["1.0.0", "1.1.0", "1.2.0"]
    assert table_exists(database_url, "c")


# -- status and history ------------------------------------------------------------------------


def test_status_shows_current_version_and_pending_migrations(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "1.0.0", url=database_url))

    lines = ok(project.run("status", url=database_url)).stdout.splitlines()

    assert "current version: 1.0.0" in lines
    assert "applied:         1" in lines
    assert "pending:         2" in lines
    # applied and pending together, in order
    assert [line.split()[:3] for line in lines if line.startswith("  0")] == [
        ["001_create_a", "(1.0.0)", "applied"],
        ["002_create_b", "(1.1.0)", "pending"],
        ["003_create_c", "(1.2.0)", "pending"],
    ]
    assert "history table:   public.schema_version" in lines


def test_status_json_gives_current_version_and_pending_list(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "1.0.0", url=database_url))

    data = json.loads(ok(project.run("status", "--json", url=database_url)).stdout)

    assert data["current_version"] == "1.0.0"
    assert [(p["name"], p["version"], p["path"]) for p in data["pending"]] == [
        ("002_create_b", "1.1.0", "migrations/002_create_b.sql"),
        ("003_create_c", "1.2.0", "migrations/003_create_c.sql"),
    ]
    assert [a["version"] for a in data["applied"]] == ["1.0.0"]
    assert data["problems"] == []


def test_status_json_on_a_fresh_database_has_no_version(project: Project, database_url: str) -> None:
    three_tables(project)
    data = json.loads(ok(project.run("status", "--json", url=database_url)).stdout)
    assert data["current_version"] is None
    assert len(data["pending"]) == 3
    assert not history_exists(database_url)  # status only reads


def test_status_exit_code_is_1_with_pending_and_0_without(project: Project, database_url: str) -> None:
    three_tables(project)
    assert project.run("status", "--exit-code", url=database_url).returncode == 1
    ok(project.run("up", "--to", "1.1.0", url=database_url))
    assert project.run("status", "--exit-code", url=database_url).returncode == 1
    ok(project.run("up", url=database_url))
    assert project.run("status", "--exit-code", url=database_url).returncode == 0


def test_history_limit_shows_the_newest_first(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    lines = ok(project.run("history", "--limit", "2", url=database_url)).stdout.splitlines()

    assert len(lines) == 3
    assert lines[0].split() == ["VERSION", "MIGRATION", "STATUS", "APPLIED", "AT", "TOOK", "BY"]
    assert lines[1].split()[:3] == ["1.2.0", "003_create_c", "applied"]
    assert lines[2].split()[:3] == ["1.1.0", "002_create_b", "applied"]


def test_history_json_lists_the_rows(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))

    rows = json.loads(ok(project.run("history", "--json", url=database_url)).stdout)

    assert [(r["version"], r["number"], r["name"], r["status"]) for r in rows] == [
        ("1.2.0", 3, "003_create_c", "applied"),
        ("1.1.0", 2, "002_create_b", "applied"),
        ("1.0.0", 1, "001_create_a", "applied"),
    ]
    first = rows[-1]
    assert first["checksum"] == sha256((project.migrations / "001_create_a.sql").read_text())
    assert first["baseline"] is False
    assert first["execution_ms"] >= 0
    assert first["sqlmig_version"] == sqlmig.__version__
    assert first["transactional"] is True
    assert first["applied_by"]
    assert first["applied_at"]
    assert "rollback_sql" not in first
    limited = json.loads(ok(project.run("history", "--json", "--limit", "1", url=database_url)).stdout)
    assert [r["version"] for r in limited] == ["1.2.0"]


def test_history_events_lists_up_and_down_events(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    ok(project.run("down", url=database_url))

    lines = ok(project.run("history", "--events", url=database_url)).stdout.splitlines()

    # Newest first: the down of 003, then the ups of 003, 002, 001.
    assert len(lines) == 4
    assert " down 003_create_c (1.2.0) reverted " in lines[0]
    assert " up 003_create_c (1.2.0) applied " in lines[1]
    assert " up 001_create_a (1.0.0) applied " in lines[3]
    events = json.loads(ok(project.run("history", "--events", "--json", url=database_url)).stdout)
    assert [(e["action"], e["version"], e["outcome"]) for e in events] == [
        ("down", "1.2.0", "reverted"),
        ("up", "1.2.0", "applied"),
        ("up", "1.1.0", "applied"),
        ("up", "1.0.0", "applied"),
    ]
    assert all(e["actor"] for e in events)


def test_history_on_a_fresh_database_says_nothing_applied(project: Project, database_url: str) -> None:
    three_tables(project)
    assert ok(project.run("history", url=database_url)).stdout.strip() == "no migrations applied"


# -- validate and drift ------------------------------------------------------------------------


def test_validate_passes_when_files_and_history_agree(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "2", url=database_url))
    result = ok(project.run("validate", url=database_url))
    assert result.stdout.strip() == "ok: files and history agree"


def test_validate_fails_with_6_when_an_applied_file_was_edited(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    path = project.migrations / "002_create_b.sql"
    path.write_text(path.read_text() + "CREATE INDEX ON b (id);\n")

    result = project.run("validate", url=database_url)

    assert result.returncode == 6
    assert "migrations/002_create_b.sql: error: was edited after it was applied" in result.stdout
    assert "001_create_a" not in result.stdout and "003_create_c" not in result.stdout
    as_json = project.run("validate", "--json", url=database_url)
    assert as_json.returncode == 6
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    assert [(p["path"], p["code"]) for p in data["problems"]] == [("migrations/002_create_b.sql", "changed")]


def test_a_checkout_with_crlf_line_ends_and_a_bom_is_not_an_edit(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    for path in project.migrations.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))

    assert ok(project.run("validate", url=database_url)).stdout.strip() == ("ok: files and history agree")
    assert ok(project.run("up", url=database_url)).stdout.strip() == ("already up to date at version 1.2.0")


def test_validate_allow_changed_passes_with_a_warning(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    path = project.migrations / "002_create_b.sql"
    path.write_text(path.read_text() + "CREATE INDEX ON b (id);\n")

    result = ok(project.run("validate", "--allow", "changed", url=database_url))

    assert "migrations/002_create_b.sql: warning: was edited after it was applied" in result.stderr
    assert "ok: files and history agree" in result.stdout


def test_validate_fails_with_6_when_an_applied_migration_is_missing_on_disk(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", url=database_url))
    (project.migrations / "002_create_b.sql").unlink()
    (project.rollbacks / "002_create_b_rollback.sql").unlink()

    result = project.run("validate", url=database_url)

    assert result.returncode == 6
    assert "applied migration 002_create_b (1.1.0) has no file in migrations/" in result.stdout
    assert ok(project.run("validate", "--allow", "missing", url=database_url))


def test_validate_fails_with_6_for_a_pending_migration_below_the_newest_applied(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")
    ok(project.run("up", url=database_url))
    # A branch merged later brings 002, numbered below the newest applied one.
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = project.run("validate", url=database_url)

    assert result.returncode == 6
    assert (
        "migrations/002_create_b.sql: error: pending, but numbered below the newest applied migration (3)"
    ) in result.stdout


def test_up_refuses_an_edited_applied_file_with_6_and_applies_nothing(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "2", url=database_url))
    path = project.migrations / "001_create_a.sql"
    path.write_text(path.read_text() + "CREATE INDEX ON a (id);\n")

    result = project.run("up", url=database_url)

    assert result.returncode == 6
    assert "migrations/001_create_a.sql: error: was edited after it was applied" in result.stderr
    assert "nothing was run" in result.stderr
    assert versions(database_url) == ["1.0.0", "1.1.0"]
    assert not table_exists(database_url, "c")


def test_up_allow_changed_applies_the_rest_with_a_warning(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "2", url=database_url))
    path = project.migrations / "001_create_a.sql"
    path.write_text(path.read_text() + "CREATE INDEX ON a (id);\n")

    result = ok(project.run("up", "--allow", "changed", url=database_url))

    assert "migrations/001_create_a.sql: warning: was edited after it was applied" in result.stderr
    assert "applied 003_create_c (1.2.0)" in result.stdout
    assert versions(database_url) == ["1.0.0", "1.1.0", "1.2.0"]


def test_up_refuses_an_applied_migration_missing_on_disk(project: Project, database_url: str) -> None:
    three_tables(project)
    ok(project.run("up", "--to", "2", url=database_url))
    (project.migrations / "002_create_b.sql").unlink()
    (project.rollbacks / "002_create_b_rollback.sql").unlink()

    result = project.run("up", url=database_url)

    assert result.returncode == 6
    assert "applied migration 002_create_b (1.1.0) has no file in migrations/" in result.stderr
    assert not table_exists(database_url, "c")
    ok(project.run("up", "--allow", "missing", url=database_url))
    assert versions(database_url) == ["1.0.0", "1.1.0", "1.2.0"]


def test_up_refuses_an_out_of_order_migration_unless_allowed(project: Project, database_url: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")
    ok(project.run("up", url=database_url))
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = project.run("up", url=database_url)

    assert result.returncode == 6
    assert "migrations/002_create_b.sql: error: pending, but numbered below" in result.stderr
    assert not table_exists(database_url, "b")

    result = ok(project.run("up", "--allow", "out-of-order", url=database_url))
    assert "applied 002_create_b (1.1.0)" in result.stdout
    assert table_exists(database_url, "b")
    assert sorted(versions(database_url)) == ["1.0.0", "1.1.0", "1.2.0"]


# -- baseline and adopting a hand-written history table ----------------------------------------


def test_baseline_records_existing_migrations_without_running_them(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    # The schema of 001 and 002 already exists, created before sqlmig was used.
    query(database_url, "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")

    result = ok(project.run("baseline", "1.1.0", url=database_url))

    assert "recorded 001_create_a (1.0.0) as applied (baseline, not run)" in result.stdout
    assert "recorded 002_create_b (1.1.0) as applied (baseline, not run)" in result.stdout
    assert query(
        database_url, "SELECT version, number, baseline, status FROM schema_version ORDER BY number"
    ) == [("1.0.0", 1, True, "applied"), ("1.1.0", 2, True, "applied")]
    history = ok(project.run("history", url=database_url)).stdout.splitlines()
    assert all(line.endswith(" baseline") for line in history[1:]), history

    result = ok(project.run("up", url=database_url))  # would fail if it ran 001 or 002

    assert [m[1] for m in map(APPLIED_LINE.match, result.stdout.splitlines()) if m] == ["003_create_c"]
    assert query(database_url, "SELECT version, baseline FROM schema_version ORDER BY number") == [
        ("1.0.0", True),
        ("1.1.0", True),
        ("1.2.0", False),
    ]
    events = json.loads(ok(project.run("history", "--events", "--json", url=database_url)).stdout)
    assert [(e["action"], e["version"]) for e in reversed(events)] == [
        ("baseline", "1.0.0"),
        ("baseline", "1.1.0"),
        ("up", "1.2.0"),
    ]


def test_baseline_of_an_unknown_version_is_invalid_input(project: Project, database_url: str) -> None:
    three_tables(project)
    result = project.run("baseline", "1.7.0", url=database_url)
    assert result.returncode == 2
    assert "no migration has version 1.7.0" in result.stderr
    assert not history_exists(database_url)


def test_a_hand_written_history_table_is_adopted_and_upgraded_in_place(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    query(
        database_url,
        """
        CREATE TABLE schema_version (version VARCHAR(50) PRIMARY KEY,
                                     applied_at TIMESTAMP DEFAULT now(), description TEXT);
        INSERT INTO schema_version VALUES ('1.0.0', '2021-03-04 05:06:07', 'by hand: table a'),
                                          ('1.1.0', '2022-01-02 03:04:05', 'by hand: table b');
        CREATE TABLE a (id int PRIMARY KEY);
        CREATE TABLE b (id int PRIMARY KEY);
    """,
    )
    oid = query(database_url, "SELECT 'schema_version'::regclass::oid")[0][0]

    result = ok(project.run("up", url=database_url))

    assert [m[1] for m in map(APPLIED_LINE.match, result.stdout.splitlines()) if m] == ["003_create_c"]
    assert table_exists(database_url, "c")
    assert query(database_url, "SELECT 'schema_version'::regclass::oid")[0][0] == oid
    rows = query(
        database_url,
        """
        SELECT version, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS'), description, number, name,
               checksum, status
          FROM schema_version ORDER BY version""",
    )
    assert rows[0][:5] == ("1.0.0", "2021-03-04 05:06:07", "by hand: table a", 1, "001_create_a")
    assert rows[1][:5] == ("1.1.0", "2022-01-02 03:04:05", "by hand: table b", 2, "002_create_b")
    assert rows[0][5] == sha256((project.migrations / "001_create_a.sql").read_text())
    assert rows[1][5] == sha256((project.migrations / "002_create_b.sql").read_text())
    assert rows[2][:2] == ("1.2.0", rows[2][1]) and rows[2][3:5] == (3, "003_create_c")
    assert [r[6] for r in rows] == ["applied"] * 3
    columns = {
        c
        for (c,) in query(
            database_url,
            """
        SELECT column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'schema_version'""",
        )
    }
    assert {
        "version",
        "applied_at",
        "description",
        "number",
        "name",
        "checksum",
        "rollback_checksum",
        "applied_by",
        "execution_ms",
        "status",
        "baseline",
    } <= columns
    ok(project.run("validate", url=database_url))
    # The adopted rows can be rolled back like any other: their rollback text was stored.
    ok(project.run("down", "--to", "0", url=database_url))
    assert not table_exists(database_url, "a")


# -- new ---------------------------------------------------------------------------------------


def test_new_creates_the_next_migration_and_its_rollback_with_a_minor_bump(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = ok(project.run("new", "add user phone"))

    assert result.stdout.splitlines() == [
        "created migrations/003_add_user_phone.sql (version 1.2.0)",
        "created rollbacks/003_add_user_phone_rollback.sql",
    ]
    text = (project.migrations / "003_add_user_phone.sql").read_text()
    assert "-- Version: 1.2.0\n" in text
    assert "-- Description: add user phone\n" in text
    assert (project.rollbacks / "003_add_user_phone_rollback.sql").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--bump", "major"), "2.0.0"),
        (("--bump", "minor"), "1.2.0"),
        (("--bump", "patch"), "1.1.1"),
        (("--version", "3.0.0"), "3.0.0"),
    ],
)
def test_new_takes_the_version_bump_or_an_explicit_version(
    project: Project, args: tuple[str, ...], expected: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = ok(project.run("new", "Add User Phone!", *args))

    assert result.stdout.splitlines()[0] == (
        f"created migrations/003_add_user_phone.sql (version {expected})"
    )
    assert f"-- Version: {expected}\n" in (project.migrations / "003_add_user_phone.sql").read_text()


def test_new_in_an_empty_project_starts_at_001_and_1_0_0(project: Project) -> None:
    result = ok(project.run("new", "initial schema"))
    assert result.stdout.splitlines()[0] == ("created migrations/001_initial_schema.sql (version 1.0.0)")


@pytest.mark.parametrize("version", ["1.1.0", "1.0.5", "not-a-version"])
def test_new_refuses_a_version_not_above_the_last_one(project: Project, version: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")

    result = project.run("new", "add user phone", "--version", version)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not (project.migrations / "003_add_user_phone.sql").exists()
    assert not (project.rollbacks / "003_add_user_phone_rollback.sql").exists()


def test_a_migration_made_by_new_applies_and_rolls_back(project: Project, database_url: str) -> None:
    ok(project.run("new", "add user phone"))
    (project.migrations / "001_add_user_phone.sql").write_text(
        (project.migrations / "001_add_user_phone.sql").read_text() + "CREATE TABLE phones (number text);\n"
    )
    (project.rollbacks / "001_add_user_phone_rollback.sql").write_text(
        (project.rollbacks / "001_add_user_phone_rollback.sql").read_text() + "DROP TABLE phones;\n"
    )

    assert "applied 001_add_user_phone (1.0.0)" in ok(project.run("up", url=database_url)).stdout
    assert query(database_url, "SELECT description FROM schema_version") == [("add user phone",)]
    ok(project.run("down", url=database_url))
    assert not table_exists(database_url, "phones")


# -- the session each migration runs in --------------------------------------------------------


@pytest.mark.parametrize("plpgsql", ["installed", "dropped"])
def test_each_migration_runs_with_the_databases_settings_and_sets_do_not_leak(
    project: Project, database_url: str, plpgsql: str
) -> None:
    # As with one `psql -1 -f` per file: the DBA's ALTER DATABASE … SET applies to every file
    # (also the first one, run right after taking the lock), and a SET in one file ends with it.
    # sqlmig's own lock_timeout for migrations (default 5s) would override the DBA's: `inherit`
    # keeps the database's (see test_deploy.py for the default). The session is reset by one DO
    # block, or statement by statement where a DBA removed PL/pgSQL.
    if plpgsql == "dropped":
        query(database_url, "DROP EXTENSION plpgsql")
    dbname = query(database_url, "SELECT current_database()")[0][0]
    query(database_url, f"ALTER DATABASE \"{dbname}\" SET lock_timeout = '1234ms'")
    query(database_url, "CREATE SCHEMA elsewhere")
    seen = (
        "CREATE TABLE seen_{n} AS SELECT current_setting('lock_timeout') AS lock_timeout, "
        "current_setting('search_path') AS search_path;\n"
    )
    project.add(1, "first", "SET search_path TO elsewhere;\n" + seen.format(n=1), "", version="1.0.0")
    project.add(2, "second", seen.format(n=2), "", version="1.1.0")

    ok(project.run("up", "--migration-lock-timeout", "inherit", url=database_url))

    assert query(database_url, "SELECT lock_timeout FROM elsewhere.seen_1") == [("1234ms",)]
    assert query(database_url, "SELECT lock_timeout, search_path FROM public.seen_2") == [
        ("1234ms", '"$user", public')
    ]


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_password_in_the_database_url_never_appears_in_output(
    project: Project, database_url: str, form: str
) -> None:
    params = conninfo_to_dict(database_url)
    # A server that checks passwords (SQLMIG_TEST_DSN) needs the real one; the embedded server
    # trusts its socket and ignores whatever is given.
    secret = str(params.get("password") or "s3cret-pw")
    if form == "keywords":
        url = make_conninfo(database_url, password=secret)
    else:
        from urllib.parse import quote

        params.pop("password", None)
        host = params.pop("host", "localhost")
        port = params.pop("port", "5432")
        url = (
            f"postgresql://{params['user']}:{quote(secret, safe='')}@/{params['dbname']}"
            f"?host={host}&port={port}"
        )
    three_tables(project)
    project.add(4, "broken", "SELECT 1/0;\n", "", version="1.3.0")

    results = [
        project.run(*args, url=url)
        for args in (("up",), ("status",), ("status", "--json"), ("history", "--events"), ("validate",))
    ]

    assert [r.returncode for r in results] == [3, 0, 0, 0, 0], results[0].stderr
    assert versions(database_url) == ["1.0.0", "1.1.0", "1.2.0"]
    for result in results:
        assert secret not in result.stdout + result.stderr
    assert "database:" in results[1].stdout
    assert secret not in str(query(database_url, "SELECT * FROM schema_version_events"))


def test_global_options_work_after_the_command_and_lock_timeout_takes_durations(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")

    result = project.run(
        "up", "--database-url", database_url, "--lock-timeout", "5s", "--table", "my_history"
    )

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT version FROM my_history") == [("1.1.0",)]
    bad = project.run("status", "--database-url", database_url, "--lock-timeout", "5x")
    assert bad.returncode == 2
    assert "--lock-timeout: '5x': unknown unit 'x'" in bad.stderr


def test_current_prints_the_version_alone_for_scripts(project: Project, database_url: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    assert project.run("current", url=database_url).stdout == "none\n"
    ok(project.run("up", url=database_url))

    result = project.run("current", url=database_url)

    assert (result.returncode, result.stdout, result.stderr) == (0, "1.1.0\n", "")


def test_quiet_prints_only_the_summary_line_warnings_and_errors(project: Project, database_url: str) -> None:
    three_tables(project)

    result = project.run("up", "-q", url=database_url)

    assert (result.returncode, result.stdout, result.stderr) == (0, result.stdout.splitlines()[-1] + "\n", "")
    assert result.stdout.startswith("at version 1.2.0: 3 applied in ")
    failed = project.run("-q", "down", "--to", "nope", url=database_url)
    assert failed.returncode == 2 and "sqlmig: --to 'nope': expected a version" in failed.stderr
