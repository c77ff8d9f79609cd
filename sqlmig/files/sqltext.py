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


@dataclass(frozen=True, init=False)
class Statement:
    """One statement: where it starts, what it is, and its `text`.

    The text is sliced from the file body each time it is asked for, not held: the statements
    of a 50 MB data migration would otherwise be a second copy of the file for the whole run.
    """

    start: int  # character offset of `text` in the file body
    kind: str  # pglast node name, or "" when split by the fallback lexer
    transaction_control: str | None  # "BEGIN", "COMMIT", ... for TransactionStmt
    needs_autocommit: str | None  # why it cannot run in a transaction
    _body: str = field(repr=False, compare=False)
    _span: tuple[int, int] = field(repr=False)  # of the text in _body

    def __init__(
        self,
        text: str | None = None,
        start: int = 0,
        kind: str = "",
        transaction_control: str | None = None,
        needs_autocommit: str | None = None,
        *,
        body: str | None = None,
        end: int | None = None,
    ) -> None:
        """Either `text` itself, or the `body` it is `body[start:end]` of."""
        if text is not None:
            body, span = text, (0, len(text))
        else:
            assert body is not None and end is not None
            span = (start, end)
        setattr_ = object.__setattr__
        setattr_(self, "start", start)
        setattr_(self, "kind", kind)
        setattr_(self, "transaction_control", transaction_control)
        setattr_(self, "needs_autocommit", needs_autocommit)
        setattr_(self, "_body", body)
        setattr_(self, "_span", span)

    @property
    def text(self) -> str:
        return self._body[self._span[0] : self._span[1]]

    @property
    def size(self) -> int:
        """len(text), without slicing it out."""
        return self._span[1] - self._span[0]


@dataclass(frozen=True)
class SplitResult:
    statements: tuple[Statement, ...]
    parsed: bool  # False: pglast failed and the fallback lexer split the file
    parse_error: str | None = None
    notes: tuple[str, ...] = field(default=())
    meta_commands: tuple[MetaCommand, ...] = ()
    # canonical_checksum(text), taken from the same parse when the text has LF line ends only
    # (else None: ask canonical_checksum, which parses the normalized text).
    canonical: str | None = None


class LineIndex:
    """Character offset → 1-based (line, column), for error messages."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None  # found on the first call: most files need none

    def position(self, offset: int) -> tuple[int, int]:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", self._text)]
        line = bisect.bisect_right(self._starts, offset) - 1
        return line + 1, offset - self._starts[line] + 1


def split(text: str, *, canonical: bool = False) -> SplitResult:
    """`canonical`: also take the text's canonical checksum from the same parse (a pending
    migration's, stored in its history row)."""
    metas = find_meta_commands(text)
    # psql meta-commands are not SQL: blank them (same length, so offsets stay true) and parse
    # the rest; prepare() decides which ones are harmless.
    body = _blank(text, metas) if metas else text
    # What canonical_checksum would parse is this very body when there is no CR to normalize.
    digest = _TreeDigest() if canonical and "\r" not in text else None
    try:
        result = _split_pglast(body, digest)
        if digest is not None:
            result = replace(result, canonical=digest.hexdigest(metas))
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


def find_meta_commands(text: str) -> list[MetaCommand]:
    """psql backslash commands, outside quotes, comments and bodies.

    Anywhere on a line, as psql reads them: `CREATE TABLE t (); \\! cmd` runs `cmd` under psql
    (and so in a rendered script). SQL has no backslash outside a quote, so none is mistaken.
    """
    if "\\" not in text:  # the common case costs one scan
        return []
    found: list[MetaCommand] = []
    for _ in lex_statements(text, found):
        pass
    return found


def _blank(text: str, metas: list[MetaCommand]) -> str:
    parts: list[str] = []
    last = 0
    for m in metas:
        parts.append(text[last : m.start])
        parts.append(" " * (m.end - m.start))
        last = m.end
    parts.append(text[last:])
    return "".join(parts)


