"""Softmax (multinomial logistic) regression, and the softmax cross-entropy kernel."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numba
import numpy as np

from .linear import LinearModel


@numba.njit(nogil=True, cache=True)
def _softmax_xent(S, y, dS):
    """Mean cross-entropy of ``softmax(S)`` against class ids ``y``; ``dS`` per row / n.

    Log-sum-exp with the row maximum subtracted, so no ``exp`` overflows.
    """
    n, k = S.shape
    total = 0.0
    for i in range(n):
        top = S[i, 0]
        for c in range(1, k):
            top = max(top, S[i, c])
        acc = 0.0
        for c in range(k):
            acc += math.exp(S[i, c] - top)
        lse = top + math.log(acc)
        total += lse - S[i, y[i]]
        for c in range(k):
            dS[i, c] = math.exp(S[i, c] - lse) / n
        dS[i, y[i]] -= 1.0 / n
    return total / n


def softmax_xent(S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the scores ``S``."""
    dS = np.empty_like(S)
    return float(_softmax_xent(np.ascontiguousarray(S), y, dS)), dS


@attrs.frozen
class SoftmaxRegression(LinearModel):
    """Multiclass softmax regression on labels ``0..n_classes-1``.

    Tables: ``w`` (``n_features`` x ``n_classes``, sparse when ``sparse=True``) and
    ``b`` (1 x ``n_classes``). Options: ``l2``, ``sparse``.
    """

    name: ClassVar[str] = "softmax"

    def _loss(self, S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return softmax_xent(S, y)

    def predict_scores(self, S: np.ndarray) -> np.ndarray:
        return np.argmax(S, axis=1).astype(np.int64)
