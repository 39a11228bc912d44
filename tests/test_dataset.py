"""The Dataset every source makes, the steps sources share, and worker partitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer

from actorml.models import Dataset, load_dataset, partition
from actorml.models.dataset import (
    SPLIT,
    encode_labels,
    finish,
    split,
    standardize,
    take_options,
)


def _dataset(**changes: object) -> Dataset:
    fields: dict[str, object] = {
        "name": "t",
        "X_train": np.zeros((4, 2)),
        "y_train": np.array([0, 1, 0, 1]),
        "X_test": np.zeros((2, 2)),
        "y_test": np.array([1, 0]),
        "n_features": 2,
        "n_classes": 2,
    }
    return Dataset(**{**fields, **changes})  # type: ignore[arg-type]


class TestDataset:
    def test_to_sparse(self):
        """to_sparse keeps the values and makes CSR features."""
        data = load_dataset("sklearn:iris")
        sparse = data.to_sparse()
        assert sp.issparse(sparse.X_train)
        np.testing.assert_array_equal(sparse.X_train.toarray(), data.X_train)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"X_test": np.zeros((2, 3))}, r"^X_test has 3 columns, expected 2$"),
            ({"y_train": np.array([0, 1, 0, 1], dtype=np.int32)}, r"^y_train must be int64 "),
            ({"y_train": np.array([0, 1, 0])}, r"^y_train must be int64 of shape \(4,\)$"),
            ({"y_test": np.array([1, 2])}, r"^y_test must lie in \[0, 2\)$"),
        ],
    )
    def test_rejects_inconsistent_parts(self, changes, message):
        """Features, labels and class count that disagree are named at construction."""
        with pytest.raises(ValueError, match=message):
            _dataset(**changes)


class TestSteps:
    def test_take_options_fills_in_defaults(self):
        """Options override the defaults; the rest keep their default values."""
        assert take_options("s", {"seed": 3}, {**SPLIT, "standardize": True}) == {
            "test_size": 0.25,
            "seed": 3,
            "standardize": True,
        }

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"sed": 1}, r"^unknown option 'sed' for 's' \(expected one of: seed, test_size\)$"),
            ({"seed": -1}, r"^seed must be an integer >= 0, got -1$"),
            ({"seed": 1.5}, r"^seed must be an integer >= 0, got 1\.5$"),
            ({"test_size": 0.0}, r"^test_size must lie in \(0, 1\), got 0\.0$"),
        ],
    )
    def test_take_options_rejects(self, options, message):
        """An unknown option or a value out of range is named with the choices or the value."""
        with pytest.raises(ValueError, match=message):
            take_options("s", options, SPLIT)

    def test_encode_labels_shares_classes_across_parts(self):
        """Labels of train and test map to one set of ids, in sorted value order."""
        (train, test), classes = encode_labels(np.array(["b", "c"]), np.array(["a", "c"]))
        assert classes.tolist() == ["a", "b", "c"]
        assert train.tolist() == [1, 2] and test.tolist() == [0, 2]
        assert train.dtype == np.int64

    def test_split_is_stratified_and_seeded(self):
        """The split keeps class shares and depends only on the seed."""
        X = np.arange(200.0).reshape(100, 2)
        y = np.repeat([0, 1], [80, 20])
        _, _, y_train, y_test = split(X, y, 0.25, seed=1)
        assert np.bincount(y_test).tolist() == [20, 5]
        again = split(X, y, 0.25, seed=1)
        np.testing.assert_array_equal(again[2], y_train)

    def test_standardize_uses_training_statistics(self):
        """Both parts are scaled with the training rows' mean and std; constants stay 0."""
        X_train = np.array([[1.0, 5.0], [3.0, 5.0]])
        X_test = np.array([[5.0, 5.0]])
        train, test = standardize(X_train, X_test)
        np.testing.assert_allclose(train, [[-1.0, 0.0], [1.0, 0.0]])
        np.testing.assert_allclose(test, [[3.0, 0.0]])

    def test_finish_makes_a_dataset(self):
        """finish encodes, splits and (if asked) standardises a dense (X, y)."""
        X = np.arange(80.0).reshape(40, 2)
        y = np.where(np.arange(40) % 2, 10, 20)
        data = finish("mine:x", X, y, {**SPLIT, "standardize": True}, {"note": 1})
        assert (data.name, data.n_features, data.n_classes) == ("mine:x", 2, 2)
        assert data.meta["classes"].tolist() == [10, 20] and data.meta["note"] == 1
        assert data.y_train.size + data.y_test.size == 40
        np.testing.assert_allclose(data.X_train.mean(axis=0), 0.0, atol=1e-12)


class TestPartition:
    @given(n_rows=st.integers(0, 500), n_parts=st.integers(1, 40))
    def test_covers_every_row_once(self, n_rows, n_parts):
        """The parts cover all rows exactly once, in order, sizes within one row."""
        parts = [partition(n_rows, n_parts, p) for p in range(n_parts)]
        covered = np.concatenate([np.arange(n_rows)[s] for s in parts])
        np.testing.assert_array_equal(covered, np.arange(n_rows))
        sizes = [s.stop - s.start for s in parts]
        assert max(sizes) - min(sizes) <= 1

    def test_rejects_bad_parts(self):
        """A part outside [0, n_parts) is an error."""
        with pytest.raises(ValueError, match=r"^part must lie in \[0, 3\), got 3$"):
            partition(10, 3, 3)
        with pytest.raises(ValueError, match=r"^n_parts must be >= 1, got 0$"):
            partition(10, 0, 0)

    def test_dataset_partition(self):
        """Dataset.partition hands each worker its block of the training rows."""
        data = load_dataset("sklearn:breast_cancer")
        X, y = data.partition(4, 3)
        assert y.size == data.y_train.size // 4
        np.testing.assert_array_equal(X, data.X_train[-y.size :])
        sizes = [data.partition(4, p)[1].size for p in range(4)]
        assert sum(sizes) == data.y_train.size == load_breast_cancer().target.size - 143
