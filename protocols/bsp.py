"""Bulk synchronous parallel: a barrier every clock (SSP with staleness 0)."""

from __future__ import annotations

import attrs

from .contract import ConsistencyProtocol


@attrs.define(eq=False)
class BSP(ConsistencyProtocol):
    """Every worker at clock ``c`` waits until all have finished clock ``c - 1``."""

    staleness: float = attrs.field(default=0, init=False)
