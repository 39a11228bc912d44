"""The training benchmarks run end to end and report every figure they promise.

No threshold on any value: the machines are shared and noisy. What is checked is that
each script finishes, writes its JSON with the promised keys and finite values, and
leaves no process and no socket file behind.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.processes import run_bench

pytestmark = pytest.mark.slow


QUICK_PROTOCOLS = ("bsp", "ssp3")
CONDITIONS = ("no_straggler", "straggler", "transient")
FRESHNESS_PROTOCOLS = ("ssp3", "essp3")


def _run(name: str, tmp_path: Path, ipc_dir: str, *extra: str) -> dict[str, Any]:
    data, _ = run_bench(name, tmp_path, ipc_dir, *extra, cwd=tmp_path, timeout=900)
    return data


def _positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


class TestTrainingBenchmarks:
    def test_consistency_quick_run(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/consistency.py --quick` reports time to target, staleness and the plot."""
        data = _run("consistency", tmp_path, ipc_dir, "--plot", str(tmp_path / "c.png"))
        figures, ratios = data["figures"], data["ratios"]
        assert _positive(figures["target_test_loss"])
        for key in ("time_to_target_s", "train_s", "final_test_loss"):
            for p in QUICK_PROTOCOLS:
                for c in CONDITIONS:
                    value = figures[key][p][c]
                    if key == "time_to_target_s" and value is None:
                        continue  # the job never reached the target: null, not a number
                    assert _positive(value), (key, p, c, value)
        for key in ("staleness_mean_clocks", "staleness_max_clocks", "staleness_at_zero_share"):
            for p in QUICK_PROTOCOLS:
                for c in CONDITIONS:
                    value = figures[key][p][c]
                    assert isinstance(value, float) and math.isfinite(value) and value >= 0
            assert figures[key]["bsp"]["straggler"] == (1.0 if "share" in key else 0.0)
        for name in ("ssp3_vs_bsp_straggler", "ssp3_vs_bsp_no_straggler",
                     "ssp3_vs_bsp_transient", "bsp_straggler_vs_no_straggler"):  # fmt: skip
            assert ratios[name] is None or _positive(ratios[name]), (name, ratios[name])
        for key in ("freshness_staleness_mean_clocks", "freshness_staleness_at_zero_share"):
            for p in FRESHNESS_PROTOCOLS:
                value = figures[key][p]
                assert isinstance(value, float) and math.isfinite(value) and value >= 0
        ratio = ratios["essp3_vs_ssp3_staleness_mean_k4_messages"]
        assert ratio is None or _positive(ratio), ratio
        assert (tmp_path / "c.png").stat().st_size > 10_000

    def test_throughput_quick_run(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/throughput.py --quick` reports samples/s of the flights, dense and sparse
        jobs beside one process, their clock overheads, cycles/s beside raw pynng, and
        the dense job's time to the one-process accuracy, start-up included."""
        data = _run("throughput", tmp_path, ipc_dir)
        jobs = ("", "_dense", "_dense_k4", "_dense_k8_overlap", "_sparse", "_sparse_k8_overlap")
        assert set(data["figures"]) == {
            *(
                f"{figure}_{kind}{job}"
                for figure in ("samples_per_s", "test_accuracy")
                for kind in ("distributed", "single")
                for job in jobs
            ),
            "overhead_per_clock_ms",
            "overhead_per_clock_ms_4w",
            "cycles_per_s",
            "cycles_per_s_messages",
            "raw_cycles_per_s",
            "time_to_target_s_single_dense",
            "time_to_target_s_dense",
            "target_accuracy_dense",
            "reached_accuracy_dense",
        }
        assert set(data["ratios"]) == {
            *(f"samples_per_s_vs_single{job}" for job in jobs),
            "cycles_per_s_vs_raw",
            "cycles_per_s_vs_raw_messages",
            "time_to_target_vs_single_dense",
        }
        for key, value in {**data["figures"], **data["ratios"]}.items():
            assert _positive(value), (key, value)
