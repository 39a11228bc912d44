"""A shard on its own: pushes applied once, poison refused, snapshots where it decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import structlog

from actorml import ActorContext, ActorRef, Refused
from actorml.actors.messages import (
    GetLayout,
    Layout,
    Pull,
    Push,
    RowsUpdate,
    ShardHello,
    ShardRole,
    TakeSnapshot,
)
from actorml.actors.shard import Shard
from actorml.codec import ASK, Envelope
from actorml.protocols.contract import MinClock


@attrs.define
class _Node:
    """The router a shard sees, answering as a one-shard job's scheduler would."""

    run_dir: Path | None
    layout: Layout
    name: str = "shard-0"
    incarnation: int = 1
    placement: dict[str, str] = attrs.field(factory=dict)
    told: list[tuple[str, object]] = attrs.field(factory=list)

    async def tell(self, target: str, msg: object, sender: object = None) -> None:
        self.told.append((target, msg))

    async def ask(self, target: str, msg: object, **_: Any) -> Any:
        if isinstance(msg, GetLayout):
            return self.layout
        assert isinstance(msg, ShardHello)
        return ShardRole("primary", msg.index, None, None)


LAYOUT = Layout(
    model={"kind": "logreg"},
    optimizer={"kind": "sgd", "lr": 0.5},
    data={},
    n_features=3,
    n_classes=2,
    shards=["shard-0"],
    seed=0,
    batch_size=8,
)


@pytest.fixture(name="shard")
async def _shard(tmp_path: Path) -> Shard:
    shard = Shard(index=0)
    node = _Node(tmp_path, LAYOUT)
    shard.ctx = ActorContext(node, ActorRef("shard-0", "shard-0", 1), structlog.get_logger())  # type: ignore[arg-type]
    await shard.started()
    return shard


def _from(shard: Shard, sender: str, msg: object) -> object:
    """Make ``msg`` the message being handled, as sent by actor ``sender``."""
    shard.ctx._current = Envelope(ASK, shard.ctx.ref, msg, ActorRef(sender, sender, 1), 1)
    return msg


async def _push(shard: Shard, msg: Push) -> Any:
    return await shard.push(_from(shard, msg.worker, msg))  # type: ignore[arg-type]


def _values(shard: Shard) -> dict[str, np.ndarray]:
    return {name: part.values.copy() for name, part in shard.slices.items()}


def _make_push(shard: Shard, seq: int, fill: float = 1.0) -> Push:
    tables = list(shard.slices)
    grads = [np.full_like(shard.slices[t].values, fill) for t in tables]
    return Push("worker-0", 1, seq, 0, tables, [None] * len(tables), grads)


class TestPushes:
    async def test_a_resent_push_is_applied_once(self, shard: Shard) -> None:
        """The same (worker, incarnation, seq) twice: applied once, acknowledged twice."""
        before = _values(shard)
        first = await _push(shard, _make_push(shard, 0))
        after_one = _values(shard)
        again = await _push(shard, _make_push(shard, 0))
        assert (first.duplicate, again.duplicate) == (False, True)
        assert (shard.pushes_applied, shard.pushes_duplicate) == (1, 1)
        assert shard.applied_ids == {"worker-0#1": [0]}
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, after_one[name])
            assert not np.array_equal(values, before[name])

    async def test_an_older_seq_is_a_duplicate_too(self, shard: Shard) -> None:
        """A retry of seq 0 arriving after seq 1 was applied changes nothing."""
        await _push(shard, _make_push(shard, 0))
        await _push(shard, _make_push(shard, 1))
        after = _values(shard)
        assert (await _push(shard, _make_push(shard, 0))).duplicate
        assert shard.pushes_applied == 2
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, after[name])

    @pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
    async def test_a_non_finite_push_is_refused_and_counted(
        self, shard: Shard, poison: float
    ) -> None:
        """A gradient holding NaN or inf is refused unapplied; the next push still works."""
        before = _values(shard)
        push = _make_push(shard, 0)
        push.grads[0].flat[1] = poison
        with pytest.raises(Refused, match=r"^push 0 from worker-0 holds a non-finite gradient$"):
            await _push(shard, push)
        assert (shard.pushes_refused, shard.pushes_applied, shard.version) == (1, 0, 0)
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, before[name])
        assert not (await _push(shard, _make_push(shard, 1))).duplicate


