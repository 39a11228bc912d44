"""Topologies: which nodes run which actors, under which supervisors.

One object model behind both doors: build a `Topology` in Python, or load the same
thing from ``topology.toml``; the two compare equal. Loading checks the structure and
reports the first problem as a one-line `TopologyError` naming the file, line, key and
fix. Checks that need imports (does kind ``"echo"`` exist, do its ``args`` fit its
class?) run only in `Topology.check`, so loading a file never imports user code.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import enum
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import tomli_w

from . import registry
from .supervisor import Restart, Strategy

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


class TopologyError(ValueError):
    """A topology that cannot be used, located as precisely as we can.

    ``str(err)`` is one line: ``"{source}:{line}: {key}: {problem}"``, leaving out the
    parts that are unknown.

    Attributes:
        source: the file path, ``"<string>"``, ``"<dict>"`` or None (built in Python).
        line: 1-based line in ``source``, or None when unknown.
        key: the key path, e.g. ``"node[1].actor[0].kind"``; empty for syntax errors.
        problem: what is wrong and what would be valid.
    """

    def __init__(
        self, key: str, problem: str, *, source: str | None = None, line: int | None = None
    ) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return ": ".join(part for part in (where, self.key, self.problem) if part)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_topology_error, (self.key, self.problem, self.source, self.line))


def _topology_error(key: str, problem: str, source: str | None, line: int | None) -> TopologyError:
    return TopologyError(key, problem, source=source, line=line)


# Strategy and Restart are the supervisor's own enums: one object model for both.


# -- validation shared by the Python constructors and the TOML loader ------------------


class _FieldError(Exception):
    """A field failed validation; ``field`` is a key path relative to the object built."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class _FieldTypeError(_FieldError, TypeError):
    pass


class _FieldValueError(_FieldError, ValueError):
    pass


_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_NAME_MAX = 64  # names end up in ipc socket paths, which are limited to ~100 bytes
_ADDRESS_RE = re.compile(r"^(?:ipc|inproc|tcp[46]?|tls\+tcp[46]?|ws|wss)://\S+$")
_TOML_SCALARS = (str, int, float, bool, datetime.date, datetime.time)


