"""How the CLI writes, for three readers:

- a pipe or a file (CI logs, `| tee`): exactly one line per migration, never an escape code;
- a terminal: the same lines, plus a progress line rewritten in place while a migration runs
  (`[3/12] applying 003_x (1.2.0) … 14s`), and colour unless NO_COLOR or --no-color;
- a log collector (`--log-format json`): one JSON object per line on stderr, one per event.

stdout carries a command's result (status, `--json` documents, a rendered script, `db url`);
stderr carries the log (warnings, notes, errors). With `--log-format json` the events of up,
down and baseline go to stderr too, so stdout stays data and every line of stderr is JSON.

The library never prints: the CLI hands this module what the library reported through its
callbacks and return values. No module-level state: one Output per CLI run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

Level = Literal["debug", "info", "warning", "error"]
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class Output:
    def __init__(
        self,
        *,
        log_format: str = "text",
        no_color: bool = False,
        environ: Mapping[str, str] | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        env = os.environ if environ is None else environ
        # -q: no progress, no line per migration, no informational notices; results, the
        # summary line, warnings and errors stay.
        self.quiet = quiet
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.json = log_format == "json"
        dumb = env.get("TERM") == "dumb"  # no cursor control, no colour
        # https://no-color.org: set and not empty means no colour, whatever the value.
        colour = not (no_color or env.get("NO_COLOR") or dumb or self.json)
        self.color_out = colour and _isatty(self.stdout)
        self.color_err = colour and _isatty(self.stderr)
        self.live = not (self.json or dumb) and _isatty(self.stdout)
        self._dots = "…" if "utf" in (getattr(self.stdout, "encoding", "") or "").lower() else "..."
        self._lock = threading.Lock()  # the ticker thread writes too
        self._label = ""  # the progress line's text while a step runs
        self._started = 0.0
        self._seconds = -1  # the seconds shown on the progress line
        self._shown = 0  # characters of progress on screen now
        self._stop: threading.Event | None = None

    # -- plain lines -------------------------------------------------------------------------

    def style(self, text: str, *styles: str, err: bool = False) -> str:
        if not styles or not (self.color_err if err else self.color_out):
            return text
        return f"\x1b[{';'.join(_SGR[s] for s in styles)}m{text}\x1b[0m"

    def out(self, line: str = "", *styles: str) -> None:
        """A line of the command's result, on stdout (unchanged by --log-format)."""
        with self._lock:
            self._erase()
            self._write(self.stdout, self.style(line.translate(_ESCAPED), *styles) + "\n")

    def err(
        self, text: str, *styles: str, level: Level | None = None, event: str = "message", **fields: Any
    ) -> None:
        """A line of the log, on stderr; an event object with --log-format json."""
        if level is None:
            level = "warning" if "warning:" in text[:300] else "info"
        if self.quiet and level == "info":
            return
        if self.json:
            self.event(level, event, text, **fields)
            return
        with self._lock:
            self._erase()
            self._write(self.stderr, self.style(text.translate(_ESCAPED), *styles, err=True) + "\n")

    def event(self, level: Level, event: str, message: str, **fields: Any) -> None:
        """One JSON object on one line of stderr: timestamp, level, event, message, fields."""
        record = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "event": event,
            "message": message,
        }
        record.update((k, v) for k, v in fields.items() if v is not None)
        line = json.dumps(record, default=str, ensure_ascii=False)
        with self._lock:
            self._write(self.stderr, line + "\n")

    # -- up / down / baseline ----------------------------------------------------------------

    def run_started(
        self, *, direction: str, from_version: str | None, to_version: str | None, total: int
    ) -> None:
        if self.json and total:
            verb = "applying" if direction == "up" else "rolling back"
            self.event(
                "info",
                "run_started",
                f"{verb} {total} migration(s): {from_version or 'none'} -> {to_version or 'none'}",
                direction=direction,
                from_version=from_version,
                to_version=to_version,
                total=total,
            )

    def step_started(self, *, direction: str, name: str, version: str, step: int, total: int) -> None:
        verb = "applying" if direction == "up" else "rolling back"
        if self.json:
            self.event(
                "info",
                "migration_started",
                f"{verb} {name} ({version})",
                direction=direction,
                migration=name,
                version=version,
                step=step,
                total=total,
            )
        elif self.live and not self.quiet:
            self._begin(f"[{step}/{total}] {verb} {name} ({version}) {self._dots}")

    def step_done(
        self,
        *,
        direction: str,
        name: str,
        version: str,
        duration_ms: int,
        step: int | None = None,
        total: int | None = None,
    ) -> None:
        verb = {"up": "applied", "down": "rolled back"}.get(direction, direction)
        line = f"{verb} {name} ({version}) in {duration_ms} ms"
        if self.json:
            self.event(
                "info",
                "migration_applied" if direction == "up" else "migration_rolled_back",
                line,
                direction=direction,
                migration=name,
                version=version,
                duration_ms=duration_ms,
                step=step,
                total=total,
            )
            return
        if self.quiet:
            return
        with self._lock:
            self._label = ""
            self._erase()
            self._write(self.stdout, self.style(verb, "green") + line[len(verb) :] + "\n")

    def recorded(self, line: str, **fields: Any) -> None:
        """A migration recorded without running it (baseline)."""
        if self.json:
            self.event("info", "migration_recorded", line, **fields)
        else:
            self.out(line)

    def run_finished(self, line: str, **fields: Any) -> None:
        self.end()
        if self.json:
            self.event("info", "run_finished", line, **fields)
        else:
            self.out(line, "bold")

    def failure(self, lines: list[str], *, exit_code: int, **fields: Any) -> None:
        """The error that ends the run: text lines `sqlmig: …`, or one `error` event."""
        self.end()
        if self.json:
            self.event(
                "error",
                "error",
                lines[0] if lines else "error",
                exit_code=exit_code,
                lines=lines if len(lines) > 1 else None,
                **fields,
            )
            return
        # A server message can span lines (libpq's "server closed the connection unexpectedly\n\t
        # This probably means…"): each printed line still starts with `sqlmig: `.
        pieces = [p.strip() for line in lines for p in line.split("\n") if p.strip()]
        for i, piece in enumerate(pieces):
            self.err(f"sqlmig: {piece}", *(("red", "bold") if i == 0 else ()), level="error")

    def end(self) -> None:
        """Stop the progress line and erase it."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._lock:
            self._label = ""
            self._erase()

    def json_logging(self) -> None:
        """Route Python logging (psycopg's warnings) into events, so stderr stays all JSON."""
        if self.json:
            logging.getLogger().addHandler(_EventHandler(self))

    # -- the progress line -------------------------------------------------------------------

    def _begin(self, label: str) -> None:
        with self._lock:
            self._label = label
            self._started = time.monotonic()
            self._draw()
        if self._stop is None:
            # A long step (CREATE INDEX CONCURRENTLY on a big table) shows that it is alive.
            self._stop = threading.Event()
            threading.Thread(
                target=self._tick, args=(self._stop,), name="sqlmig-progress", daemon=True
            ).start()

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            with self._lock:
                if (
                    self._label
                    and not stop.is_set()
                    and int(time.monotonic() - self._started) != self._seconds
                ):
                    self._draw()

    def _draw(self) -> None:
        # Rewritten with \r and spaces, no cursor escapes: NO_COLOR output has no ESC at all.
        self._seconds = seconds = int(time.monotonic() - self._started)
        text = self._label + (f" {seconds}s" if seconds >= 1 else "")
        text = text[: max(20, shutil.get_terminal_size().columns - 1)]  # a wrap breaks the \r
        pad = " " * max(0, self._shown - len(text))
        styled = self.style(text, "cyan")
        self._write(self.stdout, f"\r{styled}{pad}" + (f"\r{styled}" if pad else ""))
        self._shown = len(text)

    def _erase(self) -> None:
        if self._shown:
            self._write(self.stdout, "\r" + " " * self._shown + "\r")
            self._shown = 0

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()


class _EventHandler(logging.Handler):
    def __init__(self, output: Output) -> None:
        super().__init__(logging.WARNING)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        level: Level = "error" if record.levelno >= logging.ERROR else "warning"
        self.output.event(level, "log", record.getMessage(), logger=record.name)


# Control characters in a file name or a server's message would drive the terminal (an escape
# sequence can rewrite what was printed before): shown as \xNN. Tab and line feed stay.
_ESCAPED = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0))})


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
