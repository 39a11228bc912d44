"""Linear support vector machine (binary), hinge or squared hinge loss."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numba
import numpy as np

from .linear import LinearModel

LOSSES = ("hinge", "squared_hinge")


@numba.njit(nogil=True, cache=True)
def _hinge_loss(S, y, dS, squared):
    """Mean ``max(0, 1 - t z)`` (or its square) with ``t = 2 y - 1``; ``dS`` per row / n.

    The hinge's subgradient at the kink (``t z == 1``) is taken as 0.
    """
    n = S.shape[0]
    total = 0.0
    for i in range(n):
        t = 2.0 * y[i] - 1.0
        slack = 1.0 - t * S[i, 0]
        if slack > 0.0:
            if squared:
                total += slack * slack
                dS[i, 0] = -2.0 * t * slack / n
            else:
                total += slack
                dS[i, 0] = -t / n
        else:
            dS[i, 0] = 0.0
    return total / n


def _check_loss(_instance: object, _attribute: object, value: str) -> None:
    if value not in LOSSES:
        raise ValueError(f"unknown svm loss {value!r} (expected one of: {', '.join(LOSSES)})")


@attrs.frozen
class LinearSVM(LinearModel):
    """Binary linear SVM on labels ``{0, 1}`` (scored as ``-1``/``+1``).

    Tables: ``w`` (``n_features`` x 1, sparse when ``sparse=True``) and ``b`` (1 x 1).
    Options: ``l2``, ``sparse``, ``loss`` (``"squared_hinge"``, the default, as
    sklearn's ``LinearSVC``; or ``"hinge"``).
    """

    name: ClassVar[str] = "svm"
    OPTIONS: ClassVar[tuple[str, ...]] = ("l2", "sparse", "loss")

    n_classes: int = attrs.field(default=2)
    loss: str = attrs.field(default="squared_hinge", validator=_check_loss)

    @n_classes.validator
    def _binary(self, _attribute: object, value: int) -> None:
        if value != 2:
            raise ValueError(f"svm is binary: n_classes must be 2, got {value} (use softmax)")

    @property
    def n_outputs(self) -> int:
        return 1

    def _loss(self, S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        dS = np.empty_like(S)
        return float(_hinge_loss(S, y, dS, self.loss == "squared_hinge")), dS

    def predict_scores(self, S: np.ndarray) -> np.ndarray:
        return (S[:, 0] > 0).astype(np.int64)
