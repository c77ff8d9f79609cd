"""Two checkouts of sqlmig, the same no-op commands, in one run: does a change slow them down?

    .venv/bin/python bench/checkouts.py OLD_CHECKOUT [NEW_CHECKOUT] [--applied 1000] [--rounds 15]

NEW_CHECKOUT defaults to this one. A project of `--applied` one-table migrations is applied once
on a fresh embedded server (by NEW); then `up` (nothing to do) and `status` run `--rounds` times
for each checkout, interleaved (old, new, old, new…) so that a noisy machine weighs on both
alike, each as its own process (`python -c 'import sqlmig_main; sqlmig_main.main()'` with the
checkout first on sys.path). Prints the median wall time and peak RSS of each, and the ratio.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import generated, run  # noqa: E402  (bench/bench.py, beside this file)
from sqlmig.db.embedded import EmbeddedServer  # noqa: E402

MAIN = "import sys; sys.argv[0] = 'sqlmig'; import sqlmig_main; sqlmig_main.main()"


def command(checkout: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(checkout)!r}); {MAIN}", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=REPO)
    parser.add_argument("--applied", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    checkouts = {"old": args.old.resolve(), "new": args.new.resolve()}
    for checkout in checkouts.values():
        compileall.compile_dir(checkout / "sqlmig", quiet=1)  # as pip install does
    with tempfile.TemporaryDirectory(prefix="sqlmig-checkouts-") as tmp:
        work = Path(tmp)
        server = EmbeddedServer(work / "server")
        server_url = server.start()
        try:
            name = f"c_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = server_url.replace("/postgres?", f"/{name}?")
            root = work / "project"
            (root / "migrations").mkdir(parents=True)
            (root / "rollbacks").mkdir()
            for i, stem, up, down in generated(args.applied):
                (root / "migrations" / f"{stem}.sql").write_text(f"-- Version: 1.{i}.0\n{up}")
                (root / "rollbacks" / f"{stem}_rollback.sql").write_text(down)
            env = {"SQLMIG_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
            run(command(checkouts["new"], "up"), cwd=root, env=env)
            samples: dict[tuple[str, str], list[tuple[float, int]]] = {}
            for _ in range(args.rounds):
                for what in ("up", "status"):
                    for label, checkout in checkouts.items():
                        sample = run(command(checkout, what), cwd=root, env=env)
                        samples.setdefault((what, label), []).append(sample)
        finally:
            server.stop()
    print(f"{args.applied} applied, {args.rounds} rounds, medians; old = {checkouts['old']}")
    print(f"{'command':10} {'old s':>8} {'new s':>8} {'new/old':>8} {'old MiB':>8} {'new MiB':>8}")
    for what in ("up", "status"):
        old = samples[(what, "old")]
        new = samples[(what, "new")]
        old_s, new_s = (statistics.median(s for s, _ in x) for x in (old, new))
        old_m, new_m = (statistics.median(m for _, m in x) / 1024 for x in (old, new))
        print(f"{what:10} {old_s:8.3f} {new_s:8.3f} {new_s / old_s:8.2f} {old_m:8.1f} {new_m:8.1f}")


if __name__ == "__main__":
    main()
