"""Splitting a migration body into statements, with offsets back into the original file.

pglast (libpg_query, the server's own grammar) does the splitting, so dollar-quoted bodies,
BEGIN ATOMIC, nested comments and E'' strings are one statement each. When pglast cannot parse
a file (a syntax error, or syntax newer than its grammar) a small lexer splits it instead and the
server judges each piece: a syntax error is then reported by the server itself, with its
SQLSTATE, at the right line and column.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

# Statements PostgreSQL refuses inside a transaction block, by pglast node name.
_NEVER_IN_TRANSACTION = {
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
}


@dataclass(frozen=True)
class Statement:
    text: str
    start: int  # character offset of `text` in the file body
    kind: str  # pglast node name, or "" when split by the fallback lexer
    transaction_control: str | None = None  # "BEGIN", "COMMIT", ... for TransactionStmt
    needs_autocommit: str | None = None  # why it cannot run in a transaction


@dataclass(frozen=True)
class SplitResult:
    statements: tuple[Statement, ...]
    parsed: bool  # False: pglast failed and the fallback lexer split the file
    parse_error: str | None = None
    notes: tuple[str, ...] = field(default=())
    meta_commands: tuple[MetaCommand, ...] = ()


class LineIndex:
    """Character offset → 1-based (line, column), for error messages."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, offset) - 1
        return line + 1, offset - self._starts[line] + 1


def split(text: str) -> SplitResult:
    metas = find_meta_commands(text)
    # psql meta-commands are not SQL: blank them (same length, so offsets stay true) and parse
    # the rest; prepare() decides which ones are harmless.
    body = _blank(text, metas) if metas else text
    try:
        result = _split_pglast(body)
    except Exception as exc:  # pglast raises ParseError, but any failure means "let the server judge"
        result = SplitResult(
            statements=tuple(_split_fallback(body)),
            parsed=False,
            parse_error=str(exc),
        )
    return replace(result, meta_commands=tuple(metas)) if metas else result


@dataclass(frozen=True)
class MetaCommand:
    start: int
    end: int
    text: str  # the whole line, e.g. "\\set ON_ERROR_STOP on"

    @property
    def name(self) -> str:
        return self.text.split(None, 1)[0]


_META_HINT = re.compile(r"^[ \t]*\\", re.MULTILINE)


def find_meta_commands(text: str) -> list[MetaCommand]:
    """psql backslash commands at the start of a line, outside quotes, comments and bodies."""
    if _META_HINT.search(text) is None:  # the common case costs one regex scan
        return []
    found: list[MetaCommand] = []
    for _ in _lex_statements(text, found):
        pass
    return found


def _at_line_start(text: str, i: int) -> bool:
    line_start = max(text.rfind("\n", 0, i), text.rfind("\r", 0, i)) + 1
    return not text[line_start:i].strip()


def _blank(text: str, metas: list[MetaCommand]) -> str:
    parts: list[str] = []
    last = 0
    for m in metas:
        parts.append(text[last:m.start])
        parts.append(" " * (m.end - m.start))
        last = m.end
    parts.append(text[last:])
    return "".join(parts)


def is_empty(text: str) -> bool:
    """True when the body has nothing but comments and whitespace (a placeholder or no-op)."""
    if "/*" not in text and "\\" not in text:
        # Without block comments or meta-commands, any line that is not a `--` comment holds
        # SQL: a regex answers without walking the text in Python.
        return _SQL_LINE.search(text) is None
    return not any(_lex_statements(text))


_SQL_LINE = re.compile(r"(?:^|(?<=\r))[ \t\f\v]*(?:[^\s-]|-(?!-))", re.MULTILINE)


# libpg_query's JSON keys that say where a node is in the text, not what it is: `location`,
# `stmt_location`, `stmt_len`, and newer `<thing>_location` ones (DefElem.arg_location, …).
# A value of 0 is omitted from the JSON, so each key goes with its comma: the first statement
# of `CREATE …` and of `-- note⏎CREATE …` must come out the same. In JSON only a key is a
# quoted string followed by `:`, and quotes inside strings are escaped, so no constant is touched.
_AFTER_COMMA = re.compile(r',"(?:[a-z]+_)?location":-?\d+|,"stmt_len":-?\d+')
_FIRST_KEY = re.compile(r'\{"(?:(?:[a-z]+_)?location|stmt_len)":-?\d+,?')
_PARSER_VERSION = re.compile(r'\A\{"version":\d+,?')


def canonical_checksum(text: str) -> str | None:
    """SHA-256 of a file's parse tree, or None when pglast cannot parse it.

    Comments, whitespace, line ends and the case of keywords and unquoted identifiers do not
    count; constants do (`DEFAULT 5` and `DEFAULT 6` differ, and so does any edit inside a `$$`
    body, which is a string to the parser). libpg_query's fingerprint is no use here: it
    ignores constants. Costs one parse to JSON and two regex passes: ~0.1 s per MB of SQL.
    """
    from pglast.parser import parse_sql_json

    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # files.normalize
    metas = find_meta_commands(text)
    try:
        tree = parse_sql_json(_blank(text, metas) if metas else text)
    except Exception:  # a syntax error, or syntax newer than pglast's grammar: no canonical form
        return None
    # The top-level `version` is libpg_query's own (180006): a pglast update is not an edit.
    tree = _PARSER_VERSION.sub("{", tree, count=1)
    digest = hashlib.sha256(_FIRST_KEY.sub("{", _AFTER_COMMA.sub("", tree)).encode())
    for meta in metas:  # psql meta-commands are not SQL, but adding one is not formatting
        digest.update(("\n" + " ".join(meta.text.split())).encode())
    return digest.hexdigest()


