"""Building a job's model, optimiser and table map from its layout."""

from __future__ import annotations

import typing
from typing import Any

from actorml import registry
from actorml.models import make_model, make_optimizer
from actorml.models.base import Model
from actorml.models.optim import Optimizer

from .messages import Layout
from .tables import TableMap

__all__ = ["build_model", "build_optimizer", "build_problem", "build_table_map"]


def build_model(layout: Layout) -> Model:
    """The layout's model; for a model-parallel job, its problem (`build_problem`), of
    which the roles that build models here (shards, the scheduler's audit) use only
    ``tables()``."""
    options: dict[str, Any] = dict(layout.model)
    kind = options.pop("kind")
    if kind in registry.known("problem"):
        return typing.cast(Model, build_problem(layout))
    return make_model(str(kind), layout.n_features, layout.n_classes, **options)


def build_optimizer(layout: Layout) -> Optimizer:
    options: dict[str, Any] = dict(layout.optimizer)
    kind = options.pop("kind")
    lr = float(options.pop("lr"))
    return make_optimizer(str(kind), lr, **options)


def build_problem(layout: Layout) -> Any:
    """The model-parallel problem (a ``"problem"`` kind, e.g. Lasso) a layout names."""
    options: dict[str, Any] = dict(layout.model)
    cls = registry.resolve("problem", str(options.pop("kind")))
    return cls(n_features=layout.n_features, **options)


def build_table_map(layout: Layout, model: Any) -> TableMap:
    return TableMap(tuple(model.tables()), tuple(layout.shards))
