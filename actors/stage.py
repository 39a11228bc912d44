"""A pipeline stage: a run of a network's layers, on the node the topology places it.

A stage takes micro-batches forward (`Forward`: the previous stage's activations in,
its own out to the next stage) and gradients backward (`Backward`: d loss / d its
output in, d loss / d its input out to the previous stage). The last stage computes
the loss and turns each forward round at once. A stage keeps each micro-batch's input
and outputs until the gradient comes back, adds every micro-batch's table gradients
into one sum, and once all ``micros`` micro-batches of the clock are back it applies the
update (the flush) and tells the driver (`Flushed`). Parameters change only at the
flush, so every micro-batch of a mini-batch sees the same weights and the summed
gradient is the whole mini-batch's (each micro-batch's loss is weighted by its share
of the rows).

Where the parameters live is the stage's `ParamStore` (``actors/stagestore.py``): in
the stage itself (a pipeline of one replica) or on the parameter-server shards, under
the job's consistency protocol (replicas of one stage share them there).
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import numpy as np
import trio

from actorml import Actor, ActorGone, handler
from actorml.models.layers import LayerRun
from actorml.models.softmax import softmax_xent
from actorml.protocols.contract import MinClock

from .config import build_model
from .messages import GetLayout, GetTables, Layout, RowsUpdate, Tables
from .pipemessages import Backward, Flushed, Forward, StageReady, StageUp
from .stagestore import LocalStore, ParamStore, ShardStore, stage_layers

__all__ = ["Stage"]


@attrs.define(eq=False)
class Stage(Actor):
    """Stage ``stage`` of replica ``replica`` of a pipeline.

    Args:
        stage: which run of layers, 0 first.
        replica: which data-parallel replica this stage belongs to.
        stages: the cut, a list of layer-id lists, or a number of stages to balance.
        previous: the previous stage's actor (None for stage 0).
        next: the next stage's actor (None for the last stage).
        driver: the pipeline driver (the job's layout comes from it).
        protocol: the consistency protocol actor when the parameters live on the
            shards; None keeps them in this stage.
        wait_timeout_s: the longest the stage waits for the protocol's permission.
    """

    stage: int = 0
    replica: int = 0
    stages: Any = 2
    previous: str | None = None
    next: str | None = None
    driver: str = "pipeline"
    protocol: str | None = None
    wait_timeout_s: float = 300.0
    _run: LayerRun | None = attrs.field(init=False, default=None)
    _l2: float = attrs.field(init=False, default=0.0)
    _store: ParamStore | None = attrs.field(init=False, default=None)
    _step: int = attrs.field(init=False, default=-1)
    _clock: int = attrs.field(init=False, default=-1)
    _micros: int = attrs.field(init=False, default=0)
    _returned: int = attrs.field(init=False, default=0)
    _begun: bool = attrs.field(init=False, default=False)
    _saved: dict[int, tuple[np.ndarray, list[np.ndarray]]] = attrs.field(init=False, factory=dict)
    _grads: dict[str, np.ndarray] = attrs.field(init=False, factory=dict)
    _loss: float = attrs.field(init=False, default=0.0)
    _busy: float = attrs.field(init=False, default=0.0)

    async def started(self) -> None:
        layout = await self._layout()
        model = build_model(layout)
        layers = stage_layers(model, self.stages)[self.stage]
        self._run = model.layers(layers[0], layers[-1] + 1)
        self._l2 = float(model.l2)
        specs = tuple(s for s in model.tables() if s.name in self._run.tables())
        if self.protocol is None:
            self._store = LocalStore.create(layout, specs)
        else:
            self._store = ShardStore.create(layout, specs, self.protocol, self.wait_timeout_s)
        self.ctx.log.info(
            "stage_ready", stage=self.stage, replica=self.replica, layers=layers,
            params="shards" if self.protocol else "local",
        )  # fmt: skip
        if self.ctx.restarted:
            await self._send(
                self.driver, StageUp(self.stage, self.replica, self.ctx.ref.incarnation)
            )

    async def _layout(self) -> Layout:
        """Ask the driver for the layout, waiting while it starts or its node restarts
        (a stage that crashed over it would only crash again, until its node gave up)."""
        deadline = trio.current_time() + 120.0
        while True:
            try:
                return await self.ctx.ask(self.driver, GetLayout())
            except ActorGone:  # NodeUnreachable too
                if trio.current_time() >= deadline:
                    raise
                await trio.sleep(0.1)

    def _accept(self, step: int, clock: int, micros: int) -> bool:
        """Whether a message belongs to the current attempt; a newer one starts afresh."""
        if step < self._step:
            return False  # an abandoned attempt's message, overtaken by its redo
        if step > self._step:
            self._step, self._clock, self._micros = step, clock, micros
            self._returned, self._begun = 0, False
            self._saved.clear()
            self._grads, self._loss, self._busy = {}, 0.0, 0.0
        return True

    async def _params(self) -> dict[str, np.ndarray]:
        assert self._store is not None
        if not self._begun:
            await self._store.begin(self.ctx, self._clock)
            self._begun = True
        return self._store.values

    @handler
    async def forward(self, msg: Forward) -> None:
        if not self._accept(msg.step, msg.clock, msg.micros):
            return
        assert self._run is not None
        params = await self._params()
        run = self._run
        began = time.perf_counter()
        if not run.ends_network:
            outputs = await trio.to_thread.run_sync(run.forward, params, msg.activations)
            self._busy += time.perf_counter() - began
            self._saved[msg.micro] = (msg.activations, outputs)
            out = Forward(
                msg.step, msg.clock, msg.micro, msg.micros, msg.batch, outputs[-1], msg.labels
            )
            await self._send(self.next, out)
            return
        share = msg.labels.shape[0] / msg.batch

        def last() -> np.ndarray | None:
            outputs = run.forward(params, msg.activations)
            loss, d_scores = softmax_xent(outputs[-1], msg.labels)
            d_scores *= share  # each micro-batch counts by its share of the rows
            self._loss += loss * share
            return run.backward(params, msg.activations, outputs, d_scores, self._grads)

        d_in = await trio.to_thread.run_sync(last)
        self._busy += time.perf_counter() - began
        await self._returned_one(msg.step, msg.clock, msg.micro, d_in)

    @handler
    async def backward(self, msg: Backward) -> None:
        if msg.step != self._step or msg.micro not in self._saved:
            return  # an abandoned attempt's gradient
        assert self._run is not None and self._store is not None
        A, outputs = self._saved.pop(msg.micro)
        params, run = self._store.values, self._run
        began = time.perf_counter()
        d_in = await trio.to_thread.run_sync(
            run.backward, params, A, outputs, msg.grad, self._grads
        )
        self._busy += time.perf_counter() - began
        await self._returned_one(msg.step, msg.clock, msg.micro, d_in)

    async def _returned_one(self, step: int, clock: int, micro: int, d_in: Any) -> None:
        """One micro-batch is through this stage both ways: pass its gradient on, and
        flush once the last one is."""
        if d_in is not None:
            await self._send(self.previous, Backward(step, clock, micro, d_in))
        self._returned += 1
        if self._returned == self._micros:
            await self._flush()

    async def _flush(self) -> None:
        assert self._run is not None and self._store is not None
        params = self._store.values
        self._run.add_l2(params, self._grads, self._l2)
        loss = self._loss + self._run.penalty(params, self._l2)
        began = time.perf_counter()
        acked = await self._store.update(self.ctx, self._clock, self._grads)
        self._busy += time.perf_counter() - began
        self._grads = {}
        await self._send(
            self.driver,
            Flushed(
                self.stage, self.replica, self._step, self._clock, loss, self._busy,
                self.ctx.ref.incarnation, acked,
            ),
        )  # fmt: skip

    async def _send(self, target: str | None, msg: object) -> None:
        """Tell a neighbour or the driver; if it is gone, drop the message: a restarted
        stage announces itself (`StageUp`) and the driver redoes the mini-batch; a
        restarted driver ends the job."""
        assert target is not None
        try:
            await self.ctx.tell(target, msg)
        except ActorGone as exc:
            self.ctx.log.warning("neighbour_gone", target=target, error=str(exc))

    @handler
    async def rows_update(self, msg: RowsUpdate) -> None:
        """ESSP: fresher rows, kept for the next clock (weights change only at a flush)."""
        if isinstance(self._store, ShardStore):
            self._store.offer(msg)

    @handler
    async def min_clock(self, msg: MinClock) -> None:
        """The protocol's word that the slowest clock advanced: a stage asks its gate
        every clock itself, so there is nothing to keep."""

    @handler
    async def stage_ready(self, msg: StageReady) -> None:
        """Answered once the stage is up (handlers run only after `started`)."""

    @handler
    async def tables(self, msg: GetTables) -> Tables:
        """This stage's tables, whole (where the parameters live in the stage)."""
        assert self._store is not None
        names = list(self._store.values)
        values = [self._store.values[n].copy() for n in names]
        return Tables(
            shard=self.ctx.ref.name,
            tables=names,
            rows=[np.arange(v.shape[0], dtype=np.int64) for v in values],
            values=values,
            applied={},
            version=0,
            pushes_applied=0,
            pushes_duplicate=0,
            applied_ids={},
        )
