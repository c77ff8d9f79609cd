"""Many targets in one run (issue 18), against the ways people do it today, on one fresh server:

    .venv/bin/python bench/fleet.py [--tenants 200] [--noop-tenants 1000] [--rounds 2]

- fleet: `sqlmig up --each-schema 'tenant_%' --parallel 8` over TENANTS schemas × 10 migrations;
- loop: a shell loop of one `sqlmig --schema tenant_i up` process per schema (what a migrate.sh
  does without this feature);
- psql: the floor, one psql session applying the same 10 × TENANTS steps, each file in its own
  transaction after `SET search_path` (no history table, no lock, no checks);
- no-op: the fleet again over NOOP_TENANTS schemas that are all up to date.

Each measurement runs on its own new database; rounds alternate the three. Prints medians and
the ratios the issue sets targets for (fleet ≥ 5× faster than the loop, ≤ 1.5× psql; no-op ≤ 2 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlmig.db.embedded import EmbeddedServer, bin_dir  # noqa: E402

SQLMIG = [str(Path(sys.executable).parent / "sqlmig")]
MIGRATIONS = 10


def project(root: Path) -> Path:
    (root / "migrations").mkdir(parents=True)
    (root / "rollbacks").mkdir()
    for n in range(1, MIGRATIONS + 1):
        (root / "migrations" / f"{n:03d}_step_{n}.sql").write_text(
            f"-- Version: 1.{n}.0\nCREATE TABLE t{n} (id bigint PRIMARY KEY, note text);\n"
            f"CREATE INDEX t{n}_note ON t{n} (note);\n"
        )
        (root / "rollbacks" / f"{n:03d}_step_{n}_rollback.sql").write_text(f"DROP TABLE t{n};\n")
    return root


def database(server_url: str, tenants: int) -> str:
    name = f"f_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("".join(f"CREATE SCHEMA tenant_{i:04d};" for i in range(tenants)))
    return url


def timed(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, shell: bool = False) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, shell=shell)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv if not shell else 'shell loop'} failed: {result.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--noop-tenants", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"fleet": [], "loop": [], "psql": [], "noop": []}
    with tempfile.TemporaryDirectory(prefix="sqlmig-fleet-") as tmp:
        work = Path(tmp)
        server = EmbeddedServer(work / "server")
        server_url = server.start()
        root = project(work / "project")
        script = work / "all.sql"
        with script.open("w") as out:  # the psql floor: the same steps, nothing else
            for i in range(args.tenants):
                for path in sorted((root / "migrations").glob("*.sql")):
                    out.write(f"SET search_path = tenant_{i:04d};\nBEGIN;\n{path.read_text()}COMMIT;\n")
        psql = str(bin_dir() / "psql")
        try:
            for _ in range(args.rounds):
                url = database(server_url, args.tenants)
                env = {"SQLMIG_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
                samples["fleet"].append(
                    timed([*SQLMIG, "up", "--each-schema", "tenant_%", "--parallel", "8"], cwd=root, env=env)
                )
                url = database(server_url, args.tenants)
                loop = (
                    f"for i in $(seq -f '%04g' 0 {args.tenants - 1}); do SQLMIG_DATABASE_URL='{url}' "
                    f"{SQLMIG[0]} --schema tenant_$i up -q >/dev/null || exit 1; done"
                )
                samples["loop"].append(timed(["bash", "-c", loop], cwd=root))
                url = database(server_url, args.tenants)
                samples["psql"].append(
                    timed([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), url], cwd=root)
                )
            url = database(server_url, args.noop_tenants)
            env = {"SQLMIG_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
            timed([*SQLMIG, "up", "--each-schema", "tenant_%", "--parallel", "8"], cwd=root, env=env)
            for _ in range(args.rounds):
                samples["noop"].append(
                    timed([*SQLMIG, "up", "--each-schema", "tenant_%", "--parallel", "8"], cwd=root, env=env)
                )
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in samples.items()}
    loop, psql_ratio = med["loop"] / med["fleet"], med["fleet"] / med["psql"]
    steps = args.tenants * MIGRATIONS
    print(f"{args.tenants} tenant schemas x {MIGRATIONS} migrations ({steps} steps), {args.rounds} round(s)")
    print(f"  sqlmig up --each-schema --parallel 8   {med['fleet']:7.2f} s")
    print(f"  shell loop of sqlmig --schema … up     {med['loop']:7.2f} s   loop/fleet {loop:.1f}x", end="")
    print(f" (target >= 5x): {'met' if loop >= 5 else 'NOT met'}")
    print(
        f"  one psql session, all steps            {med['psql']:7.2f} s   fleet/psql {psql_ratio:.2f}x",
        end="",
    )
    print(f" (target <= 1.5x): {'met' if psql_ratio <= 1.5 else 'NOT met'}")
    print(f"no-op over {args.noop_tenants} tenant schemas", end="")
    print(f"   {med['noop']:7.2f} s   (target <= 2 s): {'met' if med['noop'] <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
