"""Topologies: which nodes run which actors, under which supervisors.

One object model behind both doors: build a `Topology` in Python, or load the same
thing from ``topology.toml``; the two compare equal. Loading checks the structure and
reports the first problem as a one-line `TopologyError` naming the file, line, key and
fix. Checks that need imports (does kind ``"echo"`` exist, do its ``args`` fit its
class?) run only in `Topology.check`, so loading a file never imports user code.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from . import registry
from .errors import TopologyError
from .supervisor import Restart, Strategy
from .toml_lines import _join
from .topology_check import check_topology
from .topology_fields import (
    _NAME_RE,
    _address,
    _args,
    _checked,
    _choice,
    _describe,
    _FieldValueError,
    _hint,
    _instance,
    _int,
    _items,
    _kind,
    _name,
    _number,
    _optional_positive_int,
    _plain,
    _string,
    _to_args,
    _to_float,
    _to_restart,
    _to_strategy,
    _to_tuple,
    _unknown,
)
from .topology_write import _emit, _spec_dict, _toml_key

# isort: split
# Every name the single-module topology defined stays importable from here, except the
# loader's (_Loader, _Nested, _syntax_error): the loader imports this module.
from .toml_lines import _BARE_KEY as _BARE_KEY
from .toml_lines import _SEGMENT as _SEGMENT
from .toml_lines import _line_of as _line_of
from .toml_lines import _parse_key as _parse_key
from .toml_lines import _resolve as _resolve
from .toml_lines import _scan_into as _scan_into
from .toml_lines import _scan_lines as _scan_lines
from .toml_lines import _scan_value as _scan_value
from .toml_lines import _ValueState as _ValueState
from .topology_check import _SIMPLE as _SIMPLE
from .topology_check import _args_problems as _args_problems
from .topology_check import _expect as _expect
from .topology_check import _item_type as _item_type
from .topology_check import _matches as _matches
from .topology_check import _union_members as _union_members
from .topology_fields import _ADDRESS_RE as _ADDRESS_RE
from .topology_fields import _NAME_MAX as _NAME_MAX
from .topology_fields import _TOML_SCALARS as _TOML_SCALARS
from .topology_fields import _FieldError as _FieldError
from .topology_fields import _FieldTypeError as _FieldTypeError
from .topology_fields import _non_toml as _non_toml
from .topology_write import _TOML_NAMES as _TOML_NAMES
from .topology_write import _is_aot as _is_aot

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

SectionValidator = Callable[[dict[str, Any], str], dict[str, Any]]
"""Validates one extra top-level table: ``(table, key_path) -> validated table``."""

# Strategy and Restart are the supervisor's own enums: one object model for both.


# -- the specs -------------------------------------------------------------------------


@attrs.frozen
class SupervisorSpec:
    """How a supervisor restarts its children: OTP strategy and restart intensity."""

    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE,
        converter=_to_strategy,
        validator=_checked(_choice("strategy", list(Strategy))),
    )
    max_restarts: int = attrs.field(default=3, validator=_checked(_int(0)))
    within_s: float = attrs.field(
        default=5.0, converter=_to_float, validator=_checked(_number(positive=True))
    )
    shutdown_timeout_s: float = attrs.field(
        default=5.0, converter=_to_float, validator=_checked(_number(positive=False))
    )


_CLUSTER_SUPERVISOR = SupervisorSpec(max_restarts=3, within_s=10.0)


@attrs.frozen
class ActorSpec:
    """One actor: its cluster-wide name, its kind, and the arguments for its class."""

    name: str = attrs.field(
        validator=_checked(_name), metadata=_hint("expected an actor name unique in the cluster")
    )
    kind: str = attrs.field(
        validator=_checked(_kind),
        metadata=_hint("expected a registered kind or 'pkg.module:Class'"),
    )
    restart: Restart = attrs.field(
        default=Restart.PERMANENT,
        converter=_to_restart,
        validator=_checked(_choice("restart type", list(Restart))),
    )
    args: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_to_args, validator=_checked(_args), hash=False
    )
    mailbox_size: int | None = attrs.field(default=None, validator=_checked(_optional_positive_int))
    shutdown_timeout_s: float = attrs.field(
        default=5.0, converter=_to_float, validator=_checked(_number(positive=False))
    )


@attrs.frozen
class NodeSpec:
    """One node (OS process): its actors, started in order under one root supervisor."""

    name: str = attrs.field(
        validator=_checked(_name), metadata=_hint("expected a node name unique in the cluster")
    )
    actors: tuple[ActorSpec, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=_checked(_items(ActorSpec))
    )
    supervisor: SupervisorSpec = attrs.field(
        factory=SupervisorSpec, validator=_checked(_instance(SupervisorSpec))
    )
    address: str | None = attrs.field(default=None, validator=_checked(_address))


@attrs.frozen
class ClusterSpec:
    """Settings shared by every node, and how ``actorml up`` supervises node processes."""

    name: str = attrs.field(
        validator=_checked(_name), metadata=_hint("expected a cluster name, such as 'pingpong'")
    )
    transport: Literal["ipc", "tcp"] = attrs.field(
        default="ipc", validator=_checked(_choice("transport", ("ipc", "tcp")))
    )
    host: str = attrs.field(default="127.0.0.1", validator=_checked(_string))
    base_port: int = attrs.field(default=0, validator=_checked(_int(0, 65535)))
    mailbox_size: int = attrs.field(default=1024, validator=_checked(_int(1)))
    recv_max_size: int = attrs.field(default=256 * 1024 * 1024, validator=_checked(_int(1)))
    ask_timeout_s: float = attrs.field(
        default=10.0, converter=_to_float, validator=_checked(_number(positive=True))
    )
    ready_timeout_s: float = attrs.field(
        default=60.0, converter=_to_float, validator=_checked(_number(positive=True))
    )
    run_dir: str = attrs.field(default="runs", validator=_checked(_string))
    log_level: str = attrs.field(
        default="info",
        validator=_checked(_choice("log level", ("debug", "info", "warning", "error"))),
    )
    heartbeat_interval_s: float = attrs.field(
        default=0.5, converter=_to_float, validator=_checked(_number(positive=True))
    )
    heartbeat_deadline_s: float = attrs.field(
        default=3.0, converter=_to_float, validator=_checked(_number(positive=True))
    )
    supervisor: SupervisorSpec = attrs.field(
        default=_CLUSTER_SUPERVISOR, validator=_checked(_instance(SupervisorSpec))
    )

    def __attrs_post_init__(self) -> None:
        if not self.heartbeat_deadline_s > self.heartbeat_interval_s:
            raise _FieldValueError(
                "heartbeat_deadline_s",
                f"expected a number greater than heartbeat_interval_s "
                f"({self.heartbeat_interval_s!r}), got {_describe(self.heartbeat_deadline_s)}",
            )


# -- extra top-level tables ------------------------------------------------------------

# The registry stays in this module: `Topology.extra` and the loader look sections up
# through `_section`, so replacing `actorml.topology._sections` replaces it everywhere.
_sections: dict[str, SectionValidator] = {}
_expanders: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_section(name: str, validator: SectionValidator) -> None:
    """Allow a top-level table ``[name]`` in topologies, checked by ``validator``.

    The validator gets a plain copy of the table and its key path (``"protocol"``) and
    returns the validated table (kept in `Topology.extra`); it raises `TopologyError`
    with the key path of the offending key; the loader adds the file and line.

    Raises:
        ValueError: the name is malformed, reserved, or registered to another validator.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in ("cluster", "node"):
        raise ValueError(f"invalid section name {name!r} (cluster and node are reserved)")
    existing = _sections.get(name)
    if existing is not None and existing is not validator:
        raise ValueError(f"section {name!r} is already registered to {existing!r}")
    _sections[name] = validator


