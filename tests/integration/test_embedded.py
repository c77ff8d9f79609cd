"""`sqlmig db start|stop|status|url` and `up` with nothing configured: the embedded server.

Each test gets its own throwaway project directory, hence its own cluster in <project>/.sqlmig/,
and stops it in teardown whatever happened. Nothing here uses the shared test server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SQLMIG, Project

PSQL = "/usr/bin/psql"
_CONFIG_ENV = ("DATABASE_URL", "SQLMIG_DATABASE_URL", "DATABASE_PASSWORD_FILE")


def bare_env() -> dict[str, str]:
    """The environment of a fresh machine: no database configured anywhere."""
    return {k: v for k, v in os.environ.items() if k not in _CONFIG_ENV and not k.startswith("PG")}


def sqlmig(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SQLMIG, *args], cwd=project.root, env=bare_env(), text=True, capture_output=True, timeout=120
    )
    show(" ".join(args), result)
    return result


def show(label: str, result: subprocess.CompletedProcess[str]) -> None:
    print(f"$ sqlmig {label} -> exit {result.returncode}")
    for line in result.stdout.rstrip().splitlines():
        print(f"  stdout| {line}")
    for line in result.stderr.rstrip().splitlines():
        print(f"  stderr| {line}")


def processes() -> dict[int, tuple[list[str], int]]:
    """pid -> (argv, parent pid) of every process, from /proc."""
    found: dict[int, tuple[list[str], int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = next(
                int(line.split()[1])
                for line in (entry / "status").read_text().splitlines()
                if line.startswith("PPid:")
            )
        except (OSError, StopIteration, ValueError):
            continue  # ended while we looked
        found[int(entry.name)] = (argv, ppid)
    return found


def postmasters(data_dir: str) -> list[int]:
    """Server processes started for this data directory (`postgres -D <data_dir> …`)."""
    return sorted(
        pid
        for pid, (argv, _) in processes().items()
        if argv and Path(argv[0]).name == "postgres" and data_dir in argv
    )


def cluster_processes(data_dir: str) -> list[tuple[int, str]]:
    """The postmasters of this data directory and all their children (checkpointer, …)."""
    procs = processes()
    roots = set(postmasters(data_dir))
    return sorted(
        (pid, " ".join(argv).strip()) for pid, (argv, ppid) in procs.items() if pid in roots or ppid in roots
    )


def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [PSQL, url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env=bare_env(),
        text=True,
        capture_output=True,
        timeout=30,
    )
    print(
        f"$ psql {url} -c {sql!r} -> exit {result.returncode}: "
        f"{result.stdout.strip()!r} {result.stderr.strip()!r}"
    )
    return result


@pytest.fixture
def bare_project() -> Iterator[Project]:
    """A copy of the example project whose embedded server is always stopped afterwards.

    Not under tmp_path: every pytest session that starts resets /tmp/pytest-of-<user> to mode
    0700, which, when we run as root, locks the server's system user out of a data directory
    below it while another test session starts on the same machine.
    """
    from sqlmig.db.embedded import EmbeddedServer

    root = Path(tempfile.mkdtemp(prefix="sqlmig-embedded-test-"))
    shutil.copytree(REPO / "migrations", root / "migrations")
    shutil.copytree(REPO / "rollbacks", root / "rollbacks")
    server = EmbeddedServer(root)
    try:
        yield Project(root)
    finally:
        try:
            stopped = server.stop()
            print(f"teardown: stopped the embedded server in {server.home}: {stopped}")
            left = cluster_processes(str(server.data_dir))
            assert not left, f"server processes left behind: {left}"
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_db_start_status_url_stop(bare_project: Project) -> None:
    before = sqlmig(bare_project, "db", "status", "--json")
    assert before.returncode == 1, "not running before the first start"
    data_dir = json.loads(before.stdout)["data_dir"]
    print(f"data directory: {data_dir}")
    assert data_dir.startswith(str(bare_project.root.resolve() / ".sqlmig"))
    assert postmasters(data_dir) == []

    # Two starts at once on a fresh project (two `./migrate.sh up` on a new machine), then another.
    env = bare_env()
    racing = [
        subprocess.Popen(
            [*SQLMIG, "db", "start"],
            cwd=bare_project.root,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    urls = []
    for proc in racing:
        out, err = proc.communicate(timeout=120)
        show("db start (concurrent)", subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert proc.returncode == 0
        urls.append(out.strip())
    again = sqlmig(bare_project, "db", "start")
    assert again.returncode == 0
    urls.append(again.stdout.strip())
    assert len(set(urls)) == 1, f"every start reports the same URL: {urls}"

    masters = postmasters(data_dir)
    print(f"postmasters for {data_dir}: {masters}; cluster: {cluster_processes(data_dir)}")
    assert len(masters) == 1, "three starts leave exactly one server for the data directory"

    running = sqlmig(bare_project, "db", "status")
    assert running.returncode == 0
    assert f"yes, pid {masters[0]}" in running.stdout

    url = sqlmig(bare_project, "db", "url")
    assert url.returncode == 0
    assert url.stdout.strip() == urls[0]
    if not os.path.exists(PSQL):
        pytest.skip(f"{PSQL} is not installed")  # the server is still stopped by the fixture
    connected = psql(url.stdout.strip(), "SELECT current_setting('data_directory')")
    assert connected.returncode == 0
    assert connected.stdout.strip() == data_dir

    stopped = sqlmig(bare_project, "db", "stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    left = cluster_processes(data_dir)
    print(f"server processes after `db stop`: {left}")
    assert left == []
    assert not Path(data_dir, "postmaster.pid").exists()

    after = sqlmig(bare_project, "db", "status")
    assert after.returncode == 1
    assert "running:  no" in after.stdout
    again_stopped = sqlmig(bare_project, "db", "stop")
    assert again_stopped.returncode == 0
    assert again_stopped.stdout.strip() == "not running"


def test_up_with_nothing_configured_uses_the_embedded_server(bare_project: Project) -> None:
    result = sqlmig(bare_project, "up")
    assert result.returncode == 0
    assert "no database configured" in result.stderr
    assert "embedded PostgreSQL" in result.stderr
    assert str(bare_project.root.resolve() / ".sqlmig") in result.stderr
    assert "at version 2.0.0: 5 applied" in result.stdout

    status = sqlmig(bare_project, "status", "--exit-code")
    assert status.returncode == 0, "nothing pending on the embedded server"
    assert "current version: 2.0.0" in status.stdout
    assert "no database configured" not in status.stderr  # said when it started, not again

    url = sqlmig(bare_project, "db", "url").stdout.strip()
    if os.path.exists(PSQL):
        seen = psql(url, "SELECT string_agg(version, ',' ORDER BY number) FROM schema_version")
        assert seen.returncode == 0
        assert seen.stdout.strip() == "1.0.0,1.1.0,1.2.0,1.2.1,2.0.0"
