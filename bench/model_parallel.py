"""Scheduled model parallelism: STRADS' Lasso, matrix factorisation and LDA.

Lasso (``--part lasso``): priority against random schedules.

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

Matrix factorisation (``--part mf``) and LDA (``--part lda``): samples per second of a
real job against the single-process implementation, in the same run, on a generated set
big enough for a round's compute to outweigh its messages. Each job has two workers and
one shard (``--workers``, ``--shards``) under the rotation schedule, ``blocks`` = workers;
the single process runs the same blocks, settings and passes:

- ``mf``: DSGD (`actorml.models.mf`) on ``generated:lowrank`` ratings, rank 10, against
  `train_single`; samples are ratings;
- ``lda``: collapsed Gibbs (`actorml.models.lda`) on a ``generated:lda`` corpus, against
  `gibbs_single`; samples are tokens.

A job's samples per second are the updates of its last round over its time from the
start of its first round to the end of its last (``metrics.jsonl``: start-up and data
loading excluded; the job runs with ``evaluate_every = 0``, so its one read-back and
evaluation after the last epoch or sweep is included, as the one process evaluates only
at its end; ``train_seconds`` is not used, it counts from the first worker's join); the
single process's are its samples over its training time (the history's ``seconds``,
data loading and the history's own evaluations excluded) plus one evaluation at the end
by the job's own coordinator code, so both sides train and evaluate once.
``*_rounds_vs_single`` compares the training alone: the job's time without what its
evaluated rounds took beyond a plain round's median (``*_evaluation_seconds``), the one
process's without its evaluation. The quality each reached is reported beside
it: held-out RMSE (mf), per-token negative complete log-likelihood (lda,
``-log p(w, z) / tokens``, lower is better; the JSON takes no negative figures).

    python bench/model_parallel.py [--quick] [--part lasso|mf|lda|all] [--json PATH]
                                   [--plot PATH] [--workers 2] [--shards 1]
"""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import trio
from _common import bench_parser, fmt, print_table, quiet_logging, scratch_dir, write_nested_json

from actorml.launch import open_cluster
from actorml.models.lasso import cd_sweep, load_design, objective
from actorml.models.lda import Corpus, LdaCoordinator, counts, gibbs_single, load_corpus
from actorml.models.mf import MfCoordinator, load_ratings, train_single
from actorml.topology import Topology

TARGET = 1e-3
ALPHA = 0.05
#: (rows, cols) of the generated design, and the rounds the random schedule may run
# 400 columns in groups of 50 at correlation 0.9: rho ~ 45, p / rho ~ 9, well under the 32
# updates of a round, where Shotgun's analysis says random parallel CD may diverge (at 2000
# columns, p / rho ~ 44, it converged; see docs/benchmarks.md)
FULL = {"rows": 4000, "cols": 400, "budget": 3000}
QUICK = {"rows": 600, "cols": 200, "budget": 2000}

#: the MF and LDA jobs by default (``--workers``, ``--shards``): one worker per core of
#: the two-core machine, and one shard
WORKERS = 2
SHARDS = 1
#: ``generated:lowrank`` ([model] gen_*) and the DSGD settings, in the job and alone
MF_FULL = {"gen_users": 50_000, "gen_items": 20_000, "gen_ratings": 20_000_000, "epochs": 10}
MF_QUICK = {"gen_users": 4_000, "gen_items": 2_000, "gen_ratings": 300_000, "epochs": 6}
#: evaluate_every 0: the job evaluates once, at the end, as the one-process run is timed
MF_SETTINGS = {"rank": 10, "lam": 0.02, "lr": 0.05, "decay": 0.1, "gen_rank": 10,
               "noise": 0.5, "seed": 0, "holdout": 0.1, "evaluate_every": 0}  # fmt: skip
#: ``generated:lda`` ([model] docs, vocab, doc_length, topics) and the sweeps
LDA_FULL = {"docs": 20_000, "vocab": 5_000, "doc_length": 200, "topics": 300, "sweeps": 10}
LDA_QUICK = {"docs": 1_000, "vocab": 2_000, "doc_length": 100, "topics": 20, "sweeps": 3}
LDA_SETTINGS = {"alpha": 0.1, "eta": 0.01, "seed": 0, "evaluate_every": 0}


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


def rotation_job(model: dict[str, Any], workers: int, shards: int, run_dir: Path) -> Topology:
    """An MF or LDA job (blocks = workers)."""
    return Topology.from_dict(
        {
            "cluster": {"name": f"bench-mp-{model['kind']}", "transport": "ipc",
                        "log_level": "warning", "run_dir": str(run_dir),
                        "ask_timeout_s": 120.0, "ready_timeout_s": 300.0},
            "job": {"kind": "model_parallel", "workers": workers, "shards": shards,
                    "progress": False, "round_timeout_s": 600.0},
            "model": model,
        }
    )  # fmt: skip


