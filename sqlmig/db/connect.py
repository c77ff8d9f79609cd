"""Opening a connection to the configured database, or to the embedded server."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

import psycopg
from psycopg import pq, sql

from sqlmig.config.redaction import redact
from sqlmig.config.settings import Config, secrets_of
from sqlmig.db.history import History
from sqlmig.errors import ConnectError, InvalidInput, LockTimeout


def target_url(config: Config) -> str:
    """The URL to connect to; starts the embedded server when nothing is configured."""
    if config.database_url is not None:
        url = config.database_url.get_secret_value()
        _check_url(url, config)
        return url
    if not config.uses_embedded:
        return ""  # libpq reads PGHOST, PGDATABASE, PGSERVICE… itself
    if not config.migrations_path.is_dir():
        # Not a project: a server and a .sqlmig/ here would be litter, and its empty database
        # would answer every command as if all were well.
        raise InvalidInput(
            f"no database configured and {config.migrations_path} does not exist: not a sqlmig "
            "project, so the embedded server was not started",
            hint="run sqlmig in the project (the directory holding migrations/), give --root, "
            "or configure the database (--database-url, DATABASE_URL, PG*)",
        )
    # Loaded here, not at the top: the embedded server matters only when no database is configured.
    from sqlmig.db.embedded import EmbeddedServer

    return EmbeddedServer(config.root).start()


def _connect_hint(message: str) -> str:
    """What to check, from what libpq said: a wrong password is not a server that is down."""
    if "password authentication failed" in message or "no password supplied" in message:
        return (
            "the server refused the password of that user: check the password (the URL, "
            "--password-file, DATABASE_PASSWORD_FILE, PGPASSWORD) and the user name"
        )
    if "does not exist" in message and "database" in message:
        return "the server runs, but has no such database: check the database name"
    if "Connection refused" in message or "No such file or directory" in message:
        return "nothing accepts connections there: is the server running, and on that host and port?"
    if "resolve host" in message or "could not translate host name" in message:
        return "the host name does not resolve: check the host in the URL (or PGHOST)"
    return "check --database-url / DATABASE_URL / PG* and that the server accepts connections"


def _check_url(url: str, config: Config) -> None:
    """A URL libpq cannot read, or with a port that is no port number, is invalid input (exit
    2, before any connection), not a server that cannot be reached (exit 5)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        message = redact(str(exc).strip().splitlines()[0], *secrets_of(config))
        raise InvalidInput(
            f"the database URL {describe(config)} is malformed: {message}",
            hint="postgresql://USER@HOST:PORT/DATABASE, or key=value pairs "
            "(host=… dbname=…); the password is best given apart "
            "(--password-file, DATABASE_PASSWORD_FILE)",
        ) from exc
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise InvalidInput(
                f"the database URL {describe(config)} is malformed: port "
                f"{port!r} is not a port number (1-65535)"
            )


def describe(config: Config) -> str:
    """Where we connect, for messages: never contains a password."""
    if config.database_url is not None:
        return redact(config.database_url.get_secret_value(), *secrets_of(config))
    if not config.uses_embedded:
        return "libpq environment (PGHOST/PGDATABASE/PGSERVICE…)"
    # Loaded here, not at the top: the embedded server matters only when no database is configured.
    from sqlmig.db.embedded import EmbeddedServer

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


def connect(config: Config, url: str | None = None) -> Connection:
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
        conn = Connection.connect(dsn, **kwargs)  # type: ignore[arg-type]
        conn.settings = tuple(session_statements(config))
        # --lock-mode transaction: no session state at all; sqlmig.locking.transaction sets the same things
        # with SET LOCAL in each transaction (a session SET would leak into the pool).
        conn.pooled = pooled
        try:
            session_defaults(conn)
        except (
            psycopg.errors.InsufficientPrivilege,
            psycopg.errors.InvalidParameterValue,
            psycopg.errors.UndefinedObject,
        ) as exc:  # not a member; no such role
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
        message = redact(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, *secrets_of(config)
        )
        if re.match(r"(connection (failed|is bad): )?invalid \w+ value", message):
            # libpq refused a setting of the URL before reaching any server (sslmode=bogus)
            raise InvalidInput(f"the database URL {describe(config)} is malformed: {message}") from exc
        raise ConnectError(
            f"cannot connect to {describe(config)}: {message}", hint=_connect_hint(message)
        ) from exc


