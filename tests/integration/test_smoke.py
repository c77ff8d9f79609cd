from __future__ import annotations

from tests.conftest import Project, query, table_exists


def test_example_project_applies_and_rolls_back_completely(example_project: Project,
                                                            database_url: str) -> None:
    result = example_project.run("up", url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT version FROM schema_version ORDER BY number") == [
        ("1.0.0",), ("1.1.0",), ("1.2.0",), ("1.2.1",), ("2.0.0",)]
    assert "applied 001_initial_schema (1.0.0) in " in result.stdout
    result = example_project.run("down", "--to", "0.0.0", url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    for table in ("users", "user_identities", "audit_events"):
        assert not table_exists(database_url, table)
