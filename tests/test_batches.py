"""A clock's mini-batches: chosen in order, their rows united, their gradients summed."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from actorml.actors.batches import clock_batches, coalesced_gradient, union_rows
from actorml.models import localize, make_model


class TestBatches:
    def test_a_clock_takes_the_next_k_batches_of_the_epoch(self) -> None:
        """Clock 1 of k = 3 batches of 4 rows is rows 12..23 of the order; the last clock
        of an epoch has what is left."""
        order = np.arange(30)
        assert [b.tolist() for b in clock_batches(order, 1, 4, 3)] == [
            list(range(12, 16)), list(range(16, 20)), list(range(20, 24)),
        ]  # fmt: skip
        assert [b.tolist() for b in clock_batches(order, 2, 4, 3)] == [
            list(range(24, 28)), [28, 29],
        ]  # fmt: skip

    def test_the_coalesced_gradient_is_the_sum_of_the_batches_gradients(self) -> None:
        """Sparse rows read by several batches get the sum of their gradients; the dense
        bias too; the loss is the mean over all rows. Checked against each batch's
        gradient on the full tables."""
        rng = np.random.default_rng(0)
        model = make_model("logreg", 50, 2, l2=1e-3, sparse=True)
        params = model.init_params(0)
        params["w"] = rng.normal(size=params["w"].shape)
        X = sp.random(24, 50, density=0.1, format="csr", random_state=1)
        y = rng.integers(0, 2, size=24)
        parts = [np.arange(0, 8), np.arange(8, 16), np.arange(16, 21)]
        batches = [(*localize(model, X[idx]), y[idx]) for idx in parts]
        rows = union_rows([b[0] for b in batches])
        loss, grads = coalesced_gradient(model, params, batches, rows)
        expected_w = np.zeros_like(params["w"])
        expected_b = np.zeros_like(params["b"])
        losses = []
        for batch_rows, X_local, labels in batches:
            ids = batch_rows["w"]
            one, g = model.gradient({"w": params["w"][ids], "b": params["b"]}, X_local, labels)
            expected_w[ids] += g["w"]
            expected_b += g["b"]
            losses.append(one * labels.size)
        np.testing.assert_allclose(grads["w"], expected_w[rows["w"]])
        np.testing.assert_allclose(grads["b"], expected_b)
        assert loss == sum(losses) / 21
        # Read as a worker reads a segment: only the clock's rows, in their order.
        compact = {"w": params["w"][rows["w"]], "b": params["b"]}
        loss_c, grads_c = coalesced_gradient(model, compact, batches, rows, compact=True)
        np.testing.assert_allclose(grads_c["w"], expected_w[rows["w"]])
        np.testing.assert_allclose(grads_c["b"], expected_b)
        assert loss_c == loss

    def test_the_rows_of_a_clock_are_the_sorted_union_of_its_batches(self) -> None:
        rng = np.random.default_rng(2)
        parts = [np.unique(rng.integers(0, 1000, size=n)) for n in (300, 1, 0, 500)]
        rows = union_rows([{"w": p, "b": None} for p in parts])
        np.testing.assert_array_equal(rows["w"], np.unique(np.concatenate(parts)))
        assert rows["b"] is None
