"""Addresses, message classes, the tag registry, and the runtime's own messages.

A message is a frozen attrs class registered under a short tag; the tag, not a
Python import path, is what travels on the wire, so a peer can only ever build
classes it has registered itself. Field annotations are the schema the codec
checks incoming frames against.

Each vocabulary has one home and one tag prefix (``docs/messages.md`` lists them all):
the runtime's own messages (``actorml.``) are at the end of this module; the
consistency-protocol contract (``protocol.``) is ``actorml.protocols.contract``; the
parameter-server roles (``ps.``) are ``actorml.actors.messages``.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import numpy as np

__all__ = [
    "Ack",
    "ActorRef",
    "Directory",
    "GetStats",
    "Heartbeat",
    "JobComplete",
    "LogLines",
    "NodeDown",
    "NodeGaveUp",
    "NodeHello",
    "NodeIdle",
    "NodeJoin",
    "NodeJoined",
    "NodeReady",
    "Shutdown",
    "Stats",
    "is_message",
    "message",
    "message_class",
    "message_tag",
]

T = TypeVar("T")


@attrs.frozen(order=True)
class ActorRef:
    """The address of an actor: node, name and incarnation.

    Incarnation 0 means "whichever incarnation is current"; a ref handed out by a
    running actor carries its own incarnation, so a message sent to it after a
    restart is dropped (and counted) instead of reaching the successor.
    """

    node: str
    name: str
    incarnation: int = 0

    def any_incarnation(self) -> ActorRef:
        """This address without its incarnation: reaches the current one."""
        return ActorRef(self.node, self.name, 0)

    def __str__(self) -> str:
        suffix = f"#{self.incarnation}" if self.incarnation else ""
        return f"{self.name}@{self.node}{suffix}"


LAUNCHER_NODE = "_launcher"
"""The node name of the launcher (``actorml up``, `open_cluster`, a local cluster's host)."""
LAUNCHER = ActorRef(LAUNCHER_NODE, "_launcher")
"""The launcher's control actor: nodes report to it."""

_BY_TAG: dict[str, type] = {}
_TAG_OF: dict[type, str] = {}


@typing.dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def message(tag: str | None = None) -> Callable[[type[T]], type[T]]:
    """Register a class as a message under ``tag``.

    Plain classes are turned into ``attrs.frozen`` classes; attrs classes are kept as
    they are. The tag defaults to the class's qualified name and must be unique.

    Raises:
        ValueError: if the tag is already taken by another class.
    """

    def register(cls: type[T]) -> type[T]:
        if not attrs.has(cls):
            cls = typing.cast(type[T], attrs.frozen(cls))
        name = tag or f"{cls.__module__}.{cls.__qualname__}"
        other = _BY_TAG.get(name)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"message tag {name!r} is already used by {other.__qualname__}")
        _BY_TAG[name] = cls
        _TAG_OF[cls] = name
        return typing.cast(type[T], cls)

    return register


def message_tag(cls: type) -> str:
    """The wire tag of a registered message class.

    Raises:
        TypeError: if ``cls`` was never registered with :func:`message`.
    """
    try:
        return _TAG_OF[cls]
    except KeyError:
        raise TypeError(
            f"{cls.__qualname__} is not a registered message (decorate it with @actorml.message())"
        ) from None


def message_class(tag: str) -> type | None:
    """The class registered under ``tag``, or None."""
    return _BY_TAG.get(tag)


def is_message(obj: object) -> bool:
    """True if ``obj`` is an instance of a registered message class."""
    return type(obj) in _TAG_OF


# --- field schemas -------------------------------------------------------------
#
# A checker takes a decoded value and returns it (converted where msgpack loses the
# distinction, such as tuple versus list) or raises TypeError naming what it wanted.

Checker = Callable[[Any], Any]
_SCHEMAS: dict[type, tuple[tuple[str, Checker], ...]] = {}


