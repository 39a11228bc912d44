"""A dataset staged once: raw ``.npy`` files in the run directory, memory-mapped by all.

The first role that loads a job's dataset (the scheduler) writes its split here with
:func:`stage`; every other process maps only what it needs: the scheduler the test rows
it evaluates on (:func:`open_staged`), a worker the training rows of its partition
(:func:`staged_rows`). Pages are shared through the page cache, so a job holds one copy
of its data, however many workers it has, and a restarted worker maps instead of
loading again. ``actorml up --resume`` finds the same files in the same run directory.

Layout of a staged dataset (``<run_dir>/data/<key>/``, ``key`` a digest of the
``[data]`` options): ``X_train.npy`` (dense) or ``X_train.indptr.npy``,
``X_train.indices.npy``, ``X_train.data.npy`` (CSR), the same for ``X_test``,
``y_train.npy``, ``y_test.npy``, ``meta.<name>.npy`` for array-valued metadata, and
``dataset.json`` (name, sizes, the rest of the metadata), written last: a directory
without it is not staged. Arrays are mapped copy-on-write: a process that writes to
one gets its own page, never changes the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .base import Features
from .data import load_dataset
from .dataset import Dataset
from .fastload import backing_file, loading_into

__all__ = [
    "NotStaged",
    "load_and_stage",
    "open_staged",
    "stage",
    "staged_path",
    "staged_rows",
    "staged_size",
]

_MANIFEST = "dataset.json"


def staged_path(run_dir: Path, data: Mapping[str, Any]) -> Path:
    """Where the dataset that ``data`` (the ``[data]`` options) names is staged."""
    canonical = json.dumps(dict(data), sort_keys=True, default=str)
    return Path(run_dir) / "data" / hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stage(dataset: Dataset, path: Path) -> int:
    """Write ``dataset`` to ``path`` (atomically: a sibling directory, then a rename).

    Returns the bytes written. Staging twice (a restarted scheduler) keeps the first.
    """
    path = Path(path)
    if (path / _MANIFEST).exists():
        return 0
    tmp = _fresh(path)
    return _place(dataset, tmp, path)


class NotStaged(Exception):
    """The dataset loaded but could not be staged (metadata that is not JSON, a full
    disk); ``dataset`` is the loaded copy, in memory."""

    def __init__(self, dataset: Dataset, reason: str) -> None:
        super().__init__(reason)
        self.dataset = dataset


def load_and_stage(data: Mapping[str, Any], path: Path) -> Dataset:
    """Load the dataset ``data`` (the ``[data]`` options) names, stage it at ``path``
    and return the staged copy, mapped.

    Sources that can (an npz file) write their arrays straight into the staged files
    while loading, so staging copies nothing more. Already staged: just mapped.

    Raises:
        ValueError, TypeError, OSError, EOFError: the data cannot be loaded.
        NotStaged: it loaded, but cannot be staged.
    """
    path = Path(path)
    staged = open_staged(path)
    if staged is not None:
        return staged
    tmp = _fresh(path)
    try:
        with loading_into(tmp):
            dataset = load_dataset(**data)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        _place(dataset, tmp, path)
    except (TypeError, ValueError, OSError) as exc:
        raise NotStaged(dataset, f"{type(exc).__name__}: {exc}") from exc
    return open_staged(path) or dataset


def _fresh(path: Path) -> Path:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _place(dataset: Dataset, tmp: Path, path: Path) -> int:
    try:
        written = _write(dataset, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists() and not (path / _MANIFEST).exists():
        shutil.rmtree(path, ignore_errors=True)  # left half-written by a crash
    try:
        tmp.rename(path)
    except OSError:  # staged meanwhile by another incarnation: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def _write(dataset: Dataset, tmp: Path) -> int:
    written = 0
    for part in ("train", "test"):
        written += _save_features(tmp, f"X_{part}", getattr(dataset, f"X_{part}"))
        written += _save(tmp, f"y_{part}", getattr(dataset, f"y_{part}"))
    meta: dict[str, Any] = {}
    for key, value in dataset.meta.items():
        if isinstance(value, np.ndarray):
            written += _save(tmp, f"meta.{key}", value)
        else:
            meta[key] = value
    manifest = {
        "name": dataset.name,
        "n_features": dataset.n_features,
        "n_classes": dataset.n_classes,
        "sparse": sp.issparse(dataset.X_train),
        "n_train": int(dataset.y_train.shape[0]),
        "meta": meta,
        "meta_arrays": sorted(k for k, v in dataset.meta.items() if isinstance(v, np.ndarray)),
    }
    (tmp / _MANIFEST).write_text(json.dumps(manifest, default=_plain))
    return written


def open_staged(path: Path) -> Dataset | None:
    """The whole staged dataset, memory-mapped; None when nothing is staged at ``path``."""
    manifest = _manifest(path)
    if manifest is None:
        return None
    meta = dict(manifest["meta"])
    for key in manifest["meta_arrays"]:
        meta[key] = np.load(Path(path) / f"meta.{key}.npy", allow_pickle=False)
    X_train = _features(path, "X_train", manifest["sparse"], manifest["n_features"])
    X_test = _features(path, "X_test", manifest["sparse"], manifest["n_features"])
    return Dataset(
        name=manifest["name"],
        X_train=X_train,
        y_train=_map(path, "y_train"),
        X_test=X_test,
        y_test=_map(path, "y_test"),
        n_features=manifest["n_features"],
        n_classes=manifest["n_classes"],
        meta=meta,
        verified=True,  # checked before it was staged
    )


def staged_size(path: Path) -> int:
    """The number of training rows staged at ``path``.

    Raises:
        FileNotFoundError: nothing is staged at ``path``.
    """
    return int(_required_manifest(path)["n_train"])


def staged_rows(path: Path, rows: slice) -> tuple[Features, np.ndarray]:
    """Training rows ``rows`` (a contiguous block), mapped: only their pages are read.

    Raises:
        FileNotFoundError: nothing is staged at ``path``.
    """
    manifest = _required_manifest(path)
    y = _map(path, "y_train")[rows]
    if not manifest["sparse"]:
        return _map(path, "X_train")[rows], y
    indptr = _map(path, "X_train.indptr")[rows.start : rows.stop + 1]
    first, last = int(indptr[0]), int(indptr[-1])
    X = sp.csr_matrix(
        (
            _map(path, "X_train.data")[first:last],
            _map(path, "X_train.indices")[first:last],
            indptr - first,
        ),
        shape=(indptr.size - 1, manifest["n_features"]),
        copy=False,
    )
    return X, y


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((Path(path) / _MANIFEST).read_text())
    except FileNotFoundError:
        return None
    return manifest


def _required_manifest(path: Path) -> dict[str, Any]:
    manifest = _manifest(path)
    if manifest is None:
        raise FileNotFoundError(f"no staged dataset at {str(path)!r}")
    return manifest


def _save(directory: Path, name: str, array: np.ndarray) -> int:
    target = directory / f"{name}.npy"
    if backing_file(array) == target.resolve():
        return int(array.nbytes)  # loaded straight into this file (see loading_into)
    np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    return int(array.nbytes)


def _save_features(directory: Path, name: str, X: Any) -> int:
    if not sp.issparse(X):
        return _save(directory, name, X)
    # The index dtype scipy would pick itself, so mapping them back copies nothing.
    index = np.int32 if max(X.nnz, X.shape[1]) < 2**31 else np.int64
    return (
        _save(directory, f"{name}.indptr", X.indptr.astype(index, copy=False))
        + _save(directory, f"{name}.indices", X.indices.astype(index, copy=False))
        + _save(directory, f"{name}.data", X.data)
    )


def _map(directory: Path, name: str) -> np.ndarray:
    # Copy-on-write: writable like any array (same compiled kernels), the file unchanged.
    return np.asarray(np.load(Path(directory) / f"{name}.npy", mmap_mode="c"))


def _features(directory: Path, name: str, sparse: bool, n_features: int) -> Features:
    if not sparse:
        return _map(directory, name)
    indptr = _map(directory, f"{name}.indptr")
    return sp.csr_matrix(
        (_map(directory, f"{name}.data"), _map(directory, f"{name}.indices"), indptr),
        shape=(indptr.size - 1, n_features),
        copy=False,
    )


def _plain(value: Any) -> Any:
    """JSON for numpy scalars in the metadata."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot stage metadata value {value!r}")
