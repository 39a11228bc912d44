"""Start-up: from ``actorml up`` to the first clock of training, and to the exit.

Each run starts ``actorml up examples/quickstart.toml`` as a subprocess (seven node
processes: the scheduler with its protocol actor, two shards, four workers) with its
own run directory in a scratch directory, and measures on one wall clock:

- ``first_clock_s``: from the command's start to the first worker clock, the first
  line of ``RUN_DIR/metrics.jsonl`` (its ``wall``: when the scheduler handled it);
- ``up_total_s``: from the command's start to its exit;
- ``teardown_s``: from the last metrics line to the exit (the final evaluation, the
  parameters, the plot, stopping seven processes).

The same-run baseline, ``single_start_s``, is one fresh interpreter that imports
``actorml.models`` and loads the same dataset, start to exit: what a one-process job
pays before its first mini-batch. Runs alternate the two so both see the same load.

It also starts the same job on a generated 1M x 100 float32 npz dataset (200k rows
with ``--quick``), stopped with SIGINT once its first clock is in: ``first_clock_big_s``
beside its own baseline ``single_start_big_s`` (an interpreter loading that file), and
``job_rss_over_data``: the proportional set size (shared pages counted once) of the
launcher and every process under it at the first clock, over the bytes of the dataset
as loaded (float64 features, int64 labels).
The figures are medians over the runs; ``--quick`` makes three runs and one big run.

    python bench/startup.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import median, parse_args, print_table, scratch_dir, write_json

from actorml.process import die_with_parent

RUNS, QUICK_RUNS, BIG_RUNS, QUICK_BIG_RUNS = 5, 3, 3, 1
ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.toml"
BIG_ROWS, QUICK_BIG_ROWS, BIG_FEATURES = 1_000_000, 200_000, 100
WAIT_S = 600.0  # the longest one run may take before it is declared broken
SINGLE = "from actorml.models import load_dataset; load_dataset({!r})"


def _actorml() -> list[str]:
    """The ``actorml`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "actorml"
    return [str(script)] if script.exists() else [sys.executable, "-m", "actorml"]


def _first_line(path: Path) -> dict[str, float] | None:
    try:
        with open(path, "rb") as file:
            line = file.readline()
    except FileNotFoundError:
        return None
    return json.loads(line) if line.endswith(b"\n") else None


def run_up(topology: Path, run_dir: Path, *, stop_at_first_clock: bool = False) -> dict[str, float]:
    """Run ``actorml up TOPOLOGY`` once; its times in seconds from the command's start.

    With ``stop_at_first_clock`` the job is sent SIGINT once its first clock is in.
    """
    metrics = run_dir / "metrics.jsonl"
    t0 = time.time()
    process = subprocess.Popen(
        [*_actorml(), "up", str(topology), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    pss = 0
    try:
        first = None
        while process.poll() is None and time.time() - t0 < WAIT_S:
            first = first or _first_line(metrics)
            if first is not None and stop_at_first_clock:
                pss = sum(_pss(pid) for pid in [process.pid, *_descendants(process.pid)])
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.01)
        _, err = process.communicate(timeout=WAIT_S)
        end = time.time()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if not stop_at_first_clock and process.returncode != 0:
        raise RuntimeError(f"actorml up {topology} exited {process.returncode}: {err[-2000:]}")
    lines = metrics.read_text(encoding="utf-8").splitlines() if metrics.exists() else []
    if not lines:
        raise RuntimeError(f"actorml up {topology} wrote no metrics line: {err[-2000:]}")
    first_wall, last_wall = json.loads(lines[0])["wall"], json.loads(lines[-1])["wall"]
    return {
        "first_clock": first_wall - t0,
        "total": end - t0,
        "teardown": end - last_wall,
        "pss": pss,
    }


def _descendants(root: int) -> list[int]:
    """Every live process under ``root`` (the template and the nodes it forked)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_single(source: str) -> float:
    """One fresh interpreter importing ``actorml.models`` and loading ``source``; seconds."""
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", SINGLE.format(source)], check=True, preexec_fn=die_with_parent
    )
    return time.time() - t0


def big_topology(scratch: Path, rows: int) -> tuple[Path, str, int]:
    """The quickstart job on a generated ``rows`` x 100 float32 dataset (npz, pre-split);
    the topology, its data source and the dataset's bytes as loaded (float64)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, BIG_FEATURES), dtype=np.float32)
    w = rng.standard_normal(BIG_FEATURES).astype(np.float32)
    y = (X @ w > 0).astype(np.int64)
    data = scratch / "big.npz"
    cut = rows - rows // 10
    np.savez(data, X_train=X[:cut], y_train=y[:cut], X_test=X[cut:], y_test=y[cut:])
    text = QUICKSTART.read_text(encoding="utf-8")
    text = text.replace('source = "sklearn:breast_cancer"', f'source = "npz:{data}"')
    text = text.replace("test_size = 0.25\n", "")
    path = scratch / "big.toml"
    path.write_text(text, encoding="utf-8")
    return path, f"npz:{data}", rows * BIG_FEATURES * 8 + rows * 8


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    runs = QUICK_RUNS if args.quick else RUNS
    ups: list[dict[str, float]] = []
    singles: list[float] = []
    bigs: list[dict[str, float]] = []
    big_singles: list[float] = []
    with scratch_dir() as scratch:
        for n in range(runs):
            singles.append(run_single("sklearn:breast_cancer"))
            ups.append(run_up(QUICKSTART, scratch / f"run-{n}"))
            shutil.rmtree(scratch / f"run-{n}", ignore_errors=True)
            print(
                f"run {n + 1}/{runs}: single start {singles[-1]:.2f}s, first clock "
                f"{ups[-1]['first_clock']:.2f}s, up total {ups[-1]['total']:.2f}s",
                flush=True,
            )
        rows_big = QUICK_BIG_ROWS if args.quick else BIG_ROWS
        topology, source, data_bytes = big_topology(scratch, rows_big)
        for n in range(QUICK_BIG_RUNS if args.quick else BIG_RUNS):
            big_singles.append(run_single(source))
            bigs.append(run_up(topology, scratch / f"big-{n}", stop_at_first_clock=True))
            shutil.rmtree(scratch / f"big-{n}", ignore_errors=True)
            print(
                f"big run {n + 1}: single start {big_singles[-1]:.2f}s, first clock "
                f"{bigs[-1]['first_clock']:.2f}s, memory {bigs[-1]['pss'] / 2**20:.0f} MiB",
                flush=True,
            )

    single, big_single = median(singles), median(big_singles)
    figures = {
        "first_clock_s": median(u["first_clock"] for u in ups),
        "up_total_s": median(u["total"] for u in ups),
        "teardown_s": median(u["teardown"] for u in ups),
        "single_start_s": single,
        "first_clock_big_s": median(b["first_clock"] for b in bigs),
        "single_start_big_s": big_single,
        "job_pss_big_mib": median(b["pss"] for b in bigs) / 2**20,
        "data_big_mib": data_bytes / 2**20,
    }
    figures["job_rss_over_data"] = figures["job_pss_big_mib"] / figures["data_big_mib"]
    rows = [
        ["actorml up: start -> first clock", figures["first_clock_s"], single],
        ["actorml up: start -> exit", figures["up_total_s"], single],
        ["actorml up: last clock -> exit", figures["teardown_s"], single],
        [f"{rows_big:,} x 100 npz: start -> first clock", figures["first_clock_big_s"],
         big_single],
    ]  # fmt: skip
    ratios = {
        "first_clock_vs_single_start": figures["first_clock_s"] / single,
        "up_total_vs_single_start": figures["up_total_s"] / single,
        "first_clock_big_vs_single_start": figures["first_clock_big_s"] / big_single,
    }
    print_table(
        f"Start-up of {QUICKSTART.relative_to(ROOT)} (7 processes), median of {runs} run(s); "
        "baseline: one interpreter importing actorml.models and loading the same data",
        ["", "median s", "single start s", "ratio"],
        [[label, value, base, f"{value / base:.2f}"] for label, value, base in rows],
    )
    print(
        f"memory at the first clock ({rows_big:,} rows): {figures['job_pss_big_mib']:.0f} MiB "
        f"for {figures['data_big_mib']:.0f} MiB of data, "
        f"{figures['job_rss_over_data']:.2f}x (proportional set size, shared pages once)"
    )
    if args.json:
        write_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
