"""Loading a topology: TOML text or a dict in its shape, checked key by key.

Each problem becomes one `TopologyError` naming the file, line, key and fix. This module
builds `Topology` objects, so it imports `actorml.topology`; the `Topology.from_*`
classmethods import it in turn when called.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import TopologyError
from .toml_lines import _join, _line_of, _scan_lines
from .topology import (
    _CLUSTER_SUPERVISOR,
    ActorSpec,
    ClusterSpec,
    NodeSpec,
    SupervisorSpec,
    Topology,
    _expanders,
    _Origin,
    _section,
    _valid_sections,
)
from .topology_fields import _describe, _FieldError, _unknown


def load_dict(data: Mapping[str, Any], source: str) -> Topology:
    """Build a topology from a dict shaped like the TOML file (`Topology.from_dict`)."""
    return _Loader(source, {}).load(data)


def load_toml_string(text: str, source: str) -> Topology:
    """Parse TOML text, then build it like a dict (`Topology.from_toml_string`)."""
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or int() refusing a huge literal
        raise _syntax_error(exc, text, source) from None
    except RecursionError:
        raise TopologyError("", "invalid toml: nested too deeply", source=source) from None
    return _Loader(source, _scan_lines(text)).load(data)


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
                try:
                    data = _expanders[key](dict(data))
                except TopologyError as exc:
                    if exc.source is not None:
                        raise
                    raise self.error(exc.key, exc.problem) from None
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
