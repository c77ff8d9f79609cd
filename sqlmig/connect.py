"""Opening a connection to the configured database, or to the embedded server."""

from __future__ import annotations

import psycopg

from sqlmig.config import Config, redact, secrets_of
from sqlmig.errors import ConnectError


def target_url(config: Config) -> str:
    """The URL to connect to; starts the embedded server when nothing is configured."""
    if config.database_url is not None:
        return config.database_url.get_secret_value()
    if not config.uses_embedded:
        return ""  # libpq reads PGHOST, PGDATABASE, PGSERVICE… itself
    from sqlmig.embedded import EmbeddedServer

    return EmbeddedServer(config.root).start()


def describe(config: Config) -> str:
    """Where we connect, for messages: never contains a password."""
    if config.database_url is not None:
        return redact(config.database_url.get_secret_value(), *secrets_of(config))
    if not config.uses_embedded:
        return "libpq environment (PGHOST/PGDATABASE/PGSERVICE…)"
    from sqlmig.embedded import EmbeddedServer

    return f"embedded PostgreSQL in {EmbeddedServer(config.root).home}"


def connect(config: Config, url: str | None = None) -> psycopg.Connection:
    dsn = target_url(config) if url is None else url
    kwargs: dict[str, object] = {
        "autocommit": True,
        "connect_timeout": config.connect_timeout,
        "application_name": config.application_name,
    }
    if config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    try:
        conn = psycopg.connect(dsn, **kwargs)  # type: ignore[arg-type]
        try:
            session_defaults(conn)
        except psycopg.Error:
            conn.close()
            raise
        return conn
    except (psycopg.Error, ValueError) as exc:
        message = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                         *secrets_of(config))
        raise ConnectError(
            f"cannot connect to {describe(config)}: {message}",
            hint="check --database-url / DATABASE_URL / PG* and that the server accepts connections",
        ) from exc


def session_defaults(conn: psycopg.Connection) -> None:
    """Session settings sqlmig relies on; set on connect and again after each file's RESET ALL.

    A runner that dies mid-statement (kill -9, a CI job timeout, an evicted pod) must not leave
    its migration running on the server, holding the migration lock and its table locks until
    the statement ends, and then committing with nobody watching. PostgreSQL 14+ polls for a
    vanished client during a statement and rolls back; older servers lack the setting.
    """
    if conn.info.server_version >= 140000:
        conn.execute("SELECT set_config('client_connection_check_interval', '1s', false)",
                     prepare=False)
