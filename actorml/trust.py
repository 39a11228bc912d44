"""Who may say what: the checks a node makes on every envelope that arrives from a peer.

The transport tells who really sent a frame (the name in the peer's TLS certificate),
or that it cannot tell (ipc within one user's private directory, ``insecure`` tcp).
Where it can, the envelope's sender must be that peer: a node cannot speak for
another. Then the runtime's own control messages are accepted only from the role that
may send them: orders (directory, shutdown, node down, stats) only from the launcher,
and reports about a node (join, hello, ready, idle, gave up, heartbeat, job complete) only
from that node itself. Replies are checked where they are matched to their ask
(`actorml.node.Node.route`): only the node that was asked may answer.
"""

from __future__ import annotations

from .codec import Envelope
from .messages import (
    LAUNCHER_NODE,
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
    NodeReady,
    Shutdown,
)

__all__ = ["refusal"]

_FROM_LAUNCHER = (Directory, Shutdown, NodeDown, GetStats)
_ABOUT_ITS_SENDER = (
    NodeJoin, NodeHello, NodeReady, NodeIdle, NodeGaveUp, Heartbeat, JobComplete, LogLines,
)  # fmt: skip


def refusal(env: Envelope, peer: str | None) -> tuple[str, str] | None:
    """Why ``env``, which arrived from ``peer``, must be dropped: (reason, detail); or None.

    Args:
        env: a decoded envelope from another node.
        peer: the sender's authenticated node name, or None if the transport
            authenticates nobody.
    """
    sender = env.sender
    if peer is not None and (sender is None or sender.node != peer):
        claimed = "nobody" if sender is None else repr(sender.node)
        return "spoofed_sender", f"peer {peer!r} sent a frame claiming to be from {claimed}"
    body = env.body
    if isinstance(body, _FROM_LAUNCHER):
        if sender is None or sender.node != LAUNCHER_NODE:
            who = "nobody" if sender is None else repr(sender.node)
            return "not_from_launcher", f"{type(body).__name__} from {who}"
    elif isinstance(body, _ABOUT_ITS_SENDER):
        about = body.actor.node if isinstance(body, JobComplete) else body.node
        if sender is None or sender.node != about:
            who = "nobody" if sender is None else repr(sender.node)
            return "impersonation", f"{type(body).__name__} about {about!r} from {who}"
    return None
