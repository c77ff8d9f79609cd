"""Settings resolution without a database: flag > environment > config file > default."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import sqlmig
from sqlmig.config.file import find_root
from sqlmig.config.settings import Config, Secret
from sqlmig.engine.inspect import explain_config
from sqlmig.models import to_json


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sources(config: sqlmig.Config) -> dict[str, tuple[object, str, str | None]]:
    return {k: (s.value, s.source, s.origin) for k, s in explain_config(config).settings.items()}


FILE = 'lock_timeout = 30\ntable = "file_table"\nschema = "file_schema"\nconnect_timeout = 7\n'
ENV = {"SQLMIG_LOCK_TIMEOUT": "20", "SQLMIG_TABLE": "env_table", "SQLMIG_SCHEMA": "env_schema"}


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {}, {"lock_timeout": (300.0, "default", None), "table": ("schema_version", "default", None)}),
        (
            {},
            "file",
            {"lock_timeout": (30.0, "file", "sqlmig.toml"), "table": ("file_table", "file", "sqlmig.toml")},
        ),
        (
            {},
            "file+env",
            {
                "lock_timeout": (20.0, "env", "SQLMIG_LOCK_TIMEOUT"),
                "table": ("env_table", "env", "SQLMIG_TABLE"),
            },
        ),
        (
            {"lock_timeout": 10, "table": "flag_table"},
            "file+env",
            {"lock_timeout": (10.0, "flag", "--lock-timeout"), "table": ("flag_table", "flag", "--table")},
        ),
    ],
)
def test_each_setting_comes_from_flag_then_env_then_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict, env: object, expected: dict
) -> None:
    monkeypatch.chdir(tmp_path)
    if env in ("file", "file+env"):
        write(tmp_path / "sqlmig.toml", FILE)
    environ = ENV if env == "file+env" else {}
    config = sqlmig.resolve(root=tmp_path, environ=environ, given_as="flag", **flags)
    found = sources(config)
    for key, want in expected.items():
        assert found[key] == want
    assert config.lock_timeout == expected["lock_timeout"][0]
    assert config.table == expected["table"][0]


def test_library_arguments_are_reported_as_arguments(tmp_path: Path) -> None:
    config = sqlmig.resolve(root=tmp_path, environ={}, schema_name="ops", table="t")
    assert (config.schema_name, config.table) == ("ops", "t")
    assert sources(config)["schema"] == ("ops", "argument", None)
    assert sqlmig.resolve(root=tmp_path, environ={}, schema="ops2").schema_name == "ops2"


def test_an_unknown_library_argument_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="lock_timout"):
        sqlmig.resolve(root=tmp_path, environ={}, lock_timout=3)


def test_sqlmig_database_url_wins_over_database_url_and_over_the_file(tmp_path: Path) -> None:
    write(tmp_path / "sqlmig.toml", 'database_url = "postgresql://file@h/db"\n')
    url = lambda env: sqlmig.resolve(root=tmp_path, environ=env).database_url  # noqa: E731
    assert url({}).get_secret_value() == "postgresql://file@h/db"
    assert url({"DATABASE_URL": "postgresql://plain@h/db"}).get_secret_value() == "postgresql://plain@h/db"
    assert (
        url(
            {"DATABASE_URL": "postgresql://plain@h/db", "SQLMIG_DATABASE_URL": "postgresql://ours@h/db"}
        ).get_secret_value()
        == "postgresql://ours@h/db"
    )
    assert url({"SQLMIG_DATABASE_URL": ""}).get_secret_value() == "postgresql://file@h/db"


def test_paths_in_the_file_are_relative_to_the_file_and_the_password_is_read(tmp_path: Path) -> None:
    write(
        tmp_path / "sqlmig.toml",
        'migrations_dir = "db/up"\nrollbacks-dir = "db/down"\npassword_file = "secrets/pw"\n',
    )
    write(tmp_path / "secrets" / "pw", "hunter22\n")
    config = sqlmig.resolve(root=tmp_path, environ={})
    assert config.migrations_path == tmp_path / "db" / "up"
    assert config.rollbacks_path == tmp_path / "db" / "down"
    assert config.password is not None and config.password.get_secret_value() == "hunter22"
    assert "hunter22" not in json.dumps(to_json(explain_config(config)))
    assert "hunter22" not in repr(config) + str(config.password)


def test_a_copy_keeps_where_each_setting_came_from(tmp_path: Path) -> None:
    write(tmp_path / "sqlmig.toml", 'table = "t"\n')
    config = sqlmig.resolve(root=tmp_path, environ={"SQLMIG_NO_SUCH": "1"})
    copy = dataclasses.replace(config, database_url=Secret("postgresql://h/db"), connect_timeout=3)
    assert (copy.connect_timeout, copy.table) == (3, "t")
    assert explain_config(copy).settings["table"] == explain_config(config).settings["table"]
    assert explain_config(copy).notes == explain_config(config).notes != ()
    assert Config(database_url="postgresql://h/db").database_url == copy.database_url


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({"connect_timeout": "10", "retries": 2.0, "lock_timeout": " 1.5 "}, []),
        (
            {"connect_timeout": 1.5},
            [("connect_timeout", "1.5 is not a whole number")],
        ),
        (
            {"retries": True, "lock_timeout": False},
            [
                ("lock_timeout", "False is not a duration (e.g. 5s, 500ms, 10min, 0 or off)"),
                ("retries", "True is not a whole number"),
            ],
        ),
        (
            {"lock_timeout": "nan", "table": 5},
            [
                ("table", "5 is not text"),
                ("lock_timeout", "'nan' is not a duration (e.g. 5s, 500ms, 10min, 0 or off)"),
            ],
        ),
        (
            {"lock_mode": "both", "root": 1},
            [
                ("root", "1 is not a path"),
                ("lock_mode", "'both' is not 'session' or 'transaction'"),
            ],
        ),
    ],
)
def test_config_checks_each_value_and_reports_every_bad_one(values: dict, errors: list) -> None:
    if not errors:
        Config(**values)
        return
    with pytest.raises(ValueError) as caught:
        Config(**values)
    assert caught.value.errors == errors  # type: ignore[attr-defined]


def test_pyproject_tool_sqlmig_is_read_and_sqlmig_toml_wins(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "app"\n\n[tool.sqlmig]\ntable = "py"\nlock-timeout = 12\n',
    )
    config = sqlmig.resolve(root=tmp_path, environ={})
    assert (config.table, config.lock_timeout) == ("py", 12.0)
    assert explain_config(config).file.endswith("pyproject.toml")
    write(tmp_path / "sqlmig.toml", 'table = "toml"\n')
    config = sqlmig.resolve(root=tmp_path, environ={})
    assert (config.table, config.lock_timeout) == ("toml", 300.0)  # never merged
    assert any("[tool.sqlmig] is ignored" in n for n in explain_config(config).notes)


def test_a_pyproject_without_tool_sqlmig_is_not_a_config_file(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "sqlmig-user"\n[tool.ruff]\nline-length = 1\n')
    assert explain_config(sqlmig.resolve(root=tmp_path, environ={})).file is None


@pytest.mark.parametrize(
    ("text", "env", "problems"),
    [
        ("lock_timeout = -1\n", {}, ["sqlmig.toml: lock_timeout: -1: a duration cannot be negative"]),
        (
            "lock_timout = 5\ncolour = true\n",
            {},
            [
                "sqlmig.toml: lock_timout: unknown key (did you mean lock_timeout?)",
                "sqlmig.toml: colour: unknown key",
            ],
        ),
        (
            'log_format = "json"\n',
            {},
            [
                "sqlmig.toml: log_format: unknown key: output options are "
                "--log-format or SQLMIG_LOG_FORMAT, not the project's"
            ],
        ),
        (
            'table = "a"\ntable-name = 1\nschema = "no spaces"\n',
            {},
            [
                "sqlmig.toml: table-name: unknown key (did you mean table?)",
                "sqlmig.toml: schema: 'no spaces' is not a plain SQL identifier",
            ],
        ),
        (
            "lock_timeout = 1\nlock-timeout = 2\n",
            {},
            ["sqlmig.toml: lock-timeout: given twice (also as lock_timeout)"],
        ),
        (
            "",
            {"SQLMIG_CONNECT_TIMEOUT": "soon"},
            ["SQLMIG_CONNECT_TIMEOUT: 'soon' is not a whole number"],
        ),
        (
            'schema = "x"\nlock_timeout = 5 5\n',
            {},
            [
                "sqlmig.toml: invalid TOML: Expected newline or end of document after a statement (at line "
                "2, column 18)"
            ],
        ),
    ],
)
def test_every_bad_setting_is_reported_with_where_it_was_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict, problems: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "sqlmig.toml", text)
    with pytest.raises(sqlmig.ConfigInvalid) as caught:
        sqlmig.resolve(root=tmp_path, environ=env)
    assert caught.value.lines() == problems
    assert caught.value.exit_code == 2


def test_find_root_stops_at_a_config_file_as_well_as_at_migrations(tmp_path: Path) -> None:
    write(tmp_path / "app" / "sqlmig.toml", 'migrations_dir = "db/migrations"\n')
    (tmp_path / "app" / "db" / "migrations").mkdir(parents=True)
    assert find_root(tmp_path / "app" / "src") == tmp_path / "app"  # need not exist
    assert find_root(tmp_path / "app" / "db" / "migrations") == tmp_path / "app" / "db"
    write(tmp_path / "svc" / "pyproject.toml", "[tool.sqlmig]\n")
    (tmp_path / "svc" / "pkg").mkdir()
    assert find_root(tmp_path / "svc" / "pkg") == tmp_path / "svc"


def test_unknown_sqlmig_variables_are_pointed_out_by_explain(tmp_path: Path) -> None:
    config = sqlmig.resolve(root=tmp_path, environ={"SQLMIG_LOCK_TIMOUT": "3", "SQLMIG_TEST_DSN": "x"})
    assert explain_config(config).notes == (
        "SQLMIG_LOCK_TIMOUT is not a setting; ignored (did you mean SQLMIG_LOCK_TIMEOUT?)",
    )
