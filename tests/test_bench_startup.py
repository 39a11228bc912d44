"""`bench/startup.py` runs end to end and reports every figure it promises.

No threshold on any value: the machines are shared and noisy. What is checked is that
the script finishes, writes its JSON with positive finite figures and ratios, and
leaves no process and no socket file behind.
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

FIGURES = {"first_clock_s", "up_total_s", "teardown_s", "single_start_s"}
RATIOS = {"first_clock_vs_single_start", "up_total_vs_single_start"}


class TestStartupBenchmark:
    def test_quick_run_writes_figures(self, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/startup.py --quick --json PATH` runs the quickstart job and a one-process
        baseline, writes positive finite start-up times and ratios, and leaves nothing
        running."""
        out = tmp_path / "startup.json"
        marker = uuid.uuid4().hex
        env = {
            **os.environ,
            "TMPDIR": ipc_dir,
            "ACTORML_SOCKET_ROOT": ipc_dir,
            "ACTORML_BENCH_TEST": marker,
        }
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "startup.py"), "--quick", "--json", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        data = json.loads(out.read_text(encoding="utf-8"))
        assert set(data) == {"figures", "ratios"}
        assert set(data["figures"]) == FIGURES
        assert set(data["ratios"]) == RATIOS
        for key, value in {**data["figures"], **data["ratios"]}.items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
        assert "start -> first clock" in done.stdout
        assert marked_processes(marker) == []
