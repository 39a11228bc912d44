"""Schedules S(t): which coordinates the workers of a model-parallel job update in round t.

A schedule is a class in the registry's ``"schedule"`` group (``[schedule] kind =
"priority"``) or named by dotted path (``kind = "mypkg.mod:MySchedule"``); its attrs
init fields are its options, checked by their validators. The scheduler calls:

- `Schedule.setup` once, with the number of coordinates and a way to measure how
  dependent two coordinates are (for Lasso, ``|x_j . x_k| / n`` on standardised columns);
- `Schedule.plan` every round, for one block of coordinate ids per live worker;
- `Schedule.observe` after the round, with the change of every coordinate the round
  planned, as the shards now hold it;
- `Schedule.requeue` with the block of a worker that died during the round: its
  coordinates must be planned again;
- ``sweeps`` (optional, 0 when absent): how many whole passes over the parameters it
  has planned (a problem's coordinator may stop after a number of them), as
  `sweeps_of` reads it.

Coordinate schedules (``priority``, ``random``) plan coordinate ids; the ``rotation``
schedule plans (row block, column block) pairs for problems whose data is a matrix of
blocks (matrix factorisation, LDA).

See ``docs/model-parallel.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
import numpy as np

from actorml.models.rounds import rotation
from actorml.topology.fields import boolean, checked, integer, number_in

__all__ = [
    "Dependence",
    "PrioritySchedule",
    "RandomSchedule",
    "RotationSchedule",
    "Schedule",
    "split_blocks",
    "sweeps_of",
]

Dependence = Callable[[np.ndarray], np.ndarray]
"""``dependence(ids)``: the matrix of ``|x_j . x_k| / n`` between the coordinates ``ids``."""


@runtime_checkable
class Schedule(Protocol):
    """What the model-parallel scheduler asks of a schedule."""

    def setup(self, n_params: int, dependence: Dependence, seed: int) -> None:
        """Called once, before the first round."""
        ...

    def plan(self, workers: int) -> list[np.ndarray]:
        """One sorted int64 block per worker (``workers`` of them; a block may be empty)."""
        ...

    def observe(self, coords: np.ndarray, deltas: np.ndarray) -> None:
        """The coordinates the round planned and how much each changed."""
        ...

    def requeue(self, coords: np.ndarray) -> None:
        """A worker died with these coordinates: plan them again."""
        ...


def sweeps_of(schedule: Schedule) -> int:
    """The schedule's ``sweeps`` (a user's schedule may not count them: 0)."""
    return int(getattr(schedule, "sweeps", 0))


def split_blocks(chosen: np.ndarray, workers: int) -> list[np.ndarray]:
    """Deal ``chosen`` round-robin into ``workers`` sorted blocks."""
    return [np.sort(chosen[w::workers]).astype(np.int64) for w in range(workers)]


def _first(pending: list[int], chosen: np.ndarray) -> np.ndarray:
    """Requeued coordinates first, then the newly chosen ones, without repeats."""
    if not pending:
        return chosen
    front = np.array(pending, dtype=np.int64)
    return np.concatenate([front, chosen[~np.isin(chosen, front)]])


@attrs.define(eq=False)
class RandomSchedule:
    """Shotgun: ``round_size`` coordinates drawn uniformly, no dependency check.

    Correlated coordinates updated together overshoot: the baseline that STRADS shows
    oscillating or diverging on correlated designs.
    """

    round_size: int = attrs.field(default=32, validator=checked(integer(1, 1_000_000)))
    _n: int = attrs.field(init=False, default=0)
    _rng: np.random.Generator = attrs.field(init=False, factory=np.random.default_rng)
    _pending: list[int] = attrs.field(init=False, factory=list)
    _planned: int = attrs.field(init=False, default=0)

    def setup(self, n_params: int, dependence: Dependence, seed: int) -> None:
        self._n, self._rng = n_params, np.random.default_rng(seed)

    def plan(self, workers: int) -> list[np.ndarray]:
        size = min(self.round_size, self._n)
        chosen = _first(self._pending, self._rng.choice(self._n, size=size, replace=False))
        self._pending.clear()
        self._planned += size
        return split_blocks(chosen[:size], workers)

    @property
    def sweeps(self) -> int:
        """Coordinates planned, in multiples of the coordinate count."""
        return self._planned // max(self._n, 1)

    def observe(self, coords: np.ndarray, deltas: np.ndarray) -> None:
        pass

    def requeue(self, coords: np.ndarray) -> None:
        self._pending.extend(int(c) for c in coords)


@attrs.define(eq=False)
class PrioritySchedule:
    """STRADS' Lasso schedule: sample by recent change, then drop dependent candidates.

    Each round draws ``oversample * round_size`` candidates without replacement with
    probability proportional to ``(delta beta_j)^2 + eta`` (a coordinate never updated
    has priority 1, so the first rounds cover every coordinate), then keeps candidates
    in the order drawn as long as each is at most ``threshold`` dependent on every one
    kept, up to ``round_size``.

    Args:
        round_size: coordinates per round (STRADS' default 32).
        threshold: the largest ``|x_j . x_k| / n`` two coordinates of a round may have
            (STRADS' default 0.1).
        eta: the floor of every priority, so a coordinate that stopped moving is still
            drawn now and then.
        oversample: candidates drawn per coordinate kept.
    """

    round_size: int = attrs.field(default=32, validator=checked(integer(1, 1_000_000)))
    threshold: float = attrs.field(default=0.1, validator=checked(number_in(0.0, 1.0)))
    eta: float = attrs.field(default=1e-6, validator=checked(number_in(1e-300)))
    oversample: int = attrs.field(default=4, validator=checked(integer(1, 1000)))
    _priority: np.ndarray = attrs.field(init=False, factory=lambda: np.zeros(0))
    _dependence: Dependence | None = attrs.field(init=False, default=None)
    _rng: np.random.Generator = attrs.field(init=False, factory=np.random.default_rng)
    _pending: list[int] = attrs.field(init=False, factory=list)
    _planned: int = attrs.field(init=False, default=0)

    def setup(self, n_params: int, dependence: Dependence, seed: int) -> None:
        self._priority = np.ones(n_params)
        self._dependence, self._rng = dependence, np.random.default_rng(seed)

    def plan(self, workers: int) -> list[np.ndarray]:
        assert self._dependence is not None
        n = self._priority.size
        size = min(n, self.oversample * self.round_size)
        weights = self._priority / self._priority.sum()
        drawn = self._rng.choice(n, size=size, replace=False, p=weights)
        candidates = _first(self._pending, drawn)
        self._pending.clear()
        gram = self._dependence(candidates)
        kept: list[int] = []
        for i in range(candidates.size):
            if all(gram[i, k] <= self.threshold for k in kept):
                kept.append(i)
                if len(kept) == self.round_size:
                    break
        self._planned += len(kept)
        return split_blocks(candidates[kept], workers)

    @property
    def sweeps(self) -> int:
        """Coordinates planned, in multiples of the coordinate count."""
        return self._planned // max(self._priority.size, 1)

    def observe(self, coords: np.ndarray, deltas: np.ndarray) -> None:
        self._priority[coords] = deltas * deltas + self.eta

    def requeue(self, coords: np.ndarray) -> None:
        self._pending.extend(int(c) for c in coords)


@attrs.define(eq=False)
class RotationSchedule:
    """DSGD's and STRADS' static rotation over a ``B x B`` grid of blocks.

    Rows (users, documents) and columns (items, words) are cut into ``B`` blocks each
    (``B = n_params``, the problem's ``blocks``). Sub-epoch ``s`` of a sweep holds the
    pairs ``(a, (a + s) % B)``: no two share a row block or a column block, so the
    workers of a round never touch the same parameter row. A round hands out up to one
    pair per live worker from the current sub-epoch, and moves to the next sub-epoch once
    every pair of this one is done; with fewer workers than blocks a sub-epoch takes
    several rounds. A requeued pair is handed out again within its sub-epoch. The order
    of the sub-epochs is drawn again every sweep (``shuffle``), as DSGD does.

    Blocks are int64 triples ``[a, b, sweep]``: the pair and the sweep it belongs to
    (a problem may vary its step size or seed by sweep).
    """

    shuffle: bool = attrs.field(default=True, validator=checked(boolean))
    _blocks: int = attrs.field(init=False, default=1)
    _rng: np.random.Generator = attrs.field(init=False, factory=np.random.default_rng)
    _order: list[int] = attrs.field(init=False, factory=list)
    _todo: list[int] = attrs.field(init=False, factory=list)
    _sub: int = attrs.field(init=False, default=0)
    _started: int = attrs.field(init=False, default=0)

    def setup(self, n_params: int, dependence: Dependence, seed: int) -> None:
        self._blocks, self._rng = max(1, n_params), np.random.default_rng(seed)

    def plan(self, workers: int) -> list[np.ndarray]:
        if not self._todo:  # the sub-epoch is done: the next one (a new sweep's first)
            if not self._order:
                order = np.arange(self._blocks)
                if self.shuffle:
                    self._rng.shuffle(order)
                self._order = [int(s) for s in order]
            self._sub = self._order.pop(0)
            self._todo = list(range(self._blocks))  # its row blocks
            self._started += 1
        given, self._todo = self._todo[:workers], self._todo[workers:]
        sweep, blocks = (self._started - 1) // self._blocks, self._blocks
        column = dict(rotation(blocks, self._sub))
        pairs = [np.array([a, column[a], sweep], dtype=np.int64) for a in given]
        return pairs + [np.zeros(0, dtype=np.int64)] * (workers - len(pairs))

    def observe(self, coords: np.ndarray, deltas: np.ndarray) -> None:
        pass

    def requeue(self, coords: np.ndarray) -> None:
        if coords.size:  # rounds do not overlap: it is still this pair's sub-epoch
            self._todo.insert(0, int(coords[0]))

    @property
    def sweeps(self) -> int:
        """Whole sweeps done: every pair of the grid handed out and none requeued."""
        done = self._started - (1 if self._todo else 0)
        return done // self._blocks
