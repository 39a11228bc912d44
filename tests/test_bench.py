"""The benchmarks run end to end and report every figure they promise.

No threshold on any value: the machines are shared and noisy. What is checked is
that each script finishes, writes its JSON with positive finite figures and ratios,
and leaves no process and no socket file behind.
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

EXPECTED = {
    "latency": (
        {
            "ask_rtt_us",
            "raw_rtt_us",
            "raw_sync_rtt_us",
            "ask_rtt_us_tcp",
            "raw_rtt_us_tcp",
            "raw_sync_rtt_us_tcp",
            "ask_rtt_us_plain_tcp",
            "ask_rtt_us_tls",
        },
        {
            "ask_rtt_vs_raw",
            "ask_rtt_vs_raw_sync",
            "ask_rtt_vs_raw_tcp",
            "ask_rtt_vs_raw_sync_tcp",
            "ask_rtt_tls_vs_tcp",
        },
    ),
    "bandwidth": (
        {"actor_gbps", "raw_gbps", "gbps_plain_tcp", "gbps_tls"},
        {"gbps_vs_raw", "gbps_tls_vs_tcp"},
    ),
}


class TestBenchmarks:
    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_quick_run_writes_figures(self, name: str, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/NAME.py --quick --json PATH` writes positive finite figures and ratios."""
        out = tmp_path / f"{name}.json"
        marker = uuid.uuid4().hex
        env = {**os.environ, "TMPDIR": ipc_dir, "ACTORML_BENCH_TEST": marker}
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick", "--json", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        data = json.loads(out.read_text(encoding="utf-8"))
        figures, ratios = EXPECTED[name]
        assert set(data) == {"figures", "ratios"}
        assert set(data["figures"]) == figures
        assert set(data["ratios"]) == ratios
        for key, value in {**data["figures"], **data["ratios"]}.items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
        assert marked_processes(marker) == []
