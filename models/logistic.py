"""Binary logistic regression: ``P(y = 1 | x) = sigmoid(x @ w + b)``."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numba
import numpy as np

from .linear import LinearModel


@numba.njit(nogil=True, cache=True)
def _logistic_loss(S, y, dS):
    """Mean ``softplus(z) - y z`` over the batch; ``dS = (sigmoid(z) - y) / n``.

    Both branches keep ``exp`` of a non-positive number, so nothing overflows.
    """
    n = S.shape[0]
    total = 0.0
    for i in range(n):
        z = S[i, 0]
        if z > 0.0:
            e = math.exp(-z)
            total += z + math.log1p(e) - y[i] * z
            p = 1.0 / (1.0 + e)
        else:
            e = math.exp(z)
            total += math.log1p(e) - y[i] * z
            p = e / (1.0 + e)
        dS[i, 0] = (p - y[i]) / n
    return total / n


@attrs.frozen
class LogisticRegression(LinearModel):
    """Binary logistic regression (log loss) on labels ``{0, 1}``.

    Tables: ``w`` (``n_features`` x 1, sparse when ``sparse=True``) and ``b`` (1 x 1).
    Options: ``l2``, ``sparse``.
    """

    name: ClassVar[str] = "logreg"

    n_classes: int = attrs.field(default=2)

    @n_classes.validator
    def _binary(self, _attribute: object, value: int) -> None:
        if value != 2:
            raise ValueError(f"logreg is binary: n_classes must be 2, got {value} (use softmax)")

    @property
    def n_outputs(self) -> int:
        return 1

    def _loss(self, S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        dS = np.empty_like(S)
        return float(_logistic_loss(S, y, dS)), dS

    def predict_scores(self, S: np.ndarray) -> np.ndarray:
        return (S[:, 0] > 0).astype(np.int64)
