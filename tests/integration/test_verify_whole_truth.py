"""verify tells the whole truth on a realistic history (tests/histories.py: enums, PL/pgSQL and
SQL functions, triggers, views, DO blocks, no-transaction index builds): every leaky rollback is
named, with what it leaves or changes, and nothing else; the run goes on from each migration's
applied state; --fail-fast stops at the first; file problems stop it before anything runs."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import Project, query
from tests.histories import LEAKS, write_history

# The five leaks of the issue (one per kind) and one rollback that restores a function written
# with other whitespace, which is no leak. None sits after a no-transaction file.
LEAKY = {7: "table-left", 13: "column-not-restored", 18: "function-body", 24: "options", 33: "index-left"}
HISTORY = {**LEAKY, 38: "function-whitespace"}


def verify(project: Project, server_dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = project.run("verify", "--scratch-url", server_dsn, *args, timeout=600)
    print(result.stdout[-6000:], result.stderr)
    return result


def scratch_databases(server_dsn: str) -> list[str]:
    return [
        name
        for (name,) in query(
            server_dsn, "SELECT datname FROM pg_database WHERE starts_with(datname, 'sqlmig_verify_')"
        )
    ]


def blocks(stdout: str) -> dict[str, list[str]]:
    """`LEAKY name (version):` / `FAILED …:` → the lines under it."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        head = re.match(r"(LEAKY|FAILED) (\S+) \(", line)
        if head:
            current = out.setdefault(f"{head[1]} {head[2]}", [])
        elif line.startswith("  ") and current is not None:
            current.append(line.strip())
        else:
            current = None
    return out


def test_verify_names_every_leaky_rollback_and_nothing_else(project: Project, server_dsn: str) -> None:
    write_history(project.root, 40, HISTORY)

    result = verify(project, server_dsn)

    assert result.returncode == 1
    found = blocks(result.stdout)
    assert sorted(found) == sorted(f"LEAKY {n:04d}_step_{n}" for n in LEAKY)
    for n, kind in LEAKY.items():
        expected = LEAKS[kind].format(i=n)  # type: ignore[union-attr]
        assert any(expected in line for line in found[f"LEAKY {n:04d}_step_{n}"]), (n, kind)
    # The function whose body only lost its indentation is proven; the one whose body really
    # differs shows the two versions' lines.
    assert re.search(r"^proven 0038_step_38 \(1\.38\.0\)", result.stdout, re.M)
    assert found["LEAKY 0018_step_18"][1:] == ["-  RETURN 3;", "+    RETURN 4;"]
    # Every migration after a leak is checked, from the leaky one's applied state.
    assert len(re.findall(r"^proven ", result.stdout, re.M)) == 35
    assert "not checked" not in result.stdout
    assert re.search(
        r"^verify FAILED: proven 35, leaky 5, failed 0, irreversible 0 \([0-9.]+ s\)", result.stdout, re.M
    )
    assert scratch_databases(server_dsn) == []


def test_fail_fast_stops_at_the_first_leak_and_says_what_was_not_checked(
    project: Project, server_dsn: str
) -> None:
    write_history(project.root, 40, HISTORY)

    result = verify(project, server_dsn, "--fail-fast")

    assert result.returncode == 1
    assert list(blocks(result.stdout)) == ["LEAKY 0007_step_7"]
    assert (
        "not checked (--fail-fast stopped at 0007_step_7): 33 migrations, 0008_step_8 … 0040_step_40"
    ) in result.stdout
    assert "verify FAILED: proven 6, leaky 1, failed 0, irreversible 0, not checked 33 (" in result.stdout


def test_a_leaky_no_transaction_rollback_is_rechecked_from_a_fresh_applied_state(
    project: Project, server_dsn: str
) -> None:
    # The engine's own path (no-transaction files): after the leak the applied state is rebuilt
    # on a fresh scratch database, so 003 is judged against the right schema.
    project.add(1, "create_a", "CREATE TABLE a (id int, note text);\n", "DROP TABLE a;\n")
    project.add(
        2,
        "index_a",
        "CREATE INDEX CONCURRENTLY a_note ON a (note);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
        "-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY a_note;\n",
        header="-- sqlmig: no-transaction\n",
    )
    project.add(3, "drop_a_id", "DROP INDEX a_id;\n", "CREATE INDEX a_id ON a (id);\n")

    result = verify(project, server_dsn)

    assert result.returncode == 1
    assert blocks(result.stdout) == {
        "LEAKY 002_index_a": ["rollbacks/002_index_a_rollback.sql leaves index a_id behind"]
    }
    assert re.search(r"^proven 003_drop_a_id \(1\.3\.0\)", result.stdout, re.M)
    assert "verify FAILED: proven 2, leaky 1, failed 0, irreversible 0 (" in result.stdout
    assert scratch_databases(server_dsn) == []


def test_a_rollback_that_fails_is_reported_and_the_run_goes_on(project: Project, server_dsn: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    project.add(2, "add_b", "ALTER TABLE a ADD COLUMN b int;\n", "ALTER TABLE a DROP COLUMN no_such;\n")
    project.add(3, "add_c", "ALTER TABLE a ADD COLUMN c int;\n", "ALTER TABLE a DROP COLUMN c;\n")

    result = verify(project, server_dsn)

    assert result.returncode == 1
    assert blocks(result.stdout)["FAILED 002_add_b"][:2] == [
        "rollbacks/002_add_b_rollback.sql fails on the scratch database",
        'rollbacks/002_add_b_rollback.sql:1:1: ERROR [42703]: column "no_such" of relation "a" '
        "does not exist",
    ]
    assert re.search(r"^proven 003_add_c \(1\.3\.0\)", result.stdout, re.M)
    assert "verify FAILED: proven 2, leaky 0, failed 1, irreversible 0 (" in result.stdout


def test_a_migration_that_cannot_be_applied_stops_the_run_there(project: Project, server_dsn: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    project.add(2, "bad", "ALTER TABLE nope ADD COLUMN b int;\n", "SELECT 1;\n")
    project.add(3, "add_c", "ALTER TABLE a ADD COLUMN c int;\n", "ALTER TABLE a DROP COLUMN c;\n")

    result = verify(project, server_dsn)

    assert result.returncode == 1
    assert "not checked (002_bad could not be applied): 003_add_c" in result.stdout
    assert "verify FAILED: proven 1, leaky 0, failed 1, irreversible 0, not checked 1 (" in result.stdout


@pytest.mark.parametrize(
    ("where", "text", "code_line"),
    [
        (
            "migrations/0031_step_31.sql",
            "-- Version: 1.31.0\nCREATE TABLE x (id int);\nCREATE INDEX CONCURRENTLY x_i ON x (id);\n",
            "migrations/0031_step_31.sql:3",
        ),
        (
            "rollbacks/0031_step_31_rollback.sql",
            "DROP TABLE t31;\nCOMMIT;\n",
            "rollbacks/0031_step_31_rollback.sql:2",
        ),
    ],
)
def test_a_file_problem_midway_is_found_before_anything_runs(
    project: Project, server_dsn: str, where: str, text: str, code_line: str
) -> None:
    write_history(project.root, 40)
    (project.root / where).write_text(text)

    result = verify(project, server_dsn)

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"sqlmig: {code_line}: error: " in result.stderr
    assert "sqlmig: 1 problem in the migration files; nothing was run" in result.stderr
    assert scratch_databases(server_dsn) == []


def kept_databases(server_dsn: str) -> list[str]:
    return [
        name
        for (name,) in query(
            server_dsn, "SELECT datname FROM pg_database WHERE starts_with(datname, 'sqlmig_verified_')"
        )
    ]


def test_incremental_checks_only_what_an_earlier_run_did_not_prove(project: Project, server_dsn: str) -> None:
    write_history(project.root, 30)
    try:
        first = verify(project, server_dsn, "--incremental")
        assert first.returncode == 0
        assert len(re.findall(r"^proven \S+ \(.*re-apply matches", first.stdout, re.M)) == 30
        [kept] = kept_databases(server_dsn)

        # A pull request adds one migration: only it is checked, from the kept state.
        (project.migrations / "0031_step_31.sql").write_text(
            "-- Version: 1.31.0\nCREATE TABLE t31x (id int);\n"
        )
        (project.rollbacks / "0031_step_31_rollback.sql").write_text("DROP TABLE t31x;\n")
        second = verify(project, server_dsn, "--incremental")
        assert second.returncode == 0
        assert (
            "proven by an earlier run with the same files (--incremental): 30 migrations, "
            "0001_step_1 … 0030_step_30"
        ) in second.stdout
        assert re.search(r"^proven 0031_step_31 \(1\.31\.0\): rollback restores", second.stdout, re.M)
        assert "verified: proven 31, leaky 0, failed 0, irreversible 0 (" in second.stdout
        assert kept_databases(server_dsn) != [kept] and len(kept_databases(server_dsn)) == 1
        kept = kept_databases(server_dsn)[0]

        # An edited rollback in the middle: only the newest proven state is kept, so no kept
        # state matches its files any more and everything is checked again.
        rollback = project.rollbacks / "0013_step_13_rollback.sql"
        rollback.write_text(rollback.read_text().replace("DROP FUNCTION t13_count();\n", ""))
        third = verify(project, server_dsn, "--incremental")
        assert third.returncode == 1
        assert "(--incremental)" not in third.stdout
        assert blocks(third.stdout) == {
            "LEAKY 0013_step_13": ["rollbacks/0013_step_13_rollback.sql leaves function t13_count() behind"]
        }
        assert "verify FAILED: proven 30, leaky 1, failed 0, irreversible 0 (" in third.stdout
        assert kept_databases(server_dsn) == [kept]  # a run that is not all proven keeps nothing
    finally:
        for name in kept_databases(server_dsn):
            query(server_dsn, f'DROP DATABASE "{name}"')
    assert scratch_databases(server_dsn) == []
