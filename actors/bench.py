"""Actors the benchmarks in ``bench/`` run inside node processes.

Reference them from a topology by dotted path, e.g. ``actorml.actors.bench:Echo``.
The benchmark process drives them with asks (``Measure``, ``Stream``) and reads
the timings they took inside the node, so the launcher is never on the measured path.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Actor, Promise, handler, message
from actorml.models.base import Model, gather, localize
from actorml.models.dataset import Dataset
from actorml.shm import SharedReader

from .config import build_model, make_layout
from .messages import (
    GetLayout,
    GetSegment,
    JoinJob,
    Layout,
    Push,
    PushAck,
    Segment,
    ShardHello,
    ShardRole,
)
from .scheduler import Scheduler
from .shard import Shard
from .worker import Worker

__all__ = [
    "BenchWorker",
    "Chunk",
    "Cycle",
    "Cycled",
    "Cycler",
    "Drain",
    "Drained",
    "Echo",
    "Go",
    "Held",
    "Hold",
    "LayoutServer",
    "Measure",
    "Probe",
    "Prober",
    "Sink",
    "Source",
    "Stream",
    "Streamed",
    "Timings",
    "WarmScheduler",
    "WarmShard",
    "warm_model",
]


@message("bench.probe")
@attrs.frozen
class Probe:
    """A small ask: a sequence number and a few bytes."""

    seq: int
    payload: bytes


@message("bench.measure")
@attrs.frozen
class Measure:
    """Ask a :class:`Prober` for ``rounds`` round trips to its peer."""

    rounds: int


@message("bench.timings")
@attrs.frozen
class Timings:
    """One round-trip time per round, in nanoseconds."""

    rtt_ns: np.ndarray


@message("bench.chunk")
@attrs.frozen
class Chunk:
    """One streamed array."""

    seq: int
    data: np.ndarray


@message("bench.stream")
@attrs.frozen
class Stream:
    """Ask a :class:`Source` to tell ``count`` arrays of ``nbytes`` bytes to its sink."""

    count: int
    nbytes: int


@message("bench.streamed")
@attrs.frozen
class Streamed:
    """How long a :class:`Source` took to stream (until the sink confirmed), and what arrived."""

    elapsed_ns: int
    received: int
    received_bytes: int


@message("bench.drain")
@attrs.frozen
class Drain:
    """Ask a :class:`Sink` what arrived since the last drain (and reset its counts)."""


@message("bench.drained")
@attrs.frozen
class Drained:
    """What a :class:`Sink` received since the last drain."""

    count: int
    nbytes: int


@attrs.define(eq=False)
class Echo(Actor):
    """Answers every :class:`Probe` with itself."""

    @handler
    async def probe(self, msg: Probe) -> Probe:
        return msg


@attrs.define(eq=False)
class Prober(Actor):
    """Asks ``peer`` a small :class:`Probe` ``rounds`` times per :class:`Measure`.

    Args:
        peer: the actor name of the echo.
        payload_bytes: the size of each probe's payload.
    """

    peer: str = "echo"
    payload_bytes: int = 8

    @handler
    async def measure(self, msg: Measure) -> Timings:
        if msg.rounds < 1:
            raise ValueError(f"rounds must be positive, got {msg.rounds}")
        target = self.ctx.locate(self.peer)
        payload = b"x" * self.payload_bytes
        times = np.empty(msg.rounds, dtype=np.int64)
        clock = time.perf_counter_ns
        ask = self.ctx.ask
        for seq in range(msg.rounds):
            t0 = clock()
            reply = await ask(target, Probe(seq, payload))
            times[seq] = clock() - t0
            if reply.seq != seq:
                raise RuntimeError(f"probe {seq} answered with {reply.seq}")
        return Timings(times)


@attrs.define(eq=False)
class Source(Actor):
    """Tells ``sink`` a stream of arrays, then asks it what arrived.

    The final ask travels on the same pipe as the tells (FIFO between two nodes), so
    its reply means every array arrived; the time is taken from the first tell to
    that reply.

    Args:
        sink: the actor name of the :class:`Sink`.
    """

    sink: str = "sink"
    _array: np.ndarray | None = attrs.field(default=None, init=False)

    def _payload(self, nbytes: int) -> np.ndarray:
        if self._array is None or self._array.nbytes != nbytes:
            self._array = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
        return self._array

    @handler
    async def stream(self, msg: Stream) -> Streamed:
        if msg.count < 1 or msg.nbytes < 1:
            raise ValueError(f"count and nbytes must be positive, got {msg.count}, {msg.nbytes}")
        array = self._payload(msg.nbytes)
        target = self.ctx.locate(self.sink)
        tell = self.ctx.tell
        t0 = time.perf_counter_ns()
        for seq in range(msg.count):
            await tell(target, Chunk(seq, array))
        drained: Drained = await self.ctx.ask(target, Drain())
        elapsed = time.perf_counter_ns() - t0
        return Streamed(elapsed, drained.count, drained.nbytes)


@attrs.define(eq=False)
class Sink(Actor):
    """Counts the arrays it is told, and reports (and resets) the counts on :class:`Drain`."""

    count: int = attrs.field(default=0, init=False)
    nbytes: int = attrs.field(default=0, init=False)

    @handler
    async def chunk(self, msg: Chunk) -> None:
        self.count += 1
        self.nbytes += msg.data.nbytes

    @handler
    async def drain(self, msg: Drain) -> Drained:
        done = Drained(self.count, self.nbytes)
        self.count = self.nbytes = 0
        return done


# --- training jobs: a common start, without first-call costs -------------------------
#
# bench/consistency.py and bench/throughput.py time whole training jobs. Two things
# would otherwise blur those times by seconds: each process's first call into numba
# (loading the compiled kernels: about a second, and a straggler multiplies its first
# compute by its slowdown), and workers joining the job at different times (each loads
# the dataset on its own, and the scheduler's clock starts at the first join). These
# subclasses warm the kernels up before the job starts and hold every worker until the
# benchmark says go; the job itself runs the real code unchanged.


@message("bench.hold")
@attrs.frozen
class Hold:
    """Ask a :class:`BenchWorker`: answered once it is warm and waiting to join the job."""


@message("bench.held")
@attrs.frozen
class Held:
    """The worker is waiting to join; its numba kernels took ``warmup_s`` to warm up."""

    worker: str
    warmup_s: float


@message("bench.go")
@attrs.frozen
class Go:
    """Tell a held :class:`BenchWorker` to join the job now."""


def warm_model(model: Model, n_features: int, n_classes: int, sparse: bool) -> None:
    """One gradient and one evaluation on a tiny batch: numba loads every kernel."""
    X: Any = np.zeros((8, n_features))
    if sparse:
        import scipy.sparse as sp

        X = sp.csr_matrix(np.eye(8, n_features))
    y = np.arange(8, dtype=np.int64) % n_classes
    params = model.init_params(0)
    rows, X_local = localize(model, X)
    model.gradient(gather(params, rows), X_local, y)
    model.evaluate(params, X, y)


async def _warm_layout(layout: Layout) -> None:
    model = build_model(layout)
    sparse = bool(layout.model.get("sparse", False))
    await trio.to_thread.run_sync(warm_model, model, layout.n_features, layout.n_classes, sparse)


@attrs.define(eq=False)
class BenchWorker(Worker):
    """A :class:`Worker` that warms up, then waits for :class:`Go` before joining the job.

    The benchmark asks every worker :class:`Hold` (answered once that worker has loaded
    its data and warmed its kernels) and then tells them all :class:`Go`, so they join
    within a millisecond of each other. A restarted worker joins at once.
    """

    _go: trio.Event = attrs.field(init=False, factory=trio.Event)
    _held: Held | None = attrs.field(init=False, default=None)
    _holders: list[Promise] = attrs.field(init=False, factory=list)

    @handler
    async def hold(self, msg: Hold) -> Any:
        if self._held is not None:
            return self._held
        promise = self.ctx.promise()
        self._holders.append(promise)
        return promise

    @handler
    async def go(self, msg: Go) -> None:
        self._go.set()

    async def _ask_through_failures(
        self, target: str, msg: object, timeout: float | None = None
    ) -> Any:
        # Worker.run asks JoinJob once its data is loaded: the place to hold it.
        if isinstance(msg, JoinJob) and not self._go.is_set() and not self.ctx.restarted:
            began = time.perf_counter()
            layout: Layout = await super()._ask_through_failures(self.scheduler, GetLayout())
            await _warm_layout(layout)
            self._held = Held(self.ctx.ref.name, time.perf_counter() - began)
            for promise in self._holders:
                await promise.resolve(self._held)
            self._holders.clear()
            await self._go.wait()
        return await super()._ask_through_failures(target, msg, timeout)


@attrs.define(eq=False)
class WarmShard(Shard):
    """A :class:`Shard` that runs its optimiser once on scratch copies before serving."""

    async def started(self) -> None:
        await super().started()
        optimizer = self.optimizer
        assert optimizer is not None
        for part in self.slices.values():
            state = {k: v.copy() for k, v in part.state.items()}
            values = part.values.copy()
            await trio.to_thread.run_sync(
                optimizer.apply, values, np.zeros_like(values), state, part.steps.copy()
            )


@attrs.define(eq=False)
class WarmScheduler(Scheduler):
    """A :class:`Scheduler` whose first held-out evaluation does not load numba kernels."""

    async def _load(self) -> Dataset:
        dataset = await super()._load()
        # Before the layout is out: the roles wait ("not ready") while this warms.
        await _warm_layout(
            make_layout(self.job, self.model, self.data, self.optimizer, self.shards, dataset)
        )
        return dataset


# --- a worker's push + pull cycle against a real shard --------------------------------


@message("bench.cycle")
@attrs.frozen
class Cycle:
    """Ask a :class:`Cycler` for ``rounds`` push + pull cycles against its shard."""

    rounds: int


@message("bench.cycled")
@attrs.frozen
class Cycled:
    """When a :class:`Cycler`'s cycles began and ended (``perf_counter_ns``, one clock
    for every process of the machine) and each cycle's round trip, in nanoseconds."""

    start_ns: int
    end_ns: int
    rtt_ns: np.ndarray


