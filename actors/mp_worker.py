"""A model-parallel worker: updates the coordinates the schedule hands it each round.

It holds the whole design (columns standardised) and a residual ``r = y - X beta`` for
the ``beta`` it last read. A round ``t`` (an `MpRound` from the scheduler): tick the
protocol up to ``t`` if this worker sat rounds out, wait for the protocol's permission
at clock ``t``, pull the rows of ``beta`` that changed (through its row cache, like a
data-parallel worker), bring ``r`` up to date column by column, compute the block's
changes (numba, in a thread), push them to the shards, whose acknowledgements make them
count, tick the protocol to ``t + 1`` and answer the scheduler with the changes and the
acknowledged push seqs.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Promise, handler
from actorml.models.lasso import Design, cd_round, update_residual
from actorml.protocols.contract import Join, Leave, MayRead, ReadOk, Tick

from .cache import RowCache
from .config import build_problem, build_table_map
from .messages import GetLayout, Layout, StopTraining
from .mp_messages import MpJoin, MpJoined, MpRound, MpRoundDone
from .worker import Worker

__all__ = ["MpWorker"]

TABLE = "beta"

INLINE = 1_000_000
"""Rounds touching fewer design entries than this compute on the event loop (< ~1 ms)."""


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
        design: Design = await trio.to_thread.run_sync(problem.load)
        beta = np.zeros(design.X.shape[1])
        residual = design.y.copy()
        joined: MpJoined = await self._ask_through_failures(self.scheduler, MpJoin(me, inc))
        ok = await self._ask_through_failures(self.protocol, Join(me, inc, joined.round))
        clock = ok.clock
        self.ctx.log.info("worker_started", clock=clock, coordinates=beta.size)
        async for msg, promise in self._inbox:
            if msg.round > clock:  # it sat rounds out (or just joined): nothing to push
                await self.ctx.tell(self.protocol, Tick(me, inc, msg.round))
                clock = msg.round
            try:
                done = await self._round(msg, design, beta, residual, float(problem.alpha))
            except BaseException as exc:
                # Tell the scheduler now (it re-plans the block) instead of letting it
                # wait out its round timeout; then crash, and the supervisor restarts us.
                with trio.CancelScope(shield=True):
                    await promise.fail(exc)
                raise
            clock = msg.round + 1
            await promise.resolve(done)
        await self.ctx.tell(self.protocol, Leave(me, "finished"))

    async def _round(
        self, msg: MpRound, design: Design, beta: np.ndarray, residual: np.ndarray, alpha: float
    ) -> MpRoundDone:
        assert self._cache is not None
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        coords = np.asarray(msg.coords, dtype=np.int64)
        if coords.size == 0:  # sits this round out: nothing to read or push
            await self.ctx.tell(self.protocol, Tick(me, inc, msg.round + 1))
            return MpRoundDone(me, inc, msg.round, coords, np.zeros(0), 0.0, {})
        ok: ReadOk = await self._ask_through_failures(
            self.protocol, MayRead(me, inc, msg.round), timeout=self.wait_timeout_s
        )
        await self._pull_stale({TABLE: None}, ok)
        fresh = self._cache.values[TABLE][:, 0]
        moved = np.flatnonzero(fresh != beta)
        t0 = time.perf_counter()

        def compute() -> np.ndarray:
            update_residual(design.X, residual, moved, fresh[moved] - beta[moved])
            beta[moved] = fresh[moved]
            return cd_round(design.X, residual, beta, coords, alpha)

        if design.n * (coords.size + moved.size) < INLINE:
            deltas = compute()  # a thread hand-off would cost more than the work
        else:
            deltas = await trio.to_thread.run_sync(compute)
        compute_s = time.perf_counter() - t0
        changed = deltas != 0.0
        before = len(self.acked)
        if changed.any():
            ids = coords[changed]
            grads = {TABLE: -deltas[changed][:, None]}  # the shards apply SGD with lr 1
            await self._push(msg.round, {TABLE: ids}, grads, ok, me, inc, {})
        acked: dict[str, list[int]] = {}
        for shard, seq in self.acked[before:]:
            acked.setdefault(str(shard), []).append(seq)
        await self.ctx.tell(self.protocol, Tick(me, inc, msg.round + 1))
        return MpRoundDone(me, inc, msg.round, coords, deltas, compute_s, acked)
