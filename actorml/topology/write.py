"""Writing a topology back out: plain dicts in the file's shape, and TOML text.

Works on any attrs spec, so it needs none of the spec classes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
import tomli_w

from .fields import plain


def spec_dict(spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in attrs.fields(type(spec)):
        value = getattr(spec, field.name)
        if value is None or (isinstance(value, tuple | Mapping) and not value):
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif attrs.has(type(value)):
            value = spec_dict(value)
        elif isinstance(value, tuple):
            value = [spec_dict(item) for item in value]
        elif isinstance(value, Mapping):
            value = plain(value)
        out[_TOML_NAMES.get(field.name, field.name)] = value
    return out


_TOML_NAMES = {"actors": "actor", "nodes": "node"}


def emit_table(path: str, table: Mapping[str, Any], *, aot: bool = False) -> list[str]:
    """``[path]`` (or ``[[path]]``) then scalars, then sub-tables, always in block form."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and not _is_aot(v)}
    chunks = [f"[[{path}]]\n" if aot else f"[{path}]\n", tomli_w.dumps(scalars)]
    for key, value in table.items():  # sub-tables first: they belong to this table
        if isinstance(value, Mapping):
            chunks += ["\n", *emit_table(f"{path}.{toml_key(key)}", value)]
    for key, value in table.items():
        if _is_aot(value):
            for item in value:
                chunks += ["\n", *emit_table(f"{path}.{toml_key(key)}", item, aot=True)]
    return chunks


def _is_aot(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]
