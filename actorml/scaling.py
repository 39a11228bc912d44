"""Growing and shrinking a running job from the command line, through its run directory.

``actorml scale RUN_DIR --workers N`` writes a request into ``RUN_DIR/requests/`` and
waits for the answer beside it; the launcher of that run (``actorml up``) takes each
request, asks the job's section (``[job]``'s ``scale``, found through the registry)
to reach N workers through the job's own elastic path, and answers. Whoever may write
the run directory may scale the job: it is the run's owner's (made by ``actorml up``
under its user's umask).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio

from . import registry

__all__ = ["POLL_S", "scale_request", "serve_requests", "wait_answer"]

POLL_S = 0.2  # how often the launcher looks for a request, and the command for its answer
Scaler = Callable[[Any, int], Awaitable[dict[str, Any]]]


def _requests(run_dir: Path) -> Path:
    return Path(run_dir) / "requests"


def scale_request(run_dir: Path, workers: int) -> Path:
    """Ask the launcher of ``run_dir`` for ``workers`` workers; returns the answer's path."""
    folder = _requests(run_dir)
    folder.mkdir(exist_ok=True)
    token = secrets.token_hex(4)
    staged = folder / f".scale-{token}.tmp"
    staged.write_text(json.dumps({"workers": workers}), encoding="utf-8")
    os.replace(staged, folder / f"scale-{token}.json")  # seen whole or not at all
    return folder / f"scale-{token}.answer"


async def wait_answer(answer: Path, timeout_s: float) -> dict[str, Any] | None:
    """The launcher's answer, or None if none came within ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while not answer.exists():
            await trio.sleep(POLL_S)
        result: dict[str, Any] = json.loads(answer.read_text(encoding="utf-8"))
        answer.unlink()
        return result
    return None


def _scaler(cluster: Any) -> Scaler | None:
    hooks = registry.section_hooks(cluster.topology.extra, "scale")
    return hooks[0] if hooks else None


async def serve_requests(cluster: Any) -> None:
    """Answer the scale requests put in ``cluster.run_dir``, one at a time, until
    cancelled. A request the job cannot take is answered with an ``error``."""
    folder = _requests(cluster.run_dir)
    log = structlog.get_logger()
    while True:
        for request in sorted(folder.glob("scale-*.json")) if folder.exists() else []:
            answer = request.with_suffix(".answer")
            try:
                workers = json.loads(request.read_text(encoding="utf-8"))["workers"]
                if type(workers) is not int or workers < 1:
                    raise ValueError(f"expected a number of workers >= 1, got {workers!r}")
                scale = _scaler(cluster)
                if scale is None:
                    raise ValueError("this run has no job whose workers can be scaled")
                result = await scale(cluster, workers)
                log.info("job_scaled", **result)
            except Exception as exc:
                result = {"error": str(exc)}
                log.warning("scale_refused", error=str(exc))
            staged = answer.with_suffix(".tmp")
            staged.write_text(json.dumps(result), encoding="utf-8")
            os.replace(staged, answer)
            request.unlink()
        await trio.sleep(POLL_S)
