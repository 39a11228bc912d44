"""A multilayer perceptron: ``softmax(... act(act(X @ W1 + b1) @ W2 + b2) ... @ WL + bL)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numpy as np

from .base import Features, TableSpec, as_features, feature_rows, init_tables
from .layers import ACTIVATIONS, LayerRun
from .linear import (
    EVAL_CHUNK,
    as_labels,
    check_classes,
    check_count,
    check_l2,
    check_rows,
)
from .softmax import softmax_xent


def _check_activation(_instance: object, _attribute: object, value: str) -> None:
    if value not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {value!r} (expected one of: {', '.join(ACTIVATIONS)})"
        )


def _hidden_sizes(value: Any) -> Any:
    """A list of widths becomes a tuple (hashable); one width stays an int."""
    return tuple(value) if isinstance(value, list) else value


def _check_hidden(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, tuple):
        if not value:
            raise ValueError("hidden must be a positive integer or a non-empty list of them")
        for width in value:
            check_count(instance, attribute, width)
    else:
        check_count(instance, attribute, value)


@attrs.frozen
class MLP:
    """Hidden layers (ReLU or tanh) and a softmax output, for ``n_classes >= 2``.

    ``hidden`` is one width (one hidden layer, the default 64) or a list of widths, one
    per hidden layer (``[256, 256, 128]``). Layer ``i`` owns the tables ``W{i+1}``
    (fan-in x fan-out, Glorot; ``W1`` sparse when ``sparse=True``) and ``b{i+1}``
    (1 x fan-out): one hidden layer gives ``W1``, ``b1``, ``W2``, ``b2``. Options:
    ``hidden``, ``activation`` (``"relu"``, the default, or ``"tanh"``), ``l2`` (on
    every ``W``), ``sparse``.

    The layers run through `actorml.models.layers.LayerRun`, the code a pipeline stage
    runs on its share of them; the matrix products go to BLAS (dense) or the CSR kernels
    of ``linear``; the loss is the numba softmax cross-entropy kernel.
    """

    name: ClassVar[str] = "mlp"
    OPTIONS: ClassVar[tuple[str, ...]] = ("l2", "sparse", "hidden", "activation")

    n_features: int = attrs.field(validator=check_count)
    n_classes: int = attrs.field(validator=check_classes)
    hidden: int | tuple[int, ...] = attrs.field(
        default=64, converter=_hidden_sizes, validator=_check_hidden
    )
    activation: str = attrs.field(default="relu", validator=_check_activation)
    l2: float = attrs.field(default=1e-4, validator=check_l2, converter=float)
    sparse: bool = attrs.field(default=False, converter=bool)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every width, the input first and the classes last."""
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        return (self.n_features, *(int(h) for h in hidden), self.n_classes)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def layers(self, first: int = 0, stop: int | None = None) -> LayerRun:
        """Layers ``first .. stop - 1`` (default: all of them) as one run."""
        return LayerRun(self.sizes, first, self.n_layers if stop is None else stop, self.activation)

    def tables(self) -> tuple[TableSpec, ...]:
        sizes = self.sizes
        specs = []
        for i in range(self.n_layers):
            sparse = self.sparse and i == 0
            specs.append(TableSpec(f"W{i + 1}", sizes[i], sizes[i + 1], "glorot", sparse))
            specs.append(TableSpec(f"b{i + 1}", 1, sizes[i + 1]))
        return tuple(specs)

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        return init_tables(self.tables(), seed)

    def rows_needed(self, X_batch: Features) -> dict[str, np.ndarray | None]:
        rows: dict[str, np.ndarray | None] = dict.fromkeys(s.name for s in self.tables())
        if self.sparse:
            rows["W1"] = feature_rows(as_features(X_batch))
        return rows

    def _scores(self, params: Mapping[str, np.ndarray], X: Features) -> np.ndarray:
        return self.layers().forward(params, X)[-1]

    def gradient(
        self, params: Mapping[str, np.ndarray], X_batch: Features, y_batch: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy with L2 and the gradient of every table."""
        X = as_features(X_batch)
        check_rows(X, params["W1"], "W1")
        y = as_labels(y_batch, self.n_classes, X.shape[0])
        run = self.layers()
        outputs = run.forward(params, X)
        loss, dS = softmax_xent(outputs[-1], y)
        grads: dict[str, np.ndarray] = {}
        run.backward(params, X, outputs, dS, grads)
        run.add_l2(params, grads, self.l2)
        loss += run.penalty(params, self.l2)
        return loss, {s.name: np.ascontiguousarray(grads[s.name]) for s in self.tables()}

    def predict(self, params: Mapping[str, np.ndarray], X: Features) -> np.ndarray:
        """Predicted class ids for every row of ``X`` (full tables)."""
        X = as_features(X)
        check_rows(X, params["W1"], "W1")
        parts = [
            np.argmax(self._scores(params, X[i : i + EVAL_CHUNK]), axis=1)
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
            S = self._scores(params, X[i : i + EVAL_CHUNK])
            part = labels[i : i + EVAL_CHUNK]
            loss_sum += softmax_xent(S, part)[0] * part.size
            correct += int(np.count_nonzero(np.argmax(S, axis=1) == part))
        loss = loss_sum / X.shape[0] + self.layers().penalty(params, self.l2)
        return {"loss": loss, "accuracy": correct / X.shape[0]}
