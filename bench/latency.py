"""Round trip of a small ask between two node processes, beside raw pynng Req0/Rep0.

A ``Prober`` actor on one node asks an ``Echo`` actor on another node for an 8-byte
probe, N times per batch, timing each round trip inside its node. Beside it, in the
same run and in alternating batches, a raw pynng Req0 client process times the same
round trip to a Rep0 echo process, once with trio (``asend``/``arecv_msg``, the way
actorml drives nng) and once with blocking calls. The first batch of each is a
warm-up and is discarded; the figures are medians over every remaining round trip.

Then the price of mutual TLS: two clusters at once, one on plain tcp (``insecure``)
and one on ``tls+tcp`` (the default for tcp), asked in alternating batches
(``ask_rtt_us_tls`` beside ``ask_rtt_us_plain_tcp``; ratio ``ask_rtt_tls_vs_tcp``).

    python bench/latency.py [--quick] [--json PATH]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import trio
from _common import (
    Helper,
    median,
    parse_args,
    print_table,
    quiet_logging,
    scratch_dir,
    spawn,
    write_json,
)

from actorml.actors.bench import Measure, Timings
from actorml.launch import open_cluster
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, Topology

PAYLOAD_BYTES = 8
KINDS = ("ask", "raw", "raw_sync")


def topology(transport: str, run_dir: Path, *, tls: bool = False) -> Topology:
    """A client node with a Prober and a server node with an Echo (tcp: TLS if ``tls``)."""
    return Topology(
        ClusterSpec(
            name=f"bench-latency-{transport}{'-tls' if tls else ''}",
            transport=transport,
            insecure=transport == "tcp" and not tls,
            log_level="warning",
            run_dir=str(run_dir),
            ask_timeout_s=120.0,
        ),
        (
            NodeSpec(
                "client",
                (
                    ActorSpec(
                        "prober",
                        "actorml.actors.bench:Prober",
                        args={"peer": "echo", "payload_bytes": PAYLOAD_BYTES},
                    ),
                ),
            ),
            NodeSpec("server", (ActorSpec("echo", "actorml.actors.bench:Echo"),)),
        ),
    )


def _raw_address(transport: str, tmp: Path, name: str) -> str:
    return f"ipc://{tmp}/{name}.sock" if transport == "ipc" else "tcp://127.0.0.1:0"


async def measure(transport: str, batches: int, rounds: int, tmp: Path) -> dict[str, np.ndarray]:
    """Round-trip times in microseconds for each kind, over ``batches`` interleaved batches.

    Socket files and run logs go to ``tmp``.
    """
    helpers: list[Helper] = []
    samples: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    try:
        servers = spawn(
            ("raw-rep", _raw_address(transport, tmp, "rep")),
            ("raw-rep-sync", _raw_address(transport, tmp, "rep-sync")),
        )
        helpers += servers
        size = str(PAYLOAD_BYTES)
        raw, raw_sync = spawn(
            ("raw-req", servers[0].ready[0], size), ("raw-req-sync", servers[1].ready[0], size)
        )
        helpers += (raw, raw_sync)
        clients = {"raw": raw, "raw_sync": raw_sync}
        async with open_cluster(topology(transport, tmp / "runs")) as cluster:

            async def batch(kind: str) -> np.ndarray:
                if kind == "ask":
                    timings: Timings = await cluster.ask("prober", Measure(rounds))
                    return np.asarray(timings.rtt_ns)
                answer: Any = await trio.to_thread.run_sync(clients[kind].command, str(rounds))
                return np.asarray(answer, dtype=np.int64)

            for n in range(batches + 1):  # batch 0 is the warm-up
                order = KINDS[n % len(KINDS) :] + KINDS[: n % len(KINDS)]
                for kind in order:
                    times = await batch(kind)
                    if len(times) != rounds:
                        raise RuntimeError(f"{kind} batch returned {len(times)} of {rounds}")
                    if n:
                        samples[kind].append(times / 1e3)
    finally:
        for helper in reversed(helpers):
            helper.close()
    return {kind: np.concatenate(parts) for kind, parts in samples.items()}


async def measure_tls(batches: int, rounds: int, tmp: Path) -> dict[str, np.ndarray]:
    """Ask round trips in microseconds on plain tcp ("tcp") and on TLS ("tls"),
    alternating batches between two clusters that run side by side."""
    samples: dict[str, list[np.ndarray]] = {"tcp": [], "tls": []}
    async with (
        open_cluster(topology("tcp", tmp / "runs")) as plain,
        open_cluster(topology("tcp", tmp / "runs", tls=True)) as tls,
    ):
        clusters = {"tcp": plain, "tls": tls}
        for n in range(batches + 1):  # batch 0 is the warm-up
            for kind in ("tcp", "tls") if n % 2 else ("tls", "tcp"):
                timings: Timings = await clusters[kind].ask("prober", Measure(rounds))
                if len(timings.rtt_ns) != rounds:
                    raise RuntimeError(f"{kind} batch returned {len(timings.rtt_ns)} of {rounds}")
                if n:
                    samples[kind].append(np.asarray(timings.rtt_ns) / 1e3)
    return {kind: np.concatenate(parts) for kind, parts in samples.items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    batches, rounds = (5, 300) if args.quick else (10, 1000)
    quiet_logging()
    figures: dict[str, float] = {}
    ratios: dict[str, float] = {}
    rows = []
    for transport in ("ipc", "tcp"):
        with scratch_dir() as tmp:
            us = trio.run(measure, transport, batches, rounds, tmp)
        suffix = "" if transport == "ipc" else "_tcp"
        ask = median(us["ask"])
        for kind, label in (("ask", "actorml ask"), ("raw", "raw pynng, trio"),
                            ("raw_sync", "raw pynng, blocking")):  # fmt: skip
            mid = median(us[kind])
            figures[f"{kind}_rtt_us{suffix}"] = mid
            if kind != "ask":
                ratios[f"ask_rtt_vs_{kind}{suffix}"] = ask / mid
            p10, p90 = np.percentile(us[kind], [10, 90])
            rows.append(
                [f"{transport}  {label}", mid, float(p10), float(p90), len(us[kind]),
                 "" if kind == "ask" else f"{ask / mid:.2f}"]
            )  # fmt: skip
    with scratch_dir() as tmp:
        over = trio.run(measure_tls, batches, rounds, tmp)
    plain, tls = median(over["tcp"]), median(over["tls"])
    figures["ask_rtt_us_plain_tcp"], figures["ask_rtt_us_tls"] = plain, tls
    ratios["ask_rtt_tls_vs_tcp"] = tls / plain
    for kind, label in (("tcp", "tcp   actorml ask, plain"), ("tls", "tls   actorml ask, mTLS")):
        p10, p90 = np.percentile(over[kind], [10, 90])
        mid = median(over[kind])
        rows.append([label, mid, float(p10), float(p90), len(over[kind]), f"{plain / mid:.2f}"])
    print_table(
        f"Round trip of an {PAYLOAD_BYTES}-byte ask, {batches} interleaved batches of {rounds}"
        " (last two rows: plain tcp beside TLS, 'ask / this' is plain tcp / this)",
        ["", "median us", "p10 us", "p90 us", "samples", "ask / this"],
        rows,
    )
    if args.json:
        write_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
