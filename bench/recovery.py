"""Recovery from node faults during a real training job: shard failover and worker replacement.

Each run starts one training job (seven node processes: the scheduler with the
protocol actor, two shard nodes, four workers; SSP, ``[job] replication = 2``, so the
backup of each slice lives on the other shard's node), lets it train, then injects
three faults one after the other, each once the job is back to steady training:

1. ``kill -9`` of node ``shard-0``, which holds the primary of slice 0. Measured: the
   time to the first clock completed after the scheduler promoted the backup
   (``shard_failover_s``), and the time until slice 0 has a backup again on the
   restarted node (``shard_rereplicate_s``).
2. ``kill -9`` of node ``worker-1``: the time to its replacement's first completed
   clock (``worker_replace_s``).
3. ``kill -STOP`` of node ``worker-2`` (a hung process: it closes no pipe and does not
   exit, only its heartbeats stop): the time to its replacement's first completed clock
   (``hung_worker_replace_s``), bounded below by the heartbeat deadline.

4. In a second job, whose nodes ``shard-1``, ``worker-2`` and ``worker-3`` run on
   another "host" (the loopback address 127.0.0.2, over mutual TLS) under a plain
   process manager (this script), that host's processes are all killed and started
   again at once, as an engine would: the time from the kill to the first clock of
   each of its workers after they rejoined, the slowest of them (``host_replace_s``;
   beside ``worker_replace_s``, a node the launcher restarts itself, as a ratio).

Every time comes from what the run leaves behind, on one machine's wall clock: the
fault's ``time.time()`` in this process, the scheduler's ``metrics.jsonl`` (``wall``:
when it handled a worker's report of a completed clock), the JSON logs of every node,
and the moments the launcher (this process) received the new node's hello and ready.
Before the faults, a fresh interpreter times the steps a restarting worker node takes
first (imports, topology, dataset) under the same load, to explain the node start-up.
The figures are medians over the runs; ``--quick`` makes one run.

    python bench/recovery.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import trio
from _common import fmt, median, parse_args, print_table, quiet_logging, scratch_dir, write_json

from actorml import Cluster, Topology
from actorml.certs import write_set
from actorml.launch import NodeProcess, open_cluster
from actorml.log import configure_logging
from actorml.messages import LAUNCHER_NODE
from actorml.nodestart import node_environment

RUNS, QUICK_RUNS = 5, 1
LITERATURE_S = 1.0  # "recovery within 1 s" (Li et al., OSDI 2014)
SHARD_NODE, SLICE = "shard-0", 0  # at the start, node shard-0 holds the primary of slice 0
KILLED_WORKER, HUNG_WORKER = "worker-1", "worker-2"
OTHER_HOST = "127.0.0.2"  # another "host" with no namespaces: a second loopback address
ON_OTHER_HOST = ("shard-1", "worker-2", "worker-3")
WARM_CLOCKS = 24  # every worker past this clock (about three epochs) before the first fault
STEADY_CLOCKS = 8  # every worker this many clocks further before the next fault
WAIT_S = 120.0  # the longest any one step may take before the run is declared broken


def topology(run_dir: Path) -> Topology:
    """The training job: long enough that it is still training after the last fault.

    The heartbeat settings are the defaults, what a user gets without asking.
    """
    return Topology.from_dict(
        {
            "cluster": {
                "name": "bench-recovery",
                "run_dir": str(run_dir),
                "log_level": "info",  # the recovery events are info-level
                "supervisor": {"max_restarts": 10, "within_s": 60.0},
            },
            "job": {
                "workers": 4,
                "shards": 2,
                "epochs": 100_000,  # never finishes: the run ends the job
                "batch_size": 16,
                "jitter_s": 0.01,
                "replication": 2,
                "progress": False,
            },
            "data": {"source": "sklearn:breast_cancer"},
            "model": {"kind": "logreg"},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "protocol": {"kind": "ssp", "staleness": 2},
        }
    )


# --- what the run leaves behind ---------------------------------------------------


class _Tail:
    """The JSON lines appended to one file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


