"""`sqlmig verify`: every rollback proven on a scratch database, never on the target.

Most tests give verify the shared test server (`--scratch-url`), where it creates and drops its
own database; one uses the default, the project's embedded server. Every test points
SQLMIG_DATABASE_URL at a target database holding a sentinel table and checks it is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sqlmig
from sqlmig.db import snapshot
from tests.conftest import REPO, SQLMIG, Project, query, table_exists


def target_state(url: str) -> tuple[str, list[tuple]]:
    """A fingerprint of everything in the target database (nothing excluded) and its rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        snap = snapshot.take(conn, "-", [])
    return snap.fingerprint(), query(url, "SELECT * FROM sentinel ORDER BY id")


@pytest.fixture
def target(database_url: str) -> Iterator[str]:
    """The configured target database: must look exactly the same after every verify."""
    query(database_url, "CREATE TABLE sentinel (id int PRIMARY KEY, note text)")
    query(database_url, "INSERT INTO sentinel VALUES (1, 'untouched')")
    before = target_state(database_url)
    yield database_url
    assert target_state(database_url) == before, "verify changed the target database"
    assert not table_exists(database_url, "public.schema_version")
    assert not table_exists(database_url, "public.users")


def scratch_databases(server_dsn: str) -> list[str]:
    return [
        name
        for (name,) in query(
            server_dsn, "SELECT datname FROM pg_database WHERE starts_with(datname, 'sqlmig_verify_')"
        )
    ]


