"""Checks that need imports: resolving actor kinds and checking their ``args``.

Loading a topology never imports user code; `check_actors` (behind `check_topology` and
`Topology.check`) does, through the registry.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .. import registry
from ..errors import TopologyError, UnknownKind
from .fields import describe, unknown_option
from .lines import Origin, join
from .specs import ActorSpec, NodeSpec
from .tables import checked_value

__all__ = ["check_actors"]


def check_actors(nodes: Iterable[NodeSpec], origin: Origin | None) -> list[TopologyError]:
    """All problems found by resolving actor kinds and checking their ``args``.

    Each actor ``kind`` is resolved with ``registry.resolve("actor", kind)``. When the
    class is an attrs class, each ``args`` key must be one of its ``init`` fields, every
    field without a default must be given, and fields typed ``int``, ``float``, ``str``,
    ``bool``, ``list`` or ``tuple`` (or optional/unions of those) must get values of that
    type (an integer is accepted for a float). Fields with a converter are not type-checked.

    Returns:
        The problems in file order, located in ``origin`` when there is one.
    """
    locate: Callable[[str, str], TopologyError] = origin.error if origin else TopologyError
    problems: list[TopologyError] = []
    for i, node in enumerate(nodes):
        if not node.actors:
            problems.append(
                locate(
                    f"node[{i}].actor",
                    f"node {node.name!r} runs no actor (expected at least one [[node.actor]]: "
                    "a node with nothing to run never becomes ready)",
                )
            )
        for j, actor in enumerate(node.actors):
            path = f"node[{i}].actor[{j}]"
            try:
                cls = registry.resolve("actor", actor.kind)
            except UnknownKind as exc:
                found = [(f"{path}.kind", str(exc))]
            else:
                found = [(join(f"{path}.args", k), p) for k, p in _args_problems(cls, actor)]
            problems += [locate(key, problem) for key, problem in found]
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
            problems.append((key, unknown_option(key, fields, noun="argument", of=of)))
            continue
        tp = hints.get(field.name, field.type)
        expected = _expect(tp)
        if field.converter is None and expected and not _matches(tp, value):
            problems.append((key, f"expected {expected}, got {describe(value)}"))
            continue
        try:  # then the class's own judgement of the value, as when it is built
            checked_value(field, value, key)
        except TopologyError as exc:
            problems.append((key, exc.problem))
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
