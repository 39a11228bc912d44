"""Single-process mini-batch training: the baseline a distributed job is measured against.

``train_local`` runs the same steps a parameter-server worker and its shards run, in one
process and without a network: per batch ``localize`` -> pull (``gather``) ->
``gradient`` -> the optimiser applied per row to the tables, as a shard would.

It is meant to be the fastest honest one-process loop (the same model, optimiser,
batches and per-row optimiser state), so that a distributed job's ratio against it
flatters nothing: dense batches are gathered into one reused buffer (a fresh 1 MB array
per batch costs more in page faults than the gradient does), dense tables are updated
in place without a pull, and sparse batches touch only the rows they name.
"""

from __future__ import annotations

import time

import attrs
import numpy as np

from .base import Model, gather, is_sparse, localize, take_rows
from .dataset import Dataset
from .optim import Optimizer, init_state


@attrs.frozen
class EpochStats:
    """What one epoch of ``train_local`` achieved.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean of the mini-batch losses seen during the epoch.
        test_loss: loss (with regularisation) on the test set after the epoch.
        test_accuracy: accuracy on the test set after the epoch.
        seconds: wall time of the epoch's training steps (evaluation excluded).
    """

    epoch: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    seconds: float


def train_local(
    model: Model,
    dataset: Dataset,
    optimizer: Optimizer,
    epochs: int,
    batch_size: int,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], list[EpochStats]]:
    """Train ``model`` on ``dataset`` with mini-batch steps, in one process.

    Args:
        model: what to train; its tables start from ``model.init_params(seed)``.
        dataset: training rows are shuffled each epoch; the test rows are evaluated
            after each epoch.
        optimizer: applied per row to each table, with per-table state and step counts.
        epochs: passes over the training rows, >= 1.
        batch_size: rows per step, >= 1 (the last batch of an epoch may be smaller).
        seed: seeds the initial tables and the batch order.

    Returns:
        ``(params, history)``: the final full tables and one ``EpochStats`` per epoch.

    Raises:
        ValueError: ``epochs`` or ``batch_size`` below 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = model.init_params(seed)
    specs = model.tables()
    state = {spec.name: init_state(optimizer, spec.rows, spec.cols) for spec in specs}
    steps = {spec.name: np.zeros(spec.rows, dtype=np.int64) for spec in specs}
    rng = np.random.default_rng(seed)
    X, y = dataset.X_train, dataset.y_train
    n = y.shape[0]
    # One buffer for every full dense batch: the gather writes into memory already mapped.
    buffer = None if is_sparse(X) else np.empty((min(batch_size, n), X.shape[1]), X.dtype)
    history = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(n)
        loss_sum = 0.0
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            if buffer is not None and batch.size == buffer.shape[0]:
                X_batch = np.take(X, batch, axis=0, out=buffer)
            else:
                X_batch = take_rows(X, batch)
            rows, X_local = localize(model, X_batch)
            loss, grads = model.gradient(gather(params, rows), X_local, y[batch])
            loss_sum += loss * batch.size
            for name, ids in rows.items():
                if ids is None:
                    optimizer.apply(params[name], grads[name], state[name], steps[name])
                else:
                    optimizer.apply_at(params[name], ids, grads[name], state[name], steps[name])
        seconds = time.perf_counter() - started
        scores = model.evaluate(params, dataset.X_test, dataset.y_test)
        history.append(EpochStats(epoch, loss_sum / n, scores["loss"], scores["accuracy"], seconds))
    return params, history
