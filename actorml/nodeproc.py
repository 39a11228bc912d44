"""What runs inside one node process (``actorml node NAME``).

The process listens, says hello to the launcher, waits for the cluster directory,
starts its actors under the node's root supervisor, reports ready and beats until
the launcher orders a shutdown; then it stops its actors in reverse order and exits.
It dies with the launcher: ``PR_SET_PDEATHSIG`` is set when it is spawned, and it
also exits if its parent changes.

A node started on another host (by hand, or by Kubernetes, Slurm, systemd) is given
no incarnation: it first asks the launcher to let it join (`NodeJoin`, retried until
the launcher answers or ``ready_timeout_s`` passes) and takes the incarnation it is
given; then it goes on as above.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import structlog
import trio

from . import registry
from .actor import run_actor
from .control import JUDGED_DEAD, NodeControl
from .errors import AskTimeout, NodeUnreachable, SupervisorGaveUp
from .log import configure_logging
from .logship import LogShipper
from .messages import (
    LAUNCHER,
    LAUNCHER_NODE,
    Heartbeat,
    NodeGaveUp,
    NodeHello,
    NodeIdle,
    NodeJoin,
    NodeReady,
)
from .node import Node
from .nodestart import actor_child, node_address, placement, warn_if_insecure
from .supervisor import Supervisor
from .topology import Topology
from .transport import NngTransport, TLSCredentials

__all__ = ["EXIT_GAVE_UP", "EXIT_JUDGED_DEAD", "run_node_process"]

EXIT_GAVE_UP = 3
EXIT_JUDGED_DEAD = 4  # the launcher judged it dead: its engine should start it again


async def run_node_process(
    topology: Topology,
    name: str,
    *,
    launcher_address: str,
    run_dir: Path,
    socket_dir: Path,
    incarnation: int | None,
    tls: TLSCredentials | None = None,
    listen: str | None = None,
) -> int:
    """Serve node ``name`` until the launcher says stop; returns the exit status.

    Args:
        incarnation: given by the launcher that started this process; None to join
            (ask the launcher for one).
        tls: the node's own certificate, key and the cluster CA, for ``tls+tcp://``.
        listen: where to listen instead of the topology's address for the node (a
            node that comes back on another host).

    Raises:
        RemoteError: the launcher refused to let it join (``Refused``).
        TooSlowError: no launcher answered within ``ready_timeout_s``.
    """
    # What this node may import is what its topology names: nothing a message says.
    registry.seal(kind for kind in topology.named_kinds() if ":" in kind)
    cluster = topology.cluster
    spec = topology.node(name)
    # A node on another host also sends its lines to the launcher's logs/.
    shipper = LogShipper() if incarnation is None else None
    configure_logging(
        node=name,
        log_file=run_dir / "logs" / f"{name}.jsonl",
        level=cluster.log_level,
        console_level="warning",
        tap=None if shipper is None else shipper.tap,
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
        listen or node_address(topology, name, socket_dir),
        directory={LAUNCHER_NODE: launcher_address},
        placement=placement(topology),
        incarnation=incarnation or 1,
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
        if incarnation is None:
            incarnation = await _join(node, cluster.ready_timeout_s, cluster.ask_timeout_s)
            node.assume_incarnation(incarnation)
            log = log.bind(incarnation=incarnation)
            node.log = log
            log.info("node_joined", launcher=launcher_address)
            assert shipper is not None
            nursery.start_soon(shipper.run, node)
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
        if control.shutdown_reason == JUDGED_DEAD:
            status = EXIT_JUDGED_DEAD
        with trio.move_on_after(_stop_budget(spec.actors)):
            await supervisor.shutdown()
        if shipper is not None:
            with trio.move_on_after(1.0):  # its last lines, while the launcher waits
                await shipper.send(node)
        with trio.move_on_after(2.0):  # the launcher may be gone: do not wait for it
            for promise in control.stopped:
                await promise.resolve(None)  # the launcher may stop the next node now
        nursery.cancel_scope.cancel()
    return status


async def _join(node: Node, within_s: float, ask_timeout_s: float) -> int:
    """Ask the launcher for this process's incarnation, again until it answers (it may
    not be up yet: engines start processes in any order)."""
    join = NodeJoin(node.name, node.address, os.getpid(), secrets.randbits(62))
    with trio.fail_after(within_s):
        while True:
            try:
                joined = await node.ask(LAUNCHER, join, timeout=min(ask_timeout_s, 2.0))
                return int(joined.incarnation)  # a NodeJoined
            except (AskTimeout, NodeUnreachable) as exc:
                where = node.directory[LAUNCHER_NODE]
                node.log.info("launcher_unanswered", launcher=where, error=str(exc))


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
