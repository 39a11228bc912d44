"""The contract every consistency protocol actor honours.

A *clock* is one unit of a worker's progress (here: ``[job] batches_per_clock``
mini-batches, one by default). A worker at clock ``c`` asks :class:`MayRead` (or judges
the gate itself, below); the protocol answers :class:`ReadOk` once the worker may
proceed, saying how fresh the rows it reads must be. When the worker's pushes for clock
``c`` are all acknowledged by the shards it sends :class:`Tick` with ``clock = c + 1``,
so "the slowest clock is ``k``" means every update stamped ``< k`` is applied.

The protocols differ in one rule, ``min_clock >= clock - staleness``:

- BSP: staleness 0, a barrier every clock;
- SSP(s): a worker at clock ``c`` sees every update stamped ``<= c - s - 1`` and all of
  its own, and runs at most ``s`` clocks ahead of the slowest;
- ASP: no gate at all;
- ESSP(s): SSP's gate, and when the slowest clock advances the shards push fresh rows to
  the workers that read them (:class:`MinClock` to every shard).

The gate costs no round trip while it is open. A protocol whose rule is the plain
staleness rule (it does not override :meth:`~ConsistencyProtocol.allows` or
:meth:`~ConsistencyProtocol.fresh_from`) says so in :class:`Joined` (its
``staleness``), and tells a member :class:`MinClock` when the slowest clock has
advanced and, by the one it knows, its gate would close within its next two clocks
(every member when membership changes it): a worker with slack hears nothing, a worker
near the gate hears in time. A worker then judges the gate itself with
:func:`gate_allows` and :func:`gate_fresh_from` (the very functions the protocol's own
rule calls) against the slowest clock it was told, a lower bound of the true one, and
asks :class:`MayRead` only when it must wait. A protocol with a rule of its own
answers ``staleness = None``, and its workers ask every clock.

Membership is part of the clock: workers join at the slowest clock and leave (a dead
worker is removed by the scheduler) under a new membership epoch, so nobody waits for a
worker that is gone.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import structlog

from actorml import Actor, handler, message
from actorml.errors import ActorGone, UnknownNode
from actorml.messages import NodeDown
from actorml.resume import resume_snapshot
from actorml.topology.fields import checked, integer

__all__ = [
    "Clocks",
    "ConsistencyProtocol",
    "GetClocks",
    "Join",
    "Joined",
    "Leave",
    "MayRead",
    "MinClock",
    "ReadOk",
    "Tick",
    "gate_allows",
    "gate_fresh_from",
    "staleness_field",
]


@message("protocol.may_read")
class MayRead:
    """May ``worker`` (at ``clock``) read and compute now? Answered when it may."""

    worker: str
    incarnation: int
    clock: int


@message("protocol.read_ok")
class ReadOk:
    """Go ahead. Cached rows must be stamped ``>= fresh_from`` (None: any row will do)."""

    min_clock: int
    fresh_from: int | None
    epoch: int


@message("protocol.tick")
class Tick:
    """``worker`` finished clock ``clock - 1``; all its pushes for it are acknowledged.

    ``report``: a message the protocol passes on to its ``reports_to`` actor (the
    worker's progress), so that one frame per clock carries both.
    """

    worker: str
    incarnation: int
    clock: int
    report: object = None


@message("protocol.join")
class Join:
    """``worker`` enters the clock vector, wishing to start at ``clock`` (where it left
    off; 0 for a new worker). See :meth:`ConsistencyProtocol.join`."""

    worker: str
    incarnation: int
    clock: int = 0


@message("protocol.joined")
class Joined:
    """The answer to `Join`: the clock the worker starts at, under membership ``epoch``;
    the slowest clock now, and ``staleness`` if the worker may judge the gate itself."""

    clock: int
    epoch: int
    min_clock: int = 0
    staleness: float | None = None
    forwards_reports: bool = False


@message("protocol.leave")
class Leave:
    """``worker`` leaves the clock vector (finished, removed, or judged dead); ``report``
    is passed on as a `Tick`'s is, after every report before it."""

    worker: str
    reason: str = "finished"
    report: object = None


@message("protocol.min_clock")
class MinClock:
    """The slowest clock is ``min_clock`` (membership ``epoch``): every update stamped
    below it is applied. To shards (ESSP) and, for the local gate, to workers."""

    min_clock: int
    epoch: int


@message("protocol.get_clocks")
class GetClocks:
    """Ask the protocol for its clock vector (answered with `Clocks`)."""


@message("protocol.clocks")
class Clocks:
    """The protocol's clock vector, slowest clock, membership epoch and waiting readers."""

    clocks: dict[str, int]
    min_clock: int
    epoch: int
    waiting: int


def gate_allows(clock: int, min_clock: int, staleness: float) -> bool:
    """The staleness rule: may a worker at ``clock`` proceed while the slowest is at
    ``min_clock``? (The protocol's default ``allows`` and a worker's local gate.)"""
    return min_clock >= clock - staleness


def gate_fresh_from(clock: int, staleness: float) -> int | None:
    """The stamp rows read at ``clock`` need under the staleness rule (None: any)."""
    if math.isinf(staleness):
        return None
    return int(clock - staleness)


def staleness_field(default: int) -> Any:
    """The ``staleness`` field of a protocol that takes one: an integer >= 0.

    Its validator is the one check of a staleness, whether the protocol is built in
    Python or from ``[protocol]`` (which applies it, reporting ``protocol.staleness``).
    """
    return attrs.field(default=default, validator=checked(integer(0)))


@attrs.define(eq=False)
class ConsistencyProtocol(Actor):
    """Base protocol actor: keeps the vector of worker clocks and gates reads.

    Subclasses set ``staleness`` (``math.inf`` for no gate) and ``push_on_advance``.
    A user protocol subclasses this and overrides :meth:`allows` / :meth:`fresh_from`
    (``kind = "mypkg.module:MyProtocol"`` in ``[protocol]``).

    Args:
        workers: the initial members; the gate counts them from the start, so a worker
            that joins late does not find the others far ahead.
        shards: shard actor names, told :class:`MinClock` when ``push_on_advance``.
        staleness: ``s``, an integer >= 0; subclasses that fix it (BSP, ASP) take none,
            and ``[protocol]`` then gives them none.
        reports_to: the actor the ``report`` of a `Tick` or `Leave` is passed on to (a
            job's scheduler), in the order they came; None: workers send their reports
            themselves (`Joined.forwards_reports`).
    """

    workers: list[str] = attrs.field(factory=list)
    shards: list[str] = attrs.field(factory=list)
    staleness: float = staleness_field(0)
    push_on_advance: bool = False
    reports_to: str | None = None
    clocks: dict[str, int] = attrs.field(init=False, factory=dict)
    incarnations: dict[str, int] = attrs.field(init=False, factory=dict)
    epoch: int = attrs.field(init=False, default=0)
    _waiting: list[tuple[int, str, Any]] = attrs.field(init=False, factory=list)
    _announced: int = attrs.field(init=False, default=0)
    _told: int = attrs.field(init=False, default=0)
    _known: dict[str, tuple[int, int]] = attrs.field(init=False, factory=dict)
    """Per worker, the (membership epoch, slowest clock) it was last told or answered."""
    asked: int = attrs.field(init=False, default=0)
    """How many times a worker asked :class:`MayRead` (the gate's round trips)."""
    told: int = attrs.field(init=False, default=0)
    """How many :class:`MinClock` tells went to workers."""

    _recovering: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.clocks = dict.fromkeys(self.workers, 0)

    async def started(self) -> None:
        snapshot = resume_snapshot(self.ctx.node.run_dir)
        if snapshot is not None and not self.ctx.restarted:
            saved = json.loads((snapshot / "protocol.json").read_text())
            self.clocks = {w: c for w, c in saved["clocks"].items() if w in self.clocks}
            self.epoch = saved["epoch"] + 1
            self.ctx.log.warning("protocol_resumed", clocks=self.clocks)
        elif self.ctx.restarted:
            # The clock vector died with the previous incarnation. Every worker asks or
            # ticks within a clock, and each message says where it is: rebuild from them.
            # Until all have been heard from, the slowest may be unknown (documented).
            self.clocks, self._recovering = {}, True
            self.ctx.log.warning("protocol_recovering", workers=self.workers)

    def _learn(self, worker: str, clock: int) -> None:
        if self._recovering and worker not in self.clocks:
            self.clocks[worker] = clock
            self.epoch += 1

    # --- the rule a protocol is ---------------------------------------------------

    def allows(self, clock: int, min_clock: int) -> bool:
        """May a worker at ``clock`` proceed while the slowest is at ``min_clock``?"""
        return gate_allows(clock, min_clock, self.staleness)

    def fresh_from(self, clock: int) -> int | None:
        """The stamp rows read at ``clock`` need (None: any)."""
        return gate_fresh_from(clock, self.staleness)

    @property
    def local_gate(self) -> float | None:
        """The staleness workers judge the gate with themselves, or None (they ask every
        clock) when a subclass brings a rule of its own."""
        cls = type(self)
        plain = (
            cls.allows is ConsistencyProtocol.allows
            and cls.fresh_from is ConsistencyProtocol.fresh_from
        )
        return float(self.staleness) if plain else None

    # --- state --------------------------------------------------------------------

    @property
    def min_clock(self) -> int:
        return min(self.clocks.values(), default=self._announced)

    @handler
    async def may_read(self, msg: MayRead) -> Any:
        self.asked += 1
        self._learn(msg.worker, msg.clock)
        if self.allows(msg.clock, self.min_clock):
            return self._ok(msg.clock, msg.worker)
        promise = self.ctx.promise()
        self._waiting.append((msg.clock, msg.worker, promise))
        return promise

    @handler
    async def tick(self, msg: Tick) -> None:
        await self._pass_on(msg.report)  # whatever becomes of the tick itself
        self._learn(msg.worker, msg.clock)
        if msg.worker not in self.clocks:
            return  # a worker that already left (or was removed): ignore its clock
        if (
            msg.incarnation
            and self.incarnations.get(msg.worker, msg.incarnation) != msg.incarnation
        ):
            return  # from a replaced incarnation
        self.clocks[msg.worker] = max(self.clocks[msg.worker], msg.clock)
        if not await self._advance():
            await self._tell_workers([msg.worker])

    @handler
    async def join(self, msg: Join) -> Joined:
        """A worker (re)joins where it left off, or at the slowest clock minus the
        staleness bound if the others have moved further on (BSP: at the slowest clock),
        so a rejoining worker never holds the others back by more than ``s`` clocks."""
        if msg.worker not in self.clocks:
            others = [c for w, c in self.clocks.items() if w != msg.worker]
            floor = -math.inf if not others else min(others) - self.staleness
            self.clocks[msg.worker] = int(max(msg.clock, floor))
            self.epoch += 1
            structlog.get_logger().info(
                "worker_joined", worker=msg.worker, clock=self.clocks[msg.worker]
            )
        self.incarnations[msg.worker] = msg.incarnation
        await self._announce_membership()
        self._known[msg.worker] = (self.epoch, self.min_clock)
        return Joined(
            self.clocks[msg.worker],
            self.epoch,
            self.min_clock,
            self.local_gate,
            forwards_reports=self.reports_to is not None,
        )

    @handler
    async def leave(self, msg: Leave) -> None:
        await self._pass_on(msg.report)
        if self.clocks.pop(msg.worker, None) is not None:
            self.epoch += 1
            self.ctx.log.info("worker_left", worker=msg.worker, reason=msg.reason)
            await self._advance()

    @handler
    async def node_down(self, msg: NodeDown) -> None:
        """Workers on a dead node leave the clock (a new membership epoch): nobody waits
        for them. Restarted, they join again at the slowest clock."""
        placement = self.ctx.node.placement
        gone = [w for w in self.clocks if placement.get(w) == msg.node]
        for worker in gone:
            del self.clocks[worker]
            self.incarnations.pop(worker, None)
        if gone:
            self.epoch += 1
            self.ctx.log.warning("workers_removed", workers=gone, node=msg.node, epoch=self.epoch)
            await self._advance()

    @handler
    async def get_clocks(self, msg: GetClocks) -> Clocks:
        return Clocks(dict(self.clocks), self.min_clock, self.epoch, len(self._waiting))

    async def _pass_on(self, report: object) -> None:
        if report is not None and self.reports_to is not None:
            await self.ctx.tell(self.reports_to, report)

    def _ok(self, clock: int, worker: str) -> ReadOk:
        self._known[worker] = (self.epoch, self.min_clock)
        return ReadOk(self.min_clock, self.fresh_from(clock), self.epoch)

    def _needs_telling(self, worker: str, gate: float) -> bool:
        """Whether ``worker`` should hear the slowest clock now: it knows an older one,
        and by what it knows the gate would close within its next two clocks (so the
        tell arrives before it gets there, and a worker with slack costs no message)."""
        epoch, known = self._known.get(worker, (-1, -1))
        if epoch != self.epoch:
            return True  # membership changed since: what it knows may be too high
        low = self.min_clock
        return known < low and not gate_allows(self.clocks[worker] + 1, known, gate)

    async def _tell(self, worker: str) -> None:
        self._known[worker] = (self.epoch, self.min_clock)
        self.told += 1
        try:
            await self.ctx.tell(worker, MinClock(self.min_clock, self.epoch))
        except (ActorGone, UnknownNode):
            pass  # a worker that cannot be told asks when it must wait

    async def _tell_workers(
        self, among: list[str] | None = None, *, everyone: bool = False
    ) -> None:
        """Tell members (``among`` them; None: all) the slowest clock, for the gate they
        judge themselves (ASP's is always open, and a protocol with a rule of its own is
        asked instead): every one after a membership change, else those that will need
        it soon."""
        gate = self.local_gate
        if gate is None or math.isinf(gate):
            return
        for worker in list(self.clocks) if among is None else among:
            if everyone or self._needs_telling(worker, gate):
                await self._tell(worker)

    async def _announce_membership(self) -> None:
        """A join can lower the slowest clock: workers must not keep judging by the old
        one. (An epoch newer than theirs replaces what they knew.)"""
        if self.min_clock < self._told:
            self._told = self.min_clock
            await self._tell_workers(everyone=True)

    async def _advance(self) -> bool:
        """Answer the waiting workers the slowest clock now lets through; tell those
        that will need it. True if the slowest clock advanced (and tells went out)."""
        low = self.min_clock
        still = []
        for clock, worker, promise in self._waiting:
            if worker not in self.clocks:
                continue  # it left or died while waiting: nobody to answer
            if self.allows(clock, low):
                await promise.resolve(self._ok(clock, worker))
            else:
                still.append((clock, worker, promise))
        self._waiting = still
        advanced = low > self._told
        if advanced:
            self._told = low
            await self._tell_workers()
        if low > self._announced:
            self._announced = low
            if self.push_on_advance:
                for shard in self.shards:
                    await self.ctx.tell(shard, MinClock(low, self.epoch))
        return advanced
