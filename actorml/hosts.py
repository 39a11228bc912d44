"""Nodes on other hosts: how ``actorml node`` started there finds the launcher.

A topology says where a node runs with its ``host`` (see ``Topology.remote``); the
launcher starts only the nodes on its own host and waits for the others to join. This
module turns the few options a node started by hand or by an engine has (``--launcher``,
``--listen``) into the addresses it uses, with the topology's defaults filled in.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from .messages import LAUNCHER_NODE
from .nodestart import node_address
from .topology import Topology

__all__ = ["JoinOptions", "as_url", "joining_options"]


@attrs.frozen
class JoinOptions:
    """Where a node started by hand listens, finds the launcher and keeps its files.

    Attributes:
        launcher: the launcher's url.
        listen: the url to listen on, or None for the topology's address of the node.
        run_dir: the default directory for its logs and files on its host.
    """

    launcher: str
    listen: str | None
    run_dir: Path


def as_url(topology: Topology, address: str) -> str:
    """``HOST:PORT`` as the cluster's url (``tls+tcp://`` unless ``insecure``); a url
    is returned as it is, ``tcp://`` becoming ``tls+tcp://`` on a TLS cluster.

    Raises:
        ValueError: neither a url nor ``HOST:PORT``.
    """
    cluster = topology.cluster
    if "://" not in address:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"invalid address {address!r} (expected HOST:PORT or a url)")
        address = f"tcp://{address}"
    if cluster.tls and address.startswith("tcp://"):
        return f"tls+{address}"
    return address


def joining_options(
    topology: Topology, name: str, launcher: str | None, listen: str | None
) -> JoinOptions:
    """The addresses node ``name`` uses, from its options or else its topology.

    Raises:
        ValueError: a bad address, or none for the launcher where the topology has
            none fixed (naming the fix).
        KeyError: no node ``name`` in the topology.
    """
    topology.node(name)
    cluster = topology.cluster
    if launcher is None:
        if cluster.transport != "tcp" or not cluster.base_port:
            raise ValueError(
                f"node {name} cannot find the launcher: pass --launcher HOST:PORT, or set "
                "[cluster] transport = 'tcp' and base_port (the launcher listens there)"
            )
        launcher = node_address(topology, LAUNCHER_NODE, Path("."))
    run_dir = Path(cluster.run_dir) / f"{cluster.name}-{name}"
    return JoinOptions(
        as_url(topology, launcher), None if listen is None else as_url(topology, listen), run_dir
    )
