"""The checks the project keeps with its own tools, run with the suite so that CI holds them:
ruff (lint) over the code, the tests and the bench, and mypy over sqlmig/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


def test_ruff_finds_nothing(tmp_path: Path) -> None:
    result = run("ruff", "check", "--no-cache", "sqlmig", "tests", "bench", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_library(tmp_path: Path) -> None:
    result = run("mypy", "sqlmig", "--cache-dir", str(tmp_path / "mypy"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted(tmp_path: Path) -> None:
    result = run("ruff", "format", "--check", "--no-cache", "sqlmig", "tests", "bench", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_hold(tmp_path: Path) -> None:
    """The contracts of pyproject.toml ([tool.importlinter]): each layer of docs/architecture.md
    imports only from itself and below (so no cycle between them), and only sqlmig.cli imports
    click."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout
