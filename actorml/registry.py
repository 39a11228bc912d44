"""Find a role, protocol or model class by name.

A topology names its parts by *kind*: either a short name registered here
(``kind = "echo"``) or a dotted path to a user's own class
(``kind = "mypkg.mymodule:MyProtocol"``). Registrations may be lazy strings, so
``actorml`` never imports ``actorml.actors`` (or a user's package) until a kind
is actually resolved.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from .errors import UnknownKind

__all__ = [
    "is_valid_kind",
    "kinds",
    "known",
    "register",
    "resolve",
    "seal",
    "section_hooks",
    "unseal",
]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")


@attrs.define(eq=False)
class _Entry:
    target: str | type
    resolved: type | None = None


# group -> name -> entry; tests may swap this dict out wholesale.
_groups: dict[str, dict[str, _Entry]] = {}
# The dotted paths a sealed process may still import (None: not sealed).
_allowed: frozenset[str] | None = None


def seal(paths: Iterable[str]) -> None:
    """From now on resolve only registered names and the dotted ``paths`` given.

    A node process seals its registry with every kind its own topology names, so no
    message can make it import a module it was not configured with (a ``kind`` inside
    a layout or a reply is just a string to compare against this list).
    """
    global _allowed
    _allowed = frozenset(paths)


def unseal() -> None:
    """Resolve any importable dotted path again (tests; a process that embeds actorml)."""
    global _allowed
    _allowed = None


def is_valid_kind(kind: str) -> bool:
    """Whether ``kind`` is syntactically a registered-style name or a ``pkg.module:Class`` path."""
    return bool(_NAME_RE.match(kind) or _DOTTED_RE.match(kind))


def register(group: str, name: str, target: str | type) -> None:
    """Register ``target`` as kind ``name`` in ``group``.

    Registering the same target twice is a no-op, so modules may register at import.

    Args:
        group: e.g. ``"actor"``, ``"protocol"``, ``"model"``; any string is accepted.
        name: the short kind name, e.g. ``"echo"``.
        target: the class, or a lazy ``"pkg.module:Class"`` string imported on first resolve.

    Raises:
        TypeError: ``name`` or ``target`` has the wrong type.
        ValueError: ``name`` is malformed, ``target`` is a malformed dotted path, or
            ``name`` is already registered to a different target.
    """
    if not isinstance(group, str) or not group:
        raise TypeError(f"group must be a non-empty string, got {group!r}")
    if not isinstance(name, str):
        raise TypeError(f"{group} kind name must be a string, got {name!r}")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid {group} kind name {name!r} (expected a letter followed by letters, "
            "digits, '_', '.' or '-')"
        )
    if isinstance(target, str):
        if not _DOTTED_RE.match(target):
            raise ValueError(
                f"invalid target {target!r} for {group} kind {name!r} "
                "(expected a dotted path 'pkg.module:Class')"
            )
    elif not isinstance(target, type):
        raise TypeError(
            f"target for {group} kind {name!r} must be a class or a 'pkg.module:Class' "
            f"string, got {target!r}"
        )
    entries = _groups.setdefault(group, {})
    existing = entries.get(name)
    if existing is None:
        entries[name] = _Entry(target)
    elif existing.target != target:
        raise ValueError(
            f"{group} kind {name!r} is already registered to {_describe(existing.target)}, "
            f"not {_describe(target)}"
        )


def known(group: str) -> list[str]:
    """The registered kind names of ``group``, sorted."""
    return sorted(_groups.get(group, {}))


def kinds(group: str) -> Mapping[str, type]:
    """A live, read-only view of ``group``: kind name -> class.

    Names registered later show up too; each class is imported when first looked up.
    """
    return _Kinds(group)


class _Kinds(Mapping[str, type]):
    def __init__(self, group: str) -> None:
        self._group = group

    def __getitem__(self, name: str) -> type:
        if name not in _groups.get(self._group, {}):
            raise KeyError(name)
        return resolve(self._group, name)

    def __iter__(self) -> Iterator[str]:
        return iter(known(self._group))

    def __len__(self) -> int:
        return len(_groups.get(self._group, {}))

    def __repr__(self) -> str:
        return f"<registry kinds {self._group!r}: {', '.join(known(self._group))}>"


def resolve(group: str, kind: str) -> type:
    """The class for ``kind``: a registered name or a dotted path ``"pkg.module:Class"``.

    Raises:
        UnknownKind: the name is not registered, or the module or attribute cannot be
            imported, or what was found is not a class.
    """
    entry = _groups.get(group, {}).get(kind)
    if entry is not None:
        if entry.resolved is None:
            if isinstance(entry.target, type):
                entry.resolved = entry.target
            else:
                entry.resolved = _import(group, kind, entry.target)
        return entry.resolved
    if isinstance(kind, str) and ":" in kind:
        if not _DOTTED_RE.match(kind):
            raise UnknownKind(
                group,
                kind,
                f"invalid dotted path {kind!r} for {group} kind (expected 'pkg.module:Class')",
            )
        if _allowed is not None and kind not in _allowed:
            raise UnknownKind(
                group,
                kind,
                f"{group} kind {kind!r} is not configured on this node (only kinds its "
                "topology names are imported)",
            )
        return _import(group, kind, kind)
    names = known(group)
    expected = f"one of: {', '.join(names)}, or " if names else ""
    raise UnknownKind(
        group,
        str(kind),
        f"unknown {group} kind {kind!r} (expected {expected}a dotted path 'pkg.module:Class')",
    )


def section_hooks(names: Iterable[str], hook: str) -> list[Any]:
    """The attribute ``hook`` of each registered section among ``names`` that has one
    (``warm`` for a template process, ``scale`` for ``actorml scale``)."""
    found = []
    for name in names:
        try:
            section = resolve("section", name)
        except UnknownKind:
            continue
        value = getattr(section, hook, None)
        if value is not None:
            found.append(value)
    return found


def _import(group: str, kind: str, path: str) -> type:
    module_name, _, qualname = path.partition(":")
    where = f"{kind!r}" if kind == path else f"{kind!r} from {path!r}"
    try:
        obj: object = importlib.import_module(module_name)
        for attr in qualname.split("."):
            obj = getattr(obj, attr)
    except Exception as exc:  # an import can fail in any way; the user needs to see how
        raise UnknownKind(
            group, kind, f"cannot import {group} kind {where} ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, type):
        raise UnknownKind(
            group, kind, f"{group} kind {where} is not a class (got {type(obj).__name__})"
        )
    return obj


def _describe(target: str | type) -> str:
    if isinstance(target, type):
        return repr(f"{target.__module__}:{target.__qualname__}")
    return repr(target)
