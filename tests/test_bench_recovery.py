"""`bench/recovery.py` runs end to end and reports every figure it promises.

No threshold on any value: the machines are shared and noisy. What is checked is that
the script finishes, writes its JSON with positive finite figures and ratios, and
leaves no process, socket file or run directory behind.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.processes import marked_processes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "shard_failover_s",
    "shard_rereplicate_s",
    "worker_replace_s",
    "hung_worker_replace_s",
    "heartbeat_interval_s",
    "heartbeat_deadline_s",
}
RATIOS = {"shard_failover_vs_1s", "worker_replace_vs_1s", "hung_worker_replace_vs_1s"}


class TestRecoveryBenchmark:
    def test_quick_run_writes_figures(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/recovery.py --quick --json PATH` kills and stops nodes of a training job,
        writes positive finite recovery times and ratios, and leaves nothing running."""
        out = tmp_path / "recovery.json"
        marker = uuid.uuid4().hex
        # The run directory (TMPDIR) and the socket files (ACTORML_SOCKET_ROOT) go to
        # ipc_dir, which must be empty afterwards.
        env = {
            **os.environ,
            "TMPDIR": ipc_dir,
            "ACTORML_SOCKET_ROOT": ipc_dir,
            "ACTORML_BENCH_TEST": marker,
        }
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "recovery.py"), "--quick", "--json", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        data = json.loads(out.read_text(encoding="utf-8"))
        assert set(data) == {"figures", "ratios"}
        assert set(data["figures"]) == FIGURES
        assert set(data["ratios"]) == RATIOS
        for key, value in {**data["figures"], **data["ratios"]}.items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
        assert "worker SIGSTOP -> replacement's first clock" in done.stdout
        assert marked_processes(marker) == []
