"""The scheduler: hands out data partitions, counts epochs, evaluates, ends the job.

It loads the dataset once to learn its shape (the layout every role builds the same
model from), gives each worker its partition, writes one line per worker per clock to
``metrics.jsonl``, evaluates the tables held by the shards on the held-out data after
every epoch, and ends the job after the configured epochs or once the target accuracy
is reached: the run directory then holds ``params.npz`` and ``training.png``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Actor, handler
from actorml.models import load_dataset
from actorml.models.base import Model
from actorml.models.data import Dataset, partition

from .config import build_model
from .messages import (
    Assignment,
    Done,
    GetLayout,
    GetTables,
    JoinJob,
    Layout,
    Progress,
    StopTraining,
    Tables,
)
from .plot import plot_training

__all__ = ["Scheduler"]


@attrs.define(eq=False)
class Scheduler(Actor):
    """Runs one data-parallel training job (see ``docs/training.md``)."""

    workers: list[str] = attrs.field(factory=list)
    shards: list[str] = attrs.field(factory=list)
    protocol: str = "protocol"
    job: dict[str, Any] = attrs.field(factory=dict)
    model: dict[str, Any] = attrs.field(factory=dict)
    data: dict[str, Any] = attrs.field(factory=dict)
    optimizer: dict[str, Any] = attrs.field(factory=dict)
    layout: Layout | None = attrs.field(init=False, default=None)
    evaluations: list[dict[str, float]] = attrs.field(init=False, factory=list)
    clocks: dict[str, int] = attrs.field(init=False, factory=dict)
    _dataset: Dataset | None = attrs.field(init=False, default=None)
    _model: Model | None = attrs.field(init=False, default=None)
    _cpe: int = attrs.field(init=False, default=1)
    _total: int = attrs.field(init=False, default=1)
    _done: set[str] = attrs.field(init=False, factory=set)
    _start: float = attrs.field(init=False, default=0.0)
    _metrics: Any = attrs.field(init=False, default=None)
    _samples: int = attrs.field(init=False, default=0)
    _losses: list[float] = attrs.field(init=False, factory=list)
    _evaluated_epochs: int = attrs.field(init=False, default=0)
    _last_print: float = attrs.field(init=False, default=0.0)
    _finished: bool = attrs.field(init=False, default=False)

    @property
    def run_dir(self) -> Path:
        return self.ctx.node.run_dir or Path(".")

    async def started(self) -> None:
        data = dict(self.data)
        self._dataset = dataset = await trio.to_thread.run_sync(lambda: load_dataset(**data))
        batch = int(self.job.get("batch_size", 64))
        self.layout = Layout(
            model=dict(self.model),
            optimizer=dict(self.optimizer),
            data=data,
            n_features=dataset.n_features,
            n_classes=dataset.n_classes,
            shards=list(self.shards),
            seed=int(self.job.get("seed", 0)),
            batch_size=batch,
        )
        self._model = build_model(self.layout)
        n = dataset.y_train.shape[0]
        parts = [partition(n, len(self.workers), p) for p in range(len(self.workers))]
        biggest = max(p.stop - p.start for p in parts)
        self._cpe = max(1, math.ceil(biggest / batch))
        self._total = self._cpe * int(self.job.get("epochs", 1))
        self.clocks = dict.fromkeys(self.workers, 0)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.ctx.log.info(
            "job_ready", rows=n, features=dataset.n_features, classes=dataset.n_classes,
            clocks_per_epoch=self._cpe, total_clocks=self._total,
        )  # fmt: skip

    async def stopping(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    @handler
    async def get_layout(self, msg: GetLayout) -> Layout:
        assert self.layout is not None
        return self.layout

    @handler
    async def join_job(self, msg: JoinJob) -> Assignment:
        if not self._start:
            self._start = time.perf_counter()
        part = self.workers.index(msg.worker)
        return Assignment(
            part, len(self.workers), self._cpe, self._total, self.clocks.get(msg.worker, 0)
        )

    @handler
    async def progress(self, msg: Progress) -> None:
        now = time.perf_counter() - self._start
        self.clocks[msg.worker] = max(self.clocks.get(msg.worker, 0), msg.clock + 1)
        self._samples += msg.samples
        self._losses.append(msg.loss)
        self._metrics.write(json.dumps({
            "t": round(now, 4), "worker": msg.worker, "clock": msg.clock, "loss": msg.loss,
            "samples": msg.samples, "compute_s": round(msg.compute_s, 6),
            "wait_s": round(msg.wait_s, 6), "staleness": msg.staleness,
        }) + "\n")  # fmt: skip
        epoch = min(self.clocks.values()) // self._cpe
        if epoch > self._evaluated_epochs:
            self._evaluated_epochs = epoch
            await self._evaluate(epoch)
        self._print_progress(now)

    @handler
    async def done(self, msg: Done) -> None:
        self._done.add(msg.worker)
        if self._done >= set(self.workers) and not self._finished:
            self._finished = True
            await self._finish()

    async def _fetch(self) -> dict[str, np.ndarray]:
        assert self._model is not None
        specs = {s.name: s for s in self._model.tables()}
        full = {name: np.zeros((s.rows, s.cols)) for name, s in specs.items()}
        for shard in self.shards:
            answer: Tables = await self.ctx.ask(shard, GetTables())
            for name, rows, values in zip(answer.tables, answer.rows, answer.values, strict=True):
                full[name][rows] = values
        return full

    async def _evaluate(self, epoch: int) -> dict[str, float]:
        assert self._model is not None and self._dataset is not None
        params = await self._fetch()
        ds, model = self._dataset, self._model
        result = await trio.to_thread.run_sync(lambda: model.evaluate(params, ds.X_test, ds.y_test))
        row = {
            "epoch": epoch,
            "t": round(time.perf_counter() - self._start, 4),
            "test_loss": float(result["loss"]),
            "test_accuracy": float(result["accuracy"]),
            "train_loss": float(np.mean(self._losses[-len(self.workers) * 8 :] or [math.nan])),
            "samples": self._samples,
        }
        self.evaluations.append(row)
        self.ctx.log.info("evaluated", **row)
        target = float(self.job.get("target_accuracy", 0.0) or 0.0)
        if target and row["test_accuracy"] >= target:
            for worker in self.workers:
                await self.ctx.tell(
                    worker, StopTraining(f"accuracy {row['test_accuracy']:.4f} >= {target}")
                )
        return row

    def _print_progress(self, now: float, *, final: bool = False) -> None:
        if not self.job.get("progress", True):
            return
        if not final and now - self._last_print < 0.5:
            return
        self._last_print = now
        acc = self.evaluations[-1]["test_accuracy"] if self.evaluations else math.nan
        loss = float(np.mean(self._losses[-len(self.workers) * 8 :])) if self._losses else math.nan
        line = (
            f"clock {min(self.clocks.values())}/{self._total}  loss {loss:.4f}  "
            f"acc {acc:.4f}  {self._samples / max(now, 1e-9):,.0f} samples/s"
        )
        if sys.stdout.isatty():
            print(f"\r{line}   ", end="\n" if final else "", flush=True)
        else:
            print(line, flush=True)

    async def _finish(self) -> None:
        elapsed = time.perf_counter() - self._start
        if self.evaluations and self.evaluations[-1]["samples"] == self._samples:
            final = self.evaluations[-1]
        else:
            final = await self._evaluate(self._evaluated_epochs)
        self._print_progress(elapsed, final=True)
        params = await self._fetch()
        np.savez(self.run_dir / "params.npz", **params)
        await trio.to_thread.run_sync(
            lambda: plot_training(
                self.run_dir / "metrics.jsonl", self.evaluations, self.run_dir / "training.png"
            )
        )
        await self.ctx.complete(
            test_accuracy=round(final["test_accuracy"], 4),
            test_loss=round(final["test_loss"], 5),
            train_seconds=round(elapsed, 2),
            samples=self._samples,
            samples_per_s=round(self._samples / max(elapsed, 1e-9), 1),
            epochs=self._evaluated_epochs,
            params=str(self.run_dir / "params.npz"),
            plot=str(self.run_dir / "training.png"),
            metrics=str(self.run_dir / "metrics.jsonl"),
        )
