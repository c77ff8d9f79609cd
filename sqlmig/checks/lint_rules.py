"""The lint rules of `sqlmig lint`: id, severity, what each flags and why, the safe alternative.

The README's rule table is this table; lint_checks.py finds the statements that break them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Literal["error", "warning"]
    what: str  # one line: what it flags and why that hurts
    fix: str  # the safe alternative
    breaking: bool = False  # breaking for running code: needs a MAJOR version


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "index-not-concurrent",
            "error",
            "CREATE INDEX without CONCURRENTLY on an existing table blocks all writes to it "
            "(SHARE lock) until the index is built.",
            "CREATE INDEX CONCURRENTLY, in a file with the header `-- sqlmig: no-transaction`.",
        ),
        Rule(
            "drop-index-not-concurrent",
            "error",
            "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the index's table.",
            "DROP INDEX CONCURRENTLY, in a file with the header `-- sqlmig: no-transaction`.",
        ),
        Rule(
            "volatile-default",
            "error",
            "ADD COLUMN whose value is computed for every existing row (a volatile DEFAULT such as "
            "clock_timestamp(), random(), gen_random_uuid(), nextval(); serial; identity; a stored "
            "generated column) rewrites the table under an ACCESS EXCLUSIVE lock.",
            "Add the column without a default (or with a constant or stable one such as now()), "
            "SET DEFAULT for new rows, and backfill old rows in batches.",
        ),
        Rule(
            "required-column",
            "error",
            "ADD COLUMN … NOT NULL without a DEFAULT fails on a table that has rows, and makes "
            "inserts by running code that does not know the column fail.",
            "Add it nullable (or with a non-volatile DEFAULT), backfill, then enforce NOT NULL "
            "through a validated CHECK (see set-not-null).",
        ),
        Rule(
            "column-type-change",
            "error",
            "ALTER COLUMN … TYPE rewrites the table and its indexes under an ACCESS EXCLUSIVE lock "
            "(unless binary-coercible, e.g. varchar(n) to text) and changes what running code reads.",
            "Add a new column, backfill it in batches, move the code over, and drop the old column "
            "in a later major version.",
            breaking=True,
        ),
        Rule(
            "set-not-null",
            "error",
            "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock unless a validated "
            "CHECK (col IS NOT NULL) already proves it.",
            "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT in a later "
            "migration; then SET NOT NULL (which uses the check) and drop the check.",
        ),
        Rule(
            "constraint-without-not-valid",
            "error",
            "ADD CONSTRAINT … CHECK or FOREIGN KEY without NOT VALID checks every existing row while "
            "holding a lock that blocks writes (ACCESS EXCLUSIVE for CHECK).",
            "Add it NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later "
            "migration, which lets reads and writes go on.",
        ),
        Rule(
            "validate-in-same-transaction",
            "error",
            "VALIDATE CONSTRAINT in the transaction that added the constraint NOT VALID scans the "
            "table while the ADD's lock is still held, so NOT VALID gains nothing.",
            "VALIDATE CONSTRAINT in the next migration.",
        ),
        Rule(
            "constraint-builds-index",
            "error",
            "ADD PRIMARY KEY / UNIQUE / EXCLUDE on an existing table (as a constraint or on a new "
            "column) builds an index under an ACCESS EXCLUSIVE lock.",
            "CREATE UNIQUE INDEX CONCURRENTLY (no-transaction file), then ADD CONSTRAINT … "
            "UNIQUE / PRIMARY KEY USING INDEX.",
        ),
        Rule(
            "drop-column",
            "error",
            "DROP COLUMN breaks running code that still reads or writes the column, and destroys its data.",
            "Stop using the column in the code and deploy that first; drop it in a major version.",
            breaking=True,
        ),
        Rule(
            "drop-table",
            "error",
            "DROP TABLE (or VIEW) breaks running code that still uses it, and destroys its data.",
            "Stop using it in the code and deploy that first; drop it in a major version.",
            breaking=True,
        ),
        Rule(
            "rename-column",
            "error",
            "RENAME COLUMN breaks running code that uses the old name.",
            "Expand and contract: add the new column, write both, backfill, move reads, drop the "
            "old one later; or rename in a major version deployed together with the code.",
            breaking=True,
        ),
        Rule(
            "rename-table",
            "error",
            "RENAME of a table or view breaks running code that uses the old name.",
            "Rename, and CREATE VIEW old_name AS SELECT * FROM new_name for the transition (a "
            "simple view is updatable); drop the view in a later major version.",
            breaking=True,
        ),
        Rule(
            "missing-lock-timeout",
            "error",
            "A statement that takes an ACCESS EXCLUSIVE lock on an existing table with no "
            "lock_timeout set waits behind any long query, and every query on the table queues "
            "behind it.",
            "The header line `-- sqlmig: lock-timeout 5s`, or SET LOCAL lock_timeout = '5s' (or "
            "SET) before it: on timeout the migration fails cleanly and sqlmig retries it.",
        ),
        Rule(
            "breaking-needs-major",
            "error",
            "A breaking statement (drop, rename, type change) in a file whose version is not a "
            "MAJOR bump over the previous file's.",
            "Give the file the next major version, or ship the breaking step in its own major release.",
        ),
        Rule(
            "prefer-timestamptz",
            "warning",
            "timestamp (without time zone) stores a wall-clock reading whose meaning depends on "
            "the time zone of whoever wrote it.",
            "timestamptz.",
        ),
        Rule(
            "prefer-text",
            "warning",
            "varchar(n) / char(n): the limit is rarely a real rule, changing it later takes an "
            "ACCESS EXCLUSIVE lock, and char(n) pads with spaces.",
            "text, with CHECK (length(col) <= n) if the limit is a real rule.",
        ),
        Rule(
            "prefer-identity",
            "warning",
            "serial / bigserial create a sequence owned apart from the column: grants, copies and "
            "dumps need extra care.",
            "bigint GENERATED ALWAYS AS IDENTITY (or BY DEFAULT).",
        ),
        Rule(
            "prefer-numeric",
            "warning",
            "money reads and prints per lc_monetary and holds one currency with fixed decimals.",
            "numeric(p, s), with a currency column where needed.",
        ),
        Rule(
            "unused-allow",
            "warning",
            "A `-- sqlmig: allow` comment that suppresses nothing: unknown rule, no such finding on "
            "the statement, or not on the comment lines right above a statement.",
            "Remove it, or put it on the comment lines right above the statement (no blank line).",
        ),
        Rule(
            "allow-needs-reason",
            "error",
            "`-- sqlmig: allow <rule-id>` without a reason suppresses nothing.",
            "Say why it is safe here: `-- sqlmig: allow <rule-id> <reason>`.",
        ),
        Rule(
            "unparsed-statement",
            "warning",
            "pglast cannot parse the statement (a syntax error, or syntax newer than its grammar), "
            "so no rule checked it.",
            "Review it by hand; the server judges its syntax when it runs.",
        ),
    )
}
