"""The `sqlmig` command's entry point (what .venv/bin/sqlmig and migrate.sh run).

It lives outside the `sqlmig` package because importing anything in the package first runs
the package's imports (psycopg among them): ~57,000 tracked objects that live as long as the
process, which the garbage collector would otherwise walk over and over while they are built
(~10 ms of a no-op `up`'s 0.20 s, measured). Here the collector is off until they exist, then
they are frozen out of its way (gc.freeze); a library user importing `sqlmig` keeps their own
collector settings.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from sqlmig.cli.main import main as cli_main

    gc.freeze()
    gc.enable()
    cli_main()