class RunRecord:
    """Every node's log events and every metrics line of one run, read as they appear.

    Events get ``t`` (Unix time, from their ISO timestamp) and ``log`` (the log file's
    name: the node's, or ``launcher``; the launcher's events name their node in ``node``).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.events: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self._logs: dict[Path, _Tail] = {}
        self._metrics = _Tail(run_dir / "metrics.jsonl")

    def refresh(self) -> None:
        for path in sorted((self.run_dir / "logs").glob("*.jsonl")):
            tail = self._logs.setdefault(path, _Tail(path))
            for event in tail.read():
                event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
                event["log"] = path.stem
                self.events.append(event)
        self.metrics += self._metrics.read()

    def event(self, log: str, name: str, after: float, **fields: Any) -> float | None:
        """When event ``name`` (with these field values) first went to ``log`` after ``after``."""
        for e in self.events:
            if (
                e["log"] == log
                and e["event"] == name
                and e["t"] > after
                and all(e.get(k) == v for k, v in fields.items())
            ):
                return float(e["t"])
        return None

    def line(self, after: float, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The first metrics line written after ``after`` that ``match`` accepts."""
        return next((m for m in self.metrics if m["wall"] > after and match(m)), None)

    def clocks(self) -> dict[str, int]:
        """Per worker, the highest clock it has reported."""
        out: dict[str, int] = {}
        for m in self.metrics:
            out[m["worker"]] = max(out.get(m["worker"], -1), m["clock"])
        return out


async def until(record: RunRecord, what: str, check: Callable[[], Any]) -> Any:
    """Poll the run's files until ``check()`` returns something other than None.

    Raises:
        TimeoutError: not within ``WAIT_S`` (the job is broken: fail loudly).
    """
    with trio.move_on_after(WAIT_S):
        while True:
            record.refresh()
            value = check()
            if value is not None:
                return value
            await trio.sleep(0.02)
    raise TimeoutError(f"no {what} within {WAIT_S:g}s (run directory: {record.run_dir})")


async def going(record: RunRecord, workers: list[str]) -> None:
    """Wait until every worker is past clock ``WARM_CLOCKS``."""
    await until(
        record,
        "training to get going",
        lambda: (
            True
            if len(record.clocks()) == len(workers) and min(record.clocks().values()) >= WARM_CLOCKS
            else None
        ),
    )


async def steady(record: RunRecord, workers: list[str], clocks: int) -> None:
    """Wait until every worker has completed ``clocks`` more clocks than it has now."""
    record.refresh()
    start = record.clocks()
    goal = {w: start.get(w, -1) + clocks for w in workers}
    await until(
        record,
        f"{clocks} more clocks from every worker",
        lambda: True if all(record.clocks().get(w, -1) >= c for w, c in goal.items()) else None,
    )


# --- the moments only the launcher sees -----------------------------------------------


async def stamp_restart(
    cluster: Cluster, name: str, old: NodeProcess, stamps: dict[str, float]
) -> None:
    """Record when the replacement of ``old`` said hello (it runs: imported, listening)
    and when it reported ready (its actors started)."""
    while cluster.procs[name] is old:
        await trio.sleep(0.01)
    new = cluster.procs[name]
    await new.hello.wait()
    stamps["hello"] = time.time()
    await new.ready.wait()
    stamps["ready"] = time.time()


# --- the faults ------------------------------------------------------------------------

