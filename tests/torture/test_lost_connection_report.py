"""A connection lost in the middle of a batch is reported as what really happened.

Transactional migrations are sent back to back, 50 at a time; when the server session is
terminated, some of those sent may have committed without their results reaching sqlmig. The
report must come from the history as it is (read again on a new connection), not from what the
lost connection had confirmed: it names the last migration that committed and the first that
did not, and both agree with the database.
"""

from __future__ import annotations

import re
import threading
import time

import psycopg

from tests.conftest import Project, query
from tests.torture.helpers import run


def terminate_sqlmig_mid_run(url: str, done: threading.Event) -> None:
    """Terminate sqlmig's session once some migrations have committed (the issue saw ~1 s into
    the run), whatever the speed of the machine."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not done.is_set():
            if (
                conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
                and conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] >= 20
            ):
                break
            time.sleep(0.01)
        while not done.is_set():
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'sqlmig' AND datname = "
                "current_database()"
            ).fetchall()
            if rows:
                return
            time.sleep(0.01)


def test_a_session_terminated_mid_batch_reports_what_the_history_shows(
    project: Project, database_url: str
) -> None:
    for n in range(1, 201):
        project.add(
            n,
            f"step_{n}",
            f"CREATE TABLE step_{n} (id int);\nSELECT pg_sleep(0.01);\n",
            f"DROP TABLE step_{n};\n",
        )
    done = threading.Event()
    killer = threading.Thread(target=terminate_sqlmig_mid_run, args=(database_url, done))
    killer.start()
    try:
        result = run(project, "up", url=database_url, timeout=120)
    finally:
        done.set()
        killer.join()

    assert result.returncode == 5, result.stderr
    applied = [
        r[0]
        for r in query(
            database_url, "SELECT number FROM schema_version WHERE status = 'applied' ORDER BY number"
        )
    ]
    assert applied == list(range(1, len(applied) + 1)) and 0 < len(applied) < 200, applied
    last, first_missing = applied[-1], applied[-1] + 1
    print(f"the database has 001 … {last:03d} applied")
    said = re.search(r"(\d+) applied by this run, the last (\d+)_\S+; not applied: (\d+)_", result.stderr)
    assert said, result.stderr
    assert (int(said[1]), int(said[2]), int(said[3])) == (len(applied), last, first_missing)
    assert f"{first_missing:03d}_step_{first_missing}" in result.stderr
    # And the next run picks up exactly there.
    again = run(project, "up", url=database_url, timeout=120)
    assert again.returncode == 0
    assert f"applied {first_missing:03d}_step_{first_missing} " in again.stdout
