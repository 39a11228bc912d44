"""Time to a target held-out loss under each consistency protocol, with and without a straggler.

One real training job (seven processes: a scheduler with the protocol actor, two
shards, four workers; ``open_cluster``) per protocol and condition: BSP, ASP, SSP(1),
SSP(3), SSP(10) and ESSP(3), each once with every worker at full speed, once with
``worker-3`` three times slower (``[job] slowdown = {"worker-3" = 3.0}``: a permanent
straggler) and once with transient stragglers (each clock, each worker is delayed with
probability 0.1 by 4 times its compute: ``[job] transient_p``, ``transient_factor``). The model is
an MLP on a generated classification problem, big enough per clock that a straggler
matters. The scheduler evaluates the held-out loss every few clocks of the slowest
worker (``evaluations.jsonl``); the time to target is the first evaluation at or below
the target: the held-out loss the BSP job without a straggler (the first job of the
run) had reached at ``TARGET_AT`` (three quarters) of its clocks. Observed staleness
comes from every worker's clocks in ``metrics.jsonl``.

Last, the freshness part: SSP(3) and ESSP(3) without a straggler, reading through
messages (``shared_memory = false``, as across hosts) in clocks of four mini-batches,
where ESSP's pushes on each advance of the slowest clock should make reads fresher;
their observed staleness (``figures.freshness_*``).

    python bench/consistency.py [--quick] [--json PATH] [--plot PATH] [--repeats N] [--keep DIR]
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio
from _common import (
    bench_parser,
    fmt,
    print_table,
    quiet_logging,
    save_dataset,
    scratch_dir,
    start_together,
    training_topology,
    write_nested_json,
)

from actorml.launch import open_cluster
from actorml.topology import Topology

#: name in the JSON -> ``[protocol]`` table
PROTOCOLS: dict[str, dict[str, Any]] = {
    "bsp": {"kind": "bsp"},
    "asp": {"kind": "asp"},
    "ssp1": {"kind": "ssp", "staleness": 1},
    "ssp3": {"kind": "ssp", "staleness": 3},
    "ssp10": {"kind": "ssp", "staleness": 10},
    "essp3": {"kind": "essp", "staleness": 3},
}
QUICK_PROTOCOLS = ("bsp", "ssp3")
CONDITIONS = ("no_straggler", "straggler", "transient")
STRAGGLER = {"worker-3": 3.0}
#: transient stragglers (Cui et al. ATC'14, Ho et al. NIPS'13): each clock, each worker
#: is delayed with this probability by this many times its compute
TRANSIENT = {"transient_p": 0.1, "transient_factor": 4.0}
#: the target is the reference job's held-out loss at this fraction of its clocks: final
#: losses of identical runs differed by up to 10% in our trials, but three quarters of
#: the way the loss still falls steeply enough to time, and every job has a quarter of
#: its budget left to reach it
TARGET_AT = 0.75
#: ESSP against SSP at the same s where reads go through messages (as across hosts) and
#: a clock is four mini-batches (of a quarter of the batch: the same rows per clock):
#: where ESSP's pushes on each advance should make reads fresher than SSP's
FRESHNESS_PROTOCOLS = ("ssp3", "essp3")
FRESHNESS = {"shared_memory": False, "batches_per_clock": 4}

#: the benchmark's job; ``--quick`` shrinks the data and the epochs. The data is
#: generated once by the benchmark and handed to the job as an npz file (so each of
#: the job's processes loads it in a fraction of a second instead of generating it).
JOB: dict[str, Any] = {
    "data": {
        "source": "generated:classification",
        "n_samples": 100_000,
        "n_features": 400,
        "n_classes": 4,
        "test_size": 0.04,
    },
    "model": {"kind": "mlp", "hidden": 256, "l2": 1e-5},
    "optimizer": {"kind": "adagrad", "lr": 0.02},
    "job": {"workers": 4, "shards": 2, "epochs": 4, "batch_size": 1024, "eval_every_clocks": 2},
}
QUICK = {"n_samples": 44_000, "test_size": 4000 / 44_000, "epochs": 3}


@attrs.frozen
class Run:
    """What one job left behind."""

    protocol: str
    condition: str
    summary: dict[str, Any]
    evaluations: list[dict[str, Any]]
    staleness: Counter[int]
    wall_s: float

    def time_to(self, target: float) -> float | None:
        """Seconds (from the first worker's join) to the first evaluation <= ``target``."""
        for row in self.evaluations:
            if row["test_loss"] <= target:
                return float(row["t"])
        return None


def job_config(quick: bool) -> dict[str, Any]:
    """The training job's tables (data, model, optimizer, job), shrunk by ``--quick``."""
    config = json.loads(json.dumps(JOB))
    if quick:
        config["data"].update(n_samples=QUICK["n_samples"], test_size=QUICK["test_size"])
        config["job"]["epochs"] = QUICK["epochs"]
    return config


def prepare_data(config: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Generate the job's data once; returns the ``[data]`` table that loads it."""
    from actorml.models import load_dataset

    dataset = load_dataset(**config["data"])
    return save_dataset(dataset, directory / "data.npz", dtype=np.float32)


def topology(protocol: str, condition: str, config: dict[str, Any], run_root: Path) -> Topology:
    """The job's topology (see ``training_topology``)."""
    job = {**config["job"], "progress": False, "wait_timeout_s": 600.0}
    if condition == "straggler":
        job["slowdown"] = dict(STRAGGLER)
    elif condition == "transient":
        job.update(TRANSIENT)
    elif condition == "freshness":
        job.update(FRESHNESS, batch_size=job["batch_size"] // FRESHNESS["batches_per_clock"])
    sections = {
        "job": job,
        "data": config["data"],
        "model": config["model"],
        "optimizer": config["optimizer"],
        "protocol": PROTOCOLS[protocol],
    }
    return training_topology(f"bench-consistency-{protocol}-{condition}", sections, run_root)


async def run_job(protocol: str, condition: str, config: dict[str, Any], root: Path) -> Run:
    """Run one job to the end and read what it wrote."""
    run_dir = root / f"{protocol}-{condition}-{time.monotonic_ns()}"
    top = topology(protocol, condition, config, root)
    workers = [f"worker-{i}" for i in range(config["job"]["workers"])]
    began = time.perf_counter()
    async with open_cluster(top, run_dir=run_dir) as cluster:
        await start_together(cluster, workers)
        with trio.fail_after(1200):
            summary = await cluster.wait()
    wall = time.perf_counter() - began
    evaluations = _read_jsonl(run_dir / "evaluations.jsonl")
    staleness = Counter(int(row["staleness"]) for row in _read_jsonl(run_dir / "metrics.jsonl"))
    if not evaluations or not staleness:
        raise RuntimeError(f"job {protocol}/{condition} left no evaluations or metrics")
    return Run(protocol, condition, summary, evaluations, staleness, wall)


def reference_loss(evaluations: list[dict[str, Any]]) -> float:
    """The held-out loss at the first evaluation at or after ``TARGET_AT`` of the clocks."""
    last = max(row["clock"] for row in evaluations)
    return float(next(r["test_loss"] for r in evaluations if r["clock"] >= TARGET_AT * last))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def schedule(protocols: tuple[str, ...], repeats: int) -> list[tuple[str, str]]:
    """The order of the jobs: BSP without a straggler first (it sets the target), then
    every (protocol, condition) once per repeat, each repeat in the reverse order of the
    one before, so slow drifts of a shared machine fall on every cell alike."""
    cells = [(p, c) for p in protocols for c in CONDITIONS]
    order: list[tuple[str, str]] = []
    for n in range(repeats):
        order += cells if n % 2 == 0 else cells[::-1]
    return order


def _median_time(times: list[float | None]) -> float | None:
    """Median with "never reached" counted as infinitely late (None if that is the median)."""
    value = float(np.median([math.inf if t is None else t for t in times]))
    return None if math.isinf(value) else value


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def summarize(
    runs: list[Run], target: float, protocols: tuple[str, ...], fresh: list[Run]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Figures and ratios for the JSON (medians over repeats; staleness over every
    clock of every repeat); ``fresh``: the runs of the freshness part."""
    figures: dict[str, Any] = {
        "target_test_loss": target,
        "time_to_target_s": {},
        "train_s": {},
        "final_test_loss": {},
        "staleness_mean_clocks": {},
        "staleness_max_clocks": {},
        "staleness_at_zero_share": {},
    }
    for p in protocols:
        for key in list(figures)[1:]:
            figures[key][p] = {}
        for c in CONDITIONS:
            cell = [r for r in runs if (r.protocol, r.condition) == (p, c)]
            merged: Counter[int] = sum((r.staleness for r in cell), Counter())
            total = sum(merged.values())
            figures["time_to_target_s"][p][c] = _median_time([r.time_to(target) for r in cell])
            figures["train_s"][p][c] = float(np.median([r.summary["train_seconds"] for r in cell]))
            figures["final_test_loss"][p][c] = float(
                np.median([r.summary["test_loss"] for r in cell])
            )
            figures["staleness_mean_clocks"][p][c] = sum(k * v for k, v in merged.items()) / total
            figures["staleness_max_clocks"][p][c] = max(merged)
            figures["staleness_at_zero_share"][p][c] = merged.get(0, 0) / total
    ttt = figures["time_to_target_s"]
    ratios: dict[str, Any] = {}
    for p in protocols:
        if p == "bsp":
            continue
        for c in CONDITIONS:
            ratios[f"{p}_vs_bsp_{c}"] = _ratio(ttt[p][c], ttt["bsp"][c])
    for p in protocols:
        ratios[f"{p}_straggler_vs_no_straggler"] = _ratio(
            ttt[p]["straggler"], ttt[p]["no_straggler"]
        )
    for p in FRESHNESS_PROTOCOLS:
        merged = sum((r.staleness for r in fresh if r.protocol == p), Counter())
        total = sum(merged.values())
        figures.setdefault("freshness_staleness_mean_clocks", {})[p] = (
            sum(k * v for k, v in merged.items()) / total
        )
        figures.setdefault("freshness_staleness_at_zero_share", {})[p] = merged.get(0, 0) / total
    fresh_mean = figures["freshness_staleness_mean_clocks"]
    ratios["essp3_vs_ssp3_staleness_mean_k4_messages"] = _ratio(
        fresh_mean["essp3"], fresh_mean["ssp3"]
    )
    if "essp3" in protocols and "ssp3" in protocols:
        ratios["essp3_vs_ssp3_staleness_mean"] = {
            c: _ratio(
                figures["staleness_mean_clocks"]["essp3"][c],
                figures["staleness_mean_clocks"]["ssp3"][c],
            )
            for c in CONDITIONS
        }
    return figures, ratios


def plot(runs: list[Run], target: float, protocols: tuple[str, ...], out: Path) -> None:
    """Held-out loss against time per protocol (both conditions) and staleness histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(CONDITIONS), figsize=(6.5 * len(CONDITIONS), 8.5))
    colors = dict(zip(protocols, plt.get_cmap("tab10").colors, strict=False))
    for col, condition in enumerate(CONDITIONS):
        ax = axes[0][col]
        for p in protocols:
            for n, run in enumerate(r for r in runs if (r.protocol, r.condition) == (p, condition)):
                t = [e["t"] for e in run.evaluations]
                loss = [e["test_loss"] for e in run.evaluations]
                ax.plot(
                    t,
                    loss,
                    "-",
                    color=colors[p],
                    lw=1.4,
                    alpha=1.0 if n == 0 else 0.45,
                    label=p if n == 0 else None,
                )
        ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:.4f}")
        ax.set(
            xlabel="time since the workers joined (s)",
            ylabel="held-out loss",
            title=f"{condition.replace('_', ' ')}",
            yscale="log",
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax = axes[1][col]
        width = 0.8 / len(protocols)
        top = max(max(r.staleness) for r in runs if r.condition == condition)
        clip = min(top, 15)
        for i, p in enumerate(protocols):
            merged: Counter[int] = sum(
                (r.staleness for r in runs if (r.protocol, r.condition) == (p, condition)),
                Counter(),
            )
            total = sum(merged.values())
            share = np.zeros(clip + 1)
            for k, v in merged.items():
                share[min(k, clip)] += v / total
            ax.bar(
                np.arange(clip + 1) + (i - (len(protocols) - 1) / 2) * width,
                share,
                width=width,
                color=colors[p],
                label=p,
            )
        ax.set(
            xlabel=f"observed staleness (clocks; last bar: >= {clip})",
            ylabel="share of clocks",
            title=f"staleness, {condition.replace('_', ' ')}",
        )
        ax.set_xticks(range(clip + 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _cell(value: float | None) -> str:
    return "never" if value is None else fmt(value)


def report(figures: dict[str, Any], ratios: dict[str, Any], protocols: tuple[str, ...]) -> None:
    ttt, train = figures["time_to_target_s"], figures["train_s"]
    rows = []
    for p in protocols:
        row: list[Any] = [p]
        for c in CONDITIONS:
            vs = _ratio(ttt[p][c], ttt["bsp"][c])
            row += [
                _cell(ttt[p][c]),
                "" if p == "bsp" or vs is None else f"{vs:.2f}",
                fmt(train[p][c]),
            ]
        rows.append(row)
    print_table(
        f"Seconds to held-out loss <= {figures['target_test_loss']:.4f} (BSP's loss, without "
        f"a straggler, at {TARGET_AT:.0%} of its clocks)",
        ["protocol", *(f"{h}" for c in CONDITIONS for h in (f"{c} s", "/ bsp", "job s"))],
        rows,
    )
    rows = []
    for p in protocols:
        row = [p]
        for c in CONDITIONS:
            row += [
                f"{figures['staleness_mean_clocks'][p][c]:.2f}",
                f"{figures['staleness_at_zero_share'][p][c]:.2f}",
                str(figures["staleness_max_clocks"][p][c]),
            ]
        rows.append(row)
    print_table(
        "Observed staleness per clock (clocks behind the freshest possible read)",
        ["protocol", *(h for c in CONDITIONS for h in (f"mean ({c})", "share 0", "max"))],
        rows,
    )
    print_table(
        "Observed staleness, no straggler, reads through messages, clocks of 4 mini-batches",
        ["protocol", "mean", "share 0"],
        [
            [p, f"{figures['freshness_staleness_mean_clocks'][p]:.2f}",
             f"{figures['freshness_staleness_at_zero_share'][p]:.2f}"]
            for p in FRESHNESS_PROTOCOLS
        ],
    )  # fmt: skip


async def measure(
    protocols: tuple[str, ...], repeats: int, config: dict[str, Any], root: Path
) -> tuple[list[Run], float, list[Run]]:
    """Every job of the schedule, then those of the freshness part (no straggler; no
    target: what they show is their staleness); returns the runs, the target loss and
    the freshness runs."""
    runs: list[Run] = []
    target = math.nan
    data = await trio.to_thread.run_sync(prepare_data, config, root)
    config = {**config, "data": data}
    for n, (p, c) in enumerate(schedule(protocols, repeats)):
        run = await run_job(p, c, config, root)
        runs.append(run)
        if n == 0:
            target = reference_loss(run.evaluations)
        ttt = run.time_to(target)
        print(
            f"{p:>6} {c:<13} job {run.summary['train_seconds']:6.1f} s  "
            f"final loss {run.summary['test_loss']:.4f}  "
            f"to target {'never' if ttt is None else f'{ttt:.1f} s'}  "
            f"(with start-up {run.wall_s:.0f} s)",
            flush=True,
        )
    fresh = []
    for n in range(repeats):
        for p in FRESHNESS_PROTOCOLS if n % 2 == 0 else FRESHNESS_PROTOCOLS[::-1]:
            run = await run_job(p, "freshness", config, root)
            fresh.append(run)
            mean = sum(k * v for k, v in run.staleness.items()) / sum(run.staleness.values())
            print(f"{p:>6} freshness     job {run.summary['train_seconds']:6.1f} s  "
                  f"mean staleness {mean:.2f}", flush=True)  # fmt: skip
    return runs, target, fresh


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        default=Path("consistency.png"),
        help="where to save the figure (default: consistency.png)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="jobs per protocol and condition (default: 1)"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep every job's run directory under DIR (default: removed)",
    )
    args = parser.parse_args()
    protocols = QUICK_PROTOCOLS if args.quick else tuple(PROTOCOLS)
    repeats = args.repeats
    config = job_config(args.quick)
    quiet_logging()
    began = time.perf_counter()
    with scratch_dir() as tmp:
        root = args.keep.resolve() if args.keep else tmp / "runs"
        runs, target, fresh = trio.run(measure, protocols, repeats, config, root)
    figures, ratios = summarize(runs, target, protocols, fresh)
    report(figures, ratios, protocols)
    plot(runs, target, protocols, args.plot)
    print(f"\nfigure: {args.plot}; wall time {time.perf_counter() - began:.0f} s")
    if args.json:
        write_nested_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
