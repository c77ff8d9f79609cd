"""One command over many targets (sqlmig.engine.fleet), as a SaaS with a schema per tenant and a
team with several databases run it: real schemas, real servers, real processes, real kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from sqlmig.db.embedded import EmbeddedServer
from tests.conftest import SQLMIG, Project, query

TENANTS = 50
MIGRATIONS = 10


def tenants(url: str, count: int = TENANTS, *, bad: tuple[int, ...] = ()) -> list[str]:
    """Schemas tenant_000… (and one that is no tenant); in the `bad` ones, a row that migration
    3's CHECK refuses."""
    names = [f"tenant_{i:03d}" for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA billing")
        for i, name in enumerate(names):
            conn.execute(f"CREATE SCHEMA {name}")
            if i in bad:
                conn.execute(f"CREATE TABLE {name}.legacy (x int); INSERT INTO {name}.legacy VALUES (-1)")
    return names


def ten_migrations(project: Project, *, sleep: float = 0) -> None:
    for n in range(1, MIGRATIONS + 1):
        body = f"CREATE TABLE t{n} (id int PRIMARY KEY, note text);\n"
        if n == 3:
            body += "ALTER TABLE IF EXISTS legacy ADD CONSTRAINT legacy_positive CHECK (x > 0);\n"
        if sleep:
            body += f"SELECT pg_sleep({sleep});\n"
        project.add(n, f"step_{n}", body, f"DROP TABLE t{n};\n")


def applied(url: str, schema: str) -> list[str]:
    if not query(
        url, "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_version'", (schema,)
    ):
        return []
    return [v for (v,) in query(url, f"SELECT version FROM {schema}.schema_version WHERE status = 'applied'")]


def tables(url: str, schema: str) -> int:
    return query(
        url, "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename ~ '^t[0-9]+$'", (schema,)
    )[0][0]


def test_fifty_tenant_schemas_get_their_ten_migrations_each_once_eight_at_a_time(
    project: Project, database_url: str
) -> None:
    names = tenants(database_url)
    ten_migrations(project)

    result = project.run("up", "--each-schema", "tenant_%", "--parallel", "8", url=database_url, timeout=300)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line.split(":")[0] for line in lines[:-1]) == names
    assert all("none -> 1.10.0, 10 applied" in line for line in lines[:-1])
    assert lines[-1].startswith(f"up on {TENANTS} target(s), 8 at once: {TENANTS} ok, 0 failed, 0 not run; ")
    assert lines[-1].endswith("; exit 0")
    for name in names:
        assert applied(database_url, name) == [f"1.{n}.0" for n in range(1, MIGRATIONS + 1)], name
        assert tables(database_url, name) == MIGRATIONS
    assert applied(database_url, "billing") == [] and applied(database_url, "public") == []

    again = project.run("up", "--each-schema", "tenant_%", url=database_url, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "at 1.10.0" in again.stdout.splitlines()[0] and f"{TENANTS} ok" in again.stdout
    # Each tenant's drift check watches its own schema: the others' tables are not its drift.
    status = project.run("status", "--each-schema", "tenant_%", "--exit-code", url=database_url, timeout=300)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "drift" not in status.stdout + status.stderr


def test_drift_in_one_tenant_schema_is_reported_for_that_tenant_only(
    project: Project, database_url: str
) -> None:
    tenants(database_url, 3)
    ten_migrations(project)
    assert project.run("up", "--each-schema", "tenant_%", url=database_url).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE tenant_001.t1 ADD COLUMN by_hand int")

    status = project.run("status", "--each-schema", "tenant_%", "--exit-code", url=database_url)

    assert status.returncode == 6
    lines = {line.split(":")[0]: line for line in status.stdout.splitlines()[:3]}
    assert sorted(lines) == ["tenant_000", "tenant_001", "tenant_002"]
    assert "drift" not in lines["tenant_000"] and "drift" not in lines["tenant_002"]
    assert "column tenant_001.t1.by_hand was added outside sqlmig" in lines["tenant_001"]


def test_a_tenant_whose_data_breaks_a_migration_fails_alone_with_keep_going(
    project: Project, database_url: str
) -> None:
    names = tenants(database_url, 12, bad=(7,))
    ten_migrations(project)

    result = project.run(
        "up", "--each-schema", "tenant_%", "--keep-going", "--parallel", "4", url=database_url
    )

    assert result.returncode == 3, result.stderr
    assert "tenant_007: failed, exit 3" in result.stderr
    assert (
        'ERROR [23514]: check constraint "legacy_positive" of relation "legacy" is violated' in result.stderr
    )
    assert result.stdout.splitlines()[-1].startswith(
        "up on 12 target(s), 4 at once: 11 ok, 1 failed, 0 not run"
    )
    for name in names:
        expected = ["1.1.0", "1.2.0"] if name == "tenant_007" else [f"1.{n}.0" for n in range(1, 11)]
        assert applied(database_url, name) == expected, name


def test_a_failing_canary_stops_the_run_before_any_other_schema_is_touched(
    project: Project, database_url: str
) -> None:
    names = tenants(database_url, 10, bad=(0,))
    ten_migrations(project)

    result = project.run(
        "up", "--each-schema", "tenant_%", "--canary", "2", "--keep-going", url=database_url, timeout=300
    )

    assert result.returncode == 3
    assert applied(database_url, "tenant_000") == ["1.1.0", "1.2.0"]
    for name in names[1:]:
        assert applied(database_url, name) == [], name
        assert tables(database_url, name) == 0, name
    assert "tenant_001: not run (not started: an earlier target failed)" in result.stdout
    assert "0 ok, 1 failed, 9 not run" in result.stdout


def test_without_keep_going_no_target_starts_after_a_failure(project: Project, database_url: str) -> None:
    tenants(database_url, 6, bad=(1,))
    ten_migrations(project)

    result = project.run("up", "--each-schema", "tenant_%", "--parallel", "1", "--json", url=database_url)

    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert [(t["name"], t["outcome"], t["exit_code"]) for t in report["targets"]] == [
        ("tenant_000", "ok", 0),
        ("tenant_001", "failed", 3),
        *((f"tenant_00{i}", "not run", 0) for i in range(2, 6)),
    ]
    assert (report["exit_code"], report["ok"], report["failed"], report["not_run"]) == (3, 1, 1, 4)


def test_two_databases_on_two_servers_as_named_targets(
    project: Project, database_url: str, tmp_path: Path
) -> None:
    other = EmbeddedServer(tmp_path / "second-server")
    other_url = other.start()
    try:
        ten_migrations(project)
        (project.root / "sqlmig.toml").write_text(f'[targets]\nstaging = "{database_url}"\n')

        result = project.run(
            "up", "--target", "staging", "--target", f"eu={other_url}", "--to", "1.4.0", timeout=300
        )

        assert result.returncode == 0, result.stderr
        # A line per target as each one ends (here both at once), then the summary.
        assert sorted(line.split(":")[0] for line in result.stdout.splitlines()[:2]) == ["eu", "staging"]
        assert (
            applied(database_url, "public")
            == applied(other_url, "public")
            == ["1.1.0", "1.2.0", "1.3.0", "1.4.0"]
        )
        status = project.run("status", "--all-targets", "--target", f"eu={other_url}", "--exit-code")
        assert status.returncode == 1, status.stderr  # pending migrations on both
        assert "staging: at 1.4.0, 6 pending" in status.stdout
    finally:
        other.stop()


def test_fleets_racing_on_the_same_schemas_apply_each_migration_once(
    project: Project, database_url: str
) -> None:
    names = tenants(database_url, 20)
    ten_migrations(project, sleep=0.01)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["SQLMIG_DATABASE_URL"] = database_url
    runs = [
        subprocess.Popen(
            [*SQLMIG, "up", "--each-schema", "tenant_%", "--parallel", "4"],
            cwd=project.root,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outcomes = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs]

    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    for name in names:
        rows = query(
            database_url, f"SELECT version, count(*) FROM {name}.schema_version GROUP BY 1 ORDER BY 1"
        )
        assert len(rows) == MIGRATIONS and all(count == 1 for _, count in rows), name
        assert tables(database_url, name) == MIGRATIONS


def test_a_fleet_killed_mid_run_is_completed_by_running_it_again(project: Project, database_url: str) -> None:
    names = tenants(database_url, 16)
    ten_migrations(project, sleep=0.1)
    env = {**os.environ, "SQLMIG_DATABASE_URL": database_url}
    run = subprocess.Popen(
        [*SQLMIG, "up", "--each-schema", "tenant_%", "--parallel", "4"],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while sum(len(applied(database_url, name)) for name in names) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)  # killed once the fleet is well under way, not before it began
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    partial = [len(applied(database_url, name)) for name in names]
    assert 0 < sum(partial) < len(names) * MIGRATIONS, partial  # it was killed mid-fleet

    again = project.run("up", "--each-schema", "tenant_%", "--parallel", "4", url=database_url, timeout=300)

    assert again.returncode == 0, again.stderr
    for name in names:
        assert applied(database_url, name) == [f"1.{n}.0" for n in range(1, MIGRATIONS + 1)], name
        assert tables(database_url, name) == MIGRATIONS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--targets", "targets.txt"],
            "targets.txt:3: expected `NAME URL` (a name, a space, a connection URL)",
        ),
        (["--target", "nowhere"], "--target nowhere: no such target in [targets] (none in sqlmig.toml)"),
        (
            ["--each-schema", "nobody_%"],
            "no targets: nothing matched the pattern, the file or the list given",
        ),
        (["--target", "a=postgresql://x/y", "--target", "a=postgresql://x/z"], "target 'a' is given twice"),
    ],
)
def test_bad_target_lists_are_refused_before_any_target_runs(
    project: Project, database_url: str, args: list[str], message: str
) -> None:
    ten_migrations(project)
    (project.root / "targets.txt").write_text(f"# staging first\nok {database_url}\njust-a-name\n")

    result = project.run("up", *args, url=database_url)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert applied(database_url, "public") == []


