"""`sqlmig init` sets up a project of one's own, whose migrate.sh installs sqlmig (here a wheel
built from this checkout) into a clean virtualenv and runs it: new, up, status against the
embedded default, as a newcomer would, outside this repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SQLMIG


def clean_env() -> dict[str, str]:
    drop = {
        "DATABASE_URL",
        "SQLMIG_DATABASE_URL",
        "PYTHONPATH",
        "SQLMIG_VENV",
        "VIRTUAL_ENV",
        "PGHOST",
        "PGDATABASE",
        "PGSERVICE",
        "PGPORT",
        "PGUSER",
    }
    return {k: v for k, v in os.environ.items() if k not in drop}


def sh(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=clean_env(), text=True, capture_output=True, timeout=timeout)
    print(f"$ {' '.join(map(str, args))} -> {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def test_init_then_the_projects_own_migrate_sh_runs_new_up_and_status(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = sh(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
        ],
        tmp_path,
    )
    assert built.returncode == 0
    [wheel] = wheels.glob("sqlmig-*.whl")
    app = tmp_path / "app"

    init = sh([*SQLMIG, "init", "app", "--requirement", str(wheel)], tmp_path)

    assert init.returncode == 0
    assert init.stdout.splitlines() == [
        "created migrations/",
        "created rollbacks/",
        "created sqlmig.toml",
        "created migrate.sh",
        "created .gitignore",
        "next:",
        '  cd app && ./migrate.sh new "create users"   # the first migration and its rollback',
        "  ./migrate.sh up       # apply it (the embedded PostgreSQL when no database is set)",
        "  ./migrate.sh status   # where the database is",
    ]
    assert (app / ".gitignore").read_text().splitlines()[-1] == ".sqlmig/"
    assert f'SQLMIG_REQUIREMENT="${{SQLMIG_REQUIREMENT:-{wheel}}}"' in (app / "migrate.sh").read_text()
    try:
        new = sh(["./migrate.sh", "new", "create users"], app)
        assert new.returncode == 0
        assert new.stdout == (
            "created migrations/001_create_users.sql (version 1.0.0)\n"
            "created rollbacks/001_create_users_rollback.sql\n"
        )
        with (app / "migrations/001_create_users.sql").open("a") as f:
            f.write("CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n")
        with (app / "rollbacks/001_create_users_rollback.sql").open("a") as f:
            f.write("DROP TABLE users;\n")
        # sqlmig runs from the project's own virtualenv, not from this checkout
        where = sh([str(app / ".sqlmig/venv/bin/python"), "-c", "import sqlmig; print(sqlmig.__file__)"], app)
        assert where.stdout.startswith(str(app / ".sqlmig/venv/"))

        up = sh(["./migrate.sh", "up"], app)
        assert up.returncode == 0
        assert "applied 001_create_users (1.0.0)" in up.stdout
        assert "./migrate.sh db stop" in up.stderr  # the notice names the command the user ran
        status = sh(["./migrate.sh", "status"], app)
        assert "current version: 1.0.0" in status.stdout
        assert sh(["./migrate.sh", "lint"], app).returncode == 0

        # Run again: nothing is overwritten.
        again = sh([*SQLMIG, "init", "app", "--requirement", "sqlmig==9.9.9"], tmp_path)
        assert again.returncode == 0
        assert "kept    migrate.sh (there already)" in again.stdout
        assert str(wheel) in (app / "migrate.sh").read_text()
    finally:
        sh(["./migrate.sh", "db", "stop"], app, timeout=120)
