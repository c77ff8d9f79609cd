"""The statements sqlmig says cannot run in a transaction are exactly those the server refuses
inside one (SQLSTATE 25001), checked on the server itself: a transactional file with one of them
is refused before anything runs, and one it lets through is not refused by the server midway."""

from __future__ import annotations

import psycopg
import pytest

from sqlmig.files.sqltext import split
from tests.conftest import Project, query, table_exists

SETUP = """
CREATE TABLE t (a int PRIMARY KEY);
CREATE INDEX t_a ON t (a);
CLUSTER t USING t_pkey;
CREATE TABLE p (a int) PARTITION BY RANGE (a);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);
"""

CASES = [
    "CREATE INDEX CONCURRENTLY t_a2 ON t (a)",
    "CREATE INDEX t_a2 ON t (a)",
    "DROP INDEX CONCURRENTLY t_a",
    "DROP INDEX t_a",
    "REINDEX INDEX CONCURRENTLY t_a",
    "REINDEX (CONCURRENTLY) TABLE t",
    "REINDEX TABLE t",
    "REINDEX SCHEMA public",
    "VACUUM t",
    "ANALYZE t",
    "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
    "ALTER TABLE p DETACH PARTITION p1",
    "CLUSTER",
    "CLUSTER t",
    "DISCARD ALL",
    "DISCARD PLANS",
    "ALTER DATABASE {db} SET TABLESPACE pg_default",
    "ALTER DATABASE {db} WITH CONNECTION LIMIT 50",
    "CREATE DATABASE {db}_other",
    "DROP DATABASE IF EXISTS {db}_other",
]


@pytest.mark.parametrize("sql", CASES)
def test_needs_autocommit_matches_what_the_server_refuses_in_a_transaction(
    database_url: str, sql: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SETUP)
        sql = sql.format(db=conn.info.dbname)
        [statement] = split(sql + ";\n").statements
        refused = None
        try:
            with conn.transaction():
                conn.execute(sql)  # type: ignore[arg-type]
                raise psycopg.Rollback()
        except psycopg.errors.ActiveSqlTransaction as exc:
            refused = str(exc)
    print(f"{sql}: sqlmig says {statement.needs_autocommit!r}; the server: {refused!r}")
    assert (statement.needs_autocommit is not None) == (refused is not None)


def test_detach_partition_concurrently_in_a_transactional_file_is_refused_before_anything_runs(
    project: Project, database_url: str
) -> None:
    query(database_url, SETUP)
    project.add(1, "first", "CREATE TABLE first_table (id int);\n", "DROP TABLE first_table;\n")
    project.add(
        2,
        "detach",
        "CREATE TABLE marker (id int);\nALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;\n",
        "SELECT 1;\n",
    )

    result = project.run("up", url=database_url)

    print(result.stdout, result.stderr)
    assert result.returncode == 2
    assert (
        "migrations/002_detach.sql:3: error: DETACH PARTITION CONCURRENTLY cannot run inside a transaction"
    ) in result.stderr
    assert "-- sqlmig: no-transaction" in result.stderr  # the advice: mark the file
    assert not table_exists(database_url, "first_table"), "nothing ran"
    assert not table_exists(database_url, "marker")


def test_detach_partition_concurrently_in_a_no_transaction_file_applies(
    project: Project, database_url: str
) -> None:
    query(database_url, SETUP)
    project.add(
        1,
        "detach",
        "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;\n",
        "ALTER TABLE p ATTACH PARTITION p1 FOR VALUES FROM (0) TO (10);\n",
        header="-- sqlmig: no-transaction\n",
    )

    result = project.run("up", url=database_url)

    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert query(database_url, "SELECT count(*) FROM pg_inherits") == [(0,)]
    assert query(database_url, "SELECT version, status FROM schema_version") == [("1.1.0", "applied")]
