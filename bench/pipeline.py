"""A two-stage GPipe pipeline beside the same network in one process.

The network is wide enough that compute dominates: 784-2048-2048-2048-10 (ReLU), cut
by the job into two stages of balanced compute (``[[0, 1], [2, 3]]``), each stage its
own process, on ``generated:classification`` rows with 784 features and 10 classes.
For m = 1, 2, 4, 8 micro-batches per mini-batch the job runs a few clocks; its driver
writes each clock's wall time and each stage's busy time to ``metrics.jsonl``. Figures
are medians over the clocks (the first, a warm-up, left out):

- ``samples_per_s.pipeline.<m>``: mini-batch rows over the clock's wall time, from the
  first micro-batch sent to the last stage's flush;
- ``samples_per_s.single``: the same network, weights, batch size and optimiser step in
  this process (``MLP.gradient`` then Adam on every table), measured in the same run;
- ``bubble_fraction.<m>``: the share of a clock a stage sits idle,
  ``1 - mean(stage busy time) / clock wall time``, beside
  ``bubble_fraction_theory.<m>`` = (S - 1) / (m + S - 1), GPipe's bubble for equal
  stages (a measured bubble also holds the stages' imbalance and the messages' cost);
- ``ratios.pipeline_vs_single``: m = 8 against one process (``pipeline_vs_single_m<m>``
  for the others).

Every process, this one included, runs one BLAS thread (``OPENBLAS_NUM_THREADS=1``):
each stage gets one core of the two, and so does the single process it is compared to.

    python bench/pipeline.py [--quick] [--json PATH]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads BLAS; the node processes inherit it

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import trio  # noqa: E402
from _common import (  # noqa: E402
    bench_parser,
    median,
    print_table,
    quiet_logging,
    scratch_dir,
    write_nested_json,
)

from actorml.launch import open_cluster  # noqa: E402
from actorml.topology import Topology  # noqa: E402

HIDDEN = [2048, 2048, 2048]
STAGES = 2
MICRO = (1, 2, 4, 8)
MODEL = {"kind": "mlp", "hidden": HIDDEN, "l2": 1e-5}
OPTIMIZER = {"kind": "adam", "lr": 0.001}


def data_table(batch: int, clocks: int) -> dict[str, Any]:
    """Generated rows: ``clocks`` mini-batches of training rows, a quarter more held out."""
    rows = batch * clocks * 4 // 3 + 4
    return {"source": "generated:classification", "n_samples": rows, "n_features": 784,
            "n_classes": 10}  # fmt: skip


def topology(micro: int, batch: int, data: dict[str, Any], root: Path) -> Topology:
    return Topology.from_dict({
        "cluster": {"name": f"bench-pipeline-m{micro}", "transport": "ipc",
                    "log_level": "warning", "run_dir": str(root), "ask_timeout_s": 120.0,
                    "ready_timeout_s": 300.0},
        "pipeline": {"stages": STAGES, "micro_batches": micro, "epochs": 1,
                     "batch_size": batch, "progress": False},
        "data": data, "model": MODEL, "optimizer": OPTIMIZER,
    })  # fmt: skip


async def pipeline(micro: int, batch: int, data: dict[str, Any], root: Path) -> dict[str, Any]:
    """Run the job; per clock (warm-up left out) its samples/s and bubble fraction."""
    run_dir = root / f"m{micro}-{time.monotonic_ns()}"
    async with open_cluster(topology(micro, batch, data, root), run_dir=run_dir) as cluster:
        with trio.fail_after(1200):
            result = await cluster.wait()
    if "error" in result:
        raise SystemExit(f"pipeline job failed: {result['error']}")
    lines = [json.loads(line) for line in Path(result["metrics"]).read_text().splitlines()]
    clocks = lines[1:] or lines
    return {
        "samples_per_s": [c["samples"] / c["seconds"] for c in clocks],
        "bubble": [c["bubble"] for c in clocks],
        "stages": result["stages"],
    }


def single(batch: int, data: dict[str, Any], clocks: int) -> list[float]:
    """Samples/s of each clock of the same network trained in this process."""
    from actorml.models import load_dataset, make_model, make_optimizer
    from actorml.models.optim import init_state

    dataset = load_dataset(**data)
    options = {k: v for k, v in MODEL.items() if k != "kind"}
    model = make_model("mlp", dataset.n_features, dataset.n_classes, **options)
    optimizer = make_optimizer(OPTIMIZER["kind"], OPTIMIZER["lr"])
    params = model.init_params(0)
    state = {s.name: init_state(optimizer, s.rows, s.cols) for s in model.tables()}
    steps = {s.name: np.zeros(s.rows, dtype=np.int64) for s in model.tables()}
    rates = []
    for clock in range(clocks + 1):
        rows = np.arange(clock * batch, (clock + 1) * batch) % dataset.y_train.shape[0]
        Xb, yb = dataset.X_train[rows], dataset.y_train[rows]
        began = time.perf_counter()
        _, grads = model.gradient(params, Xb, yb)
        for name, grad in grads.items():
            optimizer.apply(params[name], grad, state[name], steps[name])
        if clock:  # the first is a warm-up
            rates.append(batch / (time.perf_counter() - began))
    return rates


async def measure(batch: int, clocks: int, root: Path) -> dict[str, Any]:
    data = data_table(batch, clocks)
    out: dict[str, Any] = {"single": await trio.to_thread.run_sync(single, batch, data, clocks)}
    for micro in MICRO:
        out[micro] = await pipeline(micro, batch, data, root)
    out["single"] += await trio.to_thread.run_sync(single, batch, data, clocks)  # both ends
    return out


def main() -> None:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    quiet_logging()
    batch, clocks = (128, 6) if args.quick else (256, 16)
    began = time.perf_counter()
    with scratch_dir() as tmp:
        result = trio.run(measure, batch, clocks, tmp / "runs")
    one = median(result["single"])
    figures: dict[str, Any] = {
        "samples_per_s": {"single": one, "pipeline": {}},
        "bubble_fraction": {},
        "bubble_fraction_theory": {},
    }
    ratios: dict[str, Any] = {}
    rows = [["one process", "-", one, 1.0, "-", "-"]]
    for micro in MICRO:
        rate, bubble = median(result[micro]["samples_per_s"]), median(result[micro]["bubble"])
        theory = (STAGES - 1) / (micro + STAGES - 1)
        figures["samples_per_s"]["pipeline"][str(micro)] = rate
        figures["bubble_fraction"][str(micro)] = bubble
        figures["bubble_fraction_theory"][str(micro)] = theory
        ratios[f"pipeline_vs_single_m{micro}"] = rate / one
        rows.append([f"{STAGES} stages, m = {micro}", batch // micro, rate, rate / one,
                     f"{bubble:.3f}", f"{theory:.3f}"])  # fmt: skip
    ratios["pipeline_vs_single"] = ratios["pipeline_vs_single_m8"]
    print_table(
        f"784-{'-'.join(map(str, HIDDEN))}-10, mini-batch {batch}, cut "
        f"{result[MICRO[0]]['stages']}, medians over {clocks - 1} clocks (one BLAS thread each)",
        ["", "micro rows", "samples/s", "vs one process", "bubble", "theory"],
        rows,
    )
    print(f"\nwall time {time.perf_counter() - began:.0f} s")
    if args.json:
        write_nested_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
