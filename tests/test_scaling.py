"""Adding and removing workers of a running training job, without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from actorml import Topology, open_cluster
from actorml.actors.job import add_worker, remove_worker
from actorml.protocols.contract import Clocks, GetClocks

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def job(tmp_path: Path, workers: int = 3, epochs: int = 60) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "scale", "run_dir": str(tmp_path)},
            "job": {
                "workers": workers,
                "shards": 2,
                "epochs": epochs,
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


async def _command(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "actorml", *args], cwd=ROOT, capture_stdout=True,
        capture_stderr=True, check=False,
    )  # fmt: skip


async def test_scale_command_grows_and_shrinks_a_running_job(tmp_path: Path) -> None:
    """`actorml scale RUN_DIR --workers N` grows a running job from 2 to 4 workers and
    back through the launcher of `actorml up`; the job finishes with the audit clean."""
    topology = job(tmp_path / "runs", workers=2, epochs=120)
    path = tmp_path / "scale.toml"
    path.write_text(topology.to_toml(), encoding="utf-8")
    run_dir = tmp_path / "run"
    with trio.fail_after(300):
        up = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actorml", "up", str(path), "--run-dir", str(run_dir)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not (run_dir / "metrics.jsonl").exists():
                await trio.sleep(0.1)
            grown = await _command("scale", str(run_dir), "--workers", "4")
            assert grown.returncode == 0, grown.stderr
            assert grown.stdout.decode().strip() == (
                "ok: 4 workers (added: worker-2, worker-3; removed: none)"
            )
            shrunk = await _command("scale", str(run_dir), "--workers", "2")
            assert shrunk.returncode == 0, shrunk.stderr
            assert shrunk.stdout.decode().strip() == (
                "ok: 2 workers (added: none; removed: worker-3, worker-2)"
            )
            assert await up.wait() == 0
        finally:
            if up.returncode is None:
                up.kill()
                with trio.CancelScope(shield=True):
                    await up.wait()
    result = json.loads((run_dir / "result.json").read_text())
    for audit in result["audit"].values():
        assert audit["lost"] == 0 and audit["doubled"] == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["worker"] for r in rows} == {f"worker-{i}" for i in range(4)}
    events = [
        json.loads(line) for line in (run_dir / "logs" / "scheduler.jsonl").read_text().splitlines()
    ]
    rehanded = [e["workers"] for e in events if e["event"] == "data_rehanded"]
    assert rehanded == [
        ["worker-0", "worker-1", "worker-2"],
        ["worker-0", "worker-1", "worker-2", "worker-3"],
        ["worker-0", "worker-1", "worker-2"],
        ["worker-0", "worker-1"],
    ]
    assert not list((run_dir / "requests").iterdir())  # every request answered and taken


async def test_scale_without_a_launcher_says_so(tmp_path: Path) -> None:
    """Nobody answers a run directory no launcher runs: exit 2 naming the fix."""
    (tmp_path / "topology.toml").write_text("", encoding="utf-8")
    result = await _command("scale", str(tmp_path), "--workers", "3", "--timeout", "0.5")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        f"error: no answer within 0.5s: is `actorml up` running with run directory "
        f"{str(tmp_path)!r}?"
    )
