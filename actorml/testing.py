"""An in-memory network for tests: the nng transport's contract, with seeded faults.

:class:`MemoryNetwork` owns every inbox of a simulated cluster. Each node gets its
own :meth:`MemoryNetwork.transport`, which listens on and connects to ``mem://NAME``
addresses exactly as :class:`~actorml.transport.NngTransport` does with ``ipc://``
and ``tcp://``. Frames travel as bytes (``frame.to_bytes()``), so the codec runs on
every hop, and inboxes are bounded, so a slow receiver slows its senders down.

Faults are drawn from ``random.Random``, one generator per link (source address,
target address) seeded from the network's seed and the link, so one sender's
pattern of drops, duplicates and delays does not depend on how trio interleaves the
other links. Under trio's ``autojump_clock`` a run is deterministic.

A minimal cluster::

    network = MemoryNetwork(seed=1, delay=(0.001, 0.01))
    async with network.running(), trio.open_nursery() as nursery:
        a = Node("a", network.transport(), "mem://a", directory={"b": "mem://b"})
        b = Node("b", network.transport(), "mem://b", directory={"a": "mem://a"})
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        ...
"""

from __future__ import annotations

import errno
import math
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from .codec import Frame
from .errors import TransportClosed

__all__ = [
    "LinkFaults",
    "MemoryInbox",
    "MemoryNetwork",
    "MemoryOutbox",
    "MemoryTransport",
    "NetworkStats",
]

SCHEME = "mem://"


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _delay_range(
    _instance: object, attribute: attrs.Attribute[tuple[float, float]], value: tuple[float, float]
) -> None:
    lo, hi = value
    if not 0.0 <= lo <= hi or math.isinf(hi):
        raise ValueError(
            f"{attribute.name} must be (low, high) with 0 <= low <= high, got {value!r}"
        )


def _as_range(value: Iterable[float]) -> tuple[float, float]:
    pair = tuple(value)
    if len(pair) != 2:
        raise ValueError(f"delay must be (low, high) seconds, got {value!r}")
    return (float(pair[0]), float(pair[1]))


def _check_address(address: str) -> str:
    if not address.startswith(SCHEME) or len(address) == len(SCHEME):
        raise ValueError(
            f"unsupported address {address!r} for the memory transport (expected {SCHEME}NAME)"
        )
    return address


@attrs.frozen
class LinkFaults:
    """What can go wrong on one link.

    Attributes:
        drop: probability that a frame is lost.
        duplicate: probability that a frame arrives twice.
        delay: (low, high) seconds; each frame is held back by a uniform draw from it.
    """

    drop: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=_as_range, validator=_delay_range
    )


@attrs.define
class NetworkStats:
    """Counters of what the network did to the frames handed to it.

    Attributes:
        sent: frames handed to an outbox's ``send``.
        delivered: frames put into an inbox (a duplicate counts twice).
        dropped: frames lost to the ``drop`` probability.
        duplicated: frames delivered twice.
        delayed: frames held back by a non-zero delay.
        partitioned: frames lost because a partition separated the two ends.
        unroutable: frames lost because nobody listened on the target address.
    """

    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    partitioned: int = 0
    unroutable: int = 0


@attrs.frozen
class _Sent:
    """A frame in flight and the identity of the transport that sent it (or None)."""

    data: bytes
    peer: str | None = None


@attrs.define(eq=False)
class _Link:
    """Per (source, target) state: the fault generator and the FIFO of delayed frames."""

    source: str
    target: str
    rng: random.Random
    deliver_at: float = -math.inf
    in_flight: int = 0
    queue: trio.MemorySendChannel[tuple[float, _Sent]] | None = None


@attrs.define(eq=False)
class MemoryInbox:
    """Where one listener's frames arrive; holds at most the network's ``capacity``."""

    address: str
    _network: MemoryNetwork
    _send: trio.MemorySendChannel[_Sent]
    _receive: trio.MemoryReceiveChannel[_Sent]

    async def receive(self) -> tuple[bytes, str | None]:
        """The next frame and its sender's identity (see `MemoryTransport.identity`),
        waiting for one to arrive.

        Cancellation loses nothing: a frame not returned stays queued.

        Raises:
            TransportClosed: the inbox was closed (also while waiting).
        """
        try:
            sent = await self._receive.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise TransportClosed(self.address) from None
        return sent.data, sent.peer

    def close(self) -> None:
        """Stop listening: frames queued or in flight to this address are lost."""
        self._network._forget(self)
        self._send.close()
        self._receive.close()


