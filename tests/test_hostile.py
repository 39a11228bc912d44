"""A training job under a flood of hostile frames: it finishes as well as it would
have, every frame is counted, no node restarts, and memory stays bounded."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Any

import msgpack
import pynng
import pytest
import trio

from actorml.actors.messages import StopTraining
from actorml.codec import MAGIC, TELL, Envelope, encode
from actorml.launch import open_cluster
from actorml.messages import ActorRef
from actorml.topology import Topology
from tests import hostile_frames

pytestmark = pytest.mark.slow

TOPOLOGY = """\
[cluster]
name = "hostile"
run_dir = "{run_dir}"
heartbeat_deadline_s = 10.0

[job]
workers = 2
shards = 1
epochs = 6
batch_size = 32
progress = false

[data]
source = "sklearn:breast_cancer"

[model]
kind = "logreg"

[optimizer]
kind = "adam"
lr = 0.01

[protocol]
kind = "ssp"
staleness = 2
"""


def _rewrite(frame: bytes, index: int, value: Any) -> bytes:
    (size,) = struct.unpack_from("<I", frame, 4)
    header = msgpack.unpackb(frame[8 : 8 + size])
    header[index] = value
    packed = msgpack.packb(header)
    return MAGIC + struct.pack("<I", len(packed)) + packed


def hostile(target: ActorRef) -> dict[str, bytes]:
    """One frame per rejection reason, aimed at ``target`` (the node's own tags)."""
    valid = encode(Envelope(TELL, target, StopTraining("flood"))).to_bytes()
    rng = random.Random(0)
    return {
        "too_deep": _rewrite(valid, 6, hostile_frames.nested_messages("ps.stop_training", 200)),
        "unknown_tag": _rewrite(valid, 6, hostile_frames.nested_unknown_tag()),
        "over_budget": _rewrite(valid, 6, hostile_frames.empty_lists(64 * 1024)),
        "bad_magic": b"JUNK" + valid[4:],
        "truncated": valid[:-3],
        "bad_header": MAGIC + struct.pack("<I", 64) + bytes(rng.randrange(256) for _ in range(64)),
    }


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def test_a_job_finishes_through_a_hostile_flood(tmp_path: Path) -> None:
    """Tens of thousands of hostile frames at a worker's and the scheduler's inboxes
    while they train: the job's accuracy is the usual one, the counters match what was
    sent, nothing restarted, and the nodes' memory grew by less than 200 MiB."""
    topology = Topology.from_toml_string(TOPOLOGY.format(run_dir=tmp_path))
    rounds = 2500
    targets = {
        "worker-0": ActorRef("worker-0", "worker-0"),
        "scheduler": ActorRef("scheduler", "scheduler"),
    }
    sent: dict[str, dict[str, int]] = {}
    with trio.fail_after(300):
        async with open_cluster(topology, run_dir=tmp_path / "run") as cluster:
            before = {name: _rss(cluster.pid(name) or 0) for name in targets}

            async def flood(name: str) -> None:
                frames = hostile(targets[name])
                counts = sent[name] = dict.fromkeys(frames, 0)
                with pynng.Push0(send_timeout=60_000) as sock:
                    sock.dial(cluster.procs[name].address or "", block=True)
                    for n in range(rounds):
                        for reason, frame in frames.items():
                            if reason == "over_budget" and n % 20:
                                continue  # the costliest to refuse: one in twenty rounds
                            await sock.asend(frame)
                            counts[reason] += 1

            async with trio.open_nursery() as nursery:
                for name in targets:
                    nursery.start_soon(flood, name)
            stats = {}
            for name in targets:  # the frames still queued in the socket reach it too
                total = sum(sent[name].values())
                while True:
                    stats[name] = await cluster.stats(name)
                    if stats[name].counters["rejected_frames"] >= total:
                        break
                    await trio.sleep(0.05)
            after = {name: _rss(cluster.pid(name) or 0) for name in targets}
            result = await cluster.wait()
    assert result["test_accuracy"] >= 0.9
    assert "error" not in result
    for name in targets:
        counters = stats[name].counters
        assert {r: counters.get(f"rejected_{r}", 0) for r in sent[name]} == sent[name], name
        assert counters["rejected_frames"] == sum(sent[name].values())
        assert all(n == 0 for n in stats[name].restarts.values()), stats[name].restarts
        growth = after[name] - before[name]
        assert growth < 200 << 20, f"{name} grew by {growth >> 20} MiB"
    assert os.listdir(tmp_path / "run" / "logs")
