"""What the benchmarks share: options, statistics, output, and the raw pynng baselines.

The baselines run as their own processes, started from this file::

    python bench/_common.py raw-rep ADDR              # Rep0 echo server (trio)
    python bench/_common.py raw-req ADDR BYTES        # Req0 client (trio)
    python bench/_common.py raw-rep-sync ADDR         # the same, blocking calls
    python bench/_common.py raw-req-sync ADDR BYTES
    python bench/_common.py raw-pull ADDR BACK        # Pull0 receiver, acks on BACK
    python bench/_common.py raw-push ADDR BACK BYTES  # Push0 sender

Each prints ``ready [ADDRESS...]`` once listening or dialed. A client then reads one
command per line on stdin (the number of rounds or arrays of the next batch) and
answers with one JSON line on stdout; end of stdin makes it exit. Servers run until
terminated. So the benchmark process drives every batch and is never on the measured
path, as with the actors, which it drives with asks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from actorml.process import die_with_parent
from actorml.transport import bound_address

__all__ = [
    "BENCH_KINDS",
    "Helper",
    "bench_parser",
    "fmt",
    "median",
    "parse_args",
    "print_table",
    "quiet_logging",
    "save_dataset",
    "scratch_dir",
    "spawn",
    "spawn_script",
    "start_together",
    "training_topology",
    "write_json",
    "write_nested_json",
]

_ACK_LIMIT = 64  # messages shorter than this on a bandwidth pipe are control messages


# --- options and output ----------------------------------------------------------


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options every benchmark takes: ``--quick`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter batches (under a minute)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help='write {"figures": ..., "ratios": ...} here'
    )
    return parser.parse_args(argv)


def median(samples: Iterable[float]) -> float:
    """The median of ``samples``.

    Raises:
        ValueError: if there are none.
    """
    values = list(samples)
    if not values:
        raise ValueError("median of no samples")
    return float(statistics.median(values))


def fmt(value: float) -> str:
    """A figure with three significant digits or so."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``rows`` under ``header`` as a plain aligned table."""
    cells = [[str(c) for c in header]] + [
        [fmt(c) if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path: Path, figures: Mapping[str, float], ratios: Mapping[str, float]) -> None:
    """Write ``{"figures": ..., "ratios": ...}`` to ``path``.

    Raises:
        ValueError: if a value is not a positive finite number (a broken measurement
            must not look like a result).
    """
    for key, value in {**figures, **ratios}.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"figure {key} is {value!r}, not a positive finite number")
    data = {
        "figures": {k: round(float(v), 4) for k, v in figures.items()},
        "ratios": {k: round(float(v), 4) for k, v in ratios.items()},
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def quiet_logging() -> None:
    """Only warnings and errors from the benchmark process's own node reach the console."""
    from actorml.log import configure_logging

    configure_logging(node="_bench", level="warning")


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh directory for socket files and run logs, removed afterwards.

    It is made in ``$TMPDIR`` (``/tmp`` by default), which must be short: ipc socket
    paths are limited to about 100 bytes.
    """
    path = Path(tempfile.mkdtemp(prefix="actorml-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- helper processes ------------------------------------------------------------


class Helper:
    """A baseline process started by :func:`spawn`, driven one line at a time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.ready: list[str] = []

    def wait_ready(self) -> None:
        """Wait for the ``ready`` line; the addresses it names go to :attr:`ready`."""
        self.ready = self._line().split()[1:]

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"baseline process {self.process.args!r} exited early")
        return line

    def command(self, line: str) -> Any:
        """Send one command and return the decoded JSON answer (blocks)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and reap it."""
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=5.0)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.process.stdout is not None:
            self.process.stdout.close()


def spawn(*commands: Sequence[str]) -> list[Helper]:
    """Start ``python bench/_common.py ROLE ARGS...`` for each command, at once.

    Returns once every one is ready; if one fails, all are stopped.
    """
    return spawn_script(Path(__file__).resolve(), *commands)


# --- the baselines themselves ------------------------------------------------------


