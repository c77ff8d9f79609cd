"""`sqlmig init [DIR]`: set up sqlmig in a project of one's own, never overwriting a file.

It writes migrations/ and rollbacks/, a sqlmig.toml with every setting commented out at its
default, the `.sqlmig/` line of .gitignore (the embedded server, caches and migrate.sh's
virtualenv live there) and a migrate.sh for that project: the deploy entrypoint, which installs
the sqlmig named at its top (SQLMIG_REQUIREMENT: a version, a wheel or a git URL) into
.sqlmig/venv, installs it again when that line changes, and runs it with the arguments and exit
code untouched.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlmig.about import VERSION as __version__
from sqlmig.errors import InvalidInput

# The settings of sqlmig.toml, in the order a newcomer reads them: (key, default as TOML, what).
SETTINGS = (
    (
        "database_url",
        None,
        "where to migrate; better from the environment (SQLMIG_DATABASE_URL, "
        "DATABASE_URL, PG*); nothing set: the embedded PostgreSQL in .sqlmig/",
    ),
    ("password_file", None, "a file holding the password (Docker secrets)"),
    (
        "schema",
        '"public"',
        "schema of the history table; another one also goes first on the migrations' search_path",
    ),
    ("table", '"schema_version"', "name of the history table"),
    ("role", None, "SET ROLE after connecting, so that what migrations create belongs to it"),
    ("migrations_dir", '"migrations"', "forward scripts, NNN_slug.sql"),
    ("rollbacks_dir", '"rollbacks"', "their rollbacks, NNN_slug_rollback.sql"),
    ("lock_timeout", '"300s"', "how long to wait for another run's lock (0 = do not wait)"),
    ("lock_mode", '"session"', '"transaction" behind PgBouncer in pool_mode=transaction'),
    (
        "migration_lock_timeout",
        '"5s"',
        "how long a migration's statement may wait for a table "
        'lock (SET LOCAL lock_timeout); "inherit" = the role\'s',
    ),
    ("statement_timeout", '"inherit"', "how long a migration's statement may run"),
    ("retries", "3", "times a migration rolled back by a lock timeout or deadlock runs again"),
    ("retry_delay", '"2s"', "the pause before the first retry (doubling after)"),
    ("connect_timeout", "10", "seconds to wait for the server to answer a connection"),
    ("application_name", '"sqlmig"', "how sqlmig's sessions show in pg_stat_activity"),
    ("backup_dir", None, "write a pg_dump there before applying anything"),
    ("file_cache", '"on"', "remember what each migration file says until it changes"),
    ("group_commit", '"on"', "commit a batch of small migrations with one WAL flush"),
)

MIGRATE_SH = r"""#!/usr/bin/env bash
# The deploy entrypoint of this project, written by `sqlmig init`: installs the sqlmig named
# below into .sqlmig/venv on first use, and again whenever that line changes, then runs it.
# Arguments, stdout/stderr and the exit code pass through untouched (see `sqlmig --help`).
SQLMIG_REQUIREMENT="${SQLMIG_REQUIREMENT:-__REQUIREMENT__}"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SQLMIG_VENV:-$here/.sqlmig/venv}"
python="${PYTHON:-python3}"
stamp="$venv/.sqlmig-requirement"

if [[ ! -x "$venv/bin/sqlmig" || ! -f "$stamp" || "$(cat "$stamp")" != "$SQLMIG_REQUIREMENT" ]]; then
    echo "migrate.sh: installing $SQLMIG_REQUIREMENT into $venv" >&2
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --force-reinstall "$SQLMIG_REQUIREMENT" >&2
    echo "$SQLMIG_REQUIREMENT" > "$stamp"
fi

# Run from the project, so that migrations/ and rollbacks/ are found wherever the caller is;
# the embedded server's notice names this script.
cd "$here"
export SQLMIG_COMMAND_NAME="${SQLMIG_COMMAND_NAME:-./migrate.sh}"
exec "$venv/bin/sqlmig" "$@"
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class InitReport:
    root: str
    created: tuple[str, ...]  # relative to root
    kept: tuple[str, ...]  # there already: left as they were
    next_steps: tuple[str, ...]


def init(directory: Path, *, requirement: str | None = None) -> InitReport:
    """Set up `directory` (created if missing) as a sqlmig project; nothing is overwritten."""
    root = directory.resolve()
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"{directory}: not a directory")
    created: list[str] = []
    kept: list[str] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in ("migrations", "rollbacks"):
            if (root / name).is_dir():
                kept.append(f"{name}/")
            else:
                (root / name).mkdir()
                created.append(f"{name}/")
        _write(root / "sqlmig.toml", _toml(), created, kept)
        script = MIGRATE_SH.replace("__REQUIREMENT__", requirement or f"sqlmig=={__version__}")
        if _write(root / "migrate.sh", script, created, kept):
            mode = (root / "migrate.sh").stat().st_mode
            os.chmod(root / "migrate.sh", mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        _gitignore(root / ".gitignore", created, kept)
    except OSError as exc:
        raise InvalidInput(
            f"cannot set up {directory}: {exc.strerror or exc} ({exc.filename or directory})"
        ) from exc
    go = "" if Path.cwd().resolve() == root else f"cd {directory} && "
    return InitReport(
        root=str(root),
        created=tuple(created),
        kept=tuple(kept),
        next_steps=(
            f'{go}./migrate.sh new "create users"   # the first migration and its rollback',
            "./migrate.sh up       # apply it (the embedded PostgreSQL when no database is set)",
            "./migrate.sh status   # where the database is",
        ),
    )


def _write(path: Path, text: str, created: list[str], kept: list[str]) -> bool:
    try:
        with path.open("x", encoding="utf-8") as out:  # never over an existing file
            out.write(text)
    except FileExistsError:
        kept.append(path.name)
        return False
    created.append(path.name)
    return True


def _gitignore(path: Path, created: list[str], kept: list[str]) -> None:
    line = ".sqlmig/"
    if path.exists():
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        if any(entry.strip() in (line, "/.sqlmig/", ".sqlmig", "/.sqlmig") for entry in lines):
            kept.append(".gitignore")
            return
        with path.open("a", encoding="utf-8") as out:
            joint = "" if not lines or path.read_bytes().endswith(b"\n") else "\n"
            out.write(f"{joint}# sqlmig: the embedded server, caches, migrate.sh's virtualenv\n{line}\n")
        created.append(".gitignore (a line added)")
        return
    path.write_text(
        f"# sqlmig: the embedded server, caches, migrate.sh's virtualenv\n{line}\n", encoding="utf-8"
    )
    created.append(".gitignore")


def _toml() -> str:
    out = [
        "# sqlmig settings. Each is commented out at its default; the environment",
        "# (SQLMIG_<KEY>, e.g. SQLMIG_LOCK_TIMEOUT) and flags (--lock-timeout) override them.",
        "# `sqlmig config` shows every value in force and where it comes from.",
        "",
    ]
    for key, default, what in SETTINGS:
        out.append(f"# {what}")
        out.append(f"# {key} = {default if default is not None else '(not set)'}")
    return "\n".join(out) + "\n"
