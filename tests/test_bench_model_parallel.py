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
#: per rotated problem, the quality figure each run reports
QUALITY = {"mf": "test_rmse", "lda": "per_token_nll"}


def rotated_keys(name: str) -> tuple[set[str], set[str]]:
    """The figures and ratios of the MF or LDA part."""
    figures = {
        f"{name}_samples_per_s",
        f"{name}_single_samples_per_s",
        f"{name}_{QUALITY[name]}",
        f"{name}_single_{QUALITY[name]}",
        f"{name}_seconds",
        f"{name}_single_seconds",
        f"{name}_compute_share",
        f"{name}_evaluation_seconds",
    }
    return figures, {f"{name}_vs_single", f"{name}_rounds_vs_single"}


def test_model_parallel_quick_run(tmp_path: Path, ipc_dir: str) -> None:
    """Lasso: updates and seconds of each run, the ratios, whether random diverged, the
    plot; MF and LDA: samples/s and quality of the job and of one process, the ratios."""
    plot = tmp_path / "mp.png"
    data, _ = run_bench("model_parallel", tmp_path, ipc_dir, "--plot", str(plot), cwd=tmp_path)
    figures, ratios = data["figures"], data["ratios"]
    lasso = {f"{run}_{what}" for run in RUNS for what in ("updates", "seconds")}
    mf, mf_ratios = rotated_keys("mf")
    lda, lda_ratios = rotated_keys("lda")
    assert set(figures) == lasso | {"random_diverged"} | mf | lda
    assert isinstance(figures["random_diverged"], bool)
    assert (
        set(ratios)
        == {
            "priority_vs_random_updates",
            "priority_vs_single_updates",
            "priority_vs_single_seconds",
        }
        | mf_ratios
        | lda_ratios
    )
    positive = (lasso | mf | lda | set(ratios)) - {
        "mf_evaluation_seconds",
        "lda_evaluation_seconds",
    }
    for key in positive:
        value = {**figures, **ratios}[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    for name in ("mf", "lda"):
        assert figures[f"{name}_evaluation_seconds"] >= 0.0
        assert figures[f"{name}_evaluation_seconds"] < figures[f"{name}_seconds"]
        assert figures[f"{name}_compute_share"] <= 1.0
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("part", ["mf", "lda"])
def test_model_parallel_one_part(tmp_path: Path, ipc_dir: str, part: str) -> None:
    """``--part mf`` (or lda) runs only that part: its figures and ratios, no plot."""
    plot = tmp_path / "mp.png"
    data, _ = run_bench(
        "model_parallel", tmp_path, ipc_dir, "--part", part, "--plot", str(plot), cwd=tmp_path
    )
    figures, ratios = rotated_keys(part)
    assert set(data["figures"]) == figures
    assert set(data["ratios"]) == ratios
    assert not plot.exists()
