"""`repair` and the two checksums, through the CLI against a real PostgreSQL.

An applied file edited only in formatting is reported, not refused, and `repair
--accept-formatting` records it; a real SQL edit stays an error. A failed CREATE UNIQUE INDEX
CONCURRENTLY leaves an invalid index and a failed row, which `repair` lists and clears.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import psycopg
import pytest

import sqlmig
from sqlmig.files.sqltext import canonical_checksum
from tests.conftest import SQLMIG, Project, query


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def two_tables(project: Project) -> None:
    project.add(
        1,
        "create_a",
        "CREATE TABLE a (id int PRIMARY KEY, n int DEFAULT 5);\n",
        "DROP TABLE a;\n",
        version="1.0.0",
    )
    project.add(2, "create_b", "CREATE TABLE b (id int PRIMARY KEY);\n", "DROP TABLE b;\n", version="1.1.0")


def reformat(project: Project) -> None:
    """Same statements, different bytes: comments, case, whitespace."""
    path = project.migrations / "001_create_a.sql"
    path.write_text(
        "-- Version: 1.0.0\n-- a table for the a things\n"
        "create table A (\n    ID integer primary key,\n    n int default 5\n);\n"
    )


def stored(url: str, version: str) -> tuple[str, str | None]:
    return query(
        url, "SELECT checksum, canonical_checksum FROM schema_version WHERE version = %s", (version,)
    )[0]


def events(project: Project, url: str) -> list[str]:
    return ok(project.run("history", "--events", url=url)).stdout.splitlines()


# -- two checksums -------------------------------------------------------------------------------


def test_up_stores_the_canonical_checksum_of_each_file(project: Project, database_url: str) -> None:
    two_tables(project)
    ok(project.run("up", url=database_url))
    for version, name in (("1.0.0", "001_create_a"), ("1.1.0", "002_create_b")):
        text = (project.migrations / f"{name}.sql").read_text()
        assert stored(database_url, version)[1] == canonical_checksum(text) is not None


def test_a_formatting_only_edit_is_a_warning_up_proceeds_and_accept_formatting_realigns(
    project: Project, database_url: str
) -> None:
    project.add(
        1,
        "create_a",
        "CREATE TABLE a (id int PRIMARY KEY, n int DEFAULT 5);\n",
        "DROP TABLE a;\n",
        version="1.0.0",
    )
    ok(project.run("up", url=database_url))
    before = stored(database_url, "1.0.0")
    reformat(project)
    project.add(2, "create_b", "CREATE TABLE b (id int PRIMARY KEY);\n", "DROP TABLE b;\n", version="1.1.0")

    result = ok(project.run("validate", url=database_url))
    assert (
        "migrations/001_create_a.sql: warning: formatting-only change since it was applied" in result.stderr
    )
    assert "sqlmig repair --accept-formatting 1.0.0" in result.stderr
    assert result.stdout.strip() == "ok: files and history agree"
    data = json.loads(ok(project.run("validate", "--json", url=database_url)).stdout)
    assert data["ok"] is True
    assert [(w["path"], w["code"]) for w in data["warnings"]] == [
        ("migrations/001_create_a.sql", "formatting-only")
    ]

    result = ok(project.run("up", url=database_url))
    assert "migrations/001_create_a.sql: warning: formatting-only change" in result.stderr
    assert "applied 002_create_b (1.1.0)" in result.stdout

    listing = ok(project.run("repair", url=database_url))
    assert "formatting-only edit of migrations/001_create_a.sql (1.0.0)" in listing.stdout
    assert "  record it: sqlmig repair --accept-formatting 1.0.0" in listing.stdout

    result = ok(project.run("repair", "--accept-formatting", url=database_url))
    new_checksum = sqlmig.load_files(project.config(database_url)).migrations[0].checksum
    assert result.stdout.strip() == (
        f"accepted the formatting-only edit of 001_create_a (1.0.0): checksum "
        f"{before[0][:12]} -> {new_checksum[:12]}"
    )
    assert stored(database_url, "1.0.0") == (new_checksum, before[1])
    result = ok(project.run("validate", url=database_url))
    assert result.stderr == "" and result.stdout.strip() == "ok: files and history agree"
    assert ok(project.run("repair", url=database_url)).stdout.strip() == "nothing to repair"
    assert " repair 001_create_a (1.0.0) ok " in events(project, database_url)[0]
    assert "accepted the formatting-only edit" in events(project, database_url)[0]
    again = ok(project.run("repair", "--accept-formatting", url=database_url))
    assert again.stdout.strip() == "nothing to do: no formatting-only edits to accept"


def test_a_real_sql_edit_is_still_an_error_and_cannot_be_accepted_as_formatting(
    project: Project, database_url: str
) -> None:
    two_tables(project)
    ok(project.run("up", url=database_url))
    before = stored(database_url, "1.0.0")
    path = project.migrations / "001_create_a.sql"
    path.write_text(path.read_text().replace("DEFAULT 5", "DEFAULT 6"))

    result = project.run("validate", url=database_url)
    assert result.returncode == 6
    assert "migrations/001_create_a.sql: error: was edited after it was applied" in result.stdout
    assert project.run("up", url=database_url).returncode == 6

    refused = project.run("repair", "--accept-formatting", "1.0.0", url=database_url)
    assert refused.returncode == 6
    assert (
        "migrations/001_create_a.sql: error: not accepted: its statements changed, not only "
        "formatting or comments"
    ) in refused.stderr
    assert stored(database_url, "1.0.0") == before
    assert "formatting-only" not in ok(project.run("repair", url=database_url)).stdout
    # --allow changed still overrides, as before.
    assert ok(project.run("validate", "--allow", "changed", url=database_url))


def test_a_row_without_a_canonical_checksum_treats_any_edit_as_real(
    project: Project, database_url: str
) -> None:
    two_tables(project)
    ok(project.run("up", url=database_url))
    query(database_url, "UPDATE schema_version SET canonical_checksum = NULL")  # an older sqlmig's row
    reformat(project)

    result = project.run("validate", url=database_url)
    assert result.returncode == 6
    assert "migrations/001_create_a.sql: error: was edited after it was applied" in result.stdout
    refused = project.run("repair", "--accept-formatting", "1.0.0", url=database_url)
    assert refused.returncode == 6
    assert "no canonical checksum was stored when it was applied" in refused.stderr


def test_an_older_history_table_gets_the_column_in_place_and_keeps_its_rows(
    project: Project, database_url: str
) -> None:
    two_tables(project)
    ok(project.run("up", "--to", "1", url=database_url))
    query(database_url, "ALTER TABLE schema_version DROP COLUMN canonical_checksum")

    ok(project.run("up", url=database_url))

    assert query(
        database_url, "SELECT version, canonical_checksum IS NOT NULL FROM schema_version ORDER BY number"
    ) == [("1.0.0", False), ("1.1.0", True)]


def test_baseline_and_adoption_store_the_canonical_checksum(project: Project, database_url: str) -> None:
    two_tables(project)
    query(
        database_url,
        "CREATE TABLE schema_version (version varchar(50) PRIMARY KEY, "
        "applied_at timestamp DEFAULT now(), description text)",
    )
    query(database_url, "INSERT INTO schema_version (version, description) VALUES ('1.0.0', 'a')")

    ok(project.run("baseline", "1.1.0", url=database_url))

    for version, name in (("1.0.0", "001_create_a"), ("1.1.0", "002_create_b")):
        text = (project.migrations / f"{name}.sql").read_text()
        assert stored(database_url, version)[1] == canonical_checksum(text)


# -- a failed CREATE UNIQUE INDEX CONCURRENTLY ----------------------------------------------------


def failing_unique_index(project: Project, url: str) -> None:
    project.add(
        1, "create_t", "CREATE TABLE t (id int PRIMARY KEY, val int);\n", "DROP TABLE t;\n", version="1.0.0"
    )
    project.add(
        2,
        "unique_val",
        "CREATE UNIQUE INDEX CONCURRENTLY t_val_key ON t (val);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_val_key;\n",
        version="1.1.0",
        header="-- sqlmig: no-transaction\n",
    )
    ok(project.run("up", "--to", "1", url=url))
    query(url, "INSERT INTO t VALUES (1, 7), (2, 7), (3, 8)")
    result = project.run("up", url=url)
    assert result.returncode == 3, result.stderr
    assert "[23505]" in result.stderr


def invalid(url: str) -> list[tuple[str, bool]]:
    return query(
        url,
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 't'::regclass AND NOT indisprimary ORDER BY 1",
    )


def test_after_a_failed_concurrent_unique_index_repair_lists_drops_removes_and_up_succeeds(
    project: Project, database_url: str
) -> None:
    failing_unique_index(project, database_url)
    assert invalid(database_url) == [("t_val_key", False)]
    assert query(database_url, "SELECT status FROM schema_version WHERE version = '1.1.0'") == [("failed",)]

    listing = ok(project.run("repair", url=database_url)).stdout.splitlines()
    assert listing[0].startswith("002_unique_val (1.1.0) is `failed` since ")
    assert "could not create unique index" in listing[0]
    assert "  undone by hand?   sqlmig repair --remove 1.1.0   (then `sqlmig up` runs it again)" in listing
    assert (
        "invalid index public.t_val_key on public.t: CREATE UNIQUE INDEX t_val_key ON "
        "public.t USING btree (val)"
    ) in listing
    assert (
        "  drop it: sqlmig repair --drop-invalid-index public.t_val_key   "
        "(SQL: DROP INDEX CONCURRENTLY public.t_val_key;)"
    ) in listing
    data = json.loads(ok(project.run("repair", "--json", url=database_url)).stdout)
    assert [(i["qualified"], i["table"], i["drop_sql"]) for i in data["invalid_indexes"]] == [
        ("public.t_val_key", "public.t", "DROP INDEX CONCURRENTLY public.t_val_key;")
    ]
    assert [(r["version"], r["status"]) for r in data["unfinished"]] == [("1.1.0", "failed")]

    dropped = ok(project.run("repair", "--drop-invalid-indexes", url=database_url))
    assert dropped.stdout.strip() == "dropped invalid index public.t_val_key on public.t"
    assert invalid(database_url) == []
    removed = ok(project.run("repair", "--remove", "1.1.0", url=database_url))
    assert removed.stdout.strip() == "removed 002_unique_val (1.1.0) from the history"
    assert ok(project.run("repair", url=database_url)).stdout.strip() == "nothing to repair"

    query(database_url, "UPDATE t SET val = 9 WHERE id = 2")  # the operator fixes the data
    result = ok(project.run("up", url=database_url))
    assert "applied 002_unique_val (1.1.0)" in result.stdout
    assert invalid(database_url) == [("t_val_key", True)]

    log = events(project, database_url)
    repairs = [line for line in log if " repair " in line]
    assert len(repairs) == 2
    assert " repair 002_unique_val (1.1.0) ok " in repairs[0] and "was `failed`" in repairs[0]
    assert (
        "dropped invalid index public.t_val_key on public.t: DROP INDEX CONCURRENTLY public.t_val_key;"
    ) in repairs[1]


def test_drop_invalid_index_by_name_and_refusals(project: Project, database_url: str) -> None:
    failing_unique_index(project, database_url)
    query(database_url, "CREATE INDEX t_id_val ON t (id, val)")

    valid = project.run("repair", "--drop-invalid-index", "t_id_val", url=database_url)
    unknown = project.run("repair", "--drop-invalid-index", "nope", url=database_url)
    two = project.run("repair", "--remove", "1.1.0", "--drop-invalid-indexes", url=database_url)
    stray = project.run("repair", "1.1.0", url=database_url)

    assert valid.returncode == 2 and "t_id_val: is a valid index" in valid.stderr
    assert unknown.returncode == 2 and "nope: is not an invalid index" in unknown.stderr
    assert two.returncode == 2 and "one action at a time" in two.stderr
    assert stray.returncode == 2 and "VERSION arguments go with --accept-formatting" in stray.stderr
    assert invalid(database_url) == [("t_id_val", True), ("t_val_key", False)]

    result = ok(project.run("repair", "--drop-invalid-index", "public.t_val_key", url=database_url))
    assert result.stdout.strip() == "dropped invalid index public.t_val_key on public.t"
    assert invalid(database_url) == [("t_id_val", True)]
    nothing = ok(project.run("repair", "--drop-invalid-indexes", url=database_url))
    assert nothing.stdout.strip() == "nothing to do: no invalid indexes"


def test_a_drop_that_fails_exits_3_keeps_the_index_and_is_logged(project: Project, database_url: str) -> None:
    failing_unique_index(project, database_url)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # held until the block ends
        result = project.run(
            "repair", "--drop-invalid-indexes", url=database_url, env={"PGOPTIONS": "-c lock_timeout=300"}
        )
        # pg_get_indexdef would wait for the table: the listing gives up on the definition.
        listing = ok(project.run("repair", url=database_url)).stdout
    assert "invalid index public.t_val_key on public.t (definition unavailable: locked)" in listing
    assert result.returncode == 3, result.stderr
    assert (
        "sqlmig: DROP INDEX CONCURRENTLY public.t_val_key; failed: ERROR [55P03]: canceling "
        "statement due to lock timeout"
    ) in result.stderr
    assert invalid(database_url) == [("t_val_key", False)]
    assert " repair failed " in events(project, database_url)[0]
    ok(project.run("repair", "--drop-invalid-indexes", url=database_url))
    assert invalid(database_url) == []


def test_mark_applied_warns_that_an_invalid_index_is_still_there(project: Project, database_url: str) -> None:
    failing_unique_index(project, database_url)
    result = ok(project.run("repair", "--mark-applied", "1.1.0", url=database_url))
    assert result.stdout.strip() == "marked 002_unique_val (1.1.0) applied"
    assert "warning: invalid index public.t_val_key on public.t is still there" in result.stderr


def test_library_repair_returns_models(project: Project, database_url: str) -> None:
    failing_unique_index(project, database_url)
    cfg = project.config(database_url)

    report = sqlmig.repair(cfg)
    assert [i.qualified for i in report.invalid_indexes] == ["public.t_val_key"]
    assert report.invalid_indexes[0].drop_sql == "DROP INDEX CONCURRENTLY public.t_val_key;"
    assert [r.version for r in report.unfinished] == ["1.1.0"]
    assert report.done == ()

    assert sqlmig.repair(cfg, drop_index=["t_val_key"]).done == (
        "dropped invalid index public.t_val_key on public.t",
    )


@pytest.mark.timeout(60)
def test_on_a_terminal_repair_offers_to_drop_invalid_indexes(project: Project, database_url: str) -> None:
    failing_unique_index(project, database_url)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["SQLMIG_DATABASE_URL"] = database_url
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*SQLMIG, "repair"], cwd=project.root, env=env, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    seen = b""
    answered = False
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(primary, b"y\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=10)
    os.close(primary)
    text = seen.decode()
    assert proc.returncode == 0, text
    assert "drop 1 invalid index(es) now with DROP INDEX CONCURRENTLY? [y/N]" in text
    assert "dropped invalid index public.t_val_key on public.t" in text
    assert invalid(database_url) == []
