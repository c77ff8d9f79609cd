from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import Project, query, table_exists


def test_example_project_applies_and_rolls_back_completely(
    example_project: Project, database_url: str
) -> None:
    result = example_project.run("up", url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT version FROM schema_version ORDER BY number") == [
        ("1.0.0",),
        ("1.1.0",),
        ("1.2.0",),
        ("1.2.1",),
        ("2.0.0",),
    ]
    assert "applied 001_initial_schema (1.0.0) in " in result.stdout
    result = example_project.run("down", "--to", "0.0.0", url=database_url)
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    for table in ("users", "user_identities", "audit_events"):
        assert not table_exists(database_url, table)


def test_no_op_up_and_status_import_only_what_they_need(example_project: Project, database_url: str) -> None:
    """Issue 6: a no-op `up` and `status` have 0.20 s in all, interpreter start included, so
    they must not load the parser, the linter, verify, the embedded server or the records of
    other commands (each costs milliseconds at import)."""
    assert example_project.run("up", url=database_url).returncode == 0
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: open('modules.txt', 'w').write(' '.join(sys.modules)))\n"
        "from sqlmig.cli.main import main\n"
        "main()\n"
    )
    for command in ("up", "status"):
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        result = subprocess.run(
            [sys.executable, "-c", code, command],
            cwd=example_project.root,
            env={**env, "SQLMIG_DATABASE_URL": database_url},
            text=True,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        loaded = set((example_project.root / "modules.txt").read_text().split())
        assert {"up": "sqlmig.engine.apply", "status": "sqlmig.engine.inspect"}[command] in loaded
        assert not loaded & {
            "pglast",
            "pydantic",
            "sqlmig.reports",
            "sqlmig.checks.lint",
            "sqlmig.checks.verify",
            "sqlmig.db.embedded",
            "sqlmig.cli.tools",
            "sqlmig.psql.render",
            "sqlmig.schemas",
            "sqlmig.authoring.new",
        }, command
