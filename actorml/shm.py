"""Table slices in shared memory: one writer (a shard), any readers on the same host.

A shard server holds its slice of every parameter table in one *segment*: an anonymous
file made with ``memfd_create`` and mapped into the shard (:class:`SharedSlice`, whose
``values`` are the shard's live tables). A worker on the same host maps the same pages
(:class:`SharedReader`) and copies the rows it needs without a message or a socket.
Across hosts nothing changes: :func:`same_host` tells which path a handle allows.

Layout (every word little-endian u64, every table block 64-byte aligned)::

    0   seq       the seqlock counter: even = stable, odd = the writer is writing,
                  2**64 - 1 = the writer closed the segment
    8   version   the writer's version word (the shard's push count)
    16  magic     b"AMLSHM01"
    24  token     a random number naming this segment (a stale handle cannot
                  open a newer segment that happens to reuse the pid and fd)
    32  size      the segment's size in bytes
    64  meta      (``meta_bytes`` > 0 only) a u64 length, then up to ``meta_bytes``
                  bytes the writer keeps with the rows (a shard: its applied vector)
    64 (or after meta, aligned) table 0 (rows x cols, C order), then table 1 at the
        next multiple of 64 ...

Consistency: a seqlock over the whole segment. The writer makes ``seq`` odd, writes, makes
it even again (:meth:`SharedSlice.writing`); a reader reads ``seq`` (even), copies its
rows and the version, reads ``seq`` again and retries if it changed. So a read returns
whole rows of one version, never half of an update, and readers never block the writer.

Lifetime: the segment is in no filesystem. The kernel frees it when the last process
holding its fd or a mapping of it exits, ``kill -9`` included, so a job leaves nothing
behind in ``/dev/shm`` or anywhere else. A reader opens the writer's fd through
``/proc/<pid>/fd/<fd>`` (same user, same host, same pid namespace), maps it and closes
the fd at once: from then on only its mapping keeps the pages alive.

What a reader does not notice: a writer killed *between* two writes leaves a segment
that still reads as consistent (the last version). Whoever supervises the writer drops
its readers; a writer killed *while writing* leaves ``seq`` odd, and reads then raise
:class:`SegmentUnavailable` once they have waited ``busy_timeout_s``.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import platform
import secrets
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np

__all__ = [
    "SegmentBusy",
    "SegmentHandle",
    "SegmentUnavailable",
    "SharedReader",
    "SharedSlice",
    "host_id",
    "same_host",
]

#: Bytes of the segment header; table blocks start at multiples of :data:`ALIGN`.
HEADER_BYTES = 64
#: Alignment of every table block (a cache line).
ALIGN = 64

_SEQ, _VERSION, _MAGIC, _TOKEN, _SIZE = range(5)
_META_LEN = HEADER_BYTES // 8  # the word after the header: the meta's length
_MAGIC_WORD = int.from_bytes(b"AMLSHM01", "little")
_CLOSED = 2**64 - 1  # odd, so a reader that races close() retries and then sees it
_PREFIX = "actorml-"  # the memfd's name is "actorml-<name>": /proc/*/maps shows it
_MAX_NAME = 200  # memfd names are limited to 249 bytes
# A reader waiting for the writer yields the CPU this many times, then naps: the machine
# may have fewer cores than processes, and a spinning reader would slow the writer.
_SPINS = 100
_NAP_S = 20e-6
# Stores on x86-64 become visible in program order and loads happen in program order
# (TSO), which is all the seqlock needs; other CPUs need fences Python cannot issue.
_TSO_MACHINES = frozenset({"x86_64", "amd64", "AMD64"})
# Before Python 3.13 an mmap object keeps a dup of the fd it maps (closed with it): our
# own fd is closed at once all the same, and the dup goes with close() or the process.
_NO_DUP: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


class SegmentUnavailable(Exception):
    """The segment cannot be used from here: another host, a writer that is gone or
    closed it, a stale handle, or a platform without memfd and x86-64 ordering.

    The caller falls back to asking the shard over a socket.
    """


class SegmentBusy(Exception):
    """The writer held the segment for longer than the reader's ``busy_timeout_s``."""


