"""`sqlmig lint`: check migrations for statements that lock, rewrite or break, without a database.

Flow: choose the files → split each with sqltext → parse each statement with pglast → run the
rules (lint_rules) in file order, carrying what earlier files did → check breaking statements
against the version bump → apply `-- sqlmig: allow <rule-id> <reason>` comments → a LintReport.
The formatters at the end turn a report into lines; the CLI prints them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlmig import files as files_mod
from sqlmig import headers, sqltext
from sqlmig.config import Config
from sqlmig.errors import InvalidInput
from sqlmig.lint_checks import FileState, Hit, SetState, check
from sqlmig.lint_rules import RULES
from sqlmig.models import ZERO, Version
from sqlmig.reports import LintFinding, LintReport

# `-- sqlmig: allow <rule-id> <reason>`; found anywhere outside statements, so a misplaced one is
# reported instead of silently doing nothing.
_ALLOW = re.compile(r"--[ \t]*sqlmig[ \t]*:[ \t]*allow\b[ \t]*(?P<rest>[^\r\n]*)", re.IGNORECASE)
_META = {"unused-allow", "allow-needs-reason"}
_NEWLINE = re.compile(r"\r\n|\r|\n")  # where PostgreSQL ends a `--` comment


@dataclass
class _Unit:
    path: str  # as reported
    text: str
    transactional: bool
    report: bool  # False: read only for what later files depend on
    version: Version | None = None
    previous: tuple[Version, str] | None = None  # the version and path before this file's
    # The header bounds lock waits (`-- sqlmig: lock-timeout 5s`, not 0): the engine and the
    # rendered script SET it before the first statement. The --migration-lock-timeout setting
    # does not count: it belongs to where the file runs, which lint does not know.
    lock_timeout: bool = False


@dataclass
class _Allow:
    line: int
    column: int
    rule: str
    reason: str
    statement: int | None  # index of the statement right below, if any
    used: bool = False


@dataclass
class _Found:
    statement: int
    hit: Hit
    offset: int  # in the file


def lint(config: Config, paths: Iterable[str | Path] = ()) -> LintReport:
    """Lint every migration of the project, or just `paths` (in the context of the set)."""
    units = _units(config, [Path(p) for p in paths])
    shared = SetState()
    findings: list[LintFinding] = []
    allowed: list[LintFinding] = []
    for unit in units:
        if unit.previous is None and unit.version is None:
            shared = SetState()  # a file outside the set carries nothing over
        active, suppressed = _lint_unit(unit, shared)
        if unit.report:
            findings += active
            allowed += suppressed
    return LintReport(files=tuple(u.path for u in units if u.report), findings=tuple(findings),
                      allowed=tuple(allowed))


# -- which files --------------------------------------------------------------------------------

def _units(config: Config, paths: list[Path]) -> list[_Unit]:
    root = config.root
    wanted: list[Path] = []
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        if path.resolve() not in wanted:
            wanted.append(path.resolve())
    mig_dir = config.migrations_path.resolve()
    units: list[_Unit] = []
    if not paths or any(p.parent == mig_dir for p in wanted):
        migration_set = files_mod.load(root, config.migrations_path, config.rollbacks_path)
        previous = (ZERO, "")
        for mig in migration_set.migrations:
            full = (root / mig.path).resolve()
            units.append(_Unit(path=mig.path, text=mig.text, transactional=mig.transactional,
                               report=not paths or full in wanted, version=mig.version,
                               previous=previous, lock_timeout=bool(mig.lock_timeout)))
            previous = (mig.version, mig.path)
            if full in wanted:
                wanted.remove(full)
    for path in wanted:  # files outside the set: linted alone, no version check
        rel = files_mod.relative(path, root)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{rel}: cannot read: {exc.strerror}") from exc
        text, error, line = files_mod.decode(raw)
        if text is None:
            raise InvalidInput(f"{rel}:{line}: {error}")
        directives = headers.parse_header(text).directives
        transactional = not any(v.split()[:1] == ["no-transaction"] for v, _ in directives)
        units.append(_Unit(path=rel, text=text, transactional=transactional, report=True,
                           lock_timeout=_header_lock_timeout(directives)))
    return units


def _header_lock_timeout(directives: list[tuple[str, int]]) -> bool:
    from sqlmig.timeouts import parse_duration

    for value, _ in directives:
        word, _, rest = value.partition(" ")
        if word.lower() == "lock-timeout":
            try:
                return parse_duration(rest.strip(), bare=None) > 0
            except ValueError:
                return False
    return False


# -- one file -----------------------------------------------------------------------------------

def _lint_unit(unit: _Unit, shared: SetState) -> tuple[list[LintFinding], list[LintFinding]]:
    split = sqltext.split(unit.text)
    statements = split.statements
    fs = FileState(transactional=unit.transactional, lock_timeout=unit.lock_timeout)
    found: list[_Found] = []
    for i, st in enumerate(statements):
        for hit in _statement_hits(st, fs, shared):
            found.append(_Found(i, hit, st.start + hit.offset))
    found += _version_hits(unit, found)
    found.sort(key=lambda f: (f.offset, f.statement))

    index = sqltext.LineIndex(unit.text)
    allows, meta = _allows(unit, statements, index)
    active: list[LintFinding] = []
    suppressed: list[LintFinding] = []
    for f in found:
        finding = _finding(unit.path, index, f.offset, f.hit)
        match = [a for a in allows if a.statement == f.statement and a.rule == f.hit.rule]
        reasons = [a for a in match if a.reason]
        for a in match:
            a.used = True
        if reasons:
            suppressed.append(replace(finding, allowed=reasons[0].reason))
        else:
            active.append(finding)
    for a in allows:
        if not a.used and a.reason:
            meta.append((a.line, a.column, Hit(
                "unused-allow", 0,
                f"`-- sqlmig: allow {a.rule}` suppresses nothing: "
                + ("it is not on the comment lines right above a statement"
                   if a.statement is None else f"the statement below has no {a.rule} finding"))))
    for line, column, hit in meta:
        rule = RULES[hit.rule]
        active.append(LintFinding(rule=hit.rule, severity=rule.severity, path=unit.path, line=line,
                                  column=column, message=hit.message, fix=rule.fix))
    active.sort(key=lambda f: (f.line, f.column))
    return active, suppressed


def _statement_hits(st: sqltext.Statement, fs: FileState, shared: SetState) -> list[Hit]:
    from pglast import parse_sql

    try:
        parsed = parse_sql(st.text)
    except Exception as exc:  # pglast's ParseError, or anything newer than its grammar
        # args[0] without pglast's "at index N", which counts from the statement, not the file.
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return [Hit("unparsed-statement", 0, f"not linted: pglast cannot parse it ({reason})")]
    hits: list[Hit] = []
    for raw in parsed:
        hits += check(raw.stmt, fs, shared)
    return hits


def _version_hits(unit: _Unit, found: list[_Found]) -> list[_Found]:
    """A breaking statement needs a MAJOR bump (for 0.x, a MINOR one, as Cargo and npm read it)."""
    if unit.version is None or unit.previous is None:
        return []
    prev, prev_path = unit.previous
    cur = unit.version
    if cur.major > prev.major or (cur.major == prev.major == 0 and cur.minor > prev.minor):
        return []
    after = f" of {prev_path}" if prev_path else ""
    out: list[_Found] = []
    seen: set[int] = set()
    for f in found:
        if RULES[f.hit.rule].breaking and f.statement not in seen:
            seen.add(f.statement)
            out.append(_Found(f.statement, Hit(
                "breaking-needs-major", f.hit.offset,
                f"{f.hit.rule} is breaking for running code, but version {cur} is not a major "
                f"bump over {prev}{after}: make it {prev.major + 1}.0.0"), f.offset))
    return out


def _allows(unit: _Unit, statements: tuple[sqltext.Statement, ...],
            index: sqltext.LineIndex) -> tuple[list[_Allow], list[tuple[int, int, Hit]]]:
    """Every allow comment outside the statements, with the statement right below it."""
    text = unit.text
    spans = [(st.start, st.start + len(st.text)) for st in statements]
    lines = _NEWLINE.split(text)
    first_line = {index.position(st.start)[0]: i for i, st in reversed(list(enumerate(statements)))}
    allows: list[_Allow] = []
    meta: list[tuple[int, int, Hit]] = []
    for m in _ALLOW.finditer(text):
        if any(start <= m.start() < end for start, end in spans):
            continue  # inside a statement: a string or a function body, not a directive
        line, column = index.position(m.start())
        rule, _, reason = m["rest"].strip().partition(" ")
        reason = reason.strip()
        if rule not in RULES or rule in _META:
            close = difflib.get_close_matches(rule, list(RULES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            what = f"names an unknown rule `{rule}`{hint}" if rule else "names no rule"
            meta.append((line, column, Hit("unused-allow", 0,
                                           f"`-- sqlmig: allow` {what}: it suppresses nothing")))
            continue
        if not reason:
            meta.append((line, column, Hit(
                "allow-needs-reason", 0,
                f"`-- sqlmig: allow {rule}` gives no reason, so it suppresses nothing")))
        allows.append(_Allow(line, column, rule, reason, _statement_below(line, lines, first_line)))
    return allows, meta


def _statement_below(line: int, lines: list[str], first_line: dict[int, int]) -> int | None:
    """The statement starting right under a comment block that holds `line`, if any."""
    if not lines[line - 1].lstrip().startswith("--"):
        return None  # a comment after code on the same line
    n = line + 1
    while n <= len(lines) and n not in first_line and lines[n - 1].lstrip().startswith("--"):
        n += 1
    return first_line.get(n)


def _finding(path: str, index: sqltext.LineIndex, offset: int, hit: Hit) -> LintFinding:
    rule = RULES[hit.rule]
    line, column = index.position(offset)
    return LintFinding(rule=hit.rule, severity=rule.severity, path=path, line=line, column=column,
                       message=hit.message, fix=rule.fix)


# -- output -------------------------------------------------------------------------------------

def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(report: LintReport) -> str:
    return (f"lint: {_count(len(report.files), 'file')}, {_count(report.error_count, 'error')}, "
            f"{_count(report.warning_count, 'warning')}, {len(report.allowed)} allowed")


def format_human(report: LintReport) -> list[str]:
    """Two lines per finding (where, severity, rule, what; then the fix), one per allowed."""
    out: list[str] = []
    for f in report.findings:
        out.append(f"{f.where}: {f.severity} [{f.rule}] {f.message}")
        out.append(f"    fix: {f.fix}")
    for f in report.allowed:
        out.append(f"{f.where}: allowed [{f.rule}] {f.allowed}")
    out.append(summary(report))
    return out


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(report: LintReport) -> list[str]:
    """GitHub Actions workflow commands: an annotation per finding, a notice per allowed one."""
    out: list[str] = []
    for f in report.findings:
        props = (f"file={_escape_property(f.path)},line={f.line},col={f.column},"
                 f"title={_escape_property(f.rule)}")
        out.append(f"::{f.severity} {props}::{_escape_data(f'{f.message}. Fix: {f.fix}')}")
    for f in report.allowed:
        props = (f"file={_escape_property(f.path)},line={f.line},col={f.column},"
                 f"title={_escape_property(f'allowed {f.rule}')}")
        out.append(f"::notice {props}::{_escape_data(f'{f.message}. Allowed: {f.allowed}')}")
    out.append(summary(report))
    return out
