"""`bench/recovery.py` runs end to end and reports every figure it promises.

No threshold on any value: the machines are shared and noisy. What is checked is that
the script finishes, writes its JSON with positive finite figures and ratios, and
leaves no process, socket file or run directory behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import assert_positive_figures, run_bench

pytestmark = pytest.mark.slow


FIGURES = {
    "shard_failover_s",
    "shard_rereplicate_s",
    "worker_replace_s",
    "hung_worker_replace_s",
    "host_replace_s",
    "heartbeat_interval_s",
    "heartbeat_deadline_s",
}
RATIOS = {
    "shard_failover_vs_1s",
    "worker_replace_vs_1s",
    "hung_worker_replace_vs_1s",
    "host_replace_vs_worker_replace",
}


class TestRecoveryBenchmark:
    def test_quick_run_writes_figures(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/recovery.py --quick --json PATH` kills and stops nodes of a training job,
        writes positive finite recovery times and ratios, and leaves nothing running."""
        data, done = run_bench("recovery", tmp_path, ipc_dir)
        assert_positive_figures(data, FIGURES, RATIOS)
        assert "worker SIGSTOP -> replacement's first clock" in done.stdout
