"""Building a job's model, optimiser and table map from its layout."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

import trio

from actorml import registry
from actorml.models import load_dataset, make_model, make_optimizer
from actorml.models.base import Model
from actorml.models.dataset import Dataset
from actorml.models.optim import Optimizer

from .messages import Layout
from .tables import TableMap

__all__ = [
    "build_model",
    "build_optimizer",
    "build_problem",
    "build_table_map",
    "load_job",
    "make_layout",
]


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
    """The model-parallel problem (a ``"problem"`` kind, e.g. Lasso) a layout names,
    with the sizes the scheduler took from the data (`actorml.models.rounds`)."""
    options: dict[str, Any] = dict(layout.model)
    cls = registry.resolve("problem", str(options.pop("kind")))
    return cls(**options)


def build_table_map(layout: Layout, model: Any) -> TableMap:
    return TableMap(tuple(model.tables()), tuple(layout.shards))


def make_layout(
    job: Mapping[str, Any],
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    shards: list[str],
    dataset: Dataset,
    *,
    staged: str | None = None,
) -> Layout:
    """The layout every role of a job builds from, once its dataset is loaded."""
    return Layout(
        model=dict(model),
        optimizer=dict(optimizer),
        data=dict(data),
        n_features=dataset.n_features,
        n_classes=dataset.n_classes,
        shards=list(shards),
        seed=int(job.get("seed", 0)),
        batch_size=int(job.get("batch_size", 64)),
        staged=staged,
        batches_per_clock=int(job.get("batches_per_clock", 1)),
        overlap=bool(job.get("overlap", False)),
        shared_memory=bool(job.get("shared_memory", True)),
    )


async def load_job(
    ctx: Any,
    job: dict[str, Any],
    model: dict[str, Any],
    data: dict[str, Any],
    optimizer: dict[str, Any],
    shards: list[str],
) -> tuple[Dataset, Layout]:
    """Load a job's data (in a thread) and make the layout every role builds from.

    Bad data stays bad: a restart would fail the same way, so the job ends here with
    one line saying why, instead of restarting until the cluster gives up.
    """
    data = dict(data)
    try:
        dataset = await trio.to_thread.run_sync(lambda: load_dataset(**data))
    except (ValueError, TypeError, OSError, EOFError) as exc:
        ctx.log.error("data_unusable", source=data.get("source"), error=str(exc))
        await ctx.complete(error=f"cannot load {data.get('source')!r}: {exc}")
        await trio.sleep_forever()
    layout = make_layout(job, model, data, optimizer, shards, dataset)
    return dataset, layout
