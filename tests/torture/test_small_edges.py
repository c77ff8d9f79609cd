"""The small edges a new or hostile user finds first: each a clear error (or a warning) with its
exit code, never a traceback, never something created or half-applied."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import SQLMIG, Project, query, table_exists
from tests.integration.test_render import psql, render
from tests.torture.helpers import assert_no_traceback, run


def test_a_history_table_name_over_53_characters_is_refused_with_the_reason(
    project: Project, database_url: str
) -> None:
    result = run(project, "--table", "t" * 54, "status", url=database_url)
    fits = run(project, "--table", "t" * 53, "up", url=database_url)

    assert result.returncode == 2
    assert "is 54 characters: at most 53" in result.stderr
    assert "63-byte names" in result.stderr
    assert fits.returncode == 0
    assert table_exists(database_url, "t" * 53 + "_events")


def test_a_migration_number_beyond_bigint_is_a_file_problem_before_anything_runs(
    project: Project, database_url: str
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    project.add("99999999999999999999", "huge", "SELECT 1;\n", "SELECT 1;\n", version="2.0.0")

    result = run(project, "up", url=database_url)

    assert result.returncode == 2
    assert (
        "migrations/99999999999999999999_huge.sql: error: the number is too large: at most "
        "9223372036854775807"
    ) in result.stderr
    assert not table_exists(database_url, "first_table"), "nothing ran"


def test_new_with_a_300_character_description_is_a_clear_error(project: Project) -> None:
    result = run(project, "new", "a" * 300)

    assert result.returncode == 2
    assert_no_traceback(result)
    assert "slug of 300 characters: at most 100" in result.stderr
    assert list(project.migrations.iterdir()) == []


def test_a_root_that_does_not_exist_is_an_error_and_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    result = subprocess.run(
        [*SQLMIG, "--root", str(missing), "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert f"--root: {missing} is not a directory" in result.stderr
    assert not missing.exists()


def test_a_directory_without_migrations_gets_no_server_and_no_sqlmig_dir(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL") and not k.startswith("PG")
    }
    for command in (["status"], ["up"], ["history"], ["repair"], ["backup"]):
        result = subprocess.run(
            [*SQLMIG, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, (command, result.stderr)
        assert f"{tmp_path}/migrations" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [], command


def test_a_file_name_with_control_characters_is_printed_escaped(project: Project, database_url: str) -> None:
    (project.migrations / "001_a\x1b[31mred.sql").write_text("-- Version: 1.0.0\nSELECT 1;\n")

    result = run(project, "validate", url=database_url)

    assert result.returncode == 2
    assert "\x1b" not in result.stdout + result.stderr
    assert "migrations/001_a\\x1b[31mred.sql: error: file name does not match" in result.stderr


def test_a_hidden_migration_file_is_reported_not_silently_skipped(
    project: Project, database_url: str
) -> None:
    project.add(1, "first", "SELECT 1;\n", "SELECT 1;\n")
    (project.migrations / ".002_x.sql").write_text("-- Version: 1.2.0\nSELECT 1;\n")

    result = run(project, "status", url=database_url)

    assert result.returncode == 0
    assert (
        "migrations/.002_x.sql: warning: hidden file (its name starts with `.`): not read"
        in result.stdout + result.stderr
    )


def test_an_empty_database_url_in_the_config_file_is_an_error(project: Project) -> None:
    (project.root / "sqlmig.toml").write_text('database_url = ""\n')

    result = run(project, "status")

    assert result.returncode == 2
    assert "sqlmig.toml: database_url: empty: give a connection URL" in result.stderr
    assert not (project.root / ".sqlmig").exists(), "no embedded server was started instead"


def test_the_rendered_script_records_the_psql_sessions_client_not_the_renderers_host(
    project: Project, database_url: str
) -> None:
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    script = render(project, "up")

    result = psql(database_url, script)

    assert result.returncode == 0, result.stderr
    assert os.uname().nodename not in script
    hosts = query(database_url, "SELECT DISTINCT client_host FROM schema_version_events")
    expected = query(database_url, "SELECT coalesce(host(inet_client_addr()), 'local socket')")
    assert hosts == expected
