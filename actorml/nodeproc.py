"""What runs inside one node process (``actorml node NAME``).

The process listens, says hello to the launcher, waits for the cluster directory,
starts its actors under the node's root supervisor, reports ready and beats until
the launcher orders a shutdown; then it stops its actors in reverse order and exits.
It dies with the launcher: ``PR_SET_PDEATHSIG`` is set when it is spawned, and it
also exits if its parent changes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import structlog
import trio

from . import registry
from .actor import run_actor
from .control import NodeControl
from .errors import SupervisorGaveUp
from .log import configure_logging
from .messages import LAUNCHER, LAUNCHER_NODE, Heartbeat, NodeGaveUp, NodeHello, NodeIdle, NodeReady
from .node import Node
from .nodestart import actor_child, node_address, placement, warn_if_insecure
from .supervisor import Supervisor
from .topology import Topology
from .transport import NngTransport, TLSCredentials

__all__ = ["EXIT_GAVE_UP", "run_node_process"]

EXIT_GAVE_UP = 3


async def run_node_process(
    topology: Topology,
    name: str,
    *,
    launcher_address: str,
    run_dir: Path,
    socket_dir: Path,
    incarnation: int,
    tls: TLSCredentials | None = None,
) -> int:
    """Serve node ``name`` until the launcher says stop; returns the exit status.

    ``tls``: the node's own certificate, key and the cluster CA, for ``tls+tcp://``.
    """
    # What this node may import is what its topology names: nothing a message says.
    registry.seal(kind for kind in topology.named_kinds() if ":" in kind)
    cluster = topology.cluster
    spec = topology.node(name)
    configure_logging(
        node=name,
        log_file=run_dir / "logs" / f"{name}.jsonl",
        level=cluster.log_level,
        console_level="warning",
    )
    log = structlog.get_logger()
    warn_if_insecure(cluster, log)
    node = Node(
        name,
        NngTransport(
            recv_max_size=cluster.recv_max_size,
            tls=tls,
            # nng's pipe events, handed to trio: what a connection did, in the log.
            # (They run outside any task, so the node is bound by hand.)
            on_pipe_lost=lambda address: log.info("peer_pipe_lost", node=name, address=address),
            on_pipe_added=lambda address: log.info("peer_pipe_added", node=name, address=address),
        ),
        node_address(topology, name, socket_dir),
        directory={LAUNCHER_NODE: launcher_address},
        placement=placement(topology),
        incarnation=incarnation,
        ask_timeout_s=cluster.ask_timeout_s,
        send_timeout_s=cluster.ask_timeout_s,
        max_frame_size=cluster.recv_max_size,
        run_dir=run_dir,
        log=log,
    )
    supervisor = Supervisor(
        name=name,
        children=[actor_child(node, a, cluster.mailbox_size) for a in spec.actors],
        strategy=spec.supervisor.strategy,
        max_restarts=spec.supervisor.max_restarts,
        within_s=spec.supervisor.within_s,
    )
    control = NodeControl(node, restarts=lambda: dict(supervisor.restarts))
    status = 0
    parent = os.getppid()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.serve)
        await nursery.start(run_actor, node, "_node", lambda: control, 64)
        await node.tell(LAUNCHER, NodeHello(name, node.address, os.getpid(), incarnation))
        with trio.fail_after(cluster.ready_timeout_s):
            await control.directory_ready.wait()

        async def supervise(*, task_status: trio.TaskStatus[Supervisor]) -> None:
            nonlocal status
            try:
                await supervisor.run(task_status=task_status)
            except SupervisorGaveUp as exc:
                status = EXIT_GAVE_UP
                why = f"{exc} (last error: {exc.__cause__!r})" if exc.__cause__ else str(exc)
                log.error("node_gave_up", error=why)
                await node.tell(LAUNCHER, NodeGaveUp(name, incarnation, why))
                nursery.cancel_scope.cancel()
                with contextlib.suppress(RuntimeError):  # gave up while starting
                    task_status.started(supervisor)
                return
            await node.tell(LAUNCHER, NodeIdle(name, incarnation))

        await nursery.start(supervise)
        await node.tell(LAUNCHER, NodeReady(name, incarnation))
        log.info("node_ready", address=node.address, pid=os.getpid())
        nursery.start_soon(_beat, node, incarnation, cluster.heartbeat_interval_s, parent)
        await control.shutdown_requested.wait()
        log.info("node_stopping", reason=control.shutdown_reason)
        with trio.move_on_after(_stop_budget(spec.actors)):
            await supervisor.shutdown()
        with trio.move_on_after(2.0):  # the launcher may be gone: do not wait for it
            for promise in control.stopped:
                await promise.resolve(None)  # the launcher may stop the next node now
        nursery.cancel_scope.cancel()
    return status


def _stop_budget(actors: Any) -> float:
    return sum(a.shutdown_timeout_s for a in actors) + 1.0


async def _beat(node: Node, incarnation: int, interval: float, parent: int) -> None:
    beat = Heartbeat(node.name, incarnation)
    while True:
        if os.getppid() != parent:
            # The launcher is gone and PDEATHSIG did not reach us: leave too.
            os._exit(1)
        await node.tell(LAUNCHER, beat)
        await trio.sleep(interval)
