"""A clock's mini-batches: which rows they are, which table rows they read, and the one
update they push.

A clock is the app's unit of work (Petuum Bösen): ``[job] batches_per_clock = k``
mini-batches of ``batch_size`` rows. Each mini-batch's gradient is taken at the
parameters the worker read at the clock's start, and the k gradients are *summed*, row
by row, into one update per table: one push per shard per clock, whatever k. Updates
are additive, so the sum is the coalesced update; what the shard's optimiser then makes
of it is said in ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np

from actorml.models.base import Model

__all__ = ["Batch", "clock_batches", "coalesced_gradient", "positions", "union_rows"]

Batch = tuple[dict[str, np.ndarray | None], Any, np.ndarray]
"""One localised mini-batch: (rows per table, batch with renumbered columns, labels)."""


def clock_batches(order: np.ndarray, step: int, batch: int, k: int) -> list[np.ndarray]:
    """The row indices of the mini-batches of clock ``step`` of an epoch in ``order``:
    up to ``k`` slices of ``batch`` rows (the last clock of an epoch may have fewer;
    a part too small for even one gets its first batch again)."""
    start = step * k * batch
    slices = [order[start + i * batch : start + (i + 1) * batch] for i in range(k)]
    slices = [s for s in slices if s.size]
    return slices or [order[:batch]]


def union_rows(batches: Sequence[Mapping[str, np.ndarray | None]]) -> dict[str, np.ndarray | None]:
    """Per table, the sorted rows any of the batches reads (None: the whole table)."""
    if len(batches) == 1:
        return dict(batches[0])
    out: dict[str, np.ndarray | None] = {}
    for name in batches[0]:
        parts = [rows[name] for rows in batches]
        if any(p is None for p in parts):
            out[name] = None
        else:
            out[name] = _sorted_distinct(np.concatenate(parts))  # type: ignore[arg-type]
    return out


def _sorted_distinct(ids: np.ndarray) -> np.ndarray:
    """The distinct values of ``ids``, sorted: one sort and one pass (numpy 2's
    ``np.unique`` hashes instead, 20 times slower on a clock's 40k row ids)."""
    ids = np.sort(ids)
    if ids.size < 2:
        return ids
    keep = np.empty(ids.size, dtype=bool)
    keep[0] = True
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]


@numba.njit(nogil=True, cache=True)
def positions(ids: np.ndarray, union: np.ndarray) -> np.ndarray:  # pragma: no cover (numba)
    """The position in sorted ``union`` of each of sorted ``ids`` (all present): one
    merge pass, O(len(ids) + len(union)), where a binary search per id costs a log."""
    out = np.empty(ids.size, dtype=np.int64)
    j = 0
    for i in range(ids.size):
        while j < union.size and union[j] < ids[i]:
            j += 1
        if j == union.size or union[j] != ids[i]:
            raise ValueError("a batch reads a row missing from the clock's rows")
        out[i] = j
    return out


def coalesced_gradient(
    model: Model,
    values: Mapping[str, np.ndarray],
    batches: Sequence[Batch],
    rows: Mapping[str, np.ndarray | None],
    compact: bool = False,
) -> tuple[float, dict[str, np.ndarray]]:
    """The mean loss over the batches' rows and the sum of their gradients, aligned
    with ``rows`` (their union), each taken at the tables ``values``: full tables, or
    with ``compact`` only the rows of ``rows``, in its order.

    Work is proportional to the rows the batches read (scatter-adds into the union).
    """
    if len(batches) == 1:  # its rows are the clock's rows
        batch_rows, X_local, y = batches[0]
        params = {name: _rows_of(values[name], ids, None, compact)
                  for name, ids in batch_rows.items()}  # fmt: skip
        return model.gradient(params, X_local, y)
    total_loss, total_rows = 0.0, 0
    summed: dict[str, np.ndarray] = {}
    for batch_rows, X_local, y in batches:
        # Where the batch's rows sit among the clock's (None: the whole table).
        where = {name: None if ids is None or rows[name] is None
                 else positions(ids, rows[name])
                 for name, ids in batch_rows.items()}  # fmt: skip
        params = {name: _rows_of(values[name], ids, where[name], compact)
                  for name, ids in batch_rows.items()}  # fmt: skip
        loss, grads = model.gradient(params, X_local, y)
        total_loss += loss * y.shape[0]
        total_rows += y.shape[0]
        for name, grad in grads.items():
            union, at = rows[name], where[name]
            if name not in summed:
                width = grad.shape[1]
                summed[name] = np.zeros((values[name].shape[0] if union is None else union.size,
                                         width))  # fmt: skip
            if at is None:
                summed[name] += grad
            else:
                summed[name][at] += grad  # a batch's ids are distinct
    return total_loss / max(total_rows, 1), summed


def _rows_of(
    table: np.ndarray, ids: np.ndarray | None, at: np.ndarray | None, compact: bool
) -> np.ndarray:
    """A batch's rows ``ids`` of a table held whole, or (``compact``) held as the
    clock's rows, where the batch's sit at positions ``at`` (None: all of them)."""
    if ids is None:
        return table
    if not compact:
        return table[ids]
    return table if at is None else table[at]