def field_schema(cls: type) -> tuple[tuple[str, Checker], ...]:
    """(field name, checker) pairs for a registered message class, cached."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        schema = tuple(
            (f.name, _checker(hints.get(f.name, Any))) for f in attrs.fields(cls) if f.init
        )
        _SCHEMAS[cls] = schema
    return schema


def _fail(expected: str, value: object) -> typing.NoReturn:
    raise TypeError(f"expected {expected}, got {type(value).__name__}")


def _checker(tp: Any) -> Checker:
    if tp is Any or tp is object:
        return lambda v: v
    if tp is type(None) or tp is None:
        return lambda v: v if v is None else _fail("None", v)
    if tp is bool:
        return lambda v: v if isinstance(v, bool) else _fail("bool", v)
    if tp is int:
        return lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _fail("int", v)
    if tp is float:

        def check_float(v: Any) -> float:
            if isinstance(v, float):
                return v
            if isinstance(v, int) and not isinstance(v, bool):
                return float(v)
            _fail("float", v)

        return check_float
    if tp is str:
        return lambda v: v if isinstance(v, str) else _fail("str", v)
    if tp is bytes:
        return lambda v: v if isinstance(v, bytes) else _fail("bytes", v)
    if tp is np.ndarray or typing.get_origin(tp) is np.ndarray:
        return lambda v: v if isinstance(v, np.ndarray) else _fail("ndarray", v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = {m.value: m for m in tp}

        def check_enum(v: Any) -> enum.Enum:
            if isinstance(v, tp):
                return v
            try:
                return values[v]
            except (KeyError, TypeError):
                _fail(tp.__name__, v)

        return check_enum
    if isinstance(tp, type) and (tp is ActorRef or tp in _TAG_OF):
        return lambda v: v if isinstance(v, tp) else _fail(tp.__name__, v)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_checker(a) for a in args]

        def check_union(v: Any) -> Any:
            for option in options:
                try:
                    return option(v)
                except TypeError:
                    continue
            _fail(" | ".join(getattr(a, "__name__", str(a)) for a in args), v)

        return check_union
    if origin in (list, tuple) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = [_checker(a) for a in args]

            def check_fixed(v: Any) -> tuple[Any, ...]:
                if not isinstance(v, list | tuple) or len(v) != len(items):
                    _fail(f"tuple of {len(items)}", v)
                return tuple(c(x) for c, x in zip(items, v, strict=True))

            return check_fixed
        item = _checker(args[0]) if args else (lambda v: v)
        make = tuple if (origin or tp) is tuple else list

        def check_seq(v: Any) -> Any:
            if not isinstance(v, list | tuple):
                _fail(make.__name__, v)
            return make(item(x) for x in v)

        return check_seq
    if origin is dict or tp is dict:
        key, value = (_checker(args[0]), _checker(args[1])) if args else (lambda v: v,) * 2

        def check_dict(v: Any) -> dict[Any, Any]:
            if not isinstance(v, dict):
                _fail("dict", v)
            return {key(k): value(x) for k, x in v.items()}

        return check_dict
    # An annotation we cannot check precisely: accept, the handler sees what came.
    return lambda v: v


# -- the runtime's own vocabulary (tags "actorml.*"; see docs/messages.md) ----------


@message("actorml.ack")
class Ack:
    """The reply to an ask whose handler returned None."""


@message("actorml.job_complete")
class JobComplete:
    """An actor declares the job finished, with a summary for the launcher."""

    actor: ActorRef
    result: dict[str, Any]


@message("actorml.node_hello")
class NodeHello:
    """A node process is up and listening at ``address`` (node -> launcher)."""

    node: str
    address: str
    pid: int
    incarnation: int


@message("actorml.node_join")
class NodeJoin:
    """A node started on another host by its engine asks to join (node -> launcher);
    answered with `NodeJoined`."""

    node: str
    address: str
    pid: int
    token: int  # random per process: a join retried after a lost reply is the same join


@message("actorml.node_joined")
class NodeJoined:
    """The incarnation the launcher gives a joining node (launcher -> node)."""

    node: str
    incarnation: int


@message("actorml.log_lines")
class LogLines:
    """A batch of a node's JSON log lines for the launcher's ``logs/`` (a node on
    another host -> launcher); ``dropped``: lines it could not keep since the last."""

    node: str
    incarnation: int
    lines: list[str]
    dropped: int


@message("actorml.directory")
class Directory:
    """Every node's address and every actor's node (launcher -> each node)."""

    addresses: dict[str, str]
    placement: dict[str, str]


@message("actorml.node_ready")
class NodeReady:
    """A node's actors have all started (node -> launcher)."""

    node: str
    incarnation: int


@message("actorml.node_idle")
class NodeIdle:
    """A node's root supervisor has no children left running."""

    node: str
    incarnation: int


@message("actorml.node_gave_up")
class NodeGaveUp:
    """A node's root supervisor exceeded its restart intensity (node -> launcher)."""

    node: str
    incarnation: int
    error: str


@message("actorml.heartbeat")
class Heartbeat:
    """A node is alive (node -> launcher, every ``heartbeat_interval_s``)."""

    node: str
    incarnation: int


@message("actorml.node_down")
class NodeDown:
    """Node ``node`` (that incarnation) died; ``reason`` says how it was judged dead.

    The launcher sends it to every other node, whose ``_node`` actor passes it on to
    each local actor with a handler for it (a scheduler re-hands work, a protocol
    drops the dead workers from its clock).
    """

    node: str
    incarnation: int
    reason: str


@message("actorml.shutdown")
class Shutdown:
    """Stop this node's actors in reverse order, then answer (launcher -> node)."""

    reason: str = "requested"


@message("actorml.get_stats")
class GetStats:
    """Ask a node's ``_node`` actor for its counters (answered with `Stats`)."""


@message("actorml.stats")
class Stats:
    """A node's counters (`NodeStats`) and its actors' restart counts."""

    node: str
    incarnation: int
    counters: dict[str, int]
    restarts: dict[str, int]
