"""Discover, parse and validate migration files. No connection is made here.

Every problem is collected, so a developer fixes them in one pass instead of one per run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from sqlmig.errors import FileProblems
from sqlmig.files import checks as filechecks
from sqlmig.files import sqltext
from sqlmig.files.cache import FileCache
from sqlmig.files.headers import (
    MIGRATION_DIRECTIVES,
    ROLLBACK_DIRECTIVES,
    Header,
    directives,
    parse_header,
    parse_timeouts,
)
from sqlmig.models import ZERO, Migration, MigrationSet, Problem, Rollback, Unread, Version

# [0-9], not \d: a Unicode digit (e.g. Arabic-Indic '٣') is not a migration number.
MIGRATION_NAME = re.compile(r"^(?P<number>[0-9]+)_(?P<slug>[a-z0-9_]+)\.sql\Z")
ROLLBACK_NAME = re.compile(r"^(?P<number>[0-9]+)_(?P<slug>[a-z0-9_]+)_rollback\.sql\Z")
BOM = "\ufeff"
_BOM_BYTES = BOM.encode()


def normalize(text: str) -> str:
    """The form checksums are taken of: no BOM, LF line ends (a Windows checkout is not an edit)."""
    return text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def decode(raw: bytes) -> tuple[str | None, str | None, int | None]:
    """Return (text without BOM, error, line of the error)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(re.findall(rb"\r\n|\r|\n", raw[: exc.start])) + 1
        return None, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line
    nul = raw.find(b"\x00")
    if nul >= 0:
        # PostgreSQL takes no NUL in SQL text, and pglast (C strings) would stop reading at it,
        # silently dropping every statement after it.
        line = len(re.findall(rb"\r\n|\r|\n", raw[:nul])) + 1
        return (
            None,
            (f"contains a NUL byte (at offset {nul}), which SQL text cannot hold (UTF-16? save it as UTF-8)"),
            line,
        )
    return text.removeprefix(BOM), None, None


def parse_rollback(path: str, text: str) -> tuple[Rollback, list[Problem]]:
    """A rollback from its text (the one stored in the history)."""
    return _rollback(path, parse_header(text), checksum(text), text)


def _rollback(
    path: str, header: Header, text_checksum: str, source: str | Unread
) -> tuple[Rollback, list[Problem]]:
    found, bad = directives(header, ROLLBACK_DIRECTIVES)
    timeouts, bad_timeouts = parse_timeouts(header, found)
    bad += bad_timeouts
    problems = [Problem(path=path, line=ln, code="bad-header", message=msg) for ln, msg in bad] if bad else []
    if "irreversible" in found and not found["irreversible"]:
        problems.append(
            Problem(path=path, code="bad-header", message="`-- sqlmig: irreversible` needs a reason after it")
        )
    rollback = Rollback(
        path=path,
        checksum=text_checksum,
        irreversible=found.get("irreversible") or None,
        transactional="no-transaction" not in found,
        source=source,
        **timeouts,
    )
    return rollback, problems


class _Candidate(NamedTuple):
    number: int
    slug: str
    path: str
    name: str
    rel: str
    kind: str  # "migrations" or "rollbacks"


_NUMBER_MAX = 2**63 - 1


