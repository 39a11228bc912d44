"""What a model-parallel problem does in a round, on each side of the job.

A model-parallel job (``[job] kind = "model_parallel"``) runs rounds: the scheduler's
schedule hands each live worker a block, the worker pulls the parameter rows the block
needs from the shards, computes, and pushes each row's change (the shards add it); then
the scheduler reads back what it needs and judges the round. A problem (a ``"problem"``
kind in the registry: `actorml.models.lasso.Lasso`, `actorml.models.mf.MatrixFactorisation`,
`actorml.models.lda.Lda`) is a frozen attrs class whose init fields are its ``[model]``
options plus the sizes its tables take from the data, and which provides:

- ``OPTIONS``: the ``[model]`` keys a user may write;
- ``schedule``: the schedule kind a job uses when ``[schedule]`` names none;
- ``load()``: its data (every role that computes loads the same, deterministically);
- ``sizes(data, workers)``: the fields of the problem the data (and the job's worker
  count) fix, e.g. ``n_features``, or ``blocks`` when the user left it to the job; the
  scheduler puts them in the layout, so every role builds the same problem and the
  shards build the tables without the data;
- ``tables()``: its parameter tables (`TableSpec`, float64 rows);
- ``worker(data)``: a `BlockWorker`, a worker's side of every round;
- ``coordinator(data, settings)``: a `Coordinator`, the scheduler's side
  (``settings``: ``[job]`` and ``[schedule]`` merged, e.g. a stopping tolerance).

Blocks are what the schedule plans (``Schedule.plan``): coordinate ids for Lasso, a
(row block, column block) pair for the rotation schedules of matrix factorisation and
LDA. A block's pushes must not touch a row another block of the same round touches
unless the change is additive (counts, totals): the shards add every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs
import numba
import numpy as np

__all__ = [
    "BlockWorker",
    "Changes",
    "Coordinator",
    "Problem",
    "Repairs",
    "SweepCoordinator",
    "changed_rows",
    "group_pairs",
    "rotation",
]

Changes = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per table, sorted row ids and each row's change (``rows x cols``), added by the shards."""


def rotation(blocks: int, step: int) -> list[tuple[int, int]]:
    """The pairs (row block, column block) of sub-epoch ``step`` of the DSGD / STRADS
    rotation: ``(a, (a + step) % blocks)``. No two share a row block or a column block,
    and the ``blocks`` sub-epochs of a sweep cover every pair once."""
    return [(a, (a + step) % blocks) for a in range(blocks)]


