"""Extra top-level tables (``[protocol]``, ``[job]``, ...): who validates each one.

A section is registered here with `register_section`, or is a ``"section"`` kind in the
registry (imported only when a topology uses it). `Topology.extra` and the loader both
look sections up through `validator_for`, so replacing ``_sections`` (as tests do)
replaces it everywhere.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

from .. import registry
from ..errors import TopologyError
from .fields import NAME_RE, describe, plain, unknown_option
from .lines import join

__all__ = [
    "SectionValidator",
    "expander_for",
    "register_section",
    "to_extra",
    "valid_names",
    "validator_for",
    "verifier_for",
]

SectionValidator = Callable[[dict[str, Any], str], dict[str, Any]]
"""Validates one extra top-level table: ``(table, key_path) -> validated table``."""

Expander = Callable[[dict[str, Any]], dict[str, Any]]

Verifier = Callable[[dict[str, Any], str], None]

_sections: dict[str, SectionValidator] = {}
_expanders: dict[str, Expander] = {}
_verifiers: dict[str, Verifier] = {}


def register_section(name: str, validator: SectionValidator) -> None:
    """Allow a top-level table ``[name]`` in topologies, checked by ``validator``.

    The validator gets a plain copy of the table and its key path (``"protocol"``) and
    returns the validated table (kept in `Topology.extra`); it raises `TopologyError`
    with the key path of the offending key; the loader adds the file and line.

    Raises:
        ValueError: the name is malformed, reserved, or registered to another validator.
    """
    if not isinstance(name, str) or not NAME_RE.match(name) or name in ("cluster", "node"):
        raise ValueError(f"invalid section name {name!r} (cluster and node are reserved)")
    existing = _sections.get(name)
    if existing is not None and existing is not validator:
        raise ValueError(f"section {name!r} is already registered to {existing!r}")
    _sections[name] = validator


def validator_for(name: str) -> SectionValidator | None:
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
        verify = getattr(cls, "verify", None)
        if verify is not None:
            _verifiers[name] = verify
    return validator


def verifier_for(name: str) -> Verifier | None:
    """The ``verify(table, key_path)`` of section ``name``, if it has one: the checks too
    costly to run at every load (reading a whole dataset), run by ``actorml check``."""
    return _verifiers.get(name) if validator_for(name) else None


def expander_for(name: str) -> Expander | None:
    """The ``expand`` of section ``name``, if it is a registry section that has one."""
    return _expanders.get(name) if validator_for(name) else None


def valid_names() -> set[str]:
    """Every top-level table a topology may have."""
    return {"cluster", "node", *_sections, *registry.known("section")}


def to_extra(value: Any) -> Any:
    """Validate each extra table by its section (the converter of `Topology.extra`)."""
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for name, table in value.items():
        validator = validator_for(name)
        if validator is None:
            raise TopologyError(join("", str(name)), unknown_option(str(name), valid_names()))
        if not isinstance(table, Mapping):
            raise TopologyError(name, f"expected a table, got {describe(table)}")
        out[name] = validator(plain(table), name)
    return out
