"""The model contract: the tables a model declares and how a worker feeds it rows.

A parameter server stores a model's parameters as named tables, split by rows across
shard servers. A worker trains on a mini-batch in four steps::

    rows, X_local = localize(model, X_batch)        # which rows this batch touches
    params = {name: pull(name, ids) for name, ids in rows.items()}   # None = all rows
    loss, grads = model.gradient(params, X_local, y_batch)
    for name, ids in rows.items():
        push(name, ids, grads[name])                 # grads are aligned with the rows pulled

Dense tables are always pulled whole (``rows[name] is None``). A table declared
``sparse=True`` has one row per input feature; for a batch only the rows of the features
that occur in it are needed (the stored entries of a CSR batch, or the columns of a dense
batch that hold a non-zero). ``localize`` renumbers the batch's columns to positions in
that row list, so ``params[name]`` has shape ``(len(rows[name]), cols)`` and
``X_local.shape[1] == len(rows[name])``. Given the full tables and the original batch,
``gradient`` computes exactly the same row gradients, plus the L2 term on the rows the
batch did not touch (a sparse pull applies L2 lazily, only to the rows it touched, as
sparse SGD always does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, TypeGuard, runtime_checkable

import attrs
import numba
import numpy as np
import scipy.sparse as sp

Features: TypeAlias = "np.ndarray | sp.csr_matrix"
"""A batch of inputs: a dense float64 ``(n, n_features)`` array or a CSR matrix."""

INITS = ("zeros", "normal:<std>", "glorot")


def _check_init(_instance: object, _attribute: object, value: str) -> None:
    if value in ("zeros", "glorot"):
        return
    if value.startswith("normal:"):
        try:
            std = float(value.removeprefix("normal:"))
        except ValueError:
            std = -1.0
        if std > 0 and math.isfinite(std):
            return
    raise ValueError(f"unknown init {value!r} (expected one of: {', '.join(INITS)})")


def _check_positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"table {attribute.name} must be >= 1, got {value}")


@attrs.frozen
class TableSpec:
    """One named parameter table: ``rows`` x ``cols`` float64.

    Attributes:
        name: the table's name, unique within a model.
        rows: number of rows (the unit a shard stores, pulls and pushes).
        cols: number of columns per row.
        init: ``"zeros"``, ``"normal:<std>"`` or ``"glorot"`` (uniform, limit
            ``sqrt(6 / (rows + cols))``).
        sparse: rows are indexed by input feature and a batch touches only a few of them;
            pull only ``rows_needed`` (see the module docstring).
    """

    name: str
    rows: int = attrs.field(validator=_check_positive)
    cols: int = attrs.field(validator=_check_positive)
    init: str = attrs.field(default="zeros", validator=_check_init)
    sparse: bool = False


def init_table(spec: TableSpec, rng: np.random.Generator) -> np.ndarray:
    """Return the initial values of a whole table as a C-contiguous float64 array."""
    shape = (spec.rows, spec.cols)
    if spec.init == "zeros":
        return np.zeros(shape)
    if spec.init == "glorot":
        limit = math.sqrt(6.0 / (spec.rows + spec.cols))
        return rng.uniform(-limit, limit, size=shape)
    std = float(spec.init.removeprefix("normal:"))
    return rng.normal(0.0, std, size=shape)


def init_tables(specs: tuple[TableSpec, ...], seed: int) -> dict[str, np.ndarray]:
    """Initialise every table; a table's values depend only on ``seed`` and its name."""
    tables = {}
    for spec in specs:
        # Seed per table name, so adding a table does not change the others' values.
        name_key = int.from_bytes(spec.name.encode(), "little")
        rng = np.random.default_rng([seed, name_key])
        tables[spec.name] = init_table(spec, rng)
    return tables