def _section(name: str) -> SectionValidator | None:
    """The validator of section ``name``: registered here, or a registry "section" kind.

    A registry section is a class with a ``validate(table, key_path)`` static method and
    optionally ``expand(data) -> data``, which may add ``[[node]]`` entries (a ``[job]``
    section generating its scheduler, shard and worker nodes). Registry sections are
    imported only when a topology uses them.
    """
    validator = _sections.get(name)
    if validator is None and name in registry.known("section"):
        cls = registry.resolve("section", name)
        validator = _sections[name] = typing.cast(Any, cls).validate
        expand = getattr(cls, "expand", None)
        if expand is not None:
            _expanders[name] = expand
    return validator


def _valid_sections() -> set[str]:
    return {"cluster", "node", *_sections, *registry.known("section")}


def _to_extra(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for name, table in value.items():
        validator = _section(name)
        if validator is None:
            valid = sorted(_valid_sections())
            raise TopologyError(_join("", str(name)), _unknown(str(name), valid))
        if not isinstance(table, Mapping):
            raise TopologyError(name, f"expected a table, got {_describe(table)}")
        out[name] = validator(_plain(table), name)
    return out


# -- the topology ----------------------------------------------------------------------


@attrs.frozen
class _Origin:
    source: str
    lines: Mapping[str, int] = attrs.field(eq=False)


def _check_nodes(nodes: tuple[NodeSpec, ...]) -> None:
    if not nodes:
        raise _FieldValueError("node", "expected at least one node, got none")
    node_seen: dict[str, str] = {}
    actor_seen: dict[str, str] = {}
    for i, node in enumerate(nodes):
        if node.name in node_seen:
            raise _FieldValueError(
                f"node[{i}].name",
                f"duplicate node name {node.name!r} (also {node_seen[node.name]})",
            )
        node_seen[node.name] = f"node[{i}]"
        for j, actor in enumerate(node.actors):
            if actor.name in actor_seen:
                raise _FieldValueError(
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

    cluster: ClusterSpec = attrs.field(validator=_checked(_instance(ClusterSpec)))
    nodes: tuple[NodeSpec, ...] = attrs.field(
        converter=_to_tuple, validator=_checked(_items(NodeSpec))
    )
    extra: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=_to_extra, hash=False
    )
    _origin: _Origin | None = attrs.field(
        default=None, init=False, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        _check_nodes(self.nodes)

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

    def check(self, *, resolve_kinds: bool = True) -> None:
        """Run the checks that need imports; raise the first problem found.

        Structure was already checked when the topology was built. With
        ``resolve_kinds`` every actor kind is resolved through the registry and its
        ``args`` are checked against the class (see `check_topology`).

        Raises:
            TopologyError: located in the source file when the topology was loaded.
        """
        problems = check_topology(self, resolve_kinds=resolve_kinds)
        if problems:
            raise problems[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists in the TOML file's shape (``node``, ``actor``); None left out."""
        out: dict[str, Any] = {
            "cluster": _spec_dict(self.cluster),
            "node": [_spec_dict(node) for node in self.nodes],
        }
        out.update((name, _plain(table)) for name, table in self.extra.items())
        return out

    def to_toml(self) -> str:
        """The topology as a ``topology.toml`` document that loads back equal."""
        chunks = []
        for key, value in self.to_dict().items():
            if isinstance(value, list):
                chunks += ["".join(_emit(_toml_key(key), t, aot=True)) for t in value]
            else:
                chunks.append("".join(_emit(_toml_key(key), value)))
        return "\n".join(chunks)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Topology:
        """Build from a dict shaped like the TOML file; raises `TopologyError`."""
        # topology_load builds Topology objects, so it imports this module: a true cycle,
        # broken by importing the loader when first used
        from .topology_load import load_dict

        return load_dict(data, source)

    @classmethod
    def from_toml_string(cls, text: str, *, source: str = "<string>") -> Topology:
        """Parse and validate TOML text; raises `TopologyError` with the line."""
        from .topology_load import load_toml_string  # imported here: see from_dict

        return load_toml_string(text, source)

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
