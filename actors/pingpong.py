"""A two-actor demo: a pinger asks a ponger to echo numpy arrays and times it.

It is the smallest job that crosses processes: ``actorml up examples/pingpong.toml``.
"""

from __future__ import annotations

import time

import attrs
import numpy as np

from actorml import Actor, handler, message


@message("demo.ping")
class Ping:
    """A round trip's request: a sequence number and an array payload."""

    seq: int
    payload: np.ndarray


@message("demo.pong")
class Pong:
    """A round trip's answer: the sequence number and the payload's sum."""

    seq: int
    checksum: float


@attrs.define(eq=False)
class Ponger(Actor):
    """Answers each Ping with the sum of its payload."""

    handled: int = 0

    @handler
    async def ping(self, msg: Ping) -> Pong:
        self.handled += 1
        return Pong(msg.seq, float(msg.payload.sum()))


@attrs.define(eq=False)
class Pinger(Actor):
    """Asks ``peer`` ``rounds`` times with a ``payload_kb`` array and reports the timings."""

    peer: str = "ponger"
    rounds: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    payload_kb: int = attrs.field(default=64, validator=attrs.validators.ge(0))

    async def run(self) -> None:
        payload = np.random.default_rng(0).random(max(1, self.payload_kb * 1024 // 8))
        expected = float(payload.sum())
        times = np.empty(self.rounds)
        start = time.perf_counter()
        for seq in range(self.rounds):
            t0 = time.perf_counter()
            reply = await self.ctx.ask(self.peer, Ping(seq, payload))
            times[seq] = time.perf_counter() - t0
            if reply.seq != seq or not np.isclose(reply.checksum, expected):
                raise RuntimeError(f"bad reply {reply} to ping {seq}")
        elapsed = time.perf_counter() - start
        self.ctx.log.info("pings_done", rounds=self.rounds, elapsed_s=round(elapsed, 3))
        await self.ctx.complete(
            rounds=self.rounds,
            payload_bytes=int(payload.nbytes),
            median_rtt_us=round(float(np.median(times)) * 1e6, 1),
            p99_rtt_us=round(float(np.percentile(times, 99)) * 1e6, 1),
            throughput_mb_s=round(2 * payload.nbytes * self.rounds / elapsed / 1e6, 1),
        )
