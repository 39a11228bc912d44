"""Eager stale synchronous parallel (Dai et al. 2015)."""

from __future__ import annotations

import attrs

from .ssp import SSP


@attrs.define(eq=False)
class ESSP(SSP):
    """SSP's guarantee; when the slowest clock advances, shards push fresh rows to readers.

    Reads then rarely need a pull and are fresher: observed staleness concentrates near 0
    where SSP's spreads toward ``staleness``.
    """

    push_on_advance: bool = attrs.field(default=True, init=False)
