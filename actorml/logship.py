"""A node on another host sends its log lines to the launcher too, batched and bounded.

The node keeps its own log on its host; every line also goes into a bounded queue that
a task empties into `LogLines` batches for the launcher, which appends them to
``logs/NODE.jsonl`` in its run directory. When the launcher cannot keep up (or cannot
be reached) the queue fills and the oldest lines are dropped, counted, and the count is
sent with the next batch: logging never blocks a node or grows without bound.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import attrs
import trio

from .messages import LAUNCHER, LogLines
from .node import Node

__all__ = ["LogShipper", "append_lines"]


@attrs.define(eq=False)
class LogShipper:
    """The queue of lines waiting to go to the launcher.

    Args:
        capacity: the most lines kept; beyond it the oldest are dropped (and counted).
        batch: the most lines in one `LogLines`.
        interval_s: how often a batch leaves.
    """

    capacity: int = 10_000
    batch: int = 500
    interval_s: float = 1.0
    dropped: int = 0
    _lines: collections.deque[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._lines = collections.deque()

    def tap(self, line: str) -> None:
        """Queue one log line (the logger's tap: never blocks, never raises)."""
        if len(self._lines) >= self.capacity:
            self._lines.popleft()
            self.dropped += 1
        self._lines.append(line)

    def take(self, node: str, incarnation: int) -> LogLines | None:
        """The next batch of node ``node``'s lines, or None if nothing waits."""
        if not self._lines and not self.dropped:
            return None
        lines = [self._lines.popleft() for _ in range(min(self.batch, len(self._lines)))]
        dropped, self.dropped = self.dropped, 0
        return LogLines(node, incarnation, lines, dropped)

    async def run(self, node: Node) -> None:
        """Send a batch every ``interval_s`` until cancelled (a send waits at most the
        node's send timeout: a launcher out of reach costs lines, not a hang)."""
        while True:
            await trio.sleep(self.interval_s)
            await self.send(node)

    async def send(self, node: Node) -> None:
        """Send what waits now, in batches."""
        while (batch := self.take(node.name, node.incarnation)) is not None:
            await node.tell(LAUNCHER, batch)
            if len(batch.lines) < self.batch:
                return


def append_lines(path: Path, batch: LogLines) -> None:
    """Append a batch to a node's log file in the launcher's run directory."""
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(line if line.endswith("\n") else line + "\n" for line in batch.lines)
        if batch.dropped:
            note = {"event": "log_lines_dropped", "node": batch.node, "dropped": batch.dropped}
            out.write(json.dumps({**note, "level": "warning"}) + "\n")