def _split_pglast(text: str) -> SplitResult:
    from pglast import ast, parse_sql

    out: list[Statement] = []
    for node in parse_sql(text):
        # pglast already turns libpg_query's byte offsets into character offsets of `text`;
        # converting them again cut statements short in any file with non-ASCII text.
        start = node.stmt_location or 0
        end = start + node.stmt_len if node.stmt_len else len(text)
        chunk = text[start:end]
        stripped = len(chunk) - len(chunk.lstrip())
        stmt = node.stmt
        kind = type(stmt).__name__
        control = None
        if isinstance(stmt, ast.TransactionStmt):
            control = stmt.kind.name.removeprefix("TRANS_STMT_")
        out.append(
            Statement(
                text=chunk[stripped:],
                start=start + stripped,
                kind=kind,
                transaction_control=control,
                needs_autocommit=_needs_autocommit(stmt, kind),
            )
        )
    return SplitResult(statements=tuple(out), parsed=True)


def _needs_autocommit(stmt: object, kind: str) -> str | None:
    if kind in _NEVER_IN_TRANSACTION:
        return _NEVER_IN_TRANSACTION[kind]
    # VACUUM cannot run in a transaction block; ANALYZE (the same node) can.
    if kind == "VacuumStmt" and getattr(stmt, "is_vacuumcmd", True):
        return "VACUUM"
    if kind == "IndexStmt" and getattr(stmt, "concurrent", False):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and getattr(stmt, "concurrent", False):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt":
        for param in getattr(stmt, "params", None) or ():
            if getattr(param, "defname", "") == "concurrently":
                return "REINDEX CONCURRENTLY"
        if getattr(stmt, "kind", None) is not None and stmt.kind.name in (  # type: ignore[attr-defined]
            "REINDEX_OBJECT_SCHEMA",
            "REINDEX_OBJECT_SYSTEM",
            "REINDEX_OBJECT_DATABASE",
        ):
            return "REINDEX " + stmt.kind.name.removeprefix("REINDEX_OBJECT_")  # type: ignore[attr-defined]
    return None


# -- fallback lexer ---------------------------------------------------------------------------

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$")
_COMMENT_END = re.compile(r"[\r\n]")  # PostgreSQL ends a `--` comment at CR as well as LF


_TX_WORDS = re.compile(
    r"(?P<word>BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|PREPARE\s+TRANSACTION"
    r"|SAVEPOINT|RELEASE)\b(?P<rest>\s*(?:PREPARED|TO)?)",
    re.IGNORECASE,
)


def _split_fallback(text: str) -> list[Statement]:
    """Split with the lexer, then classify each piece: pglast where the piece parses alone,
    so a mid-file COMMIT or a CONCURRENTLY is still caught before anything runs."""
    out: list[Statement] = []
    for s, e in _lex_statements(text):
        piece = text[s:e]
        try:
            parsed = _split_pglast(piece).statements
        except Exception:  # this is the piece the server will reject; it judges the syntax
            parsed = ()
        if len(parsed) == 1:
            st = parsed[0]
            out.append(Statement(text=piece, start=s, kind=st.kind,
                                 transaction_control=st.transaction_control,
                                 needs_autocommit=st.needs_autocommit))
        else:
            out.append(Statement(text=piece, start=s, kind="",
                                 transaction_control=_transaction_word(piece)))
    return out


def _transaction_word(piece: str) -> str | None:
    match = _TX_WORDS.match(piece)
    if match is None:
        return None
    word = match["word"].split()[0].upper()
    rest = match["rest"].strip().upper()
    if word in ("ROLLBACK", "COMMIT") and rest == "PREPARED":
        return f"{word}_PREPARED"
    if word == "ROLLBACK" and rest == "TO":
        return "ROLLBACK_TO"
    return {"END": "COMMIT", "ABORT": "ROLLBACK"}.get(word, word)


def _lex_statements(text: str, metas: list[MetaCommand] | None = None
                    ) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each statement, skipping comments, quotes and dollar quotes.

    psql meta-command lines (a backslash first on the line, outside any quote) are skipped
    too, and collected into `metas` when given. Tolerant by design: an unterminated quote runs
    to the end, and the server reports it.
    """
    i, n = 0, len(text)
    start: int | None = None
    last_word, atomic = "", 0
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "\\" and _at_line_start(text, i):
            nl = _COMMENT_END.search(text, i)
            end = n if nl is None else nl.start()
            if metas is not None:
                metas.append(MetaCommand(start=i, end=end, text=text[i:end].rstrip()))
            i = end
            continue
        if text.startswith("--", i):
            nl = _COMMENT_END.search(text, i)
            i = n if nl is None else nl.end()
            continue
        if text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if start is None:
            start = i
        if ch == ";" and not atomic:
            yield start, i + 1
            start = None
            last_word = ""
            i += 1
        elif ch == ";":
            i += 1
        elif ch in "'\"":
            escaped = ch == "'" and i > 0 and text[i - 1] in "eE" and (
                i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_")
            )
            i += 1
            while i < n:
                if escaped and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == ch:
                    if i + 1 < n and text[i + 1] == ch:
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "$" and (m := _DOLLAR_TAG.match(text, i)) and not (
            i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            close = text.find(m.group(0), m.end())
            i = n if close < 0 else close + len(m.group(0))
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            word = text[i:j].upper()
            # A SQL-standard function body (BEGIN ATOMIC … END) holds semicolons; CASE … END
            # nests inside it. psql's own lexer counts the same way.
            if word == "ATOMIC" and last_word == "BEGIN" and atomic == 0:
                atomic = 1
            elif atomic and word == "CASE":
                atomic += 1
            elif atomic and word == "END":
                atomic -= 1
            last_word = word
            i = j
        else:
            i += 1
    if start is not None:
        yield start, n