class TestSnapshots:
    async def test_the_shard_chooses_where_a_snapshot_goes(
        self, shard: Shard, tmp_path: Path
    ) -> None:
        """TakeSnapshot names a clock, not a path: the file lands in the run directory."""
        assert [f.name for f in attrs.fields(TakeSnapshot)] == ["clock"]
        taken = await shard.take_snapshot(_from(shard, "scheduler", TakeSnapshot(12)))  # type: ignore[arg-type]
        assert taken.index == 0
        assert (tmp_path / "snapshots" / "clock-00000012" / "slice-0.npz").is_file()

    async def test_no_run_directory_no_snapshot(self, shard: Shard) -> None:
        """A shard without a run directory refuses to snapshot rather than guess a path."""
        shard.ctx.node.run_dir = None  # type: ignore[attr-defined]
        with pytest.raises(Refused, match=r"^shard-0 has no run directory"):
            await shard.take_snapshot(_from(shard, "scheduler", TakeSnapshot(1)))  # type: ignore[arg-type]


class TestRequests:
    async def test_a_push_in_another_workers_name_is_refused(self, shard: Shard) -> None:
        """Only worker-0 may push as worker-0: its seqs are not anyone's to spend."""
        push = _make_push(shard, 0)
        with pytest.raises(Refused, match=r"^shard-0 takes Push only from worker-0, not from"):
            await shard.push(_from(shard, "worker-1", push))  # type: ignore[arg-type]
        assert shard.pushes_applied == 0

    async def test_only_the_scheduler_orders_a_snapshot(self, shard: Shard) -> None:
        """TakeSnapshot from a worker is refused; nothing is written."""
        with pytest.raises(Refused, match=r"^shard-0 takes TakeSnapshot only from scheduler"):
            await shard.take_snapshot(_from(shard, "worker-0", TakeSnapshot(3)))  # type: ignore[arg-type]
        assert not (shard.ctx.node.run_dir / "snapshots").exists()  # type: ignore[operator]

    async def test_an_unknown_table_is_refused_and_the_shard_serves_on(self, shard: Shard) -> None:
        """A pull naming a table that does not exist fails that ask, not the shard."""
        with pytest.raises(Refused, match=r"^unknown table 'nope' \(tables: "):
            await shard.pull(_from(shard, "worker-0", Pull("worker-0", ["nope"], [None])))  # type: ignore[arg-type]
        name = next(iter(shard.slices))
        rows = await shard.pull(_from(shard, "worker-0", Pull("worker-0", [name], [None])))  # type: ignore[arg-type]
        assert rows.tables == [name]

    @pytest.mark.parametrize(
        "ids", [np.array([10**6]), np.array([-1]), np.array([[0]]), np.array([0.5])]
    )
    async def test_rows_outside_the_slice_are_refused(self, shard: Shard, ids: np.ndarray) -> None:
        """Row ids this shard does not hold (or that are not row ids) are refused."""
        name = next(iter(shard.slices))
        with pytest.raises(Refused, match=rf"^rows of {name!r} "):
            await shard.pull(_from(shard, "worker-0", Pull("worker-0", [name], [ids])))  # type: ignore[arg-type]

    async def test_a_gradient_of_the_wrong_shape_is_refused(self, shard: Shard) -> None:
        """A push whose gradient does not match its rows changes nothing."""
        push = _make_push(shard, 0)
        push.grads[0] = push.grads[0][:-1]
        before = _values(shard)
        with pytest.raises(Refused, match=r"^gradient of .* has shape"):
            await _push(shard, push)
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, before[name])


class TestEssp:
    async def test_the_slowest_clock_pushes_exactly_the_rows_each_worker_read(
        self, tmp_path: Path
    ) -> None:
        """ESSP: a shard pushes each reader the rows it has read of a sparse table (the
        union of its requests), and whole dense tables to whoever read them whole."""
        layout = attrs.evolve(LAYOUT, model={"kind": "logreg", "sparse": True}, n_features=12)
        shard = Shard(index=0)
        node = _Node(tmp_path, layout)
        shard.ctx = ActorContext(node, ActorRef("shard-0", "shard-0", 1), structlog.get_logger())  # type: ignore[arg-type]
        await shard.started()
        await shard.pull(Pull("worker-0", ["w", "b"], [np.array([1, 5]), None]))
        await shard.pull(Pull("worker-0", ["w"], [np.array([5, 9])]))
        await shard.pull(Pull("worker-1", ["w"], [np.array([11])]))
        await shard.min_clock(MinClock(3, 0))
        pushed = {target: msg for target, msg in node.told}
        assert set(pushed) == {"worker-0", "worker-1"}
        for worker, expected in (("worker-0", [1, 5, 9]), ("worker-1", [11])):
            update = pushed[worker]
            assert isinstance(update, RowsUpdate) and update.min_clock == 3
            rows = dict(zip(update.rows.tables, update.rows.rows, strict=True))
            np.testing.assert_array_equal(rows["w"], expected)
        assert len(pushed["worker-0"].rows.rows[1]) == 1  # b: read whole, pushed whole
