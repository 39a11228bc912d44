"""The scheduler of a model-parallel job: runs the schedule S(t), round by round.

Round ``t``: the schedule plans one block of coordinates per live worker; each worker
gets its block (`MpRound`) and answers once its changes are pushed and acknowledged by
the shards. A worker that dies during the round loses nothing acknowledged: its block
goes back to the schedule (`Schedule.requeue`) and the job goes on with the others
until its restarted incarnation joins again (`MpJoin`). After the round the scheduler
reads ``beta`` back from the shards (what they hold is the truth, whatever the workers
managed to report), tells the schedule how far each planned coordinate moved, and
keeps its own residual, from which it writes the objective to ``metrics.jsonl``. Every
``ceil(coordinates / round_size)`` rounds it computes the duality gap and ends the job
once ``gap <= tolerance * objective`` (or after ``max_rounds``).

The table map, shard roles, failover of a dead primary and the audit of acknowledged
pushes are the data-parallel scheduler's (this class extends it).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio

from actorml import ActorGone, AskTimeout, RemoteError, handler, registry
from actorml.models.lasso import Design, duality_gap, objective, update_residual
from actorml.protocols.contract import Leave

from .config import build_problem
from .messages import Layout, Pull, Rows, StopTraining
from .mp_messages import MpJoin, MpJoined, MpRound, MpRoundDone
from .scheduler import Scheduler, _audit_failure
from .schedules import Schedule

__all__ = ["MpScheduler"]

TABLE = "beta"

DIVERGED = 10.0
"""A job whose objective exceeds this many times that of ``beta = 0`` has diverged."""


@attrs.define(eq=False)
class MpScheduler(Scheduler):
    """Runs one model-parallel job (see ``docs/model-parallel.md``).

    Args:
        schedule: the ``[schedule]`` table: ``kind`` and the schedule's options.
        (the rest as `Scheduler`; ``job`` holds ``max_rounds``, ``tolerance``,
        ``round_timeout_s`` and ``wait_timeout_s``.)
    """

    schedule: dict[str, Any] = attrs.field(factory=dict)
    round: int = attrs.field(init=False, default=0)
    updates: int = attrs.field(init=False, default=0)
    rescheduled: int = attrs.field(init=False, default=0)
    history: list[dict[str, float]] = attrs.field(init=False, factory=list)
    _plan: Schedule | None = attrs.field(init=False, default=None)
    _design: Design | None = attrs.field(init=False, default=None)
    _alpha: float = attrs.field(init=False, default=0.0)
    _beta: np.ndarray = attrs.field(init=False, factory=lambda: np.zeros(0))
    _residual: np.ndarray = attrs.field(init=False, factory=lambda: np.zeros(0))
    _joined: set[str] = attrs.field(init=False, factory=set)
    _arrived: trio.Event = attrs.field(init=False, factory=trio.Event)

    async def started(self) -> None:
        options = {k: v for k, v in self.model.items() if k != "kind"}
        problem = registry.resolve("problem", str(self.model["kind"]))(**options)
        design: Design = await trio.to_thread.run_sync(problem.load)
        self._design, self._alpha = design, float(problem.alpha)
        p = design.X.shape[1]
        self.layout = Layout(
            model=dict(self.model),
            optimizer={"kind": "sgd", "lr": 1.0},  # a push carries -(change): applied as is
            data={},
            n_features=p,
            n_classes=1,
            shards=list(self.shards),
            seed=int(self.job.get("seed", 0)),
            batch_size=1,
        )
        self._model = build_problem(self.layout)
        self._beta, self._residual = np.zeros(p), design.y.copy()
        kind = str(self.schedule.get("kind", "priority"))
        plan = registry.resolve("schedule", kind)(
            **{k: v for k, v in self.schedule.items() if k != "kind"}
        )
        X = design.X
        plan.setup(p, lambda ids: np.abs(X[:, ids].T @ X[:, ids]) / design.n, self.layout.seed)
        self._plan = plan
        self.clocks = {}
        self.primaries = list(self.shards)
        self.backups = list(self.replicas) if self.replicas else [None] * len(self.shards)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if self.ctx.restarted:
            self._restore(self._state_file)
        self.ctx.log.info(
            "job_ready", rows=design.n, coordinates=p, schedule=kind, round=self.round
        )

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "round": self.round, "updates": self.updates}

    def _restore(self, path: Path) -> None:
        if path.exists():
            state = json.loads(path.read_text())
            self.round, self.updates = state["round"], state["updates"]
        super()._restore(path)

    @handler
    async def mp_join(self, msg: MpJoin) -> MpJoined:
        """A worker (a new incarnation) is ready: it gets a block from the next round on."""
        if msg.worker not in self.workers:
            self.workers.append(msg.worker)
        self._joined.add(msg.worker)
        self._arrived.set()
        if not self._start:
            self._start = time.perf_counter()
        self.ctx.log.info("worker_joined", worker=msg.worker, round=self.round)
        return MpJoined(self.round)

    async def run(self) -> None:
        job = self.job
        wait = float(job.get("wait_timeout_s", 300.0))
        if self.ctx.restarted:
            # The workers joined the previous incarnation and wait for rounds: give them
            # rounds (one that is gone fails its ask and is dropped).
            self._joined = set(self.workers)
        with trio.move_on_after(wait):
            while not set(self.workers) <= self._joined:
                self._arrived = trio.Event()
                await self._arrived.wait()
        if self.ctx.restarted:  # the residual died with the previous incarnation
            await self._read_beta()
        assert self._design is not None and self._plan is not None
        p = self._beta.size
        every = max(1, math.ceil(p / int(self.schedule.get("round_size", 32))))
        tolerance = float(job.get("tolerance", 1e-6))
        max_rounds = int(job.get("max_rounds", 100_000))
        gap = math.inf
        start = objective(self._design, self._design.y, np.zeros(p), self._alpha)
        while self.round < max_rounds:
            if not self._joined:
                with trio.move_on_after(wait) as waited:
                    self._arrived = trio.Event()
                    await self._arrived.wait()
                if waited.cancelled_caught:
                    problem = f"no worker for {wait:.0f}s at round {self.round}"
                    await self.ctx.complete(error=problem)
                    return
                continue
            await self._one_round()
            self.round += 1
            if not self.history[-1]["objective"] <= DIVERGED * start:
                break  # the schedule made it worse than beta = 0 by far: it diverged
            if self.round % every == 0 or self.round == max_rounds:
                gap = duality_gap(self._design, self._residual, self._beta, self._alpha)
                if gap <= tolerance * max(self.history[-1]["objective"], 1e-300):
                    break
        await self._finish_rounds(gap)
        await trio.sleep_forever()

    async def _one_round(self) -> None:
        assert self._plan is not None and self._design is not None
        live = sorted(self._joined)
        blocks = self._plan.plan(len(live))
        round_timeout = float(self.job.get("round_timeout_s", 60.0))
        t0 = time.perf_counter()
        compute: list[float] = []

        async def give(worker: str, block: np.ndarray) -> None:
            try:
                done: MpRoundDone = await self.ctx.ask(
                    worker, MpRound(self.round, block), timeout=round_timeout
                )
            except (ActorGone, AskTimeout, RemoteError) as exc:
                # Whatever it pushed is in the shards (read back below); the rest is
                # planned again. Its restarted incarnation joins again by itself; one
                # that timed out without dying stays out of the job.
                # It leaves the clock vector too: a worker that stopped answering must
                # not hold the others at the protocol's gate (a dead node's workers are
                # removed by NodeDown; a crashed actor or a stuck one is not).
                self._joined.discard(worker)
                await self.ctx.tell(self.protocol, Leave(worker, "rescheduled"))
                self._plan.requeue(block)  # type: ignore[union-attr]
                self.rescheduled += block.size
                self.ctx.log.warning(
                    "block_rescheduled", worker=worker, round=self.round,
                    coordinates=int(block.size), error=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
                return
            self.updates += int(block.size)
            compute.append(done.compute_s)
            for shard, seqs in done.acked.items():
                self.acked.setdefault(int(shard), {}).setdefault(
                    f"{done.worker}#{done.incarnation}", set()
                ).update(seqs)

        async with trio.open_nursery() as nursery:
            for worker, block in zip(live, blocks, strict=True):
                nursery.start_soon(give, worker, block)
        planned = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
        before = self._beta.copy()
        await self._read_beta()
        self._plan.observe(planned, self._beta[planned] - before[planned])
        value = objective(self._design, self._residual, self._beta, self._alpha)
        now = time.perf_counter() - self._start
        row = {
            "t": round(now, 4), "round": self.round, "objective": value,
            "updates": self.updates, "workers": len(live),
            "round_s": round(time.perf_counter() - t0, 6),
            "compute_s": round(max(compute, default=0.0), 6),
        }  # fmt: skip
        self.history.append(row)
        self._metrics.write(json.dumps(row) + "\n")
        self._save(throttle=True)

    async def _read_beta(self) -> None:
        """``beta`` as the shards hold it; the residual follows the coordinates that moved."""
        assert self._design is not None
        fresh = self._beta.copy()
        deadline = trio.current_time() + float(self.job.get("wait_timeout_s", 300.0))
        for k in range(len(self.primaries)):
            while True:
                try:
                    rows: Rows = await self.ctx.ask(
                        self.primaries[k], Pull(self.ctx.ref.name, [TABLE], [None])
                    )
                    break
                except (ActorGone, AskTimeout, RemoteError) as exc:
                    # A dead primary: its NodeDown (handled beside this loop) promotes
                    # the backup; ask again then.
                    if trio.current_time() >= deadline:
                        raise
                    self.ctx.log.info("shard_unavailable", slice=k, error=str(exc))
                    await trio.sleep(0.05)
            fresh[rows.rows[0]] = rows.values[0][:, 0]
        moved = np.flatnonzero(fresh != self._beta)
        update_residual(self._design.X, self._residual, moved, fresh[moved] - self._beta[moved])
        self._beta = fresh

    async def _finish_rounds(self, gap: float) -> None:
        self._finished = True
        elapsed = time.perf_counter() - self._start
        assert self._design is not None
        for worker in sorted(self._joined):
            await self.ctx.tell(worker, StopTraining("converged"))
        params, audit = await self._fetch_audited()
        np.savez(self.run_dir / "params.npz", **params)
        self._metrics.flush()
        beta = params[TABLE][:, 0]
        residual = self._design.y - self._design.X @ beta  # from scratch: no drift
        value = objective(self._design, residual, beta, self._alpha)
        start = objective(self._design, self._design.y, np.zeros_like(beta), self._alpha)
        diverged = not value <= DIVERGED * start
        errors = [_audit_failure(audit).get("error", "")]
        if diverged:
            errors.append(f"diverged: objective {value:.6g} at round {self.round}")
        error = "; ".join(e for e in errors if e)
        await self.ctx.complete(
            objective=value,
            duality_gap=float(duality_gap(self._design, residual, beta, self._alpha)),
            rounds=self.round,
            updates=self.updates,
            rescheduled=self.rescheduled,
            nonzero=int(np.count_nonzero(beta)),
            converged=bool(gap <= float(self.job.get("tolerance", 1e-6)) * value),
            diverged=diverged,
            train_seconds=round(elapsed, 3),
            params=str(self.run_dir / "params.npz"),
            metrics=str(self.run_dir / "metrics.jsonl"),
            audit=audit,
            **({"error": error} if error else {}),
        )
