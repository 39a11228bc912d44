"""The conversation between the launcher and its node processes.

Each node process runs a ``_node`` actor that learns the cluster's directory and
hears the order to shut down; the launcher runs a ``_launcher`` actor that hears
nodes join, say hello, become ready, beat, go idle, give up, or finish the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from .actor import Actor, Promise, handler
from .errors import Refused
from .messages import (
    Directory,
    GetStats,
    Heartbeat,
    JobComplete,
    LogLines,
    NodeDown,
    NodeGaveUp,
    NodeHello,
    NodeIdle,
    NodeJoin,
    NodeJoined,
    NodeReady,
    Shutdown,
    Stats,
)
from .node import Node

__all__ = ["JUDGED_DEAD", "LauncherControl", "NodeControl"]

# The reason of a `Shutdown` sent to a node on another host that the launcher judged
# dead while it still ran (hung for a while, or cut off): it exits with a failure, so
# its engine starts it again and it rejoins with a new incarnation.
JUDGED_DEAD = "judged dead"


@attrs.define(eq=False)
class NodeControl(Actor):
    """The ``_node`` actor of a node process."""

    node: Node
    restarts: Callable[[], dict[str, int]] = dict
    directory_ready: trio.Event = attrs.field(factory=trio.Event)
    shutdown_requested: trio.Event = attrs.field(factory=trio.Event)
    shutdown_reason: str = ""
    stopped: list[Promise] = attrs.field(factory=list)

    @handler
    async def directory(self, msg: Directory) -> None:
        for name, address in msg.addresses.items():
            if name != self.node.name:
                self.node.set_peer(name, address)
        self.node.placement.update(msg.placement)
        self.directory_ready.set()
        await self.node.deliver_held()

    @handler
    async def shutdown(self, msg: Shutdown) -> Promise:
        """Answered once this node's actors have all stopped (see ``run_node_process``)."""
        self.shutdown_reason = msg.reason
        self.shutdown_requested.set()
        promise = self.ctx.promise()
        self.stopped.append(promise)
        return promise

    @handler
    async def node_down(self, msg: NodeDown) -> None:
        self.node.log.warning("peer_down", peer=msg.node, reason=msg.reason)
        self.node.mark_down(msg.node)
        for ref in self.node.local_handlers(NodeDown):
            if ref.name != self.ctx.ref.name:
                await self.node.tell(ref, msg)

    @handler
    async def stats(self, msg: GetStats) -> Stats:
        counters = self.node.stats.counters()
        return Stats(self.node.name, self.node.incarnation, counters, self.restarts())


@attrs.define(eq=False)
class LauncherControl(Actor):
    """The ``_launcher`` actor: forwards what nodes report to the launcher's handler,
    and a join to the launcher's ``join`` (which answers it, or raises `Refused`)."""

    report: Callable[[Any], None]
    join: Callable[[NodeJoin], Awaitable[NodeJoined]] | None = None

    @handler
    async def joining(self, msg: NodeJoin) -> NodeJoined:
        if self.join is None:
            raise Refused(f"node {msg.node!r} cannot join: this cluster takes no joins")
        return await self.join(msg)

    @handler
    async def hello(self, msg: NodeHello) -> None:
        self.report(msg)

    @handler
    async def ready(self, msg: NodeReady) -> None:
        self.report(msg)

    @handler
    async def idle(self, msg: NodeIdle) -> None:
        self.report(msg)

    @handler
    async def gave_up(self, msg: NodeGaveUp) -> None:
        self.report(msg)

    @handler
    async def beat(self, msg: Heartbeat) -> None:
        self.report(msg)

    @handler
    async def complete(self, msg: JobComplete) -> None:
        self.report(msg)

    @handler
    async def log_lines(self, msg: LogLines) -> None:
        self.report(msg)