#: stage -> what it spans (each fault has the stages its events allow)
STAGES: dict[str, str] = {
    "detect": "fault -> launcher sees the death",
    "unresponsive": "  stop -> heartbeat deadline passed",
    "reaped": "  deadline -> SIGKILLed process reaped",
    "promote": "death -> backup promoted (shard_failover)",
    "resume": "promoted -> first clock completed",
    "respawn": "death -> new process spawned",
    "start": "spawned -> hello (interpreter, imports)",
    "ready": "hello -> ready (directory, actors started)",
    "load": "ready -> worker_started (layout, data, join)",
    "first_clock": "worker_started -> first clock completed",
    "sync": "hello -> backup synced (shard_ready)",
}


#: run in a fresh interpreter while the job trains: what a restarted worker node does
#: before it can train, timed step by step under the same load
PROBE = """
import json, sys, time
t0 = time.time()
import actorml.cli
t1 = time.time()
from pathlib import Path
from actorml import registry
from actorml.topology import Topology
topology = Topology.from_toml(Path(sys.argv[1]))
t2 = time.time()
for actor in topology.node(sys.argv[2]).actors:
    registry.resolve("actor", actor.kind)
t3 = time.time()
from actorml.models import load_dataset
load_dataset(**json.loads(sys.argv[3]))
t4 = time.time()
print(json.dumps({"t0": t0, "import": t1 - t0, "topology": t2 - t1, "kind": t3 - t2,
                  "data": t4 - t3}))
"""

PROBE_STEPS = {
    "interpreter": "interpreter start",
    "import": "import actorml (the node's code)",
    "topology": "load topology.toml ([job]: numba, scipy.sparse)",
    "kind": "import the worker actor kind",
    "data": "load_dataset (imports scikit-learn)",
}


async def probe(run_dir: Path, node: str) -> dict[str, float]:
    """Time a fresh interpreter doing what a restarting ``node`` does first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *(p for p in sys.path if p)])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # as the launcher sets them for a node
    data = json.dumps(topology(run_dir).extra["data"])
    topo = str(run_dir / "topology.toml")
    t = time.time()
    done = await trio.run_process(
        [sys.executable, "-c", PROBE, topo, node, data], env=env, capture_stdout=True
    )
    out: dict[str, float] = json.loads(done.stdout)
    out["interpreter"] = out.pop("t0") - t
    return out


async def shard_fault(cluster: Cluster, record: RunRecord) -> dict[str, dict[str, float]]:
    """SIGKILL the node of slice 0's primary; time the failover and the re-replication.

    The failover ends at the first metrics line written after the scheduler's
    ``shard_failover`` event: every clock pushes to every slice (a dense model), and
    until that event no worker can have had a push to slice 0 acknowledged after the
    kill (the dead primary cannot answer; the backup refuses pushes until promoted,
    and the scheduler hands out the new table map only after the event, as it handles
    one message at a time).
    """
    old = cluster.procs[SHARD_NODE]
    stamps: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stamp_restart, cluster, SHARD_NODE, old, stamps)
        t0 = time.time()
        os.kill(old.pid or 0, signal.SIGKILL)
        died = await until(
            record, "node_died", lambda: record.event("launcher", "node_died", t0, node=SHARD_NODE)
        )
        promoted = await until(
            record,
            "shard_failover",
            lambda: record.event("scheduler", "shard_failover", t0, slice=SLICE),
        )
        first = await until(
            record, "a clock after failover", lambda: record.line(promoted, lambda m: True)
        )
        spawned = await until(
            record,
            "node_started",
            lambda: record.event("launcher", "node_started", died, node=SHARD_NODE),
        )
        synced = await until(
            record,
            "slice 0 backup synced",
            lambda: record.event(SHARD_NODE, "shard_ready", t0, slice=SLICE, role="backup"),
        )
        await until(record, "node ready", lambda: stamps.get("ready"))
    in_flight = [m["wall"] - t0 for m in record.metrics if t0 < m["wall"] <= promoted]
    return {
        "failover": {
            "total": first["wall"] - t0,
            "detect": died - t0,
            "promote": promoted - died,
            "resume": first["wall"] - promoted,
            # pushes acknowledged before the kill whose reports reached the scheduler after it
            "in_flight_lines": float(len(in_flight)),
            "in_flight_latest": max(in_flight, default=0.0),
        },
        "rereplicate": {
            "total": synced - t0,
            "detect": died - t0,
            "respawn": spawned - died,
            "start": stamps["hello"] - spawned,
            "sync": synced - stamps["hello"],
        },
    }


async def worker_fault(
    cluster: Cluster, record: RunRecord, name: str, sig: signal.Signals
) -> dict[str, float]:
    """Send ``sig`` to worker node ``name``; time it to its replacement's first clock."""
    old = cluster.procs[name]
    pid = old.pid or 0
    before = [m for m in record.metrics if m["worker"] == name]
    incarnation = before[-1]["incarnation"]
    stamps: dict[str, float] = {}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stamp_restart, cluster, name, old, stamps)
            t0 = time.time()
            os.kill(pid, sig)
            out: dict[str, float] = {}
            if sig == signal.SIGSTOP:
                silent = await until(
                    record,
                    "node_unresponsive",
                    lambda: record.event("launcher", "node_unresponsive", t0, node=name),
                )
            died = await until(
                record, "node_died", lambda: record.event("launcher", "node_died", t0, node=name)
            )
            spawned = await until(
                record,
                "node_started",
                lambda: record.event("launcher", "node_started", died, node=name),
            )
            started = await until(
                record, "worker_started", lambda: record.event(name, "worker_started", died)
            )
            first = await until(
                record,
                f"a clock from the new {name}",
                lambda: record.line(
                    t0, lambda m: m["worker"] == name and m["incarnation"] != incarnation
                ),
            )
            await until(record, "node ready", lambda: stamps.get("ready"))
    finally:
        if sig == signal.SIGSTOP and not old.exited.is_set():
            os.kill(pid, signal.SIGCONT)  # never leave a stopped process behind
    out["total"] = first["wall"] - t0
    if sig == signal.SIGSTOP:
        out["detect"] = died - t0
        out["unresponsive"] = silent - t0
        out["reaped"] = died - silent
    else:
        out["detect"] = died - t0
    out.update(
        respawn=spawned - died,
        start=stamps["hello"] - spawned,
        ready=stamps["ready"] - stamps["hello"],
        load=started - stamps["ready"],
        first_clock=first["wall"] - started,
    )
    return out