def _describe(value: object) -> str:
    """A short, user-facing description of a value: ``string '64'``, ``integer 3``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime.date | datetime.time):
        return f"{type(value).__name__} {value.isoformat()}"
    names = {int: "integer", float: "float", str: "string", list: "array", tuple: "array"}
    noun = next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)
    try:
        text = repr(list(value) if isinstance(value, tuple) else value)
    except Exception:  # e.g. ints too long to print; the type alone is still useful
        return noun
    return f"{noun} {text if len(text) <= 60 else text[:57] + '...'}"


def _checked(check: Callable[[Any], None]) -> Callable[[Any, Any, Any], None]:
    """An attrs validator around ``check`` that names the field in the error."""

    def validate(instance: Any, attribute: Any, value: Any) -> None:
        try:
            check(value)
        except TypeError as exc:
            raise _FieldTypeError(attribute.name, str(exc)) from None
        except ValueError as exc:
            raise _FieldValueError(attribute.name, str(exc)) from None

    return validate


def _int(minimum: Literal[0, 1], maximum: int | None = None) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_describe(value)}")
        if maximum is not None and not minimum <= value <= maximum:
            raise ValueError(
                f"expected an integer from {minimum} to {maximum}, got {_describe(value)}"
            )
        if value < minimum:
            what = "a positive" if minimum == 1 else "a non-negative"
            raise ValueError(f"expected {what} integer, got {_describe(value)}")

    return check


def _number(*, positive: bool) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {_describe(value)}")
        if not (value > 0 if positive else value >= 0):  # also rejects nan
            what = "positive" if positive else "non-negative"
            raise ValueError(f"expected a {what} number, got {_describe(value)}")

    return check


def _string(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if not value.strip():
        raise ValueError(f"expected a non-empty string, got {_describe(value)}")


def _choice(what: str, choices: Iterable[str]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_describe(value)}")
        if value not in choices:
            valid = ", ".join(sorted(choices))
            raise ValueError(f"unknown {what} {value!r} (expected one of: {valid})")

    return check


def _name(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r} (expected a letter followed by letters, digits, "
            "'_', '.' or '-')"
        )
    if len(value) > _NAME_MAX:
        raise ValueError(
            f"invalid name {value[:20]!r}... (expected at most {_NAME_MAX} characters, "
            f"got {len(value)})"
        )


def _kind(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if not registry.is_valid_kind(value):
        raise ValueError(
            f"invalid kind {value!r} (expected a registered kind or 'pkg.module:Class')"
        )


def _address(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if not _ADDRESS_RE.match(value):
        raise ValueError(
            f"invalid address {value!r} (expected an nng url such as "
            "'tcp://10.0.0.2:5555' or 'ipc:///tmp/node.sock')"
        )


def _optional_positive_int(value: Any) -> None:
    if value is not None:
        _int(1)(value)


def _args(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table, got {_describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"expected string keys, got {_describe(key)}")
        bad = _non_toml(item)
        if bad is not None:
            raise TypeError(f"value of {key!r} is not a toml value (got {_describe(bad)})")


def _non_toml(value: Any) -> Any:
    """The first part of ``value`` that TOML cannot hold, or None."""
    if isinstance(value, _TOML_SCALARS):
        return None
    if isinstance(value, list | tuple):
        return next((bad for v in value if (bad := _non_toml(v)) is not None), None)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return next((bad for v in value.values() if (bad := _non_toml(v)) is not None), None)
    return value


def _items(cls: type) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, tuple):
            raise TypeError(f"expected a tuple of {cls.__name__}, got {_describe(value)}")
        for item in value:
            if not isinstance(item, cls):
                raise TypeError(f"expected {cls.__name__} items, got {_describe(item)}")

    return check


def _instance(cls: type) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"expected a {cls.__name__}, got {_describe(value)}")

    return check


# attrs converters must be named functions for mypy; each leaves what it cannot
# convert alone so that the validator reports it with the field's name.


def _to_strategy(value: Any) -> Any:
    with contextlib.suppress(ValueError, TypeError):
        return Strategy(value)
    return value


def _to_restart(value: Any) -> Any:
    with contextlib.suppress(ValueError, TypeError):
        return Restart(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # a huge int stays an int, still a number
            return float(value)
    return value


def _to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _to_args(value: Any) -> Any:
    return _plain(value) if isinstance(value, Mapping) else value


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists, so Python-built and loaded specs compare equal."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
        validator = _sections[name] = cls.validate
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


def _unknown(key: str, valid: Iterable[str], noun: str = "option", of: str = "") -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {noun}{of}{hint} (valid {noun}s: {', '.join(valid) or 'none'})"


def _hint(text: str) -> dict[str, str]:
    return {"hint": text}


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
        return _Loader(source, {}).load(data)

    @classmethod
    def from_toml_string(cls, text: str, *, source: str = "<string>") -> Topology:
        """Parse and validate TOML text; raises `TopologyError` with the line."""
        try:
            data = tomllib.loads(text)
        except ValueError as exc:  # TOMLDecodeError, or int() refusing a huge literal
            raise _syntax_error(exc, text, source) from None
        except RecursionError:
            raise TopologyError("", "invalid toml: nested too deeply", source=source) from None
        return _Loader(source, _scan_lines(text)).load(data)

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


def _spec_dict(spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in attrs.fields(type(spec)):
        value = getattr(spec, field.name)
        if value is None or (isinstance(value, tuple | Mapping) and not value):
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif attrs.has(type(value)):
            value = _spec_dict(value)
        elif isinstance(value, tuple):
            value = [_spec_dict(item) for item in value]
        elif isinstance(value, Mapping):
            value = _plain(value)
        out[_TOML_NAMES.get(field.name, field.name)] = value
    return out


_TOML_NAMES = {"actors": "actor", "nodes": "node"}


def _emit(path: str, table: Mapping[str, Any], *, aot: bool = False) -> list[str]:
    """``[path]`` (or ``[[path]]``) then scalars, then sub-tables, always in block form."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and not _is_aot(v)}
    chunks = [f"[[{path}]]\n" if aot else f"[{path}]\n", tomli_w.dumps(scalars)]
    for key, value in table.items():  # sub-tables first: they belong to this table
        if isinstance(value, Mapping):
            chunks += ["\n", *_emit(f"{path}.{_toml_key(key)}", value)]
    for key, value in table.items():
        if _is_aot(value):
            for item in value:
                chunks += ["\n", *_emit(f"{path}.{_toml_key(key)}", item, aot=True)]
    return chunks


