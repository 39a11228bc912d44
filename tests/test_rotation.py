"""The rotation schedule (DSGD / STRADS) that matrix factorisation and LDA run under."""

from __future__ import annotations

import numpy as np
import pytest

from actorml.actors.schedules import RotationSchedule
from actorml.models.rounds import SweepCoordinator


def rounds_of_a_sweep(schedule: RotationSchedule, blocks: int, workers: int) -> list[list]:
    out = []
    start = schedule.sweeps
    while schedule.sweeps == start:
        out.append([tuple(int(x) for x in b[:2]) for b in schedule.plan(workers) if b.size])
    return out


class TestRotation:
    @pytest.mark.parametrize("blocks, workers", [(4, 4), (4, 2), (3, 4), (5, 3)])
    def test_a_sweep_covers_the_grid_once_and_rounds_share_no_row_or_column(
        self, blocks: int, workers: int
    ) -> None:
        schedule = RotationSchedule()
        schedule.setup(blocks, None, seed=3)
        for _ in range(3):
            rounds = rounds_of_a_sweep(schedule, blocks, workers)
            pairs = [p for r in rounds for p in r]
            assert sorted(pairs) == [(a, b) for a in range(blocks) for b in range(blocks)]
            for r in rounds:
                assert len(r) <= workers
                assert len({a for a, _ in r}) == len(r) and len({b for _, b in r}) == len(r)

    def test_a_requeued_pair_comes_first_in_the_next_round_and_the_sweep_waits(self) -> None:
        schedule = RotationSchedule(shuffle=False)
        schedule.setup(2, None, seed=0)
        first = schedule.plan(2)
        assert [b.tolist() for b in first] == [[0, 0, 0], [1, 1, 0]]
        schedule.requeue(first[1])
        again = schedule.plan(2)
        assert again[0].tolist() == [1, 1, 0] and again[1].size == 0
        assert schedule.sweeps == 0
        second = schedule.plan(2)  # the second sub-epoch: (0, 1) and (1, 0)
        assert [b.tolist() for b in second] == [[0, 1, 0], [1, 0, 0]]
        assert schedule.sweeps == 1
        assert [b[2] for b in schedule.plan(2)] == [1, 1]  # the next sweep

    def test_empty_blocks_for_workers_beyond_the_grid(self) -> None:
        schedule = RotationSchedule()
        schedule.setup(2, None, seed=0)
        plan = schedule.plan(5)
        assert [b.size for b in plan] == [3, 3, 0, 0, 0]
        assert all(b.dtype == np.int64 for b in plan)


class TestSweepCoordinator:
    @pytest.mark.parametrize(
        "every, evaluated", [(1, [0, 1, 2, 3, 4, 5]), (2, [0, 2, 4, 5]), (0, [5])]
    )
    def test_it_reads_back_every_n_sweeps_and_after_the_last(
        self, every: int, evaluated: list[int]
    ) -> None:
        """The tables are read after a round that completed a due sweep (every ``every``,
        0: none before the last), once per sweep, and always after the last."""

        class Counting(SweepCoordinator):
            TABLES = ("t",)

            def evaluate(self, tables: dict[str, np.ndarray]) -> dict[str, float]:
                return {"value": 1.0}

        coordinator = Counting(5, 2, every)
        seen = []
        for round_, sweep in enumerate([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]):
            names = coordinator.reads(round_, sweep)
            tables = {name: np.zeros((1, 1)) for name in names}
            metrics, _ = coordinator.after_round(np.zeros(0), tables, round_, sweep)
            if metrics:
                seen.append(metrics["sweep"])
        assert seen == evaluated
        assert coordinator.done(10, 5) and not coordinator.done(9, 4)
