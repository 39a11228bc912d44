"""A data-parallel worker: gate, pull what is stale, compute, push, tick.

Per clock ``c`` a worker passes the protocol's gate, pulls the rows its cache cannot
serve fresh enough, computes the mini-batch gradient in a thread (numba kernels release
the GIL, so the node keeps answering while it computes), pushes the gradients to the
shards (whose acknowledgements bring the updated rows back: read-my-writes), and only
then ticks the protocol to ``c + 1``. With ``[job] overlap`` the push and tick of clock
``c`` run in the background while clock ``c + 1`` reads and computes (its read may then
miss the worker's own update of ``c``; the gate's staleness >= 1 allows that).

On a shard's host the worker keeps no copy of that shard's rows: each clock, past the
gate, it reads the rows it needs straight from the shard's shared-memory segment (as
fresh as the shard holds them, with the applied vector they hold), and its pushes
bring nothing back. Through messages (another host, or ``shared_memory = false``) it
reads through its row cache, as above.

The gate costs no message while it is open: the protocol tells a worker the slowest
clock (:class:`MinClock`) when it advanced and the worker will need it, and a worker
whose protocol keeps the plain staleness rule judges the gate itself from the last one
it was told; it asks (:class:`MayRead`) only when it has to wait, or every clock under
a protocol with a rule of its own.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgpack
import numpy as np
import scipy.sparse as sp
import trio

from actorml import Actor, ActorGone, AskTimeout, NodeUnreachable, RemoteError, handler
from actorml.groups import sole
from actorml.models import load_dataset
from actorml.models.base import Features, Model, localize, take_rows
from actorml.models.dataset import partition
from actorml.models.staging import staged_rows, staged_size
from actorml.protocols.contract import (
    Join,
    Joined,
    Leave,
    MayRead,
    MinClock,
    ReadOk,
    Tick,
    gate_allows,
    gate_fresh_from,
)
from actorml.shm import SegmentBusy, SegmentUnavailable, SharedReader, same_host

from .batches import Batch, clock_batches, coalesced_gradient, positions, union_rows
from .cache import RowCache, meet
from .config import build_model, build_table_map
from .messages import (
    Assignment,
    Done,
    GetLayout,
    GetSegment,
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
    Segment,
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
        transient_p: each clock, with this probability, the worker is delayed by
            ``transient_factor`` times its compute (a transient straggler, as Cui et al.
            ATC'14 and Ho et al. NIPS'13 inject them).
        transient_factor: see ``transient_p``.
        wait_timeout_s: the longest a worker waits for permission to proceed.
    """

    scheduler: str = "scheduler"
    protocol: str = "protocol"
    slowdown: float = 1.0
    jitter_s: float = 0.0
    delay_s: float = 0.0
    transient_p: float = 0.0
    transient_factor: float = 3.0
    wait_timeout_s: float = 300.0
    reads: list[tuple[int, dict[str, int]]] = attrs.field(init=False, factory=list)
    acked: list[tuple[int, int]] = attrs.field(init=False, factory=list)
    stopped: bool = attrs.field(init=False, default=False)
    rows_pushed: int = attrs.field(init=False, default=0)
    """How many times a shard pushed fresh rows (ESSP's ``RowsUpdate``)."""
    _cache: RowCache | None = attrs.field(init=False, default=None)
    _map: TableMap | None = attrs.field(init=False, default=None)
    _computing: bool = attrs.field(init=False, default=False)
    _deferred: list[tuple[Rows, int]] = attrs.field(init=False, factory=list)
    _seq: int = attrs.field(init=False, default=0)
    _assignment: Repartition | None = attrs.field(init=False, default=None)
    _gate: float | None = attrs.field(init=False, default=None)
    """The staleness to judge the gate by locally; None: ask the protocol every clock."""
    _reports_ride: bool = attrs.field(init=False, default=False)
    """Progress and Done ride on the Tick and Leave (the protocol passes them on)."""
    _last_compute: float = attrs.field(init=False, default=math.inf)
    """How long the last clock's compute took (the first one runs in a thread)."""
    _slowest: tuple[int, int] = attrs.field(init=False, default=(-1, 0))
    """(membership epoch, slowest clock) last told by the protocol."""
    _shared: bool = attrs.field(init=False, default=False)
    """Read the slices of shards on this host from their shared-memory segments."""
    _segments: dict[str, SharedReader | None] = attrs.field(init=False, factory=dict)
    """Per shard actor, its segment's reader (None: read through messages)."""
    shared_reads: int = attrs.field(init=False, default=0)
    """How many reads came from a shard's shared-memory segment, not a message."""

    @handler
    async def rows_update(self, msg: RowsUpdate) -> None:
        """ESSP: a shard pushed fresh rows; keep them (after the current compute)."""
        if self._cache is None:
            return
        self.rows_pushed += 1
        if self._computing:
            self._deferred.append((msg.rows, msg.min_clock))
        else:
            self._cache.store(msg.rows, msg.min_clock)

    @handler
    async def min_clock(self, msg: MinClock) -> None:
        """The protocol says where the slowest clock is: the local gate's input."""
        self.ctx.only_from(self.protocol)
        self._learn_slowest(msg.epoch, msg.min_clock)

    def _learn_slowest(self, epoch: int, min_clock: int) -> None:
        # A newer membership epoch replaces what was known (a join may lower the
        # slowest clock); within one epoch the slowest clock only rises.
        known_epoch, known = self._slowest
        if epoch > known_epoch or (epoch == known_epoch and min_clock > known):
            self._slowest = (epoch, min_clock)

    async def _gate_open(self, clock: int, me: str, inc: int) -> ReadOk:
        """Permission to read at ``clock``: judged locally while the gate is open, else
        asked of the protocol (which answers once this worker may proceed)."""
        await trio.lowlevel.checkpoint()  # let in a MinClock that already arrived
        if self._gate is not None:
            for turn in range(GATE_YIELDS + 1):
                epoch, slowest = self._slowest
                if gate_allows(clock, slowest, self._gate):
                    return ReadOk(slowest, gate_fresh_from(clock, self._gate), epoch)
                if turn < GATE_YIELDS:
                    # A MinClock already delivered may wait in the mailbox for this
                    # task to yield: let it in before paying a round trip.
                    await trio.lowlevel.checkpoint()
        ok: ReadOk = await self._ask_through_failures(
            self.protocol, MayRead(me, inc, clock), timeout=self.wait_timeout_s
        )
        self._learn_slowest(ok.epoch, ok.min_clock)
        return ok

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

    def closed(self) -> None:
        for name in list(self._segments):
            self._forget_segment(name)

    async def run(self) -> None:
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        layout: Layout = await self._ask_through_failures(self.scheduler, GetLayout())
        model = build_model(layout)
        self._map = build_table_map(layout, model)
        self._cache = RowCache.empty(tuple(model.tables()))
        self._shared = layout.shared_memory
        rows_of, mapped = await trio.to_thread.run_sync(_training_rows, layout)
        job: Assignment = await self._ask_through_failures(self.scheduler, JoinJob(me, inc))
        joined: Joined = await self._ask_through_failures(
            self.protocol, Join(me, inc, job.start_clock)
        )
        self._gate = joined.staleness
        self._reports_ride = joined.forwards_reports
        self._learn_slowest(joined.epoch, joined.min_clock)
        self._assignment = Repartition(job.part, job.n_parts, job.clocks_per_epoch)
        overlap = layout.overlap and self._gate is not None and self._gate >= 1
        if layout.overlap and not overlap:
            self.ctx.log.warning(
                "overlap_off", reason="the protocol's gate is not plain staleness >= 1"
            )
        # The protocol says where to (re)join: where this worker left off, unless the
        # others have moved on further than the staleness bound allows.
        clock, end = joined.clock, job.total_clocks
        batch, k = layout.batch_size, layout.batches_per_clock
        # A push asks for the rows of the clock that reads next after its answer: the
        # next one, or with overlap the one after (the next reads while it is in flight).
        lead = 2 if overlap else 1
        current: Repartition | None = None
        # clock -> its localised mini-batches and the union of the rows they read
        prepared: dict[int, tuple[list[Batch], dict[str, np.ndarray | None]]] = {}
        orders: dict[int, np.ndarray] = {}  # epoch -> its order of the partition's rows
        self.ctx.log.info("worker_started", part=job.part, of=job.n_parts, clock=clock)

        def batches_of(at: int) -> tuple[list[Batch], dict[str, np.ndarray | None]]:
            """Clock ``at``'s mini-batches, localised (the epoch's order drawn once),
            and the rows they read."""
            assert current is not None
            epoch, step = divmod(at, current.clocks_per_epoch)
            while epoch not in orders:  # drawn in epoch order: one sequence per partition
                orders[max(orders, default=epoch - 1) + 1] = rng.permutation(y.shape[0])
            local = _localized(model, X, y, clock_batches(orders[epoch], step, batch, k))
            return local, union_rows([b[0] for b in local])

        def prepare(at: int) -> tuple[list[Batch], dict[str, np.ndarray | None]]:
            """Clock ``at``'s batches, localised now unless already prepared."""
            if at not in prepared:
                prepared[at] = batches_of(at)
            return prepared[at]

        async with trio.open_nursery() as nursery:
            in_flight: trio.Event | None = None
            while clock < end and not self.stopped:
                if current is not self._assignment:  # (re)partitioned: take the new block
                    current = self._assignment
                    prepared.clear()
                    orders.clear()
                    X, y = rows_of(current.n_parts, current.part)
                    self.ctx.log.info(
                        "partition_taken", part=current.part, of=current.n_parts,
                        rows=y.shape[0], mapped=mapped, digest=_digest(X, y),
                    )  # fmt: skip
                    rng = np.random.default_rng(layout.seed * 7919 + current.part)
                local = prepared.pop(clock, None) or batches_of(clock)
                upcoming = prepare(clock + lead)[1] if clock + lead < end else {}
                for old in [c for c in orders if c < clock // current.clocks_per_epoch]:
                    del orders[old]
                done = await self._compute(model, clock, local, me, inc)
                if in_flight is not None:
                    await in_flight.wait()  # pushes leave in clock order, ticks too
                in_flight, sending = trio.Event(), trio.Event()
                nursery.start_soon(self._finish, done, me, inc, upcoming, in_flight, sending)
                await sending.wait()  # the push leaves before this task computes on
                # While it is in flight, localise a later clock's batches: they need
                # nothing from the push, and the answer waits in the socket meanwhile.
                if clock + 1 + lead < end:
                    prepare(clock + 1 + lead)
                if not overlap:
                    await in_flight.wait()
                clock += 1
        done_msg = Done(me, clock)
        if self._reports_ride:
            await self.ctx.tell(self.protocol, Leave(me, "finished", report=done_msg))
        else:
            await self.ctx.tell(self.protocol, Leave(me, "finished"))
            await self.ctx.tell(self.scheduler, done_msg)

    async def _compute(
        self,
        model: Model,
        clock: int,
        local: tuple[list[Batch], dict[str, np.ndarray | None]],
        me: str,
        inc: int,
    ) -> _Computed:
        """Clock ``clock`` up to its gradients: pass the gate, pull the rows the cache
        cannot serve fresh enough, and take the coalesced gradient of its mini-batches
        (one push per shard per clock, whatever their number)."""
        assert self._cache is not None and self._map is not None
        began = time.perf_counter()
        ok = await self._gate_open(clock, me, inc)
        batches, rows = local
        direct = await self._read_direct(rows)
        if direct is None:
            await self._pull_stale(rows, ok)
            values, seen = self._cache.values, self._cache.applied(rows)
        else:
            values, seen = direct
        waited = time.perf_counter() - began
        self.reads.append((clock, seen))
        self._computing = True  # the cache stays as read until the gradients are taken
        t0 = time.perf_counter()
        compact = direct is not None
        try:
            if self._last_compute < INLINE_COMPUTE_S:
                # A hand-off to a thread and back costs more than this compute does; the
                # node's heartbeats wait at most this long.
                loss, grads = coalesced_gradient(model, values, batches, rows, compact)
            else:
                loss, grads = await trio.to_thread.run_sync(
                    coalesced_gradient, model, values, batches, rows, compact
                )
        finally:
            self._computing = False
        compute = self._last_compute = time.perf_counter() - t0
        for answer, stamp in self._deferred:
            self._cache.store(answer, stamp)
        self._deferred.clear()
        extra = compute * (self.slowdown - 1.0) + self.delay_s
        if self.jitter_s:
            extra += float(np.random.default_rng().uniform(0, self.jitter_s))
        if self.transient_p and np.random.default_rng().random() < self.transient_p:
            extra += compute * self.transient_factor
        if extra > 0:
            await trio.sleep(extra)
        samples = sum(int(b[2].shape[0]) for b in batches)
        return _Computed(clock, ok, rows, grads, float(loss), samples, compute, waited, seen)

    async def _finish(
        self,
        done: _Computed,
        me: str,
        inc: int,
        upcoming: dict[str, np.ndarray | None],
        finished: trio.Event,
        sending: trio.Event,
    ) -> None:
        """Push a computed clock's gradients (one push per shard, each also asking for
        ``upcoming``, the rows a later clock will read, so that clock rarely needs a
        pull round trip of its own) and, once every shard acknowledged, tick the
        protocol to ``clock + 1`` with the progress report riding on the tick.

        ``sending`` is set once the pushes are on their way, ``finished`` when the tick
        is.
        """
        assert self._cache is not None
        clock = done.clock
        before = len(self.acked)
        await self._push(clock, done.rows, done.grads, done.ok, me, inc, upcoming, sending)
        acked: dict[str, list[int]] = {}
        for shard, seq in self.acked[before:]:
            acked.setdefault(str(shard), []).append(seq)
        others = [v for w, v in done.seen.items() if w != me]
        staleness = max(0, clock - 1 - min(others)) if others else 0
        progress = Progress(
            me, clock, done.loss, done.samples, done.compute, done.waited, staleness, inc, acked
        )
        if self._reports_ride:  # one frame: the protocol passes the progress on
            await self.ctx.tell(self.protocol, Tick(me, inc, clock + 1, report=progress))
        else:
            await self.ctx.tell(self.protocol, Tick(me, inc, clock + 1))
            await self.ctx.tell(self.scheduler, progress)
        if clock % 64 == 0:
            self._cache.prune()
        finished.set()

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
                self._forget_segment(target)
                self.ctx.log.info("shard_unavailable", shard=target, error=str(exc))
                if not isinstance(exc, NodeUnreachable):
                    await trio.sleep(0.05)  # its death may not be announced yet
            update: TableMapUpdate = await self._ask_through_failures(self.scheduler, GetTableMap())
            if tuple(update.primaries) == self._map.shards:
                await trio.sleep(0.01)  # the failover has not happened yet
            self._map = attrs.evolve(self._map, shards=tuple(update.primaries))

    async def _segment(self, shard: int) -> SharedReader | None:
        """The reader of slice ``shard``'s segment, opened on first use; None when the
        shard shares none, is on another host, or its segment cannot be mapped."""
        if not self._shared:
            return None
        assert self._map is not None
        name = self._map.shards[shard]
        if name not in self._segments:
            self._segments[name] = None
            try:
                seg: Segment = await self.ctx.ask(name, GetSegment())
            except RemoteError as exc:  # it will not say: read through messages
                self.ctx.log.info("segment_unknown", shard=name, error=str(exc))
                return None
            except (*_SHARD_FAULTS, NodeUnreachable) as exc:
                self.ctx.log.info("segment_unknown", shard=name, error=str(exc))
                del self._segments[name]  # ask again next time
                return None
            handle = seg.handle()
            if handle is not None and same_host(handle):
                try:
                    self._segments[name] = SharedReader.open(handle)
                except SegmentUnavailable as exc:
                    self.ctx.log.info("segment_unavailable", shard=name, error=str(exc))
        return self._segments[name]

    def _forget_segment(self, name: str) -> None:
        """Stop reading ``name``'s segment (its shard died, restarted or failed over)."""
        reader = self._segments.pop(name, None)
        if reader is not None:
            reader.close()

    async def _read_shared(
        self, shard: int, tables: list[str], ids: list[np.ndarray | None]
    ) -> Rows | None:
        """Rows ``ids`` (global; None: the whole slice) of ``tables`` from slice
        ``shard``'s segment, as the shard would answer them; None if it cannot be read
        there (then ask the shard)."""
        reader = await self._segment(shard)
        if reader is None:
            return None
        assert self._map is not None
        tmap, name = self._map, self._map.shards[shard]
        local = [
            None if i is None else tmap.local(t, shard, i) for t, i in zip(tables, ids, strict=True)
        ]
        try:
            if not reader.writer_alive():  # a dead writer's segment still reads fine
                raise SegmentUnavailable(f"the writer of {name}'s segment is gone")
            values, version, meta = reader.read_with_meta(tables, local)
        except (SegmentUnavailable, SegmentBusy) as exc:
            self.ctx.log.info("segment_dropped", shard=name, error=str(exc))
            self._forget_segment(name)
            return None
        self.shared_reads += 1
        rows = [tmap.owned(t, shard) if i is None else i for t, i in zip(tables, ids, strict=True)]
        return Rows(list(tables), rows, values, msgpack.unpackb(meta), int(version))

    async def _read_direct(
        self, rows: dict[str, np.ndarray | None]
    ) -> tuple[dict[str, np.ndarray], dict[str, int]] | None:
        """``rows`` (per table: sorted ids, or None for all) read straight from the
        segments of the shards that hold them, with what they contain (per worker, the
        highest clock whose updates every row holds); None when a shard holding some is
        not readable so (then read through the cache).

        Per table the values are aligned with its ids (a whole table: all its rows).
        Read after the gate, a segment holds every update the gate promises and the
        worker's own (each acknowledged before its tick), and no older copy is kept.
        """
        if not self._shared:
            return None
        assert self._map is not None
        tmap = self._map
        wanted: dict[int, tuple[list[str], list[np.ndarray | None]]] = {}
        for name, ids in rows.items():
            for shard, part in tmap.split(name, ids):
                tables, asks = wanted.setdefault(shard, ([], []))
                tables.append(name)
                asks.append(part)
        answers = []
        for shard, (tables, asks) in wanted.items():
            answer = await self._read_shared(shard, tables, asks)
            if answer is None:
                return None
            answers.append(answer)
        seen = meet([a.applied for a in answers])
        if len(answers) == 1:
            return dict(zip(answers[0].tables, answers[0].values, strict=True)), seen
        out = {
            name: np.empty((tmap.spec(name).rows if ids is None else ids.size,
                            tmap.spec(name).cols))
            for name, ids in rows.items()
        }  # fmt: skip
        for answer in answers:
            for name, got, values in zip(answer.tables, answer.rows, answer.values, strict=True):
                ids = rows[name]
                out[name][got if ids is None else positions(got, ids)] = values
        return out, seen

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
            answer = await self._read_shared(shard, tables, asks)
            if answer is None:
                answer = await self._ask_shard(shard, Pull(self.ctx.ref.name, tables, asks))
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
        upcoming: dict[str, np.ndarray | None],
        sending: trio.Event | None = None,
    ) -> None:
        """Push gradients ``grads`` of ``rows`` stamped ``clock`` (one push per shard,
        each also asking for ``upcoming``) and take in the answers; ``sending`` is set
        as the first push is handed to the transport (at the latest on return)."""
        assert self._cache is not None and self._map is not None
        cache, tmap = self._cache, self._map
        wanted: dict[int, tuple[list[str], list[np.ndarray | None]]] = {}
        for name, ids in upcoming.items():
            if ids is None:
                continue  # a whole table: its pushed rows come back anyway
            for shard, part in tmap.split(name, ids):
                tables, asks = wanted.setdefault(shard, ([], []))
                tables.append(name)
                asks.append(part)
        outgoing = tmap.split_changes(rows, grads)

        async def push(shard: int, tables: list[str], parts: Any, pieces: Any) -> None:
            self._seq += 1
            want_tables, want_rows = wanted.get(shard, ([], []))
            # On the shard's host the rows come from its segment after the ack, not back
            # in the ack: the same rows (read after the push is applied), no copy through
            # a socket.
            echo = await self._segment(shard) is None
            msg = Push(
                me, inc, self._seq, clock, tables, parts, pieces,
                want_tables if echo else [], want_rows if echo else [], echo=echo,
            )  # fmt: skip
            # Set just before the frame is handed to nng: the waiting task runs again
            # only once this one yields, after its send.
            if sending is not None:
                sending.set()
            ack: PushAck = await self._ask_shard(shard, msg)  # a retry resends the same seq
            self.acked.append((shard, msg.seq))
            if not echo:
                # On the shard's host the next clock reads its segment: nothing comes
                # back. The cached copies of the rows pushed are out of date now; should
                # a clock read through the cache (the segment went), it pulls them.
                for name, part in zip(tables, parts, strict=True):
                    cache.expire(name, part)
                return
            answer: Rows = ack.rows
            if self._computing:  # overlap: the next clock's compute reads the cache
                self._deferred.append((answer, ok.min_clock))
            else:
                cache.store(answer, ok.min_clock)

        try:
            await _all(push(k, *v) for k, v in outgoing.items())
        finally:
            if sending is not None:
                sending.set()


_SHARD_FAULTS = (ActorGone, AskTimeout)


@attrs.frozen
class _Computed:
    """A clock computed and not yet pushed: its gradients and what its report says."""

    clock: int
    ok: ReadOk
    rows: dict[str, np.ndarray | None]
    grads: dict[str, np.ndarray]
    loss: float
    samples: int
    compute: float
    waited: float
    seen: dict[str, int]


GATE_YIELDS = 2
"""How many times a worker whose gate looks closed yields to its own mailbox (where a
MinClock may already be waiting) before it asks the protocol."""

INLINE_COMPUTE_S = 0.002
"""A clock whose compute took less than this runs the next one in the actor's own task:
a thread hop (two wake-ups, two context switches) costs more than that compute."""


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


def _localized(model: Model, X: Any, y: np.ndarray, batches: list[np.ndarray]) -> list[Batch]:
    """Each mini-batch's rows, its features with renumbered columns, and its labels."""
    return [(*localize(model, take_rows(X, idx)), y[idx]) for idx in batches]


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