@attrs.define(eq=False)
class MemoryOutbox:
    """The way from one transport to one address."""

    address: str
    _transport: MemoryTransport
    _closed: bool = False

    async def send(self, frame: Frame) -> None:
        """Send one frame through the network's faults.

        Waits while the target's inbox (or, for delayed frames, the link's queue) is
        full: that is the backpressure. A frame for an address nobody listens on is
        dropped and counted in ``stats.unroutable`` (nng would instead hold it until a
        listener appears; dropping keeps a test from hanging and stays within the
        at-most-once contract). Cancellation abandons the frame: it is never delivered.

        Raises:
            TransportClosed: this outbox was closed.
            RuntimeError: the frame must be delayed but the network is not
                :meth:`~MemoryNetwork.running`.
        """
        if self._closed:
            raise TransportClosed(self.address)
        network = self._transport.network
        sent = _Sent(frame.to_bytes(), self._transport.identity)
        await network._send(self._transport.address or "", self.address, sent)

    def close(self) -> None:
        """Close the outbox; later sends raise TransportClosed."""
        self._closed = True


@attrs.define(eq=False)
class MemoryTransport:
    """One node's view of a :class:`MemoryNetwork`.

    Attributes:
        network: the network frames travel through.
        address: this node's own address, the source of its links for partitions and
            per-link faults; set by the first :meth:`listen` when not given.
    """

    network: MemoryNetwork
    address: str | None = None
    identity: str | None = None
    """The name receivers see as this transport's authenticated peer (as TLS would tell
    them), or None: like ipc, the memory network then authenticates nobody."""

    def listen(self, address: str) -> MemoryInbox:
        """Start receiving frames sent to ``address`` (``mem://NAME``).

        Raises:
            ValueError: ``address`` is not a ``mem://`` address.
            OSError: someone already listens on ``address`` (``EADDRINUSE``).
        """
        inbox = self.network._listen(_check_address(address))
        if self.address is None:
            self.address = address
        return inbox

    def connect(self, address: str, peer: str | None = None) -> MemoryOutbox:
        """An outbox to ``address``; nobody needs to listen there yet (``peer``, the
        node expected there, is not checked: the memory network has no listener proof)."""
        return MemoryOutbox(_check_address(address), self)


