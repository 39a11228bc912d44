"""Scheduled model parallelism: Lasso by coordinate descent against scikit-learn.

The jobs run in-process (every node of the generated topology, talking through the
codec over the in-memory transport): a scheduler running the schedule, four workers,
two shards holding ``beta``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from sklearn.linear_model import Lasso as SklearnLasso

from actorml import registry
from actorml.actors.mp_messages import MpRound
from actorml.actors.mp_worker import MpWorker
from actorml.actors.schedules import PrioritySchedule, RandomSchedule, Schedule
from actorml.errors import TopologyError
from actorml.models.lasso import cd_round, cd_sweep, load_design, objective
from actorml.topology import Topology

from .test_training import train

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lasso.toml"


def lasso_job(data: str, alpha: float, schedule: dict[str, Any], **job: Any) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "lasso", "ask_timeout_s": 60.0},
            "job": {"kind": "model_parallel", "workers": 4, "shards": 2, "progress": False,
                    **job},
            "model": {"kind": "lasso", "data": data, "alpha": alpha},
            "schedule": schedule,
        }
    )  # fmt: skip


def sklearn_lasso(data: str, alpha: float) -> tuple[float, np.ndarray]:
    """scikit-learn's objective and coefficients on the same standardised design."""
    design = load_design(data)
    fit = SklearnLasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
    coef = fit.fit(design.X, design.y).coef_
    return objective(design, design.y - design.X @ coef, coef, alpha), coef


def check_audit(result: dict[str, Any]) -> None:
    for slice_, audit in result["audit"].items():
        assert audit["lost"] == 0 and audit["doubled"] == 0, (slice_, audit)


@pytest.mark.slow
class TestLassoAgainstSklearn:
    # diamonds is examples/lasso.toml, run below
    @pytest.mark.parametrize(("data", "alpha"), [("sklearn:diabetes", 1.0)])
    async def test_priority_job_matches_sklearn(self, data: str, alpha: float,
                                                tmp_path: Path) -> None:  # fmt: skip
        """The priority-scheduled job ends within 1e-3 (relative) of scikit-learn's Lasso
        objective with the same support, and its beta is what the shards hold."""
        result = await train(lasso_job(data, alpha, {"kind": "priority"}), tmp_path)
        theirs, coef = sklearn_lasso(data, alpha)
        assert "error" not in result, result
        assert result["converged"]
        assert abs(result["objective"] - theirs) <= 1e-3 * theirs, (result["objective"], theirs)
        beta = np.load(tmp_path / "params.npz")["beta"][:, 0]
        assert set(np.flatnonzero(beta)) == set(np.flatnonzero(coef))
        check_audit(result)
        rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert [r["round"] for r in rows] == list(range(result["rounds"]))
        assert rows[-1]["updates"] == result["updates"]


@pytest.mark.slow
class TestExample:
    async def test_lasso_example_runs(self, tmp_path: Path) -> None:
        """examples/lasso.toml (diamonds) loads, checks and ends within 1e-3 of
        scikit-learn's objective with the same support."""
        data = tomllib.loads(EXAMPLE.read_text())
        data["job"]["progress"] = False
        topology = Topology.from_dict(data, source=str(EXAMPLE))
        topology.check()
        result = await train(topology, tmp_path)
        theirs, coef = sklearn_lasso(data["model"]["data"], data["model"]["alpha"])
        assert abs(result["objective"] - theirs) <= 1e-3 * theirs, (result["objective"], theirs)
        beta = np.load(tmp_path / "params.npz")["beta"][:, 0]
        assert set(np.flatnonzero(beta)) == set(np.flatnonzero(coef))
        check_audit(result)


