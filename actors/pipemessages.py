"""What the stages of a pipeline and its driver say to each other.

Activations travel forward and gradients backward as numpy arrays, raw frames on the
wire (never pickled). Every message of a mini-batch carries its ``step``: the driver
numbers each attempt at a clock, and a stage drops what belongs to an older attempt,
so a mini-batch redone after a stage died cannot mix with its first try.
"""

from __future__ import annotations

import attrs
import numpy as np

from actorml import message

__all__ = ["Backward", "Flushed", "Forward", "StageReady", "StageUp"]


@message("pipe.forward")
class Forward:
    """Micro-batch ``micro`` of ``micros`` at clock ``clock``: the previous stage's output
    (stage 0: the input rows) and the labels; ``batch`` rows in the whole mini-batch."""

    step: int
    clock: int
    micro: int
    micros: int
    batch: int
    activations: np.ndarray
    labels: np.ndarray


@message("pipe.backward")
class Backward:
    """The gradient of the loss with respect to the receiving stage's output, for
    micro-batch ``micro`` (next stage -> previous stage)."""

    step: int
    clock: int
    micro: int
    grad: np.ndarray


@message("pipe.flushed")
class Flushed:
    """A stage applied clock ``clock``'s update, all micro-batches accumulated (stage ->
    driver). ``loss`` is its share of the mini-batch loss; ``acked`` the push seqs each
    shard acknowledged (the audit)."""

    stage: int
    replica: int
    step: int
    clock: int
    loss: float
    busy_s: float
    incarnation: int
    acked: dict[str, list[int]] = attrs.field(factory=dict)


@message("pipe.stage_up")
class StageUp:
    """A stage came back after a crash or its node's death (stage -> driver): the
    replica's mini-batch in flight is redone."""

    stage: int
    replica: int
    incarnation: int


@message("pipe.stage_ready")
class StageReady:
    """Ask a stage whether it is up and holds its parameters (answered when it does)."""
