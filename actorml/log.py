"""structlog set-up: readable lines on the console, JSON lines in the run directory.

Every process of a cluster calls :func:`configure_logging` once. ``node`` is bound as
a context variable for the whole process; actors bind ``actor`` and ``incarnation``
in their own task (trio copies the context into child tasks).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog

__all__ = ["LEVELS", "configure_logging"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Sink:
    """The last processor: writes each event to the file and, if loud enough, the console.

    Logging never kills the process it reports on: an ``OSError`` (a full disk, EIO, a
    closed pipe) while writing or flushing drops that line, counts it in ``dropped``,
    says so once on stderr (if stderr still works), and the next line tries again.
    """

    def __init__(
        self,
        file: IO[str] | None,
        console: IO[str] | None,
        console_level: int,
        tap: Callable[[str], None] | None = None,
    ) -> None:
        self.file = file
        self.tap = tap
        self.console = console
        self.console_level = console_level
        self.pretty = structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
        self.dropped = 0
        self._failing: set[str] = set()

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if self.file is not None or self.tap is not None:
            line = json.dumps(event, default=str) + "\n"
            if self.file is not None:
                self._write("file", self.file, line)
            if self.tap is not None:
                self.tap(line)
        level = LEVELS.get(event.get("level", "info"), logging.INFO)
        if self.console is not None and level >= self.console_level:
            shown = {k: v for k, v in event.items() if k != "timestamp"}
            self._write("console", self.console, self.pretty(logger, method, shown) + "\n")
        raise structlog.DropEvent

    def _write(self, where: str, stream: IO[str], line: str) -> None:
        try:
            stream.write(line)
            stream.flush()
        except OSError as exc:
            self.dropped += 1
            if where not in self._failing:
                self._failing.add(where)
                _tell_stderr(f"actorml: log lines to the {where} are being dropped ({exc})\n")
            return
        if where in self._failing:
            self._failing.discard(where)
            _tell_stderr(f"actorml: log lines to the {where} are written again\n")


def _tell_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, AttributeError, ValueError):
        pass


_open_file: IO[str] | None = None


def configure_logging(
    *,
    node: str,
    log_file: Path | None = None,
    level: str = "info",
    console_level: str | None = None,
    console: IO[str] | None = sys.stderr,
    tap: Callable[[str], None] | None = None,
) -> None:
    """Send this process's structlog events to ``log_file`` (JSON lines) and the console.

    Args:
        node: bound to every event of this process.
        log_file: where the JSON lines go (appended; parent directories are made).
        level: the least severe level written to the file.
        console_level: the least severe level shown on the console (default: ``level``).
        console: the console stream, or None for none.
        tap: also handed each file line (a node on another host ships them).
    """
    global _open_file
    if _open_file is not None:  # reconfigured (a second cluster in one program)
        _open_file.close()
        _open_file = None
    file = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file = _open_file = open(log_file, "a", encoding="utf-8")  # noqa: SIM115
    floor = LEVELS[level]
    shown = LEVELS[console_level or level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _Sink(file, console, shown, tap),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min(floor, shown)),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(node=node)
