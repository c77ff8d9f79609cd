"""Version ranges for `sqlmig check --require '>=1.2,<2'`: is the database's schema one the
running code can use?

A range is comparators joined by commas, all of which must hold. Operators, as Cargo and npm
read them (no prerelease versions: migration versions are MAJOR.MINOR.PATCH):

    >=1.2   at least 1.2.0            <2      below 2.0.0
    >1.2    above every 1.2.x         <=1.2   at most any 1.2.x
    =1.2    any 1.2.x (also `==`, or the bare version `1.2`; `1.2.*` too)
    !=1.2   anything but a 1.2.x      *       any version
    ^1.2.3  >=1.2.3, <2.0.0 (^0.2.3: <0.3.0; ^0.0.3: <0.0.4): no breaking (MAJOR) change
    ~1.2.3  >=1.2.3, <1.3.0 (~1: <2.0.0): patch-level changes only
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmig.config.settings import Config
from sqlmig.db.connect import open_session
from sqlmig.errors import InvalidInput
from sqlmig.models import Version, current_version

if TYPE_CHECKING:
    from sqlmig.reports import CheckResult

Key = tuple[int, int, int]
_COMPARATOR = re.compile(r"^(?P<op>>=|<=|==|!=|>|<|=|\^|~)?\s*v?(?P<version>[0-9A-Za-z.*+-]+)\Z")
_NUMBER = re.compile(r"^(0|[1-9][0-9]*)\Z")
_WILDCARD = {"*", "x", "X"}


@dataclass(frozen=True)
class Comparator:
    text: str
    meaning: str  # the same as full versions: `>=1.2.0, <2.0.0`
    test: Callable[[Key], bool]


@dataclass(frozen=True)
class Requirement:
    text: str
    comparators: tuple[Comparator, ...]

    @property
    def meaning(self) -> str:
        return ", ".join(c.meaning for c in self.comparators)

    def satisfied_by(self, version: Key) -> bool:
        return all(c.test(version) for c in self.comparators)


def parse(text: str) -> Requirement:
    """A Requirement from `>=1.2,<2`; ValueError says which part is wrong and why."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(
            f"{text!r} is not a version range: expected comparators joined by commas, e.g. '>=1.2,<2'"
        )
    return Requirement(text=text.strip(), comparators=tuple(_comparator(p) for p in parts))


def _comparator(text: str) -> Comparator:
    match = _COMPARATOR.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a comparator: use >=, >, <=, <, =, ==, !=, ^ or ~ "
            "before a version (join several with commas, not spaces)"
        )
    op = match["op"] or "="
    op = "=" if op == "==" else op
    parts = _parts(match["version"], text)
    if not parts:  # `*`: any version
        if op not in ("=", ">="):
            raise ValueError(f"{text!r}: `*` stands for any version; use it alone")
        return Comparator(text, "any version", lambda v: True)
    low = _low(parts)
    high = _high(parts)  # the first version above every one `parts` stands for
    exact = len(parts) == 3
    s_low, s_high = _show(low), _show(high)
    if op == ">=":
        return Comparator(text, f">={s_low}", lambda v: v >= low)
    if op == ">":
        return (
            Comparator(text, f">{s_low}", lambda v: v > low)
            if exact
            else Comparator(text, f">={s_high}", lambda v: v >= high)
        )
    if op == "<":
        return Comparator(text, f"<{s_low}", lambda v: v < low)
    if op == "<=":
        return (
            Comparator(text, f"<={s_low}", lambda v: v <= low)
            if exact
            else Comparator(text, f"<{s_high}", lambda v: v < high)
        )
    if op == "=":
        return (
            Comparator(text, f"={s_low}", lambda v: v == low)
            if exact
            else Comparator(text, f">={s_low}, <{s_high}", lambda v: low <= v < high)
        )
    if op == "!=":
        return (
            Comparator(text, f"!={s_low}", lambda v: v != low)
            if exact
            else Comparator(text, f"<{s_low} or >={s_high}", lambda v: not low <= v < high)
        )
    if op == "~":
        top = (low[0] + 1, 0, 0) if len(parts) == 1 else (low[0], low[1] + 1, 0)
    else:  # ^: the leftmost non-zero part given may not change (all given zero: the last one)
        nonzero = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        top = _high(parts[: nonzero + 1])
    s_top = _show(top)
    return Comparator(text, f">={s_low}, <{s_top}", lambda v: low <= v < top)


def _parts(version: str, text: str) -> list[int]:
    if "-" in version or "+" in version:
        raise ValueError(
            f"{text!r}: prerelease and build versions are not supported "
            "(migration versions are MAJOR.MINOR.PATCH)"
        )
    pieces = version.split(".")
    if len(pieces) > 3:
        raise ValueError(f"{text!r}: a version has at most three parts, MAJOR.MINOR.PATCH")
    out: list[int] = []
    for i, piece in enumerate(pieces):
        if piece in _WILDCARD:
            if any(p not in _WILDCARD for p in pieces[i:]):
                raise ValueError(f"{text!r}: nothing but wildcards may follow a wildcard")
            break
        if not _NUMBER.match(piece):
            raise ValueError(f"{text!r}: {piece!r} is not a version number (digits, no leading zeros)")
        out.append(int(piece))
    return out


def _low(parts: list[int]) -> Key:
    padded = [*parts, 0, 0, 0]
    return (padded[0], padded[1], padded[2])


def _high(parts: list[int]) -> Key:
    bumped = [*parts[:-1], parts[-1] + 1]
    return _low(bumped)


def _show(key: Key) -> str:
    return ".".join(str(p) for p in key)


def check(config: Config, require: str) -> CheckResult:
    """Does the database's current version satisfy `require` (`>=1.2,<2`, `^1.2`, `~1.2.3`…)?
    InvalidInput for a bad range, before connecting; no version applied is not satisfied."""
    # Loaded here, not at the top: only this command builds these records (see sqlmig.reports).
    from sqlmig.reports import CheckResult

    try:
        wanted = parse(require)
    except ValueError as exc:
        raise InvalidInput(f"--require: {exc}") from exc
    with open_session(config) as (conn, history):
        current = current_version(history.read(conn))
    if current is None:
        ok, message = (
            False,
            (f"no version applied ({config.qualified_table} is empty or missing); required {wanted.text}"),
        )
    else:
        try:
            ok = wanted.satisfied_by(Version.parse(current).key)
        except ValueError:
            ok = False
            message = f"version {current} is not a semantic version; required {wanted.text}"
        else:
            verb = "satisfies" if ok else "does not satisfy"
            message = f"version {current} {verb} {wanted.text} ({wanted.meaning})"
    return CheckResult(
        ok=ok, require=wanted.text, meaning=wanted.meaning, current_version=current, message=message
    )
