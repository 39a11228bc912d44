"""A shard server: holds one slice of the parameter tables and applies pushes.

Each push carries (worker, incarnation, seq); a shard applies a given push once, and
acknowledges a retried one without applying it again. A push whose gradients hold NaN
or inf is refused, unapplied, and counted. Updates go through the job's
server-side optimiser with per-row state (SGD, AdaGrad, RMSProp, Adam). Every answer
carries ``applied`` (per worker, the highest clock applied here) and ``version`` (pushes
applied so far), which is what the consistency checks and worker caches rely on.

With replication a slice has a primary and a backup on another node. The primary
forwards every push to the backup and acknowledges it only once the backup has it, so
an acknowledged update survives the primary's death: the scheduler promotes the backup,
and the restarted node's actor copies the new primary's state and becomes its backup.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import attrs
import msgpack
import numpy as np

from actorml import Actor, ActorGone, AskTimeout, Refused, handler
from actorml.messages import NodeDown
from actorml.models.base import init_tables
from actorml.models.optim import Optimizer, init_state
from actorml.protocols.contract import MinClock
from actorml.resume import resume_snapshot, snapshot_directory
from actorml.shm import SegmentUnavailable, SharedSlice

from .config import build_model, build_optimizer, build_table_map
from .messages import (
    GetLayout,
    GetSegment,
    GetTables,
    Layout,
    Promote,
    Pull,
    Push,
    PushAck,
    Replicate,
    Rows,
    RowsUpdate,
    Segment,
    ShardHello,
    ShardRole,
    ShardState,
    SnapshotTaken,
    SyncState,
    Tables,
    TakeSnapshot,
)
from .tables import TableMap

__all__ = ["NotPrimary", "Shard"]


class NotPrimary(Refused):
    """A worker asked a backup (its table map is out of date)."""


@attrs.define(eq=False)
class _Slice:
    values: np.ndarray
    state: dict[str, np.ndarray]
    steps: np.ndarray
    owned: np.ndarray


@attrs.define(eq=False)
class Shard(Actor):
    """The holder of slice ``index`` of every table, as primary or as backup.

    Args:
        index: which slice of every table this actor holds.
        scheduler: where the job layout and this actor's role come from.
    """

    index: int = 0
    scheduler: str = "scheduler"
    role: str = attrs.field(init=False, default="primary")
    backup: str | None = attrs.field(init=False, default=None)
    map: TableMap | None = attrs.field(init=False, default=None)
    optimizer: Optimizer | None = attrs.field(init=False, default=None)
    slices: dict[str, _Slice] = attrs.field(init=False, factory=dict)
    applied: dict[str, int] = attrs.field(init=False, factory=dict)
    version: int = attrs.field(init=False, default=0)
    pushes_applied: int = attrs.field(init=False, default=0)
    pushes_duplicate: int = attrs.field(init=False, default=0)
    pushes_refused: int = attrs.field(init=False, default=0)
    """Pushes refused unapplied: a gradient held NaN or inf."""
    applied_ids: dict[str, list[int]] = attrs.field(init=False, factory=dict)
    """Per ``worker#incarnation``, the seqs applied: the audit that nothing was lost or doubled."""
    _last_seq: dict[tuple[str, int], int] = attrs.field(init=False, factory=dict)
    _backup_seen: bool = attrs.field(init=False, default=False)
    _readers: dict[str, dict[str, np.ndarray | None]] = attrs.field(init=False, factory=dict)
    """Per worker and table, a mask over this slice's rows of those it has read (None:
    all of them): marking a request's rows costs what the request names, not history."""
    _segment: SharedSlice | None = attrs.field(init=False, default=None)
    """The slice's tables in shared memory, for workers on this host (``[job]
    shared_memory``); None: they read through messages only."""

    async def started(self) -> None:
        layout: Layout = await self.ctx.ask_when_up(self.scheduler, GetLayout(), within_s=120)
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
        snapshot = resume_snapshot(self.ctx.node.run_dir)
        if snapshot is not None and not self.ctx.restarted:
            self._install(_read_snapshot(snapshot / f"slice-{self.index}.npz"))
        role: ShardRole = await self.ctx.ask(
            self.scheduler, ShardHello(self.ctx.ref.name, self.index)
        )
        self.role, self.backup = role.role, role.backup
        if role.sync_from is not None:
            state: ShardState = await self.ctx.ask(role.sync_from, SyncState(self.ctx.ref.name))
            self._install(state)
        if layout.shared_memory:
            self._share()
        rows = sum(s.owned.size for s in self.slices.values())
        self.ctx.log.info(
            "shard_ready", slice=self.index, role=self.role, backup=self.backup,
            synced_from=role.sync_from, rows=rows, version=self.version,
            shared=self._segment is not None,
        )  # fmt: skip

    def _share(self) -> None:
        """Move the tables into a shared-memory segment (the live tables from now on);
        on a platform that cannot share one, keep them private and say so."""
        tables = {name: part.values for name, part in self.slices.items()}
        run_dir = self.ctx.node.run_dir
        ref = self.ctx.ref
        # /proc/*/maps shows "memfd:actorml-<run>:<shard>.<incarnation>": whose it is
        label = f"{run_dir.name if run_dir else 'job'}:{ref.name}.{ref.incarnation}"
        try:
            segment = SharedSlice.create(label, tables, meta_bytes=META_BYTES)
        except (SegmentUnavailable, ValueError, OSError) as exc:
            self.ctx.log.warning("shared_memory_off", reason=str(exc))
            return
        for name, part in self.slices.items():
            part.values = segment.values[name]
        self._segment = segment
        with segment.writing():
            self._publish()

    def _publish(self) -> None:
        """Inside ``writing()``: the version and applied vector readers get with rows."""
        assert self._segment is not None
        applied = msgpack.packb(self.applied)
        if len(applied) > META_BYTES:  # beyond [job] workers' bound: a bug, say so
            raise Refused(f"applied vector of {len(applied)} bytes exceeds {META_BYTES}")
        self._segment.set_version(self.version)
        self._segment.set_meta(applied)

    def closed(self) -> None:
        """Readers of the segment get `SegmentUnavailable` from now on and ask again."""
        if self._segment is not None:
            self.slices.clear()  # our views go first, so the mapping goes at once
            self._segment.close()
            self._segment = None

    # --- reading and writing --------------------------------------------------------

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

    def _primary_only(self) -> None:
        if self.role != "primary":
            raise NotPrimary(
                f"{self.ctx.ref.name} is the backup of slice {self.index}; "
                "ask the scheduler for the current table map"
            )

    def _apply(self, msg: Push) -> bool:
        """Apply a push unless it was applied before; True if it was a duplicate."""
        assert self.map is not None and self.optimizer is not None
        key = (msg.worker, msg.incarnation)
        if msg.seq <= self._last_seq.get(key, -1):
            self.pushes_duplicate += 1
            return True
        if not all(np.isfinite(grad).all() for grad in msg.grads):
            # One NaN or inf would spread through the optimiser state to every reader.
            self.pushes_refused += 1
            self.ctx.log.warning(
                "push_refused", worker=msg.worker, seq=msg.seq, reason="non-finite gradient"
            )
            raise Refused(f"push {msg.seq} from {msg.worker} holds a non-finite gradient")
        segment = self._segment
        with segment.writing() if segment is not None else contextlib.nullcontext():
            for name, ids, grad in zip(msg.tables, msg.rows, msg.grads, strict=True):
                part = self.slices[name]
                if ids is None:
                    self.optimizer.apply(part.values, grad, part.state, part.steps)
                else:
                    local = self.map.local(name, self.index, ids)
                    self.optimizer.apply_at(part.values, local, grad, part.state, part.steps)
            self._last_seq[key] = msg.seq
            self.applied_ids.setdefault(f"{msg.worker}#{msg.incarnation}", []).append(msg.seq)
            self.applied[msg.worker] = max(self.applied.get(msg.worker, -1), msg.clock)
            self.version += 1
            self.pushes_applied += 1
            if segment is not None:
                self._publish()
        return False

    def _note_reader(self, worker: str, tables: list[str], rows: list[np.ndarray | None]) -> None:
        assert self.map is not None
        readers = self._readers.setdefault(worker, {})
        for name, ids in zip(tables, rows, strict=True):
            if ids is None:
                readers[name] = None
                continue
            if name not in readers:
                readers[name] = np.zeros(self.slices[name].owned.size, dtype=bool)
            mask = readers[name]
            if mask is not None:
                mask[self.map.local(name, self.index, ids)] = True

    def _check_request(
        self, tables: list[str], rows: list[np.ndarray | None], grads: list[np.ndarray] | None
    ) -> None:
        """Refuse a request naming a table this shard lacks, rows it does not hold, or
        gradients of the wrong shape, before anything is read or written.

        The work is proportional to the rows the request names. A bad request is the
        asker's fault: it fails that ask (Refused) and the shard keeps serving.
        """
        assert self.map is not None
        if len(rows) != len(tables) or (grads is not None and len(grads) != len(tables)):
            raise Refused("tables, rows and grads must have the same length")
        for i, name in enumerate(tables):
            part = self.slices.get(name)
            if part is None:
                raise Refused(f"unknown table {name!r} (tables: {', '.join(sorted(self.slices))})")
            ids = rows[i]
            count = part.owned.size
            if ids is not None:
                if ids.ndim != 1 or ids.dtype.kind not in "iu":
                    raise Refused(f"rows of {name!r} must be a 1-d integer array")
                if not self.map.holds(name, self.index, ids):
                    raise Refused(f"rows of {name!r} outside slice {self.index} of this shard")
                count = ids.size
            if grads is not None and grads[i].shape != (count, part.values.shape[1]):
                raise Refused(
                    f"gradient of {name!r} has shape {grads[i].shape}, "
                    f"expected {(count, part.values.shape[1])}"
                )

    @handler
    async def pull(self, msg: Pull) -> Rows:
        self._primary_only()
        self._check_request(msg.tables, msg.rows, None)
        self._note_reader(msg.worker, msg.tables, msg.rows)
        return self._rows(msg.tables, msg.rows)

    @handler
    async def push(self, msg: Push) -> PushAck:
        self._primary_only()
        self.ctx.only_from(msg.worker)  # a worker pushes as itself, nobody else
        self._check_request(msg.tables, msg.rows, msg.grads)
        self._check_request(msg.want_tables, msg.want_rows, None)
        duplicate = self._apply(msg)
        if self.backup is not None:
            try:
                if self._backup_seen:
                    await self.ctx.ask(self.backup, Replicate(msg))
                else:  # at the job's start the backup may still be starting
                    await self.ctx.ask_when_up(self.backup, Replicate(msg), within_s=30.0)
                    self._backup_seen = True
            except (ActorGone, AskTimeout) as exc:
                # Keep serving without a backup; the scheduler gives us a new one.
                self.ctx.log.warning("backup_lost", backup=self.backup, error=str(exc))
                self.backup = None
        if not msg.echo:
            # The worker reads this slice from the shared segment, as fresh as it is:
            # nothing to send back, nor to push to it when the slowest clock advances.
            return PushAck(msg.seq, duplicate, Rows([], [], [], dict(self.applied), self.version))
        tables, rows = msg.tables, msg.rows
        if msg.want_tables:
            tables, rows = [*tables, *msg.want_tables], [*rows, *msg.want_rows]
        self._note_reader(msg.worker, tables, rows)
        return PushAck(msg.seq, duplicate, self._rows(tables, rows))

    @handler
    async def get_segment(self, msg: GetSegment) -> Segment:
        """Where this slice lives in shared memory, for a worker on this host."""
        if self._segment is None:
            return Segment(False)
        return Segment(True, **attrs.asdict(self._segment.handle()))

    # --- replication ------------------------------------------------------------------

    @handler
    async def replicate(self, msg: Replicate) -> None:
        self._apply(msg.push)

    @handler
    async def promote(self, msg: Promote) -> None:
        self.ctx.only_from(self.scheduler)
        self.role, self.backup = "primary", None
        self.ctx.log.warning("shard_promoted", slice=self.index, map_version=msg.map_version)

    @handler
    async def take_snapshot(self, msg: TakeSnapshot) -> SnapshotTaken:
        """Write this slice's state to ``slice-K.npz`` in the snapshot of ``msg.clock``."""
        self.ctx.only_from(self.scheduler)
        run_dir = self.ctx.node.run_dir
        if run_dir is None:
            raise Refused(f"{self.ctx.ref.name} has no run directory to write a snapshot into")
        directory = snapshot_directory(run_dir, msg.clock)
        _write_snapshot(directory / f"slice-{self.index}.npz", self._state())
        return SnapshotTaken(self.index, self.version)

    @handler
    async def sync_state(self, msg: SyncState) -> ShardState:
        """Hand the whole state to a new backup, which gets every push from now on."""
        self._primary_only()
        self.backup, self._backup_seen = msg.backup, True
        self.ctx.log.info("backup_attached", backup=msg.backup, version=self.version)
        return self._state()

    def _state(self) -> ShardState:
        names = list(self.slices)
        return ShardState(
            tables=names,
            values=[self.slices[n].values for n in names],
            state_names=[list(self.slices[n].state) for n in names],
            state=[list(self.slices[n].state.values()) for n in names],
            steps=[self.slices[n].steps for n in names],
            applied=dict(self.applied),
            last_seq=[(w, inc, seq) for (w, inc), seq in self._last_seq.items()],
            version=self.version,
            pushes_applied=self.pushes_applied,
            pushes_duplicate=self.pushes_duplicate,
            applied_ids={k: list(v) for k, v in self.applied_ids.items()},
        )

    def _install(self, state: ShardState) -> None:
        for i, name in enumerate(state.tables):
            part = self.slices[name]
            part.values = np.array(state.values[i])
            part.state = {
                k: np.array(v) for k, v in zip(state.state_names[i], state.state[i], strict=True)
            }
            part.steps = np.array(state.steps[i])
        self.applied = dict(state.applied)
        self._last_seq = {(w, inc): seq for w, inc, seq in state.last_seq}
        self.version = state.version
        self.pushes_applied = state.pushes_applied
        self.pushes_duplicate = state.pushes_duplicate
        self.applied_ids = {k: list(v) for k, v in state.applied_ids.items()}

    @handler
    async def node_down(self, msg: NodeDown) -> None:
        """A backup on a dead node is dropped at once: the restarted one will ask to
        sync, and must not find this primary waiting on its predecessor."""
        if self.backup is not None and self.ctx.node.placement.get(self.backup) == msg.node:
            self.ctx.log.warning("backup_lost", backup=self.backup, reason=msg.reason)
            self.backup = None

    # --- ESSP and inspection ----------------------------------------------------------

    def _read_rows(self, name: str, mask: np.ndarray | None) -> np.ndarray | None:
        """The global ids of the rows a reader's ``mask`` marks (None: all rows)."""
        return None if mask is None else self.slices[name].owned[mask]

    @handler
    async def min_clock(self, msg: MinClock) -> None:
        """ESSP: push fresh rows to every worker that has read from this slice."""
        if self.role != "primary":
            return
        for worker, tables in list(self._readers.items()):
            names = list(tables)
            rows = self._rows(names, [self._read_rows(n, tables[n]) for n in names])
            await self.ctx.tell(worker, RowsUpdate(self.ctx.ref.name, msg.min_clock, rows))

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
            applied_ids={k: list(v) for k, v in self.applied_ids.items()},
        )


