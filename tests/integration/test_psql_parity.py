"""Tricky-but-valid SQL applies and rolls back under sqlmig exactly as under psql.

The corpus (tests/corpus/) holds `$$`/`$tag$` bodies, BEGIN ATOMIC, triggers, DO blocks, rules,
nested comments, quoted identifiers with semicolons, E'' strings, CRLF with a BOM, a whole-file
BEGIN/COMMIT wrapper, accepted psql meta-commands and a no-transaction file. Each file is run
by the real psql on one database and by sqlmig on another; the catalogs and data must agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, query

CORPUS = REPO / "tests" / "corpus"
PSQL = shutil.which("psql") or "/usr/bin/psql"

# Everything a migration can leave behind that this corpus touches, in a comparable form.
SCHEMA = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' default '
       || coalesce(column_default, '-') || ' null ' || is_nullable
  FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name NOT LIKE 'schema_version%%'
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
       || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL
SELECT 'rule', rulename || ' ' || definition FROM pg_rules WHERE schemaname = 'public'
UNION ALL
SELECT 'view', viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'
UNION ALL
SELECT 'index', indexdef || ' valid=' || i.indisvalid
  FROM pg_indexes x JOIN pg_class c ON c.relname = x.indexname
  JOIN pg_index i ON i.indexrelid = c.oid
 WHERE x.schemaname = 'public' AND x.tablename NOT LIKE 'schema_version%%'
UNION ALL
SELECT 'enum', t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
  FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname
UNION ALL
SELECT 'comment', c.relname || ' ' || d.description
  FROM pg_description d JOIN pg_class c ON c.oid = d.objoid WHERE d.objsubid = 0
   AND c.relnamespace = 'public'::regnamespace
ORDER BY 1, 2
"""
DATA = {
    "corpus_log": "SELECT msg FROM corpus_log ORDER BY id",
    '"odd;table"': 'SELECT "semi;colon", note FROM "odd;table"',
    "crlf_table": "SELECT id, label FROM crlf_table",
}


def state(url: str) -> dict[str, list]:
    out: dict[str, list] = {"schema": query(url, SCHEMA)}
    for table, sql in DATA.items():
        if query(url, "SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]:
            out[table] = query(url, sql)
    return out


def psql_file(url: str, path: Path, *, single_transaction: bool) -> None:
    args = [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)]
    if single_transaction:
        args.insert(1, "-1")
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"psql {path.name}: {result.stderr}"


@pytest.fixture
def corpus(tmp_path: Path) -> Project:
    shutil.copytree(CORPUS / "migrations", tmp_path / "migrations")
    shutil.copytree(CORPUS / "rollbacks", tmp_path / "rollbacks")
    return Project(tmp_path)


def test_corpus_applies_and_rolls_back_like_psql(
    corpus: Project, database_url: str, second_database_url: str
) -> None:
    mine, theirs = database_url, second_database_url
    migrations = sorted(corpus.migrations.glob("*.sql"))
    rollbacks = sorted(corpus.rollbacks.glob("*.sql"))
    no_transaction = {
        p.name
        for p in migrations + rollbacks
        if "-- sqlmig: no-transaction" in p.read_text(encoding="utf-8-sig")
    }

    result = corpus.run("up", url=mine)
    assert result.returncode == 0, result.stderr
    print("sqlmig up:", result.stdout)
    for path in migrations:
        psql_file(theirs, path, single_transaction=path.name not in no_transaction)

    applied = state(mine)
    print("after up:", applied)
    assert applied == state(theirs)
    assert len(applied["schema"]) > 20
    assert applied["corpus_log"][0] == ("xit's; $$ not the end42",)
    assert applied['"odd;table"'] == [("a;b", "tab\there; and a quote ' done")]
    assert applied["crlf_table"] == [(1, "two\r\nlines")]
    assert query(mine, "SELECT count(*) FROM schema_version WHERE status = 'applied'") == [(len(migrations),)]

    result = corpus.run("down", "--to", "0", url=mine)
    assert result.returncode == 0, result.stderr
    for path in reversed(rollbacks):
        psql_file(theirs, path, single_transaction=path.name not in no_transaction)
    assert state(mine) == state(theirs) == {"schema": []}


def test_copy_from_stdin_is_refused_at_its_line(project: Project, database_url: str) -> None:
    project.add(
        1,
        "load",
        "CREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n2\n\\.\n",
        "DROP TABLE t;",
        version="1.0.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 2
    assert (
        "migrations/001_load.sql:3: error: COPY … FROM stdin with inline data is psql syntax" in result.stderr
    )
    assert query(database_url, "SELECT to_regclass('t')") == [(None,)]


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("\\set ON_ERROR_STOP on", True),
        ("\\set ON_ERROR_STOP 1", True),
        ("\\echo applying the change", True),
        ("\\set ON_ERROR_STOP off", False),
        ("\\i other.sql", False),
        ("\\ir ../secret.sql", False),
        ("\\connect otherdb", False),
        ("\\copy t FROM 'data.csv'", False),
        ("\\gexec", False),
    ],
)
def test_psql_meta_commands_are_skipped_or_refused_with_their_line(
    project: Project, database_url: str, line: str, ok: bool
) -> None:
    project.add(
        1,
        "meta",
        f"CREATE TABLE t (a int);\n{line}\nCREATE TABLE u (a int);\n",
        "DROP TABLE u;\nDROP TABLE t;",
        version="1.0.0",
    )

    result = project.run("up", url=database_url)

    if ok:
        assert result.returncode == 0, result.stderr
        assert query(database_url, "SELECT to_regclass('u') IS NOT NULL") == [(True,)]
    else:
        assert result.returncode == 2, result.stderr
        assert "migrations/001_meta.sql:3: error: " in result.stderr
        assert query(database_url, "SELECT to_regclass('t')") == [(None,)]


def test_a_backslash_inside_a_string_or_body_is_not_a_meta_command(
    project: Project, database_url: str
) -> None:
    project.add(
        1,
        "strings",
        "CREATE TABLE t (a text);\nINSERT INTO t VALUES ('x\n\\i y');\n"
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$SELECT 'a\n\\q'$$;\n",
        "DROP FUNCTION f();\nDROP TABLE t;",
        version="1.0.0",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT a, f() FROM t") == [("x\n\\i y", "a\n\\q")]
