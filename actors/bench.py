"""Actors the benchmarks in ``bench/`` run inside node processes.

Reference them from a topology by dotted path, e.g. ``actorml.actors.bench:Echo``.
The benchmark process drives them with asks (``Measure``, ``Stream``) and reads
the timings they took inside the node, so the launcher is never on the measured path.
"""

from __future__ import annotations

import time

import attrs
import numpy as np

from actorml import Actor, handler, message

__all__ = [
    "Chunk",
    "Drain",
    "Drained",
    "Echo",
    "Measure",
    "Probe",
    "Prober",
    "Sink",
    "Source",
    "Stream",
    "Streamed",
    "Timings",
]


@message("actorml.bench.probe")
@attrs.frozen
class Probe:
    """A small ask: a sequence number and a few bytes."""

    seq: int
    payload: bytes


@message("actorml.bench.measure")
@attrs.frozen
class Measure:
    """Ask a :class:`Prober` for ``rounds`` round trips to its peer."""

    rounds: int


@message("actorml.bench.timings")
@attrs.frozen
class Timings:
    """One round-trip time per round, in nanoseconds."""

    rtt_ns: np.ndarray


@message("actorml.bench.chunk")
@attrs.frozen
class Chunk:
    """One streamed array."""

    seq: int
    data: np.ndarray


@message("actorml.bench.stream")
@attrs.frozen
class Stream:
    """Ask a :class:`Source` to tell ``count`` arrays of ``nbytes`` bytes to its sink."""

    count: int
    nbytes: int


@message("actorml.bench.streamed")
@attrs.frozen
class Streamed:
    """How long a :class:`Source` took to stream (until the sink confirmed), and what arrived."""

    elapsed_ns: int
    received: int
    received_bytes: int


@message("actorml.bench.drain")
@attrs.frozen
class Drain:
    """Ask a :class:`Sink` what arrived since the last drain (and reset its counts)."""


@message("actorml.bench.drained")
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
