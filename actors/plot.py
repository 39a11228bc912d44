"""Training curves a person can look at: loss and accuracy against time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_training"]


def plot_training(metrics: Path, evaluations: Sequence[dict[str, Any]], out: Path) -> Path:
    """Draw per-worker training loss and held-out loss/accuracy against time into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_worker: dict[str, tuple[list[float], list[float]]] = {}
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            ts, losses = by_worker.setdefault(row["worker"], ([], []))
            ts.append(row["t"])
            losses.append(row["loss"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for worker, (ts, losses) in sorted(by_worker.items()):
        ax_loss.plot(ts, losses, lw=0.6, alpha=0.6, label=f"{worker} (batch)")
    if evaluations:
        t = [e["t"] for e in evaluations]
        ax_loss.plot(t, [e["test_loss"] for e in evaluations], "k-o", lw=2, label="held-out")
        ax_acc.plot(t, [e["test_accuracy"] for e in evaluations], "k-o", lw=2)
    ax_loss.set(xlabel="time (s)", ylabel="loss", title="loss")
    ax_loss.legend(fontsize=7)
    ax_acc.set(xlabel="time (s)", ylabel="accuracy", title="held-out accuracy")
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
