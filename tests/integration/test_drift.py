"""Drift: out-of-band schema changes on a migrated database, reported by status and validate.

`up`, `down` and `baseline` record the schema they leave in `schema_version_snapshots`; `status`
and `validate` compare the live schema with it. No false drift after sqlmig's own runs.
"""

from __future__ import annotations

import json

import psycopg
import pytest

import sqlmig
from sqlmig.db.compare import FORMAT
from tests.conftest import Project, query


def config(project: Project, url: str) -> sqlmig.Config:
    return sqlmig.resolve(root=project.root, database_url=url, environ={})


def snapshot_rows(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT version, action, length(fingerprint), format FROM schema_version_snapshots ORDER BY version",
    )


@pytest.fixture
def migrated(example_project: Project, database_url: str) -> str:
    result = example_project.run("up", url=database_url)
    assert result.returncode == 0, result.stderr
    return database_url


def test_a_hand_added_column_is_reported_by_status_and_validate(
    example_project: Project, migrated: str
) -> None:
    query(migrated, "ALTER TABLE users ADD COLUMN x int")

    status = example_project.run("status", "--exit-code", url=migrated)
    validate = example_project.run("validate", url=migrated)

    assert status.returncode == 6
    line = next(li for li in status.stdout.splitlines() if "users.x" in li)
    assert line.startswith(
        "error: schema drift: column users.x was added outside sqlmig (since the recorded schema of 2.0.0, "
    )
    assert status.stdout.splitlines()[-1].startswith("hint: the live schema differs from the one")
    assert validate.returncode == 6
    assert line in validate.stdout.splitlines()
    assert validate.stdout.splitlines()[-1] == "1 problem(s): history and files disagree"


def test_status_json_carries_drift_as_a_problem(example_project: Project, migrated: str) -> None:
    query(migrated, "ALTER TABLE users ADD COLUMN x int")

    result = example_project.run("status", "--json", url=migrated)

    problems = json.loads(result.stdout)["problems"]
    assert [p["code"] for p in problems] == ["drift"]
    assert "column users.x was added outside sqlmig" in problems[0]["message"]


def test_dropped_index_changed_type_and_new_table_are_each_reported(
    example_project: Project, migrated: str
) -> None:
    query(migrated, "DROP INDEX audit_events_created_at_idx")
    query(migrated, "ALTER TABLE users ALTER COLUMN email TYPE varchar(100)")
    query(migrated, "CREATE TABLE scratch_copy (id int PRIMARY KEY, note text)")

    report = sqlmig.validate(config(example_project, migrated))

    assert not report.ok
    assert [p.message.split(" (since")[0] for p in report.problems] == [
        "schema drift: table scratch_copy was added outside sqlmig",
        "schema drift: column users.email: type text → character varying(100)",
        "schema drift: index audit_events_created_at_idx was dropped outside sqlmig",
    ]


def test_no_false_drift_after_up_down_and_up_again(example_project: Project, database_url: str) -> None:
    cfg = config(example_project, database_url)
    sqlmig.up(cfg)
    assert sqlmig.status(cfg).problems == ()
    assert sqlmig.validate(cfg).ok

    sqlmig.down(cfg, steps=2)
    assert sqlmig.status(cfg).problems == ()
    assert example_project.run("status", "--exit-code", url=database_url).returncode == 1

    sqlmig.down(cfg, to="0")
    assert sqlmig.status(cfg).problems == ()

    sqlmig.up(cfg)
    assert sqlmig.status(cfg).problems == ()
    assert example_project.run("status", "--exit-code", url=database_url).returncode == 0
    assert example_project.run("validate", url=database_url).returncode == 0


