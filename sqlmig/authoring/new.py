"""`sqlmig new`: the next numbered migration and its rollback, from a template."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlmig.config.durations import format_duration
from sqlmig.config.settings import Config
from sqlmig.engine import plan
from sqlmig.engine.session import load_files
from sqlmig.errors import InvalidInput
from sqlmig.files import load as files_mod
from sqlmig.models import Version

if TYPE_CHECKING:
    from sqlmig.reports import NewFiles

# A longer slug is refused (Alembic cuts its slugs at 40 characters; we say so instead).
_SLUG_MAX = 100


def new(
    config: Config,
    description: str,
    *,
    bump: Literal["major", "minor", "patch"] | None = None,
    version: str | None = None,
) -> NewFiles:
    """Create the next numbered migration and its rollback from a template."""
    # Loaded here, not at the top: only this command builds these records (see sqlmig.reports).
    from sqlmig.reports import NewFiles

    if bump and version:
        raise InvalidInput("give either --bump or --version, not both")
    # It goes on the `-- Description:` header line: a line break would end that comment and put
    # the rest into the file as SQL; text that is not UTF-8 could not be written at all.
    if any(c in "\r\n" or "\ud800" <= c <= "\udfff" for c in description):
        raise InvalidInput(f"the description {description!r} must be one line of UTF-8 text")
    slug = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_")
    if not slug:
        raise InvalidInput(f"cannot make a file name from {description!r}: use letters or digits")
    if len(slug) > _SLUG_MAX:
        raise InvalidInput(
            f"the description makes a file name slug of {len(slug)} characters: at most "
            f"{_SLUG_MAX} (file names are at most 255 bytes, and a name is for finding the file)",
            hint="give a short description; say more in the file's `-- Description:` line",
        )
    if config.migrations_path.is_dir() and not config.rollbacks_path.exists():
        # `new` writes the first rollback there: a missing rollbacks/ is not yet a problem.
        try:
            config.rollbacks_path.mkdir(parents=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create {config.rollbacks_path}: {exc.strerror}") from exc
    files = load_files(config)
    last = files.migrations[-1] if files.migrations else None
    if version is not None:
        new_version = plan.parse_version(version)
        if last and not last.version < new_version:
            raise InvalidInput(f"--version {version} must be greater than {last.version} of {last.path}")
    elif last is None:
        new_version = Version(major=1, minor=0, patch=0)
    else:
        new_version = last.version.bump(bump or "minor")
    number = (last.number + 1) if last else 1
    width = (
        max(3, *(len(m.path.rsplit("/", 1)[-1].split("_", 1)[0]) for m in files.migrations))
        if files.migrations
        else 3
    )
    stem = f"{number:0{width}d}_{slug}"
    mig_path = config.migrations_path / f"{stem}.sql"
    rb_path = config.rollbacks_path / f"{stem}_rollback.sql"
    for path in (mig_path, rb_path):
        if path.exists():
            raise InvalidInput(f"{path} already exists")
    try:
        config.rollbacks_path.mkdir(parents=True, exist_ok=True)
        _write_new(mig_path, rb_path, stem, new_version, description, config.migration_lock_timeout)
    except OSError as exc:
        raise InvalidInput(f"cannot write {exc.filename or mig_path}: {exc.strerror or exc}") from exc
    root = config.root
    return NewFiles(
        migration=files_mod.relative(mig_path, root),
        rollback=files_mod.relative(rb_path, root),
        number=number,
        version=str(new_version),
    )


def _write_new(
    mig_path: Path,
    rb_path: Path,
    stem: str,
    new_version: Version,
    description: str,
    lock_timeout: float | None,
) -> None:
    today = dt.date.today().isoformat()
    # The bound of table-lock waits, stated in the file where the reviewer sees it: the
    # project's setting when it is one (lint's missing-lock-timeout then passes wherever the
    # file runs, `inherit` included), else 5s.
    bound = format_duration(lock_timeout) if lock_timeout and lock_timeout <= 10 else "5s"
    mig_path.write_text(
        f"-- Migration: {stem}\n-- Version: {new_version}\n-- Description: {description}\n"
        f"-- Author: {_author()}\n-- Date: {today}\n-- sqlmig: lock-timeout {bound}\n\n"
        "-- The forward change, in plain PostgreSQL. sqlmig runs the whole file in one transaction\n"
        "-- with its schema_version row: no BEGIN/COMMIT here. For CREATE INDEX CONCURRENTLY and\n"
        "-- the like, add the header line `-- sqlmig: no-transaction` above.\n"
    )
    rb_path.write_text(
        f"-- Rollback of {stem} (version {new_version})\n\n"
        f"-- Undo exactly what migrations/{stem}.sql does, newest change first.\n"
        "-- If it cannot be undone, make the first line: -- sqlmig: irreversible <reason>\n"
    )


def _author() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
