"""The scheduler: hands out data partitions, counts epochs, evaluates, ends the job.

It loads the dataset once to learn its shape (the layout every role builds the same
model from), gives each worker its partition, writes one line per worker per clock to
``metrics.jsonl``, evaluates the tables held by the shards on the held-out data after
every epoch, and ends the job after the configured epochs or once the target accuracy
is reached: the run directory then holds ``params.npz`` and ``training.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import structlog
import trio

from actorml import Actor, ActorGone, NotReady, handler
from actorml.messages import NodeDown
from actorml.models.base import Model
from actorml.models.dataset import Dataset, partition
from actorml.models.staging import NotStaged, load_and_stage, staged_path
from actorml.protocols.contract import Clocks, GetClocks
from actorml.resume import resume_snapshot, snapshot_directory

from .acklog import Acked, AckLog
from .config import build_model, make_layout
from .messages import (
    Assignment,
    Done,
    GetLayout,
    GetTableMap,
    JoinJob,
    Layout,
    Progress,
    Promote,
    Repartition,
    ShardHello,
    ShardRole,
    StopTraining,
    TableMapUpdate,
    TakeSnapshot,
)
from .plot import warm as warm_plotting
from .report import audit_failure as _audit_failure
from .report import draw_plot, evaluate, fetch_tables, print_progress, result_summary

__all__ = ["Scheduler"]


@attrs.define(eq=False)
class Scheduler(Actor):
    """Runs one data-parallel training job (see ``docs/training.md``)."""

    workers: list[str] = attrs.field(factory=list)
    shards: list[str] = attrs.field(factory=list)
    replicas: list[str] = attrs.field(factory=list)
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
    primaries: list[str] = attrs.field(init=False, factory=list)
    backups: list[str | None] = attrs.field(init=False, factory=list)
    map_version: int = attrs.field(init=False, default=0)
    _acks: AckLog = attrs.field(init=False, factory=lambda: AckLog(None))
    _saved_at: float = attrs.field(init=False, default=0.0)
    _next_eval: int = attrs.field(init=False, default=0)
    _next_snapshot: int = attrs.field(init=False, default=0)
    _loading: str = attrs.field(init=False, default="starting")
    _staged: Path | None = attrs.field(init=False, default=None)

    @property
    def _batches_per_clock(self) -> int:
        """Mini-batches per clock (``[job] batches_per_clock``): a clock's unit of work."""
        return int(self.job.get("batches_per_clock", 1))

    @property
    def run_dir(self) -> Path:
        return self.ctx.node.run_dir or Path(".")

    async def run(self) -> None:
        # Loading happens here, not in started(): the mailbox is served meanwhile, and
        # whoever asks for the layout hears "not ready yet" instead of timing out.
        dataset = await self._load()
        self._prepare(dataset)
        if self._done >= set(self.workers) and not self._finished:
            # Restarted after every worker had finished: finish the job now.
            await self._finish_when_able()
        # matplotlib takes a second to import: now, while the job trains, not after the
        # last clock (the handlers are served meanwhile).
        with contextlib.suppress(Exception):
            await trio.to_thread.run_sync(warm_plotting)
        await trio.sleep_forever()

    async def _load(self) -> Dataset:
        """The dataset: mapped from its staged copy, else loaded once and staged."""
        data = dict(self.data)
        where = staged_path(self.run_dir, data)
        source = str(data.get("source"))
        self._loading = f"loading {source}"
        started_at = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._say_loading, started_at)
            try:
                dataset = await trio.to_thread.run_sync(lambda: _load_and_stage(data, where))
            except (ValueError, TypeError, OSError, EOFError) as exc:
                # Bad data stays bad: a restart would fail the same way, so the job ends
                # now with one line saying why, instead of restarting until the cluster
                # gives up.
                self.ctx.log.error("data_unusable", source=source, error=str(exc))
                await self.ctx.complete(error=f"cannot load {source!r}: {exc}")
                await trio.sleep_forever()
            nursery.cancel_scope.cancel()
        self._staged = where if (where / "dataset.json").exists() else None
        self.ctx.log.info(
            "data_loaded", source=source, seconds=round(time.perf_counter() - started_at, 3),
            staged=str(self._staged) if self._staged else None,
        )  # fmt: skip
        return dataset

    async def _say_loading(self, started_at: float) -> None:
        """The progress line while loading: what, and for how long so far."""
        while True:
            await trio.sleep(1.0)
            if self.job.get("progress", True):
                print(f"{self._loading} ... {time.perf_counter() - started_at:.0f} s", flush=True)

    def _prepare(self, dataset: Dataset) -> None:
        self._dataset = dataset
        layout = make_layout(
            self.job, self.model, self.data, self.optimizer, self.shards, dataset,
            staged=str(self._staged) if self._staged else None,
        )  # fmt: skip
        batch = layout.batch_size
        self._model = build_model(layout)
        n = dataset.y_train.shape[0]
        parts = [partition(n, len(self.workers), p) for p in range(len(self.workers))]
        biggest = max(p.stop - p.start for p in parts)
        self._cpe = max(1, math.ceil(biggest / (batch * self._batches_per_clock)))
        self._total = self._cpe * int(self.job.get("epochs", 1))
        self.clocks = dict.fromkeys(self.workers, 0)
        self.primaries = list(self.shards)
        self.backups = list(self.replicas) if self.replicas else [None] * len(self.shards)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._acks = AckLog(self._ack_file)
        if self.ctx.restarted:
            self._restore(self._state_file)
        elif (snapshot := resume_snapshot(self.run_dir)) is not None:
            self._restore(snapshot / "scheduler.json")
            self._save()
            self.ctx.log.warning("job_resumed", snapshot=str(snapshot), clocks=self.clocks)
        else:
            self._acks.rewrite({})  # a run directory used before keeps no old record
        period = int(self.job.get("snapshot_every_clocks", 0) or 0)
        if period:
            self._next_snapshot = (min(self.clocks.values()) // period + 1) * period
        self.layout = layout  # last: from now on the handlers answer
        self.ctx.log.info(
            "job_ready", rows=n, features=dataset.n_features, classes=dataset.n_classes,
            clocks_per_epoch=self._cpe, total_clocks=self._total,
        )  # fmt: skip

    def _ready(self) -> Layout:
        """The layout; ``NotReady`` (the asker waits and asks again) while loading."""
        if self.layout is None:
            raise NotReady(self._loading)
        return self.layout

    def closed(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    # --- surviving a restart -------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.run_dir / "scheduler_state.json"

    @property
    def _ack_file(self) -> Path:
        return self.run_dir / "acked.jsonl"

    @property
    def acked(self) -> Acked:
        """Per slice, per ``worker#incarnation``, the pushes reported acknowledged."""
        return self._acks.acked

    def _save(self, *, throttle: bool = False) -> None:
        """Write what a restarted scheduler needs (atomically: temp file, then rename;
        the acknowledged pushes reported since the last save are appended to their
        journal, so a save costs what was reported since, not the job's history)."""
        now = time.perf_counter()
        if throttle and now - self._saved_at < 0.5:
            return
        self._saved_at = now
        _write_json(self._state_file, self._state(with_acked=False))
        self._acks.flush()

    async def _snapshot(self, clock: int) -> Path:
        """Tables, optimiser state, clocks and progress under ``snapshots/clock-N``.

        Each shard writes its slice, then the protocol's clocks and this scheduler's
        state are written, and only then ``snapshots/latest.json`` is replaced: a
        snapshot is complete or it is not there. It is not a consistent cut across
        shards (workers keep running while it is taken): a resumed SSP job is within
        its staleness bound of the moment the snapshot began.
        """
        directory = snapshot_directory(self.run_dir, clock)
        directory.mkdir(parents=True, exist_ok=True)
        for primary in self.primaries:
            await self.ctx.ask(primary, TakeSnapshot(clock))
        clocks: Clocks = await self.ctx.ask(self.protocol, GetClocks())
        _write_json(directory / "protocol.json", {"clocks": clocks.clocks, "epoch": clocks.epoch})
        _write_json(directory / "scheduler.json", self._state())
        _write_json(
            self.run_dir / "snapshots" / "latest.json", {"clock": clock, "path": str(directory)}
        )
        self.ctx.log.info("snapshot_taken", clock=clock, path=str(directory))
        return directory

    def _state(self, *, with_acked: bool = True) -> dict[str, Any]:
        """What a restarted or resumed scheduler needs; the acknowledged pushes only
        if ``with_acked`` (a snapshot holds them; the state file leaves them to the
        journal)."""
        state = {
            "elapsed": time.perf_counter() - self._start if self._start else 0.0,
            "clocks": self.clocks,
            "done": sorted(self._done),
            "samples": self._samples,
            "evaluations": self.evaluations,
            "evaluated_epochs": self._evaluated_epochs,
            "primaries": self.primaries,
            "backups": self.backups,
            "map_version": self.map_version,
        }
        if with_acked:
            state["acked"] = self._acks.as_json()
        return state

    def _restore(self, path: Path) -> None:
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self._start = time.perf_counter() - state["elapsed"]
        self.clocks.update(state["clocks"])
        self._done = set(state["done"])
        self._samples = state["samples"]
        self.evaluations = state["evaluations"]
        self._evaluated_epochs = state["evaluated_epochs"]
        self.primaries, self.backups = state["primaries"], state["backups"]
        self.map_version = state["map_version"]
        if "acked" in state:  # a snapshot's
            self._acks.rewrite(state["acked"])
        else:
            self._acks = AckLog.load(self._ack_file)
        self.ctx.log.warning("scheduler_restored", clocks=self.clocks, done=sorted(self._done))

    @handler
    async def get_layout(self, msg: GetLayout) -> Layout:
        """The layout, naming the current primaries (a replacement starts up to date)."""
        return attrs.evolve(self._ready(), shards=list(self.primaries))

    # --- the table map: which actor is the primary (and the backup) of each slice ------

    @handler
    async def shard_hello(self, msg: ShardHello) -> ShardRole:
        self._ready()
        k = msg.index
        if self.primaries[k] == msg.name:
            if self.map_version:  # it was restarted while still the primary: nothing survived
                self.ctx.log.error("slice_lost", slice=k, primary=msg.name)
            return ShardRole("primary", k, self.backups[k], None)
        fresh = self.map_version == 0 and self.backups[k] == msg.name
        self.backups[k] = msg.name
        self.ctx.log.info("backup_assigned", slice=k, backup=msg.name, primary=self.primaries[k])
        self._save()
        return ShardRole("backup", k, None, None if fresh else self.primaries[k])

    @handler
    async def get_table_map(self, msg: GetTableMap) -> TableMapUpdate:
        self._ready()
        return TableMapUpdate(self.map_version, list(self.primaries))

    @handler
    async def node_down(self, msg: NodeDown) -> None:
        """Promote the backups of the primaries that died; forget the backups that died;
        re-hand the data of workers removed from the job."""
        placement = self.ctx.node.placement
        if msg.reason == "removed":
            gone = [w for w in self.workers if placement.get(w) == msg.node]
            for worker in gone:
                self.workers.remove(worker)
                self.clocks.pop(worker, None)
                self._done.discard(worker)
            if gone and self.workers:
                await self._repartition()
            if self.workers and self._done >= set(self.workers) and not self._finished:
                await self._finish_when_able()
            return
        for k, primary in enumerate(self.primaries):
            backup = self.backups[k]
            if backup is not None and placement.get(backup) == msg.node:
                self.backups[k] = None
            if placement.get(primary) != msg.node:
                continue
            self.map_version += 1
            if self.backups[k] is None:
                self.ctx.log.error("slice_unreplicated_primary_died", slice=k, primary=primary)
                continue
            self.primaries[k], self.backups[k] = self.backups[k], None  # type: ignore[assignment]
            await self.ctx.ask(self.primaries[k], Promote(self.map_version))
            self._save()
            self.ctx.log.warning(
                "shard_failover", slice=k, dead=primary, primary=self.primaries[k],
                map_version=self.map_version, reason=msg.reason,
            )  # fmt: skip
        if self.workers and self._done >= set(self.workers) and not self._finished:
            await self._finish_when_able()  # a finish deferred for this failover

    @handler
    async def join_job(self, msg: JoinJob) -> Assignment:
        self._ready()
        if not self._start:
            self._start = time.perf_counter()
        if msg.worker not in self.workers:  # a worker added to the running job
            self.workers.append(msg.worker)
            self.clocks.setdefault(msg.worker, min(self.clocks.values(), default=0))
            await self._repartition(except_=msg.worker)
        part = self.workers.index(msg.worker)
        return Assignment(
            part, len(self.workers), self._cpe, self._total, self.clocks.get(msg.worker, 0)
        )

    async def _repartition(self, except_: str | None = None) -> None:
        """Re-hand the training rows: part ``i`` of ``len(workers)`` to ``workers[i]``."""
        if self._dataset is None:
            return  # still loading: the partitions are drawn from the workers left
        n = self._dataset.y_train.shape[0]
        batch = int(self.job.get("batch_size", 64)) * self._batches_per_clock
        parts = [partition(n, len(self.workers), p) for p in range(len(self.workers))]
        self._cpe = max(1, math.ceil(max(p.stop - p.start for p in parts) / batch))
        for i, worker in enumerate(self.workers):
            if worker != except_:
                await self.ctx.tell(worker, Repartition(i, len(self.workers), self._cpe))
        self.ctx.log.info("data_rehanded", workers=list(self.workers), clocks_per_epoch=self._cpe)
        self._save()

    @handler
    async def progress(self, msg: Progress) -> None:
        now = time.perf_counter() - self._start
        self.clocks[msg.worker] = max(self.clocks.get(msg.worker, 0), msg.clock + 1)
        self._samples += msg.samples
        self._acks.record(f"{msg.worker}#{msg.incarnation}", msg.acked)
        self._losses.append(msg.loss)
        self._metrics.write(json.dumps({
            "t": round(now, 4), "wall": round(time.time(), 4), "worker": msg.worker,
            "incarnation": msg.incarnation, "clock": msg.clock, "loss": msg.loss,
            "samples": msg.samples, "compute_s": round(msg.compute_s, 6),
            "wait_s": round(msg.wait_s, 6), "staleness": msg.staleness,
        }) + "\n")  # fmt: skip
        slowest = min(self.clocks.values())
        epoch = slowest // self._cpe
        every = int(self.job.get("eval_every_clocks", 0) or 0)
        if epoch > self._evaluated_epochs:
            self._evaluated_epochs = epoch
            await self._evaluate_unless_gone(epoch)
        elif every and slowest >= self._next_eval:
            await self._evaluate_unless_gone(self._evaluated_epochs)
        if every:
            self._next_eval = (slowest // every + 1) * every
        period = int(self.job.get("snapshot_every_clocks", 0) or 0)
        if period and slowest >= self._next_snapshot:
            if slowest:
                await self._snapshot(slowest)
            self._next_snapshot = (slowest // period + 1) * period
        self._print_progress(now)
        self._save(throttle=True)

    @handler
    async def done(self, msg: Done) -> None:
        self._done.add(msg.worker)
        self._save()
        if self._done >= set(self.workers) and not self._finished:
            await self._finish_when_able()

    async def _fetch(self) -> dict[str, np.ndarray]:
        params, _ = await self._fetch_audited()
        return params

    async def _fetch_audited(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
        """The full tables, and per slice the audit of applied against acknowledged pushes.

        ``lost``: pushes a worker saw acknowledged that the slice does not hold;
        ``doubled``: pushes applied more than once; ``unreported``: applied pushes no
        worker reported acknowledged (a worker that died with them in flight).
        """
        assert self._model is not None
        return await fetch_tables(self.ctx.ask, self._model, self.primaries, self.acked)

    async def _evaluate_unless_gone(self, epoch: int) -> None:
        """Evaluate now, or skip it when a shard's node just died.

        The death reaches this actor as ``NodeDown`` and fails the slice over; crashing
        here instead would drop that queued ``NodeDown`` with the mailbox, and the
        restarted scheduler would never fail the slice over.
        """
        try:
            await self._evaluate(epoch)
        except ActorGone as exc:  # NodeUnreachable too
            self.ctx.log.warning("evaluation_skipped", epoch=epoch, error=str(exc))

    async def _evaluate(self, epoch: int) -> dict[str, float]:
        assert self._model is not None and self._dataset is not None
        row = await evaluate(
            self._model, await self._fetch(), self._dataset, self.run_dir, epoch=epoch,
            clock=min(self.clocks.values()), t=round(time.perf_counter() - self._start, 4),
            train_loss=float(np.mean(self._losses[-len(self.workers) * 8 :] or [math.nan])),
            samples=self._samples,
        )  # fmt: skip
        self.evaluations.append(row)
        self._save()
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
        recent = self._losses[-len(self.workers) * 8 :]
        print_progress(
            clock=min(self.clocks.values()),
            total=self._total,
            loss=float(np.mean(recent)) if recent else math.nan,
            accuracy=self.evaluations[-1]["test_accuracy"] if self.evaluations else math.nan,
            samples_per_s=self._samples / max(now, 1e-9),
            final=final,
        )

    async def _finish_when_able(self) -> None:
        """Finish the job; if a slice's primary just died, finish after its failover.

        Crashing here instead would drop the ``NodeDown`` queued behind this message,
        and every restarted incarnation would meet the same dead primary and crash in
        turn until its supervisor gave up: the job would never end.
        """
        self._finished = True
        try:
            await self._finish()
        except ActorGone as exc:  # NodeUnreachable too: the NodeDown handler retries
            self._finished = False
            self.ctx.log.warning("finish_deferred", error=str(exc))

    async def _finish(self) -> None:
        elapsed = time.perf_counter() - self._start
        if self.evaluations and self.evaluations[-1]["samples"] == self._samples:
            final = self.evaluations[-1]
        else:
            final = await self._evaluate(self._evaluated_epochs)
        self._print_progress(elapsed, final=True)
        params, audit = await self._fetch_audited()
        np.savez(self.run_dir / "params.npz", **params)
        if self.job.get("snapshot_every_clocks"):
            await self._snapshot(min(self.clocks.values()))
        await self.ctx.complete(
            **result_summary(
                final, elapsed=elapsed, samples=self._samples, epochs=self._evaluated_epochs,
                run_dir=self.run_dir,
            ),
            audit=audit,
            **_audit_failure(audit),
        )  # fmt: skip
        self._metrics.flush()
        await draw_plot(self.run_dir, self.evaluations, self.ctx.log)


def _load_and_stage(data: dict[str, Any], where: Path) -> Dataset:
    """The dataset, staged for the workers and mapped (one copy in memory).

    A dataset that cannot be staged is kept in memory, and the workers then load it
    themselves, as before staging existed.
    """
    try:
        return load_and_stage(data, where)
    except NotStaged as exc:
        structlog.get_logger().warning("data_not_staged", error=str(exc))
        return exc.dataset


def _write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)
