"""Checking topology values: the attrs validators and converters behind the spec classes.

Shared by the Python constructors, the TOML loader and every class whose values a
topology carries (the ``[job]`` config, the protocols): a value is validated once, by
the class that holds it. A validator wrapped in `checked` raises `FieldError` naming the
field; whoever builds from a file turns it into a `TopologyError` located there.
Imports nothing of the topology package.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .. import registry
from ..supervisor import Restart, Strategy

# -- validation shared by the Python constructors and the TOML loader ------------------


class FieldError(Exception):
    """A field failed validation; ``field`` is a key path relative to the object built."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class FieldTypeError(FieldError, TypeError):
    pass


class FieldValueError(FieldError, ValueError):
    pass


NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_NAME_MAX = 64  # names end up in ipc socket paths, which are limited to ~100 bytes
_ADDRESS_RE = re.compile(r"^(?:ipc|inproc|tcp[46]?|tls\+tcp[46]?|ws|wss)://\S+$")
_TOML_SCALARS = (str, int, float, bool, datetime.date, datetime.time)


def describe(value: object) -> str:
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


def checked(check: Callable[[Any], None]) -> Callable[[Any, Any, Any], None]:
    """An attrs validator around ``check`` that names the field in the error."""

    def validate(instance: Any, attribute: Any, value: Any) -> None:
        try:
            check(value)
        except TypeError as exc:
            raise FieldTypeError(attribute.name, str(exc)) from None
        except ValueError as exc:
            raise FieldValueError(attribute.name, str(exc)) from None

    return validate


def integer(minimum: Literal[0, 1], maximum: int | None = None) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {describe(value)}")
        if maximum is not None and not minimum <= value <= maximum:
            raise ValueError(
                f"expected an integer from {minimum} to {maximum}, got {describe(value)}"
            )
        if value < minimum:
            what = "a positive" if minimum == 1 else "a non-negative"
            raise ValueError(f"expected {what} integer, got {describe(value)}")

    return check


def number(*, positive: bool) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {describe(value)}")
        if not (value > 0 if positive else value >= 0):  # also rejects nan
            what = "positive" if positive else "non-negative"
            raise ValueError(f"expected a {what} number, got {describe(value)}")

    return check


def number_in(low: float, high: float = math.inf) -> Callable[[Any], None]:
    """A number from ``low`` to ``high`` (inclusive); integers count as numbers."""

    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {describe(value)}")
        if not low <= value <= high:  # also rejects nan
            bound = f"from {low:g} to {high:g}" if high < math.inf else f">= {low:g}"
            raise ValueError(f"expected a number {bound}, got {describe(value)}")

    return check


def seconds(maximum: float) -> Callable[[Any], None]:
    """A positive number of seconds, at most ``maximum``: past it a timeout no longer
    protects anything (``inf`` would wait for a dead peer for ever)."""

    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number of seconds, got {describe(value)}")
        if not 0 < value <= maximum:  # also rejects nan
            raise ValueError(
                f"expected a number of seconds above 0 and at most {maximum:g}, "
                f"got {describe(value)}"
            )

    return check


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def host_name(value: Any) -> None:
    """An IPv4 or IPv6 address, or a DNS name (``node-3.train.svc``)."""
    nonempty_string(value)
    try:
        ipaddress.ip_address(value.strip("[]"))
        return
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            f"invalid host {value!r} (expected an ip address such as '127.0.0.1' "
            "or a dns name such as 'node-1.example.org')"
        )


def optional_host_name(value: Any) -> None:
    """None, or what `host_name` accepts."""
    if value is not None:
        host_name(value)


def boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {describe(value)}")


def nonempty_string(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {describe(value)}")
    if not value.strip():
        raise ValueError(f"expected a non-empty string, got {describe(value)}")


def optional_string(value: Any) -> None:
    if value is not None:
        nonempty_string(value)


def choice(what: str, choices: Iterable[str]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {describe(value)}")
        if value not in choices:
            valid = ", ".join(sorted(choices))
            raise ValueError(f"unknown {what} {value!r} (expected one of: {valid})")

    return check


def valid_name(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {describe(value)}")
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r} (expected a letter followed by letters, digits, "
            "'_', '.' or '-')"
        )
    if len(value) > _NAME_MAX:
        raise ValueError(
            f"invalid name {value[:20]!r}... (expected at most {_NAME_MAX} characters, "
            f"got {len(value)})"
        )


def valid_kind(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {describe(value)}")
    if not registry.is_valid_kind(value):
        raise ValueError(
            f"invalid kind {value!r} (expected a registered kind or 'pkg.module:Class')"
        )


def valid_address(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {describe(value)}")
    if not _ADDRESS_RE.match(value):
        raise ValueError(
            f"invalid address {value!r} (expected an nng url such as "
            "'tcp://10.0.0.2:5555' or 'ipc:///tmp/node.sock')"
        )


MAX_MAILBOX = 1_000_000
"""The most messages a mailbox may hold: beyond it "bounded" stops meaning anything."""


def optional_positive_int(value: Any) -> None:
    if value is not None:
        integer(1, MAX_MAILBOX)(value)


def toml_args(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table, got {describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"expected string keys, got {describe(key)}")
        bad = _non_toml(item)
        if bad is not None:
            raise TypeError(f"value of {key!r} is not a toml value (got {describe(bad)})")


def _non_toml(value: Any) -> Any:
    """The first part of ``value`` that TOML cannot hold, or None."""
    if isinstance(value, _TOML_SCALARS):
        return None
    if isinstance(value, list | tuple):
        return next((bad for v in value if (bad := _non_toml(v)) is not None), None)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return next((bad for v in value.values() if (bad := _non_toml(v)) is not None), None)
    return value


def items_of(cls: type) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, tuple):
            raise TypeError(f"expected a tuple of {cls.__name__}, got {describe(value)}")
        for item in value:
            if not isinstance(item, cls):
                raise TypeError(f"expected {cls.__name__} items, got {describe(item)}")

    return check


def instance_of(cls: type) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"expected a {cls.__name__}, got {describe(value)}")

    return check


# attrs converters must be named functions for mypy; each leaves what it cannot
# convert alone so that the validator reports it with the field's name.


def to_strategy(value: Any) -> Any:
    with contextlib.suppress(ValueError, TypeError):
        return Strategy(value)
    return value


def to_restart(value: Any) -> Any:
    with contextlib.suppress(ValueError, TypeError):
        return Restart(value)
    return value


def to_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # a huge int stays an int, still a number
            return float(value)
    return value


def to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def to_args(value: Any) -> Any:
    return plain(value) if isinstance(value, Mapping) else value


def plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists, so Python-built and loaded specs compare equal."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def unknown_option(key: str, valid: Iterable[str], noun: str = "option", of: str = "") -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {noun}{of}{hint} (valid {noun}s: {', '.join(valid) or 'none'})"


def hint(text: str) -> dict[str, str]:
    return {"hint": text}
