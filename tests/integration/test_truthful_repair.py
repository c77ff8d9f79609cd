"""What repair, up and down say is true: each hint is followed here, and the database state it
leads to is checked. Stored rollbacks can be corrected (repair --refresh-rollback)."""

from __future__ import annotations

from tests.conftest import Project, query, table_exists


def rows(url: str) -> list[tuple]:
    return query(url, "SELECT version, status, error IS NOT NULL FROM schema_version ORDER BY 1")


def index_exists(url: str, name: str) -> bool:
    return query(url, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def two_step(project: Project, second: str, rollback: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int, note text);\n", "DROP TABLE a;\n")
    project.add(2, "index_a", second, rollback, header="-- sqlmig: no-transaction\n")


# -- stored rollbacks ------------------------------------------------------------------------------


def test_a_corrected_rollback_file_is_shown_everywhere_and_refresh_rollback_stores_it(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "-- sqlmig: irreversible not written yet\n")
    assert project.run("up", url=database_url).returncode == 0
    (project.rollbacks / "001_create_a_rollback.sql").write_text("DROP TABLE a;\n")
    said = (
        "rollbacks/001_create_a_rollback.sql: warning: differs from the rollback stored when "
        "001_create_a was applied"
    )

    for command in (("status",), ("validate",)):
        result = project.run(*command, url=database_url)
        assert result.returncode == 0
        assert said in result.stdout + result.stderr, command
        assert "`sqlmig repair --refresh-rollback 1.1.0` records the file's" in result.stdout + result.stderr
    listing = project.run("repair", url=database_url)
    assert "  store the file's: sqlmig repair --refresh-rollback 1.1.0" in listing.stdout

    # down runs the stored text (decided: what was reviewed and applied), and says how to change it
    for command in (("down", "--dry-run"), ("down",)):
        result = project.run(*command, url=database_url)
        assert result.returncode == 2
        assert (
            "001_create_a (1.1.0) is irreversible: not written yet (as stored when it was "
            "applied; the file now differs)"
        ) in result.stderr
        assert "`sqlmig repair --refresh-rollback 1.1.0` stores the file's rollback" in result.stderr
    assert table_exists(database_url, "a")

    result = project.run("repair", "--refresh-rollback", "1.1.0", url=database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "stored rollbacks/001_create_a_rollback.sql as the rollback of 001_create_a (1.1.0): checksum "
    )
    assert query(database_url, "SELECT rollback_sql FROM schema_version") == [("DROP TABLE a;\n",)]
    [(detail,)] = query(database_url, "SELECT detail FROM schema_version_events WHERE action = 'repair'")
    assert "checksum" in detail and "->" in detail
    assert said not in project.run("status", url=database_url).stdout

    assert project.run("down", url=database_url).returncode == 0
    assert not table_exists(database_url, "a")
    assert rows(database_url) == []


def test_down_dry_run_names_the_stored_text_it_would_run(project: Project, database_url: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    assert project.run("up", url=database_url).returncode == 0
    (project.rollbacks / "001_create_a_rollback.sql").write_text("DROP TABLE IF EXISTS a;\n")

    result = project.run("down", "--dry-run", url=database_url)

    assert result.returncode == 0, result.stderr
    assert (
        "would roll back 001_create_a (1.1.0) from the text stored when it was applied "
        "(rollbacks/001_create_a_rollback.sql differs)"
    ) in result.stdout
    assert "DROP TABLE a;" in result.stdout and "IF EXISTS" not in result.stdout


# -- failures say what is true, and their hints lead where they say ---------------------------


def test_a_no_transaction_file_that_stops_part_way_names_the_committed_lines(
    project: Project, database_url: str
) -> None:
    two_step(
        project,
        "CREATE INDEX CONCURRENTLY a_id ON a (id);\n\nCREATE INDEX CONCURRENTLY a_x ON nope (id);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_id;\n",
    )

    result = project.run("up", url=database_url)

    assert result.returncode == 3
    assert (
        "sqlmig: this no-transaction migration stopped part-way: its statements at line 3 "
        "committed; it is recorded as `failed`: finish it by hand, then `sqlmig repair "
        "--mark-applied 1.2.0`, or undo them, then `sqlmig repair --remove 1.2.0` and "
        "`sqlmig up` again"
    ) in result.stderr
    assert rows(database_url) == [("1.1.0", "applied", False), ("1.2.0", "failed", True)]
    status = project.run("status", url=database_url).stdout
    assert "applied:         1\nfailed:          1\n" in status

    # The hint, followed: undo what committed, remove the row, fix the file, up again.
    query(database_url, "DROP INDEX a_id")
    assert project.run("repair", "--remove", "1.2.0", url=database_url).returncode == 0
    (project.migrations / "002_index_a.sql").write_text(
        "-- Version: 1.2.0\n-- sqlmig: no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"
    )
    assert project.run("up", url=database_url).returncode == 0
    assert rows(database_url) == [("1.1.0", "applied", False), ("1.2.0", "applied", False)]
    assert index_exists(database_url, "a_id")


def test_a_no_transaction_file_whose_first_statement_fails_says_nothing_committed(
    project: Project, database_url: str
) -> None:
    two_step(project, "CREATE INDEX CONCURRENTLY a_x ON nope (id);\n", "SELECT 1;\n")

    result = project.run("up", url=database_url)

    assert result.returncode == 3
    assert (
        "sqlmig: nothing of this no-transaction migration committed (its first statement "
        "failed" in result.stderr
    )
    assert "`sqlmig repair --remove 1.2.0` and `sqlmig up` again" in result.stderr
    [(error,)] = query(database_url, "SELECT error FROM schema_version WHERE version = '1.2.0'")
    assert error == 'migrations/002_index_a.sql:3:1: ERROR [42P01]: relation "nope" does not exist'


def test_finish_by_hand_then_mark_applied_leads_to_an_applied_row(
    project: Project, database_url: str
) -> None:
    two_step(
        project,
        "CREATE INDEX CONCURRENTLY a_id ON a (id);\n"
        "CREATE INDEX CONCURRENTLY a_note ON a (no_such_column);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_id;\n",
    )
    assert project.run("up", url=database_url).returncode == 3

    query(database_url, "CREATE INDEX a_note ON a (note)")  # finished by hand
    result = project.run("repair", "--mark-applied", "1.2.0", url=database_url)

    assert result.returncode == 0
    assert rows(database_url)[-1] == ("1.2.0", "applied", True)
    assert project.run("up", url=database_url).stdout.startswith("already up to date")


def test_a_rollback_that_stops_part_way_is_resolved_with_remove_as_its_hint_says(
    project: Project, database_url: str
) -> None:
    two_step(
        project,
        "CREATE INDEX CONCURRENTLY a_id ON a (id);\nCREATE INDEX CONCURRENTLY a_note ON a (note);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_id;\nDROP INDEX CONCURRENTLY a_missing;\n",
    )
    assert project.run("up", url=database_url).returncode == 0

    result = project.run("down", url=database_url)

    assert result.returncode == 3
    assert (
        "sqlmig: this no-transaction rollback stopped part-way: its statements at line 2 "
        "committed; it is recorded as `rolling_back`: finish the rollback by hand, then "
        "`sqlmig repair --remove 1.2.0` (the migration is gone), or restore what it undid, "
        "then `sqlmig repair --mark-applied 1.2.0`"
    ) in result.stderr
    assert "the failed migration was rolled back" not in result.stderr
    assert rows(database_url)[-1] == ("1.2.0", "rolling_back", True)
    listing = project.run("repair", url=database_url).stdout
    assert "  rollback finished by hand (the migration is gone)? sqlmig repair --remove 1.2.0" in listing
    status = project.run("status", url=database_url)
    assert "rolling_back:    1" in status.stdout
    assert "`sqlmig repair --remove 1.2.0` if you finished the rollback by hand" in status.stdout

    # Finished by hand (a_note dropped too): the migration is gone, and --remove says so.
    query(database_url, "DROP INDEX a_note")
    assert project.run("repair", "--remove", "1.2.0", url=database_url).returncode == 0
    assert rows(database_url) == [("1.1.0", "applied", False)]
    assert project.run("up", url=database_url).returncode == 0  # applies it afresh
    assert index_exists(database_url, "a_id") and index_exists(database_url, "a_note")


def test_a_failed_down_speaks_of_rollbacks_and_shortens_long_lists(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE nope;\n")
    for n in range(2, 12):
        project.add(
            n, f"add_c{n}", f"ALTER TABLE a ADD COLUMN c{n} int;\n", f"ALTER TABLE a DROP COLUMN c{n};\n"
        )
    assert project.run("up", url=database_url).returncode == 0

    result = project.run("down", "--to", "0", url=database_url)

    assert result.returncode == 3
    assert "sqlmig: the failed rollback was rolled back; the migration is still applied" in result.stderr
    assert "sqlmig: rolled back before the failure: 10 migrations, 011_add_c11 … 002_add_c2" in result.stderr
    assert "applied before the failure" not in result.stderr
    assert rows(database_url) == [("1.1.0", "applied", False)]


def test_the_hint_after_an_edited_applied_file_does_not_send_to_an_empty_repair(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    assert project.run("up", url=database_url).returncode == 0
    (project.migrations / "001_create_a.sql").write_text("-- Version: 1.1.0\nCREATE TABLE a (id bigint);\n")

    result = project.run("up", url=database_url)

    assert result.returncode == 6
    assert "was edited after it was applied" in result.stderr
    assert "sqlmig repair" not in result.stderr
    assert project.run("repair", url=database_url).stdout == "nothing to repair\n"
