"""CPU per message: nng (pynng Push0/Pull0 over ipc) beside a plain Unix socket.

A training clock costs a few messages (a push, its acknowledgement, a tick); on a busy
two-core machine the CPU each one costs is what a clock waits for. This measures that
CPU: a sender process sends N messages of ``--bytes`` to a receiver process, one every
``--gap-ms`` (a message per clock, not a stream: every message wakes its receiver, as
in a job), and both processes report the CPU they spent (``getrusage``: all threads,
user and system). The sender's pacing sleep is measured alone in the same process and
taken off. Beside nng, in alternating batches, the same over an ``AF_UNIX``
``SOCK_SEQPACKET`` socket (one kernel copy, no threads of its own).

nng is driven as ``actorml.transport`` drives it: non-blocking sends on the caller's
thread; the receiver waits on the socket's receive fd (``poll``) and then takes every
waiting message without blocking.

    python bench/message_cost.py [--quick] [--json PATH] [--bytes N] [--gap-ms MS]
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import select
import socket
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import bench_parser, fmt, median, print_table, scratch_dir, write_json

KINDS = ("nng", "unix")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _receive_nng(address: str, count: int, report: Connection) -> None:
    import pynng
    from pynng import ffi, lib

    sock = pynng.Pull0(listen=address)
    fd, msg_p = sock.recv_fd, ffi.new("nng_msg **")
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    report.send("ready")
    got = 0
    began = _cpu_s()
    while got < count:
        poller.poll()
        while lib.nng_recvmsg(sock.socket, msg_p, lib.NNG_FLAG_NONBLOCK) == 0:
            lib.nng_msg_free(msg_p[0])
            got += 1
    report.send(_cpu_s() - began)
    sock.close()


def _receive_unix(address: str, count: int, report: Connection) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(address)
    server.listen(1)
    report.send("ready")
    conn, _ = server.accept()
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    got = 0
    began = _cpu_s()
    while got < count:
        poller.poll()
        conn.recv(1 << 20)
        got += 1
    report.send(_cpu_s() - began)
    conn.close()
    server.close()


def _send(kind: str, address: str, count: int, nbytes: int, gap_s: float) -> float:
    """Send ``count`` messages paced ``gap_s`` apart; the CPU spent, pacing excluded."""
    payload = b"x" * nbytes
    if kind == "nng":
        import pynng
        from pynng import ffi, lib

        sock: Any = pynng.Push0()
        sock.dial(address, block=True)

        def send() -> None:
            msg_p = ffi.new("nng_msg **")
            lib.nng_msg_alloc(msg_p, nbytes)
            ffi.memmove(lib.nng_msg_body(msg_p[0]), payload, nbytes)
            while lib.nng_sendmsg(sock.socket, msg_p[0], lib.NNG_FLAG_NONBLOCK) == lib.NNG_EAGAIN:
                time.sleep(0)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(address)

        def send() -> None:
            sock.send(payload)

    time.sleep(0.2)  # the connection settles
    began = _cpu_s()
    for _ in range(count):
        send()
        time.sleep(gap_s)
    spent = _cpu_s() - began
    began = _cpu_s()
    for _ in range(count):
        time.sleep(gap_s)
    pacing = _cpu_s() - began
    time.sleep(0.1)
    sock.close()
    return max(spent - pacing, 0.0)


def _sender(
    kind: str, address: str, count: int, nbytes: int, gap_s: float, out: Connection
) -> None:
    out.send(_send(kind, address, count, nbytes, gap_s))


def one_batch(kind: str, tmp: Path, count: int, nbytes: int, gap_s: float) -> tuple[float, float]:
    """(sender, receiver) CPU microseconds per message of one batch."""
    ctx = mp.get_context("spawn")
    path = tmp / f"{kind}-{time.monotonic_ns()}.sock"
    address = f"ipc://{path}" if kind == "nng" else str(path)
    target = _receive_nng if kind == "nng" else _receive_unix
    mine, theirs = ctx.Pipe()
    receiver = ctx.Process(target=target, args=(address, count, theirs))
    receiver.start()
    assert mine.recv() == "ready"
    back, out = ctx.Pipe()
    sender = ctx.Process(target=_sender, args=(kind, address, count, nbytes, gap_s, out))
    sender.start()
    sent_cpu = back.recv()
    received_cpu = mine.recv()
    for process in (sender, receiver):
        process.join(timeout=60)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return sent_cpu / count * 1e6, received_cpu / count * 1e6


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1000, help="message size (default 1000)")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="pacing (default 1 ms)")
    args = parser.parse_args()
    batches, count = (3, 300) if args.quick else (7, 2000)
    gap_s = args.gap_ms / 1e3
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    with scratch_dir() as tmp:
        for n in range(batches):
            for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                results[kind].append(one_batch(kind, tmp, count, args.bytes, gap_s))
    # The first batch warms up. The JSON has both ends together; the split is printed
    # (the sender's share, its pacing taken off, can come out near 0 for the socket).
    kept = {k: results[k][1:] for k in KINDS}
    figures = {f"cpu_us_per_msg_{k}": median(s + r for s, r in kept[k]) for k in KINDS}
    ratios = {
        "cpu_per_msg_nng_vs_unix": figures["cpu_us_per_msg_nng"] / figures["cpu_us_per_msg_unix"]
    }
    rows = [
        [k, fmt(median(s for s, _ in kept[k])), fmt(median(r for _, r in kept[k])),
         fmt(figures[f"cpu_us_per_msg_{k}"])]
        for k in KINDS
    ]  # fmt: skip
    print_table(
        f"CPU per message ({args.bytes} bytes, one every {args.gap_ms:g} ms; "
        f"median of {batches - 1} batches of {count})",
        ["transport", "sender us", "receiver us", "both us"],
        rows,
    )
    print(f"\nnng / unix socket: {ratios['cpu_per_msg_nng_vs_unix']:.2f}")
    if args.json:
        write_json(args.json, figures, ratios)


if __name__ == "__main__":
    main()
