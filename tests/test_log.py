"""Logging set-up: a full disk costs log lines, never the process."""

from __future__ import annotations

import errno
import io
import json
import logging
from typing import Any

import pytest
import structlog

from actorml.log import _Sink


class FullDisk(io.StringIO):
    """A stream whose writes fail with ENOSPC while ``full`` is set, as a full disk does."""

    full = True

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


def emit(sink: _Sink, event: str, level: str = "warning") -> None:
    """Pass one event through the sink as structlog would (it always drops the event)."""
    with pytest.raises(structlog.DropEvent):
        sink(None, level, {"event": event, "level": level})


class TestSink:
    def test_full_disk_drops_lines_and_says_so_once(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """ENOSPC on the log file drops and counts lines, warns once; the console still works."""
        file, console = FullDisk(), io.StringIO()
        sink = _Sink(file, console, logging.WARNING)
        for n in range(3):
            emit(sink, f"event_{n}")
        assert sink.dropped == 3
        assert console.getvalue().count("event_") == 3
        assert capsys.readouterr().err.count("being dropped") == 1

    def test_file_is_retried_once_the_disk_has_room(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Once writes succeed again, the next line reaches the file."""
        file = FullDisk()
        sink = _Sink(file, None, logging.WARNING)
        emit(sink, "lost")
        file.full = False
        emit(sink, "kept")
        lines = [json.loads(line) for line in file.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["kept"]
        assert sink.dropped == 1
        assert "written again" in capsys.readouterr().err

    @pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EPIPE])
    def test_broken_console_never_raises(self, code: int) -> None:
        """A console whose flush fails (EIO, a closed pipe) costs lines, not the caller."""

        class Broken(io.StringIO):
            def flush(self) -> Any:
                raise OSError(code, "broken")

        sink = _Sink(None, Broken(), logging.INFO)
        emit(sink, "shown", level="error")
        assert sink.dropped == 1
