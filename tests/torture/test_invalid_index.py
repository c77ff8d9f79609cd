"""An INVALID index left by a failed CONCURRENTLY build never hides.

A unique index built CONCURRENTLY on duplicate data fails and leaves an INVALID index behind.
After `repair --remove` (the row is gone, the index is not) a rerun of the same file, written
with IF NOT EXISTS as such files often are, skips the index and records `applied`. `repair
--remove` must warn, as `--mark-applied` does; `up` must say so after its no-transaction step,
and `status` and `validate` must report it until it is dropped.
"""

from __future__ import annotations

from tests.conftest import Project, query
from tests.torture.helpers import run


def test_an_invalid_index_is_reported_by_repair_up_status_and_validate(
    project: Project, database_url: str
) -> None:
    project.add(
        1,
        "t",
        "CREATE TABLE t (id int PRIMARY KEY, v int);\n"
        "INSERT INTO t SELECT g, g % 10 FROM generate_series(1, 100) g;\n",
        "DROP TABLE t;\n",
    )
    project.add(
        2,
        "t_v",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\n",
        "DROP INDEX t_v;\n",
        header="-- sqlmig: no-transaction\n",
    )
    failed = run(project, "up", url=database_url)
    assert failed.returncode == 3
    assert query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v'::regclass") == [
        (False,)
    ]

    removed = run(project, "repair", "--remove", "1.2.0", url=database_url)
    again = run(project, "up", url=database_url)
    status = run(project, "status", url=database_url)
    validate = run(project, "validate", url=database_url)

    assert removed.returncode == 0
    assert "warning: invalid index public.t_v on public.t is still there" in (removed.stdout + removed.stderr)
    assert again.returncode == 0, "the rerun itself succeeds: IF NOT EXISTS skipped the index"
    assert "invalid index public.t_v on public.t" in again.stdout + again.stderr
    assert "invalid index public.t_v on public.t" in status.stdout + status.stderr
    assert validate.returncode == 6
    assert "invalid index public.t_v on public.t" in validate.stdout + validate.stderr