@attrs.frozen
class SegmentHandle:
    """Everything a reader on the same host needs to map a segment; plain fields only,
    so it can travel in a message.

    Attributes:
        host: the writer's host identity (:func:`host_id`).
        pid: the writer's process id.
        fd: the memfd's number in the writer.
        tables: table names, in segment order.
        rows: rows of each table.
        cols: columns of each table.
        dtype: the numpy dtype string of every table (e.g. ``"<f4"``).
        size: the segment's size in bytes.
        token: the random number written in the segment's header when it was made.
        meta_bytes: the capacity of the meta region (0: none).
    """

    host: str
    pid: int
    fd: int
    tables: list[str]
    rows: list[int]
    cols: list[int]
    dtype: str
    size: int
    token: int
    meta_bytes: int = 0


def host_id() -> str:
    """This host's identity as a segment handle names it: the kernel's boot id and the
    inode of this process's pid namespace (a pid means a process only inside it)."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"


def same_host(handle: SegmentHandle) -> bool:
    """Whether this process could map the segment ``handle`` names (same boot, same pid
    namespace), so its rows can be read from shared memory rather than over a socket."""
    try:
        return handle.host == host_id()
    except OSError:  # no /proc: not Linux, nothing to share
        return False


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _layout(
    rows: list[int], cols: list[int], itemsize: int, meta_bytes: int = 0
) -> tuple[list[int], int]:
    """Each table's byte offset in the segment, and the segment's size."""
    offsets = []
    end = HEADER_BYTES + (_aligned(8 + meta_bytes) if meta_bytes else 0)
    for r, c in zip(rows, cols, strict=True):
        offsets.append(end)
        end += _aligned(r * c * itemsize)
    return offsets, end


def _blocks(
    buffer: mmap.mmap,
    tables: list[str],
    rows: list[int],
    cols: list[int],
    dtype: np.dtype,
    meta_bytes: int = 0,
) -> dict[str, np.ndarray]:
    """Each table as a (rows, cols) array over the mapping (read-only if it is).

    ``np.frombuffer`` (not ``np.ndarray(buffer=...)``) because its arrays hold an export
    of the mapping: ``mmap.close()`` then refuses to unmap pages a live array still
    points at (and the mapping goes with the last array) instead of leaving it dangling.
    """
    offsets, _ = _layout(rows, cols, dtype.itemsize, meta_bytes)
    return {
        t: np.frombuffer(buffer, dtype=dtype, count=r * c, offset=o).reshape(r, c)
        for t, r, c, o in zip(tables, rows, cols, offsets, strict=True)
    }


def _header(buffer: mmap.mmap) -> memoryview:
    """The header as u64 words.

    Why this is enough for the seqlock: ``words[i]`` and ``words[i] = v`` are each one
    aligned 8-byte load or store that CPython's memoryview code makes from the mapped
    page at the moment of the call (atomic on x86-64; Python keeps nothing in registers
    between two bytecodes, and no compiler moves memory accesses across the opaque
    calls into CPython and numpy that separate them). x86-64 keeps loads in program
    order and stores in program order (Intel SDM vol. 3, 8.2.2; the stores of a string
    copy are ordered with the stores around it, 8.2.4, and glibc's memcpy ends its
    non-temporal stores with ``sfence``), so the writer's [seq odd, rows, seq even]
    reach other cores in that order and a reader's [seq, rows, version, seq] happen in
    that order: the two rules Linux's seqlock spends ``smp_wmb``/``smp_rmb`` on, which
    are compiler-only barriers on x86-64.
    """
    return memoryview(buffer)[: HEADER_BYTES + 8].cast("Q")


@attrs.define(eq=False)
class SharedSlice:
    """The writer of a segment (in the shard): its tables live in shared memory.

    Make one with :meth:`create`. Change ``values`` only inside :meth:`writing`, from
    one thread at a time: a write outside it can be read half done.

    Attributes:
        name: the segment's name (the memfd shows as ``memfd:actorml-<name>``).
        values: each table as a (rows, cols) view into the segment: the shard's live
            tables. Emptied by :meth:`close`.
    """

    name: str
    values: dict[str, np.ndarray]
    _fd: int
    _map: mmap.mmap | None
    _words: memoryview
    _handle: SegmentHandle
    _writing: bool = attrs.field(default=False, init=False)

    @classmethod
    def create(
        cls, name: str, tables: dict[str, np.ndarray], *, meta_bytes: int = 0
    ) -> SharedSlice:
        """Make a segment for ``tables`` (memfd + ftruncate + mmap) and copy them in.

        Args:
            name: a short label for the segment (in ``/proc/<pid>/maps``).
            tables: table name -> 2-D numeric array; all of one dtype.
            meta_bytes: room for this many bytes of meta data kept with the rows
                (:meth:`set_meta`, :meth:`SharedReader.read_with_meta`).

        Returns:
            The writer, at version 0.

        Raises:
            SegmentUnavailable: this platform cannot share a segment (not Linux, or not
                x86-64, whose memory order the seqlock relies on).
            ValueError: a bad name, a table that is not 2-D and numeric, or tables of
                different dtypes.
        """
        if not hasattr(os, "memfd_create"):
            raise SegmentUnavailable("shared segments need Linux (os.memfd_create)")
        if platform.machine() not in _TSO_MACHINES:
            raise SegmentUnavailable(
                f"shared segments need x86-64's memory order (this machine is "
                f"{platform.machine()}): read through the shard"
            )
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise ValueError(f"bad segment name {name!r} (1 to {_MAX_NAME} printable chars)")
        arrays = {t: np.asarray(a) for t, a in tables.items()}
        dtypes = {a.dtype for a in arrays.values()}
        if len(dtypes) > 1:
            raise ValueError(
                f"tables of one segment share one dtype (got {sorted(map(str, dtypes))})"
            )
        dtype = np.dtype(dtypes.pop() if dtypes else np.float32).newbyteorder("=")
        for t, a in arrays.items():
            if a.ndim != 2 or a.dtype.kind not in "biuf":
                raise ValueError(f"table {t!r} is {a.dtype} of shape {a.shape}: need 2-D numeric")
        names = list(arrays)
        rows = [a.shape[0] for a in arrays.values()]
        cols = [a.shape[1] for a in arrays.values()]
        if meta_bytes < 0:
            raise ValueError(f"meta_bytes must be >= 0, got {meta_bytes}")
        _, size = _layout(rows, cols, dtype.itemsize, meta_bytes)
        fd = os.memfd_create(_PREFIX + name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            # Nobody (a reader reopening the fd for writing included) may shrink the file
            # under a mapping, which would turn a read into SIGBUS.
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            buffer = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, **_NO_DUP)
            values = _blocks(buffer, names, rows, cols, dtype, meta_bytes)
            for t, a in arrays.items():
                values[t][...] = a
            words = _header(buffer)
        except BaseException:
            os.close(fd)
            raise
        token = secrets.randbits(63)  # fits a signed 64-bit field anywhere it travels
        words[_MAGIC], words[_TOKEN], words[_SIZE] = _MAGIC_WORD, token, size
        handle = SegmentHandle(
            host=host_id(), pid=os.getpid(), fd=fd, tables=names, rows=rows, cols=cols,
            dtype=dtype.str, size=size, token=token, meta_bytes=meta_bytes,
        )  # fmt: skip
        return cls(name, values, fd, buffer, words, handle)

    def handle(self) -> SegmentHandle:
        """What a reader needs to map this segment (send it in a message)."""
        if self._fd < 0:
            raise ValueError(f"segment {self.name!r} is closed")
        return self._handle

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """``with seg.writing(): ...`` brackets every change to ``values``.

        The seqlock counter is odd inside and even again on the way out, also when the
        body raises; readers that overlap the body retry. Not reentrant.

        Raises:
            RuntimeError: already inside ``writing()``.
            ValueError: the segment is closed.
        """
        if self._writing:
            raise RuntimeError(f"segment {self.name!r}: writing() is not reentrant")
        if self._fd < 0:
            raise ValueError(f"segment {self.name!r} is closed")
        seq = self._words[_SEQ]
        self._words[_SEQ] = seq + 1
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
            self._words[_SEQ] = seq + 2

    @property
    def version(self) -> int:
        """The version word readers get with their rows (set by :meth:`set_version`)."""
        return int(self._words[_VERSION])

    def set_version(self, version: int) -> None:
        """Set the version word (inside :meth:`writing`, so readers see it with the rows
        it belongs to).

        Raises:
            RuntimeError: called outside ``writing()``.
            ValueError: ``version`` does not fit in 64 unsigned bits.
        """
        if not self._writing:
            raise RuntimeError(f"segment {self.name!r}: set_version() outside writing()")
        if not 0 <= version < 2**64:
            raise ValueError(f"version {version} does not fit in 64 unsigned bits")
        self._words[_VERSION] = version

    def set_meta(self, data: bytes) -> None:
        """Keep ``data`` with the rows (inside :meth:`writing`, like the version).

        Raises:
            RuntimeError: called outside ``writing()``.
            ValueError: ``data`` is longer than the segment's ``meta_bytes``.
        """
        if not self._writing:
            raise RuntimeError(f"segment {self.name!r}: set_meta() outside writing()")
        room = self._handle.meta_bytes
        if not room:
            raise ValueError(f"segment {self.name!r} was made without room for meta")
        if len(data) > room:
            raise ValueError(f"meta of {len(data)} bytes does not fit in {room}")
        assert self._map is not None
        self._map[HEADER_BYTES + 8 : HEADER_BYTES + 8 + len(data)] = data
        self._words[_META_LEN] = len(data)

    def close(self) -> None:
        """Tell readers the segment is closed, unmap it and close the fd (idempotent).

        Readers that still map it get :class:`SegmentUnavailable` from their next read.
        Arrays of ``values`` the caller still holds keep the mapping (not the fd) alive
        until they are dropped.
        """
        if self._fd < 0:
            return
        if self._writing:
            raise RuntimeError(f"segment {self.name!r}: close() inside writing()")
        self._words[_SEQ] = _CLOSED
        self._words.release()
        self.values = {}
        _unmap(self._map)
        self._map = None
        os.close(self._fd)
        self._fd = -1


def _unmap(buffer: mmap.mmap | None) -> None:
    """Unmap now, or, while arrays over the mapping live on, when the last one goes."""
    if buffer is not None:
        try:
            buffer.close()
        except BufferError:
            pass  # dropping our reference leaves the mapping to its arrays


def _pidfd(pid: int) -> int:
    """A pidfd for process ``pid`` (readable once it exits), or -1 where the kernel or
    Python offers none, or the process is gone."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of its stat), or None if it is gone:
    a pid that comes back with another start time is another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


