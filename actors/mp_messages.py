"""What the scheduler and the workers of a model-parallel job say to each other.

The parameters themselves travel as in a data-parallel job (``ps.pull``, ``ps.push``
and their answers, through the shards); these messages carry the schedule: which
coordinates a worker updates in a round, and what became of them.
"""

from __future__ import annotations

import attrs
import numpy as np

from actorml import message

__all__ = ["MpJoin", "MpJoined", "MpRound", "MpRoundDone"]


@message("mp.join")
class MpJoin:
    """A worker (incarnation) is ready for rounds (worker -> scheduler)."""

    worker: str
    incarnation: int


@message("mp.joined")
class MpJoined:
    """The answer to `MpJoin`: the round the job is at (the worker's clock starts there)."""

    round: int


@message("mp.round")
class MpRound:
    """Round ``round``: update the block ``block`` (what the schedule planned: sorted
    coordinate ids, or a pair of block ids; may be empty)."""

    round: int
    block: np.ndarray


@message("mp.round_done")
class MpRoundDone:
    """A worker's round, pushed and acknowledged by the shards: ``updates`` it made
    (coordinates, ratings or tokens) in ``compute_s`` seconds.

    ``acked`` maps each shard slice to the push seqs it acknowledged (the audit that no
    acknowledged update is lost).
    """

    worker: str
    incarnation: int
    round: int
    updates: int
    compute_s: float
    acked: dict[str, list[int]] = attrs.field(factory=dict)