@numba.njit(cache=True, nogil=True)
def _counting_sort(keys: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """A counting sort: positions grouped by key (in position order within a key) and
    the ``groups + 1`` offsets of the groups."""
    offsets = np.zeros(groups + 1, dtype=np.int64)
    for n in range(keys.size):
        offsets[keys[n] + 1] += 1
    for g in range(groups):
        offsets[g + 1] += offsets[g]
    fill = offsets[:-1].copy()
    order = np.empty(keys.size, dtype=np.int64)
    for n in range(keys.size):
        g = keys[n]
        order[fill[g]] = n
        fill[g] += 1
    return order, offsets


def group_pairs(
    rows: np.ndarray, cols: np.ndarray, row_bounds: np.ndarray, col_bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``0..n`` grouped by (row block, column block) of ``(rows[k], cols[k])``,
    under the block ``*_bounds`` (``blocks + 1`` increasing ids each): ``(order,
    offsets)``, where pair ``(a, b)`` holds ``order[offsets[i]:offsets[i + 1]]`` with
    ``i = a * blocks + b``, in position order. One linear pass (a counting sort): MF's
    ratings and LDA's tokens are indexed by it."""
    blocks = int(row_bounds.size - 1)
    a = np.searchsorted(row_bounds, rows, side="right") - 1
    b = np.searchsorted(col_bounds, cols, side="right") - 1
    return _counting_sort((a * blocks + b).astype(np.int64), blocks * blocks)


def changed_rows(name: str, ids: np.ndarray, deltas: np.ndarray) -> Changes:
    """``{name: (ids, deltas)}`` for the rows whose change is not zero (an empty dict
    when none is): a push carries only what moved."""
    moved = np.flatnonzero(np.any(deltas != 0.0, axis=1))
    return {name: (ids[moved], deltas[moved])} if moved.size else {}


class BlockWorker(Protocol):
    """A worker's side of a problem: what a block reads and what it changes."""

    def needs(self, block: np.ndarray) -> dict[str, np.ndarray | None]:
        """Per table, the sorted row ids the block reads (None: the whole table)."""
        ...

    def size(self, block: np.ndarray) -> int:
        """The updates the block makes: coordinates, ratings or tokens (the job's
        ``updates`` count these)."""
        ...

    def cost(self, block: np.ndarray) -> int:
        """About how many multiply-adds the block takes (small ones run inline)."""
        ...

    def compute(self, block: np.ndarray, tables: dict[str, np.ndarray], round: int) -> Changes:
        """The block's changes, from ``tables`` (full-size; the rows `needs` named are
        fresh). Runs in a worker thread for big blocks: must not touch the event loop."""
        ...

    # Optional: ``owns(block) -> dict[str, np.ndarray]``, per table the rows no other
    # block of the same round reads or writes (MF's W and H rows, LDA's nwk rows and
    # its documents' z rows; not LDA's shared nk, nor Lasso's beta). After the round
    # they are known fresh, so the worker's next round does not pull them again.


class Coordinator(Protocol):
    """The scheduler's side of a problem: what the schedule is set up with, what it
    reads back after a round, and when the job is done."""

    def setup(self) -> tuple[int, Any]:
        """``(n_params, dependence)`` for `Schedule.setup`."""
        ...

    def reads(self, round: int, epoch: int) -> tuple[str, ...]:
        """The tables to read back after round ``round`` (``epoch`` sweeps done)."""
        ...

    def after_round(
        self, planned: np.ndarray, tables: dict[str, np.ndarray], round: int, epoch: int
    ) -> tuple[dict[str, float], np.ndarray | None]:
        """Judge a round from the tables `reads` named: ``(metrics, deltas)``, where
        ``metrics`` goes to ``metrics.jsonl`` and ``deltas`` (per planned coordinate, or
        None) to `Schedule.observe`."""
        ...

    def done(self, round: int, epoch: int) -> bool:
        """True once the job has reached its goal (after `after_round`)."""
        ...

    def result(self, tables: dict[str, np.ndarray]) -> dict[str, Any]:
        """The job's result from every table as the shards hold it at the end; an
        ``"error"`` key fails the job."""
        ...


@runtime_checkable
class Repairs(Protocol):
    """A coordinator whose tables must agree with each other (LDA's counts and topics)
    and so must be put right after a worker died mid-round.

    A worker's changes of one round reach each shard in a push of its own; a worker
    killed between two of them leaves some applied and some not. Between rounds, when no
    worker pushes, the scheduler reads `repair_reads` and pushes what `repair` returns,
    as itself (the audit counts these pushes like a worker's).
    """

    def repair_reads(self, block: np.ndarray) -> tuple[str, ...]:
        """The tables (whole) `repair` needs for the lost ``block``."""
        ...

    def repair(self, block: np.ndarray, tables: dict[str, np.ndarray]) -> Changes:
        """The changes that make the tables agree again after ``block`` was lost."""
        ...


class Problem(Protocol):
    """A ``"problem"`` kind (see the module docstring)."""

    schedule: str

    def load(self) -> Any: ...

    def sizes(self, data: Any, workers: int) -> dict[str, int]: ...

    def worker(self, data: Any) -> BlockWorker: ...

    def coordinator(self, data: Any, settings: Mapping[str, Any]) -> Coordinator:
        """``settings``: the job's ``[job]`` and ``[schedule]`` tables, merged."""
        ...


@attrs.define(eq=False)
class SweepCoordinator:
    """A coordinator for problems judged once per sweep of the rotation (matrix
    factorisation, LDA): after a round that completed a sweep it reads `TABLES` back and
    writes `evaluate`'s figures beside the sweep count (under `LABEL`), every ``every``
    sweeps (0: only after the last) and after the last; done after ``sweeps`` sweeps.
    Subclasses give `TABLES`, `LABEL`, `evaluate` and `result`."""

    TABLES: ClassVar[tuple[str, ...]] = ()
    LABEL: ClassVar[str] = "sweep"

    sweeps: int
    blocks: int
    every: int = 1
    evaluated: int = attrs.field(init=False, default=-1)

    def setup(self) -> tuple[int, Any]:
        return self.blocks, None  # the rotation's grid: no dependence to measure

    def reads(self, round: int, epoch: int) -> tuple[str, ...]:
        due = epoch >= self.sweeps or (self.every > 0 and epoch % self.every == 0)
        return self.TABLES if epoch > self.evaluated and due else ()

    def after_round(
        self, planned: np.ndarray, tables: dict[str, np.ndarray], round: int, epoch: int
    ) -> tuple[dict[str, float], np.ndarray | None]:
        if not tables:
            return {}, None
        self.evaluated = epoch
        return {self.LABEL: epoch, **self.evaluate(tables)}, None

    def evaluate(self, tables: dict[str, np.ndarray]) -> dict[str, float]:
        """The figures of the state ``tables`` hold (whole tables, `TABLES` at least)."""
        raise NotImplementedError

    def done(self, round: int, epoch: int) -> bool:
        return epoch >= self.sweeps
