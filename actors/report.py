"""What a training job reports: evaluations, the progress line, the audit, the plot.

Shared by every job driver (the data-parallel scheduler, the pipeline driver), so a
run directory and the result of ``actorml up`` read the same whatever trained.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trio

from actorml.models.base import Model
from actorml.models.dataset import Dataset

from .messages import GetTables, Tables
from .plot import plot_training

__all__ = [
    "audit_failure",
    "audit_slice",
    "draw_plot",
    "evaluate",
    "fetch_tables",
    "print_progress",
    "result_summary",
]


async def evaluate(
    model: Model, params: Mapping[str, np.ndarray], dataset: Dataset, run_dir: Path, **row: Any
) -> dict[str, Any]:
    """Evaluate ``params`` on the held-out rows (in a thread) and append the row
    (``row`` fields, then ``test_loss`` and ``test_accuracy``) to ``evaluations.jsonl``."""
    result = await trio.to_thread.run_sync(
        lambda: model.evaluate(params, dataset.X_test, dataset.y_test)
    )
    row = {**row, "test_loss": float(result["loss"]), "test_accuracy": float(result["accuracy"])}
    with open(run_dir / "evaluations.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
    return row


def print_progress(
    *, clock: int, total: int, loss: float, accuracy: float, samples_per_s: float, final: bool
) -> None:
    """The live progress line (rewritten in place on a terminal)."""
    line = (
        f"clock {clock}/{total}  loss {loss:.4f}  "
        f"acc {accuracy:.4f}  {samples_per_s:,.0f} samples/s"
    )
    if sys.stdout.isatty():
        print(f"\r{line}   ", end="\n" if final else "", flush=True)
    else:
        print(line, flush=True)


async def fetch_tables(
    ask: Callable[[str, object], Awaitable[Any]],
    model: Model,
    holders: Sequence[str],
    acked: Mapping[int, Mapping[str, set[int]]],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """The full tables, gathered from their ``holders``, and the audit of each holder
    (`audit_slice` against ``acked``, the pushes acknowledged to holder ``k``).

    Args:
        ask: asks a holder (``ctx.ask``, or a variant that waits out restarts).
    """
    full = {s.name: np.zeros((s.rows, s.cols)) for s in model.tables()}
    audit = {}
    for k, holder in enumerate(holders):
        answer: Tables = await ask(holder, GetTables())
        for name, rows, values in zip(answer.tables, answer.rows, answer.values, strict=True):
            full[name][rows] = values
        audit[str(k)] = audit_slice(answer, acked.get(k, {}))
    return full, audit


def audit_slice(answer: Tables, acked: Mapping[str, set[int]]) -> dict[str, int]:
    """One slice's pushes: applied against acknowledged (keyed ``worker#incarnation``).

    ``lost``: pushes a pusher saw acknowledged that the slice does not hold;
    ``doubled``: pushes applied more than once; ``unreported``: applied pushes nobody
    reported acknowledged (a pusher that died with them in flight).
    """
    applied = {(w, q) for w, seqs in answer.applied_ids.items() for q in seqs}
    seen = {(w, q) for w, seqs in acked.items() for q in seqs}
    return {
        "applied": answer.pushes_applied,
        "acknowledged": len(seen),
        "lost": len(seen - applied),
        "doubled": answer.pushes_applied - len(applied),
        "unreported": len(applied - seen),
    }


def audit_failure(audit: dict[str, dict[str, int]]) -> dict[str, str]:
    """``{"error": ...}`` when a slice lost or doubled an acknowledged push, else ``{}``.

    A job whose parameters miss an update a worker saw acknowledged did not do what it
    claims: it must not end as a success.
    """
    lost = {k: a["lost"] for k, a in audit.items() if a["lost"]}
    doubled = {k: a["doubled"] for k, a in audit.items() if a["doubled"]}
    problems = [
        f"{sum(found.values())} acknowledged pushes {what} (slices {', '.join(sorted(found))})"
        for what, found in (("lost", lost), ("applied twice", doubled))
        if found
    ]
    return {"error": "; ".join(problems)} if problems else {}


def result_summary(
    final: Mapping[str, Any], *, elapsed: float, samples: int, epochs: int, run_dir: Path
) -> dict[str, Any]:
    """The common fields of a training job's result."""
    return {
        "test_accuracy": round(final["test_accuracy"], 4),
        "test_loss": round(final["test_loss"], 5),
        "train_seconds": round(elapsed, 2),
        "samples": samples,
        "samples_per_s": round(samples / max(elapsed, 1e-9), 1),
        "epochs": epochs,
        "params": str(run_dir / "params.npz"),
        "plot": str(run_dir / "training.png"),
        "metrics": str(run_dir / "metrics.jsonl"),
    }


async def draw_plot(run_dir: Path, evaluations: Sequence[dict[str, Any]], log: Any) -> None:
    """Draw ``training.png``; a plot that fails is logged, never a crash.

    Called after the result is reported: the launcher reports it at once and stops the
    driver's node last, once the plot is drawn (matplotlib takes a second to import);
    a plot that fails must not crash (and restart) a driver whose job is done.
    """
    try:
        await trio.to_thread.run_sync(
            lambda: plot_training(run_dir / "metrics.jsonl", evaluations, run_dir / "training.png")
        )
    except Exception as exc:
        log.warning("plot_failed", error=f"{type(exc).__name__}: {exc}")