def test_one_snapshot_row_per_version_reached(example_project: Project, database_url: str) -> None:
    cfg = config(example_project, database_url)
    sqlmig.up(cfg, to="1.2.0")
    sqlmig.up(cfg)
    sqlmig.down(cfg, steps=1)

    assert snapshot_rows(database_url) == [
        ("1.2.0", "up", 64, FORMAT),
        ("1.2.1", "down", 64, FORMAT),
        ("2.0.0", "up", 64, FORMAT),
    ]


def test_an_up_with_nothing_to_do_does_not_hide_drift(example_project: Project, migrated: str) -> None:
    query(migrated, "ALTER TABLE users ADD COLUMN x int")

    again = example_project.run("up", url=migrated)

    assert again.returncode == 0
    assert "already up to date" in again.stdout
    assert example_project.run("status", "--exit-code", url=migrated).returncode == 6


def test_a_run_that_applies_migrations_records_the_schema_it_leaves(
    example_project: Project, database_url: str
) -> None:
    cfg = config(example_project, database_url)
    sqlmig.up(cfg, to="1.2.0")
    query(database_url, "CREATE INDEX users_created_at_idx ON users (created_at)")
    assert [p.code for p in sqlmig.status(cfg).problems] == ["drift"]

    sqlmig.up(cfg)  # the next deploy: its snapshot is the schema as it now is

    assert sqlmig.status(cfg).problems == ()


def test_a_database_without_a_recorded_snapshot_reports_nothing(
    example_project: Project, migrated: str
) -> None:
    # As after an older sqlmig, or a state reached by a rendered psql script.
    query(migrated, "DROP TABLE schema_version_snapshots")
    query(migrated, "ALTER TABLE users ADD COLUMN x int")

    assert sqlmig.status(config(example_project, migrated)).problems == ()
    assert example_project.run("validate", url=migrated).returncode == 0


def test_a_snapshot_of_another_set_of_applied_migrations_is_not_compared(
    example_project: Project, migrated: str
) -> None:
    # 1.2.1 removed from the history by hand: 2.0.0 is still current, but the state is another.
    query(migrated, "DELETE FROM schema_version WHERE version = '1.2.1'")
    query(migrated, "DROP INDEX audit_events_created_at_idx")

    problems = sqlmig.status(config(example_project, migrated)).problems

    assert [p.code for p in problems] == ["out-of-order"]


def test_baseline_records_the_schema_it_adopts(example_project: Project, database_url: str) -> None:
    sql = "\n".join(
        (example_project.migrations / f).read_text()
        for f in ("001_initial_schema.sql", "002_add_user_last_login.sql")
    )
    query(database_url, sql)
    cfg = config(example_project, database_url)

    sqlmig.baseline(cfg, "1.1.0")
    assert sqlmig.status(cfg).problems == ()
    query(database_url, "ALTER TABLE users DROP COLUMN last_login_at")

    assert [p.message.split(" (since")[0] for p in sqlmig.status(cfg).problems] == [
        "schema drift: column users.last_login_at was dropped outside sqlmig"
    ]


