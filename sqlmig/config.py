"""Settings: where the files are, which database, which history table; and password redaction."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from sqlmig.errors import InvalidInput

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# libpg environment variables that mean "a database is configured".
_LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


class Config(BaseModel):
    model_config = ConfigDict(frozen=True)

    root: Path = Field(default_factory=Path.cwd)
    migrations_dir: Path | None = None
    rollbacks_dir: Path | None = None
    database_url: SecretStr | None = None
    password: SecretStr | None = None
    schema_name: str = "public"
    table: str = "schema_version"
    lock_timeout: float = Field(default=300.0, ge=0)
    connect_timeout: int = Field(default=10, ge=1)
    application_name: str = "sqlmig"

    @field_validator("schema_name", "table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a plain SQL identifier")
        return value

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


def resolve(
    *,
    root: Path | None = None,
    database_url: str | None = None,
    password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Config:
    """Build a Config: explicit values, else SQLMIG_DATABASE_URL, else DATABASE_URL, else libpq env."""
    env = os.environ if environ is None else environ
    url = database_url or env.get("SQLMIG_DATABASE_URL") or env.get("DATABASE_URL") or None
    password_path = password_file or (
        Path(env["DATABASE_PASSWORD_FILE"]) if env.get("DATABASE_PASSWORD_FILE") else None
    )
    password = None
    if password_path is not None:
        try:
            password = password_path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidInput(f"cannot read password file {password_path}: {exc.strerror}") from exc
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Config(
            root=(root or Path.cwd()).resolve(),
            database_url=SecretStr(url) if url else None,
            password=SecretStr(password) if password is not None else None,
            **values,
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid configuration: {_first_error(exc)}") from exc


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}"
    return str(exc)


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]*)@",
                           re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """Remove passwords from anything about to be shown: URLs, key=value DSNs, known secrets."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def secrets_of(config: Config) -> list[str]:
    out: list[str] = []
    if config.password is not None:
        out.append(config.password.get_secret_value())
    if config.database_url is not None:
        match = _URL_PASSWORD.search(config.database_url.get_secret_value())
        if match and match["pw"]:
            from urllib.parse import unquote

            out.extend({match["pw"], unquote(match["pw"])})
    if os.environ.get("PGPASSWORD"):
        out.append(os.environ["PGPASSWORD"])
    return out
