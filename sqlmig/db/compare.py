"""Snapshots read back and compared: the record of a schema (see snapshot.py for how it is
read from the catalogs) and a pure diff of two, for drift (status, validate) and verify."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

# Bumped whenever what a snapshot holds, or how its fingerprint is taken, changes, so an older
# recorded one is not compared. 2: the fingerprint is the server's hash of the jsonb document.
# 3: with a history table outside `public`, the snapshot holds that schema only (drift.scope).
FORMAT = 3

# Order in which differences are listed: containers before what they contain.
GROUPS = (
    "schema",
    "extension",
    "type",
    "relation",
    "column",
    "constraint",
    "index",
    "function",
    "trigger",
    "rule",
    "policy",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """kind -> quoted qualified name -> attributes. Compare with `diff`, or by `fingerprint`."""

    format: int = FORMAT
    server_version: int  # major version: catalog output may change across majors
    objects: dict[str, dict[str, dict[str, Any]]]

    def canonical(self) -> str:
        """The objects as JSON with sorted keys: what the fingerprint is a hash of."""
        return _canonical(self.objects)

    def fingerprint(self, canonical: str | None = None) -> str:
        return hashlib.sha256((canonical or self.canonical()).encode()).hexdigest()

    def count(self) -> int:
        return sum(len(v) for v in self.objects.values())


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- the pure diff ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    attribute: str
    before: Any = None
    after: Any = None

    def render(self) -> str:
        if self.attribute == "options":
            return f"options: {_options(self.before, self.after)}"
        if self.attribute == "definition" or not (_short(self.before) and _short(self.after)):
            return f"{self.attribute} differs"
        return f"{self.attribute} {_show(self.before)} → {_show(self.after)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One object that differs: in `after` only (added), in `before` only (removed), or changed."""

    group: str
    kind: str
    key: str
    name: str
    change: Literal["added", "removed", "changed"]
    changes: tuple[Change, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    def line(self, added: str = "is left behind", removed: str = "is missing") -> str:
        """`column users.phone is left behind`, `index x is missing`, `column users.email: type
        text → varchar(100)`; the words for added/removed objects can be chosen by the caller."""
        if self.change == "added":
            return f"{self.label} {added}"
        if self.change == "removed":
            return f"{self.label} {removed}"
        return f"{self.label}: {', '.join(c.render() for c in self.changes)}"


def display_name(key: str) -> str:
    """Keys are schema-qualified; objects in `public` are shown without it."""
    return key.removeprefix("public.")


def diff(before: Snapshot, after: Snapshot) -> list[Difference]:
    """What differs from `before` to `after`, containers first. Objects inside an added or
    removed table or schema are not listed again."""
    groups = [g for g in GROUPS if g in before.objects or g in after.objects]
    groups += sorted((set(before.objects) | set(after.objects)) - set(GROUPS))
    # Added or removed schemas and relations, whose contents are not listed one by one.
    containers: dict[str, set[str]] = {"added": set(), "removed": set()}
    for group in ("schema", "relation"):
        old, new = before.objects.get(group, {}), after.objects.get(group, {})
        containers["added"].update(set(new) - set(old))
        containers["removed"].update(set(old) - set(new))
    out: list[Difference] = []
    for group in groups:
        old = before.objects.get(group, {})
        new = after.objects.get(group, {})
        for key in sorted(set(old) | set(new)):
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            attrs = b if a is None else a
            assert attrs is not None  # a key of old or new, so in one of them
            kind = str(attrs.get("kind", group))
            if a is None or b is None:
                change: Literal["added", "removed"] = "added" if a is None else "removed"
                inside = containers[change]
                if attrs.get("_parent") in inside or attrs.get("_schema") in inside:
                    continue
                out.append(Difference(group=group, kind=kind, key=key, name=display_name(key), change=change))
                continue
            changes = tuple(
                Change(attribute=attr, before=a.get(attr), after=b.get(attr))
                for attr in sorted(set(a) | set(b), key=_attr_order)
                if not attr.startswith("_") and a.get(attr) != b.get(attr)
            )
            if changes:
                out.append(
                    Difference(
                        group=group,
                        kind=kind,
                        key=key,
                        name=display_name(key),
                        change="changed",
                        changes=changes,
                    )
                )
    return out


def diff_lines(
    before: Snapshot, after: Snapshot, added: str = "is left behind", removed: str = "is missing"
) -> list[str]:
    return [d.line(added, removed) for d in diff(before, after)]


def _attr_order(attr: str) -> tuple[int, str]:
    first = ("kind", "type", "not null", "default", "definition")
    return (first.index(attr), "") if attr in first else (len(first), attr)


def _options(before: Any, after: Any) -> str:
    """Storage options (`name=value` lists) compared one by one: `fillfactor unset → 70`."""

    def parse(value: Any) -> dict[str, str]:
        items = value if isinstance(value, list) else []
        return dict(str(o).partition("=")[::2] for o in items)

    old, new = parse(before), parse(after)
    return ", ".join(
        f"{name} {old.get(name, 'unset')} → {new.get(name, 'unset')}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    )


def _short(value: Any) -> bool:
    return len(_show(value)) <= 60 and "\n" not in _show(value)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


__all__ = ["Change", "Difference", "Snapshot", "diff", "diff_lines", "display_name"]