def reset_session(conn: Connection) -> None:
    """RESET ALL, then the session defaults, after each file. As one statement, a DO block,
    where PL/pgSQL may be used (it is installed and usable by everyone unless a DBA removed it):
    in a pipeline of small migrations each statement costs client and server time (68 µs for
    the three statements, 27 for the block)."""
    if conn.pooled:
        return
    if not conn.plpgsql:
        conn.execute("RESET ALL", prepare=False)
        _set_defaults(conn)
        return
    calls = [f"PERFORM {CHECK_INTERVAL}"] if conn.info.server_version >= 140000 else []
    body = "; ".join(["RESET ALL", *calls, *_session(conn)])
    tag = "$sqlmig$"
    while tag in body:  # a --role or --schema name holding the tag
        tag = tag[:-1] + "_$"
    conn.execute(f"DO {tag}BEGIN {body}; END{tag}", prepare=False)


# Poll for a vanished client during a statement (PostgreSQL 14+): see session_defaults.
CHECK_INTERVAL = "set_config('client_connection_check_interval', '1s', false)"
_PLPGSQL = (
    "EXISTS (SELECT FROM pg_catalog.pg_language WHERE lanname = 'plpgsql'"
    " AND has_language_privilege(oid, 'USAGE'))"
)


def session_defaults(conn: Connection) -> None:
    """Session settings sqlmig relies on; set on connect and again after each file's RESET ALL
    (see reset_session, which this also tells whether it may use a DO block).

    A runner that dies mid-statement (kill -9, a CI job timeout, an evicted pod) must not leave
    its migration running on the server, holding the migration lock and its table locks until
    the statement ends, and then committing with nobody watching. PostgreSQL 14+ polls for a
    vanished client during a statement and rolls back; older servers lack the setting.
    """
    if conn.pooled:
        return
    check = f", {CHECK_INTERVAL}" if conn.info.server_version >= 140000 else ""
    row = conn.execute(f"SELECT {_PLPGSQL}{check}", prepare=False).fetchone()
    conn.plpgsql = bool(row and row[0])
    for statement in _session(conn):
        conn.execute(statement, prepare=False)


def _set_defaults(conn: Connection) -> None:
    """session_defaults without looking at anything: it may run inside a pipeline."""
    if conn.info.server_version >= 140000:
        conn.execute(f"SELECT {CHECK_INTERVAL}", prepare=False)
    for statement in _session(conn):
        conn.execute(statement, prepare=False)


def _session(conn: Connection) -> list[str]:
    return [statement.as_string(conn) for statement in conn.settings]


class Connection(psycopg.Connection):  # type: ignore[type-arg]
    """A connection that declares the state of its session: the settings of sqlmig's session
    (session_statements), which session_defaults sets again after each file's RESET ALL."""

    settings: tuple[sql.Composable, ...] = ()
    pooled: bool = False  # --lock-mode transaction: session_defaults sets nothing
    plpgsql: bool = False  # PL/pgSQL is usable: reset_session sends one DO block


