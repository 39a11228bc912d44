"""Training curves a person can look at: loss and accuracy against time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_training", "warm"]


def warm() -> None:
    """Import matplotlib and draw one tiny figure (loading the font cache and the
    renderer), so the plot at the job's end costs only its drawing."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1], label="warm")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png", dpi=30)
    plt.close(fig)


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
    # Fixed margins: tight_layout would draw the figure once more just to measure it.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92, wspace=0.18)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
