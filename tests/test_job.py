"""The training sections ([job], [model], [optimizer], [protocol]): each value is checked
once, by the class that uses it, and reported at its key with file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from actorml import registry
from actorml.actors.job import JobConfig
from actorml.protocols import ConsistencyProtocol
from actorml.topology import Topology, TopologyError, check_topology


@attrs.define(eq=False)
class FixedGate(ConsistencyProtocol):
    """A user protocol that fixes its own staleness: it takes none from [protocol]."""

    staleness: float = attrs.field(default=1, init=False)


@attrs.define(eq=False)
class Tunable(ConsistencyProtocol):
    """A user protocol that takes a staleness (the contract's field, default 0)."""


def exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def job(**sections: Any) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "job"},
            "job": {"workers": 2, "shards": 1},
            "data": {"source": "generated:classification"},
            "model": {"kind": "logreg"},
            **sections,
        }
    )


def protocol_actor(topology: Topology) -> tuple[str, dict[str, Any]]:
    _, actor = topology.actor("protocol")
    return actor.kind, dict(actor.args)


JOB_FILE = """\
[cluster]
name = "job"

[job]
workers = 2

[data]
source = "generated:classification"

[model]
kind = "logreg"

[protocol]
kind = "{kind}"
staleness = {staleness}
"""