def _scan(
    directory: Path,
    pattern: re.Pattern[str],
    kind: str,
    root: Path,
    problems: list[Problem],
    refused: set[tuple[int, str]],
    warnings: list[Problem],
) -> list[_Candidate]:
    """The well-named files; `refused` gets the (number, slug) of well-named ones that are
    reported for what they are (a link out, not a regular file), so that their pair is not
    reported as an orphan or as missing on top."""
    found: list[_Candidate] = []
    if not directory.is_dir():
        problems.append(
            Problem(
                path=relative(directory, root),
                code="missing-directory",
                message=f"{kind} directory {directory} does not exist: run sqlmig in the project "
                f"(the directory holding {kind}/), or give --root or {kind}_dir",
            )
        )
        return found
    base = relative(directory, root)  # resolved once: per-file resolve() cost 0.3 s per 1,000
    # os.scandir and plain names: Path objects, their sorting and a stat per file for
    # is_symlink cost more than reading 10,000 small files.
    with os.scandir(directory) as it:
        entries = {entry.name: entry for entry in it}
    forwards = kind == "migrations"
    for name in sorted(entries):  # names, not entries by a key: 3 vs 12 ms for 20,000
        entry = entries[name]
        # Non-SQL files (README.md, .gitkeep) are allowed; a misnamed .sql file is never skipped.
        if not name.lower().endswith(".sql"):
            continue
        rel = f"{base}/{name}" if name.isprintable() else _printable(f"{base}/{name}")
        if name[:1] == ".":
            # Hidden: an editor's or a tool's copy, or a migration someone meant to switch off;
            # not run, but never without a word.
            warnings.append(
                Problem(
                    path=rel,
                    code="hidden-file",
                    severity="warning",
                    message="hidden file (its name starts with `.`): not read; "
                    "if it is a migration, rename it without the dot",
                )
            )
            continue
        match = pattern.match(name)
        if match is not None and forwards and name.endswith("_rollback.sql") and ROLLBACK_NAME.match(name):
            problems.append(
                Problem(
                    path=rel,
                    code="bad-name",
                    message="named like a rollback: rollbacks belong in the rollbacks directory "
                    "(a migration's slug cannot end in _rollback)",
                )
            )
            continue
        if match is None:
            expected = "NNN_slug.sql" if kind == "migrations" else "NNN_slug_rollback.sql"
            problems.append(
                Problem(
                    path=rel,
                    code="bad-name",
                    message=f"file name does not match {expected} (slug is lowercase a-z, 0-9, _)",
                )
            )
            continue
        number = int(match["number"])
        if number <= 0:
            problems.append(
                Problem(path=rel, code="bad-name", message="the number must be a positive integer")
            )
            continue
        if number > _NUMBER_MAX:
            problems.append(
                Problem(
                    path=rel,
                    code="bad-name",
                    message=f"the number is too large: at most {_NUMBER_MAX} (the "
                    "history keeps it as a bigint)",
                )
            )
            continue
        refusal = _refusal(entry, directory, kind)
        if refusal is not None:
            problems.append(Problem(path=rel, code=refusal[0], message=refusal[1]))
            refused.add((number, match["slug"]))
            continue
        found.append(_Candidate(number, match["slug"], entry.path, name, rel, kind))
    return found


def _refusal(entry: os.DirEntry[str], directory: Path, kind: str) -> tuple[str, str] | None:
    """(code, message) when a well-named entry is not a file sqlmig may read."""
    if entry.is_symlink() and not _inside(Path(entry.path), directory):
        # A checkout must not make sqlmig read (and store, and print) a file elsewhere.
        return (
            "outside-directory",
            f"a symlink to {_printable(os.readlink(entry))}, outside the {kind} directory: "
            "sqlmig reads only files inside it; copy the file in instead",
        )
    try:
        regular = entry.is_file()  # the type from the directory: no stat unless a symlink
    except OSError as exc:  # a symlink loop
        return "unreadable", f"cannot read: {exc.strerror}"
    if not regular:
        # Reading a FIFO would wait for a writer forever; a directory cannot be read.
        return (
            "not-a-file",
            "not a regular file (a directory, FIFO, socket, device or broken "
            "symlink): sqlmig reads only regular files",
        )
    return None


def _inside(link: Path, directory: Path) -> bool:
    """Whether a symlink resolves inside `directory` (which may itself be a symlink)."""
    try:
        return link.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):
        return True  # a symlink loop: reading it reports the problem


def relative(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = str(path)
    return _printable(rel)


def _printable(name: str) -> str:
    # A name that is not valid UTF-8 arrives with surrogate escapes, which cannot be printed or
    # put in JSON: show its bad bytes as \xNN instead; control characters (an escape sequence
    # would drive the terminal) as \xNN or \uNNNN too.
    if name.isprintable():
        return name
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in text
    )


def load(root: Path, migrations_dir: Path, rollbacks_dir: Path, *, cache: Path | None = None) -> MigrationSet:
    """Read and validate every migration and rollback; raise FileProblems listing all errors.

    `cache`: a file cache (sqlmig.files.cache) there; a file whose stat it knows is not read,
    its text is read when first used (Migration.text)."""
    if cache is None:
        files, problems = _load(root, migrations_dir, rollbacks_dir, None)
    else:
        with FileCache(cache) as file_cache:
            files, problems = _load(root, migrations_dir, rollbacks_dir, file_cache)
    if problems:
        raise FileProblems(problems)
    return files


