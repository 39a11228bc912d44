"""The fast readers agree with the reference readers: scikit-learn's svmlight loader,
numpy's npz loader, and the split and shuffle the sources made before."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_breast_cancer, load_svmlight_file

from actorml.models import load_dataset
from actorml.models.dataset import encode_labels, split
from actorml.models.fastload import gather_rows, npz_arrays, parse_libsvm


def _libsvm_file(tmp_path, zero_based=False):
    """Real data (breast cancer, a third of its values zeroed) as an svmlight file."""
    bunch = load_breast_cancer()
    X = bunch.data * (np.random.default_rng(0).random(bunch.data.shape) > 0.3)
    y = np.where(bunch.target == 1, 1, -1)
    path = tmp_path / "bc.svm"
    dump_svmlight_file(sp.csr_matrix(X), y, str(path), zero_based=zero_based)
    return path


class TestLibsvm:
    @pytest.mark.parametrize("zero_based", [False, True])
    def test_parses_what_scikit_learn_reads(self, tmp_path, zero_based):
        path = _libsvm_file(tmp_path, zero_based)
        X_ref, y_ref = load_svmlight_file(str(path))
        labels, indptr, indices, values = parse_libsvm(path)
        shift = 0 if indices.min() == 0 else 1
        X = sp.csr_matrix((values, indices - shift, indptr), shape=X_ref.shape)
        np.testing.assert_array_equal(labels, y_ref)
        np.testing.assert_array_equal(X.indptr, X_ref.indptr)
        np.testing.assert_array_equal(X.indices, X_ref.indices)
        np.testing.assert_allclose(X.data, X_ref.data, rtol=1e-15, atol=0)

    def test_the_source_makes_the_same_split_as_before(self, tmp_path):
        """The libsvm source equals scikit-learn's reader followed by the shared split
        and the seeded shuffle of the training rows."""
        path = _libsvm_file(tmp_path)
        data = load_dataset(f"libsvm:{path}", seed=3)
        X_ref, y_ref = load_svmlight_file(str(path))
        (labels,), _ = encode_labels(y_ref)
        X_train, X_test, y_train, y_test = split(X_ref, labels, 0.25, 3)
        order = np.random.default_rng(3).permutation(y_train.size)
        np.testing.assert_array_equal(data.y_train, y_train[order])
        np.testing.assert_array_equal(data.y_test, y_test)
        assert abs(data.X_train - X_train[order]).max() <= 1e-12
        assert abs(data.X_test - X_test).max() <= 1e-12

    def test_qid_comments_blank_lines_and_exponents(self, tmp_path):
        path = tmp_path / "odd.svm"
        path.write_bytes(
            b"# a comment line\n"
            b"+1 qid:3 1:0.5 3:-2e-3  # trailing comment\n"
            b"\n"
            b"-1\t2:1E+2 4:.25\r\n"
            b"2 1:7\n"
        )
        labels, indptr, indices, values = parse_libsvm(path)
        np.testing.assert_array_equal(labels, [1, -1, 2])
        np.testing.assert_array_equal(indptr, [0, 2, 4, 5])
        np.testing.assert_array_equal(indices, [1, 3, 2, 4, 1])
        np.testing.assert_array_equal(values, [0.5, -2e-3, 100.0, 0.25, 7.0])

    @pytest.mark.parametrize(
        ("text", "line"),
        [(b"1 1:0.5\n1 x:2\n", 2), (b"1 1:0.5 2:\n", 1), (b"a 1:1\n", 1), (b"1 1:2:3\n", 1)],
    )
    def test_a_malformed_line_is_named(self, tmp_path, text, line):
        path = tmp_path / "bad.svm"
        path.write_bytes(text)
        with pytest.raises(ValueError, match=rf"line {line}: expected 'label \[qid:n\]"):
            parse_libsvm(path)

    def test_an_index_beyond_n_features_is_refused(self, tmp_path):
        path = _libsvm_file(tmp_path)
        with pytest.raises(ValueError, match=r"n_features is 10 but .* holds feature index 30"):
            load_dataset(f"libsvm:{path}", n_features=10)


class TestNpz:
    def test_members_are_mapped_and_equal(self, tmp_path):
        rng = np.random.default_rng(0)
        arrays = {"X": rng.normal(size=(40, 3)).astype(np.float32), "y": np.arange(40)}
        np.savez(tmp_path / "s.npz", **arrays)
        np.savez_compressed(tmp_path / "c.npz", **arrays)
        for name in ("s.npz", "c.npz"):
            got = npz_arrays(tmp_path / name)
            for key, want in arrays.items():
                assert got[key].dtype == want.dtype
                np.testing.assert_array_equal(got[key], want)
        stored = npz_arrays(tmp_path / "s.npz")["X"]
        assert not stored.flags.writeable  # a read-only map of the file, not a copy

    def test_gather_rows_widens_shuffles_and_counts_non_finite(self):
        X = np.arange(12, dtype=np.float32).reshape(4, 3)
        X[2, 1] = np.nan
        out, bad = gather_rows(X, np.array([3, 0, 2]))
        assert out.dtype == np.float64 and out.flags.c_contiguous and bad == 1
        np.testing.assert_array_equal(out[[0, 1]], X[[3, 0]].astype(np.float64))

    def test_the_source_refuses_non_finite_values(self, tmp_path):
        X = np.ones((10, 2), dtype=np.float32)
        X[4, 0] = np.inf
        y = np.arange(10) % 2
        np.savez(tmp_path / "d.npz", X_train=X, y_train=y, X_test=X[:4], y_test=y[:4])
        with pytest.raises(ValueError, match="X_train holds 1 non-finite values"):
            load_dataset(f"npz:{tmp_path / 'd.npz'}")
