"""The file cache: what sqlmig learnt from each migration file, kept until the file changes.

A no-op `up` or a `status` must check every file against the history before it connects, and
reading 20,000 small files costs ~0.25 s when the system keeps them in memory, and 0.9-2.4 s
when it has dropped them (measured on the development machine, whose page cache lets go of
files left alone for under a minute; on a deploy host the checkout is seldom still in memory
at the next deploy). A file
whose stat is exactly as when sqlmig last read it is not read again: its checksum and what its
header says come from here (sqlmig.files.load keeps only files without problems), and its text is
read only if the run needs it (Migration.text), checked against that checksum again.

A file counts as unchanged when its device, inode, size, mtime and ctime (all in ns) are those
stored. ctime cannot be set back by tools that restore an mtime (`touch -r`, `rsync -t`, `cp
-p`), and every write moves it: git's index relies on the same stat data. Git's "racy" case,
a file written again within the timestamp granularity just after it was read, is covered the
same way: an entry is stored only if the file's timestamps are older than RACY_NS before the
run began (by the clock of the file system holding the cache, read from a file created there;
files on another device are not stored). Such a file is read again, and stored, next time.

Stored in `<root>/.sqlmig/cache/files-<digest of the two directories>.json`, written to a
temporary file then renamed, so concurrent runs and a crash leave either version. Its first
line holds the format and the SHA-256 of the JSON after it, so a damaged or hand-edited cache
is never half believed. Any problem with it (missing, unreadable, damaged, not writable) means
reading the files as without it; `file_cache = "off"` (SQLMIG_FILE_CACHE=off) turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

# Bump it whenever what sqlmig.files.load keeps of a file changes: an older cache is then ignored.
FORMAT = 2  # 2: a file is kept only if its statements pass filechecks too
_MAGIC = b"sqlmig file cache"
# Files changed this recently before the run began are not stored: above any file system's
# timestamp granularity (FAT: 2 s; ext4, xfs, btrfs: the kernel's coarse clock, a few ms).
RACY_NS = 2_000_000_000
# Temporary files older than this were left by a killed run.
_STALE_S = 3600
# A cache not written for this long is of directories that no run has changed since (a deploy
# that moved to a new release directory gets a new one): removed, or rebuilt if still in use.
_UNUSED_S = 30 * 86400

Key = list[int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns: as stored in the JSON


def location(root: Path, migrations_dir: Path, rollbacks_dir: Path) -> Path:
    """The cache of this pair of directories (a project may configure several)."""
    pair = f"{migrations_dir.resolve()}\0{rollbacks_dir.resolve()}"
    digest = hashlib.sha256(pair.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return root / ".sqlmig" / "cache" / f"files-{digest}.json"


class FileCache:
    """One run's use of a cache file: lookups, then (on exit) the entries of this run saved if
    they differ from what was there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # kind -> file name -> [its stat (a Key), what sqlmig.files.load kept of it]
        self._known: dict[str, dict[str, list[Any]]] = _read(path)
        self._seen: dict[str, dict[str, list[Any]]] = {"migrations": {}, "rollbacks": {}}
        self._stats: dict[str, dict[str, Key]] = {"migrations": {}, "rollbacks": {}}
        self._added = False
        self._probe: str | None = None
        self._cutoff_ns = 0  # files with timestamps from here on are not stored
        self._device = -1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._probe = _mkstemp(path)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self._cutoff_ns = st.st_mtime_ns - RACY_NS
            self._device = st.st_dev
        except OSError:
            self._probe = None  # read-only: known entries are still good, none is stored

    def __enter__(self) -> FileCache:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.save()

    def stat(self, kind: str, directory: Path, names: Iterable[str]) -> None:
        """Take the stat of these files of `directory` (before they are read, if they are)."""
        stats = self._stats[kind]
        try:
            # Relative to the directory: a third less time than a stat by the whole path.
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dir_fd)
                except OSError:
                    continue  # a dangling symlink: reading it reports the problem
                stats[name] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        finally:
            os.close(dir_fd)

    def lookup(self, kind: str, name: str) -> list[Any] | None:
        """What was kept of the file, if its stat is still the one kept with it."""
        entry = self._known[kind].get(name)
        if entry is None or entry[0] != self._stats[kind].get(name):
            return None
        self._seen[kind][name] = entry
        return entry[1]

    def keep(self, kind: str, name: str, facts: list[Any]) -> None:
        """A file just read; stored if it is old enough to be told apart from a later edit."""
        key = self._stats[kind].get(name)
        if (
            key is None
            or self._probe is None
            or key[0] != self._device
            or max(key[3], key[4]) >= self._cutoff_ns
        ):
            return
        self._seen[kind][name] = [key, facts]
        self._added = True

    def save(self) -> None:
        probe, self._probe = self._probe, None
        if probe is None:
            return
        try:
            unchanged = not self._added and all(
                len(self._seen[kind]) == len(self._known[kind]) for kind in self._seen
            )
            if unchanged:
                os.unlink(probe)
                return
            body = json.dumps(self._seen, separators=(",", ":")).encode()
            digest = hashlib.sha256(body).hexdigest().encode()
            with open(probe, "wb") as fh:
                fh.write(b"%s %d %s\n%s" % (_MAGIC, FORMAT, digest, body))
            os.replace(probe, self.path)
            _sweep(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(probe)


def _read(path: Path) -> dict[str, dict[str, list[Any]]]:
    empty: dict[str, dict[str, list[Any]]] = {"migrations": {}, "rollbacks": {}}
    try:
        raw = path.read_bytes()
    except OSError:
        return empty
    first, _, body = raw.partition(b"\n")
    if first != b"%s %d %s" % (_MAGIC, FORMAT, hashlib.sha256(body).hexdigest().encode()):
        return empty  # another format, or damaged
    try:
        data = json.loads(body)
    except ValueError:
        return empty
    if type(data) is not dict or data.keys() != empty.keys():
        return empty
    # A cache with a right checksum can still hold anything (written by another build, or by
    # hand): every entry not of the exact shape sqlmig.files.load keeps is dropped, not believed.
    return {
        kind: {name: entry for name, entry in entries.items() if _valid(kind, entry)}
        if type(entries) is dict
        else {}
        for kind, entries in data.items()
    }


# What sqlmig.files.load keeps of a file (see its _facts), as the types of its fields: a set of the
# allowed type tuples, so that checking an entry costs ~1 µs (10,000 files, 20,000 entries:
# ~19 ms measured while the test suite ran beside it).
_NUMBER = (int, float, type(None))
_TEXT = (str, type(None))
_SHAPES: dict[str, set[tuple[type, ...]]] = {
    "migrations": {
        (str, bool, int, int, int, text, bool, lock, statement)
        for text in _TEXT
        for lock in _NUMBER
        for statement in _NUMBER
    },
    "rollbacks": {
        (str, bool, text, bool, lock, statement)
        for text in _TEXT
        for lock in _NUMBER
        for statement in _NUMBER
    },
}
_KEY = (int,) * 5
_DIGEST = re.compile(r"[0-9a-f]{64}").fullmatch


def _valid(kind: str, entry: Any) -> bool:
    """An entry of the exact shape sqlmig.files.load keeps: what it says is then checked where it
    matters (the checksum when the text is read, the rest by sqlmig.files.load._confirm)."""
    if type(entry) is not list or len(entry) != 2:
        return False
    key, facts = entry
    return (
        type(key) is list
        and tuple(map(type, key)) == _KEY
        and type(facts) is list
        and tuple(map(type, facts)) in _SHAPES[kind]
        and _DIGEST(facts[0]) is not None
    )


def _mkstemp(path: Path) -> tuple[int, str]:
    # tempfile.mkstemp would import random (and more) for one name; the pid and a clock suffice
    # for a name no other live run uses, and O_EXCL makes sure.
    name = f"{path.parent}/.{path.stem}-{os.getpid()}-{time.monotonic_ns()}.tmp"
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), name


def _sweep(current: Path) -> None:
    """Remove what killed runs left (temporary files over an hour old) and the caches of other
    directories not written for 30 days."""
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(current.parent) as it:
        for entry in it:
            age = now - entry.stat().st_mtime
            if (entry.name.endswith(".tmp") and age > _STALE_S) or (
                entry.name.startswith("files-") and entry.name != current.name and age > _UNUSED_S
            ):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
