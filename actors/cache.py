"""A worker's row cache: every row stamped with the clock it is fresh to.

A row stamped ``k`` holds every update stamped below ``k`` (it was read after the
slowest worker reached ``k``). Each row also remembers the shard ``version`` it came
from, so an older answer arriving late (an ESSP push overtaken by a push
acknowledgement) never overwrites a newer one, and which ``applied`` vector it came
with, so a read can report exactly which updates it contained.
"""

from __future__ import annotations

import attrs
import numpy as np

from actorml.models.base import TableSpec

from .messages import Rows

__all__ = ["RowCache", "meet"]


@attrs.define(eq=False)
class RowCache:
    """Full-size copies of the tables a worker reads, with per-row bookkeeping."""

    values: dict[str, np.ndarray]
    stamp: dict[str, np.ndarray]
    version: dict[str, np.ndarray]
    source: dict[str, np.ndarray]
    vectors: dict[int, dict[str, int]] = attrs.field(factory=dict)
    _next: int = 0
    _filled: bool = False
    """Whether any row was ever stored (a worker that reads only shared segments never
    fills its cache, and expiring rows never read costs nothing)."""

    @classmethod
    def empty(cls, specs: tuple[TableSpec, ...]) -> RowCache:
        return cls(
            values={s.name: np.zeros((s.rows, s.cols)) for s in specs},
            stamp={s.name: np.full(s.rows, -1, dtype=np.int64) for s in specs},
            version={s.name: np.full(s.rows, -1, dtype=np.int64) for s in specs},
            source={s.name: np.full(s.rows, -1, dtype=np.int64) for s in specs},
        )

    def stale(self, table: str, rows: np.ndarray | None, fresh_from: int | None) -> np.ndarray:
        """A boolean mask over ``rows`` (None: all rows) of the rows that must be pulled."""
        stamp = self.stamp[table] if rows is None else self.stamp[table][rows]
        # A row never read (or expired: stamp -1) is always pulled, also in the first
        # clocks, where the rule itself would accept any copy (fresh_from < 0).
        return stamp < (0 if fresh_from is None else max(fresh_from, 0))

    def store(self, answer: Rows, stamp: int) -> None:
        """Keep what ``answer`` brings, unless a row already holds a newer version."""
        vid = self._next
        self._next += 1
        self._filled = True
        self.vectors[vid] = dict(answer.applied)
        for name, ids, values in zip(answer.tables, answer.rows, answer.values, strict=True):
            newer = self.version[name][ids] <= answer.version
            if not newer.all():
                ids, values = ids[newer], values[newer]
            self.values[name][ids] = values
            self.stamp[name][ids] = np.maximum(self.stamp[name][ids], stamp)
            self.version[name][ids] = answer.version
            self.source[name][ids] = vid

    def expire(self, table: str, rows: np.ndarray | None) -> None:
        """Mark ``rows`` (None: all) as never read: the next read of any of them pulls
        it (a push changed them and they were not read back)."""
        if not self._filled:
            return  # every row still reads as never read
        if rows is None:
            self.stamp[table][:] = -1
        else:
            self.stamp[table][rows] = -1

    def applied(self, rows: dict[str, np.ndarray | None]) -> dict[str, int]:
        """Per worker, the highest clock whose updates every row in ``rows`` contains."""
        ids: set[int] = set()
        for name, ids_needed in rows.items():
            src = self.source[name] if ids_needed is None else self.source[name][ids_needed]
            ids.update(_distinct(src))
        return meet([self.vectors[i] for i in ids if i >= 0])

    def prune(self) -> None:
        """Forget applied vectors no row refers to any more."""
        live = np.zeros(self._next, dtype=bool)  # a mark per vector: no sort of the table
        for src in self.source.values():
            live[src[src >= 0]] = True
        for vid in [v for v in self.vectors if not live[v]]:
            del self.vectors[vid]


def meet(vectors: list[dict[str, int]]) -> dict[str, int]:
    """Per worker, the highest clock whose updates all of ``vectors`` (``applied``
    vectors of answers) contain: a worker missing from one counts as -1 there."""
    if not vectors:
        return {}
    workers = set().union(*vectors)
    return {w: min(v.get(w, -1) for v in vectors) for w in workers}


def _distinct(src: np.ndarray) -> list[int]:
    """The distinct values of ``src`` (answer ids: few, and close together since they
    are numbered in order): a count over their range, not a sort of ``src``."""
    if not src.size:
        return []
    low, high = int(src.min()), int(src.max())
    if high - low > 4 * src.size:  # far apart: a sort is cheaper than the range
        return np.unique(src).tolist()  # type: ignore[no-any-return]
    return (np.flatnonzero(np.bincount(src - low, minlength=high - low + 1)) + low).tolist()  # type: ignore[no-any-return]
