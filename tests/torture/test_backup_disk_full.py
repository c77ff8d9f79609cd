"""A backup is proven before it is trusted: a disk that fills up on pg_dump's last write.

pg_dump exits 0 when its last write fails with ENOSPC: the archive is truncated, and sqlmig used
to rename it to `*.dump`, log `backup ok` and migrate. Here sqlmig runs in a mount namespace of
its own (`unshare`) where the backup directory is a tmpfs one page smaller than the same dump
on a twin database, so the real pg_dump fills the disk on its last write and exits 0. Skipped
where no mount namespace can be made (no root and no user namespaces).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SQLMIG, Project, query, table_exists
from tests.torture.helpers import show


def seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE payload AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) g"
        )


def unshare() -> list[str]:
    """The unshare command that gives a private mount namespace here, or skip."""
    for argv in (["unshare", "--mount"], ["unshare", "--map-root-user", "--mount"]):
        probe = subprocess.run(
            [*argv, "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return argv
    pytest.skip("cannot make a mount namespace with a tmpfs here (needs root or user namespaces)")


def run_on_full_disk(
    project: Project, url: str, directory: Path, size: int | None, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """sqlmig ARGS with `directory` a tmpfs of `size` bytes (None: the real disk); what is left
    in the directory afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    env["SQLMIG_DATABASE_URL"] = url
    directory.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in [*SQLMIG, *args])
    script = f"{command}; rc=$?; echo; echo LEFT:; ls -A {shlex.quote(str(directory))}; exit $rc"
    if size is not None:
        script = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(directory))} && " + script
    argv = [*(unshare() if size is not None else []), "sh", "-c", script]
    result = subprocess.run(argv, cwd=project.root, env=env, text=True, capture_output=True, timeout=120)
    out, _, left = result.stdout.rpartition("\nLEFT:\n")
    result = subprocess.CompletedProcess(argv, result.returncode, out, result.stderr)
    show(f"{' '.join(args)} (tmpfs of {size} bytes)", result)
    return result, left.split()


def test_a_truncated_backup_stops_up_before_any_change(
    project: Project, database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    project.add(1, "accounts", "CREATE TABLE accounts (id int);\n", "DROP TABLE accounts;\n")
    seed(database_url)
    seed(second_database_url)
    twin, _ = run_on_full_disk(
        project, second_database_url, tmp_path / "twin", None, "up", "--backup", str(tmp_path / "twin")
    )
    assert twin.returncode == 0
    (full,) = (tmp_path / "twin").glob("*.dump")
    size = full.stat().st_size
    target = tmp_path / "full-disk"

    result, left = run_on_full_disk(
        project,
        database_url,
        target,
        size // 4096 * 4096 - 4096 if size % 4096 == 0 else size // 4096 * 4096,
        "up",
        "--backup",
        str(target),
    )

    assert result.returncode == 2, result.stderr
    assert "exited 0 but its archive is incomplete" in result.stderr
    assert "nothing was applied" in result.stderr
    assert left == [], "neither a .dump nor a .partial is left"
    assert not table_exists(database_url, "accounts")
    assert query(database_url, "SELECT count(*) FROM schema_version") == [(0,)]
    assert query(database_url, "SELECT action, outcome FROM schema_version_events") == [("backup", "failed")]


def test_a_standalone_backup_logs_its_event_and_a_truncated_one_fails(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    project.add(1, "accounts", "CREATE TABLE accounts (id int);\n", "DROP TABLE accounts;\n")
    seed(database_url)
    assert project.run("up", url=database_url).returncode == 0

    good, _ = run_on_full_disk(
        project, database_url, tmp_path / "good", None, "backup", "--dir", str(tmp_path / "good")
    )
    (dump,) = (tmp_path / "good").glob("*.dump")
    bad, left = run_on_full_disk(
        project,
        database_url,
        tmp_path / "bad",
        dump.stat().st_size // 4096 * 4096,
        "backup",
        "--dir",
        str(tmp_path / "bad"),
    )

    assert good.returncode == 0, good.stderr
    assert bad.returncode == 2, bad.stderr
    assert "exited 0 but its archive is incomplete" in bad.stderr
    assert left == []
    assert query(
        database_url,
        "SELECT outcome, detail = %s FROM schema_version_events WHERE action = 'backup' ORDER BY id",
        (str(dump),),
    ) == [("ok", True), ("failed", False)]
