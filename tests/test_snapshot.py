"""Snapshots every N clocks, and `actorml up --resume` from the latest one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from actorml import Topology, open_cluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def job(tmp_path: Path, epochs: int = 10, jitter_s: float = 0.0) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "snap", "run_dir": str(tmp_path)},
            "job": {
                "workers": 4,
                "shards": 2,
                "epochs": epochs,
                "batch_size": 16,
                "snapshot_every_clocks": 20,
                "jitter_s": jitter_s,
                "progress": False,
            },
            "data": {"source": "sklearn:breast_cancer"},
            "model": {"kind": "logreg"},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "protocol": {"kind": "ssp", "staleness": 2},
        }
    )


class TestSnapshots:
    async def test_resume_restores_the_same_parameters(self, tmp_path: Path) -> None:
        """Resuming a finished run from its final snapshot gives bit-identical tables."""
        run_dir = tmp_path / "run"
        async with open_cluster(job(tmp_path), run_dir=run_dir) as cluster:
            with trio.fail_after(120):
                first = await cluster.wait()
        before = dict(np.load(run_dir / "params.npz"))
        snapshots = sorted(p.name for p in (run_dir / "snapshots").iterdir() if p.is_dir())
        assert snapshots[:3] == ["clock-00000020", "clock-00000040", "clock-00000060"]
        async with open_cluster(job(tmp_path), run_dir=run_dir, resume=True) as cluster:
            with trio.fail_after(120):
                second = await cluster.wait()
        after = np.load(run_dir / "params.npz")
        assert set(after.files) == set(before)
        assert all(np.array_equal(after[k], before[k]) for k in before)
        assert second["test_loss"] == first["test_loss"]

    async def test_stopped_run_resumes_from_its_snapshot(self, tmp_path: Path) -> None:
        """A run stopped mid-way continues from its latest snapshot's clocks and ends."""
        run_dir = tmp_path / "run"
        latest = run_dir / "snapshots" / "latest.json"
        async with open_cluster(job(tmp_path, epochs=30, jitter_s=0.01), run_dir=run_dir):
            with trio.fail_after(120):
                while not latest.exists() or json.loads(latest.read_text())["clock"] < 40:
                    await trio.sleep(0.1)
        snapshot_clock = json.loads(latest.read_text())["clock"]
        assert not (run_dir / "result.json").exists()
        async with open_cluster(job(tmp_path, epochs=30), run_dir=run_dir, resume=True) as c:
            with trio.fail_after(180):
                result = await c.wait()
        assert result["epochs"] == 30
        saved = json.loads(
            (Path(json.loads(latest.read_text())["path"]) / "scheduler.json").read_text()
        )
        assert saved["done"] == [f"worker-{i}" for i in range(4)]
        logs = [
            json.loads(line)
            for line in (run_dir / "logs" / "scheduler.jsonl").read_text().splitlines()
        ]
        resumed = [e for e in logs if e["event"] == "job_resumed"]
        assert len(resumed) == 1 and min(resumed[0]["clocks"].values()) == snapshot_clock

    def test_resume_without_snapshot_exits_2(self, tmp_path: Path) -> None:
        """`actorml up --resume` on a run that took no snapshot says how to take them."""
        done = subprocess.run(
            [sys.executable, "-m", "actorml", "up", "--resume", str(tmp_path)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 2
        assert "set [job] snapshot_every_clocks" in done.stderr
