"""`verify --incremental`: the scratch database of the last fully proven run, kept as a template.

A run that proves every migration keeps a copy of its scratch database, the state with all of
them applied, named `sqlmig_verified_<project>_<key>`: `key` is a digest of what the proof
depends on, every migration's and rollback's checksum in order, with the history table's place,
the --role and the server's major version. The next run looks for the longest prefix of its
migrations whose key names such a database, creates its scratch database from it (`CREATE
DATABASE … TEMPLATE`) and checks only the migrations after it: a pull request that adds one
migration checks one. Only the newest copy of a project is kept (one database, not one per
migration), so an edited migration or rollback matches no kept state and everything is checked
again. It lives on the scratch server (the embedded one in `.sqlmig/` by default, which a CI
cache can keep).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg import sql

from sqlmig.config.settings import Config
from sqlmig.models import Migration

PREFIX = "sqlmig_verified_"


def project_tag(config: Config) -> str:
    """Which project (root, history table) a kept database belongs to."""
    where = f"{config.root.resolve()}\0{config.schema_name}\0{config.table}"
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def keys(config: Config, migrations: Sequence[Migration], server_major: int) -> list[str]:
    """keys[k - 1]: the key of the state after the first k migrations."""
    digest = hashlib.sha256(
        f"{config.schema_name}\0{config.table}\0{config.role or ''}\0{server_major}".encode(
            "utf-8", "surrogateescape"
        )
    )
    out = []
    for mig in migrations:
        digest.update(f"\0{mig.number}\0{mig.checksum}\0{mig.rollback.checksum}".encode())
        out.append(digest.copy().hexdigest()[:16])
    return out


def name(tag: str, key: str) -> str:
    return f"{PREFIX}{tag}_{key}"


def find(conn: psycopg.Connection, tag: str, prefix_keys: Sequence[str]) -> tuple[int, str] | None:
    """(k, database) for the longest prefix of k migrations proven by an earlier run."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{PREFIX}{tag}_",)
    ).fetchall()
    kept = {row[0] for row in rows}
    for k in range(len(prefix_keys), 0, -1):
        if name(tag, prefix_keys[k - 1]) in kept:
            return k, name(tag, prefix_keys[k - 1])
    return None


def keep(conn: psycopg.Connection, scratch: str, tag: str, key: str) -> None:
    """Copy the scratch database (nobody connected to it) as the project's kept one, and drop
    the project's older ones. Raises psycopg.Error."""
    target = name(tag, key)
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{PREFIX}{tag}_",)
    ).fetchall()
    if target not in {row[0] for row in rows}:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(scratch))
        )
    for (old,) in rows:
        if old != target:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(old)))
