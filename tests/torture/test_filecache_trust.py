"""The file cache is checked, not trusted.

Its self-checksum only proves that nobody damaged it by accident: a cache written by hand (or by
another build) with a right checksum can hold any JSON. Every entry of the wrong shape is
dropped (the file is read instead), and the facts of a file that decide what is written to the
history (version, transaction mode, timeouts, description) are confirmed against the file's text
before `up` writes them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlmig.files import cache as filecache
from sqlmig.files import load as files_mod
from tests.conftest import Project, query, table_exists
from tests.torture.helpers import run

SETTLE = 2.1  # the cache keeps only files older than 2 s (filecache.RACY_NS)


def cache_path(project: Project) -> Path:
    return filecache.location(project.root, project.migrations, project.rollbacks)


def read_cache(project: Project) -> dict[str, Any]:
    return json.loads(cache_path(project).read_bytes().partition(b"\n")[2])


def write_cache(project: Project, data: Any) -> None:
    """A cache with a correct self-checksum around whatever `data` is."""
    body = json.dumps(data).encode()
    digest = hashlib.sha256(body).hexdigest().encode()
    cache_path(project).write_bytes(b"sqlmig file cache %d %s\n%s" % (filecache.FORMAT, digest, body))


@pytest.fixture
def cached(project: Project) -> Project:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n")
    project.add(
        2,
        "create_b",
        "-- sqlmig: no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
        "DROP INDEX a_id;\n",
    )
    time.sleep(SETTLE)
    files_mod.load(project.root, project.migrations, project.rollbacks, cache=cache_path(project))
    assert len(read_cache(project)["migrations"]) == 2
    (project.root / "pristine.json").write_text(json.dumps(read_cache(project)))
    return project


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=10) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    junk=JSON, which=st.sampled_from(["entry", "facts", "key", "kind", "one-fact"]), index=st.integers(0, 8)
)
def test_a_cache_of_any_shape_with_a_right_checksum_loads_as_without_it(
    cached: Project, junk: Any, which: str, index: int
) -> None:
    data = json.loads((cached.root / "pristine.json").read_text())
    name = "001_create_a.sql"
    if which == "entry":
        data["migrations"][name] = junk
    elif which == "facts":
        data["migrations"][name][1] = junk
    elif which == "key":
        data["migrations"][name][0] = junk
    elif which == "kind":
        data["rollbacks"] = junk
    else:
        facts = data["migrations"][name][1]
        facts[index % len(facts)] = junk
    write_cache(cached, data)
    truth = files_mod.load(cached.root, cached.migrations, cached.rollbacks)

    loaded = files_mod.load(cached.root, cached.migrations, cached.rollbacks, cache=cache_path(cached))

    assert loaded.migrations == truth.migrations or _told_otherwise(loaded, truth)


def _told_otherwise(loaded: files_mod.MigrationSet, truth: files_mod.MigrationSet) -> bool:
    """A well-shaped entry with other facts is believed by load(); `up` confirms it (below)."""
    return [m.checksum for m in loaded.migrations] == [m.checksum for m in truth.migrations]


@pytest.mark.parametrize("fact, value", [(2, 9), (6, True), (5, "made up"), (7, 1.0)])
def test_up_confirms_the_cached_facts_it_writes_to_the_history(
    cached: Project, database_url: str, fact: int, value: Any
) -> None:
    data = read_cache(cached)
    data["migrations"]["002_create_b.sql"][1][fact] = value
    write_cache(cached, data)

    wrong = run(cached, "up", url=database_url)

    assert wrong.returncode == 2, wrong.stderr
    assert "migrations/002_create_b.sql: error: the file cache (.sqlmig/cache) said otherwise" in wrong.stderr
    assert not table_exists(database_url, "a"), "nothing ran"
    assert not cache_path(cached).exists(), "the wrong cache is gone"
    right = run(cached, "up", url=database_url)
    assert right.returncode == 0, right.stderr
    assert query(
        database_url, "SELECT version, transactional, description FROM schema_version ORDER BY number"
    ) == [("1.1.0", True, "create a"), ("1.2.0", False, "create b")]
