"""The benchmarks run end to end and report every figure they promise.

No threshold on any value: the machines are shared and noisy. What is checked is
that each script finishes, writes its JSON with positive finite figures and ratios,
and leaves no process and no socket file behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import assert_positive_figures, run_bench

pytestmark = pytest.mark.slow


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
    "message_cost": ({"cpu_us_per_msg_nng", "cpu_us_per_msg_unix"}, {"cpu_per_msg_nng_vs_unix"}),
}


class TestBenchmarks:
    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_quick_run_writes_figures(self, name: str, tmp_path: Path, ipc_dir: str) -> None:
        """`bench/NAME.py --quick --json PATH` writes positive finite figures and ratios."""
        data, _ = run_bench(name, tmp_path, ipc_dir)
        assert_positive_figures(data, *EXPECTED[name])
