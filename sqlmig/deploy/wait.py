"""`sqlmig wait`: wait until the database accepts connections, trying again with a growing pause.

For a deploy that starts the database and the migration together (docker compose, a Kubernetes
pod whose database is still starting): connection refused, no such socket, `the database system
is starting up`, too many connections and timeouts are tried again until the deadline; a
connection string libpq refuses, or a server that rejects the credentials, fails at once, as
waiting would not change them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import psycopg

from sqlmig.config.settings import Config
from sqlmig.db.connect import connect, describe
from sqlmig.errors import ConnectError
from sqlmig.reports import WaitAttempt, WaitReport

FIRST_PAUSE = 0.25  # seconds; doubled after each failed attempt
MAX_PAUSE = 4.0
_PERMANENT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
    "invalid connection option",
)

OnAttempt = Callable[[WaitAttempt], None]


def wait(config: Config, timeout: float = 60.0, on_attempt: OnAttempt | None = None) -> WaitReport:
    """Connect (and set --role), trying again until `timeout` seconds have passed; ConnectError
    (exit 5) when the database still does not accept connections. With nothing configured the
    embedded server is started and there is nothing to wait for."""
    began = time.monotonic()
    deadline = began + max(timeout, 0.0)
    pause = FIRST_PAUSE
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        # libpq's connect_timeout is whole seconds, at least 2: one attempt must not outlive the
        # deadline by much, nor give up before a slow but working network answers.
        attempt_config = (
            config
            if config.uses_embedded
            else dataclasses.replace(
                config, connect_timeout=max(2, min(config.connect_timeout, math.ceil(left)))
            )
        )
        try:
            conn = connect(attempt_config)
        except ConnectError as exc:
            if config.uses_embedded or _permanent(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectError(
                    f"{describe(config)} did not accept connections within {timeout:g} s "
                    f"({attempt} attempt{'s' if attempt != 1 else ''}); last error: "
                    f"{_reason(exc)}",
                    hint="check that the server is up and reachable, or raise --timeout",
                ) from exc
            wait_for = round(min(pause, left), 2)
            if on_attempt is not None:
                on_attempt(WaitAttempt(attempt=attempt, error=_reason(exc), next_in=wait_for))
            time.sleep(wait_for)
            pause = min(pause * 2, MAX_PAUSE)
            continue
        try:
            version = conn.info.parameter_status("server_version") or str(conn.info.server_version)
            database = conn.info.dbname
        finally:
            conn.close()
        return WaitReport(
            attempts=attempt,
            waited_ms=round((time.monotonic() - began) * 1000),
            server_version=version,
            database=database,
        )


def _reason(exc: ConnectError) -> str:
    """The server's or libpq's words, without the `cannot connect to <where>: ` prefix."""
    prefix = "cannot connect to "
    message = exc.message
    if message.startswith(prefix) and ": " in message[len(prefix) :]:
        message = message[len(prefix) :].split(": ", 1)[1]
    return message.removeprefix("connection failed: ").removeprefix("connection is bad: ")


def _permanent(exc: ConnectError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, psycopg.ProgrammingError | ValueError):
        return True  # a malformed connection string
    text = str(cause or exc).lower()
    return any(marker in text for marker in _PERMANENT)
