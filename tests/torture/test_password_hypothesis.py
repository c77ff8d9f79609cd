"""No password is ever printed, whatever characters it has and however the URL is mistyped.

Hypothesis draws passwords of arbitrary printable characters and writes them into connection
strings well-formed (percent-encoded URL, quoted key=value) and broken (unencoded `@ # / ?` or a
space in a URL, a missing `:` or `/` after the scheme, an unquoted or unterminated key=value
value), then runs a command in each output format against the real test server. The password
carries three markers (start, middle, end) that nothing else prints, so the password, or any
piece of it that libpq cut at a delimiter and quoted on its own, is caught wherever it appears.
"""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlmig.config.redaction import dsn_secrets, redact
from tests.conftest import Project

MARKERS = ("Kx7pz", "Qv4mw", "Jw2hr")
COMMANDS = [
    ("status",),
    ("config",),
    ("validate",),
    ("up", "--dry-run"),
    ("history",),
    ("check", ">=0.0.0"),
    ("up",),
    ("render", "up", "--from-database"),
    ("wait",),
]
FORMATS = [(), ("--json",), ("--log-format", "json")]
# Every printable character but the line breaks a shell variable would keep anyway.
PRINTABLE = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"))
FORMS = ["url", "url-raw", "url-no-colon", "url-one-slash", "keywords", "keywords-raw"]


def password() -> st.SearchStrategy[str]:
    part = st.text(PRINTABLE, max_size=12)
    return st.tuples(part, part).map(lambda ab: f"{MARKERS[0]}{ab[0]}{MARKERS[1]}{ab[1]}{MARKERS[2]}")


def dsn(form: str, secret: str, server: dict) -> str:
    host, port, db = server.get("host") or "localhost", server.get("port") or 5432, server["dbname"]
    user = server.get("user") or "postgres"
    where = f"/{db}?host={quote(str(host), safe='/')}&port={port}"
    if form == "url":
        return f"postgresql://{user}:{quote(secret, safe='')}@{where}"
    if form == "url-raw":
        return f"postgresql://{user}:{secret}@{where}"
    if form == "url-no-colon":
        return f"postgres//{user}:{secret}@{where}"
    if form == "url-one-slash":
        return f"postgresql:/{user}:{secret}@{where}"
    if form == "keywords":
        return make_conninfo("", host=host, port=port, dbname=db, user=user, password=secret)
    return f"host={host} port={port} dbname={db} user={user} password={secret}"


def leaked(text: str) -> list[str]:
    return [m for m in MARKERS if m in text]


@pytest.fixture
def app(project: Project) -> Project:
    project.add(1, "accounts", "CREATE TABLE accounts (id int);\n", "DROP TABLE accounts;\n")
    return project


# Derandomized: the same examples on every CI run (a leak found by chance must not block an
# unrelated landing); 20,000 random examples of the redact() test below ran clean locally.
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    secret=password(),
    form=st.sampled_from(FORMS),
    command=st.sampled_from(COMMANDS),
    fmt=st.sampled_from(FORMATS),
    where=st.sampled_from(["DATABASE_URL", "--database-url"]),
)
def test_no_password_reaches_any_output(
    app: Project,
    database_url: str,
    secret: str,
    form: str,
    command: tuple[str, ...],
    fmt: tuple[str, ...],
    where: str,
) -> None:
    url = dsn(form, secret, conninfo_to_dict(database_url))
    if where == "DATABASE_URL":
        argv, env = [*fmt, *command], {"DATABASE_URL": url, "SQLMIG_LOCK_TIMEOUT": "2"}
    else:
        argv, env = ["--database-url", url, *fmt, *command], {"SQLMIG_LOCK_TIMEOUT": "2"}
    if command == ("wait",):
        argv += ["--timeout", "1"]
    try:
        result = app.run(*argv, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: {argv}")
    shown = result.stdout + result.stderr
    assert not leaked(shown), f"{form} {where} {' '.join(command)} {fmt}: exit {result.returncode}\n{shown}"
    assert "Traceback" not in shown, shown


@settings(max_examples=500, deadline=None, derandomize=True)
@given(secret=password(), form=st.sampled_from(FORMS))
def test_redact_hides_every_piece_of_the_password_of_any_connection_string(secret: str, form: str) -> None:
    server = {"host": "db.internal", "port": 5432, "dbname": "app", "user": "app"}
    url = dsn(form, secret, server)
    secrets = dsn_secrets(url)
    shown = redact(f'cannot connect to {url}: server said "{url}"', *secrets)
    assert not leaked(shown), shown
    assert "db.internal" in shown or form.startswith("url-"), "the host stays readable"


@pytest.mark.parametrize(
    "url",
    [
        "postgres//app:Hunter2Secret@localhost/app",
        "postgresql:/app:Hunter2Secret@localhost/app",
        "postgresql://app:Hunter 2Secret@localhost/app",
        "postgresql://app:p@ss#Hunter2Secret@localhost/app",
        "host=localhost password=Hunter2Secret dbname=app",
        "host=localhost password='Hunter 2Secret' dbname=app",
        "host=localhost password='Hunter 2Secret dbname=app",
    ],
)
@pytest.mark.parametrize(
    "command", [("status",), ("config",), ("--log-format", "json", "status"), ("status", "--json")]
)
def test_the_reported_malformed_urls_print_no_password(
    project: Project, url: str, command: tuple[str, ...]
) -> None:
    result = project.run(*command, env={"DATABASE_URL": url, "PGCONNECT_TIMEOUT": "2"})

    shown = result.stdout + result.stderr
    assert "Hunter" not in shown and "Secret" not in shown, shown
    assert "Traceback" not in shown
    if "password=" in url:
        assert "password=***" in shown, "key=value keeps its separator"


@pytest.mark.parametrize(
    "dsn_text",
    [
        "postgresql://postgres@/app?host=/run/postgresql&port=5432",
        "postgres://app@db.internal:5432/app",
        "host=db.internal port=5432 dbname=app user=postgres",
        "postgresql:///app",
    ],
)
def test_a_connection_string_without_a_password_is_shown_as_it_is(dsn_text: str) -> None:
    assert dsn_secrets(dsn_text) == []
    assert redact(f"database: {dsn_text}", *dsn_secrets(dsn_text)) == f"database: {dsn_text}"
