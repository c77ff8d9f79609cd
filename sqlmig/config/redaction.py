"""Passwords out of everything sqlmig shows: the secrets a connection string holds, and redact().

A connection string is read the way libpq reads it (psycopg's conninfo_to_dict), so the password
found is the one libpq would send. A string libpq cannot read, or reads otherwise than its author
meant (an unencoded `@`, `#` or `/` in a URL's password), is still somebody's password: the last
resort hides everything between the scheme (`postgresql:`) and the last `@` of the string, or,
without a scheme, everything before the last `@`. What is hidden is "***"; a key=value string
keeps its separators (`password=*** host=…`).
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import unquote

# A URL's user:password@ in running text: the password runs to the last `@` of the
# whitespace-free token, so `app:p@ss#Hunter2@host` hides `p@ss#Hunter2`, not only `p`.
# Whitespace is ASCII's, as for libpq (a no-break space is part of a value): re.ASCII.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*:/*)(?P<user>[^:@/\s]*):(?P<pw>\S*)@", re.IGNORECASE | re.ASCII
)
# An unquoted key=value value runs to whitespace, where `\ ` is an escaped space (libpq).
_KV_PASSWORD = re.compile(
    r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.?)+)", re.IGNORECASE | re.ASCII
)
_KV_TO_NEXT_KEY = re.compile(
    r"password\s*=\s*(.*?)(?=\s+[A-Za-z_]+\s*=|\s*$)", re.IGNORECASE | re.DOTALL | re.ASCII
)
_SCHEME = re.compile(r"\s*[a-z][a-z0-9+.-]*:/*", re.IGNORECASE | re.ASCII)
# Shorter ones are replaced only where the rules above find them: "***" for every `a` of a
# message would hide the message, not the password.
_MIN_SECRET = 4
_DELIMITERS = "@#/?:&= \t\"'"
_MAX_CUTS = 18


def dsn_secrets(dsn: str) -> list[str]:
    """Every string of `dsn` that is or may be its password, as written and decoded."""
    from psycopg import conninfo

    found: set[str] = set()
    try:
        password, parsed = conninfo.conninfo_to_dict(dsn).get("password"), True
    except Exception:  # not readable by libpq: the last resort below decides
        password, parsed = None, False
    if password:
        found.add(str(password))
    scheme = _SCHEME.match(dsn)
    if scheme is not None or not parsed:
        # A URL (readable or not: libpq may have read a password with an `@` otherwise), or a
        # string libpq cannot read at all.
        start = scheme.end() if scheme is not None else 0
        at = dsn.rfind("@", start)
        if at > start:
            # user:password; a user alone is no secret (and hiding it would hide it everywhere).
            _, colon, secret = dsn[start:at].partition(":")
            if colon:
                for whole in (secret, unquote(secret)):
                    found.update(_pieces(whole))
    if scheme is None:
        for match in _KV_PASSWORD.finditer(dsn):
            value = match[2]
            found.update((value, value.strip("'")))
        if not parsed:
            # An unquoted value with a space: the password runs to the next `key=`.
            for match in _KV_TO_NEXT_KEY.finditer(dsn):
                found.update(_pieces(match[1]))
    return sorted((s for s in found if s), key=len, reverse=True)


def _pieces(secret: str) -> list[str]:
    """The secret, and the parts libpq may have cut it into at a URL delimiter or a space and
    then quote on their own (`p@ss#Hunter2`: host `ss#Hunter2@…`; `a?/b=c`: parameter `/b`):
    every run between two cuts (between neighbouring cuts only, when there are many)."""
    cuts = [-1, *(i for i, c in enumerate(secret) if c in _DELIMITERS), len(secret)]
    if len(cuts) > _MAX_CUTS:
        pairs = list(itertools.pairwise(cuts))
        pairs += [(-1, b) for b in cuts[1:]] + [(a, len(secret)) for a in cuts[:-1]]
    else:
        pairs = [(a, b) for n, a in enumerate(cuts) for b in cuts[n + 1 :]]
    return [secret[a + 1 : b] for a, b in pairs]


def redact(text: str, *secrets: str | None) -> str:
    """Remove passwords from anything about to be shown: URLs, key=value DSNs, known secrets."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


__all__ = ["dsn_secrets", "redact"]