def load_all(
    root: Path, migrations_dir: Path, rollbacks_dir: Path
) -> tuple[MigrationSet, tuple[Problem, ...]]:
    """As load, without raising: the migrations without problems, and every problem (for lint,
    which reports them beside its own findings)."""
    files, problems = _load(root, migrations_dir, rollbacks_dir, None)
    return files, tuple(problems)


def _load(
    root: Path, migrations_dir: Path, rollbacks_dir: Path, cache: FileCache | None
) -> tuple[MigrationSet, list[Problem]]:
    problems: list[Problem] = []
    # The files parsed on the way (filechecks), by path: a run of them does not parse them again.
    parsed: dict[str, Any] = {}
    warnings: list[Problem] = []
    refused: set[tuple[int, str]] = set()
    forwards = _scan(migrations_dir, MIGRATION_NAME, "migrations", root, problems, refused, warnings)
    backwards = _scan(rollbacks_dir, ROLLBACK_NAME, "rollbacks", root, problems, refused, warnings)
    if cache is not None:
        cache.stat("migrations", migrations_dir, (cand.name for cand in forwards))
        cache.stat("rollbacks", rollbacks_dir, (cand.name for cand in backwards))

    by_number: dict[int, _Candidate] = {}
    for cand in forwards:
        if cand.number in by_number:
            problems.append(
                Problem(
                    path=cand.rel,
                    code="duplicate-number",
                    message=f"number {cand.number} is also used by {by_number[cand.number].rel}",
                )
            )
        else:
            by_number[cand.number] = cand
    rollbacks: dict[tuple[int, str], _Candidate] = {}
    # A refused migration's rollback is no orphan either (see _scan).
    forward_names = {(cand.number, cand.slug) for cand in forwards} | refused
    for cand in backwards:
        if (cand.number, cand.slug) in rollbacks:
            # 001_a_rollback.sql and 1_a_rollback.sql: only one of them could ever run.
            problems.append(
                Problem(
                    path=cand.rel,
                    code="duplicate-number",
                    message=f"number {cand.number} is also used by {rollbacks[(cand.number, cand.slug)].rel}",
                )
            )
            continue
        rollbacks[(cand.number, cand.slug)] = cand
        # The rollback of a duplicate-numbered migration is not an orphan: the duplicate is
        # already reported.
        if (cand.number, cand.slug) not in forward_names:
            expected = f"{migrations_dir.name}/{cand.name.removesuffix('_rollback.sql')}.sql"
            problems.append(
                Problem(
                    path=cand.rel,
                    code="orphan-rollback",
                    message=f"rollback without a migration (expected {expected})",
                )
            )

    loaded: list[Migration] = []
    for number in sorted(by_number):
        cand = by_number[number]
        rb_cand = rollbacks.get((number, cand.slug))
        if rb_cand is None and (number, cand.slug) not in refused:
            problems.append(
                Problem(
                    path=cand.rel,
                    code="missing-rollback",
                    message=f"no rollback: create {relative(rollbacks_dir, root)}/"
                    f"{cand.name.removesuffix('.sql')}_rollback.sql "
                    "(or mark it `-- sqlmig: irreversible <reason>`)",
                )
            )
        migration = _load_one(cand, rb_cand, problems, warnings, cache, parsed)
        if migration is not None:
            loaded.append(migration)

    for prev, cur in itertools.pairwise(loaded):
        if not prev.version < cur.version:
            problems.append(
                Problem(
                    path=cur.path,
                    code="version-order",
                    message=f"version {cur.version} must be greater than {prev.version} "
                    f"of {prev.path} (versions strictly increase with the number)",
                )
            )
    return MigrationSet(migrations=tuple(loaded), warnings=tuple(warnings), parsed=parsed), problems


class Deferred(Unread):
    """A file the cache vouched for, read when a run first needs its text (Migration.text)."""

    __slots__ = ()

    def read(self, record: Migration | Rollback) -> str:
        return read_unread(self, record)


def read_unread(unread: Unread, record: Migration | Rollback) -> str:
    """The text of a file load() did not read, as long as it still has the checksum checked
    then; else FileProblems (it was edited while sqlmig ran: nothing of it is used). For a
    migration, what the cache said of it is confirmed against the text (see _confirm)."""
    problems: list[Problem] = []
    text, digest = _read(unread.path, unread.rel, problems)
    if text is None or digest != unread.checksum:
        raise FileProblems(
            problems
            or [
                Problem(
                    path=unread.rel,
                    code="changed-during-run",
                    message="changed while sqlmig was running (its checksum is no longer the one "
                    "checked at the start); run the command again",
                )
            ]
        )
    if isinstance(record, Migration):
        _confirm(record, text, unread)
    return text


