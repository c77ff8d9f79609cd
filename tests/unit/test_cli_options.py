"""Global options after the command name, as users of dbmate, Flyway and Alembic write them; and
--lock-timeout taking durations like every other timeout."""

from __future__ import annotations

import pytest

from sqlmig.cli.main import _globals_first


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (
            ["up", "--database-url", "postgres://x", "--role", "owner"],
            ["--database-url", "postgres://x", "--role", "owner", "up"],
        ),
        (["status", "--json", "--schema=app"], ["--schema=app", "status", "--json"]),
        (["--root", "p", "up", "--to", "3", "-v"], ["--root", "p", "-v", "up", "--to", "3"]),
        # a value that looks like an option stays the value of the command's own option
        (
            ["new", "--version", "2.0.0", "--lock-timeout", "5s", "add x"],
            ["--lock-timeout", "5s", "new", "--version", "2.0.0", "add x"],
        ),
        (["render", "up", "--lock-mode", "transaction"], ["--lock-mode", "transaction", "render", "up"]),
        # `--` ends the options; unknown commands and no command are left to click
        (["new", "--", "--role"], ["new", "--", "--role"]),
        (["nosuch", "--role", "x"], ["nosuch", "--role", "x"]),
        (["--help"], ["--help"]),
        ([], []),
    ],
)
def test_group_options_after_the_command_go_before_it(given: list[str], parsed: list[str]) -> None:
    assert _globals_first(given) == parsed


def test_new_takes_major_minor_patch_as_flags(tmp_path, monkeypatch, capsys) -> None:
    from sqlmig.cli import main as cli

    (tmp_path / "migrations").mkdir()  # no rollbacks/ yet: `new` makes it
    monkeypatch.chdir(tmp_path)
    for args, version in (
        (["first"], "1.0.0"),
        (["breaking", "--major"], "2.0.0"),
        (["fix", "--patch"], "2.0.1"),
        (["more", "--minor"], "2.1.0"),
    ):
        with pytest.raises(SystemExit) as done:
            cli.main(["new", *args])
        assert done.value.code == 0
        assert f"(version {version})" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("libpq", "hint"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password '
            'authentication failed for user "app"',
            "the server refused the password of that user",
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused',
            "nothing accepts connections there: is the server running, and on that host and port?",
        ),
        (
            "failed to resolve host 'db.example': [Errno -2] Name or service not known",
            "the host name does not resolve",
        ),
        (
            'connection failed: FATAL:  database "nodb" does not exist',
            "the server runs, but has no such database",
        ),
    ],
)
def test_a_connection_failure_hint_follows_what_libpq_said(libpq: str, hint: str) -> None:
    # The embedded server trusts its socket, so a refused password is seen only on a server
    # with password authentication (SQLMIG_TEST_DSN): the mapping is checked here.
    from sqlmig.db.connect import _connect_hint

    assert _connect_hint(libpq).startswith(hint)
