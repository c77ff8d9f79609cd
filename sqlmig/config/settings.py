"""Settings: where the files are, which database, which history table; where each setting came
from (flag > environment > sqlmig.toml or [tool.sqlmig] > default); and password redaction."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sqlmig.config import file as configfile
from sqlmig.config.durations import parse_duration, setting_value
from sqlmig.config.file import find_root
from sqlmig.config.redaction import dsn_secrets
from sqlmig.errors import ConfigInvalid
from sqlmig.models import Source

if TYPE_CHECKING:
    pass

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_TABLE_MAX = 63 - len("_snapshots")
# libpg environment variables that mean "a database is configured".
_LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")

ENV_PREFIX = "SQLMIG_"
# "flag" = a CLI option; "argument" = a keyword of resolve() called as a library.
_INTERNAL = frozenset({"root", "password"})  # Config fields that are not settings
# Older names still read, after SQLMIG_<KEY> (Docker and Heroku conventions).
_ENV_FALLBACKS = {"database_url": ("DATABASE_URL",), "password_file": ("DATABASE_PASSWORD_FILE",)}
# SQLMIG_* variables that are not settings, so `sqlmig config` does not question them.
_OTHER_ENV = frozenset({"SQLMIG_TEST_DSN", "SQLMIG_LOG_FORMAT", "SQLMIG_VENV", "SQLMIG_EXTRAS"})
# Keys a config file may be expected to take but does not, and what to use instead.
# The table of named targets in the config file (sqlmig.engine.fleet reads it).
TARGETS_TABLE = "targets"

_NOT_IN_FILE = {
    "root": "it is the file's own directory (or --root)",
    "password": "use password_file (a password does not belong in a file under version control)",
    "log_format": "output options are --log-format or SQLMIG_LOG_FORMAT, not the project's",
    "no_color": "output options are --no-color or NO_COLOR, not the project's",
}


class Secret:
    """A password, or a URL that may hold one: str() and repr() never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return "Secret('**********')"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """For a library user's pydantic (sqlmig does not import it): a Secret or a string
        validates to a Secret, which serializes masked, as str() shows it."""
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            lambda value: value if isinstance(value, Secret) else Secret(str(value)),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


# How a field's value is checked and converted (_coerce): "identifier", "table" and "role" are strings
# with a rule; "duration" is seconds (sqlmig.engine.timeouts), "timeout" also None for "inherit".
Kind = Literal[
    "path", "secret", "str", "identifier", "table", "role", "float", "int", "choice", "duration", "timeout"
]
LockMode = Literal["session", "transaction"]
OnOff = Literal["on", "off"]


class _Spec(NamedTuple):
    """A Config field's metadata: how it is validated, and its key if not the field's name."""

    kind: Kind
    key: str | None = None  # in the config file and SQLMIG_<KEY>
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False  # None is a value: the field's default is None


