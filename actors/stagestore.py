"""Where a pipeline stage's parameters live: in the stage, or on the shards.

`LocalStore` keeps the tables and the optimiser state in the stage and applies the
job's optimiser at each flush, as a shard would. `ShardStore` keeps them on the
parameter-server shards, so the replicas of one stage share them under the job's
consistency protocol, as data-parallel workers do: before a clock's first micro-batch
the stage asks the protocol (`MayRead`) and pulls what its cache cannot serve fresh
enough; at the flush it pushes its summed gradient to each shard and ticks the protocol
once every push is acknowledged. A stage restarted after its node died starts from the
shards' tables; it learns from the shards' ``applied`` clocks which of its pushes
already landed, so a redone mini-batch is never applied twice.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
import numpy as np
import trio

from actorml.models.base import Model, TableSpec, init_tables
from actorml.models.layers import balanced_cut, check_cut
from actorml.models.optim import Optimizer, init_state
from actorml.protocols.contract import Join, MayRead, ReadOk, Tick

from .cache import RowCache
from .config import build_optimizer
from .messages import Layout, Pull, Push, PushAck, Rows, RowsUpdate
from .tables import TableMap

__all__ = ["LocalStore", "ParamStore", "ShardStore", "stage_layers"]


def stage_layers(model: Model, stages: Any) -> list[list[int]]:
    """The cut of ``model``'s layers into stages: ``stages`` as given (a list of
    layer-id lists), or balanced by compute when it is a number of stages.

    Raises:
        ValueError: the model has no layers to cut, or the cut does not fit them.
    """
    sizes = getattr(model, "sizes", None)
    if sizes is None or not hasattr(model, "layers"):
        raise ValueError(f"model {model.name!r} has no layers to cut into stages (use 'mlp')")
    if isinstance(stages, int):
        return balanced_cut(sizes, stages)
    return check_cut(stages, len(sizes) - 1)


class ParamStore(Protocol):
    """The parameters of one stage, as a stage uses them."""

    @property
    def values(self) -> dict[str, np.ndarray]:
        """The stage's tables, whole, as of the clock begun last."""
        ...

    async def begin(self, ctx: Any, clock: int) -> None:
        """Make ``values`` fit to compute clock ``clock`` with."""
        ...

    async def update(
        self, ctx: Any, clock: int, grads: dict[str, np.ndarray]
    ) -> dict[str, list[int]]:
        """Apply the clock's summed gradient; returns the push seqs acknowledged per shard."""
        ...


@attrs.define(eq=False)
class LocalStore:
    """The tables and optimiser state held in the stage itself."""

    values: dict[str, np.ndarray]
    optimizer: Optimizer
    state: dict[str, dict[str, np.ndarray]]
    steps: dict[str, np.ndarray]

    @classmethod
    def create(cls, layout: Layout, specs: tuple[TableSpec, ...]) -> LocalStore:
        optimizer = build_optimizer(layout)
        return cls(
            values=init_tables(specs, layout.seed),  # the values the whole network starts from
            optimizer=optimizer,
            state={s.name: init_state(optimizer, s.rows, s.cols) for s in specs},
            steps={s.name: np.zeros(s.rows, dtype=np.int64) for s in specs},
        )

    async def begin(self, ctx: Any, clock: int) -> None:
        """Nothing to fetch: the tables are here."""

    async def update(
        self, ctx: Any, clock: int, grads: dict[str, np.ndarray]
    ) -> dict[str, list[int]]:
        for name, grad in grads.items():
            self.optimizer.apply(self.values[name], grad, self.state[name], self.steps[name])
        return {}