class TestProtocolSection:
    def test_a_protocol_without_staleness_gets_none(self) -> None:
        """A protocol class with no staleness init field is given none, even if the file
        names one (switching protocols is one line)."""
        t = job(protocol={"kind": f"{__name__}:FixedGate", "staleness": 4})
        kind, args = protocol_actor(t)
        assert kind == f"{__name__}:FixedGate"
        assert "staleness" not in args
        assert check_topology(t) == []

    def test_a_protocol_with_staleness_gets_it(self) -> None:
        """A protocol class with a staleness init field gets the file's value, or its own
        default when the file names none."""
        assert (
            protocol_actor(job(protocol={"kind": f"{__name__}:Tunable", "staleness": 4}))[1][
                "staleness"
            ]
            == 4
        )
        t = job(protocol={"kind": f"{__name__}:Tunable"})
        assert protocol_actor(t)[1]["staleness"] == 0
        assert t.extra["protocol"] == {"kind": f"{__name__}:Tunable", "staleness": 0}
        assert check_topology(t) == []

    def test_builtins_read_staleness_from_their_class(self) -> None:
        """ssp and essp take a staleness (default 3); bsp and asp take none."""
        assert protocol_actor(job())[1]["staleness"] == 3
        assert protocol_actor(job(protocol={"kind": "essp", "staleness": 1}))[1]["staleness"] == 1
        for kind in ("bsp", "asp"):
            assert "staleness" not in protocol_actor(job(protocol={"kind": kind}))[1]

    @pytest.mark.parametrize(
        ("staleness", "problem"),
        [
            ("-1", "expected a non-negative integer, got integer -1"),
            ('"3"', "expected an integer, got string '3'"),
            ("1.5", "expected an integer, got float 1.5"),
        ],
    )
    def test_bad_staleness_is_reported_once_at_its_line(
        self, tmp_path: Path, staleness: str, problem: str
    ) -> None:
        """A bad staleness is one error, at protocol.staleness with file and line."""
        path = tmp_path / "topology.toml"
        path.write_text(JOB_FILE.format(kind="essp", staleness=staleness))
        with pytest.raises(TopologyError, match=exact(f"{path}:15: protocol.staleness: {problem}")):
            Topology.from_toml(path)

    def test_bad_staleness_of_a_user_protocol(self, tmp_path: Path) -> None:
        """A user protocol's staleness is checked by the same field validator."""
        path = tmp_path / "topology.toml"
        path.write_text(JOB_FILE.format(kind=f"{__name__}:Tunable", staleness=-2))
        msg = f"{path}:15: protocol.staleness: expected a non-negative integer, got integer -2"
        with pytest.raises(TopologyError, match=exact(msg)):
            Topology.from_toml(path)

    def test_unknown_protocol_and_option(self) -> None:
        """An unknown protocol names the registered ones; an unknown option the valid ones."""
        msg = (
            "<dict>: protocol.kind: unknown protocol 'sssp' (expected one of: asp, bsp, essp, "
            "ssp, or 'pkg.module:Class')"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            job(protocol={"kind": "sssp"})
        msg = (
            "<dict>: protocol.stale: unknown option (did you mean 'staleness'?) "
            "(valid options: kind, staleness)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            job(protocol={"stale": 1})

    @pytest.mark.parametrize(
        ("protocol", "has"), [({"kind": "bsp"}, "0"), ({"kind": "ssp", "staleness": 0}, "0")]
    )
    def test_overlap_needs_staleness(self, protocol: dict[str, Any], has: str) -> None:
        """overlap reads one clock behind the worker's own updates: refused under a gate
        of staleness 0, naming the key and the fix; accepted from staleness 1 and ASP."""
        msg = (
            f"<dict>: job.overlap: needs a protocol with staleness >= 1 ('{protocol['kind']}' "
            f"has {has}): a worker computes its next clock while its last push is in flight, "
            'so it reads one clock behind its own updates; use [protocol] kind = "ssp" with '
            "staleness >= 1, or remove overlap"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            job(job={"workers": 2, "shards": 1, "overlap": True}, protocol=protocol)
        for fine in ({"kind": "ssp", "staleness": 1}, {"kind": "asp"}):
            job(job={"workers": 2, "shards": 1, "overlap": True}, protocol=fine)

    def test_new_builtin_protocol_gets_staleness(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A protocol registered by name (as a new built-in would be) gets its staleness."""
        monkeypatch.setattr(registry, "_groups", {g: dict(e) for g, e in registry._groups.items()})
        registry.register("protocol", "tunable", Tunable)
        _, args = protocol_actor(job(protocol={"kind": "tunable", "staleness": 2}))
        assert args["staleness"] == 2


class TestJobConfig:
    def test_defaults(self) -> None:
        """[job] defaults are JobConfig's."""
        assert job().extra["job"] == {**attrs.asdict(JobConfig()), "workers": 2, "shards": 1}

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            ({"workers": 0}, "job.workers: expected an integer from 1 to 1024, got integer 0"),
            ({"seed": -1}, "job.seed: expected a non-negative integer, got integer -1"),
            ({"progress": 1}, "job.progress: expected true or false, got integer 1"),
            (
                {"target_accuracy": 1.5},
                "job.target_accuracy: expected a number from 0 to 1, got float 1.5",
            ),
            ({"slowdown": {"worker-9": 2.0}}, "job.slowdown.worker-9: no worker 'worker-9' "
             "(workers: worker-0, worker-1)"),
            ({"slowdown": {"worker-1": 0.5}}, "job.slowdown.worker-1: expected a number >= 1, "
             "got float 0.5"),
            (
                {"replication": 2, "shards": 1},
                "job.replication: expected 1 (no backup) or 2 (a backup of each shard on another "
                "shard's node, which needs shards >= 2), got 2 with 1 shards",
            ),
            ({"workerz": 2}, "job.workerz: unknown option (did you mean 'workers'?) (valid "
             "options: batch_size, batches_per_clock, epochs, eval_every_clocks, jitter_s, "
             "overlap, progress, replication, seed, shards, shared_memory, slowdown, "
             "snapshot_every_clocks, target_accuracy, transient_factor, transient_p, "
             "wait_timeout_s, workers)"),
        ],
    )  # fmt: skip
    def test_bad_values_name_the_key(self, table: dict[str, Any], message: str) -> None:
        """Each bad [job] value is reported at its key with what would be valid."""
        with pytest.raises(TopologyError, match=exact(f"<dict>: {message}")):
            job(job={"workers": 2, "shards": 1, **table})

    def test_transient_stragglers_reach_every_worker(self) -> None:
        """[job] transient_p and transient_factor become every worker's arguments; a job
        without them gives the workers none. The protocol passes progress on to the
        scheduler."""
        t = job(job={"workers": 2, "shards": 1, "transient_p": 0.1, "transient_factor": 4.0})
        for name in ("worker-0", "worker-1"):
            _, actor = t.actor(name)
            assert (actor.args["transient_p"], actor.args["transient_factor"]) == (0.1, 4.0)
        _, actor = job().actor("worker-0")
        assert "transient_p" not in actor.args
        assert protocol_actor(t)[1]["reports_to"] == "scheduler"

    def test_python_construction_checks_too(self) -> None:
        """JobConfig built in Python runs the same validators."""
        with pytest.raises(
            ValueError, match=exact("workers: expected an integer from 1 to 1024, got integer 0")
        ):
            JobConfig(workers=0)


class TestModelAndOptimizer:
    @pytest.mark.parametrize(
        ("sections", "message"),
        [
            ({"model": {"kind": "ridge"}}, "model.kind: unknown model kind 'ridge' (expected one "
             "of: logreg, mlp, softmax, svm, or 'package.module:Class')"),
            ({"model": {"kind": "mlp", "hiden": 3}}, "model.hiden: unknown option (did you mean "
             "'hidden'?) (valid options: activation, hidden, l2, sparse)"),
            ({"model": {"kind": "mlp", "hidden": 0}},
             "model.hidden: hidden must be a positive integer, got 0"),
            ({"optimizer": {"kind": "adadelta"}}, "optimizer.kind: unknown optimizer 'adadelta' "
             "(expected one of: adagrad, adam, rmsprop, sgd)"),
            ({"optimizer": {"lr": 0}}, "optimizer.lr: lr must be a finite number > 0, got 0.0"),
            ({"optimizer": {"kind": "adam", "momentum": 0.9}}, "optimizer.momentum: unknown "
             "option (valid options: beta1, beta2, eps, lr)"),
        ],
    )  # fmt: skip
    def test_options_are_checked_by_their_class(
        self, sections: dict[str, Any], message: str
    ) -> None:
        """[model] and [optimizer] are resolved through the registry and checked by the class."""
        with pytest.raises(TopologyError, match=exact(f"<dict>: {message}")):
            job(**sections)

    def test_dotted_path_model(self) -> None:
        """A model named by dotted path is checked like a registered one."""
        kind = "actorml.models.mlp:MLP"
        assert job(model={"kind": kind, "hidden": 3}).extra["model"] == {"kind": kind, "hidden": 3}
        with pytest.raises(TopologyError, match=r"^<dict>: model\.hidden: hidden must be a pos"):
            job(model={"kind": kind, "hidden": -3})
