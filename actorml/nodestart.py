"""What starting a node takes from a topology: addresses, placement, supervised actors.

The launcher (:mod:`actorml.launch`), the in-process cluster (:mod:`actorml.local`) and
the node process itself (:mod:`actorml.nodeproc`) all start nodes from the same
:class:`~actorml.topology.Topology`; they agree on where each node listens, which node
runs which actor, and how an actor spec becomes a supervisor child by asking this
module.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import registry
from .actor import Actor, run_actor
from .messages import LAUNCHER_NODE
from .node import Node
from .supervisor import ChildSpec
from .topology import ActorSpec, ClusterSpec, Topology

__all__ = ["actor_child", "node_address", "node_environment", "placement", "warn_if_insecure"]

INSECURE_RISK = (
    "plain tcp: anyone who can reach a node's port can send it messages as any node, "
    "the launcher included (remove insecure = true to use mutual TLS)"
)


def node_address(topology: Topology, name: str, socket_dir: Path) -> str:
    """Where node ``name`` listens: an ipc socket in ``socket_dir``, or tcp.

    On tcp, a node listens on its ``host`` (the launcher's host if it names none).

    On a tcp cluster that is not ``insecure``, tcp is ``tls+tcp://`` (an explicit
    ``tcp://`` address too: the cluster's setting decides, not the address's spelling).
    """
    cluster = topology.cluster
    if name != LAUNCHER_NODE:
        explicit = topology.node(name).address
        if explicit:
            if cluster.tls and explicit.startswith("tcp://"):
                return f"tls+{explicit}"
            return explicit
    if cluster.transport == "tcp":
        scheme = "tls+tcp" if cluster.tls else "tcp"
        host = cluster.host if name == LAUNCHER_NODE else topology.node(name).host
        host = host or cluster.host
        if not cluster.base_port:
            return f"{scheme}://{host}:0"
        # The launcher takes base_port, node i (in topology order) base_port + 1 + i.
        names = [n.name for n in topology.nodes]
        offset = 0 if name == LAUNCHER_NODE else 1 + names.index(name)
        return f"{scheme}://{host}:{cluster.base_port + offset}"
    return f"ipc://{socket_dir}/{name}.sock"


def node_environment() -> dict[str, str]:
    """The environment a node process gets: the launcher's, and two settings more.

    A node imports actor kinds by dotted path: it may import what the launcher can.
    Many node processes share few cores: one BLAS/OpenMP thread each, unless the user
    chose otherwise (two threads per process made small products 30x slower).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *(p for p in sys.path if p)])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def warn_if_insecure(cluster: ClusterSpec, log: Any) -> None:
    """Say what ``insecure = true`` gives away, once, as the cluster or node starts."""
    if cluster.transport == "tcp" and cluster.insecure:
        log.warning("insecure_transport", risk=INSECURE_RISK)


def placement(topology: Topology) -> dict[str, str]:
    """Actor name -> node name for every actor of the topology."""
    return {a.name: n.name for n in topology.nodes for a in n.actors}


def actor_child(
    node: Node,
    spec: ActorSpec,
    default_mailbox: int,
    *,
    on_create: Callable[[str, Actor], object] | None = None,
) -> ChildSpec:
    """A supervisor child that runs the actor ``spec`` describes on ``node``.

    ``on_create(name, instance)`` is called with every new incarnation (tests use it).
    """
    cls = registry.resolve("actor", spec.kind)
    args = dict(spec.args)

    def factory() -> Actor:
        actor: Actor = cls(**args)
        if on_create is not None:
            on_create(spec.name, actor)
        return actor

    return ChildSpec(
        name=spec.name,
        start=functools.partial(
            run_actor, node, spec.name, factory, spec.mailbox_size or default_mailbox
        ),
        restart=spec.restart,
        shutdown_timeout_s=spec.shutdown_timeout_s,
        stop=functools.partial(node.stop_actor, spec.name),
    )
