"""A shard server: holds slices of the parameter tables and applies pushes.

Each push carries (worker, incarnation, seq); a shard applies a given push once, and
acknowledges a retried one without applying it again. Updates go through the job's
server-side optimiser with per-row state (SGD, AdaGrad, RMSProp, Adam). Every answer
carries ``applied`` (per worker, the highest clock applied here) and ``version`` (pushes
applied so far), which is what the consistency checks and worker caches rely on.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from actorml import Actor, handler
from actorml.models.base import init_tables
from actorml.models.optim import Optimizer, init_state
from actorml.protocols.contract import MinClock

from .config import build_model, build_optimizer, build_table_map
from .messages import GetLayout, GetTables, Layout, Pull, Push, PushAck, Rows, RowsUpdate, Tables
from .tables import TableMap

__all__ = ["Shard"]


@attrs.define(eq=False)
class _Slice:
    values: np.ndarray
    state: dict[str, np.ndarray]
    steps: np.ndarray
    owned: np.ndarray


@attrs.define(eq=False)
class Shard(Actor):
    """Shard ``index`` of the job's tables.

    Args:
        index: which slice of every table this shard holds.
        scheduler: where the job layout comes from.
    """

    index: int = 0
    scheduler: str = "scheduler"
    map: TableMap | None = attrs.field(init=False, default=None)
    optimizer: Optimizer | None = attrs.field(init=False, default=None)
    slices: dict[str, _Slice] = attrs.field(init=False, factory=dict)
    applied: dict[str, int] = attrs.field(init=False, factory=dict)
    version: int = attrs.field(init=False, default=0)
    pushes_applied: int = attrs.field(init=False, default=0)
    pushes_duplicate: int = attrs.field(init=False, default=0)
    _last_seq: dict[tuple[str, int], int] = attrs.field(init=False, factory=dict)
    _readers: dict[str, dict[str, np.ndarray | None]] = attrs.field(init=False, factory=dict)

    async def started(self) -> None:
        layout: Layout = await self.ctx.ask_when_up(self.scheduler, GetLayout())
        model = build_model(layout)
        self.map = build_table_map(layout, model)
        self.optimizer = build_optimizer(layout)
        full = init_tables(tuple(model.tables()), layout.seed)
        for spec in model.tables():
            owned = self.map.owned(spec.name, self.index)
            self.slices[spec.name] = _Slice(
                values=np.ascontiguousarray(full[spec.name][owned]),
                state=init_state(self.optimizer, owned.size, spec.cols),
                steps=np.zeros(owned.size, dtype=np.int64),
                owned=owned,
            )
        rows = sum(s.owned.size for s in self.slices.values())
        self.ctx.log.info("shard_ready", tables=len(self.slices), rows=rows)

    def _rows(self, tables: list[str], rows: list[np.ndarray | None]) -> Rows:
        assert self.map is not None
        out_rows, out_values = [], []
        for name, ids in zip(tables, rows, strict=True):
            part = self.slices[name]
            if ids is None:
                out_rows.append(part.owned)
                out_values.append(part.values.copy())
            else:
                out_rows.append(ids)
                out_values.append(part.values[self.map.local(name, self.index, ids)])
        return Rows(list(tables), out_rows, out_values, dict(self.applied), self.version)

    @handler
    async def pull(self, msg: Pull) -> Rows:
        readers = self._readers.setdefault(msg.worker, {})
        for name, ids in zip(msg.tables, msg.rows, strict=True):
            readers[name] = _union(readers.get(name, ()), ids)
        return self._rows(msg.tables, msg.rows)

    @handler
    async def push(self, msg: Push) -> PushAck:
        assert self.map is not None and self.optimizer is not None
        key = (msg.worker, msg.incarnation)
        duplicate = msg.seq <= self._last_seq.get(key, -1)
        if duplicate:
            self.pushes_duplicate += 1
        else:
            for name, ids, grad in zip(msg.tables, msg.rows, msg.grads, strict=True):
                part = self.slices[name]
                if ids is None:
                    self.optimizer.apply(part.values, grad, part.state, part.steps)
                else:
                    local = self.map.local(name, self.index, ids)
                    self.optimizer.apply_at(part.values, local, grad, part.state, part.steps)
            self._last_seq[key] = msg.seq
            self.applied[msg.worker] = max(self.applied.get(msg.worker, -1), msg.clock)
            self.version += 1
            self.pushes_applied += 1
        readers = self._readers.setdefault(msg.worker, {})
        for name, ids in zip(msg.tables, msg.rows, strict=True):
            readers[name] = _union(readers.get(name, ()), ids)
        return PushAck(msg.seq, duplicate, self._rows(msg.tables, msg.rows))

    @handler
    async def min_clock(self, msg: MinClock) -> None:
        """ESSP: push fresh rows to every worker that has read from this shard."""
        for worker, tables in list(self._readers.items()):
            names = list(tables)
            update = RowsUpdate(
                f"shard-{self.index}", msg.min_clock, self._rows(names, [tables[n] for n in names])
            )
            await self.ctx.tell(worker, update)

    @handler
    async def tables(self, msg: GetTables) -> Tables:
        names = list(self.slices)
        return Tables(
            shard=self.ctx.ref.name,
            tables=names,
            rows=[self.slices[n].owned for n in names],
            values=[self.slices[n].values.copy() for n in names],
            applied=dict(self.applied),
            version=self.version,
            pushes_applied=self.pushes_applied,
            pushes_duplicate=self.pushes_duplicate,
        )

    def forget_reader(self, worker: str) -> None:
        self._readers.pop(worker, None)


def _union(known: Any, ids: np.ndarray | None) -> np.ndarray | None:
    """Rows a reader has asked for so far (None once it asked for all)."""
    if ids is None or known is None:
        return None
    if isinstance(known, tuple):
        return np.unique(ids)
    return np.union1d(known, ids)
