"""The checks a file's statements must pass before anything of it runs: one set of rules.

`up` and `down` refuse a file that breaks one, and `lint`, `validate`, `verify`, `up --dry-run`
and `render` report the same problem with the same code and file:line, because they all call
`check` (files.load calls it on every migration and rollback, before any connection; execute
calls it again on the exact text a step runs, e.g. a rollback stored in the history).

The codes: `psql-meta-command`, `transaction-control`, `copy-from-stdin`, `needs-no-transaction`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlmig.files import sqltext
from sqlmig.models import Problem

CODES = ("psql-meta-command", "transaction-control", "copy-from-stdin", "needs-no-transaction")
_ALLOWED_IN_TRANSACTION = {"SAVEPOINT", "RELEASE", "ROLLBACK_TO"}
_COPY_FROM_STDIN = re.compile(r"COPY\b[^;]*?\bFROM\s+STDIN\b", re.IGNORECASE)
# A file can break a check only if it holds a backslash (a meta-command) or a word of a statement
# that controls the transaction, copies from stdin or needs autocommit (sqltext._classify). Most
# files hold none where it matters, and files.load then skips pglast (its import alone is 30 ms:
# a no-op `up` on a fresh checkout reads every file); see problems().
_SUSPECT = re.compile(
    r"\\|\b(?:BEGIN|START|COMMIT|END|ROLLBACK|ABORT|PREPARE|SAVEPOINT|RELEASE|COPY|CONCURRENTLY"
    r"|DATABASE|SYSTEM|TABLESPACE|SUBSCRIPTION|VACUUM|CLUSTER|DISCARD|REINDEX)\b",
    re.IGNORECASE,
)
_OPENING = re.compile(
    r"(?:BEGIN|START|COMMIT|END|ROLLBACK|ABORT|PREPARE|SAVEPOINT|RELEASE|COPY)\b", re.IGNORECASE
)
_AUTOCOMMIT = re.compile(
    r"\b(?:CONCURRENTLY|DATABASE|SYSTEM|TABLESPACE|SUBSCRIPTION|VACUUM"
    r"|CLUSTER|DISCARD|REINDEX)\b",
    re.IGNORECASE,
)
_LEX_MAX = 256 << 10  # the pure-Python lexer beyond this costs more than pglast's parse
_HARMLESS_META = {"\\echo", "\\qecho", "\\warn", "\\timing", "\\pset", "\\encoding"}
_ON = {"on", "1", "true", "yes", ""}


@dataclass(frozen=True)
class Checked:
    """A file's statements as they will run (a whole-file BEGIN; … COMMIT; wrapper dropped),
    what is wrong with them, verbose notes, and the canonical checksum if the parse gave it."""

    statements: tuple[sqltext.Statement, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    canonical: str | None
    transactional: bool = True  # as it was checked


def problems(
    path: str,
    text: str,
    *,
    transactional: bool,
    rollback: bool = False,
    keep: dict[str, tuple[str, Checked]] | None = None,
) -> tuple[Problem, ...]:
    """check(…).problems, without parsing a file that cannot have any (see _SUSPECT). `keep`:
    where a file that was parsed leaves its Checked (with the canonical checksum of a
    migration), by path, so that running it does not parse it again (see reuse)."""
    # Beyond _LEX_MAX the scans cost more than they save (the regex alone takes 1.5 s over a
    # 50 MB data file): such a file is parsed here, and the run reuses the parse (see reuse).
    if len(text) <= _LEX_MAX:
        if _SUSPECT.search(text) is None:
            return ()
        # Statement by statement, outside comments, quotes and dollar-quoted bodies (the words
        # of a PL/pgSQL BEGIN … END block do not count): pglast only if one may break a rule.
        metas: list[sqltext.MetaCommand] = []
        pieces = [text[a:b] for a, b in sqltext.lex_statements(text, metas)]
        if not metas and not any(
            _OPENING.match(piece) or (transactional and _AUTOCOMMIT.search(piece)) for piece in pieces
        ):
            return ()
    checked = check(path, text, transactional=transactional, rollback=rollback, canonical=not rollback)
    if keep is not None and not checked.problems:
        keep[path] = (text, checked)
    return checked.problems


def reuse(
    kept: Mapping[str, tuple[str, Checked]], path: str, text: str, *, transactional: bool, canonical: bool
) -> Checked | None:
    """What files.load's check of this very text found, if it checked it as the step runs it."""
    found = kept.get(path)
    if found is None or not (found[0] is text or found[0] == text):
        return None
    checked = found[1]
    if canonical and checked.canonical is None and "\r" not in text:
        return None  # taken without its canonical checksum
    return checked if checked.transactional == transactional else None


