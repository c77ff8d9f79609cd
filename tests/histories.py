"""Realistic migration histories for the checks' tests and the benchmark: tables, enums,
functions (PL/pgSQL and SQL), triggers, views, DO blocks, no-transaction index builds, with a
rollback for each, and optionally rollbacks that leak on purpose, one per kind of leak.

`write_history(root, n, leaks=...)` writes migrations/ and rollbacks/ and returns the leaky
files' numbers with what verify must say about them.
"""

from __future__ import annotations

from pathlib import Path

# The deliberate leaks: a kind → words verify must use about it. "function-whitespace" is no
# leak: its rollback restores the function with other indentation, which verify must accept.
LEAKS = {
    "table-left": "leaves table t{i}_extra behind",
    "column-not-restored": "does not restore column t{i}_keep.gone",
    "function-body": "does not restore function t{i}_f()",
    "options": "options: autovacuum_enabled unset → true",
    "index-left": "leaves index t{i}_keep_idx behind",
    "function-whitespace": None,
}


def _block(i: int) -> tuple[str, str, bool]:
    """Migration i (1-based) of a five-part cycle: (forward SQL, rollback SQL, transactional)."""
    t = f"t{i}"
    kind = i % 5
    if kind == 1:
        return (
            f"CREATE TYPE {t}_state AS ENUM ('new', 'done');\n"
            f"CREATE TABLE {t} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            f"    state {t}_state NOT NULL DEFAULT 'new',\n    note text\n);\n"
            f"COMMENT ON TABLE {t} IS 'table {i}';\n",
            f"DROP TABLE {t};\nDROP TYPE {t}_state;\n",
            True,
        )
    prev = f"t{i - (i - 1) % 5}"  # the table of this cycle
    if kind == 2:
        return (
            f"-- stamps every change of {prev}\n"
            f"CREATE FUNCTION {t}_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n    NEW.note := coalesce(NEW.note, '') || '.';\n    RETURN NEW;\nEND;\n$$;\n"
            f"CREATE TRIGGER {t}_touch BEFORE UPDATE ON {prev}\n"
            f"    FOR EACH ROW EXECUTE FUNCTION {t}_touch();\n",
            f"DROP TRIGGER {t}_touch ON {prev};\nDROP FUNCTION {t}_touch();\n",
            True,
        )
    if kind == 3:
        return (
            f"ALTER TABLE {prev} ADD COLUMN c{i} integer;\n"
            f"CREATE VIEW {t}_v AS SELECT id, state, c{i} FROM {prev} WHERE state = 'new';\n"
            f"CREATE FUNCTION {t}_count() RETURNS bigint LANGUAGE sql STABLE\n"
            f"    BEGIN ATOMIC SELECT count(*) FROM {prev}; END;\n",
            f"DROP FUNCTION {t}_count();\nDROP VIEW {t}_v;\nALTER TABLE {prev} DROP COLUMN c{i};\n",
            True,
        )
    if kind == 4:
        return (
            f"DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            f"'{t}_reader') THEN\n        EXECUTE 'SELECT 1';\n    END IF;\nEND\n$$;\n"
            f"INSERT INTO {prev} (note) SELECT 'row ' || g FROM generate_series(1, 50) g;\n"
            f"ALTER TABLE {prev} SET (fillfactor = 90);\n",
            f"ALTER TABLE {prev} RESET (fillfactor);\nDELETE FROM {prev};\n",
            True,
        )
    return (
        f"-- sqlmig: no-transaction\nCREATE INDEX CONCURRENTLY {t}_note_idx ON {prev} (note);\n",
        f"-- sqlmig: no-transaction\nDROP INDEX CONCURRENTLY {t}_note_idx;\n",
        False,
    )


def _leak(i: int, kind: str) -> tuple[str, str, str, str]:
    """(setup for the migration before, its undo, the leaky migration's change, its rollback's
    wrong undo)."""
    t = f"t{i}"
    keep = f"CREATE TABLE {t}_keep (id int, gone text);\n"
    drop_keep = f"DROP TABLE {t}_keep;\n"
    body = "CREATE OR REPLACE FUNCTION {t}_f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n{r}END;\n$$;\n"
    if kind == "table-left":
        return keep, drop_keep, f"CREATE TABLE {t}_extra (id int);\n", ""
    if kind == "column-not-restored":
        return keep, drop_keep, f"ALTER TABLE {t}_keep DROP COLUMN gone;\n", ""
    if kind in ("function-body", "function-whitespace"):
        wrong = "    RETURN 4;\n" if kind == "function-body" else "      RETURN   3;\n\n"
        return (
            keep + body.format(t=t, r="  RETURN 3;\n"),
            drop_keep + f"DROP FUNCTION {t}_f();\n",
            body.format(t=t, r="    RETURN 2;\n"),
            body.format(t=t, r=wrong),
        )
    if kind == "options":
        return (
            keep,
            drop_keep,
            f"ALTER TABLE {t}_keep SET (autovacuum_enabled = false);\n",
            f"ALTER TABLE {t}_keep SET (autovacuum_enabled = true);\n",
        )
    if kind == "index-left":
        return keep, drop_keep, f"CREATE INDEX {t}_keep_idx ON {t}_keep (id);\n", ""
    raise ValueError(kind)


def write_history(root: Path, n: int, leaks: dict[int, str] | None = None) -> dict[int, str]:
    """Write n migrations (and rollbacks) under root; `leaks`: number (2 or more) → a kind of
    LEAKS, whose rollback is then wrong in that way. Returns `leaks`."""
    leaks = leaks or {}
    (root / "migrations").mkdir(parents=True, exist_ok=True)
    (root / "rollbacks").mkdir(parents=True, exist_ok=True)
    files = [list(_block(i)) for i in range(1, n + 1)]
    for i, kind in leaks.items():
        setup, undo, change, wrong = _leak(i, kind)
        files[i - 2][0] += setup
        files[i - 2][1] += undo
        files[i - 1][0] += change
        files[i - 1][1] = wrong + files[i - 1][1]
    no_tx = "-- sqlmig: no-transaction\n"
    for i, (forward, rollback, transactional) in enumerate(files, 1):
        header = f"-- Version: 1.{i}.0\n-- Description: step {i}\n"
        if not transactional:
            forward = forward.removeprefix(no_tx)
            header += no_tx
        (root / "migrations" / f"{i:04d}_step_{i}.sql").write_text(header + forward)
        (root / "rollbacks" / f"{i:04d}_step_{i}_rollback.sql").write_text(rollback)
    return leaks
