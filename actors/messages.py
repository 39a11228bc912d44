"""What workers, shard servers and the scheduler say to each other.

Row payloads travel as lists (one entry per table) of numpy arrays, so one message
per shard carries every table's rows for a clock.
"""

from __future__ import annotations

import attrs
import numpy as np

from actorml import message
from actorml.shm import SegmentHandle

__all__ = [
    "Assignment",
    "Done",
    "GetLayout",
    "GetTables",
    "JoinJob",
    "Layout",
    "Progress",
    "Pull",
    "Push",
    "PushAck",
    "Rows",
    "RowsUpdate",
    "StopTraining",
    "Tables",
]


@message("ps.pull")
class Pull:
    """Read rows. ``rows[i]`` are global row ids of ``tables[i]`` (None: all this shard has)."""

    worker: str
    tables: list[str]
    rows: list[np.ndarray | None]


@message("ps.rows")
class Rows:
    """Rows as the shard has them now.

    ``applied`` maps each worker to the highest clock whose push this shard has applied;
    ``version`` counts the pushes the shard applied, so a cache never lets an older
    answer overwrite a newer one.
    """

    tables: list[str]
    rows: list[np.ndarray]
    values: list[np.ndarray]
    applied: dict[str, int]
    version: int


@message("ps.push")
class Push:
    """Gradients for rows, stamped with the worker's clock; ``seq`` makes retries idempotent.

    The acknowledgement brings back the pushed rows and the rows ``want_rows`` of
    ``want_tables`` (the worker's next batch): a pull folded into the push. With
    ``echo = False`` it brings no rows: a worker on the shard's host reads them from
    the shard's shared-memory segment instead (see `Segment`).
    """

    worker: str
    incarnation: int
    seq: int
    clock: int
    tables: list[str]
    rows: list[np.ndarray | None]
    grads: list[np.ndarray]
    want_tables: list[str] = attrs.field(factory=list)
    want_rows: list[np.ndarray | None] = attrs.field(factory=list)
    echo: bool = True


@message("ps.push_ack")
class PushAck:
    """The push is applied (or was already); carries the updated rows back."""

    seq: int
    duplicate: bool
    rows: Rows


@message("ps.rows_update")
class RowsUpdate:
    """ESSP: fresh rows a shard pushes to a reader when the slowest clock advances."""

    shard: str
    min_clock: int
    rows: Rows


@message("ps.get_segment")
class GetSegment:
    """Ask a shard where its slice lives in shared memory (answered with `Segment`)."""


@message("ps.segment")
class Segment:
    """Where a shard's slice lives in shared memory (:class:`actorml.shm.SegmentHandle`'s
    fields; ``available`` False: it shares none, read through messages).

    Only a process on the same host (:func:`actorml.shm.same_host`) can map it.
    """

    available: bool
    host: str = ""
    pid: int = 0
    fd: int = -1
    tables: list[str] = attrs.field(factory=list)
    rows: list[int] = attrs.field(factory=list)
    cols: list[int] = attrs.field(factory=list)
    dtype: str = ""
    size: int = 0
    token: int = 0
    meta_bytes: int = 0

    def handle(self) -> SegmentHandle | None:
        """The handle to map the segment with, or None if the shard shares none."""
        if not self.available:
            return None
        fields = attrs.asdict(self)
        del fields["available"]
        return SegmentHandle(**fields)


@message("ps.get_tables")
class GetTables:
    """Ask a shard for its whole slice of every table (answered with `Tables`)."""


@message("ps.tables")
class Tables:
    """A shard's whole slice of every table (for evaluation and checkpoints)."""

    shard: str
    tables: list[str]
    rows: list[np.ndarray]
    values: list[np.ndarray]
    applied: dict[str, int]
    version: int
    pushes_applied: int
    pushes_duplicate: int
    applied_ids: dict[str, list[int]]


@message("ps.join_job")
class JoinJob:
    """A worker (incarnation) asks the scheduler for its `Assignment`."""

    worker: str
    incarnation: int


@message("ps.assignment")
class Assignment:
    """Which part of the training data a worker owns and how long it trains."""

    part: int
    n_parts: int
    clocks_per_epoch: int
    total_clocks: int
    start_clock: int


@message("ps.progress")
class Progress:
    """One worker's clock: what it computed and how long it waited."""

    worker: str
    clock: int
    loss: float
    samples: int
    compute_s: float
    wait_s: float
    staleness: int
    incarnation: int = 0
    acked: dict[str, list[int]] = attrs.field(factory=dict)


@message("ps.done")
class Done:
    """A worker finished its last clock (worker -> scheduler)."""

    worker: str
    clocks: int


@message("ps.stop_training")
class StopTraining:
    """Stop training (scheduler -> workers), e.g. once the target accuracy is reached."""

    reason: str = "target reached"


@message("ps.get_layout")
class GetLayout:
    """Ask the scheduler for the job's `Layout` (every role, when it starts)."""


@message("ps.layout")
class Layout:
    """What every role needs to build the same model and tables as the scheduler.

    ``staged``: where the scheduler staged the dataset (see
    :mod:`actorml.models.staging`), for the workers to map; None: load it yourself.
    """

    model: dict[str, object]
    optimizer: dict[str, object]
    data: dict[str, object]
    n_features: int
    n_classes: int
    shards: list[str]
    seed: int
    batch_size: int
    staged: str | None = None
    batches_per_clock: int = 1
    overlap: bool = False
    shared_memory: bool = True


@message("ps.shard_hello")
class ShardHello:
    """A shard actor starting: which role does it play for slice ``index``?"""

    name: str
    index: int


@message("ps.shard_role")
class ShardRole:
    """``primary`` or ``backup`` of slice ``index``; a backup that must copy the current
    state first is told whom to copy it from (``sync_from``)."""

    role: str
    index: int
    backup: str | None
    sync_from: str | None


@message("ps.replicate")
class Replicate:
    """A primary forwards a push to its backup before acknowledging it."""

    push: Push


@message("ps.promote")
class Promote:
    """The primary of this slice died: the backup takes over."""

    map_version: int


@message("ps.sync_state")
class SyncState:
    """A new backup asks the primary for its whole state (and becomes its backup)."""

    backup: str


@message("ps.shard_state")
class ShardState:
    """Everything a replica needs to continue where the primary is."""

    tables: list[str]
    values: list[np.ndarray]
    state_names: list[list[str]]
    state: list[list[np.ndarray]]
    steps: list[np.ndarray]
    applied: dict[str, int]
    last_seq: list[tuple[str, int, int]]
    version: int
    pushes_applied: int
    pushes_duplicate: int
    applied_ids: dict[str, list[int]]


@message("ps.get_table_map")
class GetTableMap:
    """Ask the scheduler which actor is the primary of each slice (a `TableMapUpdate`)."""


@message("ps.table_map")
class TableMapUpdate:
    """Which actor is the primary of each slice now (``version`` grows on every change)."""

    version: int
    primaries: list[str]


@message("ps.take_snapshot")
class TakeSnapshot:
    """Write this slice's whole state into the snapshot of ``clock`` (atomically).

    The directory comes from the shard's own run directory
    (`actorml.resume.snapshot_directory`), never from the message.
    """

    clock: int


@message("ps.snapshot_taken")
class SnapshotTaken:
    """A shard wrote slice ``index`` of snapshot ``version`` (shard -> scheduler)."""

    index: int
    version: int


@message("ps.repartition")
class Repartition:
    """Workers joined or left: train on part ``part`` of ``n_parts`` from the next clock."""

    part: int
    n_parts: int
    clocks_per_epoch: int