def check(
    path: str, text: str, *, transactional: bool, rollback: bool = False, canonical: bool = False
) -> Checked:
    """Split `text` (the file at `path`, a rollback's if `rollback`) and check it can run as its
    header asks. `canonical`: also take its canonical checksum from the same parse."""
    kind = "rollback" if rollback else "migration"
    result = sqltext.split(text, canonical=canonical)
    stmts = list(result.statements)
    notes: list[str] = []
    if not result.parsed:
        notes.append(
            f"{path}: pglast could not parse the file ({result.parse_error}); "
            "split it with the fallback lexer and left the SQL to the server"
        )
    problems: list[Problem] = []
    index = sqltext.LineIndex(text)
    for meta in result.meta_commands:
        verdict = _meta_verdict(meta)
        if verdict is not None:
            problems.append(
                Problem(
                    path=path, line=index.position(meta.start)[0], code="psql-meta-command", message=verdict
                )
            )
    # The hand-written style wraps the whole file in BEGIN; … COMMIT; the engine adds its own.
    if (
        len(stmts) >= 2
        and stmts[0].transaction_control in ("BEGIN", "START")
        and stmts[-1].transaction_control == "COMMIT"
    ):
        stmts = stmts[1:-1]
    for st in stmts:
        line, _ = index.position(st.start)
        if st.transaction_control and (
            not transactional or st.transaction_control not in _ALLOWED_IN_TRANSACTION
        ):
            problems.append(
                Problem(
                    path=path,
                    line=line,
                    code="transaction-control",
                    message=f"{st.transaction_control} inside a {kind}: sqlmig runs each file in its "
                    "own transaction; remove it (a whole-file BEGIN; … COMMIT; wrapper is fine)",
                )
            )
        elif _COPY_FROM_STDIN.match(st.text):
            problems.append(
                Problem(
                    path=path,
                    line=line,
                    code="copy-from-stdin",
                    message="COPY … FROM stdin with inline data is psql syntax, not SQL; load the "
                    "data with INSERT … VALUES, or COPY from a server-side file",
                )
            )
        elif st.needs_autocommit and transactional:
            problems.append(
                Problem(
                    path=path,
                    line=line,
                    code="needs-no-transaction",
                    message=f"{st.needs_autocommit} cannot run inside a transaction; put it in its own "
                    "file marked `-- sqlmig: no-transaction`",
                )
            )
    problems.sort(key=lambda p: p.line or 0)
    return Checked(tuple(stmts), tuple(problems), tuple(notes), result.canonical, transactional)


def _meta_verdict(meta: sqltext.MetaCommand) -> str | None:
    """None when a psql meta-command is harmless to skip; else why it cannot be run."""
    words = meta.text.split()
    if meta.name in _HARMLESS_META or meta.name == "\\.":
        return None  # `\.` ends COPY data, and COPY … FROM stdin is refused on its own line
    if meta.name == "\\set" and len(words) >= 2 and words[1] == "ON_ERROR_STOP":
        if (words[2] if len(words) > 2 else "").lower() in _ON:
            return None  # sqlmig always stops at the first error
        return (
            "`\\set ON_ERROR_STOP off` asks psql to continue after errors; sqlmig always "
            "stops at the first error and rolls the migration back: remove the line"
        )
    return (
        f"psql meta-command `{meta.text[:60]}` is not SQL and sqlmig does not run psql: "
        "only `\\set ON_ERROR_STOP on` and `\\echo` are accepted (and skipped); inline an "
        "included file's SQL, or make it its own migration"
    )
