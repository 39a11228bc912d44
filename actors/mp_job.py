"""``[job] kind = "model_parallel"`` and ``[schedule]``: a scheduled model-parallel job.

The job generates the same nodes as a data-parallel one (see `actorml.actors.job`): a
``scheduler`` node (the protocol actor and the `MpScheduler`), ``shard-0..`` (with
their backups under ``replication = 2``) and ``worker-0..`` (`MpWorker`, restarted when
they crash). ``[model]`` names the problem (``kind = "lasso"``, a ``"problem"`` kind),
``[schedule]`` the schedule S(t), ``[protocol]`` the consistency model (default BSP).
"""

from __future__ import annotations

from typing import Any

import attrs

from actorml import registry
from actorml.errors import TopologyError, UnknownKind
from actorml.topology.fields import (
    boolean,
    checked,
    integer,
    number_in,
)
from actorml.topology.tables import build, check_options

from .job import ModelSection, ProtocolSection, check_replication, training_nodes

__all__ = ["ModelParallelConfig", "ModelParallelJob", "ScheduleSection"]

KIND = "model_parallel"


@attrs.frozen
class ModelParallelConfig:
    """``[job]`` of a model-parallel job: workers, shards, and when to stop.

    The job ends once the duality gap is at most ``tolerance`` times the objective
    (checked every ``ceil(coordinates / round_size)`` rounds), or after ``max_rounds``.
    """

    kind: str = attrs.field(default=KIND)
    workers: int = attrs.field(default=4, validator=checked(integer(1, 1024)))
    shards: int = attrs.field(default=2, validator=checked(integer(1, 256)))
    max_rounds: int = attrs.field(default=100_000, validator=checked(integer(1, 100_000_000)))
    tolerance: float = attrs.field(default=1e-6, validator=checked(number_in(0.0, 1.0)))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))
    round_timeout_s: float = attrs.field(default=60.0, validator=checked(number_in(0.001)))
    wait_timeout_s: float = attrs.field(default=300.0, validator=checked(number_in(0.001)))
    replication: int = attrs.field(default=1, validator=checked(integer(1)))
    progress: bool = attrs.field(default=True, validator=checked(boolean))

    def __attrs_post_init__(self) -> None:
        check_replication(self.replication, self.shards)


def _problem(table: dict[str, Any], path: str) -> dict[str, Any]:
    """``[model]`` of a model-parallel job: a ``"problem"`` kind and its options."""
    known = registry.known("problem")
    if table.get("kind") not in known:
        raise TopologyError(
            f"{path}.kind",
            f"a model-parallel job needs a problem kind (expected one of: {', '.join(known)})"
            f", got {table.get('kind')!r}",
        )
    return ModelSection.validate(table, path)


class ModelParallelJob:
    """``[job]`` with ``kind = "model_parallel"``: validated by `ModelParallelConfig`."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        return attrs.asdict(build(ModelParallelConfig, table, path))

    @staticmethod
    def expand(data: dict[str, Any]) -> dict[str, Any]:
        """Add the job's scheduler, shard and worker nodes to a TOML-shaped dict."""
        if "model" not in data:
            raise TopologyError("model", "missing required table [model] for a [job]")
        job = ModelParallelJob.validate(dict(data["job"]), "job")
        model = _problem(dict(data["model"]), "model")
        default = registry.resolve("problem", model["kind"]).schedule
        schedule = ScheduleSection.validate(
            {"kind": default, **dict(data.get("schedule", {}))}, "schedule"
        )
        protocol = ProtocolSection.validate(dict(data.get("protocol", {"kind": "bsp"})), "protocol")
        dp = {**job, "slowdown": {}, "jitter_s": 0.0, "transient_p": 0.0}
        nodes = training_nodes(dp, model, {}, {"kind": "sgd", "lr": 1.0}, protocol)
        for node in nodes:
            for actor in node["actor"]:
                if actor["kind"] == "scheduler":
                    actor["kind"] = "mp_scheduler"
                    actor["args"]["schedule"] = schedule
                    del actor["args"]["data"], actor["args"]["optimizer"]
                elif actor["kind"] == "worker":
                    actor["kind"] = "mp_worker"
        declared = {n.get("name") for n in data.get("node", []) if isinstance(n, dict)}
        extra = [n for n in nodes if n["name"] not in declared]
        return {**data, "node": [*data.get("node", []), *extra]}


class ScheduleSection:
    """``[schedule]``: ``kind`` (``priority``, ``random``, ``rotation`` or
    ``pkg.mod:Class``; the problem's own by default) and its options, checked by the
    schedule's class."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        if "kind" not in table:  # the problem's own: the job checks it against that
            return dict(table)
        out = dict(table)
        kind = out["kind"]
        known = registry.known("schedule")
        if not isinstance(kind, str) or (kind not in known and ":" not in kind):
            raise TopologyError(
                f"{path}.kind",
                f"unknown schedule {kind!r} (expected one of: {', '.join(known)}"
                ", or 'pkg.module:Class')",
            )
        try:
            cls = registry.resolve("schedule", kind)
        except UnknownKind as exc:
            raise TopologyError(f"{path}.kind", str(exc)) from None
        check_options(cls, {k: v for k, v in out.items() if k != "kind"}, path)
        return out
