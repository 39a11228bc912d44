"""Building a job's model, optimiser and table map from its layout."""

from __future__ import annotations

from typing import Any

from actorml.models import make_model, make_optimizer
from actorml.models.base import Model
from actorml.models.optim import Optimizer

from .messages import Layout
from .tables import TableMap

__all__ = ["build_model", "build_optimizer", "build_table_map"]


def build_model(layout: Layout) -> Model:
    options: dict[str, Any] = dict(layout.model)
    kind = options.pop("kind")
    return make_model(str(kind), layout.n_features, layout.n_classes, **options)


def build_optimizer(layout: Layout) -> Optimizer:
    options: dict[str, Any] = dict(layout.optimizer)
    kind = options.pop("kind")
    lr = float(options.pop("lr"))
    return make_optimizer(str(kind), lr, **options)


def build_table_map(layout: Layout, model: Model) -> TableMap:
    return TableMap(tuple(model.tables()), tuple(layout.shards))