def test_a_worker_hands_its_connection_on_clean_nothing_of_one_tenant_reaches_the_next(
    project: Project, database_url: str
) -> None:
    names = tenants(database_url, 5)
    # A temporary table, a setting and a role left by one tenant's migration would be seen by
    # the next tenant on the same connection (one worker: every target reuses it).
    project.add(
        1,
        "leftovers",
        """
        CREATE TEMP TABLE IF NOT EXISTS seen (schema text);
        INSERT INTO seen SELECT current_schema();
        CREATE TABLE t1 AS SELECT count(*) AS n, current_setting('search_path') AS path FROM seen;
        SELECT set_config('app.marker', 'left', false);
        """,
        "DROP TABLE t1;\n",
    )

    result = project.run("up", "--each-schema", "tenant_%", "--parallel", "1", url=database_url)

    assert result.returncode == 0, result.stderr
    for name in names:
        assert query(database_url, f"SELECT n, path FROM {name}.t1") == [(1, f"{name}, public")], name


def test_the_library_runs_a_command_over_targets_and_returns_each_ones_own_report(
    project: Project, database_url: str
) -> None:
    import sqlmig
    from sqlmig.engine import fleet

    tenants(database_url, 3, bad=(2,))
    ten_migrations(project)
    config = project.config(database_url)
    targets = fleet.each_schema(config, like="tenant_%")

    report = fleet.run(config, targets, "up", sqlmig.up, parallel=2, keep_going=True)

    assert [(t.name, t.outcome, t.exit_code) for t in report.targets] == [
        ("tenant_000", "ok", 0),
        ("tenant_001", "ok", 0),
        ("tenant_002", "failed", 3),
    ]
    first = report.targets[0].report
    assert isinstance(first, sqlmig.RunReport) and len(first.steps) == MIGRATIONS
    assert report.targets[2].report is None and report.exit_code == 3


def test_render_each_schema_gives_one_psql_script_that_migrates_every_tenant_and_can_run_again(
    project: Project, database_url: str
) -> None:
    from sqlmig.db.embedded import bin_dir

    names = tenants(database_url, 4)
    ten_migrations(project)
    rendered = project.run("render", "up", "--each-schema", "tenant_%", url=database_url)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.count("\\echo sqlmig: schema tenant_") == 4

    for _ in range(2):  # the second run finds everything applied and skips it
        ran = subprocess.run(
            [str(bin_dir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", "-"],
            input=rendered.stdout,
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
    for name in names:
        assert applied(database_url, name) == [f"1.{n}.0" for n in range(1, MIGRATIONS + 1)], name
        assert tables(database_url, name) == MIGRATIONS
    status = project.run("status", "--each-schema", "tenant_%", "--exit-code", url=database_url)
    assert status.returncode == 0, status.stdout + status.stderr