@attrs.define(eq=False)
class SharedReader:
    """A reader of a segment (in a worker on the writer's host).

    Make one with :meth:`open`. Reads copy: what they return stays valid whatever the
    writer does next. Not for concurrent use by several threads (``retries`` would
    miscount; the reads themselves are safe).

    Attributes:
        handle: the handle it was opened with.
        busy_timeout_s: how long a read retries while the writer writes before it
            raises :class:`SegmentBusy`.
        retries: how many times reads found the writer writing and started again.
    """

    handle: SegmentHandle
    busy_timeout_s: float
    _map: mmap.mmap | None
    _words: memoryview
    _tables: dict[str, np.ndarray]
    _writer_start: str | None
    retries: int = attrs.field(default=0, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _pidfd: int = attrs.field(default=-1, init=False)

    @classmethod
    def open(cls, handle: SegmentHandle, *, busy_timeout_s: float = 1.0) -> SharedReader:
        """Map the segment ``handle`` names, read-only.

        Raises:
            SegmentUnavailable: the handle is from another host, the writer (or its
                segment) is gone, the handle is stale, or its sizes do not match.
        """
        here = host_id()
        if handle.host != here:
            raise SegmentUnavailable(
                f"segment of pid {handle.pid} is on another host ({handle.host}; this "
                f"host is {here}): read its rows through the shard"
            )
        dtype = np.dtype(handle.dtype)
        counts = {len(handle.tables), len(handle.rows), len(handle.cols)}
        if len(counts) != 1:
            raise SegmentUnavailable(
                f"handle of pid {handle.pid} lists {len(handle.tables)} tables, "
                f"{len(handle.rows)} row counts and {len(handle.cols)} col counts"
            )
        _, size = _layout(handle.rows, handle.cols, dtype.itemsize, handle.meta_bytes)
        if size != handle.size:
            raise SegmentUnavailable(
                f"handle of pid {handle.pid}: its tables take {size} bytes, "
                f"not the {handle.size} it says"
            )
        buffer = _map_writer_fd(handle)
        words = _header(buffer)
        if (words[_MAGIC], words[_TOKEN], words[_SIZE]) != (_MAGIC_WORD, handle.token, size):
            words.release()
            buffer.close()
            raise SegmentUnavailable(
                f"fd {handle.fd} of pid {handle.pid} is another segment now "
                f"(the handle is stale): ask the shard for a new one"
            )
        pidfd = _pidfd(handle.pid)
        start = _process_start(handle.pid)  # after the pidfd: it names this very process
        tables = _blocks(buffer, handle.tables, handle.rows, handle.cols, dtype, handle.meta_bytes)
        reader = cls(handle, busy_timeout_s, buffer, words, tables, start)
        reader._pidfd = pidfd
        return reader

    def read(self, table: str, ids: np.ndarray | None) -> tuple[np.ndarray, int]:
        """A copy of rows ``ids`` of ``table`` and the version they are of.

        Args:
            table: the table's name.
            ids: local row indices into this slice (integers), or None for all rows.

        Returns:
            The rows (a new ``(len(ids), cols)`` array) and the writer's version word.

        Raises:
            KeyError: no such table. IndexError: an id outside the slice.
            SegmentBusy: the writer kept writing for ``busy_timeout_s``.
            SegmentUnavailable: the writer closed the segment or died while writing.
        """
        (rows,), version = self.read_many([table], [ids])
        return rows, version

    def read_many(
        self, tables: list[str], ids: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], int]:
        """Rows of several tables, all of ONE version (one seqlock section).

        Args and errors as :meth:`read`, one ``ids`` per table.
        """
        rows, version, _ = self._read(tables, ids, meta=False)
        return rows, version

    def read_with_meta(
        self, tables: list[str], ids: list[np.ndarray | None]
    ) -> tuple[list[np.ndarray], int, bytes]:
        """As :meth:`read_many`, and the meta data the writer kept with those rows."""
        return self._read(tables, ids, meta=True)

    def _read(
        self, tables: list[str], ids: list[np.ndarray | None], *, meta: bool
    ) -> tuple[list[np.ndarray], int, bytes]:
        if len(tables) != len(ids):
            raise ValueError(f"{len(tables)} tables but {len(ids)} id arrays")
        plan = [self._plan(t, i) for t, i in zip(tables, ids, strict=True)]
        words = self._words
        data = b""
        retries = 0
        started = 0.0
        while True:
            seq = words[_SEQ]
            if not seq & 1:
                for block, rows, out in plan:
                    if rows is None:
                        np.copyto(out, block)
                    else:  # ids are checked: "clip" copies without numpy's extra buffer
                        np.take(block, rows, axis=0, out=out, mode="clip")
                version = words[_VERSION]
                if meta and self.handle.meta_bytes:
                    length = min(words[_META_LEN], self.handle.meta_bytes)
                    assert self._map is not None
                    data = self._map[HEADER_BYTES + 8 : HEADER_BYTES + 8 + length]
                if words[_SEQ] == seq:
                    self.retries += retries
                    return [out for _, _, out in plan], version, data
            elif seq == _CLOSED:
                self.retries += retries
                raise SegmentUnavailable(
                    f"the writer (pid {self.handle.pid}) closed segment {self.handle.tables}"
                )
            retries += 1
            if retries == 1:
                started = time.monotonic()
            elif time.monotonic() - started > self.busy_timeout_s:
                self.retries += retries
                self._raise_busy(retries, time.monotonic() - started)
            if retries <= _SPINS:
                os.sched_yield()
            else:
                time.sleep(_NAP_S)

    def writer_alive(self) -> bool:
        """Whether the process that wrote the segment still runs (a poll of a pidfd,
        about a microsecond, where the kernel offers one; else its start time)."""
        if self._pidfd >= 0:
            return not select.select([self._pidfd], [], [], 0)[0]  # readable: it exited
        start = _process_start(self.handle.pid)
        return start is not None and start == self._writer_start

    def close(self) -> None:
        """Unmap the segment (idempotent). Arrays returned by reads stay valid."""
        if self._closed:
            return
        self._closed = True
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._tables = {}
        self._words.release()
        _unmap(self._map)
        self._map = None

    def _plan(
        self, table: str, ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The block to copy from, the checked row ids and the array to copy into."""
        if self._closed:
            raise ValueError(f"the reader of pid {self.handle.pid}'s segment is closed")
        try:
            block = self._tables[table]
        except KeyError:
            known = ", ".join(self._tables)
            raise KeyError(f"no table {table!r} in this segment (it holds: {known})") from None
        if ids is None:
            return block, None, np.empty_like(block)
        rows = np.asarray(ids)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise IndexError(f"row ids of {table!r} must be a 1-D integer array")
        rows = rows.astype(np.intp, copy=False)
        if rows.size and (rows.min() < 0 or rows.max() >= len(block)):
            raise IndexError(
                f"row ids of {table!r} out of range 0..{len(block) - 1} "
                f"(got {rows.min()}..{rows.max()})"
            )
        return block, rows, np.empty((len(rows), block.shape[1]), dtype=block.dtype)

    def _raise_busy(self, retries: int, waited: float) -> None:
        pid = self.handle.pid
        if not self.writer_alive():
            raise SegmentUnavailable(f"the writer (pid {pid}) died while writing its segment")
        raise SegmentBusy(
            f"the writer (pid {pid}) kept its segment busy for {waited:.2f} s "
            f"({retries} retries): hold writing() for shorter spells"
        )


def _map_writer_fd(handle: SegmentHandle) -> mmap.mmap:
    """Map the writer's memfd read-only through /proc, closing the fd we opened."""
    pid, fd = handle.pid, handle.fd
    path = f"/proc/{pid}/fd/{fd}"
    try:
        target = os.readlink(path)
    except FileNotFoundError:
        raise SegmentUnavailable(f"the writer (pid {pid}) or its fd {fd} is gone") from None
    except PermissionError:
        raise SegmentUnavailable(
            f"cannot see the fds of pid {pid}: the writer runs as another user "
            f"(or made itself undumpable)"
        ) from None
    if not target.startswith(f"/memfd:{_PREFIX}"):
        raise SegmentUnavailable(
            f"fd {fd} of pid {pid} is {target!r}, no segment (the handle is stale)"
        )
    try:
        # O_NONBLOCK: should the fd have become a fifo since readlink, open must not hang
        own = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        raise SegmentUnavailable(f"cannot open fd {fd} of pid {pid}: {error.strerror}") from None
    try:
        actual = os.fstat(own).st_size
        if actual != handle.size:
            raise SegmentUnavailable(
                f"segment of pid {pid} is {actual} bytes, not the {handle.size} "
                f"its handle says (the handle is stale)"
            )
        if not fcntl.fcntl(own, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
            raise SegmentUnavailable(f"fd {fd} of pid {pid} is not a sealed segment")
        return mmap.mmap(own, handle.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, **_NO_DUP)
    finally:
        os.close(own)
