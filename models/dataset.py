"""What every data source makes: a :class:`Dataset`, and the steps sources share.

A source (see :mod:`actorml.models.data`) reads raw features and labels; the steps here
turn them into a ``Dataset`` the same way for every source: ``take_options`` checks
the options, ``encode_labels`` maps label values to class ids ``0..k-1``, ``split`` is
the seeded, stratified train/test split, ``standardize`` scales with the training
rows' statistics only, and ``finish`` does all of that for a dense ``(X, y)``.
``partition`` is the block of training rows each worker gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp

from .base import Features, as_features

__all__ = [
    "SPLIT",
    "Dataset",
    "encode_labels",
    "finish",
    "partition",
    "split",
    "standardize",
    "take_options",
]

SPLIT = {"test_size": 0.25, "seed": 0}
"""The split options (and defaults) of every source that splits its rows itself."""


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
        verified: the values were checked already (a staged copy, see
            :mod:`actorml.models.staging`): skip the scan that reads every value.
    """

    name: str
    X_train: Features
    y_train: np.ndarray
    X_test: Features
    y_test: np.ndarray
    n_features: int
    n_classes: int
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    verified: bool = attrs.field(default=False, kw_only=True, repr=False)

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
            if self.verified:
                continue
            values = X.data if sp.issparse(X) else X
            bad = values.size - int(np.count_nonzero(np.isfinite(values)))
            if bad:  # one NaN trains silently to a coin toss
                raise ValueError(
                    f"X_{part} holds {bad} non-finite values (NaN or inf); "
                    "fill or drop those rows first"
                )

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
