"""The pure diff of two schema snapshots: readable lines, containers before contents."""

from __future__ import annotations

from typing import Any

import pytest

from sqlmig.db.compare import Snapshot, diff, diff_lines, display_name


def snap(**groups: dict[str, dict[str, Any]]) -> Snapshot:
    return Snapshot(server_version=18, objects=groups)


USERS = {"public.users": {"kind": "table", "_schema": "public", "owner": "app"}}
EMAIL = {
    "public.users.email": {"kind": "column", "_parent": "public.users", "type": "text", "not null": True}
}
PHONE = {
    "public.users.phone": {"kind": "column", "_parent": "public.users", "type": "text", "not null": False}
}
INDEX = {
    "public.audit_events_created_at_idx": {
        "kind": "index",
        "_parent": "public.audit_events",
        "valid": True,
        "definition": "CREATE INDEX audit_events_created_at_idx ON public.audit_events USING btree "
        "(created_at)",
    }
}


def test_equal_snapshots_have_no_difference_and_the_same_fingerprint() -> None:
    a = snap(relation=USERS, column=EMAIL)
    b = snap(column=dict(EMAIL), relation=dict(USERS))
    assert diff(a, b) == []
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_changes_with_any_attribute() -> None:
    a = snap(relation=USERS, column=EMAIL)
    b = snap(
        relation=USERS, column={"public.users.email": {**EMAIL["public.users.email"], "not null": False}}
    )
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            snap(relation=USERS, column=EMAIL),
            snap(relation=USERS, column={**EMAIL, **PHONE}),
            ["column users.phone is left behind"],
        ),
        (
            snap(relation=USERS, index=INDEX),
            snap(relation=USERS, index={}),
            ["index audit_events_created_at_idx is missing"],
        ),
        (
            snap(relation=USERS, column=EMAIL),
            snap(
                relation=USERS,
                column={
                    "public.users.email": {**EMAIL["public.users.email"], "type": "character varying(100)"}
                },
            ),
            ["column users.email: type text → character varying(100)"],
        ),
        (
            snap(relation=USERS, column=EMAIL),
            snap(
                relation=USERS,
                column={
                    "public.users.email": {
                        **EMAIL["public.users.email"],
                        "not null": False,
                        "default": "''::text",
                    }
                },
            ),
            ["column users.email: not null yes → no, default none → ''::text"],
        ),
    ],
    ids=["left-behind", "missing", "type-changed", "two-attributes"],
)
def test_diff_lines_name_the_object_and_what_changed(
    before: Snapshot, after: Snapshot, expected: list[str]
) -> None:
    assert diff_lines(before, after) == expected


def test_long_definitions_are_summarised_not_printed() -> None:
    old = {
        "public.active_users": {
            "kind": "view",
            "_schema": "public",
            "definition": " SELECT id FROM users WHERE x",
        }
    }
    new = {
        "public.active_users": {
            "kind": "view",
            "_schema": "public",
            "definition": " SELECT id FROM users WHERE y",
        }
    }
    assert diff_lines(snap(relation=old), snap(relation=new)) == ["view active_users: definition differs"]


def test_contents_of_an_added_table_are_not_listed_one_by_one() -> None:
    before = snap(relation={}, column={}, index={})
    after = snap(
        relation=USERS,
        column={**EMAIL, **PHONE},
        index={"public.users_phone_idx": {"kind": "index", "_parent": "public.users"}},
    )
    assert diff_lines(before, after) == ["table users is left behind"]


def test_contents_of_a_dropped_schema_are_not_listed_one_by_one() -> None:
    app = {"app": {"kind": "schema", "owner": "app"}}
    table = {"app.t": {"kind": "table", "_schema": "app"}}
    column = {"app.t.id": {"kind": "column", "_parent": "app.t", "type": "integer"}}
    func = {"app.f()": {"kind": "function", "_schema": "app", "definition": "md5 x"}}
    before = snap(schema=app, relation=table, column=column, function=func)
    after = snap(schema={}, relation={}, column={}, function={})
    assert diff_lines(before, after) == ["schema app is missing"]


def test_owned_sequence_goes_with_its_table_even_when_it_sorts_first() -> None:
    before = snap(relation={})
    after = snap(
        relation={
            "public.z": {"kind": "table", "_schema": "public"},
            "public.a_seq": {"kind": "sequence", "_schema": "public", "_parent": "public.z"},
        }
    )
    assert diff_lines(before, after) == ["table z is left behind"]


def test_a_column_added_to_an_existing_table_is_listed_and_its_table_is_not() -> None:
    before = snap(relation=USERS, column=EMAIL)
    after = snap(relation=USERS, column={**EMAIL, **PHONE})
    [difference] = diff(before, after)
    assert (difference.group, difference.kind, difference.name, difference.change) == (
        "column",
        "column",
        "users.phone",
        "added",
    )


def test_differences_come_containers_first_and_by_name() -> None:
    before = snap(schema={}, relation=USERS, column=EMAIL, index={})
    after = snap(
        schema={"app": {"kind": "schema"}},
        relation=USERS,
        column={**EMAIL, **PHONE},
        index={
            "public.b_idx": {"kind": "index", "_parent": "public.users"},
            "public.a_idx": {"kind": "index", "_parent": "public.users"},
        },
    )
    assert diff_lines(before, after, added="was added", removed="was dropped") == [
        "schema app was added",
        "column users.phone was added",
        "index a_idx was added",
        "index b_idx was added",
    ]


def test_structure_attributes_are_not_compared() -> None:
    a = snap(index={"public.i": {"kind": "index", "_parent": "public.a", "valid": True}})
    b = snap(index={"public.i": {"kind": "index", "_parent": "public.b", "valid": True}})
    assert diff(a, b) == []


def test_lists_and_booleans_read_as_words() -> None:
    a = snap(
        type={"public.mood": {"kind": "enum type", "labels": ["sad", "ok"]}},
        index={"public.i": {"kind": "index", "valid": True}},
    )
    b = snap(
        type={"public.mood": {"kind": "enum type", "labels": ["sad", "ok", "happy"]}},
        index={"public.i": {"kind": "index", "valid": False}},
    )
    assert diff_lines(a, b) == [
        "enum type mood: labels [sad, ok] → [sad, ok, happy]",
        "index i: valid yes → no",
    ]


def test_a_kind_missing_from_one_snapshot_counts_as_empty() -> None:
    assert diff_lines(snap(), snap(index=INDEX)) == ["index audit_events_created_at_idx is left behind"]


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("public.users", "users"),
        ("app.users", "app.users"),
        ("public", "public"),
        ('public."Users".email', '"Users".email'),
        ("public.f(integer)", "f(integer)"),
    ],
)
def test_objects_in_public_are_shown_without_the_schema(key: str, shown: str) -> None:
    assert display_name(key) == shown
