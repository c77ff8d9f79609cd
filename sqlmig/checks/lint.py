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

from sqlmig.checks.lint_checks import FileState, Hit, SetState, check
from sqlmig.checks.lint_rules import RULES
from sqlmig.config.durations import parse_duration
from sqlmig.config.settings import Config
from sqlmig.errors import InvalidInput
from sqlmig.files import checks as filechecks
from sqlmig.files import headers, sqltext
from sqlmig.files import load as files_mod
from sqlmig.models import ZERO, Problem, Version
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
    # The lock_timeout the file's statements run with, in seconds (0: none; None: the session's,
    # which lint cannot see): the header's `-- sqlmig: lock-timeout`, else for a transactional
    # file the migration_lock_timeout setting (default 5s), as the engine and render SET it.
    lock_timeout: float | None = None
    rollback: bool = False  # a rollback: undoing is what it is for, so breaking rules do not apply


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
    """Lint every migration and rollback of the project, or just `paths` (in the context of
    the set). The problems that make `up` or `down` refuse a file (files.load, filechecks) are
    findings too, with the same code and file:line."""
    units, refused = _units(config, [Path(p) for p in paths])
    shared = SetState()
    findings: list[LintFinding] = list(refused)
    allowed: list[LintFinding] = []
    for unit in units:
        if unit.previous is None and unit.version is None:
            shared = SetState()  # a file outside the set carries nothing over
        active, suppressed = _lint_unit(unit, shared)
        if unit.report:
            findings += active
            allowed += suppressed
    findings.sort(key=lambda f: (f.path, f.line, f.column))
    reported = [u.path for u in units if u.report]
    reported += sorted({f.path for f in refused} - set(reported))
    return LintReport(
        files=tuple(reported), findings=tuple(findings), allowed=tuple(allowed), refused_count=len(refused)
    )


# -- which files --------------------------------------------------------------------------------

_REFUSED_FIX = (
    "sqlmig refuses the file as it is: `up`, `down`, `validate`, `verify` and "
    "`render` stop before running anything (exit 2); fix what the message says"
)


def _units(config: Config, paths: list[Path]) -> tuple[list[_Unit], list[LintFinding]]:
    root = config.root
    wanted: list[Path] = []
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        if path.resolve() not in wanted:
            wanted.append(path.resolve())
    set_dirs = {config.migrations_path.resolve(), config.rollbacks_path.resolve()}
    wanted_set = set(wanted)
    alone: list[Path] = []  # refused files of the set, linted on their own
    units: list[_Unit] = []
    refused: list[LintFinding] = []
    setting = config.migration_lock_timeout
    if not paths or any(p.parent in set_dirs for p in wanted):
        migration_set, problems = files_mod.load_all(root, config.migrations_path, config.rollbacks_path)
        in_set = {(root / p.path).resolve() for p in problems if p.path}
        for problem in problems:
            if not paths or (problem.path and (root / problem.path).resolve() in wanted):
                refused.append(_refusal(problem))
        previous = (ZERO, "")
        rollbacks: list[_Unit] = []
        for mig in migration_set.migrations:
            full = (root / mig.path).resolve()
            units.append(
                _Unit(
                    path=mig.path,
                    text=mig.text,
                    transactional=mig.transactional,
                    report=not paths or full in wanted,
                    version=mig.version,
                    previous=previous,
                    lock_timeout=_effective(mig.lock_timeout, mig.transactional, setting),
                )
            )
            previous = (mig.version, mig.path)
            rb = mig.rollback
            rb_full = (root / rb.path).resolve()
            if rb.irreversible is None and (not paths or rb_full in wanted):
                rollbacks.append(
                    _Unit(
                        path=rb.path,
                        text=rb.text,
                        transactional=rb.transactional,
                        report=True,
                        rollback=True,
                        lock_timeout=_effective(rb.lock_timeout, rb.transactional, setting),
                    )
                )
            in_set |= {full, rb_full}
        units += rollbacks
        wanted = [p for p in wanted if p not in in_set]
        # A file refused for a statement (filechecks) is not in the set, but its text is sound:
        # the rules still look at it, alone, so that one lint run shows everything.
        loaded = {m.path for m in migration_set.migrations}
        loaded |= {m.rollback.path for m in migration_set.migrations}
        for rel in sorted({p.path for p in problems if p.path and p.code in filechecks.CODES}):
            full = (root / rel).resolve()
            if rel not in loaded and (not paths or full in wanted_set):
                alone.append(full)
    for path in wanted + alone:  # files outside the set: linted alone, no version check
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
        if path not in alone:  # the set's own refusals are reported above already
            refused += [
                _refusal(p) for p in filechecks.check(rel, text, transactional=transactional).problems
            ]
        units.append(
            _Unit(
                path=rel,
                text=text,
                transactional=transactional,
                report=True,
                lock_timeout=_effective(_header_lock_timeout(directives), transactional, setting),
                rollback=path.parent == config.rollbacks_path.resolve(),
            )
        )
    return units, refused