def is_empty(text: str) -> bool:
    """True when the body has nothing but comments and whitespace (a placeholder or no-op)."""
    first = text[:1]
    if first and first not in "-/\\" and not first.isspace():
        return False  # it starts with SQL (most rollbacks)
    if "/*" not in text and "\\" not in text:
        # Without block comments or meta-commands, any line that is not a `--` comment holds
        # SQL: a regex answers without walking the text in Python.
        return _SQL_LINE.search(text) is None
    return not any(lex_statements(text))


_SQL_LINE = re.compile(r"(?:^|(?<=\r))[ \t\f\v]*(?:[^\s-]|-(?!-))", re.MULTILINE)


# libpg_query's JSON keys that say where a node is in the text, not what it is (its ParseLoc
# fields): `location`, `stmt_location`, `stmt_len`, `<thing>_location` (DefElem.arg_location, …)
# and the bounds of IN lists and ARRAY[…] (`list_start`, `rexpr_list_end`, …). A value of 0 is
# omitted from the JSON, so each key goes with its comma: the first statement of `CREATE …` and
# of `-- note⏎CREATE …` must come out the same. In JSON only a key is a quoted string followed by
# `:`, and quotes inside strings are escaped, so no constant is touched.
_WHERE = r'"(?:(?:[a-z]+_)?(?:location|list_start|list_end)|stmt_len)":-?\d+'
_AFTER_COMMA = re.compile("," + _WHERE)
_FIRST_KEY = re.compile(r"\{" + _WHERE + ",?")
# Where each statement (a RawStmt, found only at the top of the tree) starts in the JSON, and
# its location at the end: `…},"stmt_location":120,"stmt_len":52}`.
_ELEMENT = '{"stmt":{"'
_TAIL = re.compile(r'(?:,"stmt_location":(\d+))?(?:,"stmt_len":(\d+))?\}\Z')
# A file longer than this is parsed in pieces (see _parsed_pieces).
_PIECE = 1 << 18


