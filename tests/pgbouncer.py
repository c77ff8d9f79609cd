"""A real PgBouncer in front of the test server, for the lock-mode tests.

Started from a config written to a temp directory: listening on 127.0.0.1 on a free port,
`auth_type = trust` with an auth_file, `pool_mode = transaction` and a small pool, so that
clients really share server connections; the server is the test server (the embedded one's
Unix socket, or SQLMIG_TEST_DSN's host). `./test.sh` installs the Debian package when it can.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Not on a non-root PATH on Debian.
_CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer")
# PgBouncer refuses to run as root; as root it runs as the embedded server's user (which can
# reach that server's socket), else as `postgres` (the Debian package's), else nobody.
_RUN_AS = ("embedded_postgres", "postgres", "nobody")


def find() -> str | None:
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PgBouncer:
    port: int
    pool_size: int
    log: Path

    def url(self, database_url: str, **params: object) -> str:
        """The URL of the same database and user, through this PgBouncer."""
        server = conninfo_to_dict(database_url)
        out: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "dbname": server.get("dbname", "postgres"),
            "user": server.get("user") or "postgres",
        }
        if server.get("password"):
            out["password"] = server["password"]
        out.update(params)
        return make_conninfo("", **out)  # type: ignore[arg-type]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def running(server_dsn: str, *, pool_size: int = 2) -> Iterator[PgBouncer]:
    """Start PgBouncer in front of `server_dsn`'s server; stop it afterwards."""
    binary = find()
    assert binary is not None
    server = conninfo_to_dict(server_dsn)
    user = str(server.get("user") or os.environ.get("PGUSER") or "postgres")
    backend = [
        f"host={_quote(str(server.get('host') or '/var/run/postgresql'))}",
        f"port={server.get('port') or 5432}",
        f"user={user}",
    ]
    if server.get("password"):
        backend.append(f"password={_quote(str(server['password']))}")
    home = Path(tempfile.mkdtemp(prefix="sqlmig-pgbouncer-"))
    port = _free_port()
    (home / "userlist.txt").write_text(f'"{user}" ""\n')
    (home / "pgbouncer.ini").write_text(f"""\
[databases]
* = {" ".join(backend)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home / "userlist.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
server_lifetime = 3600
server_idle_timeout = 600
query_wait_timeout = 120
ignore_startup_parameters = extra_float_digits,options
logfile = {home / "pgbouncer.log"}
pidfile = {home / "pgbouncer.pid"}
""")
    argv = [binary]
    if os.geteuid() == 0:
        run_as = next(u for u in _RUN_AS if _user_exists(u))
        entry = pwd.getpwnam(run_as)
        for path in (home, *home.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        home.chmod(0o755)
        argv += ["-u", run_as]
    argv.append(str(home / "pgbouncer.ini"))
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    bouncer = PgBouncer(port=port, pool_size=pool_size, log=home / "pgbouncer.log")
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {proc.returncode}:\n{bouncer.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not listen on {port}:\n{bouncer.log_tail()}")
            time.sleep(0.05)
        yield bouncer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
