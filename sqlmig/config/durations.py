"""Durations as PostgreSQL writes them: `500ms`, `5s`, `10min`, `1h`, `1d`; `0` or `off` means
no limit. In settings and flags a bare number is seconds, like --lock-timeout; in a file header a
unit is required, because to PostgreSQL a bare `5` means 5 ms."""

from __future__ import annotations

import re

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)\Z")
INHERIT = "inherit"  # a setting's value meaning "leave the session's value (role/database)"
MAX_RETRY_DELAY = 60.0
# lock_timeout and statement_timeout are int milliseconds on the server: about 24.8 days.
MAX_DURATION = 2_147_483.0


def parse_duration(text: str | float, *, bare: str | None = "s") -> float:
    """Seconds (0 = no limit) from `5s`, `500ms`, `10min`, `off`…; a bare number is in `bare`
    units, or refused when `bare` is None. ValueError says what is wrong."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        if value == "off":
            return 0.0
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{text!r} is not a duration (e.g. 5s, 500ms, 10min, 0 or off)")
        unit = match["unit"] or bare
        if unit is None and float(match["n"]) != 0:
            raise ValueError(
                f"{text!r} needs a unit (e.g. {match['n']}s or {match['n']}ms): "
                "to PostgreSQL a bare number is milliseconds"
            )
        if unit is not None and unit not in _UNITS:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (use {', '.join(_UNITS)})")
        seconds = float(match["n"]) * _UNITS[unit or "s"]
    if seconds < 0:
        raise ValueError(f"{text!r}: a duration cannot be negative")
    if not seconds <= MAX_DURATION:  # also inf and nan, which cannot become milliseconds
        raise ValueError(f"{text!r}: at most {MAX_DURATION:.0f} s, about 24 days (PostgreSQL's limit)")
    return seconds


def setting_value(value: object) -> float | None:
    """A Config timeout from a flag, the environment, sqlmig.toml or Python: None = inherit."""
    if value is None or (isinstance(value, str) and value.strip().lower() == INHERIT):
        return None
    return parse_duration(value)  # type: ignore[arg-type]


def format_duration(seconds: float | None) -> str:
    """How messages show a timeout: `5s`, `250ms`, `10min`, `off`, `inherited`."""
    if seconds is None:
        return "inherited"
    if seconds == 0:
        return "off"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def server_value(seconds: float) -> str:
    """The value to SET: whole milliseconds (the unit of both settings); '0' = no limit."""
    return "0" if seconds == 0 else f"{max(1, round(seconds * 1000))}ms"


def retry_delay(base: float, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): base, 2×base, 4×base… at most a minute."""
    return min(base * 2 ** (retry - 1), MAX_RETRY_DELAY)
