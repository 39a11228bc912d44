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

import numpy as np

from actorml.models.base import Model

__all__ = ["Batch", "clock_batches", "coalesced_gradient", "union_rows"]

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
            out[name] = np.unique(np.concatenate(parts))  # type: ignore[arg-type]
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
    total_loss, total_rows = 0.0, 0
    summed: dict[str, np.ndarray] = {}
    for batch_rows, X_local, y in batches:
        params = {name: _rows_of(values[name], ids, rows[name], compact)
                  for name, ids in batch_rows.items()}  # fmt: skip
        loss, grads = model.gradient(params, X_local, y)
        total_loss += loss * y.shape[0]
        total_rows += y.shape[0]
        if len(batches) == 1:
            return loss, grads
        for name, grad in grads.items():
            ids, union = batch_rows[name], rows[name]
            if name not in summed:
                width = grad.shape[1]
                summed[name] = np.zeros((values[name].shape[0] if union is None else union.size,
                                         width))  # fmt: skip
            if ids is None or union is None:
                summed[name] += grad
            else:
                summed[name][np.searchsorted(union, ids)] += grad  # ids: distinct
    return total_loss / max(total_rows, 1), summed


def _rows_of(
    table: np.ndarray, ids: np.ndarray | None, union: np.ndarray | None, compact: bool
) -> np.ndarray:
    """A batch's rows ``ids`` of a table held whole, or (``compact``) as rows ``union``."""
    if ids is None:
        return table
    if not compact:
        return table[ids]
    return table if ids is union else table[np.searchsorted(union, ids)]  # type: ignore[arg-type]
