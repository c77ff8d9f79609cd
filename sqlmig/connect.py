"""Opening a connection to the configured database, or to the embedded server."""

from __future__ import annotations

import psycopg
from psycopg import sql

from sqlmig.config import Config, redact, secrets_of
from sqlmig.errors import ConnectError, InvalidInput


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


def refused(config: Config, exc: psycopg.Error) -> InvalidInput:
    """A server error on sqlmig's own statements, outside any migration: no privilege on the
    history table or its schema, a read-only replica, a reserved schema name. One line and
    exit 2 (fix the configuration; retrying will not help), never a traceback."""
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    text = str(exc).strip()
    message = redact(text.splitlines()[0] if text else type(exc).__name__, *secrets_of(config))
    return InvalidInput(
        f"{describe(config)}: ERROR{state}: {message}",
        hint=f"sqlmig keeps its history in {config.qualified_table}: the login role (or --role) "
             "must be allowed to create and write it there, on a primary (not a read-only replica)",
    )


def connect(config: Config, url: str | None = None) -> psycopg.Connection:
    dsn = target_url(config) if url is None else url
    kwargs: dict[str, object] = {
        "autocommit": True,
        "connect_timeout": config.connect_timeout,
        "application_name": config.application_name,
    }
    if config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    pooled = config.lock_mode == "transaction"
    if pooled:
        # Behind a transaction pooler the next statement may reach another server connection,
        # where a statement prepared on this one does not exist (PgBouncer < 1.21).
        kwargs["prepare_threshold"] = None
    try:
        conn = _Connection.connect(dsn, **kwargs)  # type: ignore[arg-type]
        conn.sqlmig_session = session_statements(config)
        # --lock-mode transaction: no session state at all; sqlmig.txlock sets the same things
        # with SET LOCAL in each transaction (a session SET would leak into the pool).
        conn.sqlmig_pooled = pooled
        try:
            session_defaults(conn)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidParameterValue,
                psycopg.errors.UndefinedObject) as exc:  # not a member; no such role
            conn.close()
            if config.role is None:
                raise
            raise InvalidInput(
                f"--role {config.role}: {str(exc).strip()}",
                hint=f"the login role must be a member of {config.role} "
                     f"(GRANT {config.role} TO <login role>), and the role must exist",
            ) from exc
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


def reset_session(conn: psycopg.Connection) -> None:
    """RESET ALL, then session_defaults, as one statement: a DO block. It runs after every
    migration, where each statement of its own costs ~0.15 ms of client and server time: 0.3 s
    for 1,000 small migrations, a fifth of their whole cost (issue 6)."""
    if getattr(conn, "sqlmig_pooled", False):
        return
    body = "; ".join(["RESET ALL", *_defaults(conn)])
    tag = "$sqlmig$"
    while tag in body:  # a --role or --schema name holding the tag
        tag = tag[:-1] + "_$"
    conn.execute(f"DO {tag}BEGIN {body}; END{tag}", prepare=False)


def _defaults(conn: psycopg.Connection) -> list[str]:
    out = []
    if conn.info.server_version >= 140000:
        out.append("PERFORM set_config('client_connection_check_interval', '1s', false)")
    out += [statement.as_string(conn) for statement in getattr(conn, "sqlmig_session", ())]
    return out


def session_defaults(conn: psycopg.Connection) -> None:
    """Session settings sqlmig relies on; set on connect and again after each file's RESET ALL.

    A runner that dies mid-statement (kill -9, a CI job timeout, an evicted pod) must not leave
    its migration running on the server, holding the migration lock and its table locks until
    the statement ends, and then committing with nobody watching. PostgreSQL 14+ polls for a
    vanished client during a statement and rolls back; older servers lack the setting.
    """
    if getattr(conn, "sqlmig_pooled", False):
        return
    if conn.info.server_version >= 140000:
        conn.execute("SELECT set_config('client_connection_check_interval', '1s', false)",
                     prepare=False)
    for statement in getattr(conn, "sqlmig_session", ()):
        conn.execute(statement, prepare=False)


class _Connection(psycopg.Connection):  # type: ignore[type-arg]
    """A connection that remembers the settings of its session (session_statements), which
    session_defaults sets again after each file's RESET ALL."""

    sqlmig_session: tuple[sql.Composable, ...] = ()
    sqlmig_pooled: bool = False  # --lock-mode transaction: session_defaults sets nothing


def session_statements(config: Config, *, local: bool = False) -> tuple[sql.Composable, ...]:
    """--role and --schema, as statements run after connecting and after each RESET ALL.

    RESET ALL does not reset the role (nor does COMMIT), so a migration's own `SET ROLE` would
    carry over into the next file and the history rows: the role is set again, or reset to the
    login's when no --role is given. search_path is what RESET ALL does reset.
    `local`: the same as SET LOCAL, for one transaction (--lock-mode transaction).
    """
    set_ = sql.SQL("SET LOCAL" if local else "SET")
    out: list[sql.Composable] = [
        sql.SQL("{} ROLE {}").format(set_, sql.Identifier(config.role)) if config.role is not None
        else sql.SQL("SET LOCAL ROLE NONE" if local else "RESET ROLE")
    ]
    if config.schema_name != "public":
        # Unqualified names in migrations create and find objects in the project's schema; public
        # stays behind it for what extensions put there (uuid-ossp, citext, pgcrypto…).
        out.append(sql.SQL("{} search_path TO {}, public").format(
            set_, sql.Identifier(config.schema_name)))
    return tuple(out)