class InvalidSettings(ValueError):
    """Config(...) with values that do not validate: each (field, message), all at once."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors))


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    # Every field except `root` and `password` (_INTERNAL) is a *setting*, wired up by resolve()
    # with no further code: a key of sqlmig.toml / [tool.sqlmig] (its "key", else its name),
    # the environment variable SQLMIG_<KEY>, and a CLI flag passed to resolve() by field name
    # (None = not given, so a boolean flag must default to None, not False). How a field is
    # validated is its metadata, next to it: a _Spec's arguments ("kind", and "key" if the key
    # is not the field's name); a new kind of value needs a case in _coerce. A relative path in
    # the config file is relative to the file's directory. New settings: add them in a marked
    # block of their own, like the one below.
    root: Path = field(default_factory=Path.cwd, metadata={"kind": "path"})
    # Settings: configuration and output.
    migrations_dir: Path | None = field(default=None, metadata={"kind": "path"})
    rollbacks_dir: Path | None = field(default=None, metadata={"kind": "path"})
    database_url: Secret | None = field(default=None, metadata={"kind": "secret"})
    # Read from password_file; never shown.
    password: Secret | None = field(default=None, metadata={"kind": "secret"})
    password_file: Path | None = field(default=None, metadata={"kind": "path"})
    schema_name: str = field(default="public", metadata={"key": "schema", "kind": "identifier"})
    table: str = field(default="schema_version", metadata={"kind": "table"})
    # At most PostgreSQL's own bound for lock_timeout (INT_MAX ms, about 24.8 days): no inf.
    # Written as other durations are: 300, 300s, 5min, 500ms; 0 or off = do not wait.
    lock_timeout: float = field(default=300.0, metadata={"kind": "duration"})
    connect_timeout: int = field(default=10, metadata={"kind": "int", "ge": 1})
    application_name: str = field(default="sqlmig", metadata={"kind": "str"})
    # Settings: deploy-grade operations.
    # SET ROLE after connecting, so objects belong to this role (the schema owner), not the login.
    role: str | None = field(default=None, metadata={"kind": "role"})
    # Bounds of each transactional migration (SET LOCAL); a file's header overrides them. Seconds
    # or a duration ("5s", "10min"); 0 or "off" = no limit; "inherit" = the role's/database's.
    migration_lock_timeout: float | None = field(default=5.0, metadata={"kind": "timeout"})
    statement_timeout: float | None = field(default=None, metadata={"kind": "timeout"})
    # After a lock timeout (55P03) or a deadlock (40P01).
    retries: int = field(default=3, metadata={"kind": "int", "ge": 0})
    # Seconds before the first retry; doubled for each next one.
    retry_delay: float = field(default=2.0, metadata={"kind": "duration"})
    # up/down first write a pg_dump -Fc of the database here.
    backup_dir: Path | None = field(default=None, metadata={"kind": "path"})
    # Settings: pooler-safe locking.
    # session: one session advisory lock for the whole run (direct connections, session pooling).
    # transaction: a transaction-level lock per migration, and a lease for no-transaction files:
    # behind PgBouncer pool_mode=transaction (sqlmig.locking.transaction, sqlmig.locking.lease).
    lock_mode: LockMode = field(
        default="session", metadata={"kind": "choice", "choices": typing.get_args(LockMode)}
    )
    # Settings: speed.
    # on: a file whose stat is as when sqlmig last read it is not read again (sqlmig.files.cache).
    file_cache: OnOff = field(default="on", metadata={"kind": "choice", "choices": typing.get_args(OnOff)})
    # on: in a group of migrations sent back to back, only the last commit waits for its WAL
    # flush, which makes the group's earlier commits durable too (sqlmig.engine.execute, _batch).
    group_commit: OnOff = field(default="on", metadata={"kind": "choice", "choices": typing.get_args(OnOff)})

    # Where each setting came from, for `sqlmig config` and error messages (set by resolve();
    # dataclasses.replace() keeps them).
    _sources: dict[str, tuple[Source, str | None]] = field(default_factory=dict, repr=False, compare=False)
    _file: str | None = field(default=None, repr=False, compare=False)
    _notes: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _env_notes: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        errors: list[tuple[str, str]] = []
        for name, spec in _SPECS.items():
            try:
                object.__setattr__(self, name, _coerce(spec, getattr(self, name)))
            except ValueError as exc:
                errors.append((name, str(exc)))
        if errors:
            raise InvalidSettings(errors)

    @property
    def migrations_path(self) -> Path:
        return self.migrations_dir or self.root / "migrations"

    @property
    def rollbacks_path(self) -> Path:
        return self.rollbacks_dir or self.root / "rollbacks"

    @property
    def uses_embedded(self) -> bool:
        return self.database_url is None and not any(os.environ.get(v) for v in _LIBPQ_ENV)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema_name}.{self.table}"

    def origin(self, name: str) -> tuple[Source, str | None]:
        """Where the setting `name` came from: flag, env (and the variable), file (and the
        file), default."""
        return self._sources.get(name, ("default", None))

    @property
    def file(self) -> str | None:
        """The configuration file read (sqlmig.toml or pyproject.toml), if any."""
        return self._file

    @property
    def resolve_notes(self) -> tuple[str, ...]:
        """The notes of resolving the flags and the file (not those about the environment)."""
        return self._notes

    @property
    def notes(self) -> tuple[str, ...]:
        """What resolving noticed and did not refuse (an unknown SQLMIG_ variable…)."""
        return (*self._notes, *self._env_notes)


# Config's validated fields, in order: field name -> its _Spec.
_SPECS: dict[str, _Spec] = {
    f.name: _Spec(**f.metadata, nullable=f.default is None)
    for f in dataclasses.fields(Config)
    if "kind" in f.metadata
}


def settings() -> dict[str, str]:
    """Every setting: Config field name -> its key (in sqlmig.toml; SQLMIG_<KEY> in the env)."""
    return {name: spec.key or name for name, spec in _SPECS.items() if name not in _INTERNAL}


_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")


def _coerce(spec: _Spec, value: Any) -> Any:
    """A field's value from a string (flag, environment), a TOML value or a Python object, or
    ValueError saying what is wrong, in the words of every other sqlmig message (the values
    taken are those pydantic's lax mode took: "10" for an int, 2.0 for an int, not True)."""
    kind = spec.kind
    if kind == "timeout":
        return setting_value(value)
    if kind == "duration":
        return parse_duration(value)
    if value is None and spec.nullable:
        return None
    if kind == "path":
        if isinstance(value, str | os.PathLike):
            return Path(value)
        raise ValueError(f"{value!r} is not a path")
    if kind == "choice":
        if isinstance(value, str) and value in spec.choices:
            return value
        *first, last = (repr(c) for c in spec.choices)
        raise ValueError(f"{value!r} is not {', '.join(first)} or {last}")
    if kind in ("int", "float"):
        number = _number(value, integer=kind == "int")
        if spec.ge is not None and number < spec.ge:
            raise ValueError(f"{value!r} is below {spec.ge}, the least allowed")
        if spec.le is not None and not number <= spec.le:  # also nan
            raise ValueError(f"{value!r} is above {spec.le}, the most allowed")
        return number
    if kind == "secret" and isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    if kind in ("identifier", "table") and not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier")
    if kind == "table" and len(value) > _TABLE_MAX:
        # PostgreSQL cuts names at 63 bytes: a longer one's `_events`, `_lease` and `_snapshots`
        # tables would be cut to the same name, or to the history table's own.
        raise ValueError(
            f"{value!r} is {len(value)} characters: at most {_TABLE_MAX}, so that "
            f"the tables named after it (`{value[:8]}…_snapshots`) fit PostgreSQL's "
            "63-byte names"
        )
    if kind == "role" and not 0 < len(value.encode()) <= 63:
        raise ValueError(f"{value!r} is not a role name (1 to 63 bytes)")
    return Secret(value) if kind == "secret" else value


def _number(value: object, *, integer: bool) -> float:
    """An int or a float from a number or a string; a boolean is not a number."""
    if isinstance(value, str):
        text = value.strip()
        if integer and _INT_TEXT.fullmatch(text):
            return int(text.partition(".")[0])
        if not integer and text.isascii():
            try:
                return float(text)
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not {'a whole number' if integer else 'a number'}")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{value!r} is not {'a whole number' if integer else 'a number'}")
    if integer and not isinstance(value, int):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        if value != int(value):
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    if integer:
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return math.inf if value > 0 else -math.inf


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def resolve(
    *,
    root: Path | str | None = None,
    database_url: str | None = None,
    password_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    find_root_from: Path | None = None,
    given_as: Literal["flag", "argument"] = "argument",
    flag_names: Mapping[str, str] | None = None,
    **overrides: object,
) -> Config:
    """Build a Config. Each setting comes from the first of: a value given here (the CLI passes
    its flags, None = not given), the environment (SQLMIG_<KEY>; then DATABASE_URL and
    DATABASE_PASSWORD_FILE), sqlmig.toml in the root (else [tool.sqlmig] of its pyproject.toml),
    the default. With no database_url anywhere, connect() uses the libpq environment (PG*), else
    the embedded server.

    `root` defaults to the working directory, or with `find_root_from` to the nearest directory
    at or above it with migrations/ or a config file. Every bad value is reported at once
    (ConfigInvalid), each naming where it was set and its key: a flag as `flag_names` spells it
    (by field name or key), else as --<key>.
    """
    env = os.environ if environ is None else environ
    keys = settings()
    field_of_key = {key: name for name, key in keys.items()}
    given = {"database_url": database_url, "password_file": password_file, **overrides}
    unknown = [k for k in given if k not in keys and k not in field_of_key]
    if unknown:
        raise TypeError(f"resolve() got unknown settings: {', '.join(unknown)}")
    explicit = {field_of_key.get(k, k): v for k, v in given.items() if v is not None}

    root_path, root_source = _root(root, find_root_from, given_as)
    file = configfile.read(root_path)
    in_file, problems = _file_keys(file, field_of_key, keys)
    values, sources = _layered(explicit, env, file, in_file, root_path, given_as, flag_names)
    sources["root"] = root_source

    def where(name: str) -> str:
        kind, origin = sources.get(name, ("default", None))
        if kind == "file" and file is not None:
            return f"{file.label}: {file.prefix}{in_file[name]}"
        return origin or keys.get(name, name)

    if values.get("database_url") == "":
        # An empty variable is unset (_layered); an empty value written down is a mistake that
        # would otherwise connect through PG* or the embedded server without a word.
        problems.append(
            f"{where('database_url')}: empty: give a connection URL, or remove it "
            "to use DATABASE_URL, PG* or the embedded server"
        )
        del values["database_url"]
    config: Config | None = None
    try:
        config = Config(root=root_path, **values)
    except InvalidSettings as exc:
        problems.extend(f"{where(name)}: {message}" for name, message in exc.errors)
    if problems or config is None:
        raise ConfigInvalid(problems)
    config = _with_password(config, where)
    known_env = {env_name(k) for k in keys.values()} | _OTHER_ENV
    return dataclasses.replace(
        config,
        _sources=sources,
        _file=file.label if file is not None else None,
        _notes=tuple(_file_notes(file, config, sources)),
        _env_notes=tuple(
            f"{var} is not a setting; ignored{_did_you_mean(var, sorted(known_env))}"
            for var in sorted(env)
            if var.startswith(ENV_PREFIX) and var not in known_env
        ),
    )


