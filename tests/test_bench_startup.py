"""`bench/startup.py` runs end to end and reports every figure it promises.

No threshold on any value: the machines are shared and noisy. What is checked is that
the script finishes, writes its JSON with positive finite figures and ratios, and
leaves no process and no socket file behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import assert_positive_figures, run_bench

pytestmark = pytest.mark.slow


FIGURES = {
    "first_clock_s", "up_total_s", "teardown_s", "single_start_s", "first_clock_big_s",
    "single_start_big_s", "job_pss_big_mib", "data_big_mib", "job_rss_over_data",
}  # fmt: skip
RATIOS = {
    "first_clock_vs_single_start", "up_total_vs_single_start",
    "first_clock_big_vs_single_start",
}  # fmt: skip


class TestStartupBenchmark:
    def test_quick_run_writes_figures(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/startup.py --quick --json PATH` runs the quickstart job and a one-process
        baseline, writes positive finite start-up times and ratios, and leaves nothing
        running."""
        data, done = run_bench("startup", tmp_path, ipc_dir)
        assert_positive_figures(data, FIGURES, RATIOS)
        assert "start -> first clock" in done.stdout
