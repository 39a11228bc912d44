"""Distributed training reaches scikit-learn's held-out accuracy on the same split.

Each job runs in-process (every node of the generated topology, talking through the
codec over the in-memory transport): four workers under SSP(2), two shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC

from actorml.local import open_local_cluster
from actorml.models import load_dataset
from actorml.testing import MemoryNetwork
from actorml.topology import Topology

TOLERANCE = 0.01  # one percentage point


def job(data: dict[str, Any], model: dict[str, Any], optimizer: dict[str, Any], epochs: int,
        batch: int, protocol: dict[str, Any] | None = None) -> Topology:  # fmt: skip
    return Topology.from_dict(
        {
            "cluster": {"name": "accuracy", "ask_timeout_s": 60.0},
            "job": {
                "workers": 4,
                "shards": 2,
                "epochs": epochs,
                "batch_size": batch,
                "progress": False,
            },
            "data": data,
            "model": model,
            "optimizer": optimizer,
            "protocol": protocol or {"kind": "ssp", "staleness": 2},
        }
    )


async def train(topology: Topology, run_dir: Path) -> dict[str, Any]:
    network = MemoryNetwork(seed=0, capacity=64)
    async with (
        network.running(),
        open_local_cluster(
            topology, lambda _name, address: network.transport(address), run_dir=run_dir
        ) as cluster,
    ):
        with trio.fail_after(300):
            return await cluster.wait()


def reference(name: str, source: str) -> float:
    data = load_dataset(source)
    estimator = {
        "logreg": lambda: LogisticRegression(max_iter=5000),
        "svm": lambda: LinearSVC(max_iter=10_000),
        "softmax": lambda: LogisticRegression(max_iter=5000),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0),
        "sparse": lambda: LogisticRegression(max_iter=5000),
    }[name]()
    return float(estimator.fit(data.X_train, data.y_train).score(data.X_test, data.y_test))


CASES = {
    # name: (data, model, optimizer, epochs, batch per worker)
    "logreg": ({"source": "sklearn:breast_cancer"}, {"kind": "logreg", "l2": 1 / 426},
               {"kind": "adam", "lr": 0.01}, 40, 16),
    "svm": ({"source": "sklearn:breast_cancer"}, {"kind": "svm", "l2": 1 / 426},
            {"kind": "adagrad", "lr": 0.3}, 150, 16),
    "softmax": ({"source": "sklearn:digits"}, {"kind": "softmax", "l2": 1 / 1347},
                {"kind": "adam", "lr": 0.01}, 25, 32),
    "mlp": ({"source": "sklearn:digits"}, {"kind": "mlp", "hidden": 64, "l2": 1e-4},
            {"kind": "adam", "lr": 0.003}, 10, 16),
    "sparse": ({"source": "generated:sparse"}, {"kind": "logreg", "sparse": True, "l2": 1e-4},
               {"kind": "adagrad", "lr": 0.3}, 12, 32),
}  # fmt: skip


@pytest.mark.slow
class TestAccuracyAgainstSklearn:
    @pytest.mark.parametrize("name", sorted(CASES))
    async def test_distributed_job_matches_sklearn(self, name: str, tmp_path: Path) -> None:
        """The four-worker job's held-out accuracy is within 1 point of scikit-learn's."""
        data, model, optimizer, epochs, batch = CASES[name]
        result = await train(job(data, model, optimizer, epochs, batch), tmp_path)
        ours = result["test_accuracy"]
        theirs = reference(name, data["source"])
        assert ours >= theirs - TOLERANCE, f"{name}: {ours:.4f} vs scikit-learn {theirs:.4f}"
        saved = np.load(tmp_path / "params.npz")
        assert set(saved.files) == ({"W1", "b1", "W2", "b2"} if name == "mlp" else {"w", "b"})
        assert (tmp_path / "training.png").stat().st_size > 10_000


class TestJobOutputs:
    async def test_metrics_lines_per_worker_per_clock(self, tmp_path: Path) -> None:
        """metrics.jsonl has one line per worker per clock with the documented fields."""
        import json

        topology = job({"source": "sklearn:iris"}, {"kind": "softmax"},
                       {"kind": "sgd", "lr": 0.1}, 2, 8)  # fmt: skip
        result = await train(topology, tmp_path)
        rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        fields = {"t", "wall", "worker", "incarnation", "clock", "loss", "samples", "compute_s",
                  "wait_s", "staleness"}  # fmt: skip
        assert all(set(r) == fields for r in rows)
        per_worker = {w: sorted(r["clock"] for r in rows if r["worker"] == w) for w in
                      {r["worker"] for r in rows}}  # fmt: skip
        assert sorted(per_worker) == [f"worker-{i}" for i in range(4)]
        assert all(clocks == list(range(len(clocks))) for clocks in per_worker.values())
        assert sum(r["samples"] for r in rows) == result["samples"]

    async def test_target_accuracy_stops_early(self, tmp_path: Path) -> None:
        """A target accuracy ends the job before its epochs are up."""
        topology = Topology.from_dict(
            {
                "cluster": {"name": "target", "ask_timeout_s": 60.0},
                "job": {
                    "workers": 4,
                    "shards": 2,
                    "epochs": 50,
                    "batch_size": 16,
                    "target_accuracy": 0.9,
                    "progress": False,
                },
                "data": {"source": "sklearn:breast_cancer"},
                "model": {"kind": "logreg"},
                "optimizer": {"kind": "adam", "lr": 0.05},
                "protocol": {"kind": "bsp"},
            }
        )
        result = await train(topology, tmp_path)
        assert result["test_accuracy"] >= 0.9
        assert result["epochs"] < 50
