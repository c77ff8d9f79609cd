"""Configuration (sqlmig.toml, [tool.sqlmig], SQLMIG_*, flags) and output for pipelines and
terminals (plain lines, --log-format json, progress and colours on a TTY), through real `sqlmig`
processes on a real server; the terminal is a real pseudo-terminal (the pty module)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime
from pathlib import Path

from tests.conftest import SQLMIG, Project, table_exists

APPLIED_LINE = re.compile(r"^applied (\d{3}_\w+) \((\d+\.\d+\.\d+)\) in \d+ ms$")
SGR = re.compile(r"\x1b\[[0-9;]*m")


def three_tables(project: Project) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "create_b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n", version="1.1.0")
    project.add(3, "create_c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n", version="1.2.0")


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def config_json(project: Project, *args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(ok(project.run(*args, "config", "--json", env=env)).stdout)


def setting_line(stdout: str, key: str) -> str:
    """The row of `sqlmig config` for `key`, its columns separated by single spaces."""
    line = next(ln for ln in stdout.splitlines() if ln.split(" ", 1)[0] == key)
    return re.sub(r"\s{2,}", "  ", line)


# -- configuration -----------------------------------------------------------------------------


def test_precedence_is_flag_then_env_then_file_then_default(project: Project) -> None:
    (project.root / "sqlmig.toml").write_text(
        '# settings for this project\nlock_timeout = 30\ntable = "file_history"\nschema = "file_schema"\n'
    )
    env = {"SQLMIG_LOCK_TIMEOUT": "20", "SQLMIG_SCHEMA": "env_schema"}

    settings = config_json(project, "--lock-timeout", "10", env=env)["settings"]
    assert settings["lock_timeout"] == {"value": 10.0, "source": "flag", "origin": "--lock-timeout"}
    assert settings["schema"] == {"value": "env_schema", "source": "env", "origin": "SQLMIG_SCHEMA"}
    assert settings["table"] == {"value": "file_history", "source": "file", "origin": "sqlmig.toml"}
    assert settings["connect_timeout"] == {"value": 10, "source": "default", "origin": None}

    settings = config_json(project, env=env)["settings"]
    assert settings["lock_timeout"]["value"] == 20.0
    assert config_json(project)["settings"]["lock_timeout"]["value"] == 30.0
    (project.root / "sqlmig.toml").unlink()
    assert config_json(project)["settings"]["lock_timeout"] == {
        "value": 300.0,
        "source": "default",
        "origin": None,
    }

    human = ok(project.run("--table", "flag_history", "config", env=env)).stdout
    assert human.splitlines()[0] == "config file: none (no sqlmig.toml, no [tool.sqlmig] in pyproject.toml)"
    assert setting_line(human, "lock_timeout") == "lock_timeout  20.0  env SQLMIG_LOCK_TIMEOUT"
    assert setting_line(human, "table") == "table  flag_history  flag --table"
    assert setting_line(human, "connect_timeout") == "connect_timeout  10  default"
    assert setting_line(human, "root") == (
        f"root  {project.root.resolve()}  default (nearest directory with migrations/ or a config file)"
    )


def test_the_history_table_follows_the_same_precedence_when_migrating(
    project: Project, database_url: str
) -> None:
    """Not just what `config` says: where `up` writes its history (each table a fresh start)."""
    project.add(1, "create_a", "CREATE TABLE IF NOT EXISTS a (id int);\n", "DROP TABLE a;\n")
    (project.root / "sqlmig.toml").write_text('schema = "from_file"\ntable = "file_history"\n')
    ok(project.run("up", url=database_url))
    assert table_exists(database_url, "from_file.file_history")

    ok(project.run("up", url=database_url, env={"SQLMIG_TABLE": "env_history"}))
    assert table_exists(database_url, "from_file.env_history")

    ok(project.run("--table", "flag_history", "up", url=database_url, env={"SQLMIG_TABLE": "env_history"}))
    assert table_exists(database_url, "from_file.flag_history")
    assert not table_exists(database_url, "public.schema_version")


def test_tool_sqlmig_in_pyproject_is_read_unless_there_is_a_sqlmig_toml(
    project: Project, database_url: str
) -> None:
    project.add(1, "create_a", "CREATE TABLE IF NOT EXISTS a (id int);\n", "DROP TABLE a;\n")
    (project.root / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.sqlmig]\ntable = "py_history"\nlock-timeout = 12\n'
    )
    report = config_json(project)
    assert report["file"] == "pyproject.toml"
    assert report["settings"]["table"] == {
        "value": "py_history",
        "source": "file",
        "origin": "pyproject.toml",
    }
    ok(project.run("up", url=database_url))
    assert table_exists(database_url, "public.py_history")

    (project.root / "sqlmig.toml").write_text('table = "toml_history"\n')
    result = ok(project.run("up", url=database_url))
    assert result.stderr == (
        "sqlmig: pyproject.toml: warning: [tool.sqlmig] is ignored: sqlmig.toml takes precedence\n"
    )
    assert table_exists(database_url, "public.toml_history")
    report = config_json(project)
    assert report["file"] == "sqlmig.toml"
    assert report["settings"]["lock_timeout"]["source"] == "default"  # the two are never merged
    assert report["notes"] == [
        "pyproject.toml: warning: [tool.sqlmig] is ignored: sqlmig.toml takes precedence"
    ]


def test_a_bad_value_names_the_file_and_the_key_and_exits_2_before_connecting(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    (project.root / "sqlmig.toml").write_text("lock_timeout = -1\n")
    result = project.run("up", url=database_url)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "sqlmig: sqlmig.toml: lock_timeout: -1: a duration cannot be negative\n"
    assert not table_exists(database_url, "public.schema_version")

    (project.root / "sqlmig.toml").unlink()
    (project.root / "pyproject.toml").write_text('[tool.sqlmig]\nschema = "two words"\n')
    result = project.run("status", url=database_url)
    assert (result.returncode, result.stderr) == (
        2,
        "sqlmig: pyproject.toml: tool.sqlmig.schema: 'two words' is not a plain SQL identifier\n",
    )
    (project.root / "pyproject.toml").unlink()

    result = project.run("up", url=database_url, env={"SQLMIG_LOCK_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "sqlmig: SQLMIG_LOCK_TIMEOUT: 'soon' is not a duration (e.g. 5s, 500ms, 10min, 0 or off)"
    )
    result = project.run("--lock-timeout", "-1", "up", url=database_url)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "sqlmig: --lock-timeout: '-1' is not a duration (e.g. 5s, 500ms, 10min, 0 or off)"
    )


def test_an_unknown_key_is_an_error_with_a_suggestion(project: Project) -> None:
    (project.root / "sqlmig.toml").write_text('lock_timout = 5\ntable = "t"\nflavour = 1\n')
    result = project.run("config")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "sqlmig: sqlmig.toml: lock_timout: unknown key (did you mean "
        "lock_timeout?)\n"
        "sqlmig: sqlmig.toml: flavour: unknown key\n"
    )


def test_config_redacts_the_password_of_the_database_url(project: Project, tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55"
    url = f"postgresql://app:{secret}@db.example:5432/app"
    env = {"SQLMIG_DATABASE_URL": url}
    result = ok(project.run("config", env=env))
    assert secret not in result.stdout + result.stderr
    assert result.stdout.splitlines()[1] == "database:    postgresql://app:***@db.example:5432/app"
    assert setting_line(result.stdout, "database_url") == (
        "database_url  postgresql://app:***@db.example:5432/app  env SQLMIG_DATABASE_URL"
    )

    report = json.loads(ok(project.run("config", "--json", env=env)).stdout)
    assert secret not in json.dumps(report)
    assert report["settings"]["database_url"] == {
        "value": "postgresql://app:***@db.example:5432/app",
        "source": "env",
        "origin": "SQLMIG_DATABASE_URL",
    }

    # In a file it is allowed, and discouraged with a warning.
    (project.root / "sqlmig.toml").write_text(f'database_url = "{url}"\n')
    pw_file = tmp_path / "pw"
    pw_file.write_text("other-secret\n")
    result = ok(project.run("--password-file", str(pw_file), "config", "--json"))
    report = json.loads(result.stdout)
    assert secret not in result.stdout + result.stderr and "other-secret" not in result.stdout
    assert report["settings"]["database_url"]["source"] == "file"
    assert report["settings"]["password_file"] == {
        "value": str(pw_file),
        "source": "flag",
        "origin": "--password-file",
    }
    assert report["notes"] == [
        "sqlmig.toml: warning: database_url holds a password: keep passwords out of files under "
        "version control (password_file, or DATABASE_URL in the environment)"
    ]


def test_a_subdirectory_finds_the_config_file_and_its_relative_paths(
    project: Project, database_url: str
) -> None:
    """The file's directory is the root; its paths are relative to it, not to the cwd."""
    (project.migrations).rename(project.root / "migrations_elsewhere")
    db = project.root / "db"
    (db / "up").mkdir(parents=True)
    (db / "down").mkdir()
    (db / "up" / "001_create_a.sql").write_text("-- Version: 1.0.0\nCREATE TABLE a (id int);\n")
    (db / "down" / "001_create_a_rollback.sql").write_text("DROP TABLE a;\n")
    (project.root / "sqlmig.toml").write_text('migrations_dir = "db/up"\nrollbacks_dir = "db/down"\n')
    sub = project.root / "src" / "app"
    sub.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIG_DATABASE_URL")}
    result = subprocess.run(
        [*SQLMIG, "up"],
        cwd=sub,
        text=True,
        capture_output=True,
        timeout=120,
        env={**env, "SQLMIG_DATABASE_URL": database_url},
    )
    assert result.returncode == 0, result.stderr
    assert APPLIED_LINE.match(result.stdout.splitlines()[0])
    assert table_exists(database_url, "public.a")


