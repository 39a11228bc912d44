"""A one-hidden-layer perceptron: ``softmax(act(X @ W1 + b1) @ W2 + b2)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
import numpy as np

from .base import Features, TableSpec, as_features, feature_rows, init_tables
from .linear import (
    EVAL_CHUNK,
    as_labels,
    check_classes,
    check_count,
    check_l2,
    check_rows,
    scores,
    xt_dot,
)
from .softmax import softmax_xent

ACTIVATIONS = ("relu", "tanh")


def _check_activation(_instance: object, _attribute: object, value: str) -> None:
    if value not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {value!r} (expected one of: {', '.join(ACTIVATIONS)})"
        )


@attrs.frozen
class MLP:
    """One hidden layer (ReLU or tanh) and a softmax output, for ``n_classes >= 2``.

    Tables: ``W1`` (``n_features`` x ``hidden``, Glorot; sparse when ``sparse=True``),
    ``b1`` (1 x ``hidden``), ``W2`` (``hidden`` x ``n_classes``, Glorot), ``b2``
    (1 x ``n_classes``). Options: ``hidden`` (default 64), ``activation`` (``"relu"``,
    the default, or ``"tanh"``), ``l2`` (on ``W1`` and ``W2``), ``sparse``.

    The matrix products go to BLAS (dense) or the CSR kernels of ``linear``; the loss
    is the numba softmax cross-entropy kernel.
    """

    name: ClassVar[str] = "mlp"
    OPTIONS: ClassVar[tuple[str, ...]] = ("l2", "sparse", "hidden", "activation")

    n_features: int = attrs.field(validator=check_count)
    n_classes: int = attrs.field(validator=check_classes)
    hidden: int = attrs.field(default=64, validator=check_count)
    activation: str = attrs.field(default="relu", validator=_check_activation)
    l2: float = attrs.field(default=1e-4, validator=check_l2, converter=float)
    sparse: bool = attrs.field(default=False, converter=bool)

    def tables(self) -> tuple[TableSpec, ...]:
        return (
            TableSpec("W1", self.n_features, self.hidden, init="glorot", sparse=self.sparse),
            TableSpec("b1", 1, self.hidden),
            TableSpec("W2", self.hidden, self.n_classes, init="glorot"),
            TableSpec("b2", 1, self.n_classes),
        )

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return init_tables(self.tables(), seed)

    def rows_needed(self, X_batch: Features) -> dict[str, np.ndarray | None]:
        rows: dict[str, np.ndarray | None] = dict.fromkeys(("W1", "b1", "W2", "b2"))
        if self.sparse:
            rows["W1"] = feature_rows(as_features(X_batch))
        return rows

    def _forward(
        self, params: Mapping[str, np.ndarray], X: Features
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations and output scores."""
        H = scores(X, params["W1"], params["b1"])
        if self.activation == "relu":
            np.maximum(H, 0.0, out=H)
        else:
            np.tanh(H, out=H)
        return H, scores(H, params["W2"], params["b2"])

    def _penalty(self, params: Mapping[str, np.ndarray]) -> float:
        W1, W2 = params["W1"], params["W2"]
        return 0.5 * self.l2 * float(np.vdot(W1, W1) + np.vdot(W2, W2))

    def gradient(
        self, params: Mapping[str, np.ndarray], X_batch: Features, y_batch: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy with L2 and the gradients of the four tables."""
        X = as_features(X_batch)
        check_rows(X, params["W1"], "W1")
        y = as_labels(y_batch, self.n_classes, X.shape[0])
        H, S = self._forward(params, X)
        loss, dS = softmax_xent(S, y)
        grad_W2 = H.T @ dS
        dH = dS @ params["W2"].T
        if self.activation == "relu":
            dH *= H > 0.0
        else:
            dH *= 1.0 - H * H
        grad_W1 = xt_dot(X, dH)
        if self.l2:
            grad_W1 += self.l2 * params["W1"]
            grad_W2 += self.l2 * params["W2"]
            loss += self._penalty(params)
        return loss, {
            "W1": grad_W1,
            "b1": dH.sum(axis=0, keepdims=True),
            "W2": np.ascontiguousarray(grad_W2),
            "b2": dS.sum(axis=0, keepdims=True),
        }

    def predict(self, params: Mapping[str, np.ndarray], X: Features) -> np.ndarray:
        """Predicted class ids for every row of ``X`` (full tables)."""
        X = as_features(X)
        check_rows(X, params["W1"], "W1")
        parts = [
            np.argmax(self._forward(params, X[i : i + EVAL_CHUNK])[1], axis=1)
            for i in range(0, X.shape[0], EVAL_CHUNK)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def evaluate(
        self, params: Mapping[str, np.ndarray], X: Features, y: np.ndarray
    ) -> dict[str, float]:
        """Mean cross-entropy (with L2) and accuracy over ``X`` on full tables."""
        X = as_features(X)
        check_rows(X, params["W1"], "W1")
        labels = as_labels(y, self.n_classes, X.shape[0])
        loss_sum, correct = 0.0, 0
        for i in range(0, X.shape[0], EVAL_CHUNK):
            S = self._forward(params, X[i : i + EVAL_CHUNK])[1]
            part = labels[i : i + EVAL_CHUNK]
            loss_sum += softmax_xent(S, part)[0] * part.size
            correct += int(np.count_nonzero(np.argmax(S, axis=1) == part))
        loss = loss_sum / X.shape[0] + self._penalty(params)
        return {"loss": loss, "accuracy": correct / X.shape[0]}