def _ready(out: IO[str], *addresses: str) -> None:
    out.write(" ".join(("ready", *addresses)) + "\n")
    out.flush()


def _commands() -> Iterable[int]:
    for line in sys.stdin:
        yield int(line)


def _raw_rep(address: str) -> None:
    import pynng
    import trio

    async def serve() -> None:
        with pynng.Rep0() as socket:
            socket.listen(address)
            _ready(sys.stdout, bound_address(socket, address))
            while True:
                message = await socket.arecv_msg()
                await socket.asend(message.bytes)

    trio.run(serve)


def _raw_req(address: str, nbytes: int) -> None:
    import numpy as np
    import pynng
    import trio

    async def client() -> None:
        payload = b"x" * nbytes
        clock = time.perf_counter_ns
        with pynng.Req0() as socket:
            socket.dial(address, block=True)
            _ready(sys.stdout)
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    return
                times = np.empty(int(line), dtype=np.int64)
                for i in range(len(times)):
                    t0 = clock()
                    await socket.asend(payload)
                    await socket.arecv_msg()
                    times[i] = clock() - t0
                print(json.dumps(times.tolist()), flush=True)

    trio.run(client)


def _raw_rep_sync(address: str) -> None:
    import pynng

    with pynng.Rep0() as socket:
        socket.listen(address)
        _ready(sys.stdout, bound_address(socket, address))
        while True:
            socket.send(socket.recv_msg().bytes)


def _raw_req_sync(address: str, nbytes: int) -> None:
    import numpy as np
    import pynng

    payload = b"x" * nbytes
    clock = time.perf_counter_ns
    with pynng.Req0() as socket:
        socket.dial(address, block=True)
        _ready(sys.stdout)
        for rounds in _commands():
            times = np.empty(rounds, dtype=np.int64)
            for i in range(rounds):
                t0 = clock()
                socket.send(payload)
                socket.recv_msg()
                times[i] = clock() - t0
            print(json.dumps(times.tolist()), flush=True)


def _raw_pull(address: str, back: str, recv_max_size: int) -> None:
    import numpy as np
    import pynng

    with (
        pynng.Pull0(recv_max_size=recv_max_size) as inbox,
        pynng.Push0(recv_max_size=recv_max_size) as acks,
    ):
        inbox.listen(address)
        acks.listen(back)
        _ready(sys.stdout, bound_address(inbox, address), bound_address(acks, back))
        count = nbytes = 0
        while True:
            message = inbox.recv_msg()
            buffer = message._buffer
            if len(buffer) >= _ACK_LIMIT:
                # The best raw receiver: an array over nng's own buffer, no copy
                # (dropped before the message that owns the buffer is).
                count += 1
                nbytes += np.frombuffer(buffer, dtype=np.uint8).nbytes
                continue
            acks.send(json.dumps([count, nbytes]).encode())
            count = nbytes = 0


def _raw_push(address: str, back: str, nbytes: int) -> None:
    import numpy as np
    import pynng

    array = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    with pynng.Push0() as outbox, pynng.Pull0() as acks:
        outbox.dial(address, block=True)
        acks.dial(back, block=True)
        _ready(sys.stdout)
        for count in _commands():
            t0 = time.perf_counter_ns()
            for _ in range(count):
                # pynng sends what cffi can read as a buffer: no tobytes() copy.
                outbox.send(pynng.ffi.from_buffer(array))
            outbox.send(b"end")
            received, received_bytes = json.loads(acks.recv())
            elapsed = time.perf_counter_ns() - t0
            print(json.dumps([elapsed, received, received_bytes]), flush=True)


# --- shared by the training benchmarks (consistency.py, throughput.py) ---------------


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The parser of :func:`parse_args`, for a benchmark that adds options of its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter batches (under a minute or two)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help='write {"figures": ..., "ratios": ...} here'
    )
    return parser


