"""Loading is a state, not a timeout: a scheduler busy loading its data for longer than
the ask timeout makes the other roles wait, and nothing crashes or restarts."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from actorml import Topology, open_cluster

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_root")]

ASK_TIMEOUT_S = 0.5


def _events(run_dir: Path, node: str) -> list[dict]:
    path = run_dir / "logs" / f"{node}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_slow_load_is_waited_for_not_timed_out(tmp_path: Path) -> None:
    """The scheduler takes many ask timeouts to generate its data; the shard and the
    workers hear "not ready" meanwhile and wait: no crash, no restart, and the job ends
    with every acknowledged update applied."""
    topology = Topology.from_dict(
        {
            "cluster": {"name": "slow", "ask_timeout_s": ASK_TIMEOUT_S},
            "job": {"workers": 2, "shards": 1, "epochs": 1, "batch_size": 8192},
            # Generating, splitting and standardising 600k x 50 takes seconds.
            "data": {"source": "generated:classification", "n_samples": 600_000,
                     "n_features": 50},
            "model": {"kind": "logreg"},
            "optimizer": {"kind": "sgd", "lr": 0.1},
            "protocol": {"kind": "bsp"},
        }
    )  # fmt: skip
    run_dir = tmp_path / "run"
    with trio.fail_after(300):
        async with open_cluster(topology, run_dir=run_dir) as cluster:
            result = await cluster.wait()
            restarts = {
                name: (await cluster.stats(name)).restarts for name in ("scheduler", "shard-0")
            }
    assert "error" not in result, result
    assert cluster.node_restarts == {} and cluster.deaths == []
    assert all(not any(r.values()) for r in restarts.values()), restarts
    [loaded] = [e for e in _events(run_dir, "scheduler") if e["event"] == "data_loaded"]
    assert loaded["seconds"] > 4 * ASK_TIMEOUT_S  # it really was slower than an ask
    waited = [
        e
        for node in ("shard-0", "worker-0", "worker-1")
        for e in _events(run_dir, node)
        if e["event"] == "waiting_until_ready"
    ]
    assert waited and all("loading generated:classification" in e["why"] for e in waited)
    assert all(a["lost"] == 0 and a["doubled"] == 0 for a in result["audit"].values())


async def test_a_restarted_worker_maps_the_same_rows(tmp_path: Path) -> None:
    """kill -9 of a worker: its replacement maps the staged partition again (the data is
    loaded once, by the scheduler) and sees the very same bytes."""
    topology = Topology.from_dict(
        {
            "cluster": {"name": "remap", "supervisor": {"max_restarts": 5, "within_s": 60.0}},
            "job": {"workers": 2, "shards": 1, "epochs": 40, "batch_size": 16,
                    "progress": False},
            "data": {"source": "sklearn:digits"},
            "model": {"kind": "softmax"},
            "optimizer": {"kind": "sgd", "lr": 0.05},
            "protocol": {"kind": "ssp", "staleness": 2},
        }
    )  # fmt: skip
    run_dir = tmp_path / "run"

    def taken() -> list[dict]:
        return [e for e in _events(run_dir, "worker-0") if e["event"] == "partition_taken"]

    with trio.fail_after(300):
        async with open_cluster(topology, run_dir=run_dir) as cluster:
            while not taken():
                await trio.sleep(0.05)
            pid = cluster.pid("worker-0")
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            result = await cluster.wait()
    assert "error" not in result, result
    assert cluster.node_restarts.get("worker-0") == 1
    first, again = taken()
    assert first["mapped"] and again["mapped"]
    assert (again["part"], again["rows"], again["digest"]) == (
        first["part"], first["rows"], first["digest"],
    )  # fmt: skip
    loads = [e for e in _events(run_dir, "scheduler") if e["event"] == "data_loaded"]
    assert len(loads) == 1