def read_texts(migrations: Iterable[Migration]) -> None:
    """Read (Migration.text) what load() left unread of these migrations and their rollbacks."""
    for migration in migrations:
        _ = migration.text, migration.rollback.text


def _confirm(migration: Migration, text: str, unread: Unread) -> None:
    """What the file cache said of a migration, against its text: version, transaction mode,
    timeouts and description go into the history, so they are never taken on trust. When one
    differs the cache is removed and FileProblems stops the command before it changes anything
    (the text is read before the run starts: see engine.apply.up)."""
    facts, _ = _migration_facts(migration.path, text, migration.checksum, statements=False)
    _, _, major, minor, patch, description, transactional, lock, statement = facts
    slug = description if description is not None else migration.slug.replace("_", " ")
    told = (
        migration.version.key,
        migration.transactional,
        migration.lock_timeout,
        migration.statement_timeout,
        migration.description,
    )
    if told == ((major, minor, patch), transactional, lock, statement, slug):
        return
    if unread.cache is not None:
        with contextlib.suppress(OSError):
            os.unlink(unread.cache)
    raise FileProblems(
        [
            Problem(
                path=migration.path,
                code="file-cache-wrong",
                message="the file cache (.sqlmig/cache) said otherwise of this file than its text does "
                "(version, transaction mode, timeouts or description); the cache was removed "
                "and nothing was run: run the command again",
            )
        ]
    )


def _read(path: str, rel: str, problems: list[Problem]) -> tuple[str | None, str | None]:
    """(text, checksum) of a file; (None, None) when it cannot be read or decoded."""
    try:
        raw = _read_bytes(path)
    except OSError as exc:
        problems.append(Problem(path=rel, code="unreadable", message=f"cannot read: {exc.strerror}"))
        return None, None
    # The common case, checked first: UTF-8, no NUL, already normalized; its checksum is then of
    # the bytes themselves (no second copy of a large file, encoded again, just to hash it).
    if b"\r" not in raw and b"\x00" not in raw and not raw.startswith(_BOM_BYTES):
        try:
            return raw.decode(), hashlib.sha256(raw).hexdigest()
        except UnicodeDecodeError:
            pass
    text, error, line = decode(raw)
    if error is not None or text is None:
        problems.append(
            Problem(path=rel, line=line, code="bad-encoding", message=error or "cannot be decoded")
        )
        return None, None
    del raw
    return text, checksum(text)


def _read_bytes(path: str) -> bytes:
    """The whole file: for one under 64 KiB (most migrations) three system calls, open, read,
    close; no fstat, which cost 20 % more per file (Path.read_bytes costs 3x more)."""
    # O_NONBLOCK: a FIFO put there after the scan (see _scan) reads as empty, not forever.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) < _FIRST_READ:
            return data  # a short read of a regular file is its end
        size = os.fstat(fd).st_size
        parts = [data, os.read(fd, max(size - len(data), 0) + 1)]
        while chunk := os.read(fd, 1 << 20):  # grown since fstat, or no regular file
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


_FIRST_READ = 1 << 16


def _load_one(
    cand: _Candidate,
    rb_cand: _Candidate | None,
    problems: list[Problem],
    warnings: list[Problem],
    cache: FileCache | None,
    parsed: dict[str, Any],
) -> Migration | None:
    fields = _migration_fields(cand, problems, warnings, cache, parsed)
    rollback = _rollback_file(rb_cand, problems, warnings, cache, parsed) if rb_cand else None
    if fields is None or rollback is None:
        return None
    return Migration(number=cand.number, slug=cand.slug, path=cand.rel, rollback=rollback, **fields)


# What the file cache keeps of a file, after its stat (sqlmig.files.cache: bump its FORMAT when
# this changes) is what its record takes from its text: for a migration [checksum, empty,
# major, minor, patch, description, transactional, lock_timeout, statement_timeout], for a
# rollback [checksum, empty, irreversible, transactional, lock_timeout, statement_timeout].
# Only a file without problems is kept: one the cache knows is loaded as before without being
# read (its text is read if a command uses it).
def _facts(
    cand: _Candidate,
    problems: list[Problem],
    cache: FileCache | None,
    derive: Callable[[str, str, str], tuple[list[Any], list[Problem]]],
) -> tuple[list[Any], str | Unread] | None:
    """The file's facts, as `derive` makes them of (path, text, checksum), and its source (the
    text, or where to read it): from the cache if it knows the file, else by reading it. None
    after adding its problems."""
    if cache is not None:
        facts = cache.lookup(cand.kind, cand.name)
        if facts is not None:
            return facts, Deferred(cand.path, cand.rel, facts[0], str(cache.path))
    text, digest = _read(cand.path, cand.rel, problems)
    if text is None or digest is None:
        return None
    facts, mine = derive(cand.rel, text, digest)
    if mine:
        problems.extend(mine)
        return None
    if cache is not None:
        cache.keep(cand.kind, cand.name, facts)
    return facts, text