@contextmanager
def node_consoles(path: Path) -> Iterator[None]:
    """Send this process's stderr, which node processes inherit, to ``path``.

    The nodes print their warnings there (``peer_down``, ``shard_promoted``...): expected
    here, and they would bury the table. On an error the file's tail is shown.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as file:
        os.dup2(file.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if failed and path.exists():
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(["node consoles (last lines):", *tail]), file=sys.stderr)


async def one_run(run_dir: Path) -> dict[str, dict[str, float]]:
    """Start the job, inject the three faults in turn, stop the job."""
    topo = topology(run_dir)
    workers = [n.name for n in topo.nodes if n.name.startswith("worker-")]
    record = RunRecord(run_dir)
    async with open_cluster(topo, run_dir=run_dir) as cluster:
        await going(record, workers)
        probed = await probe(run_dir, KILLED_WORKER)
        await steady(record, workers, STEADY_CLOCKS)
        result = await shard_fault(cluster, record)
        result["probe"] = probed
        await steady(record, workers, STEADY_CLOCKS)
        result["worker"] = await worker_fault(cluster, record, KILLED_WORKER, signal.SIGKILL)
        await steady(record, workers, STEADY_CLOCKS)
        result["hung"] = await worker_fault(cluster, record, HUNG_WORKER, signal.SIGSTOP)
    return result


def host_topology(run_dir: Path) -> Topology:
    """The same job, over tcp with TLS, with ``ON_OTHER_HOST`` on ``OTHER_HOST``."""
    topo = topology(run_dir)
    cluster = attrs.evolve(
        topo.cluster,
        transport="tcp",
        base_port=random.randrange(20000, 60000, 20),
        tls_dir=str(run_dir / "tls"),
    )
    nodes = tuple(
        attrs.evolve(n, host=OTHER_HOST) if n.name in ON_OTHER_HOST else n for n in topo.nodes
    )
    return attrs.evolve(topo, cluster=cluster, nodes=nodes)


async def start_other_host(path: Path, run_dir: Path) -> list[trio.Process]:
    """The other host's nodes, as its engine starts them (``actorml node NAME``)."""
    processes = []
    for name in ON_OTHER_HOST:
        command = [sys.executable, "-m", "actorml", "node", name, "--topology", str(path),
                   "--run-dir", str(run_dir / "other-host")]  # fmt: skip
        processes.append(await trio.lowlevel.open_process(command, env=node_environment()))
    return processes


