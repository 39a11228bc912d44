"""Asynchronous parallel: nobody waits (SSP with infinite staleness)."""

from __future__ import annotations

import math

import attrs

from .contract import ConsistencyProtocol


@attrs.define(eq=False)
class ASP(ConsistencyProtocol):
    """Workers never wait for each other; reads may be arbitrarily stale."""

    staleness: float = attrs.field(default=math.inf, init=False)