def write_nested_json(path: Path, figures: Mapping[str, Any], ratios: Mapping[str, Any]) -> None:
    """Write ``{"figures": ..., "ratios": ...}`` whose values may be nested tables.

    A leaf is a finite number >= 0, a bool (a yes-or-no figure, such as whether a run
    diverged) or None, which means "not reached" (a time to a target loss that a run
    never reached, and the ratios taken from it).

    Raises:
        ValueError: a leaf is anything else (a broken measurement must not look like a
            result).
    """

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(f"{key}.{k}", v) for k, v in value.items()}
        if value is None or isinstance(value, bool):  # bool: a yes-or-no figure
            return value
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"figure {key} is {value!r}, not a finite number >= 0 or None")
        return round(float(value), 4)

    data = {"figures": clean("figures", figures), "ratios": clean("ratios", ratios)}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def spawn_script(script: Path, *commands: Sequence[str]) -> list[Helper]:
    """As :func:`spawn`, for baseline roles that ``python SCRIPT ROLE ARGS...`` runs."""
    helpers: list[Helper] = []
    try:
        for command in commands:
            process = subprocess.Popen(
                [sys.executable, str(script), *command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=die_with_parent,
            )
            helpers.append(Helper(process))
        for helper in helpers:
            helper.wait_ready()
    except BaseException:
        for helper in helpers:
            helper.close()
        raise
    return helpers


#: the actor kinds a benchmark's training job runs: the real ones, warmed up before the
#: job starts, with workers that join together (see ``actorml.actors.bench``)
BENCH_KINDS = {
    "scheduler": "actorml.actors.bench:WarmScheduler",
    "shard": "actorml.actors.bench:WarmShard",
    "worker": "actorml.actors.bench:BenchWorker",
}


def training_topology(name: str, sections: Mapping[str, Any], run_root: Path) -> Any:
    """A training job's Topology: ``sections`` ([job], [data], [model], [optimizer],
    [protocol]) expanded into nodes as ``actorml up`` would, with :data:`BENCH_KINDS`."""
    from actorml.actors.job import JobSection
    from actorml.topology import Topology

    expanded = JobSection.expand(dict(sections))
    for node in expanded["node"]:
        for actor in node["actor"]:
            actor["kind"] = BENCH_KINDS.get(actor["kind"], actor["kind"])
    # Generous deadlines: on a shared two-core machine seven processes importing numpy
    # and numba, and loading the data, can take a minute to come up.
    cluster = {"name": name, "transport": "ipc", "log_level": "warning",
               "run_dir": str(run_root), "ask_timeout_s": 120.0,
               "ready_timeout_s": 300.0}  # fmt: skip
    return Topology.from_dict({"cluster": cluster, **expanded})


async def start_together(cluster: Any, workers: Sequence[str]) -> list[Any]:
    """Wait until every ``BenchWorker`` is warm and held, then let them all join at once.

    Returns their ``Held`` answers (with each one's warm-up time).
    """
    from actorml.actors.bench import Go, Hold

    held = [await cluster.ask(worker, Hold(), timeout=600.0) for worker in workers]
    for worker in workers:
        await cluster.tell(worker, Go())
    return held


def save_dataset(dataset: Any, path: Path, dtype: Any = None) -> dict[str, Any]:
    """Write a loaded dataset's splits to ``path`` (npz); returns the ``[data]`` table
    that loads it back, in a fraction of the time it took to make."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        X_train=np.asarray(dataset.X_train, dtype=dtype),
        y_train=dataset.y_train,
        X_test=np.asarray(dataset.X_test, dtype=dtype),
        y_test=dataset.y_test,
    )
    return {"source": f"npz:{path}"}


def main(argv: Sequence[str]) -> None:
    """Run one baseline role (see the module docstring)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    role, *args = argv
    if role == "raw-rep":
        _raw_rep(args[0])
    elif role == "raw-req":
        _raw_req(args[0], int(args[1]))
    elif role == "raw-rep-sync":
        _raw_rep_sync(args[0])
    elif role == "raw-req-sync":
        _raw_req_sync(args[0], int(args[1]))
    elif role == "raw-pull":
        _raw_pull(args[0], args[1], int(args[2]))
    elif role == "raw-push":
        _raw_push(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown baseline role {role!r}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (KeyboardInterrupt, BrokenPipeError):
        pass