def _root(
    root: Path | str | None, find_root_from: Path | None, given_as: Literal["flag", "argument"]
) -> tuple[Path, tuple[Source, str | None]]:
    """The project root and where it came from; ConfigInvalid for a given one that is no
    directory (never created: a typo in a deploy script must not grow a project and a server)."""
    if root is None and find_root_from is not None:
        return find_root(find_root_from), ("default", "nearest directory with migrations/ or a config file")
    if root is None:
        return Path.cwd().resolve(), ("default", "working directory")
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise ConfigInvalid(
            [
                f"{'--root' if given_as == 'flag' else 'root'}: {root_path} is not "
                "a directory (sqlmig does not create the project root)"
            ]
        )
    return root_path, (given_as, "--root" if given_as == "flag" else None)


def _file_keys(
    file: configfile.ConfigFile | None, field_of_key: Mapping[str, str], keys: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The settings the config file gives (field -> its key as written there), and the problems
    of its keys: unknown (with the nearest known one), or one setting given twice."""
    in_file: dict[str, str] = {}
    problems: list[str] = []
    for raw_key in file.values if file is not None else ():
        assert file is not None
        if raw_key == TARGETS_TABLE:
            continue  # not a setting: the targets of `--target NAME` (sqlmig.engine.fleet)
        name = field_of_key.get(raw_key.replace("-", "_"))
        if name is None:
            instead = _NOT_IN_FILE.get(raw_key.replace("-", "_"))
            problems.append(
                f"{file.label}: {file.prefix}{raw_key}: unknown key"
                + (f": {instead}" if instead else _did_you_mean(raw_key, keys.values()))
            )
        elif name in in_file:
            problems.append(f"{file.label}: {file.prefix}{raw_key}: given twice (also as {in_file[name]})")
        else:
            in_file[name] = raw_key
    return in_file, problems


def _layered(
    explicit: Mapping[str, object],
    env: Mapping[str, str],
    file: configfile.ConfigFile | None,
    in_file: Mapping[str, str],
    root: Path,
    given_as: Literal["flag", "argument"],
    flag_names: Mapping[str, str] | None,
) -> tuple[dict[str, Any], dict[str, tuple[Source, str | None]]]:
    """Each setting's raw value from the first layer that has it (given, environment, file; an
    empty variable counts as unset), and where it came from; a setting in none is the default."""
    values: dict[str, Any] = {}
    sources: dict[str, tuple[Source, str | None]] = {}
    for name, key in settings().items():
        var = next((v for v in (env_name(key), *_ENV_FALLBACKS.get(name, ())) if env.get(v)), None)
        if name in explicit:
            values[name] = explicit[name]
            flag = (flag_names or {}).get(name) or (flag_names or {}).get(key)
            sources[name] = (given_as, (flag or "--" + key.replace("_", "-")) if given_as == "flag" else None)
        elif var is not None:
            values[name] = env[var]
            sources[name] = ("env", var)
        elif file is not None and name in in_file:
            values[name] = _from_file(name, file.values[in_file[name]], root)
            sources[name] = ("file", file.label)
        else:
            sources[name] = ("default", None)
    return values, sources


def _with_password(config: Config, where: typing.Callable[[str], str]) -> Config:
    """The password from `password_file`, read once here (ConfigInvalid if it cannot be)."""
    if config.password_file is None:
        return config
    try:
        password = config.password_file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigInvalid(
            [f"{where('password_file')}: cannot read password file {config.password_file}: {exc.strerror}"]
        ) from exc
    return dataclasses.replace(config, password=Secret(password))


def _file_notes(
    file: configfile.ConfigFile | None, config: Config, sources: Mapping[str, tuple[Source, str | None]]
) -> list[str]:
    """What the config file gets a warning for without being refused: its own notes, and a
    password written into the database_url it gives."""
    notes = list(file.notes) if file is not None else []
    if sources["database_url"][0] == "file" and config.database_url is not None and file is not None:
        url = config.database_url.get_secret_value()
        if dsn_secrets(url):
            notes.append(
                f"{file.label}: warning: database_url holds a password: keep passwords "
                "out of files under version control (password_file, or DATABASE_URL in "
                "the environment)"
            )
    return notes


def _from_file(name: str, value: Any, root: Path) -> Any:
    # A path in the file is relative to the file, not to wherever sqlmig was started.
    if isinstance(value, str) and _SPECS[name].kind == "path":
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else root / path)
    return value


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word.replace("-", "_"), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def secrets_of(config: Config) -> list[str]:
    out: list[str] = []
    if config.password is not None:
        out.append(config.password.get_secret_value())
    if config.database_url is not None:
        out.extend(dsn_secrets(config.database_url.get_secret_value()))
    if os.environ.get("PGPASSWORD"):
        out.append(os.environ["PGPASSWORD"])
    return out
