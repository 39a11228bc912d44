"""Stale synchronous parallel (Ho et al. 2013)."""

from __future__ import annotations

import attrs

from .contract import ConsistencyProtocol, staleness_field


@attrs.define(eq=False)
class SSP(ConsistencyProtocol):
    """A worker at clock ``c`` waits until the slowest has reached ``c - staleness``.

    So it sees every update stamped ``<= c - staleness - 1`` (and all of its own), and
    no worker runs more than ``staleness`` clocks ahead of the slowest.
    """

    staleness: float = staleness_field(3)