def _is_aot(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]


def _syntax_error(exc: ValueError, text: str, source: str) -> TopologyError:
    message = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        line = int(match.group(1))
        message = f"{message[: match.start()]} (column {match.group(2)})"
    elif message.endswith("(at end of document)"):
        line = len(text.rstrip().split("\n"))
    message = message[:1].lower() + message[1:]
    return TopologyError("", f"invalid toml: {message}", source=source, line=line)


# -- loading ---------------------------------------------------------------------------

_Nested = Mapping[str, tuple[str, Callable[[Any, str], Any]]]


@attrs.define(eq=False)
class _Loader:
    """Walks a TOML-shaped dict, building specs and locating each problem."""

    source: str
    lines: Mapping[str, int]

    def error(self, key: str, problem: str) -> TopologyError:
        return TopologyError(key, problem, source=self.source, line=_line_of(self.lines, key))

    def load(self, data: Any) -> Topology:
        if not isinstance(data, Mapping):
            raise self.error("", f"expected a table at the top level, got {_describe(data)}")
        valid = _valid_sections()
        for key in data:
            if key not in valid:
                raise self.error(_join("", str(key)), _unknown(str(key), valid))
        for key in list(data):
            if key not in ("cluster", "node") and _section(key) and key in _expanders:
                data = _expanders[key](dict(data))
        if "cluster" not in data:
            raise self.error(
                "cluster", "missing required table (expected [cluster] with at least a name)"
            )
        cluster_tables: _Nested = {
            "supervisor": ("supervisor", self.supervisor(_CLUSTER_SUPERVISOR)),
        }
        cluster = self.build(data["cluster"], "cluster", ClusterSpec, nested=cluster_tables)
        if "node" not in data:
            raise self.error("node", "missing required table (expected at least one [[node]])")
        node_tables: _Nested = {
            "supervisor": ("supervisor", self.supervisor(SupervisorSpec())),
            "actor": ("actors", self.actors),
        }
        nodes = [
            self.build(table, path, NodeSpec, nested=node_tables)
            for path, table in self.array(data["node"], "node")
        ]
        extra = {k: v for k, v in data.items() if k not in ("cluster", "node")}
        try:
            topology = Topology(cluster, tuple(nodes), extra)
        except _FieldError as exc:
            raise self.error(exc.field, exc.problem) from None
        except TopologyError as exc:
            if exc.source is not None:
                raise
            raise self.error(exc.key, exc.problem) from None
        object.__setattr__(topology, "_origin", _Origin(self.source, self.lines))
        return topology

    def supervisor(self, base: SupervisorSpec) -> Callable[[Any, str], SupervisorSpec]:
        return lambda table, path: self.build(table, path, SupervisorSpec, base=base)

    def actors(self, value: Any, path: str) -> tuple[ActorSpec, ...]:
        return tuple(self.build(t, p, ActorSpec) for p, t in self.array(value, path))

    def array(self, value: Any, path: str) -> list[tuple[str, Any]]:
        if not isinstance(value, list | tuple):
            last = path.rsplit(".", 1)[-1]
            problem = f"expected an array of tables [[{last}]], got {_describe(value)}"
            raise self.error(path, problem)
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.error(f"{path}[{i}]", f"expected a table, got {_describe(item)}")
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]

    def build(
        self,
        raw: Any,
        path: str,
        cls: type[Any],
        *,
        base: Any = None,
        nested: _Nested | None = None,
    ) -> Any:
        """Check ``raw`` key by key in file order, then construct ``cls`` (or evolve ``base``)."""
        if not isinstance(raw, Mapping):
            raise self.error(path, f"expected a table, got {_describe(raw)}")
        fields = {f.name: f for f in attrs.fields(cls) if f.init}
        nested = nested or {}
        to_field = {name: name for name in fields}
        for key, (field_name, _) in nested.items():
            del to_field[field_name]
            to_field[key] = field_name
        to_toml = {v: k for k, v in to_field.items()}
        for key in raw:
            if key not in to_field:
                raise self.error(_join(path, str(key)), _unknown(str(key), to_field))
        for field in fields.values():
            if field.default is attrs.NOTHING and to_toml[field.name] not in raw:
                hint = field.metadata.get("hint")
                problem = f"missing required key ({hint})" if hint else "missing required key"
                raise self.error(_join(path, to_toml[field.name]), problem)
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            key_path = _join(path, key)
            if key in nested:
                kwargs[to_field[key]] = nested[key][1](value, key_path)
                continue
            field = fields[key]
            try:
                converted = field.converter(value) if callable(field.converter) else value
                if field.validator is not None:
                    field.validator(None, field, converted)
            except _FieldError as exc:
                raise self.error(key_path, exc.problem) from None
            kwargs[key] = converted
        try:
            return attrs.evolve(base, **kwargs) if base is not None else cls(**kwargs)
        except _FieldError as exc:
            raise self.error(_join(path, to_toml.get(exc.field, exc.field)), exc.problem) from None


