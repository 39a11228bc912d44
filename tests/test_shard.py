"""A shard on its own: pushes applied once, poison refused, snapshots where it decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import structlog

from actorml import ActorRef, Refused
from actorml.actors.messages import (
    GetLayout,
    Layout,
    Push,
    ShardHello,
    ShardRole,
    TakeSnapshot,
)
from actorml.actors.shard import Shard


@attrs.define
class _Node:
    run_dir: Path | None
    placement: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class _Context:
    """What a shard asks of its context, answered as a one-shard job's scheduler would."""

    node: _Node
    layout: Layout
    ref: ActorRef = attrs.field(factory=lambda: ActorRef("shard-0", "shard-0", 1))
    restarted: bool = False
    log: Any = attrs.field(factory=structlog.get_logger)

    async def ask_when_up(self, target: str, msg: object, within_s: float = 0.0) -> Any:
        assert isinstance(msg, GetLayout)
        return self.layout

    async def ask(self, target: str, msg: object, timeout: float | None = None) -> Any:
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
    shard.ctx = _Context(_Node(tmp_path), LAYOUT)  # type: ignore[assignment]
    await shard.started()
    return shard


def _values(shard: Shard) -> dict[str, np.ndarray]:
    return {name: part.values.copy() for name, part in shard.slices.items()}


def _push(shard: Shard, seq: int, fill: float = 1.0) -> Push:
    tables = list(shard.slices)
    grads = [np.full_like(shard.slices[t].values, fill) for t in tables]
    return Push("worker-0", 1, seq, 0, tables, [None] * len(tables), grads)


class TestPushes:
    async def test_a_resent_push_is_applied_once(self, shard: Shard) -> None:
        """The same (worker, incarnation, seq) twice: applied once, acknowledged twice."""
        before = _values(shard)
        first = await shard.push(_push(shard, 0))
        after_one = _values(shard)
        again = await shard.push(_push(shard, 0))
        assert (first.duplicate, again.duplicate) == (False, True)
        assert (shard.pushes_applied, shard.pushes_duplicate) == (1, 1)
        assert shard.applied_ids == {"worker-0#1": [0]}
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, after_one[name])
            assert not np.array_equal(values, before[name])

    async def test_an_older_seq_is_a_duplicate_too(self, shard: Shard) -> None:
        """A retry of seq 0 arriving after seq 1 was applied changes nothing."""
        await shard.push(_push(shard, 0))
        await shard.push(_push(shard, 1))
        after = _values(shard)
        assert (await shard.push(_push(shard, 0))).duplicate
        assert shard.pushes_applied == 2
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, after[name])

    @pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
    async def test_a_non_finite_push_is_refused_and_counted(
        self, shard: Shard, poison: float
    ) -> None:
        """A gradient holding NaN or inf is refused unapplied; the next push still works."""
        before = _values(shard)
        push = _push(shard, 0)
        push.grads[0].flat[1] = poison
        with pytest.raises(Refused, match=r"^push 0 from worker-0 holds a non-finite gradient$"):
            await shard.push(push)
        assert (shard.pushes_refused, shard.pushes_applied, shard.version) == (1, 0, 0)
        for name, values in _values(shard).items():
            np.testing.assert_array_equal(values, before[name])
        assert not (await shard.push(_push(shard, 1))).duplicate


class TestSnapshots:
    async def test_the_shard_chooses_where_a_snapshot_goes(
        self, shard: Shard, tmp_path: Path
    ) -> None:
        """TakeSnapshot names a clock, not a path: the file lands in the run directory."""
        assert [f.name for f in attrs.fields(TakeSnapshot)] == ["clock"]
        taken = await shard.take_snapshot(TakeSnapshot(12))
        assert taken.index == 0
        assert (tmp_path / "snapshots" / "clock-00000012" / "slice-0.npz").is_file()

    async def test_no_run_directory_no_snapshot(self, shard: Shard) -> None:
        """A shard without a run directory refuses to snapshot rather than guess a path."""
        shard.ctx.node.run_dir = None  # type: ignore[attr-defined]
        with pytest.raises(Refused, match=r"^shard-0 has no run directory"):
            await shard.take_snapshot(TakeSnapshot(1))
