"""A model-parallel worker: updates the blocks the schedule hands it, round by round.

It loads the problem's data once and keeps the problem's worker side (`BlockWorker`:
for Lasso the design and a residual, for matrix factorisation the ratings, for LDA the
corpus). A round ``t`` (an `MpRound` from the scheduler): tick the protocol up to ``t``
if this worker sat rounds out, wait for the protocol's permission at clock ``t``, pull
the rows the block needs that are stale (through its row cache, like a data-parallel
worker), compute the block's changes (numba, in a thread when the block is big), push
them to the shards, whose acknowledgements make them count, tick the protocol to
``t + 1`` and answer the scheduler with the update count and the acknowledged push seqs.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Promise, handler
from actorml.models.rounds import BlockWorker
from actorml.protocols.contract import Join, Leave, MayRead, ReadOk, Tick

from .cache import RowCache
from .config import build_problem, build_table_map
from .messages import GetLayout, Layout, StopTraining
from .mp_messages import MpJoin, MpJoined, MpRound, MpRoundDone
from .worker import Worker

__all__ = ["MpWorker"]

INLINE = 1_000_000
"""Blocks costing fewer multiply-adds than this compute on the event loop (< ~1 ms)."""


@attrs.define(eq=False)
class MpWorker(Worker):
    """One worker of a model-parallel job (the arguments of `Worker`)."""

    _rounds: Any = attrs.field(init=False, default=None)
    _inbox: Any = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._rounds, self._inbox = trio.open_memory_channel[tuple[MpRound, Promise]](4)

    @handler
    async def mp_round(self, msg: MpRound) -> Promise:
        """Queue the round for the main loop and answer once it is pushed (the mailbox
        keeps serving meanwhile)."""
        self.ctx.only_from(self.scheduler)
        promise = self.ctx.promise()
        self._rounds.send_nowait((msg, promise))
        return promise

    @handler
    async def stop_training(self, msg: StopTraining) -> None:
        self.ctx.only_from(self.scheduler)
        self.stopped = True
        self._rounds.close()

    async def run(self) -> None:
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        layout: Layout = await self._ask_through_failures(self.scheduler, GetLayout())
        problem = build_problem(layout)
        self._map = build_table_map(layout, problem)
        self._cache = RowCache.empty(tuple(problem.tables()))
        data = await trio.to_thread.run_sync(problem.load)
        side: BlockWorker = problem.worker(data)
        joined: MpJoined = await self._ask_through_failures(self.scheduler, MpJoin(me, inc))
        ok = await self._ask_through_failures(self.protocol, Join(me, inc, joined.round))
        clock = ok.clock
        self.ctx.log.info("worker_started", clock=clock, problem=layout.model["kind"])
        async for msg, promise in self._inbox:
            if msg.round > clock:  # it sat rounds out (or just joined): nothing to push
                await self.ctx.tell(self.protocol, Tick(me, inc, msg.round))
                clock = msg.round
            try:
                done = await self._round(msg, side)
            except BaseException as exc:
                # Tell the scheduler now (it re-plans the block) instead of letting it
                # wait out its round timeout; then crash, and the supervisor restarts us.
                with trio.CancelScope(shield=True):
                    await promise.fail(exc)
                raise
            clock = msg.round + 1
            await promise.resolve(done)
        await self.ctx.tell(self.protocol, Leave(me, "finished"))

    async def _round(self, msg: MpRound, side: BlockWorker) -> MpRoundDone:
        assert self._cache is not None
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        block = np.asarray(msg.block, dtype=np.int64)
        if block.size == 0:  # sits this round out: nothing to read or push
            await self.ctx.tell(self.protocol, Tick(me, inc, msg.round + 1))
            return MpRoundDone(me, inc, msg.round, 0, 0.0, {})
        ok: ReadOk = await self._ask_through_failures(
            self.protocol, MayRead(me, inc, msg.round), timeout=self.wait_timeout_s
        )
        await self._pull_stale(side.needs(block), ok)
        tables = self._cache.values
        t0 = time.perf_counter()
        if side.cost(block) < INLINE:
            changes = side.compute(block, tables, msg.round)  # a thread hop costs more
        else:
            changes = await trio.to_thread.run_sync(side.compute, block, tables, msg.round)
        compute_s = time.perf_counter() - t0
        before = len(self.acked)
        ids = {name: rows for name, (rows, _) in changes.items() if rows.size}
        if ids:
            grads = {name: -changes[name][1] for name in ids}  # the shards apply SGD, lr 1
            await self._push(msg.round, dict(ids), grads, ok, me, inc, {})
        owns = getattr(side, "owns", None)
        if owns is not None:
            # Rows only this block writes in this round hold, once pushed, every update
            # stamped up to this round: fresh for the next one, no pull needed then.
            for name, rows in owns(block).items():
                stamp = self._cache.stamp[name]
                stamp[rows] = np.maximum(stamp[rows], msg.round + 1)
        acked: dict[str, list[int]] = {}
        for shard, seq in self.acked[before:]:
            acked.setdefault(str(shard), []).append(seq)
        await self.ctx.tell(self.protocol, Tick(me, inc, msg.round + 1))
        return MpRoundDone(me, inc, msg.round, side.size(block), compute_s, acked)
