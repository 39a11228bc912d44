"""Actors the multi-process tests run inside node processes (imported by dotted path)."""

from __future__ import annotations

import os
import random

import attrs
import numpy as np
import trio

from actorml import Actor, handler, message, registry
from actorml.errors import UnknownKind


@message("test.cluster.add")
class Add:
    n: int


@message("test.cluster.get")
class Get:
    pass


@message("test.cluster.total")
class Total:
    value: int
    incarnation: int
    pid: int


@message("test.cluster.crash")
class Crash:
    why: str = "asked to crash"


@message("test.cluster.resolve")
class Resolve:
    """Resolve ``kind`` in ``group`` in this node process; answered with Resolved."""

    group: str
    kind: str


@message("test.cluster.resolved")
class Resolved:
    outcome: str


@message("test.cluster.draw")
class Draw:
    """Draw from this process's global random generators; answered with Drawn."""


@message("test.cluster.drawn")
class Drawn:
    python: float
    numpy: float


@message("test.cluster.finish")
class Finish:
    value: int


@attrs.define(eq=False)
class Counter(Actor):
    """Adds numbers; crashes on request; reports its total, incarnation and pid."""

    start: int = 0
    total: int = attrs.field(init=False, default=0)

    async def started(self) -> None:
        self.total = self.start

    @handler
    async def add(self, msg: Add) -> None:
        self.total += msg.n

    @handler
    async def get(self, msg: Get) -> Total:
        return Total(self.total, self.ctx.ref.incarnation, os.getpid())

    @handler
    async def resolve(self, msg: Resolve) -> Resolved:
        try:
            cls = registry.resolve(msg.group, msg.kind)
        except UnknownKind as exc:
            return Resolved(f"refused: {exc}")
        return Resolved(f"ok: {cls.__qualname__}")

    @handler
    async def draw(self, msg: Draw) -> Drawn:
        return Drawn(random.random(), float(np.random.random()))

    @handler
    async def crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.why)

    @handler
    async def finish(self, msg: Finish) -> None:
        await self.ctx.complete(value=msg.value, by=self.ctx.ref.name)


@attrs.define(eq=False)
class Finisher(Actor):
    """Completes the job after ``delay_s`` with ``value``."""

    value: int = 42
    delay_s: float = 0.0
    error: str = ""

    async def run(self) -> None:
        await trio.sleep(self.delay_s)
        if self.error:
            await self.ctx.complete(value=self.value, error=self.error)
        else:
            await self.ctx.complete(value=self.value)


@attrs.define(eq=False)
class Idler(Actor):
    """Does nothing until stopped; stops slowly if told to."""

    stop_delay_s: float = 0.0

    async def stopping(self) -> None:
        await trio.sleep(self.stop_delay_s)