def test_drift_is_not_reported_on_top_of_a_failed_state(project: Project, database_url: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(
        2,
        "index_a",
        "CREATE INDEX CONCURRENTLY a_id_idx ON a (id);\nSELECT 1/0;\n",
        "DROP INDEX a_id_idx;\n",
        version="1.1.0",
        header="-- sqlmig: no-transaction\n",
    )
    result = project.run("up", url=database_url)
    assert result.returncode == 3

    problems = sqlmig.status(config(project, database_url)).problems

    assert [p.code for p in problems] == ["failed-state"]


def test_no_false_drift_for_a_session_with_another_search_path(project: Project, database_url: str) -> None:
    # A monitoring role whose search_path differs prints types, views and foreign keys with
    # other qualifications; the snapshot must not depend on it.
    project.add(
        1,
        "app_schema",
        """
        CREATE SCHEMA app;
        CREATE TYPE app.mood AS ENUM ('sad', 'ok');
        CREATE TABLE app.people (id int PRIMARY KEY, mood app.mood DEFAULT 'ok');
        CREATE TABLE app.notes (person_id int REFERENCES app.people (id));
        CREATE VIEW app.glum AS SELECT id FROM app.people WHERE mood = 'sad';
        CREATE FUNCTION app.cheer(m app.mood) RETURNS app.mood LANGUAGE sql AS $$ SELECT 'ok'::app.mood $$;
        """,
        "DROP SCHEMA app CASCADE;\n",
        version="1.0.0",
    )
    sqlmig.up(config(project, database_url))
    from psycopg.conninfo import make_conninfo

    other = make_conninfo(database_url, options="-c search_path=app,public")

    assert query(other, "SHOW search_path") == [("app,public",)]
    assert sqlmig.status(config(project, other)).problems == ()


def _stamp_unchanged(url: str) -> bool:
    import psycopg

    from sqlmig.db.drift import SnapshotStore
    from sqlmig.db.history import History

    with psycopg.connect(url, autocommit=True) as conn:
        rec = SnapshotStore(History("public", "schema_version")).meta(conn, "2.0.0", stamp=True)
    assert rec is not None
    return rec.unchanged


def test_catalog_stamp_lets_status_skip_the_fingerprint_until_ddl(
    example_project: Project, migrated: str
) -> None:
    # Data and maintenance leave the catalogs' rows (and so the stamp) as they were...
    query(migrated, "INSERT INTO users (email) VALUES ('a@example.com')")
    query(migrated, "VACUUM ANALYZE users")
    for _ in range(20):  # the stamp does not depend on how far transaction ids have moved on
        query(migrated, "SELECT txid_current()")
    assert _stamp_unchanged(migrated)
    assert sqlmig.status(config(example_project, migrated)).problems == ()
    # ...any DDL does not, and the fingerprint then decides.
    query(migrated, "COMMENT ON TABLE users IS 'hand-made'")
    assert not _stamp_unchanged(migrated)
    problems = sqlmig.status(config(example_project, migrated)).problems
    assert [p.message.split(" (since")[0] for p in problems] == [
        "schema drift: table users: comment none → hand-made"
    ]


def test_snapshots_recorded_before_the_stamp_are_still_compared(
    example_project: Project, migrated: str
) -> None:
    query(migrated, "ALTER TABLE schema_version_snapshots DROP COLUMN catalog_stamp")
    query(migrated, "ALTER TABLE users ADD COLUMN x int")

    status = example_project.run("status", "--exit-code", url=migrated)
    assert status.returncode == 6, status.stderr
    assert "column users.x was added outside sqlmig" in status.stdout

    query(migrated, "ALTER TABLE users DROP COLUMN x")
    assert example_project.run("up", url=migrated).returncode == 0  # nothing to record
    # The next snapshot written brings the column back, with a stamp.
    assert example_project.run("down", "--steps", "1", url=migrated).returncode == 0
    assert example_project.run("up", url=migrated).returncode == 0
    assert query(migrated, "SELECT count(catalog_stamp) FROM schema_version_snapshots") == [(2,)]
    assert _stamp_unchanged(migrated)


def test_two_projects_in_schemas_of_their_own_are_not_each_others_drift(
    project: Project, database_url: str
) -> None:
    # Two apps (or two tenants) of one database, each with `--schema`: what one applies after the
    # other recorded its snapshot is in the other's schema, not drift of the other.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app_a; CREATE SCHEMA app_b")
    project.add(1, "t", "CREATE TABLE t (id int PRIMARY KEY);\n", "DROP TABLE t;\n")
    assert project.run("--schema", "app_a", "up", url=database_url).returncode == 0
    assert project.run("--schema", "app_b", "up", url=database_url).returncode == 0

    status = project.run("--schema", "app_a", "status", "--exit-code", url=database_url)

    assert status.returncode == 0, status.stdout + status.stderr
    assert "drift" not in status.stdout + status.stderr
