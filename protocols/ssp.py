"""Stale synchronous parallel (Ho et al. 2013)."""

from __future__ import annotations

import attrs

from .contract import ConsistencyProtocol


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.define(eq=False)
class SSP(ConsistencyProtocol):
    """A worker at clock ``c`` waits until the slowest has reached ``c - staleness``.

    So it sees every update stamped ``<= c - staleness - 1`` (and all of its own), and
    no worker runs more than ``staleness`` clocks ahead of the slowest.
    """

    staleness: float = attrs.field(default=3, validator=_non_negative)