async def host_run(run_dir: Path) -> dict[str, float]:
    """Kill every process of the other host once training is steady; start them again
    at once; time it to the first clock of each of its workers, the slowest."""
    topo = host_topology(run_dir)
    write_set(run_dir / "tls", [LAUNCHER_NODE, *(n.name for n in topo.nodes)])
    path = run_dir / "topology-hosts.toml"
    path.write_text(topo.to_toml(), encoding="utf-8")
    workers = [n.name for n in topo.nodes if n.name.startswith("worker-")]
    moved = [w for w in workers if w in ON_OTHER_HOST]
    record = RunRecord(run_dir)
    processes = await start_other_host(path, run_dir)
    try:
        async with open_cluster(topo, run_dir=run_dir) as cluster:
            await going(record, workers)
            before = {w: [m for m in record.metrics if m["worker"] == w][-1] for w in moved}
            t0 = time.time()
            for process in processes:
                process.kill()
            for process in processes:
                await process.wait()
            processes = await start_other_host(path, run_dir)
            firsts = [
                await until(
                    record,
                    f"a clock from the new {w}",
                    lambda w=w: record.line(
                        t0,
                        lambda m: m["worker"] == w and m["incarnation"] != before[w]["incarnation"],
                    ),
                )
                for w in moved
            ]
            rejoined = len([e for e in cluster.deaths if e[0] in ON_OTHER_HOST])
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    return {"total": max(f["wall"] for f in firsts) - t0, "deaths": float(rejoined)}


def run_once(scratch: Path, n: int) -> dict[str, dict[str, float]]:
    """One run of the three faults, then one of the other host's (each its own job)."""
    result: dict[str, dict[str, float]] = {}
    for name in ("run", "hosts"):
        run_dir = scratch / f"{name}-{n}"
        run_dir.mkdir()
        configure_logging(
            node="launcher",
            log_file=run_dir / "logs" / "launcher.jsonl",
            level="info",
            console_level="error",
        )
        try:
            with node_consoles(scratch / f"consoles-{n}.txt"):
                if name == "run":
                    result.update(trio.run(one_run, run_dir))
                else:
                    result["host"] = trio.run(host_run, run_dir)
        finally:
            quiet_logging()  # closes the launcher's log file
    return result


# --- report ----------------------------------------------------------------------------