def _migration_fields(
    cand: _Candidate,
    problems: list[Problem],
    warnings: list[Problem],
    cache: FileCache | None,
    parsed: dict[str, Any],
) -> dict[str, Any] | None:
    """The Migration fields its file gives (all but number, slug, path and rollback); None
    after adding its problems to `problems`."""
    found = _facts(cand, problems, cache, functools.partial(_migration_facts, parsed=parsed))
    if found is None:
        return None
    (digest, empty, major, minor, patch, description, transactional, lock, statement), source = found
    if empty:
        warnings.append(
            Problem(
                path=cand.rel,
                code="empty",
                severity="warning",
                message="has no SQL statements; it will be recorded as a no-op",
            )
        )
    return {
        "version": Version(major=major, minor=minor, patch=patch),
        "description": cand.slug.replace("_", " ") if description is None else description,
        "transactional": transactional,
        "lock_timeout": lock,
        "statement_timeout": statement,
        "checksum": digest,
        "source": source,
    }


def _migration_facts(
    rel: str, text: str, digest: str, *, statements: bool = True, parsed: dict[str, Any] | None = None
) -> tuple[list[Any], list[Problem]]:
    """`statements`: also check the statements (filechecks), not only the header."""
    header = parse_header(text)
    found, bad = directives(header, MIGRATION_DIRECTIVES)
    timeouts, bad_timeouts = parse_timeouts(header, found)
    problems = [
        Problem(path=rel, line=ln, code="bad-header", message=msg)
        for ln, msg in header.problems + bad + bad_timeouts
    ]
    version = ZERO
    if "version" not in header.values:
        problems.append(
            Problem(
                path=rel,
                line=1,
                code="missing-version",
                message="no `-- Version: MAJOR.MINOR.PATCH` header before the first statement",
            )
        )
    else:
        raw_version, line = header.values["version"]
        try:
            version = Version.parse(raw_version)
        except ValueError as exc:
            problems.append(Problem(path=rel, line=line, code="bad-version", message=str(exc)))
    description = header.values["description"][0] if "description" in header.values else None
    transactional = "no-transaction" not in found
    if statements:
        problems += filechecks.problems(rel, text, transactional=transactional, keep=parsed)
    return [
        digest,
        sqltext.is_empty(text),
        *version.key,
        description,
        transactional,
        timeouts.get("lock_timeout"),
        timeouts.get("statement_timeout"),
    ], problems


def _rollback_facts(
    rel: str, text: str, digest: str, *, parsed: dict[str, Any] | None = None
) -> tuple[list[Any], list[Problem]]:
    rollback, problems = _rollback(rel, parse_header(text), digest, text)
    problems += filechecks.problems(
        rel, text, transactional=rollback.transactional, rollback=True, keep=parsed
    )
    return [
        digest,
        sqltext.is_empty(text),
        rollback.irreversible,
        rollback.transactional,
        rollback.lock_timeout,
        rollback.statement_timeout,
    ], problems


def _rollback_file(
    cand: _Candidate,
    problems: list[Problem],
    warnings: list[Problem],
    cache: FileCache | None,
    parsed: dict[str, Any],
) -> Rollback | None:
    found = _facts(cand, problems, cache, functools.partial(_rollback_facts, parsed=parsed))
    if found is None:
        return None
    (digest, empty, irreversible, transactional, lock, statement), source = found
    if irreversible is None and empty:
        warnings.append(
            Problem(
                path=cand.rel,
                code="empty",
                severity="warning",
                message="has no SQL statements; rolling back is a no-op",
            )
        )
    return Rollback(
        path=cand.rel,
        checksum=digest,
        irreversible=irreversible,
        transactional=transactional,
        lock_timeout=lock,
        statement_timeout=statement,
        source=source,
    )
