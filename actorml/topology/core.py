"""The `Topology`: a whole cluster, built in Python or loaded, checked and written back.

One object model behind both doors: build a `Topology` in Python, or load the same
thing from ``topology.toml``; the two compare equal. Loading checks the structure and
reports the first problem as a one-line `TopologyError` naming the file, line, key and
fix. Checks that need an actor's class (does kind ``"echo"`` exist, do its ``args``
fit its class?) run only in `Topology.check`, so loading a file imports no actor class;
a section may import what it names to check its options (``[protocol]`` its protocol).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import TopologyError
from .check import check_actors
from .fields import FieldValueError, checked, describe, instance_of, items_of, plain, to_tuple
from .lines import Origin
from .load import load_dict, load_toml_string
from .sections import to_extra, verifier_for
from .specs import ActorSpec, ClusterSpec, NodeSpec
from .write import emit_table, spec_dict, toml_key

__all__ = ["Topology", "check_topology", "kinds_in"]


def _check_nodes(nodes: tuple[NodeSpec, ...]) -> None:
    if not nodes:
        raise FieldValueError("node", "expected at least one node, got none")
    node_seen: dict[str, str] = {}
    actor_seen: dict[str, str] = {}
    for i, node in enumerate(nodes):
        if node.name in node_seen:
            raise FieldValueError(
                f"node[{i}].name",
                f"duplicate node name {node.name!r} (also {node_seen[node.name]})",
            )
        node_seen[node.name] = f"node[{i}]"
        for j, actor in enumerate(node.actors):
            if actor.name in actor_seen:
                raise FieldValueError(
                    f"node[{i}].actor[{j}].name",
                    f"duplicate actor name {actor.name!r} (also {actor_seen[actor.name]})",
                )
            actor_seen[actor.name] = f"node[{i}].actor[{j}]"


@attrs.frozen
class Topology:
    """A whole cluster: settings, nodes with their actors, and extra tables.

    Build it in Python or load it with `from_toml`; both give equal objects.
    Construction checks the structure; `check` also resolves kinds and their args.
    """

    cluster: ClusterSpec = attrs.field(validator=checked(instance_of(ClusterSpec)))
    nodes: tuple[NodeSpec, ...] = attrs.field(
        converter=to_tuple, validator=checked(items_of(NodeSpec))
    )
    extra: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=to_extra, hash=False
    )
    _origin: Origin | None = attrs.field(default=None, init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_nodes(self.nodes)
        cluster = self.cluster
        last = cluster.base_port + len(self.nodes)  # the launcher, then one port per node
        if cluster.transport == "tcp" and cluster.base_port and last > 65535:
            raise FieldValueError(
                "cluster.base_port",
                f"expected a port from 1 to {65535 - len(self.nodes)} (the launcher and "
                f"{len(self.nodes)} nodes take the ports from base_port up), "
                f"got {describe(cluster.base_port)}",
            )
        self._check_hosts()

    def remote(self, name: str) -> bool:
        """True if node ``name`` runs on another host than the launcher's (its ``host``
        is set and is not ``[cluster] host``): its host's engine starts it, not
        ``actorml up``."""
        host = self.node(name).host
        return host is not None and host != self.cluster.host

    def _check_hosts(self) -> None:
        """A node on another host must be able to find the launcher and prove itself."""
        remote = [(i, n) for i, n in enumerate(self.nodes) if self.remote(n.name)]
        if not remote:
            return
        i, first = remote[0]
        cluster = self.cluster
        if cluster.transport != "tcp":
            raise FieldValueError(
                f"node[{i}].host",
                f"node {first.name!r} runs on host {first.host!r}, which needs "
                "transport = 'tcp' (set [cluster] transport = 'tcp', or remove host)",
            )
        if not cluster.base_port:
            raise FieldValueError(
                "cluster.base_port",
                f"node {first.name!r} runs on host {first.host!r} and must find the "
                "launcher at a fixed port (set [cluster] base_port, such as 7000)",
            )
        if cluster.tls and cluster.tls_dir is None:
            raise FieldValueError(
                "cluster.tls_dir",
                f"node {first.name!r} runs on host {first.host!r} and needs the cluster's "
                "certificates there (make them with `actorml certs DIR --topology FILE` "
                "and set [cluster] tls_dir = DIR)",
            )

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``; raises KeyError naming the nodes there are."""
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node named {name!r} in cluster {self.cluster.name!r} (nodes: {names})")

    def actor(self, name: str) -> tuple[NodeSpec, ActorSpec]:
        """The actor called ``name`` and the node it runs on; raises KeyError if none."""
        for node in self.nodes:
            for actor in node.actors:
                if actor.name == name:
                    return node, actor
        names = ", ".join(a.name for n in self.nodes for a in n.actors) or "none"
        raise KeyError(
            f"no actor named {name!r} in cluster {self.cluster.name!r} (actors: {names})"
        )

    def check(self, *, resolve_kinds: bool = True, deep: bool = False) -> None:
        """Run the checks that need imports; raise the first problem found.

        Structure was already checked when the topology was built. With
        ``resolve_kinds`` every actor kind is resolved through the registry and its
        ``args`` are checked against the class (see `check_topology`). With ``deep``
        each extra section also runs its costly checks (``[data]`` loads the data).

        Raises:
            TopologyError: located in the source file when the topology was loaded.
        """
        problems = check_topology(self, resolve_kinds=resolve_kinds, deep=deep)
        if problems:
            raise problems[0]

    def named_kinds(self) -> set[str]:
        """Every value of a ``kind`` key anywhere in the topology: actor kinds, the
        ``[model]``/``[optimizer]``/``[protocol]`` kinds, kinds inside actor args."""
        return kinds_in(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists in the TOML file's shape (``node``, ``actor``); None left out."""
        out: dict[str, Any] = {
            "cluster": spec_dict(self.cluster),
            "node": [spec_dict(node) for node in self.nodes],
        }
        out.update((name, plain(table)) for name, table in self.extra.items())
        return out

    def to_toml(self) -> str:
        """The topology as a ``topology.toml`` document that loads back equal."""
        chunks = []
        for key, value in self.to_dict().items():
            if isinstance(value, list):
                chunks += ["".join(emit_table(toml_key(key), t, aot=True)) for t in value]
            else:
                chunks.append("".join(emit_table(toml_key(key), value)))
        return "\n".join(chunks)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Topology:
        """Build from a dict shaped like the TOML file; raises `TopologyError`."""
        return load_dict(data, source, cls._loaded)

    @classmethod
    def from_toml_string(cls, text: str, *, source: str = "<string>") -> Topology:
        """Parse and validate TOML text; raises `TopologyError` with the line."""
        return load_toml_string(text, source, cls._loaded)

    @classmethod
    def _loaded(
        cls,
        cluster: ClusterSpec,
        nodes: tuple[NodeSpec, ...],
        extra: dict[str, Any],
        origin: Origin,
    ) -> Topology:
        """The topology of checked parts, remembering where it came from (for `check`)."""
        topology = cls(cluster, nodes, extra)
        object.__setattr__(topology, "_origin", origin)
        return topology

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Topology:
        """Load ``topology.toml``; raises `TopologyError` (also for unreadable files)."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                text = f.read().decode("utf-8")
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise TopologyError("", f"cannot read file ({reason})", source=source) from None
        except UnicodeDecodeError as exc:
            raise TopologyError("", f"file is not utf-8 ({exc.reason})", source=source) from None
        return cls.from_toml_string(text, source=source)


def check_topology(
    topology: Topology, *, resolve_kinds: bool = True, deep: bool = False
) -> list[TopologyError]:
    """All problems found by resolving actor kinds and checking their ``args`` (and, with
    ``deep``, by each extra section's ``verify``: ``actorml check`` loads the data).

    Each actor ``kind`` is resolved with ``registry.resolve("actor", kind)``. When the
    class is an attrs class, each ``args`` key must be one of its ``init`` fields, every
    field without a default must be given, and fields typed ``int``, ``float``, ``str``,
    ``bool``, ``list`` or ``tuple`` (or optional/unions of those) must get values of that
    type (an integer is accepted for a float). Fields with a converter are not type-checked.

    Returns:
        The problems in file order; empty when the topology is sound (or when
        ``resolve_kinds`` is false: the structure was checked when it was built).
    """
    if not resolve_kinds:
        return []
    problems = check_actors(topology.nodes, topology._origin)
    if deep:
        origin = topology._origin
        for name, table in topology.extra.items():
            verify = verifier_for(name)
            if verify is None:
                continue
            try:
                verify(plain(table), name)
            except TopologyError as exc:
                problems.append(origin.locate(exc) if origin else exc)
    return problems


def kinds_in(value: Any) -> set[str]:
    """Every value of a ``kind`` key anywhere in ``value`` (tables, arrays of tables)."""
    found: set[str] = set()

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            for key, inner in item.items():
                if key == "kind" and isinstance(inner, str):
                    found.add(inner)
                walk(inner)
        elif isinstance(item, list | tuple):
            for inner in item:
                walk(inner)

    walk(value)
    return found
