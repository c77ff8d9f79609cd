"""The benchmark script runs end to end (tiny sizes), so it cannot rot between releases."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_bench_quick_prints_a_table_with_ratios_to_the_floor() -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    print(result.stdout)
    print(result.stderr[-3000:])
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| workload | wall s (median of 1) | peak RSS MB | vs floor |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert "sqlmig up, apply 30" in rows
    assert rows["sqlmig up, apply 30"].rstrip(" |").endswith("x")  # a ratio to the floor
    assert any(name.startswith("sqlmig up, no-op") for name in rows)
