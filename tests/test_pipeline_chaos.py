"""Chaos: SIGKILL a pipeline stage's node while a real multi-process job trains.

A stage whose tables live on the shards comes back from them; its replica's mini-batch
in flight is redone; the job does not hang, loses no acknowledged push and applies
none twice. A stage whose tables lived only in it ends the job with one line saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from actorml import Cluster, Topology, open_cluster

from .test_chaos import kill_and_wait

pytestmark = pytest.mark.slow


def job(tmp_path: Path, pipe: dict[str, Any]) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {
                "name": "pipe-chaos",
                "run_dir": str(tmp_path),
                "heartbeat_interval_s": 0.2,
                "heartbeat_deadline_s": 10.0,  # kills are seen at once (pidfd); load is not death
                "supervisor": {"max_restarts": 10, "within_s": 60.0},
            },
            "pipeline": {
                "stages": 2,
                "micro_batches": 4,
                "epochs": 12,
                "batch_size": 16,
                "progress": False,
                **pipe,
            },
            "data": {"source": "sklearn:digits"},
            "model": {"kind": "mlp", "hidden": [64, 64], "l2": 1e-4},
            "optimizer": {"kind": "adam", "lr": 0.003},
            "protocol": {"kind": "bsp"},
        }
    )


KILL_WITHIN_S = 120.0
"""How long a victim's clocks may take to come (the job trains for a few seconds)."""


async def clocks_done(run_dir: Path) -> int:
    return len(_lines(run_dir / "metrics.jsonl"))


async def kill_when_training(cluster: Cluster, run_dir: Path, node: str, after: int) -> None:
    """SIGKILL ``node`` once ``after`` clocks are done; wait until it is back up."""
    while await clocks_done(run_dir) < after:
        await trio.sleep(0.05)
    await kill_and_wait(cluster, node)


def stalled(run_dir: Path, node: str, after: int) -> str:
    """Why a kill never came: the clocks done and the last lines of every node's log
    (a rare stall of these jobs, so far seen only on a loaded machine)."""
    lines = [f"{node} not killed within {KILL_WITHIN_S:g} s: {after} clocks wanted, "
             f"metrics.jsonl holds {len(_lines(run_dir / 'metrics.jsonl'))} lines"]  # fmt: skip
    for log in sorted((run_dir / "logs").glob("*.jsonl")):
        lines += [f"--- {log.name}", *_lines(log)[-8:]]
    return "\n".join(lines)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


async def run(topology: Topology, run_dir: Path, victims: list[tuple[str, int]]) -> Any:
    async with open_cluster(topology, run_dir=run_dir) as cluster:
        for victim, after in victims:
            with trio.move_on_after(KILL_WITHIN_S) as waited:
                await kill_when_training(cluster, run_dir, victim, after)
            if waited.cancelled_caught:
                pytest.fail(stalled(run_dir, victim, after))
        with trio.fail_after(300):
            result = await cluster.wait()
    return result, cluster


class TestStageDeath:
    async def test_hybrid_stage_killed_restarts_from_the_shards(self, tmp_path: Path) -> None:
        """2 x 2 hybrid under BSP: each replica's last stage killed once (after 40 and 120
        clocks); the mini-batches in flight are redone, nothing is lost or doubled, and
        the job still learns the digits."""
        topology = job(tmp_path, {"replicas": 2, "shards": 2})
        victims = [("stage-1-r0", 40), ("stage-0-r1", 120)]
        result, cluster = await run(topology, tmp_path / "run", victims)
        assert [name for name, _ in cluster.deaths] == [v for v, _ in victims]
        assert "error" not in result, result
        assert 1 <= result["redone"] <= 4, result["redone"]
        # One line per replica per clock: each clock's update of each of the 4 stage
        # actors landed on each shard exactly once, redone mini-batches included.
        clocks = len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
        for audit in result["audit"].values():
            assert audit["applied"] == 2 * clocks, (audit, clocks)
            assert audit["lost"] == 0 and audit["doubled"] == 0, audit
            assert audit["unreported"] <= 2, audit  # pushes in flight when a stage died
        assert result["test_accuracy"] > 0.9

    async def test_local_stage_killed_ends_the_job_with_the_reason(self, tmp_path: Path) -> None:
        """Without shards a killed stage's tables are gone: the job ends at once with an
        error naming the stage and the fix, rather than hang or train from scratch."""
        topology = job(tmp_path, {})
        result, _ = await run(topology, tmp_path / "run", [("stage-1-r0", 20)])
        assert result["error"] == (
            "stage-1-r0 restarted and its parameters lived only in it"
            " (set [pipeline] shards >= 1 to keep them on the shards)"
        )

    async def test_driver_killed_ends_the_job_with_the_reason(self, tmp_path: Path) -> None:
        """The driver's node killed: the job ends with an error saying so, not a hang."""
        topology = job(tmp_path, {"shards": 1})
        result, _ = await run(topology, tmp_path / "run", [("pipeline", 20)])
        assert result["error"] == (
            "the pipeline driver restarted mid-job; a pipeline does not survive"
            " its driver's death yet (run the job again)"
        )
