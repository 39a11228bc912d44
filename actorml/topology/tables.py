"""Checking a TOML table against an attrs class: unknown keys, missing keys, bad values.

The class's own converters and validators judge the values (a value is validated once,
by the class that uses it); a failure becomes a `TopologyError` at the offending key path,
not yet located in a file (`lines.Origin.locate` does that). Used for the spec classes,
the ``[job]`` config and the options of protocols, models and optimisers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ..errors import TopologyError
from .fields import FieldError, describe, unknown_option
from .lines import join

Nested = Mapping[str, tuple[str, Callable[[Any, str], Any]]]
"""Keys of a table that hold sub-tables: TOML key -> (field name, builder(value, path))."""


def build(
    cls: type[Any],
    raw: Any,
    path: str,
    *,
    base: Any = None,
    nested: Nested | None = None,
) -> Any:
    """Check ``raw`` key by key in file order, then construct ``cls`` (or evolve ``base``).

    Raises:
        TopologyError: at the first unknown key, missing required key (its field's
            ``hint`` metadata says what to give) or value the class refuses.
    """
    if not isinstance(raw, Mapping):
        raise TopologyError(path, f"expected a table, got {describe(raw)}")
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    nested = nested or {}
    to_field = {name: name for name in fields}
    for key, (field_name, _) in nested.items():
        del to_field[field_name]
        to_field[key] = field_name
    to_toml = {v: k for k, v in to_field.items()}
    for key in raw:
        if key not in to_field:
            raise TopologyError(join(path, str(key)), unknown_option(str(key), to_field))
    for field in fields.values():
        if field.default is attrs.NOTHING and to_toml[field.name] not in raw:
            hint = field.metadata.get("hint")
            problem = f"missing required key ({hint})" if hint else "missing required key"
            raise TopologyError(join(path, to_toml[field.name]), problem)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in nested:
            kwargs[to_field[key]] = nested[key][1](value, join(path, key))
        else:
            kwargs[key] = checked_value(fields[key], value, join(path, key))
    try:
        return attrs.evolve(base, **kwargs) if base is not None else cls(**kwargs)
    except FieldError as exc:  # a cross-field check; its field may be a path (slowdown.w)
        head, dot, rest = exc.field.partition(".")
        key_path = join(path, to_toml.get(head, head)) + dot + rest
        raise TopologyError(key_path, exc.problem) from None


def check_options(
    cls: type[Any],
    table: Mapping[str, Any],
    path: str,
    *,
    valid: Iterable[str] | None = None,
) -> None:
    """Check ``table``'s keys against ``cls``'s init fields with the class's own checks.

    Each key must be in ``valid`` (by default the init fields, by alias); each value that
    belongs to an init field goes through that field's converter and validator. A class
    that is not an attrs class is left to judge its options itself.

    Raises:
        TopologyError: at the first unknown key or refused value.
    """
    if not attrs.has(cls):
        return
    fields = {f.alias or f.name: f for f in attrs.fields(cls) if f.init}
    allowed = set(fields if valid is None else valid)
    for key, value in table.items():
        if key not in allowed:
            raise TopologyError(join(path, key), unknown_option(key, allowed))
        if key in fields:
            checked_value(fields[key], value, join(path, key))


def checked_value(field: attrs.Attribute[Any], value: Any, key_path: str) -> Any:
    """``value`` through ``field``'s converter and validator, or a TopologyError."""
    try:
        converted = field.converter(value) if callable(field.converter) else value
        if field.validator is not None:
            field.validator(None, field, converted)
    except FieldError as exc:
        raise TopologyError(key_path, exc.problem) from None
    except (TypeError, ValueError) as exc:  # a plain attrs validator or a converter
        raise TopologyError(key_path, str(exc)) from None
    return converted
