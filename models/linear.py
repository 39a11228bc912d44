"""Linear scores ``X @ W + b`` for dense and CSR batches, and the linear model skeleton.

The CSR loops are numba kernels (``nogil``, so a worker can run them in a thread while
its actor keeps answering heartbeats); dense products go to BLAS through numpy.
Logistic regression, the linear SVM and softmax regression differ only in their loss,
which each supplies as one fused numba kernel returning the mean loss and its gradient
with respect to the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import attrs
import numba
import numpy as np

from .base import Features, TableSpec, as_features, feature_rows, init_tables, is_sparse

EVAL_CHUNK = 65536
"""Rows scored at a time by ``evaluate`` (bounds the memory of the score matrix)."""


@numba.njit(nogil=True, cache=True)
def _csr_matmul(indptr, indices, data, W, out):
    """``out += X @ W`` for CSR ``X``."""
    k = W.shape[1]
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(k):
                out[i, c] += v * W[j, c]


@numba.njit(nogil=True, cache=True)
def _csr_t_matmul(indptr, indices, data, D, out):
    """``out += X.T @ D`` for CSR ``X``."""
    k = D.shape[1]
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(k):
                out[j, c] += v * D[i, c]


def scores(X: Features, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X @ W + b`` as a new C-contiguous ``(n, k)`` array (``b`` has shape ``(1, k)``)."""
    if is_sparse(X):
        out = np.empty((X.shape[0], W.shape[1]))
        out[:] = b
        _csr_matmul(X.indptr, X.indices, X.data, np.ascontiguousarray(W), out)
        return out
    out = X @ W
    out += b
    return out


def xt_dot(X: Features, D: np.ndarray) -> np.ndarray:
    """``X.T @ D`` as a new C-contiguous ``(X.shape[1], k)`` array."""
    if is_sparse(X):
        out = np.zeros((X.shape[1], D.shape[1]))
        _csr_t_matmul(X.indptr, X.indices, X.data, np.ascontiguousarray(D), out)
        return out
    return np.ascontiguousarray(X.T @ D)


def check_rows(X: Features, table: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless the batch's columns index the table's rows."""
    if X.shape[1] != table.shape[0]:
        raise ValueError(
            f"batch has {X.shape[1]} columns but params[{name!r}] has {table.shape[0]} rows"
            " (renumber the batch's columns with localize())"
        )


def check_l2(_instance: object, _attribute: object, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"l2 must be a finite number >= 0, got {value!r}")


def check_count(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def check_classes(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_count(_instance, attribute, value)
    if value < 2:
        raise ValueError(f"n_classes must be >= 2, got {value}")


def as_labels(y: object, n_classes: int, n_rows: int) -> np.ndarray:
    """``y`` as int64 class ids in ``[0, n_classes)``, one per batch row."""
    labels = np.asarray(y)
    if labels.shape != (n_rows,):
        raise ValueError(f"labels must have shape ({n_rows},), got {labels.shape}")
    if n_rows == 0:
        raise ValueError("empty batch")
    labels = labels.astype(np.int64, copy=False)
    low, high = labels.min(), labels.max()
    if low < 0 or high >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in [{low}, {high}]")
    return labels


@attrs.frozen
class LinearModel:
    """Tables ``w`` (``n_features`` x outputs) and ``b`` (1 x outputs); scores ``X @ w + b``.

    Subclasses set ``name`` and implement ``_loss`` and ``predict_scores``.

    Attributes:
        n_features: input dimension (rows of ``w``).
        n_classes: number of classes.
        l2: L2 penalty ``l2 / 2 * ||w||^2`` added to the mean loss (the bias is not
            penalised). sklearn's ``C`` on ``n`` training rows is ``l2 = 1 / (C * n)``.
        sparse: declare ``w`` as a sparse (feature-indexed) table, so a batch pulls only
            the rows of the features it contains.
    """

    name: ClassVar[str] = "linear"
    OPTIONS: ClassVar[tuple[str, ...]] = ("l2", "sparse")

    n_features: int = attrs.field(validator=check_count)
    n_classes: int = attrs.field(validator=check_classes)
    l2: float = attrs.field(default=1e-4, validator=check_l2, converter=float)
    sparse: bool = attrs.field(default=False, converter=bool)

    @property
    def n_outputs(self) -> int:
        """Columns of ``w``: one score per class, or one for a binary model."""
        return self.n_classes

    def tables(self) -> tuple[TableSpec, ...]:
        return (
            TableSpec("w", self.n_features, self.n_outputs, sparse=self.sparse),
            TableSpec("b", 1, self.n_outputs),
        )

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return init_tables(self.tables(), seed)

    def rows_needed(self, X_batch: Features) -> dict[str, np.ndarray | None]:
        if not self.sparse:
            return {"w": None, "b": None}
        return {"w": feature_rows(as_features(X_batch)), "b": None}

    def _loss(self, S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean data loss over the batch and its gradient with respect to ``S``."""
        raise NotImplementedError

    def predict_scores(self, S: np.ndarray) -> np.ndarray:
        """Class ids from scores."""
        raise NotImplementedError

    def gradient(
        self, params: Mapping[str, np.ndarray], X_batch: Features, y_batch: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss with L2 and the gradients of ``w`` and ``b`` (see ``Model``)."""
        X = as_features(X_batch)
        w, b = params["w"], params["b"]
        check_rows(X, w, "w")
        y = as_labels(y_batch, self.n_classes, X.shape[0])
        loss, dS = self._loss(scores(X, w, b), y)
        grad_w = xt_dot(X, dS)
        if self.l2:
            grad_w += self.l2 * w
            loss += 0.5 * self.l2 * float(np.vdot(w, w))
        return loss, {"w": grad_w, "b": dS.sum(axis=0, keepdims=True)}

    def predict(self, params: Mapping[str, np.ndarray], X: Features) -> np.ndarray:
        """Predicted class ids for every row of ``X`` (full tables)."""
        X = as_features(X)
        check_rows(X, params["w"], "w")
        parts = [
            self.predict_scores(scores(X[i : i + EVAL_CHUNK], params["w"], params["b"]))
            for i in range(0, X.shape[0], EVAL_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def evaluate(
        self, params: Mapping[str, np.ndarray], X: Features, y: np.ndarray
    ) -> dict[str, float]:
        """Mean loss (with L2) and accuracy over ``X`` on full tables."""
        X = as_features(X)
        w = params["w"]
        check_rows(X, w, "w")
        labels = as_labels(y, self.n_classes, X.shape[0])
        loss_sum, correct = 0.0, 0
        for i in range(0, X.shape[0], EVAL_CHUNK):
            S = scores(X[i : i + EVAL_CHUNK], w, params["b"])
            part = labels[i : i + EVAL_CHUNK]
            loss_sum += self._loss(S, part)[0] * part.size
            correct += int(np.count_nonzero(self.predict_scores(S) == part))
        loss = loss_sum / X.shape[0] + 0.5 * self.l2 * float(np.vdot(w, w))
        return {"loss": loss, "accuracy": correct / X.shape[0]}