META_BYTES = 64 * 1024
"""Room in a segment for the applied vector (msgpack): 1024 workers (the bound of
``[job] workers``) named ``worker-N`` take about 17 KiB."""


def _write_snapshot(path: Path, state: ShardState) -> None:
    """One .npz per slice: arrays by name, the rest as a JSON string (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(state.tables):
        arrays[f"values/{name}"] = state.values[i]
        arrays[f"steps/{name}"] = state.steps[i]
        for key, value in zip(state.state_names[i], state.state[i], strict=True):
            arrays[f"state/{name}/{key}"] = value
    meta = {
        "tables": state.tables, "state_names": state.state_names, "applied": state.applied,
        "last_seq": state.last_seq, "version": state.version,
        "pushes_applied": state.pushes_applied, "pushes_duplicate": state.pushes_duplicate,
        "applied_ids": state.applied_ids,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def _read_snapshot(path: Path) -> ShardState:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        tables = meta["tables"]
        return ShardState(
            tables=tables,
            values=[data[f"values/{n}"] for n in tables],
            state_names=meta["state_names"],
            state=[
                [data[f"state/{n}/{k}"] for k in keys]
                for n, keys in zip(tables, meta["state_names"], strict=True)
            ],
            steps=[data[f"steps/{n}"] for n in tables],
            applied=meta["applied"],
            last_seq=[tuple(x) for x in meta["last_seq"]],
            version=meta["version"],
            pushes_applied=meta["pushes_applied"],
            pushes_duplicate=meta["pushes_duplicate"],
            applied_ids=meta["applied_ids"],
        )