def _refusal(problem: Problem) -> LintFinding:
    return LintFinding(
        rule=problem.code,
        severity=problem.severity,
        path=problem.path or "",
        line=problem.line or 1,
        column=1,
        message=problem.message,
        fix=_REFUSED_FIX,
    )


def _effective(header: float | None, transactional: bool, setting: float | None) -> float | None:
    """The lock_timeout a file runs with (see timeouts.for_step)."""
    if header is not None:
        return header
    return setting if transactional else None


def _header_lock_timeout(directives: list[tuple[str, int]]) -> float | None:
    for value, _ in directives:
        word, _, rest = value.partition(" ")
        if word.lower() == "lock-timeout":
            try:
                return parse_duration(rest.strip(), bare=None)
            except ValueError:
                return None
    return None


# -- one file -----------------------------------------------------------------------------------


def _lint_unit(unit: _Unit, shared: SetState) -> tuple[list[LintFinding], list[LintFinding]]:
    split = sqltext.split(unit.text)
    statements = split.statements
    fs = FileState(transactional=unit.transactional, lock_timeout=unit.lock_timeout)
    found: list[_Found] = []
    for i, st in enumerate(statements):
        for hit in _statement_hits(st, fs, shared):
            if not (unit.rollback and RULES[hit.rule].breaking):
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
            meta.append(
                (
                    a.line,
                    a.column,
                    Hit(
                        "unused-allow",
                        0,
                        f"`-- sqlmig: allow {a.rule}` suppresses nothing: "
                        + (
                            "it is not on the comment lines right above a statement"
                            if a.statement is None
                            else f"the statement below has no {a.rule} finding"
                        ),
                    ),
                )
            )
    for line, column, hit in meta:
        rule = RULES[hit.rule]
        active.append(
            LintFinding(
                rule=hit.rule,
                severity=rule.severity,
                path=unit.path,
                line=line,
                column=column,
                message=hit.message,
                fix=rule.fix,
            )
        )
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
        if raw.stmt is not None:
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
            out.append(
                _Found(
                    f.statement,
                    Hit(
                        "breaking-needs-major",
                        f.hit.offset,
                        f"{f.hit.rule} is breaking for running code, but version {cur} is not a major "
                        f"bump over {prev}{after}: make it {prev.major + 1}.0.0",
                    ),
                    f.offset,
                )
            )
    return out


def _allows(
    unit: _Unit, statements: tuple[sqltext.Statement, ...], index: sqltext.LineIndex
) -> tuple[list[_Allow], list[tuple[int, int, Hit]]]:
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
            meta.append(
                (line, column, Hit("unused-allow", 0, f"`-- sqlmig: allow` {what}: it suppresses nothing"))
            )
            continue
        if not reason:
            meta.append(
                (
                    line,
                    column,
                    Hit(
                        "allow-needs-reason",
                        0,
                        f"`-- sqlmig: allow {rule}` gives no reason, so it suppresses nothing",
                    ),
                )
            )
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
    return LintFinding(
        rule=hit.rule,
        severity=rule.severity,
        path=path,
        line=line,
        column=column,
        message=hit.message,
        fix=rule.fix,
    )


# -- output -------------------------------------------------------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(report: LintReport) -> str:
    return (
        f"lint: {_count(len(report.files), 'file')}, {_count(report.error_count, 'error')}, "
        f"{_count(report.warning_count, 'warning')}, {len(report.allowed)} allowed"
    )


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
        props = (
            f"file={_escape_property(f.path)},line={f.line},col={f.column},title={_escape_property(f.rule)}"
        )
        out.append(f"::{f.severity} {props}::{_escape_data(f'{f.message}. Fix: {f.fix}')}")
    for f in report.allowed:
        props = (
            f"file={_escape_property(f.path)},line={f.line},col={f.column},"
            f"title={_escape_property(f'allowed {f.rule}')}"
        )
        out.append(f"::notice {props}::{_escape_data(f'{f.message}. Allowed: {f.allowed}')}")
    out.append(summary(report))
    return out