def verify(project: Project, target: str, server_dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = project.run("verify", "--scratch-url", server_dsn, *args, url=target)
    print(result.stdout, result.stderr)
    return result


def users_table(project: Project) -> None:
    project.add(
        1,
        "create_users",
        """
        CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
        CREATE INDEX users_email_idx ON users (email);
        """,
        "DROP TABLE users;\n",
        version="1.0.0",
    )


# -- the example project -------------------------------------------------------------------------


def test_example_project_verifies_and_the_scratch_database_is_dropped(
    example_project: Project, target: str, server_dsn: str
) -> None:
    before = scratch_databases(server_dsn)
    result = verify(example_project, target, server_dsn)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == [
        "proven 001_initial_schema (1.0.0)",
        "proven 002_add_user_last_login (1.1.0)",
        "proven 003_create_audit_events (1.2.0)",
        "proven 004_index_audit_events_created_at (1.2.1)",
        "proven 005_rename_display_name (2.0.0)",
    ]
    assert re.match(
        r"verified: proven 5, leaky 0, failed 0, irreversible 0 \([0-9.]+ s\), on the "
        "scratch database sqlmig_verify_",
        lines[5],
    )
    assert lines[5].endswith("(dropped afterwards); the target database was not touched")
    assert result.stderr == ""
    assert scratch_databases(server_dsn) == before


def test_example_project_verifies_as_a_library_call(
    example_project: Project, target: str, server_dsn: str
) -> None:
    config = example_project.config(target)
    report = sqlmig.verify(config, scratch_url=server_dsn)

    assert isinstance(report, sqlmig.VerifyReport)
    assert report.ok
    assert [(s.number, s.outcome) for s in report.steps] == [(n, "proven") for n in range(1, 6)]
    assert report.steps[2].rollback == "rollbacks/003_create_audit_events_rollback.sql"
    assert report.snapshot_ms > 0


def test_json_output(example_project: Project, target: str, server_dsn: str) -> None:
    result = verify(example_project, target, server_dsn, "--json")

    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert [s["outcome"] for s in data["steps"]] == ["proven"] * 5
    assert data["scratch"].startswith("scratch database sqlmig_verify_")


def test_verify_never_connects_to_the_target(example_project: Project, server_dsn: str) -> None:
    # A target nobody could reach: verify must not even try.
    unreachable = "postgresql://nobody:secret@127.0.0.1:9/nowhere?connect_timeout=2"
    result = example_project.run("verify", "--scratch-url", server_dsn, url=unreachable)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified: proven 5, leaky 0, failed 0, irreversible 0 (" in result.stdout


@pytest.fixture
def embedded_project() -> Iterator[Project]:
    """The example project outside tmp_path (see test_embedded.py), its server stopped after."""
    from sqlmig.db.embedded import EmbeddedServer

    root = Path(tempfile.mkdtemp(prefix="sqlmig-verify-test-"))
    shutil.copytree(REPO / "migrations", root / "migrations")
    shutil.copytree(REPO / "rollbacks", root / "rollbacks")
    try:
        yield Project(root)
    finally:
        EmbeddedServer(root).stop()
        shutil.rmtree(root, ignore_errors=True)


def test_default_scratch_is_a_throwaway_database_on_the_embedded_server(
    embedded_project: Project, target: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = target
    result = subprocess.run(
        [*SQLMIG, "verify"], cwd=embedded_project.root, env=env, text=True, capture_output=True, timeout=300
    )
    print(result.stdout, result.stderr)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"verified: proven 5, leaky 0, failed 0, irreversible 0 \([0-9.]+ s\), on the "
        "scratch database sqlmig_verify_",
        result.stdout,
    )
    assert f"on the embedded PostgreSQL in {embedded_project.root.resolve()}/.sqlmig" in result.stdout
    from sqlmig.db.embedded import EmbeddedServer

    left = query(
        EmbeddedServer(embedded_project.root).url(),
        "SELECT datname FROM pg_database WHERE starts_with(datname, 'sqlmig')",
    )
    assert left == []


# -- broken rollbacks ------------------------------------------------------------------------------


def test_a_rollback_that_leaves_a_column_fails_naming_the_column_and_the_file(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "add_user_phone",
        "ALTER TABLE users ADD COLUMN phone text;\n",
        "-- forgot to drop the column\n",
        version="1.1.0",
    )
    project.add(
        3, "create_orders", "CREATE TABLE orders (id int);\n", "DROP TABLE orders;\n", version="1.2.0"
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 1
    # Reported, and the run goes on from 002's applied state: 003 is checked too.
    assert result.stdout.splitlines()[1:4] == [
        "LEAKY 002_add_user_phone (1.1.0):",
        "  rollbacks/002_add_user_phone_rollback.sql leaves column users.phone behind",
        "proven 003_create_orders (1.2.0): rollback restores the schema, re-apply matches ("
        + result.stdout.splitlines()[3].rsplit("(", 1)[1],
    ]
    assert "verify FAILED: proven 2, leaky 1, failed 0, irreversible 0 (" in result.stdout


def test_a_rollback_that_leaves_an_index_fails_naming_the_index(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "index_users_id_email",
        "CREATE INDEX users_id_email_idx ON users (id, email);\n",
        "-- nothing to undo, surely\n",
        version="1.1.0",
    )

    result = verify(project, target, server_dsn, "--json")

    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    failed = data["steps"][1]
    assert failed["outcome"] == "leaky"
    assert failed["problems"] == [
        "rollbacks/002_index_users_id_email_rollback.sql leaves index users_id_email_idx behind"
    ]
    assert [(d["kind"], d["name"], d["change"]) for d in failed["differences"]] == [
        ("index", "users_id_email_idx", "added")
    ]


def test_a_rollback_that_drops_the_wrong_thing_fails_naming_both(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "index_users_id_email",
        "CREATE INDEX users_id_email_idx ON users (id, email);\n",
        "DROP INDEX users_email_idx;\n",
        version="1.1.0",
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 1
    rollback = "rollbacks/002_index_users_id_email_rollback.sql"
    assert result.stdout.splitlines()[1:4] == [
        "LEAKY 002_index_users_id_email (1.1.0):",
        f"  {rollback} drops index users_email_idx, which existed before 002_index_users_id_email",
        f"  {rollback} leaves index users_id_email_idx behind",
    ]


def test_a_rollback_that_restores_a_different_type_names_the_column_and_both_types(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "widen_email",
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(200);\n",
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(100);\n",
        version="2.0.0",
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 1
    assert (
        "  rollbacks/002_widen_email_rollback.sql does not restore column users.email: "
        "type text → character varying(100) (before 002_widen_email → after the rollback)"
    ) in result.stdout.splitlines()


def test_a_rollback_that_fails_on_the_server_is_reported_with_file_and_line(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "add_user_phone",
        "ALTER TABLE users ADD COLUMN phone text;\n",
        "ALTER TABLE users DROP COLUMN telephone;\n",
        version="1.1.0",
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[1:4] == [
        "FAILED 002_add_user_phone (1.1.0):",
        "  rollbacks/002_add_user_phone_rollback.sql fails on the scratch database",
        '  rollbacks/002_add_user_phone_rollback.sql:1:1: ERROR [42703]: column "telephone" of '
        'relation "users" does not exist',
    ]


def test_a_migration_that_cannot_be_applied_again_after_its_rollback_fails(
    project: Project, target: str, server_dsn: str
) -> None:
    # The schema comes back, the seeded row does not go: the second apply hits the primary key.
    users_table(project)
    project.add(
        2,
        "seed_admin",
        "INSERT INTO users VALUES (1, 'admin@example.com');\n",
        "-- the row can stay\n",
        version="1.0.1",
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 1
    assert (
        "  migrations/002_seed_admin.sql fails when applied again after "
        "rollbacks/002_seed_admin_rollback.sql: the rollback leaves something behind that the "
        "schema comparison does not see (data, a setting)"
    ) in result.stdout.splitlines()
    assert "ERROR [23505]: duplicate key value violates unique constraint" in result.stdout


def test_irreversible_rollbacks_are_skipped_with_a_note(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(
        2,
        "drop_email_index",
        "DROP INDEX users_email_idx;\n",
        "-- sqlmig: irreversible the index took hours to build\n",
        version="2.0.0",
    )
    project.add(
        3, "create_orders", "CREATE TABLE orders (id int);\n", "DROP TABLE orders;\n", version="2.1.0"
    )

    result = verify(project, target, server_dsn)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == (
        "skipped 002_drop_email_index (2.0.0): "
        "rollbacks/002_drop_email_index_rollback.sql: irreversible "
        "(the index took hours to build); not run"
    )
    assert lines[2].startswith("proven 003_create_orders (2.1.0)")
    assert lines[3].startswith("verified: proven 2, leaky 0, failed 0, irreversible 1 (")


def test_file_problems_stop_verify_before_any_database_is_created(
    project: Project, target: str, server_dsn: str
) -> None:
    users_table(project)
    project.add(2, "no_version", "SELECT 1;\n", "SELECT 1;\n", version="")
    before = scratch_databases(server_dsn)

    result = verify(project, target, server_dsn)

    assert result.returncode == 2
    assert "migrations/002_no_version.sql" in result.stderr
    assert scratch_databases(server_dsn) == before


# -- --scratch-in-place -----------------------------------------------------------------------------


def test_scratch_in_place_uses_the_given_database_and_leaves_it_migrated(
    example_project: Project, target: str, server_dsn: str
) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "verify_in_place_test" TEMPLATE template0')
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = "verify_in_place_test"
    scratch = make_conninfo("", **params)
    try:
        result = verify(example_project, target, scratch, "--scratch-in-place")
        assert result.returncode == 0, result.stdout + result.stderr
        assert [v for (v,) in query(scratch, "SELECT version FROM schema_version ORDER BY 1")] == [
            "1.0.0",
            "1.1.0",
            "1.2.0",
            "1.2.1",
            "2.0.0",
        ]

        again = verify(example_project, target, scratch, "--scratch-in-place")
        assert again.returncode == 2
        assert "already has applied migrations; give it an empty database" in again.stderr
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "verify_in_place_test" WITH (FORCE)')


def test_scratch_url_naming_the_target_is_refused(example_project: Project, target: str) -> None:
    for extra in ([], ["--scratch-in-place"]):
        result = example_project.run("verify", "--scratch-url", target, *extra, url=target)
        assert result.returncode == 2
        assert "names the configured target database" in result.stderr


# -- every kind of object: no false differences from the catalogs ---------------------------------


def rich_project(project: Project, with_extension: bool) -> None:
    """One migration per kind of object, each with a correct rollback."""
    project.add(
        1,
        "schema_and_types",
        """
        CREATE SCHEMA app;
        CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN app.email AS text NOT NULL CHECK (VALUE LIKE '%@%');
        CREATE TYPE app.pair AS (a int, b text);
        CREATE TYPE app.floatrange AS RANGE (subtype = float8);
        COMMENT ON SCHEMA app IS 'the application';
        """,
        "DROP SCHEMA app CASCADE;\n",
        version="1.0.0",
    )
    project.add(
        2,
        "tables",
        """
        CREATE TABLE app.accounts (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            email app.email UNIQUE,
            mood app.mood NOT NULL DEFAULT 'ok',
            name text COLLATE "C",
            total numeric(12, 2) GENERATED ALWAYS AS (0) STORED,
            CONSTRAINT name_length CHECK (length(name) < 100) NOT VALID
        ) WITH (fillfactor = 90);
        CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v jsonb);
        CREATE SEQUENCE app.ticket_seq START 100 INCREMENT 5 CYCLE;
        CREATE TABLE app.events (id bigserial, at timestamptz NOT NULL, account_id bigint)
            PARTITION BY RANGE (at);
        CREATE TABLE app.events_2026 PARTITION OF app.events
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE INDEX events_at_idx ON app.events (at);
        ALTER TABLE app.events ADD CONSTRAINT events_account_fk
            FOREIGN KEY (account_id) REFERENCES app.accounts (id);
        COMMENT ON COLUMN app.accounts.mood IS 'how they feel';
        """,
        """
        DROP TABLE app.events;
        DROP SEQUENCE app.ticket_seq;
        DROP TABLE app.cache;
        DROP TABLE app.accounts;
        """,
        version="1.1.0",
    )
    project.add(
        3,
        "code",
        """
        CREATE FUNCTION app.lower_name() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.name := lower(NEW.name); RETURN NEW; END $$;
        CREATE TRIGGER accounts_lower BEFORE INSERT OR UPDATE ON app.accounts
            FOR EACH ROW EXECUTE FUNCTION app.lower_name();
        CREATE FUNCTION app.add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE
            BEGIN ATOMIC SELECT a + b; END;
        CREATE PROCEDURE app.touch(x int) LANGUAGE sql AS $$ SELECT x $$;
        CREATE AGGREGATE app.total(int) (sfunc = int4pl, stype = int, initcond = '0');
        CREATE VIEW app.happy AS SELECT id, name FROM app.accounts WHERE mood = 'happy';
        CREATE MATERIALIZED VIEW app.counts AS SELECT mood, count(*) FROM app.accounts GROUP BY 1;
        CREATE INDEX counts_mood_idx ON app.counts (mood);
        CREATE RULE cache_no_delete AS ON DELETE TO app.cache DO INSTEAD NOTHING;
        """,
        """
        DROP RULE cache_no_delete ON app.cache;
        DROP MATERIALIZED VIEW app.counts;
        DROP VIEW app.happy;
        DROP AGGREGATE app.total(int);
        DROP PROCEDURE app.touch(int);
        DROP FUNCTION app.add(int, int);
        DROP TRIGGER accounts_lower ON app.accounts;
        DROP FUNCTION app.lower_name();
        """,
        version="1.2.0",
    )
    project.add(
        4,
        "security",
        """
        ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
        CREATE POLICY own_rows ON app.accounts FOR SELECT TO PUBLIC USING (name = current_user);
        GRANT SELECT, INSERT ON app.accounts TO PUBLIC;
        GRANT UPDATE (name) ON app.accounts TO PUBLIC;
        GRANT USAGE ON SCHEMA app TO PUBLIC;
        REVOKE EXECUTE ON FUNCTION app.add(int, int) FROM PUBLIC;
        """,
        """
        GRANT EXECUTE ON FUNCTION app.add(int, int) TO PUBLIC;
        REVOKE USAGE ON SCHEMA app FROM PUBLIC;
        REVOKE UPDATE (name) ON app.accounts FROM PUBLIC;
        REVOKE SELECT, INSERT ON app.accounts FROM PUBLIC;
        DROP POLICY own_rows ON app.accounts;
        ALTER TABLE app.accounts DISABLE ROW LEVEL SECURITY;
        """,
        version="1.3.0",
    )
    project.add(
        5,
        "alter_things",
        """
        ALTER TYPE app.mood RENAME VALUE 'ok' TO 'fine';
        ALTER TABLE app.accounts ALTER COLUMN mood SET DEFAULT 'fine';
        ALTER TABLE app.accounts RENAME COLUMN name TO full_name;
        ALTER TABLE app.accounts ADD COLUMN note text;
        ALTER TABLE app.accounts DROP COLUMN note;
        ALTER SEQUENCE app.ticket_seq INCREMENT 10;
        """,
        """
        ALTER SEQUENCE app.ticket_seq INCREMENT 5;
        ALTER TABLE app.accounts RENAME COLUMN full_name TO name;
        ALTER TYPE app.mood RENAME VALUE 'fine' TO 'ok';
        ALTER TABLE app.accounts ALTER COLUMN mood SET DEFAULT 'ok';
        """,
        version="1.4.0",
    )
    if with_extension:
        project.add(
            6,
            "citext",
            """
            CREATE EXTENSION citext;
            ALTER TABLE app.accounts ADD COLUMN login citext;
            """,
            """
            ALTER TABLE app.accounts DROP COLUMN login;
            DROP EXTENSION citext;
            """,
            version="1.5.0",
        )


def test_rollbacks_of_every_kind_of_object_are_proven(project: Project, target: str, server_dsn: str) -> None:
    with_extension = bool(query(server_dsn, "SELECT 1 FROM pg_available_extensions WHERE name = 'citext'"))
    rich_project(project, with_extension)

    result = verify(project, target, server_dsn)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\nproven ") + result.stdout.startswith("proven ") == 5 + with_extension


def test_a_rich_schema_shows_no_drift_after_up_and_down(project: Project, database_url: str) -> None:
    rich_project(project, with_extension=False)
    config = project.config(database_url)
    sqlmig.up(config)
    assert sqlmig.status(config).problems == ()
    sqlmig.down(config, steps=3)
    assert sqlmig.status(config).problems == ()
    sqlmig.up(config)
    assert sqlmig.validate(config).ok

    query(database_url, "REVOKE SELECT ON app.accounts FROM PUBLIC")
    query(database_url, "ALTER TYPE app.mood ADD VALUE 'angry'")
    query(
        database_url,
        "CREATE OR REPLACE VIEW app.happy AS "
        "SELECT id, full_name AS name FROM app.accounts WHERE mood = 'fine'",
    )
    messages = [p.message.split(" (since")[0] for p in sqlmig.validate(config).problems]
    owner = query(database_url, "SELECT current_user")[0][0]
    full = query(
        database_url, "SELECT acldefault('r', oid)::text[] FROM pg_roles WHERE rolname = current_user"
    )[0][0][0]  # owner=arwdDxt(m)/owner
    assert messages == [
        "schema drift: enum type app.mood: labels [sad, fine, happy] → [sad, fine, happy, angry]",
        f"schema drift: table app.accounts: privileges [=ar/{owner}, {full}] → [=a/{owner}, {full}]",
        "schema drift: view app.happy: definition differs",
    ]
