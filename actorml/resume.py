"""Continuing a run from a snapshot: the run directory's conventions.

A job that snapshots writes each snapshot into its own directory and then points
``snapshots/latest.json`` at it (``{"path": ..., "clock": ...}``). ``actorml up --resume
RUN_DIR`` writes ``resume.json`` naming that snapshot before any node starts; the roles
read it once, at their first start, to restore their state instead of starting afresh.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import NoSnapshot

__all__ = ["latest_snapshot", "mark_resume", "resume_snapshot", "snapshot_directory"]


def latest_snapshot(run_dir: Path) -> Path:
    """The newest complete snapshot of ``run_dir``.

    Raises:
        NoSnapshot: none was taken (the job needs ``[job] snapshot_every_clocks``).
    """
    pointer = Path(run_dir) / "snapshots" / "latest.json"
    if not pointer.exists():
        raise NoSnapshot(
            f"no snapshot in {pointer.parent} (set [job] snapshot_every_clocks to take them)"
        )
    return Path(json.loads(pointer.read_text())["path"])


def mark_resume(run_dir: Path) -> Path:
    """Make the next start of ``run_dir`` resume from its latest snapshot; returns it."""
    snapshot = latest_snapshot(run_dir)
    (Path(run_dir) / "resume.json").write_text(json.dumps({"snapshot": str(snapshot)}))
    return snapshot


def resume_snapshot(run_dir: Path | None) -> Path | None:
    """The snapshot this run was asked to resume from, if any."""
    if run_dir is None:
        return None
    marker = Path(run_dir) / "resume.json"
    if not marker.exists():
        return None
    return Path(json.loads(marker.read_text())["snapshot"])


def snapshot_directory(run_dir: Path, clock: int) -> Path:
    """Where the snapshot taken at ``clock`` goes: ``RUN_DIR/snapshots/clock-N``.

    Every role derives it from its own run directory and the clock, so no message
    ever names a path a node would write to.
    """
    if isinstance(clock, bool) or not isinstance(clock, int) or clock < 0:
        raise ValueError(f"expected a clock >= 0, got {clock!r}")
    return Path(run_dir) / "snapshots" / f"clock-{clock:08d}"
