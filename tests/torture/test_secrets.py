"""A password in the database URL never reaches any output: every command, success and failure,
human and JSON, stdout and stderr, and every row sqlmig writes (history, event log, snapshots).

The embedded test server trusts its socket, so any password is accepted there; on a server that
checks passwords (SQLMIG_TEST_DSN) the real one is used.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.locking.session import lock_key
from tests.conftest import SQLMIG, Project, query
from tests.torture.helpers import assert_no_traceback, run

MADE_UP = "Pw-7q:Zx@/%3d'k"  # URL-special characters: it must be quoted in a URL


def commands_available() -> set[str]:
    """Commands of this build (others are added in parallel: test what exists)."""
    listing = subprocess.run([*SQLMIG, "--help"], capture_output=True, text=True).stdout
    section = listing.split("Commands:", 1)[-1]
    return {line.split()[0] for line in section.splitlines() if line.strip()}


def with_password(url: str, secret: str, *, form: str, **changes: str) -> str:
    params = {**conninfo_to_dict(url), **changes}
    params.pop("password", None)
    if form == "keywords":
        return make_conninfo("", **params, password=secret)
    host = str(params.pop("host", "localhost"))
    port = str(params.pop("port", "5432"))
    user, dbname = params.pop("user", "postgres"), params.pop("dbname", "postgres")
    rest = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in params.items())
    return (
        f"postgresql://{quote(str(user), safe='')}:{quote(secret, safe='')}@/{dbname}"
        f"?host={quote(host, safe='/')}&port={port}{rest}"
    )


def leaks(text: str, secret: str) -> list[str]:
    forms = {secret, quote(secret, safe=""), quote(secret)}
    return [f for f in forms if len(f) >= 3 and f in text]


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_password_never_appears_in_any_output_or_row(
    project: Project, database_url: str, server_dsn: str, tmp_path: Path, form: str
) -> None:
    secret = str(conninfo_to_dict(database_url).get("password") or MADE_UP)
    url = with_password(database_url, secret, form=form)
    print(f"URL form {form!r}; the password is {'the server’s' if secret != MADE_UP else MADE_UP!r}")
    for n in (1, 2, 3):
        project.add(n, f"step_{n}", f"CREATE TABLE step_{n} (id int);\n", f"DROP TABLE step_{n};\n")
    failing = project.migrations / "004_fails.sql"
    available = commands_available()
    print(f"commands of this build: {sorted(available)}")
    unreachable = with_password(
        "postgresql://u@127.0.0.1:1/db", secret, form=form, host="127.0.0.1", port="1"
    )
    wrong_db = with_password(database_url, secret, form=form, dbname="no_such_database_here")
    scratch = with_password(server_dsn, secret, form=form)

    plan: list[tuple[tuple[str, ...], dict[str, str], set[int]]] = []

    def step(
        *args: str,
        env_url: str | None = url,
        codes: set[int] | frozenset[int] = frozenset({0}),
        env: dict[str, str] | None = None,
    ) -> None:
        plan.append(
            (args, {**({"SQLMIG_DATABASE_URL": env_url} if env_url else {}), **(env or {})}, set(codes))
        )

    # Every command once with the URL form; the keyword form (password=…) goes through the
    # same redaction, so it runs the paths that print a database: status, connect errors, config.
    full = form == "url"
    step("up", "--to", "2")
    if full:
        step("-v", "up", "--dry-run")
        step("up")
        step("status")
    step("status", "--json")
    if full:
        step("history")
        step("history", "--events", "--json")
        step("validate", "--json")
        step("repair")
        step("repair", "--remove", "9.9.9", codes={2})
        step("render", "up", "--from-database")
        step("lint", "--json")
        step("down")
        step("--database-url", url, "up", env_url=None)
        step("up", env_url=None, env={"DATABASE_URL": url})
    step("status", "--json", codes={5}, env_url=unreachable)
    step("--database-url", wrong_db, "history", codes={5}, env_url=None)
    if "config" in available:
        step("config", "--json")
    if full and "check" in available:
        step("check", "--require", ">=1.0", codes={0, 1})
    if full and "wait" in available:
        step("wait", "--timeout", "0.5", codes={5}, env_url=unreachable)
    if full and "backup" in available:
        # pg_dump may not match the server here: only what is printed matters.
        step("backup", "--dir", str(tmp_path / "backups"), codes={0, 2, 3, 5})
    if full:
        step("verify", "--scratch-url", scratch, codes={0, 1})

    seen: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    for args, env, codes in plan:
        result = run(project, *args, env=env, timeout=90)
        seen.append((" ".join(args), result))
        assert result.returncode in codes, f"{args}: exit {result.returncode}, expected {codes}"
        assert_no_traceback(result, usage_ok=True)

    # And the failing paths: a migration that fails, a held lock, with the same URL.
    failing.write_text("-- Version: 1.4.0\nSELECT 1/0;\n")
    (project.rollbacks / "004_fails_rollback.sql").write_text("SELECT 1;\n")
    seen.append(("up (fails)", run(project, "up", url=url)))
    assert seen[-1][1].returncode == 3
    if full:
        seen.append(("up --log-format json (fails)", run(project, "--log-format", "json", "up", url=url)))
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("public.schema_version"),))
        seen.append(("up (lock held)", run(project, "--lock-timeout", "0", "up", url=url)))
        assert seen[-1][1].returncode == 4

    found = [
        (label, where)
        for label, result in seen
        for where in (("stdout", result.stdout), ("stderr", result.stderr))
        if leaks(where[1], secret)
    ]
    print(f"{len(seen)} runs; outputs holding the password: {found}")
    assert found == [], "the password was printed"

    for table in ("schema_version", "schema_version_events", "schema_version_snapshots"):
        text = "\n".join(r[0] for r in query(database_url, f"SELECT t::text FROM {table} t"))
        print(f"{table}: {len(text)} characters of rows; password found: {leaks(text, secret)}")
        assert leaks(text, secret) == []
