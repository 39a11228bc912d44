"""actorml: distributed machine learning from structured-concurrency actors over nng.

The public API is what ``__all__`` lists; ``tests/test_api.py`` checks it against
``docs/runtime.md``.
"""

from . import builtins as _builtins  # registers the built-in kinds (lazily imported)
from .actor import Ack as Ack
from .actor import Actor as Actor
from .actor import ActorContext as ActorContext
from .actor import ActorGone as ActorGone
from .actor import AskTimeout as AskTimeout
from .actor import NodeUnreachable as NodeUnreachable
from .actor import Promise as Promise
from .actor import Refused as Refused
from .actor import RemoteError as RemoteError
from .actor import handler as handler
from .codec import CodecError as CodecError
from .launch import Cluster as Cluster
from .launch import ClusterGaveUp as ClusterGaveUp
from .launch import ClusterStartError as ClusterStartError
from .launch import open_cluster as open_cluster
from .messages import ActorRef as ActorRef
from .messages import message as message
from .supervisor import ChildSpec as ChildSpec
from .supervisor import Restart as Restart
from .supervisor import Strategy as Strategy
from .supervisor import Supervisor as Supervisor
from .supervisor import SupervisorGaveUp as SupervisorGaveUp
from .topology import ActorSpec as ActorSpec
from .topology import ClusterSpec as ClusterSpec
from .topology import NodeSpec as NodeSpec
from .topology import SupervisorSpec as SupervisorSpec
from .topology import Topology as Topology
from .topology import TopologyError as TopologyError

del _builtins

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
