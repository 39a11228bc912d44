"""Processes a test starts: running a benchmark script, and finding what it left behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``ACTORML_BENCH_TEST=marker`` (every child
    of a benchmark run a test starts does), to prove none is left behind."""
    found = []
    needle = f"ACTORML_BENCH_TEST={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


ROOT = Path(__file__).resolve().parent.parent


def segment_holders(label: str) -> list[str]:
    """Our processes (same uid) that map ``label`` or hold an fd to it, as "pid:where"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            if label in (entry / "maps").read_text(errors="replace"):
                found.append(f"{entry.name}:maps")
            for fd in (entry / "fd").iterdir():
                if label in os.readlink(fd):
                    found.append(f"{entry.name}:fd")
        except OSError:  # it exited while we looked
            continue
    return found


def run_bench(
    name: str, out_dir: Path, ipc_dir: str, *extra: str, cwd: Path = ROOT, timeout: float = 600
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``bench/NAME.py --quick --json`` as CI would and return its JSON and its run.

    Its run directories (``TMPDIR``) and socket files (``ACTORML_SOCKET_ROOT``) go to
    ``ipc_dir``, which the fixture checks is empty afterwards; every process it starts
    carries a marker, and none may be left running.
    """
    out = out_dir / f"{name}.json"
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "TMPDIR": ipc_dir,
        "ACTORML_SOCKET_ROOT": ipc_dir,
        "ACTORML_BENCH_TEST": marker,
    }
    script = str(ROOT / "bench" / f"{name}.py")
    done = subprocess.run(
        [sys.executable, script, "--quick", "--json", str(out), *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert marked_processes(marker) == []
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) == {"figures", "ratios"}
    return data, done


def assert_positive_figures(data: dict[str, Any], figures: set[str], ratios: set[str]) -> None:
    """Exactly the promised keys, each a positive finite float."""
    assert set(data["figures"]) == figures
    assert set(data["ratios"]) == ratios
    for key, value in {**data["figures"], **data["ratios"]}.items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)


def up_until_ready(topology: Path, node: str, run_root: Path) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m actorml up TOPOLOGY`` and wait until its nodes are ready.

    Returns the command's process and the pid of node ``node`` (found by its title,
    ``actorml node NODE --topology RUN_ROOT/...``).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "actorml", "up", str(topology)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "nodes ready" in line:
            break
    found = subprocess.run(
        ["pgrep", "-f", f"actorml node {node} --topology {run_root}/"],
        capture_output=True, text=True,
    )  # fmt: skip
    [pid] = [int(p) for p in found.stdout.split()]
    return proc, pid
