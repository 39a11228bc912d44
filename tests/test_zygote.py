"""Node processes forked from a pre-warmed template, and the plain start behind it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import attrs
import pytest
import trio

from actorml.launch import open_cluster
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, SupervisorSpec, Topology
from tests.cluster_actors import Draw, Drawn, Get, Total
from tests.processes import up_until_ready
from tests.test_launch import _alive, _ask_through_restart

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_root")]

ROOT = Path(__file__).resolve().parent.parent
COUNTER = "tests.cluster_actors:Counter"


def _topology(tmp_path: Path, *extra: ActorSpec) -> Topology:
    return Topology(
        cluster=ClusterSpec(
            name="z",
            run_dir=str(tmp_path / "runs"),
            heartbeat_interval_s=0.2,
            heartbeat_deadline_s=5.0,
            supervisor=SupervisorSpec(max_restarts=3, within_s=60.0),
        ),
        nodes=(
            NodeSpec(name="n1", actors=(ActorSpec(name="c1", kind=COUNTER), *extra)),
            NodeSpec(name="n2", actors=(ActorSpec(name="c2", kind=COUNTER),)),
        ),
    )


def _launcher_events(cluster_run_dir: Path) -> list[dict]:
    path = cluster_run_dir / "logs" / "launcher.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestTemplate:
    async def test_nodes_are_forked_children_of_the_launcher(self, tmp_path: Path) -> None:
        """Each node is forked from the template, then becomes the launcher's own child
        with the plain command's title; a restart is forked too."""
        with trio.fail_after(120):
            async with open_cluster(_topology(tmp_path)) as cluster:
                template = cluster.template
                assert template is not None
                pids = {name: cluster.pid(name) for name in ("n1", "n2")}
                assert set(pids.values()) <= set(template.forked)
                for name, pid in pids.items():
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    assert int(stat[1]) == os.getpid()  # ppid: this process, the launcher
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    assert f"-m actorml node {name} --topology ".encode() in title
                total: Total = await cluster.ask("c1", Get())
                assert total.pid == pids["n1"]
                os.kill(pids["n1"], signal.SIGKILL)
                while cluster.node_restarts.get("n1", 0) < 1:
                    await trio.sleep(0.05)
                again: Total = await _ask_through_restart(cluster, "c1", Get())
                assert again.pid != pids["n1"] and again.pid in template.forked
            assert not any(_alive(pid) for pid in template.forked)
            assert not _alive(template.process.pid)

    async def test_each_forked_node_draws_its_own_random_numbers(self, tmp_path: Path) -> None:
        """Forked from one template, the nodes are reseeded: no two draw alike."""
        with trio.fail_after(120):
            async with open_cluster(_topology(tmp_path)) as cluster:
                a: Drawn = await cluster.ask("c1", Draw())
                b: Drawn = await cluster.ask("c2", Draw())
        assert a.python != b.python and a.numpy != b.numpy

    async def test_a_dead_template_falls_back_to_plain_starts(self, tmp_path: Path) -> None:
        """kill -9 of the template: the cluster goes on, restarts start plainly, once
        warned."""
        with trio.fail_after(120):
            async with open_cluster(_topology(tmp_path)) as cluster:
                template = cluster.template
                assert template is not None
                template.process.kill()
                await template.process.wait()
                old = cluster.pid("n2")
                assert old is not None
                os.kill(old, signal.SIGKILL)
                while cluster.node_restarts.get("n2", 0) < 1:
                    await trio.sleep(0.05)
                total: Total = await _ask_through_restart(cluster, "c2", Get())
                assert total.pid not in (old, *template.forked)
                assert cluster.template is None
                await trio.sleep(0)
            warnings = [
                e for e in _launcher_events(cluster.run_dir) if e["event"] == "template_unavailable"
            ]
            assert len(warnings) == 1, warnings
            assert not _alive(total.pid)

    async def test_a_template_with_a_thread_alive_refuses_to_fork(self, tmp_path: Path) -> None:
        """A kind whose import starts a thread makes forking unsafe: the template says so
        and every node starts plainly."""
        idle = ActorSpec(name="idle", kind="tests.threaded_kind:Idle")
        with trio.fail_after(120):
            async with open_cluster(_topology(tmp_path, idle)) as cluster:
                assert cluster.template is None
                total: Total = await cluster.ask("c1", Get())
                assert total.pid == cluster.pid("n1")
            [warning] = [
                e for e in _launcher_events(cluster.run_dir) if e["event"] == "template_unavailable"
            ]
            assert "threads alive" in warning["error"]

    async def test_prewarm_off_starts_plainly(self, tmp_path: Path) -> None:
        topology = _topology(tmp_path)
        topology = attrs.evolve(topology, cluster=attrs.evolve(topology.cluster, prewarm=False))
        with trio.fail_after(120):
            async with open_cluster(topology) as cluster:
                assert cluster.template is None
                total: Total = await cluster.ask("c1", Get())
                assert total.pid == cluster.pid("n1")


class TestCommand:
    def test_forked_nodes_die_with_a_killed_launcher(self, tmp_path: Path) -> None:
        """kill -9 of `actorml up`: its forked nodes and its template follow it."""
        topology = tmp_path / "t.toml"
        topology.write_text(
            f'[cluster]\nname = "zk"\nrun_dir = "{tmp_path}"\n'
            f'[[node]]\nname = "zk-a"\n[[node.actor]]\nname = "c"\nkind = "{COUNTER}"\n'
        )
        proc, node = up_until_ready(topology, "zk-a", tmp_path)
        template = subprocess.run(
            ["pgrep", "-P", str(proc.pid), "-f", "actorml.zygote"], capture_output=True, text=True
        ).stdout.split()
        assert len(template) == 1
        stat = Path(f"/proc/{node}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == proc.pid
        proc.kill()
        proc.communicate(timeout=30)
        until = time.monotonic() + 30
        while (_alive(node) or _alive(int(template[0]))) and time.monotonic() < until:
            time.sleep(0.05)
        assert not _alive(node) and not _alive(int(template[0]))


class Boom:
    """A section whose warm-up fails."""

    @staticmethod
    def warm(tables: dict) -> None:
        raise RuntimeError("cannot warm this")


@pytest.mark.usefixtures("registry_copy")
def test_a_section_that_fails_to_warm_is_skipped_not_fatal() -> None:
    """Warming is an optimisation: a section's failing warm-up is reported, and the
    template still serves (the nodes load what is missing themselves)."""
    from actorml import registry
    from actorml.zygote import _warm

    registry.register("section", "boom", Boom)
    assert _warm({"kinds": [], "tables": {"boom": {}, "cluster": {}}}) == [
        "Boom.warm: RuntimeError: cannot warm this"
    ]