@attrs.define(eq=False)
class ShardStore:
    """The stage's tables on the shards, read through a cache under the protocol."""

    cache: RowCache
    map: TableMap
    protocol: str
    wait_timeout_s: float
    names: list[str]
    pushed: list[int]
    """Per shard, the last clock of ours it has applied (from its answers)."""
    joined: bool = False
    ok: ReadOk | None = None
    seq: int = 0
    offered: list[RowsUpdate] = attrs.field(factory=list)
    reads: list[tuple[int, dict[str, int]]] = attrs.field(factory=list)
    """Per clock begun, which updates the tables read held: per pusher, the highest
    clock of its that every row contained (what the consistency tests check)."""

    @classmethod
    def create(
        cls, layout: Layout, specs: tuple[TableSpec, ...], protocol: str, wait_timeout_s: float
    ) -> ShardStore:
        tmap = TableMap(specs, tuple(layout.shards))
        return cls(
            cache=RowCache.empty(specs),
            map=tmap,
            protocol=protocol,
            wait_timeout_s=wait_timeout_s,
            names=[s.name for s in specs],
            pushed=[-1] * len(tmap.shards),
        )

    @property
    def values(self) -> dict[str, np.ndarray]:
        return self.cache.values

    def offer(self, msg: RowsUpdate) -> None:
        """ESSP rows pushed by a shard: stored at the next clock's start."""
        self.offered.append(msg)

    def _note(self, k: int, me: str, answer: Rows) -> None:
        self.pushed[k] = max(self.pushed[k], answer.applied.get(me, -1))

    async def begin(self, ctx: Any, clock: int) -> None:
        me, inc = ctx.ref.name, ctx.ref.incarnation
        if not self.joined:
            await ctx.ask_when_up(self.protocol, Join(me, inc, clock), within_s=self.wait_timeout_s)
            self.joined = True
        ok: ReadOk = await ctx.ask(self.protocol, MayRead(me, inc, clock), self.wait_timeout_s)
        self.ok = ok
        for update in self.offered:
            self.cache.store(update.rows, update.min_clock)
        self.offered.clear()

        # A row never read (stamp -1) is stale whatever the bound: under SSP(s) at a
        # clock below s the bound is negative, and the stage must not start from zeros.
        fresh = None if ok.fresh_from is None else max(ok.fresh_from, 0)

        async def pull(k: int, shard: str) -> None:
            stale = [
                n for n in self.names if self.cache.stale(n, self.map.owned(n, k), fresh).any()
            ]
            if stale:
                answer: Rows = await ctx.ask_when_up(
                    shard, Pull(me, stale, [None] * len(stale)), within_s=self.wait_timeout_s
                )
                self.cache.store(answer, ok.min_clock)
                self._note(k, me, answer)

        async with trio.open_nursery() as nursery:
            for k, shard in enumerate(self.map.shards):
                nursery.start_soon(pull, k, shard)
        self.reads.append((clock, self.cache.applied(dict.fromkeys(self.names))))
        if clock % 64 == 0:
            self.cache.prune()

    async def update(
        self, ctx: Any, clock: int, grads: dict[str, np.ndarray]
    ) -> dict[str, list[int]]:
        """Push each shard its rows of the gradient (unless it already applied this
        clock of ours: a redone mini-batch), then tick the protocol."""
        assert self.ok is not None
        me, inc, ok = ctx.ref.name, ctx.ref.incarnation, self.ok
        acked: dict[str, list[int]] = {}

        async def push(k: int, shard: str) -> None:
            if self.pushed[k] >= clock:
                return
            pieces = [grads[n][self.map.block(n, k)] for n in self.names]
            self.seq += 1
            msg = Push(me, inc, self.seq, clock, list(self.names), [None] * len(pieces), pieces)
            ack: PushAck = await ctx.ask(shard, msg, self.wait_timeout_s)
            acked[str(k)] = [msg.seq]
            self.cache.store(ack.rows, ok.min_clock)  # read-my-writes
            self.pushed[k] = max(self.pushed[k], clock)

        async with trio.open_nursery() as nursery:
            for k, shard in enumerate(self.map.shards):
                nursery.start_soon(push, k, shard)
        await ctx.tell(self.protocol, Tick(me, inc, clock + 1))
        return acked