def canonical_checksum(text: str) -> str | None:
    """SHA-256 of a file's parse tree, or None when pglast cannot parse it.

    Comments, whitespace, line ends and the case of keywords and unquoted identifiers do not
    count; constants do (`DEFAULT 5` and `DEFAULT 6` differ, and so does any edit inside a `$$`
    body, which is a string to the parser). libpg_query's fingerprint is no use here: it
    ignores constants. The tree is hashed as `{"stmts":[…]}` without its positions, and without
    the parser's version (a pglast update is not an edit); a large file piece by piece, which
    hashes the same. Costs a parse to JSON and two regex passes: ~30 ms per MB of SQL.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # files.normalize
    metas = find_meta_commands(text)
    digest = _TreeDigest()
    try:
        for _, _, tree in _parsed_pieces(_blank(text, metas) if metas else text):
            digest.add(tree)
    except Exception:  # a syntax error, or syntax newer than pglast's grammar: no canonical form
        return None
    return digest.hexdigest(metas)


class _TreeDigest:
    """canonical_checksum, fed one parsed piece at a time (by it, or by split's own parse)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(b'{"stmts":[')
        self._first = True

    def add(self, tree: str) -> None:
        elements = tree[tree.index('"stmts":[') + 9 : -2]
        if elements:
            self._sha.update(
                (("" if self._first else ",") + _FIRST_KEY.sub("{", _AFTER_COMMA.sub("", elements))).encode()
            )
            self._first = False

    def hexdigest(self, metas: list[MetaCommand]) -> str:
        self._sha.update(b"]}")
        for meta in metas:  # psql meta-commands are not SQL, but adding one is not formatting
            self._sha.update(("\n" + " ".join(meta.text.split())).encode())
        return self._sha.hexdigest()


def _parsed_pieces(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, libpg_query's JSON parse tree) of consecutive pieces of `text`, each a run of
    whole statements: the file itself, or for a large one pieces of about _PIECE characters.

    libpg_query's tree of a 50 MB data migration takes several times the file's size in memory
    (its JSON alone is twice as big), so a large file is cut after a `;` that ends a line. A cut
    inside a literal, a block comment, a dollar-quoted or BEGIN ATOMIC body, or parentheses
    leaves a piece that does not parse (unterminated, or unbalanced), and one in a `--` comment
    leaves its last statement unended: such a piece grows until it parses with every statement
    ended by a `;`. The lexer is then between statements at the cut, so the pieces' statements
    are the file's.
    Raises pglast's ParseError, its index counted from the start of `text`, when `text` does
    not parse.
    """
    from pglast.parser import ParseError, parse_sql_json

    n = len(text)
    if n <= _PIECE:
        yield 0, n, parse_sql_json(text)
        return
    pos, size = 0, _PIECE
    while pos < n:
        end = n
        if n - pos > size:
            cut = max(text.rfind(";\n", pos, pos + size), text.rfind(";\r", pos, pos + size))
            if cut < 0:
                size *= 2
                continue
            end = cut + 1
        try:
            tree = parse_sql_json(text[pos:end])
        except ParseError as exc:
            if end < n:
                size *= 2
                continue
            where = exc.args[1] if len(exc.args) > 1 else None
            raise ParseError(exc.args[0], None if where is None else where + pos) from exc
        if end < n and _open_at_end(tree):
            size *= 2  # the `;` was in a `--` comment and the piece's last statement goes on
            continue
        yield pos, end, tree
        pos, size = end, _PIECE


def _open_at_end(tree: str) -> bool:
    """Whether the last statement of a parsed piece was ended by the end of the piece rather
    than by a `;` (it has no stmt_len)."""
    if tree.endswith('"stmts":[]}'):
        return False
    tail = _TAIL.search(tree, max(0, len(tree) - 66), len(tree) - 2)
    return tail is None or tail[2] is None


def _split_pglast(text: str, digest: _TreeDigest | None = None) -> SplitResult:
    out: list[Statement] = []
    for offset, end, tree in _parsed_pieces(text):
        out += _statements(text, offset, end, tree)
        if digest is not None:
            digest.add(tree)
    return SplitResult(statements=tuple(out), parsed=True)


def _statements(text: str, offset: int, end: int, tree: str) -> Iterator[Statement]:
    """The statements of text[offset:end] from its JSON parse tree, read without json.loads
    (that would build the whole tree as Python objects): each RawStmt starts with `{"stmt":{"`
    and the node name, and ends with its location; only a statement whose kind matters to
    classify is loaded."""
    chars = _Chars(None if text.isascii() else text[offset:end])
    i = tree.find(_ELEMENT)
    while i >= 0:
        j = tree.find(_ELEMENT, i + len(_ELEMENT))
        e = j - 1 if j >= 0 else len(tree) - 2  # before the `,` of the next one, or the `]}`
        kind = tree[i + len(_ELEMENT) : tree.index('"', i + len(_ELEMENT))]
        tail = _TAIL.search(tree, max(i, e - 64), e)
        assert tail is not None, "a RawStmt ends with its location"
        location, length = int(tail[1] or 0), int(tail[2] or 0)
        start = offset + chars(location)
        stop = offset + chars(location + length) if length else end
        while start < stop and text[start].isspace():
            start += 1
        control, autocommit = _classify(kind, tree, i, e)
        yield Statement(
            start=start,
            kind=kind,
            transaction_control=control,
            needs_autocommit=autocommit,
            body=text,
            end=stop,
        )
        i = j


class _Chars:
    """libpg_query's byte offsets into a piece's UTF-8 → character offsets into the piece
    (asked for in increasing order); the piece is None when it is ASCII, where both agree."""

    def __init__(self, piece: str | None) -> None:
        self._utf8 = piece.encode() if piece is not None else None
        self._byte = self._char = 0

    def __call__(self, offset: int) -> int:
        if self._utf8 is None:
            return offset
        self._char += len(self._utf8[self._byte : offset].decode())
        self._byte = offset
        return self._char


# Kinds that cannot run in a transaction when their tree holds `"concurrent":true`.
_CONCURRENT = {
    "IndexStmt": "CREATE INDEX CONCURRENTLY",
    "DropStmt": "DROP INDEX CONCURRENTLY",
    "AlterTableStmt": "DETACH PARTITION CONCURRENTLY",
}
# Node kinds whose fields say how a statement must run; any other kind needs no look inside.
_LOOKED_INTO = {
    "TransactionStmt",
    "VacuumStmt",
    "ReindexStmt",
    "ClusterStmt",
    "DiscardStmt",
    "AlterDatabaseStmt",
    *_CONCURRENT,
}


def _classify(kind: str, tree: str, start: int, end: int) -> tuple[str | None, str | None]:
    """(transaction control, why it needs autocommit) of the RawStmt at tree[start:end]."""
    if kind in _NEVER_IN_TRANSACTION:
        return None, _NEVER_IN_TRANSACTION[kind]
    if kind not in _LOOKED_INTO:
        return None, None
    if kind in _CONCURRENT:
        # No node inside these has a `concurrent` field of its own (in ALTER TABLE only a
        # DETACH PARTITION's has one; the JSON leaves out false ones), and a constant cannot
        # hold an unescaped `"`: no need to load the tree.
        if tree.find('"concurrent":true', start, end) < 0:
            return None, None
        return None, _CONCURRENT[kind]
    if kind == "ClusterStmt":
        # CLUSTER of every clustered table (no table named) runs outside a transaction block.
        named = tree.find('"relation":', start, end) >= 0
        return None, None if named else "CLUSTER without a table"
    if kind == "DiscardStmt":
        return None, "DISCARD ALL" if tree.find('"DISCARD_ALL"', start, end) >= 0 else None
    import json

    # The JSON leaves out false, 0 and empty fields.
    node = json.loads(tree[start:end])["stmt"][kind]
    if kind == "TransactionStmt":
        return node["kind"].removeprefix("TRANS_STMT_"), None
    # VACUUM cannot run in a transaction block; ANALYZE (the same node) can.
    if kind == "VacuumStmt":
        return None, "VACUUM" if node.get("is_vacuumcmd") else None
    if kind == "AlterDatabaseStmt":  # WITH CONNECTION LIMIT and the like can
        moves = any(
            option.get("DefElem", {}).get("defname") == "tablespace" for option in node.get("options", ())
        )
        return None, "ALTER DATABASE SET TABLESPACE" if moves else None
    for param in node.get("params", ()):  # ReindexStmt
        if param.get("DefElem", {}).get("defname") == "concurrently":
            return None, "REINDEX CONCURRENTLY"
    target = node.get("kind", "")
    if target in ("REINDEX_OBJECT_SCHEMA", "REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
        return None, "REINDEX " + target.removeprefix("REINDEX_OBJECT_")
    return None, None


# -- fallback lexer ---------------------------------------------------------------------------

# Compiled when the lexer first runs (re caches it): compiling it costs 5 ms, and most runs
# never need the lexer.
_DOLLAR_TAG = r"\$([A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$"
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
    for s, e in lex_statements(text):
        piece = text[s:e]
        try:
            parsed = _split_pglast(piece).statements
        except Exception:  # this is the piece the server will reject; it judges the syntax
            parsed = ()
        if len(parsed) == 1:
            st = parsed[0]
            out.append(
                Statement(
                    start=s,
                    kind=st.kind,
                    transaction_control=st.transaction_control,
                    needs_autocommit=st.needs_autocommit,
                    body=text,
                    end=e,
                )
            )
        else:
            out.append(
                Statement(start=s, kind="", transaction_control=_transaction_word(piece), body=text, end=e)
            )
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


def lex_statements(text: str, metas: list[MetaCommand] | None = None) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each statement, skipping comments, quotes and dollar quotes.

    psql meta-commands (from a backslash outside any quote to the end of its line) are skipped
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
        if ch == "\\":
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
            escaped = (
                ch == "'"
                and i > 0
                and text[i - 1] in "eE"
                and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
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
        elif (
            ch == "$"
            and (m := re.compile(_DOLLAR_TAG).match(text, i))
            and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"))
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
