"""Model kinds by name: ``MODELS`` and ``make_model``."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Model
from .logistic import LogisticRegression
from .mlp import MLP
from .softmax import SoftmaxRegression
from .svm import LinearSVM

MODELS: dict[str, type] = {
    "logreg": LogisticRegression,
    "svm": LinearSVM,
    "softmax": SoftmaxRegression,
    "mlp": MLP,
}
"""Built-in model kinds. A user's own model is named by dotted path, ``"pkg.mod:Class"``."""


def _resolve(kind: str) -> type:
    if kind in MODELS:
        return MODELS[kind]
    if ":" in kind:
        module_name, _, attr = kind.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import model {kind!r}: {exc}") from exc
    raise ValueError(
        f"unknown model kind {kind!r} (expected one of: {', '.join(sorted(MODELS))},"
        " or 'package.module:Class')"
    )


def make_model(kind: str, n_features: int, n_classes: int, **options: Any) -> Model:
    """Build a model by kind.

    Args:
        kind: a key of ``MODELS`` or a dotted path ``"package.module:Class"``; the class
            is called as ``Class(n_features=..., n_classes=..., **options)``.
        n_features: input dimension.
        n_classes: number of classes (2 for the binary ``logreg`` and ``svm``).
        **options: the model's options (``l2``, ``sparse``, ...; see ``docs/models.md``).

    Raises:
        ValueError: unknown kind, unknown option, or an option value out of range.
    """
    cls = _resolve(kind)
    valid = getattr(cls, "OPTIONS", None)
    if valid is not None:
        for option in options:
            if option not in valid:
                raise ValueError(
                    f"unknown option {option!r} for model {kind!r}"
                    f" (expected one of: {', '.join(sorted(valid))})"
                )
    model = cls(n_features=n_features, n_classes=n_classes, **options)
    if not isinstance(model, Model):
        raise ValueError(f"{kind!r} does not implement the Model protocol")
    return model
