"""4 MiB numpy arrays streamed actor to actor across processes, beside raw pynng Push0/Pull0.

A ``Source`` actor on one node tells a ``Sink`` actor on another node N arrays of
4 MiB per batch, then asks it how many arrived (the ask follows the tells on the
same pipe, so its reply means all arrived); the batch's time runs from the first
tell to that reply. Beside it, in the same run and in alternating batches, a raw
pynng Push0 process sends the same bytes with ``send(ffi.from_buffer(array))`` to a
Pull0 process that receives with ``recv_msg()`` and ``np.frombuffer`` (no copy),
then asks for an ack the same way. The first batch of each is a warm-up and is
discarded; the figures are medians over the remaining batches.

Then the price of mutual TLS: the same stream between two clusters running side by
side, one on plain tcp (``insecure``) and one on ``tls+tcp`` (the default for tcp),
in alternating batches (``gbps_tls`` beside ``gbps_plain_tcp``; ratio
``gbps_tls_vs_tcp``).

    python bench/bandwidth.py [--quick] [--json PATH]
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

from actorml.actors.bench import Stream, Streamed
from actorml.launch import open_cluster
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, Topology

ARRAY_BYTES = 4 * 1024 * 1024
RECV_MAX_SIZE = 64 * 1024 * 1024
KINDS = ("actor", "raw")


def topology(run_dir: Path, transport: str = "ipc", *, tls: bool = False) -> Topology:
    """A node with a Source and a node with a Sink (tcp: TLS if ``tls``)."""
    return Topology(
        ClusterSpec(
            name=f"bench-bandwidth-{transport}{'-tls' if tls else ''}",
            transport=transport,
            insecure=transport == "tcp" and not tls,
            log_level="warning",
            run_dir=str(run_dir),
            recv_max_size=RECV_MAX_SIZE,
            ask_timeout_s=120.0,
        ),
        (
            NodeSpec(
                "source",
                (ActorSpec("source", "actorml.actors.bench:Source", args={"sink": "sink"}),),
            ),
            # A short mailbox: a slow sink holds back the source instead of buffering.
            NodeSpec("sink", (ActorSpec("sink", "actorml.actors.bench:Sink", mailbox_size=8),)),
        ),
    )


async def measure(batches: int, count: int, tmp: Path) -> dict[str, np.ndarray]:
    """GB/s of each batch for each kind, over ``batches`` interleaved batches.

    Socket files and run logs go to ``tmp``.
    """
    helpers: list[Helper] = []
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        (pull,) = spawn(
            ("raw-pull", f"ipc://{tmp}/pull.sock", f"ipc://{tmp}/ack.sock", str(RECV_MAX_SIZE))
        )
        helpers.append(pull)
        (push,) = spawn(("raw-push", *pull.ready, str(ARRAY_BYTES)))
        helpers.append(push)
        async with open_cluster(topology(tmp / "runs")) as cluster:

            async def batch(kind: str) -> tuple[int, int, int]:
                if kind == "actor":
                    done: Streamed = await cluster.ask("source", Stream(count, ARRAY_BYTES))
                    return done.elapsed_ns, done.received, done.received_bytes
                answer: Any = await trio.to_thread.run_sync(push.command, str(count))
                return int(answer[0]), int(answer[1]), int(answer[2])

            for n in range(batches + 1):  # batch 0 is the warm-up
                for kind in KINDS if n % 2 else KINDS[::-1]:
                    elapsed_ns, received, received_bytes = await batch(kind)
                    if (received, received_bytes) != (count, count * ARRAY_BYTES):
                        raise RuntimeError(
                            f"{kind} batch delivered {received} arrays ({received_bytes} bytes) "
                            f"of {count} ({count * ARRAY_BYTES} bytes)"
                        )
                    if n:
                        samples[kind].append(received_bytes / elapsed_ns)  # bytes/ns = GB/s
    finally:
        for helper in reversed(helpers):
            helper.close()
    return {kind: np.asarray(values) for kind, values in samples.items()}


async def measure_tls(batches: int, count: int, tmp: Path) -> dict[str, np.ndarray]:
    """GB/s of each batch on plain tcp ("tcp") and on TLS ("tls"), alternating batches
    between two clusters that run side by side."""
    samples: dict[str, list[float]] = {"tcp": [], "tls": []}
    async with (
        open_cluster(topology(tmp / "runs", "tcp")) as plain,
        open_cluster(topology(tmp / "runs", "tcp", tls=True)) as tls,
    ):
        clusters = {"tcp": plain, "tls": tls}
        for n in range(batches + 1):  # batch 0 is the warm-up
            for kind in ("tcp", "tls") if n % 2 else ("tls", "tcp"):
                done: Streamed = await clusters[kind].ask("source", Stream(count, ARRAY_BYTES))
                if done.received_bytes != count * ARRAY_BYTES:
                    raise RuntimeError(f"{kind} batch delivered {done.received_bytes} bytes")
                if n:
                    samples[kind].append(done.received_bytes / done.elapsed_ns)
    return {kind: np.asarray(values) for kind, values in samples.items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    batches, count = (5, 32) if args.quick else (10, 64)
    quiet_logging()
    with scratch_dir() as tmp:
        gbps = trio.run(measure, batches, count, tmp)
    actor, raw = median(gbps["actor"]), median(gbps["raw"])
    rows = [
        [label, median(gbps[kind]), float(gbps[kind].min()), float(gbps[kind].max()),
         len(gbps[kind]), f"{actor / median(gbps[kind]):.2f}" if kind == "raw" else ""]
        for kind, label in (("actor", "actorml tell"), ("raw", "raw pynng Push0/Pull0"))
    ]  # fmt: skip
    print_table(
        f"Streaming {ARRAY_BYTES >> 20} MiB arrays over ipc, {batches} interleaved batches "
        f"of {count} ({count * ARRAY_BYTES >> 20} MiB)",
        ["", "median GB/s", "min GB/s", "max GB/s", "batches", "actor / this"],
        rows,
    )
    with scratch_dir() as tmp:
        over = trio.run(measure_tls, batches, count, tmp)
    plain, tls = median(over["tcp"]), median(over["tls"])
    print_table(
        f"The same stream over tcp, plain beside mutual TLS, {batches} interleaved batches",
        ["", "median GB/s", "min GB/s", "max GB/s", "batches", "this / plain"],
        [
            [label, median(over[kind]), float(over[kind].min()), float(over[kind].max()),
             len(over[kind]), f"{median(over[kind]) / plain:.2f}"]
            for kind, label in (("tcp", "actorml tell, plain tcp"), ("tls", "actorml tell, mTLS"))
        ],
    )  # fmt: skip
    if args.json:
        write_json(
            args.json,
            {"actor_gbps": actor, "raw_gbps": raw, "gbps_plain_tcp": plain, "gbps_tls": tls},
            {"gbps_vs_raw": actor / raw, "gbps_tls_vs_tcp": tls / plain},
        )


if __name__ == "__main__":
    main()