@attrs.define(eq=False)
class LayoutServer(Actor):
    """Stands in for the scheduler of a lone :class:`Shard`: one layout, always primary.

    Args:
        n_features: rows of the model's ``w`` table.
        n_classes: columns of ``w`` (a softmax model): ``n_features * n_classes * 8``
            bytes in all.
    """

    n_features: int = 8192
    n_classes: int = 64

    @handler
    async def get_layout(self, msg: GetLayout) -> Layout:
        return Layout(
            model={"kind": "softmax", "l2": 0.0},
            optimizer={"kind": "sgd", "lr": 1e-3},
            data={},
            n_features=self.n_features,
            n_classes=self.n_classes,
            shards=["shard"],
            seed=0,
            batch_size=1,
        )

    @handler
    async def shard_hello(self, msg: ShardHello) -> ShardRole:
        return ShardRole("primary", msg.index, None, None)


@attrs.define(eq=False)
class Cycler(Actor):
    """Pushes a gradient of the whole ``w`` table to ``shard``; each :class:`PushAck`
    brings the updated table back, so one ask is one push + pull cycle.

    Args:
        shard: the shard's actor name.
        scheduler: its :class:`LayoutServer` (for the table's shape).
    """

    shard: str = "shard"
    scheduler: str = "scheduler"
    shared: bool = False
    """Read the table back from the shard's shared-memory segment after each ack (the
    path of a worker on the shard's host) instead of in the ack."""
    _grad: np.ndarray | None = attrs.field(init=False, default=None)
    _seq: int = attrs.field(init=False, default=0)
    _reader: SharedReader | None = attrs.field(init=False, default=None)

    @handler
    async def cycle(self, msg: Cycle) -> Cycled:
        if msg.rounds < 1:
            raise ValueError(f"rounds must be positive, got {msg.rounds}")
        if self._grad is None:
            layout: Layout = await self.ctx.ask_when_up(self.scheduler, GetLayout())
            rng = np.random.default_rng(0)
            self._grad = rng.normal(0.0, 1e-3, (layout.n_features, layout.n_classes))
        grad, me = self._grad, self.ctx.ref.name
        target = self.ctx.locate(self.shard)
        ask, clock = self.ctx.ask, time.perf_counter_ns
        if self.shared and self._reader is None:
            segment: Segment = await ask(target, GetSegment())
            handle = segment.handle()
            if handle is None:
                raise RuntimeError(f"{self.shard} shares no segment")
            self._reader = SharedReader.open(handle)
        reader = self._reader if self.shared else None
        times = np.empty(msg.rounds, dtype=np.int64)
        start = clock()
        for i in range(msg.rounds):
            self._seq += 1
            t0 = clock()
            push = Push(me, 1, self._seq, self._seq, ["w"], [None], [grad], echo=reader is None)
            ack: PushAck = await ask(target, push)
            rows = ack.rows.values if reader is None else reader.read_many(["w"], [None])[0]
            times[i] = clock() - t0
            if rows[0].shape != grad.shape:
                raise RuntimeError(f"push {self._seq} answered rows of {rows[0].shape}")
        return Cycled(start, clock(), times)

    def closed(self) -> None:
        if self._reader is not None:
            self._reader.close()
