"""`bench/model_parallel.py --quick` runs end to end and reports every figure it promises.

No threshold on any value (the machines are shared and noisy): the script must finish,
write its JSON with the promised keys, a plot, and leave no process or socket file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.processes import run_bench

pytestmark = pytest.mark.slow

RUNS = ("single", "priority", "random")


def test_model_parallel_quick_run(tmp_path: Path, ipc_dir: str) -> None:
    """Updates and seconds of each run, the ratios, whether random diverged, the plot."""
    plot = tmp_path / "mp.png"
    data, _ = run_bench("model_parallel", tmp_path, ipc_dir, "--plot", str(plot), cwd=tmp_path)
    figures, ratios = data["figures"], data["ratios"]
    expected = {f"{run}_{what}" for run in RUNS for what in ("updates", "seconds")}
    assert set(figures) == expected | {"random_diverged"}
    assert isinstance(figures["random_diverged"], bool)
    assert set(ratios) == {
        "priority_vs_random_updates",
        "priority_vs_single_updates",
        "priority_vs_single_seconds",
    }
    for key in expected | set(ratios):
        value = {**figures, **ratios}[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert plot.stat().st_size > 10_000
