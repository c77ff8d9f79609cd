"""Statements of any size apply, with the engine's real constants (nothing patched).

A transactional file of one 5 MB statement used to hang forever holding the lock: psycopg's
pipeline can stall in its sync after one long query. Here `sqlmig up` runs as a deploy runs it
(a subprocess, the real batch and sync sizes) on single statements of 1, 5, 20 and 100 MB and on
a 50 MB file of many statements; each must finish, apply all of it, and stay within memory.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SQLMIG, Project, query

MB = 1 << 20


def peak_rss_mb(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run argv; its exit, output and peak resident memory (VmHWM, read until it exits)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    began, hwm = time.monotonic(), 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = max(
                [hwm, *(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))]
            )
        except (OSError, ValueError):
            pass
        if time.monotonic() - began > timeout:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{argv[-1]} still running after {timeout:g} s (hung):\n{out}\n{err}")
        time.sleep(0.01)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), hwm // 1024


def up(project: Project, url: str, timeout: float = 240) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    env["SQLMIG_DATABASE_URL"] = url
    result, peak = peak_rss_mb([*SQLMIG, "up"], project.root, env, timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout, peak


@pytest.mark.parametrize("size_mb", [1, 5, 20, 100])
def test_one_statement_of_any_size_applies_and_does_not_hang(
    project: Project, database_url: str, size_mb: int
) -> None:
    with open(project.migrations / "001_big.sql", "w") as f:
        f.write("-- Version: 1.0.0\nCREATE TABLE big (t text);\n")
        f.write("INSERT INTO big VALUES ('" + "x" * (size_mb * MB) + "');\n")
    (project.rollbacks / "001_big_rollback.sql").write_text("DROP TABLE big;\n")

    out, peak = up(project, database_url)

    print(f"{size_mb} MB statement: applied, peak RSS {peak} MB")
    assert "applied 001_big (1.0.0)" in out
    assert query(database_url, "SELECT length(t) FROM big") == [(size_mb * MB,)]
    assert query(database_url, "SELECT status FROM schema_version") == [("applied",)]


def test_a_50_mb_file_of_many_statements_applies_within_three_times_its_size(
    project: Project, database_url: str
) -> None:
    line = "INSERT INTO big VALUES ('" + "y" * 1000 + "');\n"
    count = 50 * MB // len(line)
    with open(project.migrations / "001_load.sql", "w") as f:
        f.write("-- Version: 1.0.0\nCREATE TABLE big (t text);\n")
        f.write(line * count)
    (project.rollbacks / "001_load_rollback.sql").write_text("DROP TABLE big;\n")

    _out, peak = up(project, database_url)

    print(f"50 MB file, {count} statements: applied, peak RSS {peak} MB")
    assert query(database_url, "SELECT count(*) FROM big") == [(count,)]
    assert peak < 150, "the benchmark's bound: peak RSS under 3x the file"


def test_a_failure_after_a_big_statement_rolls_back_all_of_it_and_names_its_line(
    project: Project, database_url: str
) -> None:
    with open(project.migrations / "001_big.sql", "w") as f:
        f.write("-- Version: 1.0.0\nCREATE TABLE big (t text);\n")
        f.write("INSERT INTO big VALUES ('" + "x" * (5 * MB) + "');\n")
        f.write("INSERT INTO big VALUES ('small');\nINSERT INTO nowhere VALUES (1);\n")
    (project.rollbacks / "001_big_rollback.sql").write_text("DROP TABLE big;\n")

    result = project.run("up", url=database_url, timeout=120)

    assert result.returncode == 3, result.stderr
    assert "migrations/001_big.sql:5:13" in result.stderr
    assert query(database_url, "SELECT to_regclass('big') IS NULL") == [(True,)]
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