class TestSchedules:
    def test_priority_rounds_hold_no_dependent_pair(self) -> None:
        """Every round of the priority schedule keeps pairwise |x_j . x_k| / n <= 0.1 and
        at most round_size coordinates, split over the workers without repeats."""
        design = load_design("generated:correlated", rows=300, cols=200, correlation=0.9)
        X = design.X
        gram = np.abs(X.T @ X) / design.n
        schedule = PrioritySchedule(round_size=32, threshold=0.1)
        schedule.setup(200, lambda ids: gram[np.ix_(ids, ids)], seed=0)
        for _ in range(50):
            blocks = schedule.plan(4)
            chosen = np.concatenate(blocks)
            assert len(blocks) == 4 and 1 <= chosen.size <= 32
            assert np.unique(chosen).size == chosen.size
            pairs = gram[np.ix_(chosen, chosen)] - np.eye(chosen.size)
            assert pairs.max() <= 0.1
            schedule.observe(chosen, np.ones(chosen.size))

    def test_priority_prefers_coordinates_that_moved(self) -> None:
        """After a round, coordinates that moved are drawn far more often than still ones."""
        schedule = PrioritySchedule(round_size=4, threshold=1.0, eta=1e-6)
        schedule.setup(100, lambda ids: np.zeros((ids.size, ids.size)), seed=1)
        schedule.observe(np.arange(100), np.where(np.arange(100) < 10, 1.0, 0.0))
        drawn = np.concatenate([np.concatenate(schedule.plan(2)) for _ in range(20)])
        assert (drawn < 10).mean() > 0.9

    @pytest.mark.parametrize("kind", ["priority", "random"])
    def test_requeued_block_is_planned_next(self, kind: str) -> None:
        """A dead worker's block comes back in the very next round."""
        schedule = registry.resolve("schedule", kind)(round_size=8)
        assert isinstance(schedule, Schedule)
        schedule.setup(1000, lambda ids: np.zeros((ids.size, ids.size)), seed=2)
        lost = schedule.plan(3)[1]
        schedule.requeue(lost)
        assert set(lost) <= set(np.concatenate(schedule.plan(3)))

    def test_random_round_diverges_where_priority_converges(self) -> None:
        """On diabetes, updating every coordinate at once (Shotgun with 32 per round)
        diverges, while the priority rounds reach scikit-learn's objective."""
        design = load_design("sklearn:diabetes")
        theirs, _ = sklearn_lasso("sklearn:diabetes", 1.0)
        finals = {}
        for schedule in (RandomSchedule(), PrioritySchedule()):
            schedule.setup(10, lambda ids: np.abs(design.X[:, ids].T @ design.X[:, ids]) / 442, 0)
            beta, r = np.zeros(10), design.y.copy()
            for _ in range(2000):
                coords = np.sort(np.concatenate(schedule.plan(4)))
                schedule.observe(coords, cd_round(design.X, r, beta, coords, 1.0))
            finals[type(schedule).__name__] = objective(design, r, beta, 1.0)
        assert not finals["RandomSchedule"] < 10 * theirs
        assert abs(finals["PrioritySchedule"] - theirs) <= 1e-3 * theirs

    def test_sequential_sweeps_match_sklearn(self) -> None:
        """The single-process reference (cyclic sweeps) reaches scikit-learn's objective."""
        design = load_design("sklearn:diabetes")
        beta, r = np.zeros(10), design.y.copy()
        for _ in range(3000):
            cd_sweep(design.X, r, beta, np.arange(10), 1.0)
        theirs, coef = sklearn_lasso("sklearn:diabetes", 1.0)
        assert abs(objective(design, r, beta, 1.0) - theirs) <= 1e-9 * theirs
        assert set(np.flatnonzero(beta)) == set(np.flatnonzero(coef))


class TestTopology:
    def test_unknown_schedule_names_the_choices(self) -> None:
        """A misspelt schedule kind is one line naming the key and the valid kinds."""
        with pytest.raises(TopologyError, match=r"schedule\.kind.*'prio'.*priority, random"):
            lasso_job("sklearn:diabetes", 1.0, {"kind": "prio"})

    def test_bad_schedule_option_is_refused_at_its_key(self) -> None:
        """A threshold outside [0, 1] is refused at schedule.threshold."""
        with pytest.raises(TopologyError, match=r"schedule\.threshold"):
            lasso_job("sklearn:diabetes", 1.0, {"kind": "priority", "threshold": 2.0})

    def test_unknown_data_is_refused_at_its_key(self) -> None:
        """An unknown Lasso design is refused at model.data, naming the valid ones."""
        with pytest.raises(TopologyError, match=r"model\.data.*sklearn:diabetes"):
            lasso_job("sklearn:iris", 1.0, {})

    def test_unknown_job_kind_names_the_choices(self) -> None:
        """[job] kind must be data_parallel or model_parallel."""
        with pytest.raises(TopologyError, match=r"job\.kind.*model_parallel"):
            Topology.from_dict({"cluster": {"name": "x"}, "job": {"kind": "model_paralel"},
                                "model": {"kind": "lasso"}})  # fmt: skip

    def test_job_generates_the_model_parallel_roles(self) -> None:
        """The job expands to a scheduler node (protocol + mp_scheduler), shards and
        mp_workers, with BSP by default."""
        topology = lasso_job("sklearn:diabetes", 1.0, {})
        kinds = {a.name: a.kind for n in topology.nodes for a in n.actors}
        assert kinds["scheduler"] == "mp_scheduler" and kinds["worker-3"] == "mp_worker"
        assert kinds["protocol"].endswith(":BSP") and kinds["shard-1"] == "shard"

    def test_problem_in_a_data_parallel_job_names_the_fix(self) -> None:
        """A Lasso in a data-parallel [job] is refused, saying which job kind it needs."""
        with pytest.raises(TopologyError, match=r'model\.kind.*kind = "model_parallel"'):
            Topology.from_dict({"cluster": {"name": "x"}, "job": {}, "model": {"kind": "lasso"},
                                "data": {"source": "sklearn:iris"}})  # fmt: skip


