"""Starting a node from a topology: where nodes listen, where actors live, actor children."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from actorml import Actor, Restart, Supervisor
from actorml.messages import LAUNCHER_NODE
from actorml.node import Node
from actorml.nodestart import actor_child, node_address, placement
from actorml.testing import MemoryNetwork
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, Topology
from tests.cluster_actors import Add, Crash, Get

COUNTER = "tests.cluster_actors:Counter"


def _topology(**cluster: object) -> Topology:
    return Topology(
        cluster=ClusterSpec(name="t", **cluster),  # type: ignore[arg-type]
        nodes=(
            NodeSpec(name="n1", actors=(ActorSpec(name="a", kind=COUNTER),)),
            NodeSpec(
                name="n2",
                actors=(ActorSpec(name="b", kind=COUNTER), ActorSpec(name="c", kind=COUNTER)),
            ),
            NodeSpec(name="n3", address="tcp://10.0.0.3:9000"),
        ),
    )


class TestNodeAddress:
    def test_ipc_socket_per_node_in_the_socket_dir(self, tmp_path: Path) -> None:
        """Over ipc each node, and the launcher, listens on NAME.sock in the socket dir."""
        topology = _topology()
        assert node_address(topology, "n1", tmp_path) == f"ipc://{tmp_path}/n1.sock"
        assert node_address(topology, LAUNCHER_NODE, tmp_path) == (
            f"ipc://{tmp_path}/{LAUNCHER_NODE}.sock"
        )

    def test_tcp_ports_follow_topology_order(self, tmp_path: Path) -> None:
        """With a base port the launcher takes it and node i takes base_port + 1 + i."""
        topology = _topology(transport="tcp", host="127.0.0.2", base_port=7000)
        assert node_address(topology, LAUNCHER_NODE, tmp_path) == "tls+tcp://127.0.0.2:7000"
        assert node_address(topology, "n1", tmp_path) == "tls+tcp://127.0.0.2:7001"
        assert node_address(topology, "n2", tmp_path) == "tls+tcp://127.0.0.2:7002"

    def test_tcp_without_base_port_asks_for_any_port(self, tmp_path: Path) -> None:
        """Without a base port a node binds port 0 and reports the port it got."""
        topology = _topology(transport="tcp")
        assert node_address(topology, "n2", tmp_path) == "tls+tcp://127.0.0.1:0"

    def test_explicit_address_wins(self, tmp_path: Path) -> None:
        """A node's own address in the topology is used as given."""
        assert node_address(_topology(), "n3", tmp_path) == "tcp://10.0.0.3:9000"

    def test_tcp_is_tls_unless_insecure(self, tmp_path: Path) -> None:
        """On a tcp cluster an explicit tcp:// address becomes tls+tcp://; with
        insecure = true every address stays plain tcp."""
        secure = _topology(transport="tcp")
        assert node_address(secure, "n3", tmp_path) == "tls+tcp://10.0.0.3:9000"
        insecure = _topology(transport="tcp", insecure=True)
        assert node_address(insecure, "n1", tmp_path) == "tcp://127.0.0.1:0"
        assert node_address(insecure, "n3", tmp_path) == "tcp://10.0.0.3:9000"


def test_placement_names_every_actors_node() -> None:
    """placement maps each actor of the topology to the node that runs it."""
    assert placement(_topology()) == {"a": "n1", "b": "n2", "c": "n2"}


class TestActorChild:
    def test_child_takes_the_specs_policy(self) -> None:
        """The child is named after the actor and keeps its restart type and stop budget."""
        node = Node("n1", MemoryNetwork(seed=0).transport(), "mem://n1")
        spec = ActorSpec(name="a", kind=COUNTER, restart="transient", shutdown_timeout_s=2.5)
        child = actor_child(node, spec, 16)
        assert (child.name, child.restart, child.shutdown_timeout_s) == (
            "a",
            Restart.TRANSIENT,
            2.5,
        )

    async def test_runs_the_kind_with_its_args_and_reports_each_incarnation(self) -> None:
        """The child builds the actor from its kind and args, anew on every restart."""
        node = Node("n1", MemoryNetwork(seed=0).transport(), "mem://n1", placement={"a": "n1"})
        created: list[tuple[str, Actor]] = []
        spec = ActorSpec(name="a", kind=COUNTER, args={"start": 40})
        supervisor = Supervisor(
            name="n1",
            children=[actor_child(node, spec, 16, on_create=lambda n, a: created.append((n, a)))],
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await node.tell("a", Add(2))
            first = await node.ask("a", Get(), timeout=5.0)
            await node.tell("a", Crash())
            with trio.fail_after(5.0):
                while len(created) < 2:
                    await trio.sleep(0.01)
            second = await node.ask("a", Get(), timeout=5.0)
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()
        assert (first.value, second.value) == (42, 40)
        assert second.incarnation > first.incarnation
        assert [name for name, _ in created] == ["a", "a"]
        assert created[0][1] is not created[1][1]

    def test_unknown_kind_fails_when_the_child_is_made(self) -> None:
        """A kind that does not resolve is an error before anything starts."""
        node = Node("n1", MemoryNetwork(seed=0).transport(), "mem://n1")
        with pytest.raises(LookupError, match=r"^unknown actor kind 'nope' "):
            actor_child(node, ActorSpec(name="a", kind="nope"), 16)