# -- output: pipes, JSON events ----------------------------------------------------------------


def events_of(stderr: str) -> list[dict]:
    events = [json.loads(line) for line in stderr.splitlines()]  # every line is one object
    for e in events:
        assert {"timestamp", "level", "event", "message"} <= e.keys(), e
        assert datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    return events


def test_log_format_json_gives_one_event_per_line_for_each_migration(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    result = ok(project.run("--log-format", "json", "up", url=database_url))
    assert result.stdout == ""  # stdout is for results; the log is stderr
    events = events_of(result.stderr)
    assert [e["event"] for e in events] == ["run_started"] + [
        "migration_started",
        "migration_applied",
    ] * 3 + ["run_finished"]
    applied = [e for e in events if e["event"] == "migration_applied"]
    assert [(e["migration"], e["version"], e["step"], e["total"], e["level"]) for e in applied] == [
        ("001_create_a", "1.0.0", 1, 3, "info"),
        ("002_create_b", "1.1.0", 2, 3, "info"),
        ("003_create_c", "1.2.0", 3, 3, "info"),
    ]
    assert all(isinstance(e["duration_ms"], int) for e in applied)
    assert APPLIED_LINE.match(applied[0]["message"])
    assert "from_version" not in events[0]  # null fields are left out
    assert (events[0]["to_version"], events[0]["total"]) == ("1.2.0", 3)
    finished = events[-1]
    assert (finished["to_version"], finished["count"]) == ("1.2.0", 3)
    assert re.fullmatch(r"at version 1\.2\.0: 3 applied in \d+ ms", finished["message"])

    result = ok(project.run("down", url=database_url, env={"SQLMIG_LOG_FORMAT": "json"}))
    events = events_of(result.stderr)
    assert [(e["event"], e.get("migration")) for e in events[1:3]] == [
        ("migration_started", "003_create_c"),
        ("migration_rolled_back", "003_create_c"),
    ]
    assert events[-1]["message"] == "at version 1.1.0: 1 rolled back"


def test_log_format_json_reports_a_failure_with_its_exit_code(project: Project, database_url: str) -> None:
    project.add(1, "create_a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n", version="1.0.0")
    project.add(2, "broken", "SELECT 1;\nCREATE TABL b (id int);\n", "", version="1.1.0")
    result = project.run("--log-format", "json", "up", url=database_url)
    assert (result.returncode, result.stdout) == (3, "")
    events = events_of(result.stderr)
    assert [e["event"] for e in events] == [
        "run_started",
        "migration_started",
        "migration_applied",
        "migration_started",
        "error",
    ]
    error = events[-1]
    assert error["level"] == "error"
    assert error["exit_code"] == 3
    assert error["error"] == "MigrationFailed"
    assert (error["migration"], error["version"]) == ("002_broken", "1.1.0")
    assert (error["path"], error["line"], error["column"], error["sqlstate"]) == (
        "migrations/002_broken.sql",
        3,
        8,
        "42601",
    )
    assert error["message"] == (
        'migrations/002_broken.sql:3:8: ERROR [42601]: syntax error at or near "TABL"'
    )
    assert error["applied_before"] == ["001_create_a"]
    assert error["lines"][-1] == "applied before the failure: 001_create_a"

    # Errors before anything runs are events too: bad input, exit 2.
    (project.root / "sqlmig.toml").write_text("retries = -5\nlock_timeout = -1\n")
    result = project.run("--log-format", "json", "up", url=database_url)
    assert result.returncode == 2
    [error] = events_of(result.stderr)
    assert (error["event"], error["exit_code"], error["error"]) == ("error", 2, "ConfigInvalid")
    assert "sqlmig.toml: lock_timeout: -1: a duration cannot be negative" in error["lines"]
    result = project.run("--log-format", "json", "up", "--nonsense", url=database_url)
    [error] = events_of(result.stderr)
    assert (result.returncode, error["exit_code"], error["message"]) == (2, 2, "No such option '--nonsense'.")


def test_log_format_json_keeps_data_on_stdout(project: Project, database_url: str) -> None:
    three_tables(project)
    project.add(4, "placeholder", "-- nothing yet\n", "", version="1.3.0")
    result = ok(project.run("--log-format", "json", "up", url=database_url))
    warnings = [e for e in events_of(result.stderr) if e["level"] == "warning"]
    assert warnings and all(e["event"] == "warning" for e in warnings)
    status = ok(project.run("--log-format", "json", "status", "--json", url=database_url))
    assert json.loads(status.stdout)["current_version"] == "1.3.0"


def test_no_escape_codes_when_not_a_terminal(project: Project, database_url: str) -> None:
    three_tables(project)
    project.add(4, "placeholder", "-- nothing yet\n", "", version="1.3.0")
    project.add(5, "broken", "CREATE TABL x (id int);\n", "", version="1.4.0")
    runs = [
        project.run("up", url=database_url),
        project.run("status", url=database_url),
        project.run("history", "--events", url=database_url),
        project.run("config", url=database_url),
        project.run("down", url=database_url),
    ]
    assert [r.returncode for r in runs] == [3, 0, 0, 0, 0]
    assert runs[0].stderr.startswith("migrations/004_placeholder.sql: warning: ")
    for r in runs:
        assert "\x1b" not in r.stdout + r.stderr
    # Exactly the historical lines: one per migration, then the summary.
    assert [APPLIED_LINE.match(ln)[1] for ln in runs[0].stdout.splitlines()] == [  # type: ignore[index]
        "001_create_a",
        "002_create_b",
        "003_create_c",
        "004_placeholder",
    ]


def test_history_events_show_who_where_what_how_long_and_the_outcome(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    project.add(4, "broken", "CREATE TABL x (id int);\n", "", version="1.3.0")
    assert project.run("up", url=database_url).returncode == 3
    ok(project.run("down", url=database_url))
    lines = ok(project.run("history", "--events", url=database_url)).stdout.splitlines()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4}"
    who = r"by \S+@\S+ \(sqlmig \d+\.\d+\.\d+\)"
    assert re.fullmatch(rf"{when} down 003_create_c \(1\.2\.0\) reverted \d+ ms {who}", lines[0])
    assert re.fullmatch(
        rf"{when} up 004_broken \(1\.3\.0\) failed \d+ ms {who}: "
        r"migrations/004_broken.sql:2:8: ERROR \[42601\]: syntax error at or "
        r'near "TABL"',
        lines[1],
    )
    assert re.fullmatch(rf"{when} up 001_create_a \(1\.0\.0\) applied \d+ ms {who}", lines[-1])


# -- output: a terminal ------------------------------------------------------------------------


def run_in_pty(
    project: Project, *args: str, url: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run sqlmig with stdin, stdout and stderr on a pseudo-terminal (80 columns); what it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NO_COLOR", "SQLMIG_LOG_FORMAT")
    }
    full_env.update({"SQLMIG_DATABASE_URL": url, "TERM": "xterm-256color", **(env or {})})
    proc = subprocess.Popen(
        [*SQLMIG, *args],
        cwd=project.root,
        env=full_env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode()


def screen(raw: str) -> list[str]:
    """What the terminal shows at the end: \\r rewrites the line, colours removed."""
    lines = []
    for line in SGR.sub("", raw).replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        lines.append("".join(cells).rstrip())
    return [ln for ln in lines if ln]


def test_on_a_terminal_up_shows_progress_and_colours(project: Project, database_url: str) -> None:
    three_tables(project)
    project.add(4, "slow", "SELECT pg_sleep(1.3);\n", "", version="1.3.0")
    code, raw = run_in_pty(project, "up", url=database_url)
    assert code == 0, raw
    assert "[1/4] applying 001_create_a (1.0.0) …" in raw
    assert "[4/4] applying 004_slow (1.3.0) … 1s" in raw  # a long step shows it is alive
    assert re.search(r"\x1b\[32mapplied\x1b\[0m 001_create_a \(1\.0\.0\) in \d+ ms\r\n", raw)
    assert re.search(r"\x1b\[1mat version 1\.3\.0: 4 applied in \d+ ms\x1b\[0m", raw)
    # Once the progress is erased, the terminal shows exactly the lines a pipe gets.
    shown = screen(raw)
    assert [APPLIED_LINE.match(ln)[1] for ln in shown[:4]] == [  # type: ignore[index]
        "001_create_a",
        "002_create_b",
        "003_create_c",
        "004_slow",
    ]
    assert re.fullmatch(r"at version 1\.3\.0: 4 applied in \d+ ms", shown[4])
    assert len(shown) == 5

    code, raw = run_in_pty(project, "down", url=database_url)
    assert code == 0, raw
    assert "[1/1] rolling back 004_slow (1.3.0) …" in raw
    assert "\x1b[32mrolled back\x1b[0m 004_slow (1.3.0) in " in raw


def test_on_a_terminal_a_failure_is_red_and_ends_the_progress_line(
    project: Project, database_url: str
) -> None:
    project.add(1, "broken", "CREATE TABL x (id int);\n", "", version="1.0.0")
    code, raw = run_in_pty(project, "up", url=database_url)
    assert code == 3
    assert (
        "\x1b[31;1msqlmig: migrations/001_broken.sql:2:8: ERROR [42601]: syntax error at or "
        'near "TABL"\x1b[0m\r\n'
    ) in raw
    assert screen(raw) == [
        'sqlmig: migrations/001_broken.sql:2:8: ERROR [42601]: syntax error at or near "TABL"',
        "sqlmig: the failed migration was rolled back; nothing of it remains",
    ]


def test_no_color_on_a_terminal_keeps_the_progress_without_any_escape_code(
    project: Project, database_url: str
) -> None:
    three_tables(project)
    for args, env in ((("up",), {"NO_COLOR": "1"}), (("--no-color", "down"), {})):
        code, raw = run_in_pty(project, *args, url=database_url, env=env)
        assert code == 0, raw
        assert "\x1b" not in raw
        assert re.search(r"\[\d/\d\] (applying|rolling back) 00\d_create_\w \(1\.\d\.0\) …", raw)


def test_dumb_terminals_and_json_get_no_progress_line(project: Project, database_url: str) -> None:
    three_tables(project)
    code, raw = run_in_pty(project, "up", "--to", "1.0.0", url=database_url, env={"TERM": "dumb"})
    assert code == 0 and "\x1b" not in raw and "[1/1]" not in raw and "\r\n" in raw
    code, raw = run_in_pty(project, "--log-format", "json", "up", url=database_url)
    assert code == 0 and "\x1b" not in raw
    assert [json.loads(ln)["event"] for ln in raw.splitlines()][-1] == "run_finished"


def test_the_cli_module_is_still_importable_as_a_script() -> None:
    """`python -m sqlmig.cli.main --version` (what the tests run) answers without a database."""
    result = subprocess.run(
        [sys.executable, "-m", "sqlmig.cli", "--version"], text=True, capture_output=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("sqlmig, version ")
