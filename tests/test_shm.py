"""Shared-memory table segments: one writer, readers in other processes on the same host.

The processes are started with multiprocessing's "spawn" context (a fresh interpreter that
imports this module for its target) and sequenced by pipes: every wait has a deadline.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from actorml.shm import (
    SegmentBusy,
    SegmentHandle,
    SegmentUnavailable,
    SharedReader,
    SharedSlice,
    same_host,
)
from tests.processes import segment_holders

SPAWN = multiprocessing.get_context("spawn")
DEADLINE_S = 120.0  # generous: four engineers share two cores


def _recv(conn: Connection, deadline_s: float = DEADLINE_S) -> Any:
    """The next message from a child, or a failure naming the wait that timed out."""
    if not conn.poll(deadline_s):
        raise AssertionError(f"no word from the child within {deadline_s} s")
    return conn.recv()


Spawn = Callable[..., tuple[BaseProcess, Connection]]


@pytest.fixture(name="spawn")
def _spawn() -> Iterator[Spawn]:
    """Start ``target(conn, *args)`` in a spawned process; all are killed (by pid) and
    reaped afterwards, so none outlives the test."""
    started: list[tuple[BaseProcess, Connection]] = []

    def spawn(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Connection]:
        ours, theirs = SPAWN.Pipe()
        process = SPAWN.Process(target=target, args=(theirs, *args), daemon=True)
        process.start()
        theirs.close()
        started.append((process, ours))
        return process, ours

    yield spawn
    for process, conn in started:
        conn.close()
        if process.is_alive():
            process.kill()
        process.join(DEADLINE_S)
        assert process.exitcode is not None, f"child {process.pid} did not exit"


# --- what the children run (module level, so that "spawn" can import them) ------------


def _writer(conn: Connection, name: str, tables: dict[str, np.ndarray]) -> None:
    """Make a segment, send its handle, then apply ("write", table, ids, rows, version)
    commands until the pipe closes."""
    seg = SharedSlice.create(name, tables)
    conn.send(seg.handle())
    while True:
        try:
            _, table, ids, rows, version = conn.recv()
        except EOFError:
            return
        with seg.writing():
            seg.values[table][ids] = rows
            seg.set_version(version)
        conn.send("written")


def _reader(conn: Connection, handle: SegmentHandle, tables: list[str], ids: list[Any]) -> None:
    """Open the handle, send back one read_many and each table's read, then hold the
    mapping (without the fd) until the pipe closes."""
    reader = SharedReader.open(handle)
    both = reader.read_many(tables, ids)
    alone = [reader.read(t, i) for t, i in zip(tables, ids, strict=True)]
    conn.send((both, alone))
    try:
        conn.recv()
    except EOFError:
        pass
    reader.close()


def _writer_stuck_writing(conn: Connection) -> None:
    """Make a segment, send its handle, enter writing() and stay there."""
    seg = SharedSlice.create("stuck", _tables(seed=6))
    conn.send(seg.handle())
    with seg.writing():
        conn.send("inside")
        conn.recv()


def _storm_writer(conn: Connection, shapes: dict[str, tuple[int, int]]) -> None:
    """Fill every table with v at version v, for v = 1, 2, ... until told to stop; then
    send how many versions were written."""
    seg = SharedSlice.create("storm", {t: np.zeros(s) for t, s in shapes.items()})
    conn.send(seg.handle())
    assert _recv(conn) == "go"
    version = 0
    while not conn.poll():
        version += 1
        with seg.writing():
            for values in seg.values.values():
                values[...] = version
            seg.set_version(version)
    conn.send(version)
    seg.close()


def _storm_reader(conn: Connection, handle: SegmentHandle, least_retries: int) -> None:
    """Read whole tables (read and read_many) while the writer writes; count reads that
    are not all one value (torn) or whose value is not their version (mismatched)."""
    reader = SharedReader.open(handle, busy_timeout_s=30.0)
    conn.send("ready")
    assert _recv(conn) == "go"
    reads = torn = mismatched = 0
    versions: set[int] = set()
    # The writer fills tables in order and rows first to last; reading against that
    # order makes a copy that overlaps a write cross it, rather than run ahead of it.
    backwards = list(reversed(handle.tables))
    last_first = np.arange(handle.rows[0])[::-1]
    # Stop once the reads have provably overlapped writes, or after a generous bound.
    # (500 reads retry some 10,000 times against a writer in a tight loop; 2000 took
    # the test from 1.5 to 45 s, as the two processes happened to share the cores.)
    while reads < 50_000 and (reads < 500 or reader.retries < least_retries):
        if reads % 2:
            outs, version = reader.read_many(backwards, [None] * len(backwards))
        else:
            out, version = reader.read(handle.tables[0], last_first)
            outs = [out]
        reads += 1
        versions.add(version)
        values = np.concatenate([o.ravel() for o in outs])
        if values.min() != values.max():
            torn += 1
        elif values[0] != version:
            mismatched += 1
    conn.send(
        {"reads": reads, "torn": torn, "mismatched": mismatched,
         "versions": len(versions), "retries": reader.retries}
    )  # fmt: skip
    reader.close()


# --- what the parent checks ------------------------------------------------------------


def _dev_shm() -> dict[str, int]:
    """Every file under /dev/shm and its size."""
    found = {}
    for path in Path("/dev/shm").rglob("*"):
        try:
            found[str(path)] = path.stat().st_size
        except OSError:
            continue
    return found


def _tables(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(size=(1000, 37)).astype(np.float32),
        "b": rng.normal(size=(3, 37)).astype(np.float32),
    }


class TestAcrossProcesses:
    def test_round_trip(self, spawn: Spawn) -> None:
        """Rows a writer process writes are read back equal, with their version, by a
        reader process that opened the segment by its handle."""
        tables = _tables(seed=1)
        _, writer = spawn(_writer, "trip", tables)
        handle = _recv(writer)
        ids = np.array([999, 0, 17, 17, 500])
        update = np.full((3, 37), 7.5, dtype=np.float32)
        writer.send(("write", "w", np.array([0, 17, 998]), update, 42))
        assert _recv(writer) == "written"
        expected = tables["w"].copy()
        expected[[0, 17, 998]] = update

        _, reader = spawn(_reader, handle, ["w", "b"], [ids, None])
        (both, version), alone = _recv(reader)
        assert version == 42
        np.testing.assert_array_equal(both[0], expected[ids])
        np.testing.assert_array_equal(both[1], tables["b"])
        assert [v for _, v in alone] == [42, 42]
        np.testing.assert_array_equal(alone[0][0], expected[ids])
        np.testing.assert_array_equal(alone[1][0], tables["b"])

    def test_no_torn_read(self, spawn: Spawn) -> None:
        """While a writer process rewrites whole tables version after version, every read
        of another process is all one value, and that value is the version it came with
        (read_many too, across two tables)."""
        _, writer = spawn(_storm_writer, {"a": (256, 64), "b": (64, 16)})
        handle = _recv(writer)
        _, reader = spawn(_storm_reader, handle, 500)
        assert _recv(reader) == "ready"
        writer.send("go")
        reader.send("go")
        stats = _recv(reader, deadline_s=600)
        writer.send("stop")
        written = _recv(writer)
        assert stats["torn"] == 0, stats
        assert stats["mismatched"] == 0, stats
        # The reads really raced the writes: many versions seen, and reads retried.
        assert stats["versions"] > 10 and written >= stats["versions"], stats
        assert stats["retries"] > 0, stats

    def test_never_outlives_its_processes(self, spawn: Spawn) -> None:
        """After kill -9 of the writer and a reader, no process of ours maps or holds the
        segment, nothing was made under /dev/shm, and its handle no longer opens."""
        before = _dev_shm()
        name = f"kill-{uuid.uuid4().hex[:12]}"
        label = f"memfd:actorml-{name}"
        writer_process, writer = spawn(_writer, name, _tables(seed=2))
        handle = _recv(writer)
        reader_process, reader = spawn(_reader, handle, ["w"], [None])
        (_, version), _ = _recv(reader)
        assert version == 0
        # The scan sees the segment: the writer maps it and holds its fd, the reader maps it.
        held = set(segment_holders(label))
        assert {f"{writer_process.pid}:maps", f"{writer_process.pid}:fd"} <= held
        assert f"{reader_process.pid}:maps" in held

        for process in (writer_process, reader_process):
            process.kill()  # SIGKILL, by pid
            process.join(DEADLINE_S)
            assert process.exitcode == -9

        assert segment_holders(label) == []
        created = {p: s for p, s in _dev_shm().items() if before.get(p) != s}
        assert not {p for p, s in created.items() if name in p or s >= handle.size}, created
        with pytest.raises(SegmentUnavailable, match=r"^the writer \(pid \d+\) .*is gone$"):
            SharedReader.open(handle)

    def test_a_writer_killed_while_writing(self, spawn: Spawn) -> None:
        """A reader whose writer was killed inside writing() gets SegmentUnavailable
        naming that, not SegmentBusy, once it has waited."""
        process, writer = spawn(_writer_stuck_writing)
        reader = SharedReader.open(_recv(writer), busy_timeout_s=0.1)
        try:
            assert _recv(writer) == "inside"
            with pytest.raises(SegmentBusy):
                reader.read("w", None)
            assert reader.writer_alive()
            process.kill()
            process.join(DEADLINE_S)
            assert not reader.writer_alive()
            with pytest.raises(SegmentUnavailable, match=r"^the writer \(pid \d+\) died while"):
                reader.read("w", None)
        finally:
            reader.close()


@pytest.fixture(name="segment")
def _segment() -> Iterator[SharedSlice]:
    seg = SharedSlice.create("t", _tables(seed=3))
    yield seg
    seg.close()


class TestInOneProcess:
    def test_another_hosts_handle(self, segment: SharedSlice) -> None:
        """A handle from another host is refused with a message that says so."""
        handle = attrs.evolve(segment.handle(), host="0f0e0d0c-boot/4026531836")
        assert same_host(segment.handle()) and not same_host(handle)
        with pytest.raises(SegmentUnavailable, match=r"^segment of pid \d+ is on another host "):
            SharedReader.open(handle)

    def test_sizes_must_match(self, segment: SharedSlice) -> None:
        """A handle whose tables do not add up to its size, or whose size is not the
        segment's, is refused."""
        handle = segment.handle()
        with pytest.raises(SegmentUnavailable, match=r"its tables take \d+ bytes, not the 64"):
            SharedReader.open(attrs.evolve(handle, size=64))
        aligned = lambda n: -(-n // 64) * 64  # noqa: E731
        size = 64 + aligned(1100 * 37 * 4) + aligned(3 * 37 * 4)
        bigger = attrs.evolve(handle, rows=[1100, 3], size=size)
        with pytest.raises(SegmentUnavailable, match=r"is \d+ bytes, not the \d+ its handle says"):
            SharedReader.open(bigger)

    def test_a_stale_handle_meets_a_new_segment(self, segment: SharedSlice) -> None:
        """A handle of a closed segment does not open a new one that reuses its fd."""
        handle = segment.handle()
        segment.close()
        again = SharedSlice.create("t", _tables(seed=4))
        try:
            assert again.handle().fd == handle.fd
            with pytest.raises(SegmentUnavailable, match=r"another segment now"):
                SharedReader.open(handle)
        finally:
            again.close()

    def test_closing_the_writer_fails_reads(self, segment: SharedSlice) -> None:
        """A reader's next read after the writer closed raises SegmentUnavailable."""
        reader = SharedReader.open(segment.handle())
        try:
            segment.close()
            with pytest.raises(SegmentUnavailable, match=r"^the writer \(pid \d+\) closed"):
                reader.read("w", None)
        finally:
            reader.close()

    def test_a_read_waits_for_the_writer_then_gives_up(self, segment: SharedSlice) -> None:
        """Inside writing() reads retry and then raise SegmentBusy; after it they read the
        new rows and version, also when the body raised."""
        reader = SharedReader.open(segment.handle(), busy_timeout_s=0.05)
        try:
            with pytest.raises(ZeroDivisionError), segment.writing():
                segment.values["w"][5] = 3.0
                segment.set_version(9)
                with pytest.raises(SegmentBusy, match=r"kept its segment busy"):
                    reader.read("w", np.array([5]))
                assert reader.retries > 0
                1 / 0  # noqa: B018
            rows, version = reader.read("w", np.array([5]))
            assert version == 9 and (rows == 3.0).all()
        finally:
            reader.close()

    def test_close_leaves_nothing_behind(self) -> None:
        """Once the writer and a reader in this process close, the process neither maps
        the segment nor holds an fd to it, though a view of values outlives close()."""
        name = f"close-{uuid.uuid4().hex[:12]}"
        label = f"memfd:actorml-{name}"
        segment = SharedSlice.create(name, _tables(seed=5))
        reader = SharedReader.open(segment.handle())
        kept = segment.values["b"]
        assert f"{os.getpid()}:maps" in segment_holders(label)
        reader.close()
        segment.close()
        np.testing.assert_array_equal(kept, _tables(seed=5)["b"])
        assert segment_holders(label) == [f"{os.getpid()}:maps"]  # only the mapping behind kept
        del kept
        assert segment_holders(label) == []

    def test_misuse(self, segment: SharedSlice) -> None:
        """Bad ids, unknown tables, and versions set outside writing() are refused."""
        reader = SharedReader.open(segment.handle())
        try:
            with pytest.raises(IndexError, match=r"out of range 0\.\.999 \(got -1\.\.3\)"):
                reader.read("w", np.array([3, -1]))
            with pytest.raises(IndexError, match=r"out of range"):
                reader.read("w", np.array([1000]))
            with pytest.raises(KeyError, match=r"no table 'v'"):
                reader.read("v", None)
            with pytest.raises(RuntimeError, match=r"outside writing"):
                segment.set_version(1)
            with pytest.raises(RuntimeError, match=r"not reentrant"):  # noqa: SIM117
                with segment.writing(), segment.writing():
                    pass
        finally:
            reader.close()


def test_the_docs_examples_run() -> None:
    """The examples of docs/shared-memory.md run, in order, as one program."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "shared-memory.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    assert len(blocks) == 2
    namespace: dict[str, Any] = {}
    exec("\n".join(blocks), namespace)
    np.testing.assert_array_equal(namespace["rows"], np.full((2, 10), 0.5, np.float32))
    assert namespace["version"] == 1


def test_meta_travels_with_the_rows() -> None:
    """Meta data set inside writing() is read back with the rows of that write; a
    segment without a meta region refuses it (it would overwrite a table)."""
    table = np.zeros((4, 3))
    writer = SharedSlice.create("meta", {"w": table}, meta_bytes=64)
    plain = SharedSlice.create("plain", {"w": table})
    reader = SharedReader.open(writer.handle())
    try:
        for version in (1, 2):
            with writer.writing():
                writer.values["w"][...] = version
                writer.set_version(version)
                writer.set_meta(f"applied {version}".encode())
            (rows,), got, meta = reader.read_with_meta(["w"], [None])
            assert (rows == version).all() and got == version
            assert meta == f"applied {version}".encode()
        with writer.writing(), pytest.raises(ValueError, match="does not fit in 64"):
            writer.set_meta(b"x" * 65)
        with plain.writing(), pytest.raises(ValueError, match="without room for meta"):
            plain.set_meta(b"")
        assert (plain.values["w"] == 0).all()
    finally:
        reader.close()
        writer.close()
        plain.close()
