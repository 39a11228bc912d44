"""Scheduled model parallelism: STRADS' Lasso shape, priority against random schedules.

A generated Lasso problem whose features come in groups of fifty with pairwise
correlation 0.9 (``generated:correlated``) is solved three ways, each to within 1e-3
(relative) of the optimum's objective (scikit-learn's ``Lasso`` run to ``tol=1e-12``):

- ``priority``: a real model-parallel job (``open_cluster``: a scheduler with the BSP
  protocol actor, two shards, four workers, seven processes) under STRADS' priority
  schedule (sample by ``(delta beta_j)^2 + eta``, drop candidates with
  ``|x_j . x_k| / n > 0.1``, 32 per round);
- ``random``: the same job under the Shotgun schedule (32 uniform coordinates per round,
  no dependency check), given ``budget`` rounds; if it never gets there its updates
  count as the whole budget it ran;
- ``single``: cyclic coordinate descent in this process (numba, one coordinate after
  another), the same-run baseline.

For each: coordinate updates and seconds to reach the target (the seconds of a job
count from its first round, not its start-up), and whether ``random`` diverged (its
objective ended above the one of ``beta = 0``). The plot shows the objective's excess
over the optimum against time for each.

    python bench/model_parallel.py [--quick] [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio
from _common import bench_parser, fmt, print_table, quiet_logging, scratch_dir, write_nested_json

from actorml.launch import open_cluster
from actorml.models.lasso import cd_sweep, load_design, objective
from actorml.topology import Topology

TARGET = 1e-3
ALPHA = 0.05
#: (rows, cols) of the generated design, and the rounds the random schedule may run
FULL = {"rows": 4000, "cols": 2000, "budget": 3000}
QUICK = {"rows": 1000, "cols": 400, "budget": 2000}


def optimum(problem: dict[str, Any]) -> float:
    from sklearn.linear_model import Lasso

    design = load_design("generated:correlated", rows=problem["rows"], cols=problem["cols"])
    fit = Lasso(alpha=ALPHA, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
    coef = fit.fit(design.X, design.y).coef_
    return objective(design, design.y - design.X @ coef, coef, ALPHA)


def single(problem: dict[str, Any], best: float) -> dict[str, Any]:
    """Cyclic coordinate descent in this process, one sweep at a time."""
    design = load_design("generated:correlated", rows=problem["rows"], cols=problem["cols"])
    p = design.X.shape[1]
    beta, r = np.zeros(p), design.y.copy()
    order = np.arange(p)
    cd_sweep(design.X, r.copy(), beta.copy(), order[:1], ALPHA)  # compile outside the clock
    curve, updates, began = [], 0, time.perf_counter()
    while True:
        for start in range(0, p, 32):  # report as often as a job's rounds do
            cd_sweep(design.X, r, beta, order[start : start + 32], ALPHA)
            updates += min(32, p - start)
            value = objective(design, r, beta, ALPHA)
            curve.append((time.perf_counter() - began, value))
            if value <= best * (1 + TARGET):
                return {"updates": updates, "seconds": curve[-1][0], "curve": curve}


def job(problem: dict[str, Any], schedule: str, rounds: int, run_dir: Path) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": f"bench-mp-{schedule}", "transport": "ipc",
                        "log_level": "warning", "run_dir": str(run_dir),
                        "ask_timeout_s": 120.0, "ready_timeout_s": 300.0},
            "job": {"kind": "model_parallel", "workers": 4, "shards": 2, "progress": False,
                    "max_rounds": rounds, "tolerance": TARGET},
            "model": {"kind": "lasso", "data": "generated:correlated", "alpha": ALPHA,
                      "rows": problem["rows"], "cols": problem["cols"]},
            "schedule": {"kind": schedule, "round_size": 32},
        }
    )  # fmt: skip


async def scheduled(
    problem: dict[str, Any], schedule: str, best: float, rounds: int, run_dir: Path
) -> dict[str, Any]:
    """Run the job; read updates and seconds to the target from its metrics."""
    async with open_cluster(job(problem, schedule, rounds, run_dir), run_dir=run_dir) as c:
        with trio.fail_after(1800):
            result = await c.wait()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    began = rows[0]["t"] - rows[0]["round_s"]
    curve = [(r["t"] - began, r["objective"]) for r in rows]
    hit = next((r for r in rows if r["objective"] <= best * (1 + TARGET)), None)
    start = rows[0]["objective"]  # after one round: beta = 0 is higher still
    return {
        "updates": hit["updates"] if hit else rows[-1]["updates"],
        "seconds": hit["t"] - began if hit else curve[-1][0],
        "reached": hit is not None,
        "diverged": bool(result.get("diverged")) or not rows[-1]["objective"] <= start,
        "curve": curve,
    }


def plot(runs: dict[str, dict[str, Any]], best: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, run in runs.items():
        t = [c[0] for c in run["curve"]]
        excess = [max((c[1] - best) / best, 1e-12) for c in run["curve"]]
        ax.plot(t, excess, label=name)
    ax.axhline(TARGET, color="grey", linestyle="--", label="target")
    ax.set(xlabel="seconds", ylabel="(objective - optimum) / optimum", yscale="log",
           title="Lasso, correlated design: objective against time")  # fmt: skip
    ax.legend()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, default=Path("model_parallel.png"))
    args = parser.parse_args()
    quiet_logging()
    problem = QUICK if args.quick else FULL
    best = optimum(problem)
    runs = {"single": single(problem, best)}
    with scratch_dir() as tmp:
        for schedule in ("priority", "random"):
            rounds = problem["budget"] * (4 if schedule == "priority" else 1)
            runs[schedule] = trio.run(scheduled, problem, schedule, best, rounds, tmp / schedule)
    budget = problem["budget"] * 32
    if not runs["random"]["reached"]:
        runs["random"]["updates"] = max(runs["random"]["updates"], budget)
    rows = [
        (name, float(run["updates"]), run["seconds"], "yes" if run.get("reached", True) else "no")
        for name, run in runs.items()
    ]
    print_table(
        f"Lasso {problem['rows']} x {problem['cols']}, corr 0.9: to within {TARGET} of the optimum",
        ("schedule", "updates", "seconds", "reached"),
        rows,
    )
    ratios = {
        "priority_vs_random_updates": runs["priority"]["updates"] / runs["random"]["updates"],
        "priority_vs_single_updates": runs["priority"]["updates"] / runs["single"]["updates"],
        "priority_vs_single_seconds": runs["priority"]["seconds"] / runs["single"]["seconds"],
    }
    for key, value in ratios.items():
        print(f"{key}: {fmt(value)}")
    print(f"random diverged: {runs['random']['diverged']}")
    plot(runs, best, args.plot)
    print(f"figure: {args.plot}")
    if args.json:
        figures = {
            f"{name}_{what}": float(run[what])
            for name, run in runs.items()
            for what in ("updates", "seconds")
        }
        figures["random_diverged"] = runs["random"]["diverged"]
        write_nested_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