@attrs.define(eq=False)
class MemoryNetwork:
    """A seeded, fault-injecting network of in-memory inboxes.

    Args:
        seed: seeds the per-link random generators.
        drop: default probability that a frame is lost.
        duplicate: default probability that a frame arrives twice.
        delay: default (low, high) delay in seconds, drawn uniformly per frame. Delays
            keep each link FIFO: a frame is delivered at
            ``max(previous frame's delivery time, now + delay)``. Delayed frames need
            :meth:`running`, which owns the tasks that deliver them.
        capacity: frames an inbox (and a link's delay queue) holds before senders wait.

    Attributes:
        stats: counters of what happened to the frames (:class:`NetworkStats`).
    """

    seed: int = 0
    drop: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=_as_range, validator=_delay_range
    )
    capacity: int = attrs.field(default=16)
    stats: NetworkStats = attrs.field(factory=NetworkStats)
    _inboxes: dict[str, MemoryInbox] = attrs.field(factory=dict, init=False)
    _links: dict[tuple[str, str], _Link] = attrs.field(factory=dict, init=False)
    _overrides: dict[tuple[str, str], LinkFaults] = attrs.field(factory=dict, init=False)
    _partitions: list[tuple[frozenset[str], frozenset[str]]] = attrs.field(factory=list, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    @capacity.validator
    def _check_capacity(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"capacity must be at least 1 frame, got {value!r}")

    def transport(
        self, address: str | None = None, *, identity: str | None = None
    ) -> MemoryTransport:
        """A transport for one node. ``address`` names its links' source; it defaults
        to the first address the transport listens on. ``identity`` is the peer name
        receivers are told, as an authenticating transport would (None: nobody)."""
        return MemoryTransport(self, None if address is None else _check_address(address), identity)

    # --- faults ------------------------------------------------------------------

    def partition(self, a: Iterable[str], b: Iterable[str]) -> None:
        """Lose every frame between any address in ``a`` and any in ``b`` (both ways)
        until :meth:`heal`. Frames already in flight still arrive."""
        self._partitions.append((frozenset(a), frozenset(b)))

    def heal(self) -> None:
        """Remove every partition."""
        self._partitions.clear()

    def is_partitioned(self, source: str, target: str) -> bool:
        """True if a partition separates ``source`` from ``target``."""
        return any(
            (source in a and target in b) or (source in b and target in a)
            for a, b in self._partitions
        )

    def set_link(
        self,
        source: str,
        target: str,
        *,
        drop: float | None = None,
        duplicate: float | None = None,
        delay: tuple[float, float] | None = None,
    ) -> LinkFaults:
        """Override the faults of the link ``source`` -> ``target`` (one direction).

        Arguments left as None keep the network's defaults. Returns the faults now in
        force on the link.
        """
        faults = LinkFaults(
            drop=self.drop if drop is None else drop,
            duplicate=self.duplicate if duplicate is None else duplicate,
            delay=self.delay if delay is None else delay,
        )
        self._overrides[(source, target)] = faults
        return faults

    def clear_link(self, source: str, target: str) -> None:
        """Return the link ``source`` -> ``target`` to the network's defaults."""
        self._overrides.pop((source, target), None)

    def faults(self, source: str, target: str) -> LinkFaults:
        """The faults in force on the link ``source`` -> ``target``."""
        override = self._overrides.get((source, target))
        if override is not None:
            return override
        return LinkFaults(self.drop, self.duplicate, self.delay)

    @property
    def in_flight(self) -> int:
        """Delayed frames not yet put into an inbox."""
        return sum(link.in_flight for link in self._links.values())

    # --- running -----------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MemoryNetwork]:
        """Run the tasks that deliver delayed frames, one per link that needs one.

        On exit the delivery tasks are cancelled and frames still in flight are lost.

        Raises:
            RuntimeError: the network is already running.
        """
        if self._nursery is not None:
            raise RuntimeError("the memory network is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                yield self
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            for link in self._links.values():
                link.queue, link.in_flight = None, 0

    async def inject(self, address: str, data: bytes, *, peer: str | None = None) -> None:
        """Put raw bytes into the inbox at ``address``, bypassing codec and faults.

        For testing what a node does with garbage. Waits while the inbox is full; an
        address nobody listens on counts as unroutable.
        """
        await self._put(address, _Sent(bytes(data), peer))

    # --- internals ---------------------------------------------------------------

    def _listen(self, address: str) -> MemoryInbox:
        if address in self._inboxes:
            raise OSError(errno.EADDRINUSE, f"address {address!r} is already in use")
        send, receive = trio.open_memory_channel[_Sent](self.capacity)
        inbox = MemoryInbox(address, self, send, receive)
        self._inboxes[address] = inbox
        return inbox

    def _forget(self, inbox: MemoryInbox) -> None:
        if self._inboxes.get(inbox.address) is inbox:
            del self._inboxes[inbox.address]

    def _link(self, source: str, target: str) -> _Link:
        link = self._links.get((source, target))
        if link is None:
            rng = random.Random(f"{self.seed}:{source}->{target}")
            link = self._links[(source, target)] = _Link(source, target, rng)
        return link

    async def _send(self, source: str, target: str, data: _Sent) -> None:
        self.stats.sent += 1
        link = self._link(source, target)
        faults = self.faults(source, target)
        # Draw all three every time, so changing one kind of fault does not shift the
        # pattern of the others.
        r_drop, r_duplicate, r_delay = link.rng.random(), link.rng.random(), link.rng.random()
        if self.is_partitioned(source, target):
            self.stats.partitioned += 1
            return
        if r_drop < faults.drop:
            self.stats.dropped += 1
            return
        copies = 1
        if r_duplicate < faults.duplicate:
            copies = 2
            self.stats.duplicated += 1
        low, high = faults.delay
        delay = low + (high - low) * r_delay
        if delay <= 0 and not link.in_flight:
            for _ in range(copies):
                await self._put(target, data)
            return
        if delay > 0:
            self.stats.delayed += 1
        # FIFO per link: never overtake the frame queued before.
        link.deliver_at = max(link.deliver_at, trio.current_time() + delay)
        for _ in range(copies):
            await self._enqueue(link, link.deliver_at, data)

    async def _enqueue(self, link: _Link, deliver_at: float, data: _Sent) -> None:
        if link.queue is None:
            if self._nursery is None:
                raise RuntimeError(
                    f"delayed delivery on {link.source or '?'} -> {link.target} needs "
                    "`async with network.running()`"
                )
            link.queue, receive = trio.open_memory_channel[tuple[float, _Sent]](self.capacity)
            self._nursery.start_soon(self._deliver, link, receive)
        # Counted before waiting, so a zero-delay frame sent meanwhile queues behind.
        link.in_flight += 1
        try:
            await link.queue.send((deliver_at, data))
        except BaseException:
            link.in_flight -= 1
            raise

    async def _deliver(
        self, link: _Link, receive: trio.MemoryReceiveChannel[tuple[float, _Sent]]
    ) -> None:
        async for deliver_at, data in receive:
            try:
                await trio.sleep_until(deliver_at)
                await self._put(link.target, data)
            finally:
                link.in_flight -= 1

    async def _put(self, target: str, data: _Sent) -> None:
        inbox = self._inboxes.get(target)
        if inbox is None:
            self.stats.unroutable += 1
            return
        try:
            await inbox._send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.stats.unroutable += 1
            return
        self.stats.delivered += 1
