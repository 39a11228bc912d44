"""A data-parallel worker: gate, pull what is stale, compute, push, tick.

Per clock ``c`` a worker asks the protocol actor whether it may proceed
(:class:`MayRead`), pulls the rows its cache cannot serve fresh enough, computes the
mini-batch gradient in a thread (numba kernels release the GIL, so the node keeps
answering while it computes), pushes the gradients to the shards (whose
acknowledgements bring the updated rows back: read-my-writes), and only then ticks the
protocol to ``c + 1``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp
import trio

from actorml import Actor, ActorGone, AskTimeout, NodeUnreachable, RemoteError, handler
from actorml.groups import sole
from actorml.models import load_dataset
from actorml.models.base import Features, Model, localize, take_rows
from actorml.models.dataset import partition
from actorml.models.staging import staged_rows, staged_size
from actorml.protocols.contract import Join, Leave, MayRead, ReadOk, Tick

from .cache import RowCache
from .config import build_model, build_table_map
from .messages import (
    Assignment,
    Done,
    GetLayout,
    GetTableMap,
    JoinJob,
    Layout,
    Progress,
    Pull,
    Push,
    PushAck,
    Repartition,
    Rows,
    RowsUpdate,
    StopTraining,
    TableMapUpdate,
)
from .tables import TableMap

__all__ = ["Worker"]


@attrs.define(eq=False)
class Worker(Actor):
    """One worker of a data-parallel job.

    Args:
        scheduler: the scheduler actor's name.
        protocol: the protocol actor's name.
        slowdown: wall time per clock multiplied by this (3.0: a straggler).
        jitter_s: up to this many extra seconds per clock, uniformly at random.
        delay_s: this many extra seconds every clock (a straggler on a fast model).
        wait_timeout_s: the longest a worker waits for permission to proceed.
    """

    scheduler: str = "scheduler"
    protocol: str = "protocol"
    slowdown: float = 1.0
    jitter_s: float = 0.0
    delay_s: float = 0.0
    wait_timeout_s: float = 300.0
    reads: list[tuple[int, dict[str, int]]] = attrs.field(init=False, factory=list)
    acked: list[tuple[int, int]] = attrs.field(init=False, factory=list)
    stopped: bool = attrs.field(init=False, default=False)
    _cache: RowCache | None = attrs.field(init=False, default=None)
    _map: TableMap | None = attrs.field(init=False, default=None)
    _computing: bool = attrs.field(init=False, default=False)
    _deferred: list[tuple[Rows, int]] = attrs.field(init=False, factory=list)
    _seq: int = attrs.field(init=False, default=0)
    _assignment: Repartition | None = attrs.field(init=False, default=None)

    @handler
    async def rows_update(self, msg: RowsUpdate) -> None:
        """ESSP: a shard pushed fresh rows; keep them (after the current compute)."""
        if self._cache is None:
            return
        if self._computing:
            self._deferred.append((msg.rows, msg.min_clock))
        else:
            self._cache.store(msg.rows, msg.min_clock)

    @handler
    async def repartition(self, msg: Repartition) -> None:
        """The scheduler re-handed the data: the next clock trains on the new part."""
        self.ctx.only_from(self.scheduler)
        self._assignment = msg
        self.ctx.log.info("repartitioned", part=msg.part, of=msg.n_parts)

    @handler
    async def stop_training(self, msg: StopTraining) -> None:
        self.ctx.only_from(self.scheduler)
        self.stopped = True

    async def run(self) -> None:
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        layout: Layout = await self._ask_through_failures(self.scheduler, GetLayout())
        model = build_model(layout)
        self._map = build_table_map(layout, model)
        self._cache = RowCache.empty(tuple(model.tables()))
        rows_of, mapped = await trio.to_thread.run_sync(_training_rows, layout)
        job: Assignment = await self._ask_through_failures(self.scheduler, JoinJob(me, inc))
        joined = await self._ask_through_failures(self.protocol, Join(me, inc, job.start_clock))
        self._assignment = Repartition(job.part, job.n_parts, job.clocks_per_epoch)
        # The protocol says where to (re)join: where this worker left off, unless the
        # others have moved on further than the staleness bound allows.
        clock, end = joined.clock, job.total_clocks
        batch = layout.batch_size
        current: Repartition | None = None
        self.ctx.log.info("worker_started", part=job.part, of=job.n_parts, clock=clock)
        while clock < end and not self.stopped:
            if current is not self._assignment:  # (re)partitioned: take the new block
                current = self._assignment
                X, y = rows_of(current.n_parts, current.part)
                self.ctx.log.info(
                    "partition_taken", part=current.part, of=current.n_parts, rows=y.shape[0],
                    mapped=mapped, digest=_digest(X, y),
                )  # fmt: skip
                rng = np.random.default_rng(layout.seed * 7919 + current.part)
                order = rng.permutation(y.shape[0])
            step = clock % current.clocks_per_epoch
            if step == 0 and clock:
                order = rng.permutation(y.shape[0])
            idx = order[step * batch : (step + 1) * batch]
            if idx.size == 0:
                idx = order[:batch]
            await self._clock(model, clock, take_rows(X, idx), y[idx], me, inc)
            clock += 1
        await self.ctx.tell(self.protocol, Leave(me, "finished"))
        await self.ctx.tell(self.scheduler, Done(me, clock))

    async def _clock(
        self, model: Model, clock: int, Xb: Any, yb: np.ndarray, me: str, inc: int
    ) -> None:
        assert self._cache is not None and self._map is not None
        began = time.perf_counter()
        ok: ReadOk = await self._ask_through_failures(
            self.protocol, MayRead(me, inc, clock), timeout=self.wait_timeout_s
        )
        rows, X_local = localize(model, Xb)
        await self._pull_stale(rows, ok)
        waited = time.perf_counter() - began
        seen = self._cache.applied(rows)
        self.reads.append((clock, seen))
        params = {
            name: self._cache.values[name] if ids is None else self._cache.values[name][ids]
            for name, ids in rows.items()
        }
        self._computing = True
        t0 = time.perf_counter()
        try:
            loss, grads = await trio.to_thread.run_sync(model.gradient, params, X_local, yb)
        finally:
            self._computing = False
        compute = time.perf_counter() - t0
        for answer, stamp in self._deferred:
            self._cache.store(answer, stamp)
        self._deferred.clear()
        extra = compute * (self.slowdown - 1.0) + self.delay_s
        if self.jitter_s:
            extra += float(np.random.default_rng().uniform(0, self.jitter_s))
        if extra > 0:
            await trio.sleep(extra)
        before = len(self.acked)
        await self._push(clock, rows, grads, ok, me, inc)
        acked: dict[str, list[int]] = {}
        for shard, seq in self.acked[before:]:
            acked.setdefault(str(shard), []).append(seq)
        await self.ctx.tell(self.protocol, Tick(me, inc, clock + 1))
        others = [v for w, v in seen.items() if w != me]
        staleness = max(0, clock - 1 - min(others)) if others else 0
        await self.ctx.tell(
            self.scheduler,
            Progress(
                me, clock, float(loss), int(yb.shape[0]), compute, waited, staleness, inc, acked
            ),
        )
        if clock % 64 == 0:
            self._cache.prune()

    async def _ask_through_failures(
        self, target: str, msg: object, timeout: float | None = None
    ) -> Any:
        """Ask ``target``, waiting out its restart (its node died or it is starting)
        and its loading (it answers ``NotReady``).

        Gives up after ``wait_timeout_s`` without an answer: a job must never hang on
        a role that does not come back.
        """
        return await self.ctx.ask_when_up(
            target, msg, within_s=self.wait_timeout_s, timeout=timeout, through_restarts=True
        )

    async def _ask_shard(self, shard: int, msg: object) -> Any:
        """Ask the primary of slice ``shard``; on failover, learn the new map and retry.

        A retried push carries the same (worker, incarnation, seq): the new primary
        applies it only if the old one had not replicated it.
        """
        assert self._map is not None
        deadline = trio.current_time() + self.wait_timeout_s
        while True:
            target = self._map.shards[shard]
            try:
                return await self.ctx.ask(target, msg)
            except (*_SHARD_FAULTS, RemoteError) as exc:
                if isinstance(exc, RemoteError) and exc.error_type != "NotPrimary":
                    raise
                if trio.current_time() >= deadline:
                    raise
                self.ctx.log.info("shard_unavailable", shard=target, error=str(exc))
                if not isinstance(exc, NodeUnreachable):
                    await trio.sleep(0.05)  # its death may not be announced yet
            update: TableMapUpdate = await self._ask_through_failures(self.scheduler, GetTableMap())
            if tuple(update.primaries) == self._map.shards:
                await trio.sleep(0.01)  # the failover has not happened yet
            self._map = attrs.evolve(self._map, shards=tuple(update.primaries))

    async def _pull_stale(self, rows: dict[str, np.ndarray | None], ok: ReadOk) -> None:
        assert self._cache is not None and self._map is not None
        cache, tmap = self._cache, self._map
        wanted: dict[int, tuple[list[str], list[np.ndarray | None]]] = {}
        for name, ids in rows.items():
            for shard, part in tmap.split(name, ids):
                owned = tmap.owned(name, shard) if part is None else part
                stale = cache.stale(name, owned, ok.fresh_from)
                if not stale.any():
                    continue
                tables, asks = wanted.setdefault(shard, ([], []))
                tables.append(name)
                asks.append(None if part is None else part[stale])
        if not wanted:
            return

        async def pull(shard: int, tables: list[str], asks: list[np.ndarray | None]) -> None:
            answer: Rows = await self._ask_shard(shard, Pull(self.ctx.ref.name, tables, asks))
            cache.store(answer, ok.min_clock)

        await _all(pull(k, t, a) for k, (t, a) in wanted.items())

    async def _push(
        self,
        clock: int,
        rows: dict[str, np.ndarray | None],
        grads: dict[str, np.ndarray],
        ok: ReadOk,
        me: str,
        inc: int,
    ) -> None:
        assert self._cache is not None and self._map is not None
        cache, tmap = self._cache, self._map
        outgoing: dict[int, tuple[list[str], list[np.ndarray | None], list[np.ndarray]]] = {}
        for name, ids in rows.items():
            grad = grads[name]
            for shard, part in tmap.split(name, ids):
                if part is None:
                    piece = (
                        grad[tmap.owned(name, shard)]
                        if tmap.spec(name).sparse
                        else grad[_block(tmap, name, shard)]
                    )
                else:
                    assert ids is not None
                    piece = grad[np.searchsorted(ids, part)]
                tables, parts, pieces = outgoing.setdefault(shard, ([], [], []))
                tables.append(name)
                parts.append(part)
                pieces.append(piece)

        async def push(shard: int, tables: list[str], parts: Any, pieces: Any) -> None:
            self._seq += 1
            msg = Push(me, inc, self._seq, clock, tables, parts, pieces)
            ack: PushAck = await self._ask_shard(shard, msg)  # a retry resends the same seq
            self.acked.append((shard, msg.seq))
            cache.store(ack.rows, ok.min_clock)

        await _all(push(k, *v) for k, v in outgoing.items())


_SHARD_FAULTS = (ActorGone, AskTimeout)


def _training_rows(
    layout: Layout,
) -> tuple[Callable[[int, int], tuple[Features, np.ndarray]], bool]:
    """``(rows_of, mapped)``: ``rows_of(n_parts, part)`` gives the training rows of one
    partition; ``mapped`` says whether they come from the staged copy.

    Mapped from the dataset the scheduler staged (only the partition's pages are
    read, and a restarted worker maps them again instead of loading); loaded here
    when nothing was staged.
    """
    # Staged on the scheduler's host: a worker on another host without that directory
    # (no shared filesystem) loads the data itself.
    if layout.staged is not None and (Path(layout.staged) / "dataset.json").exists():
        where = Path(layout.staged)
        total = staged_size(where)
        return lambda n_parts, part: staged_rows(where, partition(total, n_parts, part)), True
    dataset = load_dataset(**layout.data)

    def rows_of(n_parts: int, part: int) -> tuple[Features, np.ndarray]:
        block = partition(dataset.y_train.shape[0], n_parts, part)
        X = take_rows(dataset.X_train, np.arange(block.start, block.stop))
        return X, dataset.y_train[block]

    return rows_of, False


def _digest(X: Features, y: np.ndarray) -> str:
    """A checksum of a partition, for the log: a restarted worker must see the same.

    Features are summed in only up to 32 MiB (more would read them all before the first
    clock); the labels always.
    """
    parts = [X.data, X.indices, X.indptr] if sp.issparse(X) else [X]
    crc = zlib.crc32(np.ascontiguousarray(y).data)
    if sum(p.nbytes for p in parts) <= 32 * 2**20:
        for part in parts:
            crc = zlib.crc32(np.ascontiguousarray(part).data, crc)
    return f"{crc:08x}"


def _block(tmap: TableMap, name: str, shard: int) -> slice:
    owned = tmap.owned(name, shard)
    return slice(int(owned[0]), int(owned[-1]) + 1) if owned.size else slice(0, 0)


async def _all(calls: Any) -> None:
    """Await the coroutines concurrently; the one error that happens comes out bare."""
    try:
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(_await, call)
    except BaseExceptionGroup as group:
        raise sole(group) from None


async def _await(call: Any) -> None:
    await call
