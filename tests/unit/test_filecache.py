"""The file cache: a file whose stat is as when sqlmig last read it is not read again, and loads
exactly as if it were (sqlmig.files.cache). No database.

Most tests let files count as settled the moment they are written (`settled`): the real rule
stores only files untouched for 2 s before the run, which one test checks as it is.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlmig.errors import ExitCode, FileProblems
from sqlmig.files import cache as filecache
from sqlmig.files import load as files
from sqlmig.models import MigrationSet, Unread
from tests.unit.helpers import load, pair, write

PROJECT = {
    **pair("001_users", "1.0.0", "CREATE TABLE users (id int);\n", "DROP TABLE users;\n"),
    "migrations/002_users_idx.sql": (
        "-- Version: 1.1.0\n-- Description: an index, built without blocking\n"
        "-- sqlmig: no-transaction\n-- sqlmig: lock-timeout 3s\n"
        "CREATE INDEX CONCURRENTLY users_id ON users (id);\n"
    ),
    "rollbacks/002_users_idx_rollback.sql": (
        "-- sqlmig: no-transaction\n-- sqlmig: statement-timeout 1min\nDROP INDEX CONCURRENTLY users_id;\n"
    ),
    "migrations/003_later.sql": "-- Version: 1.2.0\n-- nothing yet\n",
    "rollbacks/003_later_rollback.sql": "-- sqlmig: irreversible the data is gone\n",
}


def cached_load(root: Path) -> MigrationSet:
    migrations, rollbacks = root / "migrations", root / "rollbacks"
    return files.load(root, migrations, rollbacks, cache=filecache.location(root, migrations, rollbacks))


def cache_file(root: Path) -> Path:
    return filecache.location(root, root / "migrations", root / "rollbacks")


def unread(loaded: MigrationSet) -> list[bool]:
    """Per migration: whether neither it nor its rollback was read."""
    return [isinstance(m.source, Unread) and isinstance(m.rollback.source, Unread) for m in loaded.migrations]


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled as soon as they are written (instead of 2 s later)."""
    monkeypatch.setattr(filecache, "RACY_NS", -3600 * 10**9)


def test_a_second_load_takes_every_unchanged_file_from_the_cache_without_reading_it(
    tmp_path: Path, settled: None
) -> None:
    write(tmp_path, PROJECT)

    first = cached_load(tmp_path)
    second = cached_load(tmp_path)

    assert unread(first) == [False, False, False]
    assert unread(second) == [True, True, True]
    plain = load(tmp_path)
    # Every field compared, the header's facts (version, description, no-transaction,
    # timeouts, irreversible) and the warnings (003 is empty) included.
    assert second == plain
    assert [
        (
            m.transactional,
            m.lock_timeout,
            m.rollback.statement_timeout,
            m.rollback.irreversible,
            m.description,
        )
        for m in second.migrations
    ] == [
        (True, None, None, None, "users"),
        (False, 3.0, 60.0, None, "an index, built without blocking"),
        (True, None, None, "the data is gone", "later"),
    ]
    assert [w.render() for w in second.warnings] == [
        "migrations/003_later.sql: warning: has no SQL statements; it will be recorded as a no-op"
    ]
    # Read when used, and the same text.
    assert [(m.text, m.rollback.text) for m in second.migrations] == [
        (m.text, m.rollback.text) for m in plain.migrations
    ]
    assert unread(second) == [False, False, False]


