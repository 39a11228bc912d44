"""Reading big files fast: npz members mapped in place, rows gathered in one pass, and
a compiled libsvm parser.

- :func:`npz_arrays`: the arrays of an ``.npz`` file; members stored uncompressed (what
  ``np.savez`` writes) are memory-mapped where they lie inside the zip, so nothing is
  read until used and no CRC pass is made; compressed members are read as usual.
- :func:`gather_rows`: ``X[order]`` as float64, C-contiguous, in one compiled pass that
  also counts the non-finite values (the check a ``Dataset`` makes), so a float32 file
  is shuffled, widened and checked while it is read once.
- :func:`parse_libsvm`: a svmlight/libsvm file parsed by a compiled loop over its
  bytes (mapped, not read into Python objects), with scikit-learn's conventions: an
  optional ``qid:`` is skipped, ``#`` starts a comment, indices are one-based unless
  some index is 0.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numba
import numpy as np

__all__ = ["backing_file", "gather_rows", "loading_into", "npz_arrays", "parse_libsvm"]

_INTO: ContextVar[Path | None] = ContextVar("actorml_loading_into", default=None)


@contextmanager
def loading_into(directory: Path) -> Iterator[None]:
    """Within this block, :func:`gather_rows` calls given a ``name`` write their result
    straight into ``DIRECTORY/NAME.npy`` (a file-backed array) instead of memory: the
    staging of a dataset (see :mod:`actorml.models.staging`) then has nothing to copy."""
    token = _INTO.set(Path(directory))
    try:
        yield
    finally:
        _INTO.reset(token)


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip local file header (30 bytes)


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz file at ``path``, by name; stored members mapped read-only.

    Raises:
        ValueError: not a readable npz file, or a member holds Python objects.
    """
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            raw.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
            raw.seek(start)
            version = np.lib.format.read_magic(raw)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
            if dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects; save numeric arrays")
            if int(np.prod(shape)) == 0:
                out[name] = np.zeros(shape, dtype=dtype)
                continue
            out[name] = np.asarray(
                np.memmap(
                    path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                    order="F" if fortran else "C",
                )
            )  # fmt: skip
    return out


def gather_rows(
    X: np.ndarray, order: np.ndarray, name: str | None = None
) -> tuple[np.ndarray, int]:
    """``(X[order] as float64 C-contiguous, how many of its values are not finite)``.

    ``name``: inside :func:`loading_into`, the result is the file ``NAME.npy`` there.
    """
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {X.shape}")
    order = np.ascontiguousarray(order, dtype=np.int64)
    shape = (order.size, X.shape[1])
    into = _INTO.get()
    if into is not None and name is not None and order.size:
        out = np.asarray(
            np.lib.format.open_memmap(
                into / f"{name}.npy", mode="w+", dtype=np.float64, shape=shape
            )
        )
    else:
        out = np.empty(shape, dtype=np.float64)
    if X.dtype.kind not in "fiu" or not X.flags.c_contiguous:
        src = np.ascontiguousarray(X, dtype=np.float64)
    else:
        src = X
    bad = _gather(src, order, out)
    return out, int(bad)


def backing_file(array: np.ndarray) -> Path | None:
    """The file ``array`` is a whole view of (a ``gather_rows`` result written into a
    file), or None."""
    base: object = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if isinstance(base, np.memmap) and base.filename and base.size == array.size:
        return Path(base.filename)
    return None


@numba.njit(nogil=True, cache=True)
def _gather(src, order, out):
    bad = 0
    cols = src.shape[1]
    for i in range(order.size):
        row = order[i]
        for j in range(cols):
            v = np.float64(src[row, j])
            out[i, j] = v
            if not np.isfinite(v):
                bad += 1
    return bad


