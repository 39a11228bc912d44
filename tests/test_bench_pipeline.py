"""`bench/pipeline.py` runs end to end and reports every figure it promises.

No threshold on any value: the machines are shared and noisy. What is checked is that
the script finishes, writes its JSON with the promised keys and finite values, and
leaves no process and no socket file behind.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.processes import run_bench

pytestmark = pytest.mark.slow

MICRO = {"1", "2", "4", "8"}


def test_pipeline_quick_run(tmp_path: Path, ipc_dir: str) -> None:
    """`bench/pipeline.py --quick` reports samples/s per m beside one process, and the
    measured bubble beside GPipe's (S - 1) / (m + S - 1)."""
    data, done = run_bench("pipeline", tmp_path, ipc_dir, cwd=tmp_path, timeout=900)
    figures, ratios = data["figures"], data["ratios"]
    assert set(figures) == {"samples_per_s", "bubble_fraction", "bubble_fraction_theory"}
    assert set(figures["samples_per_s"]["pipeline"]) == MICRO
    assert figures["bubble_fraction_theory"] == {"1": 0.5, "2": 0.3333, "4": 0.2, "8": 0.1111}
    values = [figures["samples_per_s"]["single"], *figures["samples_per_s"]["pipeline"].values()]
    for value in [*values, *ratios.values()]:
        assert isinstance(value, float) and math.isfinite(value) and value > 0
    for m in MICRO:
        assert 0.0 <= figures["bubble_fraction"][m] < 1.0
    assert set(ratios) == {"pipeline_vs_single", *(f"pipeline_vs_single_m{m}" for m in MICRO)}
    assert ratios["pipeline_vs_single"] == ratios["pipeline_vs_single_m8"]
    assert "bubble" in done.stdout
