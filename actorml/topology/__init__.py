"""Topologies: which nodes run which actors, under which supervisors.

The door of the package; inside, imports run one way: `fields` (validators and
converters) and `lines` (TOML line numbers) -> `tables` (a table checked against an attrs
class) -> `specs` (the spec classes) -> `sections` (extra top-level tables) -> `load` ->
`check` -> `write` -> `core` (`Topology`). See ``docs/topology.md``.
"""

from ..errors import TopologyError as TopologyError
from ..supervisor import Restart as Restart
from ..supervisor import Strategy as Strategy
from .core import Topology as Topology
from .core import check_topology as check_topology
from .sections import SectionValidator as SectionValidator
from .sections import register_section as register_section
from .specs import ActorSpec as ActorSpec
from .specs import ClusterSpec as ClusterSpec
from .specs import NodeSpec as NodeSpec
from .specs import SupervisorSpec as SupervisorSpec

__all__ = [
    "ActorSpec",
    "ClusterSpec",
    "NodeSpec",
    "Restart",
    "SectionValidator",
    "Strategy",
    "SupervisorSpec",
    "Topology",
    "TopologyError",
    "check_topology",
    "register_section",
]
