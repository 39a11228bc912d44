"""Loading a topology: TOML text or a dict in its shape, checked key by key.

Each problem becomes one `TopologyError` naming the file, line, key and fix. The loader
builds the parts (cluster, nodes, extra tables, origin) and hands them to the ``make``
callable it is given (`Topology` passes its own constructor), so it never imports the
module that holds `Topology`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..errors import TopologyError
from .fields import FieldError, describe, unknown_option
from .lines import Origin, join, scan_lines
from .sections import expander_for, valid_names
from .specs import CLUSTER_SUPERVISOR, ActorSpec, ClusterSpec, NodeSpec, SupervisorSpec
from .tables import Nested, build

__all__ = ["Make", "load_dict", "load_toml_string"]

T = TypeVar("T")

Make = Callable[[ClusterSpec, tuple[NodeSpec, ...], dict[str, Any], Origin], T]
"""Builds the whole from its checked parts: ``(cluster, nodes, extra, origin) -> T``."""


def load_dict(data: Mapping[str, Any], source: str, make: Make[T]) -> T:
    """Build from a dict shaped like the TOML file (`Topology.from_dict`)."""
    return _load(data, Origin(source, {}), make)


def load_toml_string(text: str, source: str, make: Make[T]) -> T:
    """Parse TOML text, then build it like a dict (`Topology.from_toml_string`)."""
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or int() refusing a huge literal
        raise _syntax_error(exc, text, source) from None
    except RecursionError:
        raise TopologyError("", "invalid toml: nested too deeply", source=source) from None
    return _load(data, Origin(source, scan_lines(text)), make)


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


def _load(data: Any, origin: Origin, make: Make[T]) -> T:
    """Every problem found on the way is raised unlocated and located here, once."""
    try:
        return _parts(data, origin, make)
    except FieldError as exc:
        raise origin.error(exc.field, exc.problem) from None
    except TopologyError as exc:
        located = origin.locate(exc)
        if located is exc:
            raise
        raise located from None


def _parts(data: Any, origin: Origin, make: Make[T]) -> T:
    if not isinstance(data, Mapping):
        raise TopologyError("", f"expected a table at the top level, got {describe(data)}")
    valid = valid_names()
    for key in data:
        if key not in valid:
            raise TopologyError(join("", str(key)), unknown_option(str(key), valid))
    for key in list(data):
        expand = expander_for(key) if key not in ("cluster", "node") else None
        if expand is not None:
            data = expand(dict(data))
    if "cluster" not in data:
        raise TopologyError(
            "cluster", "missing required table (expected [cluster] with at least a name)"
        )
    cluster_tables: Nested = {"supervisor": ("supervisor", _supervisor(CLUSTER_SUPERVISOR))}
    cluster = build(ClusterSpec, data["cluster"], "cluster", nested=cluster_tables)
    if "node" not in data:
        raise TopologyError("node", "missing required table (expected at least one [[node]])")
    node_tables: Nested = {
        "supervisor": ("supervisor", _supervisor(SupervisorSpec())),
        "actor": ("actors", _actors),
    }
    nodes = tuple(
        build(NodeSpec, table, path, nested=node_tables)
        for path, table in _array(data["node"], "node")
    )
    extra = {k: v for k, v in data.items() if k not in ("cluster", "node")}
    return make(cluster, nodes, extra, origin)


def _supervisor(base: SupervisorSpec) -> Callable[[Any, str], SupervisorSpec]:
    return lambda table, path: build(SupervisorSpec, table, path, base=base)


def _actors(value: Any, path: str) -> tuple[ActorSpec, ...]:
    return tuple(build(ActorSpec, t, p) for p, t in _array(value, path))


def _array(value: Any, path: str) -> list[tuple[str, Any]]:
    if not isinstance(value, list | tuple):
        last = path.rsplit(".", 1)[-1]
        raise TopologyError(path, f"expected an array of tables [[{last}]], got {describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TopologyError(f"{path}[{i}]", f"expected a table, got {describe(item)}")
    return [(f"{path}[{i}]", item) for i, item in enumerate(value)]
