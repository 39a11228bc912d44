"""Building a model by kind: ``make_model``, and ``MODELS``, the registered kinds.

Model kinds live in the one registry (``actorml.registry``, group ``"model"``; the
built-ins are listed in ``actorml/builtins.py``); a user's own model is named by dotted
path, ``"pkg.mod:Class"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorml import registry
from actorml.errors import UnknownKind

from .base import Model

MODELS: Mapping[str, type] = registry.kinds("model")
"""The registered model kinds, name -> class (a live view of the registry's "model" group)."""


def model_class(kind: str) -> type:
    """The class of model ``kind``: a registered name or a dotted path ``"pkg.mod:Class"``.

    Raises:
        ValueError: unknown kind (naming the valid ones), or a path that cannot be imported.
    """
    if ":" not in kind and kind not in MODELS:
        raise ValueError(
            f"unknown model kind {kind!r} (expected one of: {', '.join(sorted(MODELS))},"
            " or 'package.module:Class')"
        )
    try:
        return registry.resolve("model", kind)
    except UnknownKind as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ValueError(f"cannot import model {kind!r}: {cause}") from exc


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
    cls = model_class(kind)
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
