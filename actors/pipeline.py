"""The pipeline driver: feeds micro-batches to the stages, counts clocks, evaluates.

For each replica it runs the synchronous (GPipe) loop: cut the clock's mini-batch into
``micro_batches`` micro-batches, tell them all to the replica's first stage (the stages
then work on different micro-batches at once), and wait until every stage has flushed
(`Flushed`), which is when the update is applied. A stage that comes back after a crash
or a ``kill -9`` says so (`StageUp`): the replica's mini-batch in flight is redone under
a new step number, once every stage answers (`StageReady`).

It also plays the scheduler's part towards the shards (`GetLayout`, `ShardHello`),
writes ``metrics.jsonl`` (one line per replica per clock, with the measured bubble
fraction), evaluates the held-out rows after every epoch, and ends the job with
``params.npz``, ``training.png`` and the audit of acknowledged pushes.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Actor, handler
from actorml.models.base import Model, take_rows
from actorml.models.dataset import Dataset, partition

from .acklog import AckLog
from .config import build_model, load_job
from .messages import GetLayout, Layout, ShardHello, ShardRole
from .pipemessages import Flushed, Forward, StageReady, StageUp
from .report import (
    audit_failure,
    draw_plot,
    evaluate,
    fetch_tables,
    print_progress,
    result_summary,
)
from .stagestore import stage_layers

__all__ = ["Pipeline", "stage_name"]


def stage_name(stage: int, replica: int) -> str:
    """The actor (and node) name of ``stage`` of ``replica``."""
    return f"stage-{stage}-r{replica}"


@attrs.define(eq=False)
class _Attempt:
    """One try at one clock of one replica."""

    step: int
    flushed: dict[int, Flushed] = attrs.field(factory=dict)
    over: trio.Event = attrs.field(factory=trio.Event)
    failed: bool = False


@attrs.define(eq=False)
class Pipeline(Actor):
    """Drives a pipeline job of ``replicas`` x stages (see ``docs/model-parallel.md``).

    Args:
        stages: the cut (a list of layer-id lists) or a number of stages to balance.
        replicas: data-parallel replicas, each a whole pipeline on its part of the rows.
        micro_batches: micro-batches per mini-batch.
        shards: the shard actors holding the parameters (empty: they live in the stages).
        job: epochs, batch_size, seed, progress.
        model, data, optimizer: the job's sections.
    """

    stages: Any = 2
    replicas: int = 1
    micro_batches: int = 4
    shards: list[str] = attrs.field(factory=list)
    job: dict[str, Any] = attrs.field(factory=dict)
    model: dict[str, Any] = attrs.field(factory=dict)
    data: dict[str, Any] = attrs.field(factory=dict)
    optimizer: dict[str, Any] = attrs.field(factory=dict)
    layout: Layout | None = attrs.field(init=False, default=None)
    evaluations: list[dict[str, float]] = attrs.field(init=False, factory=list)
    _dataset: Dataset | None = attrs.field(init=False, default=None)
    _model: Model | None = attrs.field(init=False, default=None)
    _cut: list[list[int]] = attrs.field(init=False, factory=list)
    _attempts: dict[int, _Attempt] = attrs.field(init=False, factory=dict)
    _next_step: dict[int, int] = attrs.field(init=False, factory=dict)
    _clocks: dict[int, int] = attrs.field(init=False, factory=dict)
    _acks: AckLog = attrs.field(init=False, factory=lambda: AckLog(None))
    _bubbles: list[float] = attrs.field(init=False, factory=list)
    _losses: list[float] = attrs.field(init=False, factory=list)
    _redone: int = attrs.field(init=False, default=0)
    _evaluated: int = attrs.field(init=False, default=0)
    _samples: int = attrs.field(init=False, default=0)
    _start: float = attrs.field(init=False, default=0.0)
    _last_print: float = attrs.field(init=False, default=0.0)
    _metrics: Any = attrs.field(init=False, default=None)
    _failure: str | None = attrs.field(init=False, default=None)
    _shards_seen: set[str] = attrs.field(init=False, factory=set)

    @property
    def run_dir(self) -> Path:
        return self.ctx.node.run_dir or Path(".")

    @property
    def n_stages(self) -> int:
        return len(self._cut)

    async def started(self) -> None:
        self._dataset, self.layout = await load_job(
            self.ctx, self.job, self.model, self.data, self.optimizer, self.shards
        )
        self._model = build_model(self.layout)
        try:
            self._cut = stage_layers(self._model, self.stages)
        except ValueError as exc:
            await self.ctx.complete(error=f"cannot cut the network into stages: {exc}")
            await trio.sleep_forever()
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.ctx.log.info(
            "pipeline_ready", sizes=list(self._model.sizes),
            cut=self._cut, replicas=self.replicas, micro_batches=self.micro_batches,
        )  # fmt: skip

    def closed(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    @handler
    async def get_layout(self, msg: GetLayout) -> Layout:
        assert self.layout is not None
        return self.layout

    @handler
    async def shard_hello(self, msg: ShardHello) -> ShardRole:
        """Every shard of a pipeline is the primary of its slice (no replication).

        A shard says hello once per start: a second hello after training began is a
        restart that lost its slice. A first one may come after training began (a
        slow start; the stages wait for it): its tables are the seed's, untouched.
        """
        if msg.name in self._shards_seen and self._start:
            self._fail(f"shard {msg.name} restarted: its slice of the tables was lost")
        self._shards_seen.add(msg.name)
        return ShardRole("primary", msg.index, None, None)

    def _fail(self, why: str) -> None:
        """End every replica's mini-batch in flight; the job ends with ``why``."""
        self._failure = why
        for attempt in self._attempts.values():
            attempt.failed = True
            attempt.over.set()

    @handler
    async def flushed(self, msg: Flushed) -> None:
        attempt = self._attempts.get(msg.replica)
        if attempt is None or attempt.step != msg.step:
            return  # from an abandoned attempt
        attempt.flushed[msg.stage] = msg
        self._acks.record(f"{stage_name(msg.stage, msg.replica)}#{msg.incarnation}", msg.acked)
        if len(attempt.flushed) == self.n_stages:
            attempt.over.set()

    @handler
    async def stage_up(self, msg: StageUp) -> None:
        """A stage restarted: its replica's mini-batch in flight is redone."""
        name = stage_name(msg.stage, msg.replica)
        if not self.shards:
            self._fail(
                f"{name} restarted and its parameters lived only in it"
                " (set [pipeline] shards >= 1 to keep them on the shards)"
            )
            return
        self.ctx.log.warning("stage_restarted", stage=name, incarnation=msg.incarnation)
        current = self._attempts.get(msg.replica)
        if current is not None:
            current.failed = True
            current.over.set()

    async def run(self) -> None:
        assert self._dataset is not None
        if self.ctx.restarted:
            # Which clock each replica was at died with the previous incarnation; the
            # stages would drop this one's renumbered steps. End the job, do not hang.
            await self.ctx.complete(
                error="the pipeline driver restarted mid-job; a pipeline does not survive"
                " its driver's death yet (run the job again)"
            )
            await trio.sleep_forever()
        batch = int(self.job.get("batch_size", 64))
        n = self._dataset.y_train.shape[0]
        parts = [partition(n, self.replicas, r) for r in range(self.replicas)]
        biggest = max(p.stop - p.start for p in parts)
        per_epoch = max(1, math.ceil(biggest / batch))
        total = per_epoch * int(self.job.get("epochs", 1))
        self._clocks = dict.fromkeys(range(self.replicas), 0)
        for r in range(self.replicas):  # a message to a stage still starting would be dropped
            await self._await_stages(r)
        self._start = time.perf_counter()
        try:
            async with trio.open_nursery() as nursery:
                for r in range(self.replicas):
                    nursery.start_soon(self._replica, r, per_epoch, total)
        except* _JobFailed as group:
            # Restarting the driver would not bring the lost parameters back: end the job.
            await self.ctx.complete(error=str(group.exceptions[0]))
            await trio.sleep_forever()
        self._print_progress(total, final=True)
        await self._finish()
        await trio.sleep_forever()

    async def _await_stages(self, r: int) -> None:
        """Wait until every stage of replica ``r`` is up (a restarted one has reloaded)."""
        for s in range(self.n_stages):
            await self.ctx.ask_when_up(stage_name(s, r), StageReady(), within_s=120)

    async def _replica(self, r: int, per_epoch: int, total: int) -> None:
        assert self._dataset is not None
        batch = int(self.job.get("batch_size", 64))
        block = partition(self._dataset.y_train.shape[0], self.replicas, r)
        X = take_rows(self._dataset.X_train, np.arange(block.start, block.stop))
        if hasattr(X, "toarray"):
            X = X.toarray()  # activations travel dense
        y = self._dataset.y_train[block]
        rng = np.random.default_rng(int(self.job.get("seed", 0)) * 7919 + r)
        order = rng.permutation(y.shape[0])
        for clock in range(total):
            step = clock % per_epoch
            if step == 0 and clock:
                order = rng.permutation(y.shape[0])
            idx = order[step * batch : (step + 1) * batch]
            if idx.size == 0:
                idx = order[:batch]
            await self._minibatch(r, clock, np.ascontiguousarray(X[idx]), y[idx])
            self._clocks[r] = clock + 1
            epoch = min(self._clocks.values()) // per_epoch
            if epoch > self._evaluated:
                self._evaluated = epoch  # before awaiting: one replica evaluates each epoch
                await self._evaluate(epoch)
            self._print_progress(total)

    async def _minibatch(self, r: int, clock: int, Xb: np.ndarray, yb: np.ndarray) -> None:
        """One clock of replica ``r``, redone until no stage failed during it."""
        parts = [p for p in np.array_split(np.arange(yb.shape[0]), self.micro_batches) if p.size]
        first = stage_name(0, r)
        while True:
            if self._failure is not None:
                raise _JobFailed(self._failure)
            step = self._next_step.get(r, 0)
            self._next_step[r] = step + 1
            attempt = self._attempts[r] = _Attempt(step)
            began = time.perf_counter()
            for j, rows in enumerate(parts):
                msg = Forward(step, clock, j, len(parts), yb.shape[0], Xb[rows], yb[rows])
                await self.ctx.tell(first, msg)
            await attempt.over.wait()
            if not attempt.failed:
                break
            if self._failure is not None:
                raise _JobFailed(self._failure)
            self._redone += 1
            self.ctx.log.warning("minibatch_redone", replica=r, clock=clock, step=step)
            await self._await_stages(r)
        wall = time.perf_counter() - began
        busy = [attempt.flushed[s].busy_s for s in range(self.n_stages)]
        loss = sum(f.loss for f in attempt.flushed.values())
        bubble = max(0.0, 1.0 - statistics.fmean(busy) / wall)
        self._bubbles.append(bubble)
        self._losses.append(loss)
        self._samples += yb.shape[0]
        now = time.perf_counter() - self._start
        self._metrics.write(json.dumps({
            "t": round(now, 4), "wall": round(time.time(), 4), "worker": f"replica-{r}",
            "replica": r, "clock": clock, "step": attempt.step, "loss": loss,
            "samples": int(yb.shape[0]), "seconds": round(wall, 6),
            "busy_s": [round(b, 6) for b in busy], "bubble": round(bubble, 4),
        }) + "\n")  # fmt: skip

    async def _fetch(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
        """The full tables (from the shards, or the stages of replica 0), and the audit."""
        assert self._model is not None
        holders = self.shards or [stage_name(s, 0) for s in range(self.n_stages)]
        return await fetch_tables(
            lambda holder, msg: self.ctx.ask_when_up(holder, msg, within_s=120),
            self._model, holders, self._acks.acked,
        )  # fmt: skip

    async def _evaluate(self, epoch: int) -> dict[str, Any]:
        assert self._model is not None and self._dataset is not None
        params, _ = await self._fetch()
        row = await evaluate(
            self._model, params, self._dataset, self.run_dir, epoch=epoch,
            clock=min(self._clocks.values()), t=round(time.perf_counter() - self._start, 4),
            train_loss=float(np.mean(self._losses[-8 * self.replicas :] or [math.nan])),
            samples=self._samples,
        )  # fmt: skip
        self.evaluations.append(row)
        self.ctx.log.info("evaluated", **row)
        return row

    def _print_progress(self, total: int, *, final: bool = False) -> None:
        now = time.perf_counter() - self._start
        if not self.job.get("progress", True) or (not final and now - self._last_print < 0.5):
            return
        self._last_print = now
        print_progress(
            clock=min(self._clocks.values()),
            total=total,
            loss=float(np.mean(self._losses[-8:])) if self._losses else math.nan,
            accuracy=self.evaluations[-1]["test_accuracy"] if self.evaluations else math.nan,
            samples_per_s=self._samples / max(now, 1e-9),
            final=final,
        )

    async def _finish(self) -> None:
        elapsed = time.perf_counter() - self._start
        final = self.evaluations[-1] if self.evaluations else await self._evaluate(0)
        params, audit = await self._fetch()
        np.savez(self.run_dir / "params.npz", **params)
        self._metrics.flush()
        summary = result_summary(
            final, elapsed=elapsed, samples=self._samples, epochs=self._evaluated,
            run_dir=self.run_dir,
        )  # fmt: skip
        summary.update(
            stages=self._cut,
            replicas=self.replicas,
            micro_batches=self.micro_batches,
            bubble_fraction=round(statistics.median(self._bubbles), 4) if self._bubbles else 0.0,
            redone=self._redone,
        )
        if self.shards:
            summary.update(audit=audit, **audit_failure(audit))
        await self.ctx.complete(**summary)
        await draw_plot(self.run_dir, self.evaluations, self.ctx.log)


class _JobFailed(Exception):
    """The job cannot go on (a stage's local parameters or a shard's slice were lost)."""