def parse_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels float64, indptr int64, indices int64 as written, values float64)``.

    Raises:
        ValueError: a malformed line, named by its number.
    """
    with open(path, "rb") as stream:
        size = Path(path).stat().st_size
        if size == 0:
            empty = np.zeros(0)
            return empty, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), empty
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buf = np.frombuffer(mapped, dtype=np.uint8)
            try:
                rows, nnz = _count(buf)
                labels = np.empty(rows, dtype=np.float64)
                indptr = np.zeros(rows + 1, dtype=np.int64)
                indices = np.empty(nnz, dtype=np.int64)
                values = np.empty(nnz, dtype=np.float64)
                n_rows, n_nnz, bad_line = _parse(buf, labels, indptr, indices, values)
            finally:
                del buf  # the map closes only once no array views it
    if bad_line >= 0:
        raise ValueError(
            f"libsvm file {str(path)!r}, line {bad_line + 1}: expected "
            "'label [qid:n] index:value ...' with integer indices and numeric values"
        )
    return labels[:n_rows], indptr[: n_rows + 1], indices[:n_nnz], values[:n_nnz]


@numba.njit(nogil=True, cache=True)
def _count(buf):
    """Upper bounds: lines (rows) and colons (entries) in the file."""
    rows = 1
    colons = 0
    for b in buf:
        if b == 10:
            rows += 1
        elif b == 58:
            colons += 1
    return rows, colons


_POW10 = np.array([10.0**k for k in range(23)])


@numba.njit(nogil=True, cache=True)
def _number(buf, i, end):
    """Parse a decimal number at ``buf[i:]``; returns ``(value, next index, ok)``."""
    n = end
    neg = False
    if i < n and (buf[i] == 45 or buf[i] == 43):  # - +
        neg = buf[i] == 45
        i += 1
    # nan / inf, as scikit-learn reads them (the dataset check then refuses them)
    if i < n and ((buf[i] | 32) == 110 or (buf[i] | 32) == 105):
        word = 0
        j = i
        while j < n and buf[j] > 32 and buf[j] != 58:
            j += 1
            word += 1
        first = buf[i] | 32
        if first == 110 and word == 3:
            return np.nan, j, True
        if first == 105 and (word == 3 or word == 8):
            return (-np.inf if neg else np.inf), j, True
        return 0.0, j, False
    mantissa = 0
    digits = 0
    exp10 = 0
    seen = False
    while i < n and 48 <= buf[i] <= 57:
        seen = True
        if digits < 18:
            mantissa = mantissa * 10 + (buf[i] - 48)
            if mantissa:
                digits += 1
        else:
            exp10 += 1
        i += 1
    if i < n and buf[i] == 46:  # .
        i += 1
        while i < n and 48 <= buf[i] <= 57:
            seen = True
            if digits < 18:
                mantissa = mantissa * 10 + (buf[i] - 48)
                exp10 -= 1
                if mantissa:
                    digits += 1
            i += 1
    if not seen:
        return 0.0, i, False
    if i < n and (buf[i] | 32) == 101:  # e E
        i += 1
        eneg = False
        if i < n and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        e = 0
        eseen = False
        while i < n and 48 <= buf[i] <= 57:
            eseen = True
            if e < 10000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        if not eseen:
            return 0.0, i, False
        exp10 += -e if eneg else e
    value = float(mantissa)
    # Exact for mantissas below 2**53 and |exp10| <= 22 (one rounding); else within
    # a few units in the last place.
    while exp10 > 22:
        value *= 1e22
        exp10 -= 22
    while exp10 < -22:
        value /= 1e22
        exp10 += 22
    if exp10 >= 0:
        value *= _POW10[exp10]
    else:
        value /= _POW10[-exp10]
    return (-value if neg else value), i, True


@numba.njit(nogil=True, cache=True)
def _parse(buf, labels, indptr, indices, values):
    """Fill the arrays; returns ``(rows, entries, first bad line or -1)``."""
    n = buf.size
    i = 0
    row = 0
    nnz = 0
    line = 0
    while i < n:
        # one line: skip leading blanks; an empty or comment line holds no row
        while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
            i += 1
        if i >= n:
            break
        if buf[i] == 10 or buf[i] == 35:
            while i < n and buf[i] != 10:
                i += 1
            i += 1
            line += 1
            continue
        label, i, ok = _number(buf, i, n)
        if not ok or (i < n and buf[i] > 32):
            return row, nnz, line
        labels[row] = label
        while True:
            while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
                i += 1
            if i >= n or buf[i] == 10:
                break
            if buf[i] == 35:  # a comment to the end of the line
                while i < n and buf[i] != 10:
                    i += 1
                break
            if (
                i + 3 < n
                and buf[i] == 113 and buf[i + 1] == 105 and buf[i + 2] == 100
                and buf[i + 3] == 58
            ):  # fmt: skip
                i += 4  # qid:n, not a feature
                while i < n and 48 <= buf[i] <= 57:
                    i += 1
                continue
            index = 0
            seen = False
            while i < n and 48 <= buf[i] <= 57:
                index = index * 10 + (buf[i] - 48)
                seen = True
                i += 1
            if not seen or i >= n or buf[i] != 58:
                return row, nnz, line
            value, i, ok = _number(buf, i + 1, n)
            if not ok or (i < n and buf[i] > 32):
                return row, nnz, line
            indices[nnz] = index
            values[nnz] = value
            nnz += 1
        row += 1
        indptr[row] = nnz
        i += 1
        line += 1
    return row, nnz, -1