async def rotated(
    model: dict[str, Any], workers: int, shards: int, run_dir: Path
) -> dict[str, Any]:
    """Run an MF or LDA job; its samples, seconds from its first round, result and the
    share of that time its workers computed (the slower worker of each round)."""
    async with open_cluster(rotation_job(model, workers, shards, run_dir), run_dir=run_dir) as c:
        with trio.fail_after(3600):
            result = await c.wait()
    if result.get("error"):
        raise RuntimeError(f"the {model['kind']} job failed: {result['error']}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if any(b["round"] != a["round"] + 1 or b["t"] < a["t"] for a, b in pairwise(rows)):
        # A restarted scheduler (e.g. one the launcher judged dead while it evaluated on
        # a loaded machine) may redo rounds, and its clock leaves out the time it was
        # down: no honest rate.
        raise RuntimeError(f"the {model['kind']} job's scheduler restarted: run it again")
    seconds = rows[-1]["t"] - (rows[0]["t"] - rows[0]["round_s"])
    # The rounds after which the coordinator read the tables back and evaluated: what
    # they took beyond a plain round's median is the evaluation's cost.
    evaluated = [r["round_s"] for r in rows if "epoch" in r or "sweep" in r]
    plain = [r["round_s"] for r in rows if not ("epoch" in r or "sweep" in r)]
    typical = float(np.median(plain)) if plain else 0.0
    return {
        "updates": rows[-1]["updates"],
        "seconds": seconds,
        "rounds": len(rows),
        "compute_share": sum(r["compute_s"] for r in rows) / seconds,
        "round_s": typical,
        "evaluated_round_s": float(np.median(evaluated)) if evaluated else typical,
        "evaluation_s": sum(max(0.0, r - typical) for r in evaluated),
        "result": result,
        "workers": workers,
    }


def mf_part(
    quick: bool, workers: int, shards: int, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """DSGD as a job and in this process: ratings per second and held-out RMSE."""
    size = MF_QUICK if quick else MF_FULL
    model = {"kind": "mf", "data": "generated:lowrank", **MF_SETTINGS, **size}
    train, test, _ = load_ratings(
        "generated:lowrank", seed=MF_SETTINGS["seed"], holdout=MF_SETTINGS["holdout"],
        n_users=size["gen_users"], n_items=size["gen_items"], n_ratings=size["gen_ratings"],
        rank=MF_SETTINGS["gen_rank"], noise=MF_SETTINGS["noise"],
    )  # fmt: skip
    options = {k: MF_SETTINGS[k] for k in ("rank", "lam", "lr", "decay", "seed")}
    few = train.take(np.arange(min(1000, train.n_ratings)))
    train_single(few, **options, epochs=1, blocks=workers)  # compile outside the clock
    W, H, history = train_single(train, **options, epochs=size["epochs"], blocks=workers, test=test)
    single = {
        "updates": train.n_ratings * size["epochs"],
        "train_s": history[-1].seconds,
        # its training, and one evaluation at the end as the job's (the same code)
        "seconds": history[-1].seconds
        + _timed(
            MfCoordinator(1, workers, train=train, test=test, lam=MF_SETTINGS["lam"]).evaluate,
            {"W": W, "H": H},
        ),
        "quality": history[-1].test_rmse,
    }
    del train, test  # the job's processes load their own
    run = trio.run(rotated, model, workers, shards, tmp / "mf")
    run["quality"] = float(run["result"]["test_rmse"])
    print_rotated(
        f"MF, generated:lowrank {size['gen_users']} x {size['gen_items']}, "
        f"{size['gen_ratings']:,} ratings, rank 10, {size['epochs']} epochs",
        "test RMSE", single, run,
    )  # fmt: skip
    return rotated_figures("mf", "test_rmse", single, run)


def lda_part(
    quick: bool, workers: int, shards: int, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Collapsed Gibbs as a job and in this process: tokens per second and the per-token
    negative log-likelihood."""
    size = LDA_QUICK if quick else LDA_FULL
    model = {"kind": "lda", "data": "generated:lda", **LDA_SETTINGS, **size}
    corpus = load_corpus(
        "generated:lda", docs=size["docs"], vocab=size["vocab"], topics=size["topics"],
        doc_length=size["doc_length"], alpha=LDA_SETTINGS["alpha"],
        eta=LDA_SETTINGS["eta"], seed=LDA_SETTINGS["seed"],
    )  # fmt: skip
    few = Corpus(corpus.docs[:1000], corpus.words[:1000], corpus.n_docs, corpus.n_words)
    gibbs_single(few, n_topics=size["topics"], alpha=1.0, eta=1.0, sweeps=1, blocks=workers)
    z, history = gibbs_single(
        corpus, n_topics=size["topics"], alpha=LDA_SETTINGS["alpha"],
        eta=LDA_SETTINGS["eta"], sweeps=size["sweeps"], blocks=workers,
        seed=LDA_SETTINGS["seed"],
    )  # fmt: skip
    coordinator = LdaCoordinator(
        1, workers, corpus=corpus, topics=size["topics"], alpha=LDA_SETTINGS["alpha"],
        eta=LDA_SETTINGS["eta"],
    )  # fmt: skip
    tables = {"nwk": counts(corpus, z, size["topics"])[1], "z": (z + 1.0)[:, None]}
    single = {
        "updates": corpus.n_tokens * size["sweeps"],
        "train_s": history[-1].seconds,
        # its sampling, and one evaluation at the end as the job's (the same code)
        "seconds": history[-1].seconds + _timed(coordinator.evaluate, tables),
        "quality": -history[-1].per_token,
    }
    tokens = corpus.n_tokens
    del corpus
    run = trio.run(rotated, model, workers, shards, tmp / "lda")
    run["quality"] = -float(run["result"]["per_token_log_likelihood"])
    print_rotated(
        f"LDA, generated:lda {size['docs']:,} docs x {size['vocab']:,} words, "
        f"{tokens:,} tokens, {size['topics']} topics, {size['sweeps']} sweeps",
        "-log p(w,z)/token", single, run,
    )  # fmt: skip
    return rotated_figures("lda", "per_token_nll", single, run)


def _timed(function: Any, *args: Any) -> float:
    """Seconds ``function(*args)`` takes."""
    began = time.perf_counter()
    function(*args)
    return time.perf_counter() - began


def print_rotated(title: str, quality: str, single: dict[str, Any], run: dict[str, Any]) -> None:
    rows = [
        (f"job ({run['workers']} workers)", float(run["updates"]), run["seconds"],
         run["updates"] / run["seconds"], run["quality"]),
        ("single process", float(single["updates"]), single["seconds"],
         single["updates"] / single["seconds"], single["quality"]),
    ]  # fmt: skip
    print_table(title, ("run", "samples", "seconds", "samples/s", quality), rows)
    print(
        f"job: {run['rounds']} rounds, median {fmt(run['round_s'] * 1e3)} ms "
        f"({fmt(run['evaluated_round_s'] * 1e3)} ms with the evaluation, "
        f"{fmt(run['evaluation_s'])} s in all), "
        f"the slower worker computing {fmt(100 * run['compute_share'])}% of the time"
    )


def rotated_figures(
    name: str, quality: str, single: dict[str, Any], run: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    job_rate = run["updates"] / run["seconds"]
    single_rate = single["updates"] / single["seconds"]
    rounds_rate = run["updates"] / (run["seconds"] - run["evaluation_s"])
    figures = {
        f"{name}_samples_per_s": job_rate,
        f"{name}_single_samples_per_s": single_rate,
        f"{name}_{quality}": run["quality"],
        f"{name}_single_{quality}": single["quality"],
        f"{name}_seconds": run["seconds"],
        f"{name}_single_seconds": single["seconds"],
        f"{name}_compute_share": run["compute_share"],
        f"{name}_evaluation_seconds": run["evaluation_s"],
    }
    ratios = {
        f"{name}_vs_single": job_rate / single_rate,
        # training alone on both sides
        f"{name}_rounds_vs_single": rounds_rate / (single["updates"] / single["train_s"]),
    }
    return figures, ratios


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


def lasso_part(quick: bool, tmp: Path, plot_to: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The priority job, the random job and cyclic CD to the target."""
    problem = QUICK if quick else FULL
    best = optimum(problem)
    runs = {"single": single(problem, best)}
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
    print(f"random diverged: {runs['random']['diverged']}")
    plot(runs, best, plot_to)
    print(f"figure: {plot_to}")
    figures: dict[str, Any] = {
        f"{name}_{what}": float(run[what])
        for name, run in runs.items()
        for what in ("updates", "seconds")
    }
    figures["random_diverged"] = runs["random"]["diverged"]
    return figures, ratios


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, default=Path("model_parallel.png"))
    parser.add_argument("--part", choices=("lasso", "mf", "lda", "all"), default="all")
    parser.add_argument("--workers", type=int, default=WORKERS, help="of the MF and LDA jobs")
    parser.add_argument("--shards", type=int, default=SHARDS, help="of the MF and LDA jobs")
    args = parser.parse_args()
    quiet_logging()
    figures: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    with scratch_dir() as tmp:
        if args.part in ("lasso", "all"):
            more = lasso_part(args.quick, tmp, args.plot)
            figures, ratios = {**figures, **more[0]}, {**ratios, **more[1]}
        if args.part in ("mf", "all"):
            more = mf_part(args.quick, args.workers, args.shards, tmp)
            figures, ratios = {**figures, **more[0]}, {**ratios, **more[1]}
        if args.part in ("lda", "all"):
            more = lda_part(args.quick, args.workers, args.shards, tmp)
            figures, ratios = {**figures, **more[0]}, {**ratios, **more[1]}
    for key, value in ratios.items():
        print(f"{key}: {fmt(value)}")
    if args.json:
        write_nested_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