def session_statements(config: Config, *, local: bool = False) -> tuple[sql.Composable, ...]:
    """--role and --schema, as statements run after connecting and after each RESET ALL.

    RESET ALL does not reset the role (nor does COMMIT), so a migration's own `SET ROLE` would
    carry over into the next file and the history rows: the role is set again, or reset to the
    login's when no --role is given. search_path is what RESET ALL does reset.
    `local`: the same as SET LOCAL, for one transaction (--lock-mode transaction).
    """
    set_ = sql.SQL("SET LOCAL" if local else "SET")
    out: list[sql.Composable] = [
        sql.SQL("{} ROLE {}").format(set_, sql.Identifier(config.role))
        if config.role is not None
        else sql.SQL("SET LOCAL ROLE NONE" if local else "RESET ROLE")
    ]
    if config.schema_name != "public":
        # Unqualified names in migrations create and find objects in the project's schema; public
        # stays behind it for what extensions put there (uuid-ossp, citext, pgcrypto…).
        out.append(sql.SQL("{} search_path TO {}, public").format(set_, sql.Identifier(config.schema_name)))
    return tuple(out)


@contextlib.contextmanager
def open_session(config: Config) -> Iterator[tuple[Connection, History]]:
    """A connection and the history table's queries; a server error inside the block becomes
    sqlmig's (lost connection: ConnectError; a refusal of sqlmig's own statements: exit 2);
    the connection is closed at the end, or, inside `reusing`, kept for the next run on the same
    database. No lock: see sqlmig.engine.session.guarded."""
    history = History(config.schema_name, config.table, step_clock=config.lock_mode == "transaction")
    kept = _KEPT.get()
    key = _reuse_key(config) if kept is not None else None
    conn = kept.pop(key, None) if kept is not None and key is not None else None
    if conn is not None:
        conn = _renewed(conn, config)
    if conn is None:
        conn = connect(config)
    try:
        yield conn, history
    except psycopg.errors.DeadlockDetected as exc:
        # An OperationalError too, but the connection is fine: say what it was.
        raise LockTimeout(
            f"deadlock detected on {describe(config)}: {str(exc).strip()}",
            hint="the server rolled back the statement it chose as the victim; run the command again",
        ) from exc
    except psycopg.OperationalError as exc:
        raise ConnectError(f"lost the connection to {describe(config)}: {str(exc).strip()}") from exc
    except psycopg.Error as exc:
        raise refused(config, exc) from exc
    finally:
        idle = not (conn.closed or conn.broken) and conn.info.transaction_status == pq.TransactionStatus.IDLE
        if kept is not None and key is not None and idle and key not in kept:
            kept[key] = conn
        else:
            conn.close()


# The connections a fleet worker keeps between its runs (see `reusing`), by database: per thread
# (a ContextVar), so no two runs ever share one at the same time.
_KEPT: ContextVar[dict[tuple[object, ...], Connection] | None] = ContextVar("sqlmig_kept", default=None)


@contextlib.contextmanager
def reusing() -> Iterator[None]:
    """Within the block (one worker of a run over many targets), a run's connection is not
    closed at its end but handed, cleaned, to the next run on the same database: tenant schemas
    then cost no new server process each (about 3 ms of server CPU per connection)."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        for conn in (_KEPT.get() or {}).values():
            conn.close()
        _KEPT.reset(token)


def _reuse_key(config: Config) -> tuple[object, ...] | None:
    """What must be equal for two runs to share a connection; None: never shared (the embedded
    server and the libpq environment are resolved by connect)."""
    if config.database_url is None or config.lock_mode == "transaction":
        return None  # behind a pooler the session is the pooler's anyway
    password = config.password.get_secret_value() if config.password is not None else None
    return (config.database_url.get_secret_value(), password, config.connect_timeout, config.application_name)


def _renewed(conn: Connection, config: Config) -> Connection | None:
    """A kept connection made as a new one is for `config`: nothing of the previous run's session
    left (settings, role, temporary tables, advisory locks), then this run's own settings
    (search_path of its schema, role, timeouts). None when it cannot be (it is closed)."""
    try:
        for statement in ("RESET ALL", "RESET ROLE", "DISCARD TEMP", "SELECT pg_advisory_unlock_all()"):
            conn.execute(statement, prepare=False)
        conn.settings = tuple(session_statements(config))
        session_defaults(conn)
    except psycopg.Error:
        conn.close()
        return None
    return conn
