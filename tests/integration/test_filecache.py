"""The file cache seen from the CLI, with its real 2-second rule (sqlmig.files.cache): runs that
take files from it still catch edits, and apply pending files from their checked text."""

from __future__ import annotations

import hashlib
import os
import time

from tests.conftest import Project, query, table_exists

SETTLE = 2.1  # seconds: files younger than 2 s before a run are read, not kept


def two_tables(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);", "DROP TABLE a;")
    project.add(2, "create_b", "CREATE TABLE b (id int);", "DROP TABLE b;")
    time.sleep(SETTLE)


def kept(project: Project) -> int:
    """How many files the cache holds (each entry names its file once, as a JSON key)."""
    caches = list((project.root / ".sqlmig" / "cache").glob("files-*.json"))
    assert len(caches) == 1, caches
    body = caches[0].read_bytes().partition(b"\n")[2]
    return body.count(b'.sql":')


def test_status_catches_an_edit_that_kept_the_size_and_mtime_of_a_cached_file(
    project: Project, database_url: str
) -> None:
    two_tables(project)
    assert project.run("up", url=database_url).returncode == 0
    assert kept(project) == 4
    assert project.run("status", "--exit-code", url=database_url).returncode == 0
    path = project.migrations / "001_create_a.sql"
    before = os.stat(path)

    path.write_text(path.read_text().replace("a (id int)", "a (id oid)"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = project.run("status", "--exit-code", url=database_url)

    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "migrations/001_create_a.sql: error: was edited after it was applied" in result.stdout


def test_up_applies_pending_files_that_only_the_cache_had_checked(
    project: Project, database_url: str
) -> None:
    two_tables(project)
    assert project.run("status", url=database_url).returncode == 0  # fills the cache
    assert kept(project) == 4

    result = project.run("up", url=database_url)

    assert result.returncode == 0, result.stderr
    assert table_exists(database_url, "a") and table_exists(database_url, "b")
    assert query(
        database_url, "SELECT name, checksum, rollback_checksum FROM schema_version ORDER BY number"
    ) == [
        (name, sha256(project.migrations / f"{name}.sql"), sha256(project.rollbacks / f"{name}_rollback.sql"))
        for name in ("001_create_a", "002_create_b")
    ]
    assert project.run("down", "--to", "0", url=database_url).returncode == 0
    assert not table_exists(database_url, "a")


def test_file_cache_off_writes_no_cache(project: Project, database_url: str) -> None:
    two_tables(project)

    result = project.run("up", url=database_url, env={"SQLMIG_FILE_CACHE": "off"})
    config = project.run("config", url=database_url, env={"SQLMIG_FILE_CACHE": "off"})

    assert result.returncode == 0, result.stderr
    assert not (project.root / ".sqlmig").exists()
    assert any(
        line.split() == ["file_cache", "off", "env", "SQLMIG_FILE_CACHE"]
        for line in config.stdout.splitlines()
    ), config.stdout


def sha256(path: os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()
