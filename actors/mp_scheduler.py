"""The scheduler of a model-parallel job: runs the schedule S(t), round by round.

Round ``t``: the schedule plans one block per live worker; each worker gets its block
(`MpRound`) and answers once its changes are pushed and acknowledged by the shards. A
worker that dies during the round loses nothing acknowledged: its block goes back to the
schedule (`Schedule.requeue`) and the job goes on with the others until its restarted
incarnation joins again (`MpJoin`). After the round the scheduler reads back the tables
the problem's coordinator asks for (what the shards hold is the truth, whatever the
workers managed to report), lets it judge the round (`Coordinator.after_round`: the
metrics written to ``metrics.jsonl``, the changes `Schedule.observe` gets) and stops
once it is done (`Coordinator.done`) or after ``max_rounds``.

The table map, shard roles, failover of a dead primary and the audit of acknowledged
pushes are the data-parallel scheduler's (this class extends it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np
import trio

from actorml import ActorGone, AskTimeout, RemoteError, handler, registry
from actorml.models.rounds import Changes, Coordinator, Repairs
from actorml.protocols.contract import Leave

from .config import build_problem
from .messages import Layout, Pull, Push, PushAck, Rows, StopTraining
from .mp_messages import MpJoin, MpJoined, MpRound, MpRoundDone
from .scheduler import Scheduler, _audit_failure
from .schedules import Schedule, sweeps_of
from .tables import TableMap

__all__ = ["MpScheduler"]

T = TypeVar("T")


@attrs.define(eq=False)
class MpScheduler(Scheduler):
    """Runs one model-parallel job (see ``docs/model-parallel.md``).

    Args:
        schedule: the ``[schedule]`` table: ``kind`` and the schedule's options.
        (the rest as `Scheduler`; ``job`` holds ``max_rounds``, ``round_timeout_s``,
        ``wait_timeout_s`` and what the problem's coordinator reads, e.g. ``tolerance``.)
    """

    schedule: dict[str, Any] = attrs.field(factory=dict)
    round: int = attrs.field(init=False, default=0)
    updates: int = attrs.field(init=False, default=0)
    rescheduled: int = attrs.field(init=False, default=0)
    history: list[dict[str, float]] = attrs.field(init=False, factory=list)
    _plan: Schedule | None = attrs.field(init=False, default=None)
    _coordinator: Coordinator | None = attrs.field(init=False, default=None)
    _joined: set[str] = attrs.field(init=False, factory=set)
    _seq: int = attrs.field(init=False, default=0)
    _arrived: trio.Event = attrs.field(init=False, factory=trio.Event)

    async def started(self) -> None:
        options = {k: v for k, v in self.model.items() if k != "kind"}
        problem = registry.resolve("problem", str(self.model["kind"]))(**options)
        data = await trio.to_thread.run_sync(problem.load)
        sizes = problem.sizes(data, len(self.workers))
        self.layout = Layout(
            model={**self.model, **sizes},
            optimizer={"kind": "sgd", "lr": 1.0},  # a push carries -(change): applied as is
            data={},
            n_features=int(sizes.get("n_features", 0)),
            n_classes=1,
            shards=list(self.shards),
            seed=int(self.job.get("seed", 0)),
            batch_size=1,
        )
        self._model = build_problem(self.layout)
        kind = str(self.schedule.get("kind", problem.schedule))
        options = {k: v for k, v in self.schedule.items() if k != "kind"}
        coordinator = self._model.coordinator(data, {**self.job, **self.schedule})
        plan = registry.resolve("schedule", kind)(**options)
        n_params, dependence = coordinator.setup()
        plan.setup(n_params, dependence, self.layout.seed)
        self._plan, self._coordinator = plan, coordinator
        self.clocks = {}
        self.primaries = list(self.shards)
        self.backups = list(self.replicas) if self.replicas else [None] * len(self.shards)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if self.ctx.restarted:
            self._restore(self._state_file)
        self.ctx.log.info(
            "job_ready", problem=self.model["kind"], schedule=kind, round=self.round, **sizes
        )

    def _state(self, *, with_acked: bool = True) -> dict[str, Any]:
        state = super()._state(with_acked=with_acked)
        return {**state, "round": self.round, "updates": self.updates}

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
        assert self._coordinator is not None and self._plan is not None
        if self.ctx.restarted:  # what the coordinator kept died with the previous incarnation
            sweeps = sweeps_of(self._plan)
            tables = await self._read(self._coordinator.reads(self.round, sweeps))
            await _off_loop(
                self._coordinator.after_round, np.zeros(0, dtype=np.int64), tables, self.round,
                sweeps,
            )  # fmt: skip
        max_rounds = int(job.get("max_rounds", 100_000))
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
            if self._coordinator.done(self.round, sweeps_of(self._plan)):
                break
        await self._finish_rounds()
        await trio.sleep_forever()

    async def _one_round(self) -> None:
        assert self._plan is not None and self._coordinator is not None
        live = sorted(self._joined)
        blocks = self._plan.plan(len(live))
        round_timeout = float(self.job.get("round_timeout_s", 60.0))
        t0 = time.perf_counter()
        compute: list[float] = []
        lost: list[np.ndarray] = []

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
                lost.append(block)
                self.rescheduled += 1
                self.ctx.log.warning(
                    "block_rescheduled", worker=worker, round=self.round,
                    block=block.tolist(), error=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
                return
            self.updates += done.updates
            compute.append(done.compute_s)
            self._acks.record(f"{done.worker}#{done.incarnation}", done.acked)

        async with trio.open_nursery() as nursery:
            for worker, block in zip(live, blocks, strict=True):
                nursery.start_soon(give, worker, block)
        if isinstance(self._coordinator, Repairs):
            for block in lost:  # no worker pushes now: the tables hold still
                tables = await self._read(self._coordinator.repair_reads(block))
                await self._push(await _off_loop(self._coordinator.repair, block, tables))
        self.round += 1
        planned = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
        sweeps = sweeps_of(self._plan)
        tables = await self._read(self._coordinator.reads(self.round, sweeps))
        metrics, deltas = await _off_loop(
            self._coordinator.after_round, planned, tables, self.round, sweeps
        )
        if deltas is not None:
            self._plan.observe(planned, deltas)
        now = time.perf_counter() - self._start
        row = {
            "t": round(now, 4), "round": self.round - 1, **metrics,
            "updates": self.updates, "sweeps": sweeps, "workers": len(live),
            "round_s": round(time.perf_counter() - t0, 6),
            "compute_s": round(max(compute, default=0.0), 6),
        }  # fmt: skip
        self.history.append(row)
        self._metrics.write(json.dumps(row) + "\n")
        self._save(throttle=True)

    async def _read(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The tables ``names``, whole, as the shards' primaries hold them now."""
        assert self._model is not None
        specs = {spec.name: spec for spec in self._model.tables()}
        tables = {name: np.zeros((specs[name].rows, specs[name].cols)) for name in names}
        if not names:
            return tables
        deadline = trio.current_time() + float(self.job.get("wait_timeout_s", 300.0))
        for k in range(len(self.primaries)):
            while True:
                try:
                    rows: Rows = await self.ctx.ask(
                        self.primaries[k],
                        Pull(self.ctx.ref.name, list(names), [None] * len(names)),
                    )
                    break
                except (ActorGone, AskTimeout, RemoteError) as exc:
                    # A dead primary: its NodeDown (handled beside this loop) promotes
                    # the backup; ask again then.
                    if trio.current_time() >= deadline:
                        raise
                    self.ctx.log.info("shard_unavailable", slice=k, error=str(exc))
                    await trio.sleep(0.05)
            for name, ids, values in zip(rows.tables, rows.rows, rows.values, strict=True):
                tables[name][ids] = values
        return tables

    async def _push(self, changes: Changes) -> None:
        """Push ``changes`` to the shards as this scheduler (`Repairs`), each slice's part
        acknowledged (and counted in the audit) before the next."""
        if not changes:
            return
        assert self._model is not None
        tmap = TableMap(tuple(self._model.tables()), tuple(self.primaries))
        me, inc = self.ctx.ref.name, self.ctx.ref.incarnation
        rows = {name: ids for name, (ids, _) in changes.items()}
        grads = {name: -deltas for name, (_, deltas) in changes.items()}  # SGD, lr 1
        for shard, (tables, at, pieces) in sorted(tmap.split_changes(rows, grads).items()):
            self._seq += 1
            msg = Push(me, inc, self._seq, self.round, tables, at, pieces)
            ack: PushAck = await self.ctx.ask(self.primaries[shard], msg)
            self._acks.record(f"{me}#{inc}", {shard: [ack.seq]})
        self.ctx.log.warning("tables_repaired", round=self.round, tables=sorted(changes))

    async def _finish_rounds(self) -> None:
        self._finished = True
        elapsed = time.perf_counter() - self._start
        assert self._coordinator is not None
        for worker in sorted(self._joined):
            await self.ctx.tell(worker, StopTraining("converged"))
        params, audit = await self._fetch_audited()
        np.savez(self.run_dir / "params.npz", **params)
        self._metrics.flush()
        result = await _off_loop(self._coordinator.result, params)
        errors = [_audit_failure(audit).get("error", ""), result.pop("error", "")]
        error = "; ".join(e for e in errors if e)
        await self.ctx.complete(
            **result,
            rounds=self.round,
            updates=self.updates,
            rescheduled=self.rescheduled,
            train_seconds=round(elapsed, 3),
            params=str(self.run_dir / "params.npz"),
            metrics=str(self.run_dir / "metrics.jsonl"),
            audit=audit,
            **({"error": error} if error else {}),
        )


async def _off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread: a coordinator's evaluation of whole
    tables can take seconds, and the node's heartbeats must go on meanwhile."""
    return await trio.to_thread.run_sync(function, *args)