FAULTS = {
    "failover": "shard primary SIGKILL -> first clock after failover",
    "rereplicate": "  the same -> slice backed up again (node restarted)",
    "worker": "worker SIGKILL -> replacement's first clock",
    "hung": "worker SIGSTOP -> replacement's first clock",
}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    runs = QUICK_RUNS if args.quick else RUNS
    quiet_logging()
    cluster = topology(Path("runs")).cluster
    interval, deadline = cluster.heartbeat_interval_s, cluster.heartbeat_deadline_s
    results: list[dict[str, dict[str, float]]] = []
    with scratch_dir() as scratch:
        for n in range(runs):
            results.append(run_once(scratch, n))
            print(
                f"run {n + 1}/{runs}: "
                + ", ".join(f"{k} {results[-1][k]['total']:.3f}s" for k in [*FAULTS, "host"]),
                flush=True,
            )

    def med(fault: str, stage: str) -> float:
        return median(r[fault][stage] for r in results if stage in r[fault])

    rows = []
    for fault, label in FAULTS.items():
        totals = [r[fault]["total"] for r in results]
        rows.append(
            [label, med(fault, "total"), min(totals), max(totals), len(totals),
             f"{med(fault, 'total') / LITERATURE_S:.2f}"]
        )  # fmt: skip
    hosts = [r["host"]["total"] for r in results]
    rows.append(
        [f"host {OTHER_HOST} killed ({', '.join(ON_OTHER_HOST)}) -> its workers' first clocks",
         med("host", "total"), min(hosts), max(hosts), len(hosts),
         f"{med('host', 'total') / LITERATURE_S:.2f}"]
    )  # fmt: skip
    print_table(
        f"Recovery during SSP training, 4 workers, 2 shards with backups; {runs} run(s); "
        f"heartbeat every {interval:g}s, deadline {deadline:g}s",
        ["", "median s", "min s", "max s", "runs", "/ 1 s"],
        rows,
    )
    print(
        f"\nThe host's nodes were started again at once by their engine (this script) and "
        f"rejoined; the worker kill's figure is a node the launcher restarted itself: host "
        f"/ worker {med('host', 'total') / med('worker', 'total'):.2f}x (tcp with TLS for the "
        "host's job, ipc for the others)."
    )
    stage_rows = []
    for stage, label in STAGES.items():
        cells: list[Any] = [label]
        present = False
        for fault in FAULTS:
            if any(stage in r[fault] for r in results):
                cells.append(med(fault, stage))
                present = True
            else:
                cells.append("-")
        if present:
            stage_rows.append(cells)
    print_table(
        "Where the time goes (median s of each stage; a stage's median need not add up)",
        ["stage", "failover", "re-replicate", "worker kill", "worker stop"],
        stage_rows,
    )
    print_table(
        "A fresh interpreter doing what a restarted worker node does first, "
        "while the job trains (median s)",
        ["step", "s"],
        [[label, med("probe", step)] for step, label in PROBE_STEPS.items()],
    )
    lines = [r["failover"]["in_flight_lines"] for r in results]
    latest = [r["failover"]["in_flight_latest"] for r in results]
    in_flight = (
        f"{sum(lines):.0f} metrics line(s) in {runs} run(s), at most "
        f"{fmt(max(latest) * 1e3)} ms after the kill"
        if sum(lines)
        else f"no metrics line in {runs} run(s)"
    )
    print(
        f"\nBetween a shard kill and its failover the scheduler wrote {in_flight} (reports of "
        "pushes acknowledged before the kill: the failover figure does not count them)."
    )
    print(
        "A SIGKILLed node is seen at once (its exit wakes the launcher through a pidfd); the "
        f"heartbeat deadline ({deadline:g}s, checked every {interval:g}s) is what finds a hung one."
    )
    figures = {
        "shard_failover_s": med("failover", "total"),
        "shard_rereplicate_s": med("rereplicate", "total"),
        "worker_replace_s": med("worker", "total"),
        "hung_worker_replace_s": med("hung", "total"),
        "host_replace_s": med("host", "total"),
        "heartbeat_interval_s": interval,
        "heartbeat_deadline_s": deadline,
    }
    ratios = {
        "shard_failover_vs_1s": figures["shard_failover_s"] / LITERATURE_S,
        "worker_replace_vs_1s": figures["worker_replace_s"] / LITERATURE_S,
        "hung_worker_replace_vs_1s": figures["hung_worker_replace_s"] / LITERATURE_S,
        "host_replace_vs_worker_replace": figures["host_replace_s"] / figures["worker_replace_s"],
    }
    if args.json:
        write_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
