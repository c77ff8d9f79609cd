"""The CLI imports a command's module only when that command runs (issue 6: start-up time)."""

from __future__ import annotations

import subprocess
import sys

import click

from sqlmig.cli import main as cli


def test_every_listed_command_loads_under_its_own_name() -> None:
    with click.Context(cli.cli) as ctx:
        names = cli.cli.list_commands(ctx)
        assert names == sorted(cli._COMMANDS)
        for name in names:
            command = cli.cli.get_command(ctx, name)
            assert command is not None and command.name == name


def test_up_imports_neither_the_other_commands_nor_the_parser() -> None:
    code = (
        "import sys, sqlmig.cli.main as c; c.cli.get_command(None, 'up'); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], text=True, capture_output=True, check=True, timeout=60
        ).stdout.split()
    )
    assert "sqlmig.cli.run" in loaded
    assert not loaded & {
        "sqlmig.cli.inspect",
        "sqlmig.cli.tools",
        "sqlmig.checks.lint",
        "sqlmig.checks.verify",
        "sqlmig.db.embedded",
        "pglast",
    }