# -- checks that need imports ----------------------------------------------------------


def check_topology(topology: Topology, *, resolve_kinds: bool = True) -> list[TopologyError]:
    """All problems found by resolving actor kinds and checking their ``args``.

    Each actor ``kind`` is resolved with ``registry.resolve("actor", kind)``. When the
    class is an attrs class, each ``args`` key must be one of its ``init`` fields, every
    field without a default must be given, and fields typed ``int``, ``float``, ``str``,
    ``bool``, ``list`` or ``tuple`` (or optional/unions of those) must get values of that
    type (an integer is accepted for a float). Fields with a converter are not type-checked.

    Returns:
        The problems in file order; empty when the topology is sound.
    """
    origin = topology._origin
    source, lines = (origin.source, origin.lines) if origin else (None, {})
    problems: list[TopologyError] = []
    if not resolve_kinds:
        return problems
    for i, node in enumerate(topology.nodes):
        for j, actor in enumerate(node.actors):
            path = f"node[{i}].actor[{j}]"
            try:
                cls = registry.resolve("actor", actor.kind)
            except registry.UnknownKind as exc:
                found = [(f"{path}.kind", str(exc))]
            else:
                found = [(_join(f"{path}.args", k), p) for k, p in _args_problems(cls, actor)]
            problems += [
                TopologyError(key, problem, source=source, line=_line_of(lines, key))
                for key, problem in found
            ]
    return problems


