"""Finding the processes a test started, by a marker in their environment."""

from __future__ import annotations

from pathlib import Path


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``ACTORML_BENCH_TEST=marker`` (every child
    of a benchmark run a test starts does), to prove none is left behind."""
    found = []
    needle = f"ACTORML_BENCH_TEST={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