def test_an_edit_that_keeps_the_size_and_the_mtime_is_still_seen(tmp_path: Path, settled: None) -> None:
    write(tmp_path, PROJECT)
    cached_load(tmp_path)
    path = tmp_path / "migrations/001_users.sql"
    before = os.stat(path)

    path.write_text(path.read_text().replace("users", "uzers"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` would
    after = cached_load(tmp_path)

    assert os.stat(path).st_size == before.st_size
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert unread(after) == [False, True, True]  # ctime moved: read again
    assert after.migrations[0].checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_written_less_than_two_seconds_before_the_run_is_not_kept(tmp_path: Path) -> None:
    write(tmp_path, PROJECT)  # just now: another write within the same clock tick could
    cached_load(tmp_path)  # leave the same stat, so these are not kept yet

    assert unread(cached_load(tmp_path)) == [False, False, False]


def test_a_text_used_after_its_file_changed_is_refused(tmp_path: Path, settled: None) -> None:
    write(tmp_path, PROJECT)
    cached_load(tmp_path)
    loaded = cached_load(tmp_path)

    (tmp_path / "rollbacks/001_users_rollback.sql").write_text("DROP TABLE users CASCADE;\n")
    with pytest.raises(FileProblems) as info:
        loaded.migrations[0].rollback.text  # noqa: B018 - reading it is the test

    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert [p.render() for p in info.value.problems] == [
        "rollbacks/001_users_rollback.sql: error: changed while sqlmig was running (its "
        "checksum is no longer the one checked at the start); run the command again"
    ]


def test_a_damaged_cache_is_not_believed_and_is_written_again(tmp_path: Path, settled: None) -> None:
    write(tmp_path, PROJECT)
    cached_load(tmp_path)
    raw = cache_file(tmp_path).read_bytes()
    # The checksum of 001 as kept: a cache that says another text is there must not be used.
    digest = hashlib.sha256(PROJECT["migrations/001_users.sql"].encode()).hexdigest().encode()
    assert raw.count(digest) == 1
    cache_file(tmp_path).write_bytes(raw.replace(digest, b"0" * 64))

    again = cached_load(tmp_path)

    assert unread(again) == [False, False, False]
    assert again.migrations[0].checksum == digest.decode()
    assert unread(cached_load(tmp_path)) == [True, True, True]


@pytest.mark.parametrize("damage", [b"", b"not json", b"sqlmig file cache 1 x\n{}"])
def test_a_missing_or_foreign_cache_is_ignored(tmp_path: Path, settled: None, damage: bytes) -> None:
    write(tmp_path, PROJECT)
    cache_file(tmp_path).parent.mkdir(parents=True)
    cache_file(tmp_path).write_bytes(damage)

    assert cached_load(tmp_path) == load(tmp_path)
    assert unread(cached_load(tmp_path)) == [True, True, True]


def test_a_file_with_problems_is_not_kept_and_reported_every_time(tmp_path: Path, settled: None) -> None:
    write(tmp_path, {**PROJECT, **pair("004_bad", "1.3")})

    for _ in range(2):
        with pytest.raises(FileProblems) as info:
            cached_load(tmp_path)
        assert [p.render() for p in info.value.problems] == [
            "migrations/004_bad.sql:1: error: '1.3' is not a semantic version MAJOR.MINOR.PATCH (e.g. 1.4.0)"
        ]


def test_without_a_place_to_write_the_cache_the_files_are_read(tmp_path: Path, settled: None) -> None:
    write(tmp_path, PROJECT)
    (tmp_path / ".sqlmig").write_text("a file where the directory would be")

    assert unread(cached_load(tmp_path)) == [False, False, False]
    assert cached_load(tmp_path) == load(tmp_path)


def test_no_temporary_file_is_left_behind(tmp_path: Path, settled: None) -> None:
    write(tmp_path, PROJECT)
    for _ in range(3):
        cached_load(tmp_path)

    assert sorted(p.name for p in cache_file(tmp_path).parent.iterdir()) == [cache_file(tmp_path).name]


def test_writing_the_cache_removes_what_killed_runs_and_old_releases_left(
    tmp_path: Path, settled: None
) -> None:
    write(tmp_path, PROJECT)
    directory = cache_file(tmp_path).parent
    directory.mkdir(parents=True)
    left = {
        "files-aaaa.json": 31,
        "files-bbbb.json": 29,
        ".files-x-1-2.tmp": 1 / 12,
        ".files-x-3-4.tmp": 1 / 48,
    }  # name: days since written
    for name, days in left.items():
        (directory / name).write_text("{}")
        old = time.time() - days * 86400
        os.utime(directory / name, (old, old))

    cached_load(tmp_path)

    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [cache_file(tmp_path).name, "files-bbbb.json", ".files-x-3-4.tmp"]
    )


_LINE = st.sampled_from(
    [
        "-- Version: 1.2.3",
        "-- Version: 2.0.0",
        "-- Version: 1.2",
        "-- version:  0.1.0  ",
        "-- Description: adds ; a 'table'",
        "-- description:",
        "-- Author: ana",
        "-- sqlmig: no-transaction",
        "-- sqlmig: lock-timeout 250ms",
        "-- sqlmig: lock-timeout 5",
        "-- sqlmig: statement-timeout off",
        "-- sqlmig: irreversible",
        "-- sqlmig: irreversible why",
        "-- sqlmig: allow drop-table because",
        "-- sqlmig: bogus",
        "--",
        "",
        "   ",
    ]
)
_BODY = st.sampled_from(["", "SELECT 1;\n", "-- just a comment\n", "CREATE TABLE t (a int);"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(_LINE, max_size=6), body=_BODY, rb_header=st.lists(_LINE, max_size=4), rb_body=_BODY)
def test_the_cache_loads_any_header_as_reading_it_does(
    settled: None, header: list[str], body: str, rb_header: list[str], rb_body: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write(
            Path(tmp),
            {
                "migrations/001_a.sql": "".join(f"{line}\n" for line in header) + body,
                "rollbacks/001_a_rollback.sql": "".join(f"{line}\n" for line in rb_header) + rb_body,
            },
        )
        try:
            expected: MigrationSet | list[str] = load(root)
        except FileProblems as exc:
            expected = [p.render() for p in exc.problems]
        for _ in range(2):  # the first fills the cache, the second uses it
            try:
                got: MigrationSet | list[str] = cached_load(root)
            except FileProblems as exc:
                got = [p.render() for p in exc.problems]
            assert got == expected
