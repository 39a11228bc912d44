"""The ``[pipeline]`` section: a network cut into stages, trained as a GPipe pipeline.

A topology with ``[pipeline]`` (instead of ``[job]``) and the usual ``[model]``,
``[data]``, ``[optimizer]`` and ``[protocol]`` generates the nodes: ``pipeline`` (the
driver, and the protocol actor when the parameters live on shards), ``shard-0..``, and
one node per stage of each replica, ``stage-S-rR``. Nodes the file declares itself are
kept (and a generated node whose actors it already declares is not added), so a user
can place any stage by hand.
"""

from __future__ import annotations

from typing import Any

import attrs

from actorml import registry
from actorml.errors import TopologyError
from actorml.models.layers import check_cut
from actorml.topology.fields import FieldValueError, boolean, checked, describe, integer, number_in
from actorml.topology.tables import build

from .job import (
    DataSection,
    ModelSection,
    OptimizerSection,
    ProtocolSection,
    _actor_kind,
    _init_field,
)
from .pipeline import stage_name

__all__ = ["PipelineConfig", "PipelineSection", "pipeline_nodes"]


def _stages(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        integer(1, 256)(value)
        return
    if not isinstance(value, list):
        raise TypeError(
            f"expected a number of stages or a list of layer-id lists, got {describe(value)}"
        )
    check_cut(value, sum(len(s) for s in value if isinstance(s, list)))


@attrs.frozen
class PipelineConfig:
    """``[pipeline]``: the cut, the micro-batches, the replicas, and how long.

    Each value is checked here, once, whether the job comes from a file or from Python.
    """

    stages: Any = attrs.field(default=2, validator=checked(_stages), hash=False)
    micro_batches: int = attrs.field(default=4, validator=checked(integer(1, 4096)))
    replicas: int = attrs.field(default=1, validator=checked(integer(1, 256)))
    shards: int = attrs.field(default=0, validator=checked(integer(0, 256)))
    epochs: int = attrs.field(default=5, validator=checked(integer(1, 1_000_000)))
    batch_size: int = attrs.field(default=64, validator=checked(integer(1, 10_000_000)))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))
    progress: bool = attrs.field(default=True, validator=checked(boolean))
    wait_timeout_s: float = attrs.field(default=300.0, validator=checked(number_in(0.001)))

    def __attrs_post_init__(self) -> None:
        if self.replicas > 1 and self.shards == 0:
            raise FieldValueError(
                "shards",
                f"{self.replicas} replicas share each stage's parameters through the shards:"
                " set shards >= 1",
            )
        if self.micro_batches > self.batch_size:
            raise FieldValueError(
                "micro_batches",
                f"{self.micro_batches} micro-batches of a {self.batch_size}-row mini-batch"
                " would leave some empty (expected at most batch_size)",
            )


class PipelineSection:
    """``[pipeline]``: validated by `PipelineConfig`; generates the job's nodes."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        return attrs.asdict(build(PipelineConfig, table, path))

    @staticmethod
    def expand(data: dict[str, Any]) -> dict[str, Any]:
        """Add the pipeline's driver, shard and stage nodes to a TOML-shaped dict."""
        if "job" in data:
            raise TopologyError(
                "pipeline", "a topology runs a [job] or a [pipeline], not both (remove one)"
            )
        for required in ("model", "data"):
            if required not in data:
                raise TopologyError(
                    required, f"missing required table [{required}] for a [pipeline]"
                )
        pipe = PipelineSection.validate(dict(data["pipeline"]), "pipeline")
        model = ModelSection.validate(dict(data["model"]), "model")
        _check_model(model, pipe)
        declared = [n for n in data.get("node", []) if isinstance(n, dict)]
        names = {n.get("name") for n in declared}
        actors = {
            a.get("name") for n in declared for a in n.get("actor", []) if isinstance(a, dict)
        }
        extra = [
            n for n in pipeline_nodes(
                pipe, model,
                DataSection.validate(dict(data["data"]), "data"),
                OptimizerSection.validate(dict(data.get("optimizer", {})), "optimizer"),
                ProtocolSection.validate(dict(data.get("protocol", {})), "protocol"),
            )
            if n["name"] not in names and not any(a["name"] in actors for a in n["actor"])
        ]  # fmt: skip
        return {**data, "node": [*declared, *extra]}


def _check_model(model: dict[str, Any], pipe: dict[str, Any]) -> None:
    if model["kind"] != "mlp":
        raise TopologyError(
            "model.kind",
            f"a pipeline cuts a layered network into stages: expected 'mlp', got {model['kind']!r}",
        )
    if model.get("sparse"):
        raise TopologyError("model.sparse", "a pipeline's stages take dense activations: remove it")
    hidden = model.get("hidden", 64)
    layers = len(hidden) + 1 if isinstance(hidden, list) else 2
    stages = pipe["stages"]
    if isinstance(stages, int):
        if stages > layers:
            raise TopologyError(
                "pipeline.stages",
                f"{stages} stages but the network has {layers} layers (hidden = {hidden!r})",
            )
        return
    try:
        check_cut(stages, layers)
    except ValueError as exc:
        raise TopologyError("pipeline.stages", f"{exc} (hidden = {hidden!r})") from None


def pipeline_nodes(
    pipe: dict[str, Any],
    model: dict[str, Any],
    data: dict[str, Any],
    optimizer: dict[str, Any],
    protocol: dict[str, Any],
) -> list[dict[str, Any]]:
    """The ``[[node]]`` tables of a pipeline job, as a TOML file would spell them."""
    n_stages = pipe["stages"] if isinstance(pipe["stages"], int) else len(pipe["stages"])
    replicas = pipe["replicas"]
    shards = [f"shard-{k}" for k in range(pipe["shards"])]
    stages = [[stage_name(s, r) for s in range(n_stages)] for r in range(replicas)]
    job = {k: pipe[k] for k in ("epochs", "batch_size", "seed", "progress")}
    driver_args = {
        "stages": pipe["stages"], "replicas": replicas, "micro_batches": pipe["micro_batches"],
        "shards": shards, "job": job, "model": model, "data": data, "optimizer": optimizer,
    }  # fmt: skip
    driver: list[dict[str, Any]] = []
    if shards:
        cls = registry.resolve("protocol", protocol["kind"])
        args: dict[str, Any] = {"workers": [n for row in stages for n in row], "shards": shards}
        if _init_field(cls, "staleness") is not None and "staleness" in protocol:
            args["staleness"] = protocol["staleness"]
        driver.append(
            {"name": "protocol", "kind": _actor_kind(protocol["kind"], cls), "args": args}
        )
    driver.append({"name": "pipeline", "kind": "pipeline", "args": driver_args})
    nodes: list[dict[str, Any]] = [{"name": "pipeline", "actor": driver}]
    for k, shard in enumerate(shards):
        args = {"index": k, "scheduler": "pipeline"}
        nodes.append({"name": shard, "actor": [{"name": shard, "kind": "shard", "args": args}]})
    for r, row in enumerate(stages):
        for s, name in enumerate(row):
            args = {
                "stage": s, "replica": r, "stages": pipe["stages"], "driver": "pipeline",
                "wait_timeout_s": pipe["wait_timeout_s"],
            }  # fmt: skip
            if s:
                args["previous"] = row[s - 1]
            if s + 1 < n_stages:
                args["next"] = row[s + 1]
            if shards:
                args["protocol"] = "protocol"
            nodes.append({"name": name, "actor": [{"name": name, "kind": "stage", "args": args}]})
    return nodes
