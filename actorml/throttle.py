"""At most one log line per key per interval, counting the lines held back.

A hostile peer can send thousands of bad frames a second; one warning each would fill
the disk. A :class:`Throttle` lets the first event of a key through, holds back the
rest until ``interval_s`` has passed, and tells the next line it lets through how many
it held back, so nothing goes unreported and the log grows O(1) per key per interval.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = ["Throttle"]


@attrs.define(eq=False)
class Throttle:
    """Decides which events of a flood get a log line.

    Args:
        interval_s: the least time between two lines of one key.
        clock: the time in seconds (``trio.current_time`` in a node, so tests can
            use trio's mock clock).
    """

    interval_s: float
    clock: Callable[[], float]
    _last: dict[str, float] = attrs.field(factory=dict, init=False)
    _held: dict[str, int] = attrs.field(factory=dict, init=False)

    def admit(self, key: str) -> int | None:
        """Record one event of ``key``.

        Returns:
            None if its line should be held back, or else the number of events of
            ``key`` held back since its last line (to log along with this one).
        """
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
