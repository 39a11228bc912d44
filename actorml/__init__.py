"""actorml: distributed machine learning from structured-concurrency actors over nng.

The public API is what ``__all__`` lists; ``tests/test_api.py`` checks it against
``docs/runtime.md``.
"""

from typing import TYPE_CHECKING, Any

from . import builtins as _builtins  # registers the built-in kinds (lazily imported)
from .actor import Actor as Actor
from .actor import ActorContext as ActorContext
from .actor import Promise as Promise
from .actor import handler as handler
from .errors import ActorGone as ActorGone
from .errors import AskTimeout as AskTimeout
from .errors import ClusterGaveUp as ClusterGaveUp
from .errors import ClusterStartError as ClusterStartError
from .errors import CodecError as CodecError
from .errors import NodeUnreachable as NodeUnreachable
from .errors import NotReady as NotReady
from .errors import Refused as Refused
from .errors import RemoteError as RemoteError
from .errors import SupervisorGaveUp as SupervisorGaveUp
from .errors import TopologyError as TopologyError
from .messages import Ack as Ack
from .messages import ActorRef as ActorRef
from .messages import message as message
from .supervisor import ChildSpec as ChildSpec
from .supervisor import Restart as Restart
from .supervisor import Strategy as Strategy
from .supervisor import Supervisor as Supervisor
from .topology import ActorSpec as ActorSpec
from .topology import ClusterSpec as ClusterSpec
from .topology import NodeSpec as NodeSpec
from .topology import SupervisorSpec as SupervisorSpec
from .topology import Topology as Topology

del _builtins

if TYPE_CHECKING:
    from .launch import Cluster as Cluster
    from .launch import open_cluster as open_cluster

# The launcher's half of the door is imported when first asked for: a node process
# never launches, and ``actorml.launch`` brings the certificate code and cryptography
# (a fifth of a second per process, seven processes at start).
_LAZY = {"Cluster": "launch", "open_cluster": "launch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Ack",
    "Actor",
    "ActorContext",
    "ActorGone",
    "ActorRef",
    "ActorSpec",
    "AskTimeout",
    "ChildSpec",
    "Cluster",
    "ClusterGaveUp",
    "ClusterSpec",
    "ClusterStartError",
    "CodecError",
    "NodeSpec",
    "NodeUnreachable",
    "NotReady",
    "Promise",
    "Refused",
    "RemoteError",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "SupervisorSpec",
    "Topology",
    "TopologyError",
    "handler",
    "message",
    "open_cluster",
]
