"""A whole topology inside one trio program: every node in-process.

The nodes still talk through a transport (the in-memory one from
:mod:`actorml.testing`, with its fault injector, or real nng sockets), always through
the codec, and each node still runs its actors under its own root supervisor. Tests
use it to watch a job from the inside (the actor instances are at hand) and
deterministically; the real thing is :func:`actorml.open_cluster`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from .actor import Actor, run_actor
from .control import LauncherControl
from .groups import sole
from .messages import LAUNCHER_NODE, ActorRef, JobComplete
from .node import Node
from .nodestart import actor_child, placement
from .supervisor import Supervisor
from .topology import Topology
from .transport import Transport

__all__ = ["LocalCluster", "open_local_cluster"]


@attrs.define(eq=False)
class LocalCluster:
    """The nodes of a topology running in this process."""

    topology: Topology
    nodes: dict[str, Node]
    supervisors: dict[str, Supervisor]
    host: Node
    actors: dict[str, Actor] = attrs.field(factory=dict)
    """The current instance of every actor, by name (replaced when one restarts)."""
    result: dict[str, Any] | None = None
    completed: trio.Event = attrs.field(factory=trio.Event)

    async def tell(self, target: ActorRef | str, msg: object) -> None:
        await self.host.tell(target, msg)

    async def ask(self, target: ActorRef | str, msg: object, timeout: float | None = None) -> Any:
        return await self.host.ask(target, msg, timeout=timeout)

    async def wait(self) -> dict[str, Any]:
        """Wait for an actor's ``ctx.complete()`` and return its summary."""
        await self.completed.wait()
        return dict(self.result or {})

    def _report(self, msg: Any) -> None:
        if isinstance(msg, JobComplete) and self.result is None:
            self.result = {"completed_by": msg.actor.name, **msg.result}
            self.completed.set()


@asynccontextmanager
async def open_local_cluster(
    topology: Topology,
    transport: Callable[[str, str], Transport],
    *,
    addresses: dict[str, str] | None = None,
    run_dir: Path | None = None,
) -> AsyncIterator[LocalCluster]:
    """Run every node of ``topology`` in this trio program over ``transport``.

    Args:
        transport: ``(node name, address) -> Transport`` for each node, e.g.
            ``lambda name, address: network.transport(address)`` for a MemoryNetwork.
        addresses: node name -> listen address (default ``mem://NAME``).
        run_dir: where actors write their files (metrics, results), if anywhere.

    Leaving the block stops every node's actors in reverse order, then the nodes.
    """
    names = [LAUNCHER_NODE, *(n.name for n in topology.nodes)]
    addresses = {n: f"mem://{n}" for n in names} | (addresses or {})
    where = placement(topology)
    cluster_spec = topology.cluster

    def make(name: str) -> Node:
        return Node(
            name, transport(name, addresses[name]), addresses[name], placement=dict(where),
            ask_timeout_s=cluster_spec.ask_timeout_s, send_timeout_s=cluster_spec.ask_timeout_s,
            run_dir=run_dir,
        )  # fmt: skip

    host = make(LAUNCHER_NODE)
    nodes = {n.name: make(n.name) for n in topology.nodes}
    cluster = LocalCluster(topology, nodes, {}, host)
    try:
        async with trio.open_nursery() as nursery:
            for node in (host, *nodes.values()):
                node.address = await nursery.start(node.serve)
            bound = {node.name: node.address for node in (host, *nodes.values())}
            for node in (host, *nodes.values()):
                for peer, address in bound.items():
                    if peer != node.name:
                        node.set_peer(peer, address)
            control = LauncherControl(cluster._report)
            await nursery.start(run_actor, host, "_launcher", lambda: control, 1024)
            for spec in topology.nodes:
                node = nodes[spec.name]
                children = [
                    actor_child(
                        node, a, cluster_spec.mailbox_size, on_create=cluster.actors.__setitem__
                    )
                    for a in spec.actors
                ]
                sup = Supervisor(
                    name=spec.name, children=children, strategy=spec.supervisor.strategy,
                    max_restarts=spec.supervisor.max_restarts, within_s=spec.supervisor.within_s,
                )  # fmt: skip
                cluster.supervisors[spec.name] = sup
                await nursery.start(sup.run)
            try:
                yield cluster
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    for name in reversed(list(cluster.supervisors)):
                        await cluster.supervisors[name].shutdown()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise sole(group) from None
