"""Loading a job's compiled kernels ahead of time, for a template process to inherit.

:func:`warm_kernels` runs a few mini-batch steps of the job's model and optimiser on
a tiny generated dataset, dense and sparse, through the same code a worker, a shard and
the scheduler run (``train_local``). Numba then loads every kernel they need from its
on-disk cache (or compiles it once), so the node processes forked afterwards start
with them loaded. No thread is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .dataset import Dataset
from .optim import make_optimizer
from .registry import make_model
from .train import train_local

__all__ = ["warm_kernels"]


def warm_kernels(
    model: Mapping[str, Any], optimizer: Mapping[str, Any], data: Mapping[str, Any]
) -> None:
    """Run the kernels of the ``[model]``/``[optimizer]`` tables once; import what the
    ``[data]`` source loads with."""
    scheme = str(data.get("source", "")).split(":", 1)[0]
    if scheme != "npz":  # a split npz needs no scikit-learn (an X, y one imports it then)
        import sklearn.model_selection
    if scheme in ("sklearn", "generated", "libsvm"):
        import sklearn.datasets  # noqa: F401

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8))
    y = (X[:, 0] > 0).astype(np.int64)
    dense = Dataset("warm", X[:48], y[:48], X[48:], y[48:], n_features=8, n_classes=2)
    model_options = {k: v for k, v in model.items() if k != "kind"}
    opt_options = {k: v for k, v in optimizer.items() if k not in ("kind", "lr")}
    for dataset in (dense, dense.to_sparse()):
        train_local(
            make_model(str(model.get("kind", "logreg")), 8, 2, **model_options),
            dataset,
            make_optimizer(
                str(optimizer.get("kind", "sgd")), float(optimizer.get("lr", 0.05)), **opt_options
            ),
            epochs=1,
            batch_size=16,
        )