@runtime_checkable
class Model(Protocol):
    """What a parameter server trains. See the module docstring for the row contract."""

    @property
    def name(self) -> str:
        """The registry name of the model kind (``"logreg"``, ...)."""
        ...

    def tables(self) -> tuple[TableSpec, ...]:
        """The tables this model's parameters live in."""
        ...

    def init_params(self, seed: int) -> dict[str, np.ndarray]:
        """The full initial tables, deterministic in ``seed``."""
        ...

    def rows_needed(self, X_batch: Features) -> dict[str, np.ndarray | None]:
        """Per table, the sorted int64 row ids the batch touches (``None``: all rows)."""
        ...

    def gradient(
        self, params: Mapping[str, np.ndarray], X_batch: Features, y_batch: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss (with regularisation) and the gradient of each table.

        ``params`` holds, per table, the full table or (sparse tables) the rows given by
        ``rows_needed``, with ``X_batch`` columns renumbered by ``localize``. Each gradient
        has the shape of the ``params`` entry it belongs to.
        """
        ...

    def evaluate(
        self, params: Mapping[str, np.ndarray], X: Features, y: np.ndarray
    ) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on full tables."""
        ...


def is_sparse(X: Features) -> TypeGuard[sp.csr_matrix]:
    """Whether a batch is sparse (after ``as_features``: a CSR matrix)."""
    return bool(sp.issparse(X))


def as_features(X: Any) -> Features:
    """Return ``X`` as a float64 C-contiguous array or a float64 CSR matrix.

    A float64 CSR matrix is returned as it is (building scipy matrices costs tens of
    microseconds, which matters once per mini-batch).
    """
    if sp.issparse(X):
        if X.format == "csr" and X.dtype == np.float64:
            return X
        return sp.csr_matrix(X, dtype=np.float64)
    arr = np.ascontiguousarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {arr.shape}")
    return arr


@numba.njit(nogil=True, cache=True)
def _walk_sorted_keys(keys, shift, inverse):
    """Keys ``value << shift | position``, sorted: the distinct values in order, and
    ``inverse[position]`` = the rank of the value at ``position`` among them."""
    mask = (np.int64(1) << shift) - 1
    unique = np.empty(keys.size, dtype=np.int64)
    n = -1
    previous = -1
    for k in range(keys.size):
        value = keys[k] >> shift
        if n < 0 or value != previous:
            n += 1
            unique[n] = value
            previous = value
        inverse[keys[k] & mask] = n
    return unique[: n + 1].copy()


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct int64 ``values`` and each value's position among them, with one
    sort of packed (value, position) keys (numpy's sort; a third of sort + binary search)."""
    shift = max(1, int(values.size).bit_length())
    keys = (values.astype(np.int64) << shift) | np.arange(values.size, dtype=np.int64)
    keys.sort()
    inverse = np.empty(values.size, dtype=values.dtype)
    return _walk_sorted_keys(keys, shift, inverse), inverse


# The renumbering ``feature_rows`` found for the last CSR batch, reused by
# ``select_columns`` when it is asked for exactly those columns of exactly that batch
# (identity checks: a tuple read is atomic, so threads cannot mix two batches up).
_last_renumbering: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@numba.njit(nogil=True, cache=True)
def _renumber(indices, columns, out):
    """``out[p]`` = position of ``indices[p]`` in sorted ``columns``; False if absent."""
    for p in range(indices.size):
        j = indices[p]
        lo, hi = 0, columns.size
        while lo < hi:
            mid = (lo + hi) // 2
            if columns[mid] < j:
                lo = mid + 1
            else:
                hi = mid
        if lo == columns.size or columns[lo] != j:
            return False
        out[p] = lo
    return True


@numba.njit(nogil=True, cache=True)
def _take_rows(indptr, indices, data, rows):
    out_indptr = np.zeros(rows.size + 1, dtype=indptr.dtype)
    for i in range(rows.size):
        r = rows[i]
        out_indptr[i + 1] = out_indptr[i] + indptr[r + 1] - indptr[r]
    out_indices = np.empty(out_indptr[-1], dtype=indices.dtype)
    out_data = np.empty(out_indptr[-1], dtype=data.dtype)
    for i in range(rows.size):
        r = rows[i]
        start = out_indptr[i]
        for p in range(indptr[r], indptr[r + 1]):
            out_indices[start] = indices[p]
            out_data[start] = data[p]
            start += 1
    return out_indptr, out_indices, out_data


def take_rows(X: Features, rows: np.ndarray) -> Features:
    """``X[rows]`` for a dense array or CSR matrix (CSR: one numba pass, no scipy indexing)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not is_sparse(X):
        # np.take gathers whole rows in one pass: about half the time of X[rows] for a
        # mini-batch of a large table (no index-broadcasting machinery per call).
        return np.take(X, rows, axis=0)
    if rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
        raise IndexError(f"row ids must lie in [0, {X.shape[0]})")
    indptr, indices, data = _take_rows(X.indptr, X.indices, X.data, rows)
    return sp.csr_matrix((data, indices, indptr), shape=(rows.size, X.shape[1]))


def feature_rows(X: Features) -> np.ndarray:
    """The sorted int64 ids of the feature columns a batch touches.

    For CSR, the columns of the stored entries; for a dense batch, the columns holding
    at least one non-zero.
    """
    if is_sparse(X):
        global _last_renumbering
        unique, inverse = _unique_inverse(X.indices)
        _last_renumbering = (X.indices, unique, inverse)
        return unique
    return np.flatnonzero(np.any(X != 0, axis=0)).astype(np.int64)


def select_columns(X: Features, columns: np.ndarray) -> Features:
    """Keep only ``columns`` (sorted ids) of ``X`` and renumber them ``0..len-1``.

    For a CSR batch whose stored entries all lie in ``columns`` (the usual case, since
    ``columns`` came from ``feature_rows``) this only rewrites the index array.
    """
    last = _last_renumbering
    if last is not None and is_sparse(X) and last[0] is X.indices and last[1] is columns:
        return sp.csr_matrix((X.data, last[2], X.indptr), shape=(X.shape[0], columns.size))
    columns = np.asarray(columns, dtype=np.int64)
    if not is_sparse(X):
        return np.ascontiguousarray(X[:, columns])
    renumbered = np.empty_like(X.indices)
    if _renumber(X.indices, columns, renumbered):
        return sp.csr_matrix((X.data, renumbered, X.indptr), shape=(X.shape[0], columns.size))
    return sp.csr_matrix(X[:, columns])


def localize(model: Model, X_batch: Features) -> tuple[dict[str, np.ndarray | None], Features]:
    """Rows a batch needs, and the batch with its columns renumbered to match them.

    Returns:
        ``(rows, X_local)``: ``rows`` as ``model.rows_needed``; ``X_local`` is
        ``X_batch`` with columns renumbered to positions in the feature-indexed table's
        row list (``X_batch`` itself when every table is pulled whole).

    Raises:
        ValueError: two sparse tables need different rows (no single renumbering).
    """
    X_batch = as_features(X_batch)
    rows = model.rows_needed(X_batch)
    if all(ids is None for ids in rows.values()):
        return rows, X_batch  # every table pulled whole: nothing to renumber
    feature_ids: np.ndarray | None = None
    for spec in model.tables():
        ids = rows.get(spec.name)
        if not spec.sparse or ids is None:
            continue
        if feature_ids is not None and not np.array_equal(ids, feature_ids):
            raise ValueError(f"sparse tables of model {model.name!r} need different rows")
        feature_ids = ids
    if feature_ids is None:
        return rows, X_batch
    return rows, select_columns(X_batch, feature_ids)


def gather(
    params: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray | None]
) -> dict[str, np.ndarray]:
    """Pick the needed rows out of full tables, as a worker's pull would return them."""
    out = {}
    for name, table in params.items():
        ids = rows.get(name)
        out[name] = table if ids is None else np.ascontiguousarray(table[ids])
    return out