def _args_problems(cls: type, actor: ActorSpec) -> list[tuple[str, str]]:
    if not attrs.has(cls):
        return []
    fields = {f.alias or f.name: f for f in attrs.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: skip type checks rather than fail
        hints = {}
    of = f" for actor kind {actor.kind!r}"
    problems = []
    for key, value in actor.args.items():
        field = fields.get(key)
        if field is None:
            problems.append((key, _unknown(key, fields, noun="argument", of=of)))
            continue
        tp = hints.get(field.name, field.type)
        expected = _expect(tp)
        if field.converter is None and expected and not _matches(tp, value):
            problems.append((key, f"expected {expected}, got {_describe(value)}"))
    for key, field in fields.items():
        if field.default is attrs.NOTHING and key not in actor.args:
            expected = _expect(hints.get(field.name, field.type)) or "a value"
            problems.append((key, f"missing required argument{of} (expected {expected})"))
    return problems


_SIMPLE = {bool: ("a boolean", "booleans"), int: ("an integer", "integers"),
           float: ("a number", "numbers"), str: ("a string", "strings")}  # fmt: skip


def _union_members(tp: Any) -> list[Any] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return None


def _item_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    return args[0] if len(set(args)) == 1 and args[0] in _SIMPLE else None


def _expect(tp: Any) -> str | None:
    """What a value of type ``tp`` looks like in words, or None if we do not check it."""
    if tp in _SIMPLE:
        return _SIMPLE[tp][0]
    if tp in (list, tuple) or typing.get_origin(tp) in (list, tuple):
        item = _item_type(tp)
        return f"an array of {_SIMPLE[item][1]}" if item else "an array"
    members = _union_members(tp)
    if members:
        words = [_expect(m) for m in members]
        return " or ".join(w for w in words if w) if all(words) else None
    return None


def _matches(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is int or tp is str:
        return isinstance(value, tp)
    if tp is float:
        return isinstance(value, int | float)
    members = _union_members(tp)
    if members is not None:
        return any(_matches(m, value) for m in members)
    if not isinstance(value, list | tuple):
        return False
    item = _item_type(tp)
    return item is None or all(_matches(item, v) for v in value)


# -- line numbers: tomllib gives none, so scan the raw text ----------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SEGMENT = re.compile(r'\.?(?:"(?:[^"\\]|\\.)*"|[^."\[]+)|\[\d+\]')


def _join(prefix: str, key: str | int) -> str:
    """Extend a key path: ``node[1]``, ``node[1].actor``, ``args."odd key"``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def _line_of(lines: Mapping[str, int], key: str) -> int | None:
    """The line of ``key``, else of the nearest enclosing table or key that has one."""
    if not lines or not key:
        return None
    ends = [m.end() for m in _SEGMENT.finditer(key)]
    return next((lines[key[:e]] for e in reversed(ends) if key[:e] in lines), None)


def _scan_lines(text: str) -> dict[str, int]:
    """Map key paths (``node[1].actor[0].kind``) and table paths to their first line."""
    lines: dict[str, int] = {}
    with contextlib.suppress(Exception):  # line numbers are a courtesy: never fail on them
        _scan_into(text, lines)
    return lines


@attrs.define
class _ValueState:
    depth: int = 0  # open [ and { of a value spanning lines
    multiline: str | None = None  # the closing quotes of an open multi-line string


def _scan_into(text: str, lines: dict[str, int]) -> None:
    table = ""
    aot_counts: dict[str, int] = {}  # array-of-tables path -> elements seen so far
    state = _ValueState()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if state.multiline or state.depth:
            _scan_value(raw, state)
            continue
        s = raw.strip()
        if s.startswith("[["):
            parsed = _parse_key(s, 2)
            if parsed and s.startswith("]]", parsed[1]):
                parts = parsed[0]
                path = _join(_resolve(parts[:-1], aot_counts), parts[-1])
                count = aot_counts[path] = aot_counts.get(path, 0) + 1
                table = f"{path}[{count - 1}]"
                lines.setdefault(path, lineno)
                lines.setdefault(table, lineno)
        elif s.startswith("["):
            parsed = _parse_key(s, 1)
            if parsed and s.startswith("]", parsed[1]):
                table = _resolve(parsed[0], aot_counts)
                lines.setdefault(table, lineno)
        elif s and not s.startswith("#"):
            parsed = _parse_key(s, 0)
            if parsed and s.startswith("=", parsed[1]):
                path = table
                for part in parsed[0]:
                    path = _join(path, part)
                    lines.setdefault(path, lineno)
                _scan_value(s[parsed[1] + 1 :], state)


def _resolve(parts: list[str], aot_counts: Mapping[str, int]) -> str:
    path = ""
    for part in parts:
        path = _join(path, part)
        if path in aot_counts:
            path = f"{path}[{aot_counts[path] - 1}]"
    return path


def _parse_key(s: str, i: int) -> tuple[list[str], int] | None:
    """Parse a (dotted, possibly quoted) key at ``s[i:]``: (parts, index after it)."""
    parts: list[str] = []
    while True:
        while s[i : i + 1] in (" ", "\t"):
            i += 1
        if s[i : i + 1] == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                return None
            try:
                parts.append(json.loads(s[i : j + 1]))
            except ValueError:  # a TOML-only escape such as \e: close enough
                parts.append(s[i + 1 : j])
            i = j + 1
        elif s[i : i + 1] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1 : j])
            i = j + 1
        else:
            match = _BARE_KEY.match(s, i)
            if not match:
                return None
            parts.append(match.group())
            i = match.end()
        while s[i : i + 1] in (" ", "\t"):
            i += 1
        if s[i : i + 1] != ".":
            return parts, i
        i += 1


def _scan_value(s: str, state: _ValueState) -> None:
    """Track brackets and multi-line strings so keys inside values are not mistaken."""
    i = 0
    while i < len(s):
        if state.multiline:
            j = s.find(state.multiline, i)
            if j < 0:
                return
            i, state.multiline = j + 3, None
            continue
        c = s[i]
        if c == "#":
            return
        if c in "\"'":
            if s.startswith(c * 3, i):
                state.multiline = c * 3
                i += 3
                continue
            j = i + 1
            while j < len(s) and s[j] != c:
                j += 2 if c == '"' and s[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            state.depth += 1
        elif c in "]}":
            state.depth = max(0, state.depth - 1)
        i += 1