@pytest.mark.slow
class TestUserSchedule:
    async def test_documented_schedule_runs_by_dotted_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The schedule written in docs/model-parallel.md, named by dotted path, drives a
        job to scikit-learn's objective (one coordinate per round: plain cyclic CD)."""
        docs = (Path(__file__).resolve().parent.parent / "docs" / "model-parallel.md").read_text()
        (code,) = re.findall(r"^```python\n(.*?)^```", docs, flags=re.M | re.S)
        (tmp_path / "doc_schedule.py").write_text(code)
        monkeypatch.syspath_prepend(str(tmp_path))
        topology = lasso_job(
            "sklearn:diabetes", 1.0, {"kind": "doc_schedule:Cyclic", "round_size": 1},
            tolerance=1e-4,
        )  # fmt: skip
        (tmp_path / "run").mkdir()
        result = await train(topology, tmp_path / "run")
        theirs, _ = sklearn_lasso("sklearn:diabetes", 1.0)
        assert result["converged"]
        assert abs(result["objective"] - theirs) <= 1e-3 * theirs
        assert result["updates"] == result["rounds"]


EVENTS: list[tuple[str, list[int]]] = []
"""What `RecordingSchedule` planned and requeued (the in-process cluster shares it)."""


@attrs.define(eq=False)
class RecordingSchedule(PrioritySchedule):
    """The priority schedule, keeping a log of its plans and requeues."""

    def plan(self, workers: int) -> list[np.ndarray]:
        blocks = super().plan(workers)
        EVENTS.append(("plan", sorted(int(c) for b in blocks for c in b)))
        return blocks

    def requeue(self, coords: np.ndarray) -> None:
        EVENTS.append(("requeue", sorted(int(c) for c in coords)))
        super().requeue(coords)


@attrs.define(eq=False)
class CrashOnce(MpWorker):
    """A worker whose first incarnation crashes in its first round with coordinates."""

    async def _round(self, msg: MpRound, *args: Any) -> Any:
        if msg.block.size and self.ctx.ref.incarnation % (1 << 20) == 1:
            raise RuntimeError("crashed mid-round")
        return await MpWorker._round(self, msg, *args)


@pytest.mark.slow
class TestRescheduling:
    async def test_block_of_a_crashed_worker_is_planned_next_round(self, tmp_path: Path) -> None:
        """A worker crashing mid-round loses its block to the next round's plan; the
        restarted worker rejoins and the job still reaches scikit-learn's objective."""
        EVENTS.clear()
        data = {
            "cluster": {"name": "resched", "ask_timeout_s": 60.0},
            "job": {"kind": "model_parallel", "workers": 2, "shards": 1, "progress": False,
                    "round_timeout_s": 2.0},
            "model": {"kind": "lasso", "data": "sklearn:diabetes", "alpha": 1.0},
            "schedule": {"kind": "tests.test_model_parallel:RecordingSchedule"},
            "node": [{"name": "worker-1", "actor": [{
                "name": "worker-1", "kind": "tests.test_model_parallel:CrashOnce",
                "restart": "transient", "args": {}}]}],
        }  # fmt: skip
        result = await train(Topology.from_dict(data), tmp_path)
        requeues = [i for i, (what, _) in enumerate(EVENTS) if what == "requeue"]
        assert len(requeues) == 1, EVENTS[:5]
        lost = EVENTS[requeues[0]][1]
        after = EVENTS[requeues[0] + 1]
        assert after[0] == "plan" and set(lost) <= set(after[1]), (lost, after)
        assert result["rescheduled"] == 1 and len(lost) > 0  # one block, its coordinates
        theirs, _ = sklearn_lasso("sklearn:diabetes", 1.0)
        assert abs(result["objective"] - theirs) <= 1e-3 * theirs
        check_audit(result)
