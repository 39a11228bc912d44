"""Adding and removing workers of a running training job, without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from actorml import Topology, open_cluster
from actorml.actors.job import add_worker, remove_worker
from actorml.protocols.contract import Clocks, GetClocks

pytestmark = pytest.mark.slow


def job(tmp_path: Path) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "scale", "run_dir": str(tmp_path)},
            "job": {
                "workers": 3,
                "shards": 2,
                "epochs": 60,
                "batch_size": 16,
                "jitter_s": 0.01,
                "progress": False,
            },
            "data": {"source": "sklearn:breast_cancer"},
            "model": {"kind": "logreg"},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "protocol": {"kind": "ssp", "staleness": 2},
        }
    )


async def test_add_and_remove_workers_mid_job(tmp_path: Path) -> None:
    """A worker added mid-job joins the clock and trains; a removed one stops; data is
    re-handed both times and the job finishes."""
    async with open_cluster(job(tmp_path)) as cluster:
        with trio.fail_after(60):
            while not (cluster.run_dir / "metrics.jsonl").exists():
                await trio.sleep(0.1)
        assert await add_worker(cluster) == "worker-3"
        with trio.fail_after(60):
            while "worker-3" not in (clocks := await cluster.ask("protocol", GetClocks())).clocks:
                await trio.sleep(0.1)
        assert clocks.epoch >= 1
        removed_pid = cluster.pid("worker-0")
        await remove_worker(cluster, "worker-0")
        after: Clocks = await cluster.ask("protocol", GetClocks())
        assert "worker-0" not in after.clocks and after.epoch > clocks.epoch
        assert "worker-0" not in cluster.procs
        with trio.fail_after(180):
            result = await cluster.wait()
        run_dir = cluster.run_dir
    assert removed_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(removed_pid, 0)
    assert result["test_accuracy"] > 0.9
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r["worker"] == "worker-3" for r in rows)
    events = [
        json.loads(line) for line in (run_dir / "logs" / "scheduler.jsonl").read_text().splitlines()
    ]
    rehanded = [e["workers"] for e in events if e["event"] == "data_rehanded"]
    assert rehanded == [
        ["worker-0", "worker-1", "worker-2", "worker-3"],
        ["worker-1", "worker-2", "worker-3"],
    ]
    for audit in result["audit"].values():
        assert audit["lost"] == 0 and audit["doubled"] == 0
