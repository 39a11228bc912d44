"""A node: one process's router between its actors and the other nodes.

The node owns the inbox socket and one outbox per peer. Messages to a local actor
are handed over as objects (no codec, unless ``force_codec``); messages to another
node are encoded into one frame. Whatever arrives is checked before it reaches an
actor: a frame the codec rejects, an unknown actor, or an address naming an old
incarnation is dropped, logged and counted, and the node keeps serving.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from .codec import ASK, FAIL, REPLY, TELL, Envelope, decode, encode
from .errors import (
    ActorGone,
    AskTimeout,
    CodecError,
    NodeUnreachable,
    RemoteError,
    TransportClosed,
    UnknownNode,
)
from .messages import LAUNCHER, Ack, ActorRef, JobComplete
from .throttle import Throttle
from .transport import Outbox, Transport
from .trust import refusal

__all__ = [
    "Node",
    "NodeStats",
]

# Actor incarnations are unique across restarts of the node process too.
_INCARNATION_STRIDE = 1 << 20


@attrs.define
class NodeStats:
    """Counters a user can read to see what the node dropped and why.

    ``rejected_frames`` counts every frame the codec refused; ``rejected`` splits that
    count by :class:`CodecError` reason.
    """

    received: int = 0
    sent: int = 0
    rejected_frames: int = 0
    dropped_stale: int = 0
    dropped_no_actor: int = 0
    dropped_unreachable: int = 0
    dropped_late_reply: int = 0
    unhandled: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)

    def reject(self, reason: str) -> None:
        """Count one frame refused for ``reason``."""
        self.rejected_frames += 1
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def counters(self) -> dict[str, int]:
        """Every counter by name, flat (a reason's count as ``rejected_REASON``)."""
        flat = {k: v for k, v in attrs.asdict(self).items() if k != "rejected"}
        flat.update({f"rejected_{reason}": n for reason, n in sorted(self.rejected.items())})
        return flat


@attrs.define(eq=False)
class _Pending:
    asker: ActorRef
    target: str = ""
    done: trio.Event = attrs.field(factory=trio.Event)
    kind: int = REPLY
    body: Any = None


@attrs.define(eq=False)
class Node:
    """Routes envelopes between local actors and peer nodes.

    Args:
        name: this node's name in the topology.
        transport: makes the inbox and the outboxes.
        address: where to listen (``ipc://...``, ``tcp://host:port``; port 0 picks one).
        directory: node name -> address of its inbox, for the peers it may talk to.
        placement: actor name -> node name, so actors can be addressed by name.
        incarnation: this node process's incarnation (1 for the first start).
        send_timeout_s: the longest one send to a peer may wait (a full or dead peer);
            past it the message is dropped and counted, never left hanging.
        force_codec: encode and decode even local messages (tests use this).
        run_dir: where this run's files go (logs, metrics, results), if anywhere.
        reject_log_interval_s: at most one ``frame_rejected`` line per reason per this
            many seconds; each line's ``suppressed`` says how many were not logged.
            ``stats`` counts every one.
    """

    name: str
    transport: Transport
    address: str
    directory: dict[str, str] = attrs.field(factory=dict)
    placement: dict[str, str] = attrs.field(factory=dict)
    incarnation: int = 1
    ask_timeout_s: float = 10.0
    send_timeout_s: float = 10.0
    max_frame_size: int | None = None
    force_codec: bool = False
    run_dir: Path | None = None
    reject_log_interval_s: float = 5.0
    stats: NodeStats = attrs.field(factory=NodeStats)
    log: Any = attrs.field(factory=lambda: structlog.get_logger())
    _cells: dict[str, tuple[ActorRef, trio.MemorySendChannel[Envelope]]] = attrs.field(
        factory=dict, init=False
    )
    _handles: dict[str, frozenset[type]] = attrs.field(factory=dict, init=False)
    _down: set[str] = attrs.field(factory=set, init=False)
    _outboxes: dict[str, Outbox] = attrs.field(factory=dict, init=False)
    _held: dict[str, list[Envelope]] = attrs.field(factory=dict, init=False)
    """Answers to asks from nodes whose address this node does not know yet (a node
    that just restarted is asked before the launcher's directory reaches it): sent by
    :meth:`deliver_held` once it does, instead of lost while the asker waits."""
    _pending: dict[int, _Pending] = attrs.field(factory=dict, init=False)
    _cids: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _counters: dict[str, int] = attrs.field(factory=dict, init=False)
    _host_ref: ActorRef = attrs.field(init=False)
    _rejections: Throttle = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._host_ref = ActorRef(self.name, "_host", self.incarnation)
        self._rejections = Throttle(self.reject_log_interval_s, trio.current_time)

    # --- lifecycle ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and route incoming frames until cancelled.

        Reports the bound address (with the real port when asked for port 0). On
        exit closes the inbox and every outbox, and removes an ipc socket file.
        """
        inbox = self.transport.listen(self.address)
        self.address = inbox.address
        try:
            task_status.started(inbox.address)
            while True:
                try:
                    buffer, peer = await inbox.receive()
                except TransportClosed:
                    return
                self.stats.received += 1
                try:
                    env = decode(buffer, max_size=self.max_frame_size)
                except CodecError as exc:
                    self._rejected(exc.reason, exc.detail)
                    continue
                refused = refusal(env, peer)
                if refused is not None:
                    self._rejected(*refused)
                    continue
                await self.route(env)
        finally:
            inbox.close()
            self.close_outboxes()
            if self.address.startswith("ipc://"):
                _unlink(self.address[len("ipc://") :])

    def _rejected(self, reason: str, detail: str) -> None:
        self.stats.reject(reason)
        # A flood of bad frames must not become a flood of log lines (a full disk).
        held = self._rejections.admit(reason)
        if held is not None:
            self.log.warning("frame_rejected", reason=reason, detail=detail[:200], suppressed=held)

    def close_outboxes(self) -> None:
        """Close every connection to a peer."""
        for outbox in self._outboxes.values():
            outbox.close()
        self._outboxes.clear()

    def mark_down(self, node: str) -> None:
        """``node`` died: asks waiting on it and, until it is back (:meth:`set_peer`), new
        asks to it fail at once with ActorGone, and tells to it are dropped (and counted),
        so no sender waits on a dead peer."""
        self._down.add(node)
        self._close_outbox(node)
        for pending in self._pending.values():
            if pending.target == node and not pending.done.is_set():
                # Its answer will never come: fail the ask now, not at its deadline.
                pending.kind, pending.body = FAIL, ("NodeUnreachable", f"node {node!r} died")
                pending.done.set()

    def set_peer(self, node: str, address: str) -> None:
        """Learn (or change) where ``node`` listens; a changed address is re-dialed."""
        self._down.discard(node)
        if self.directory.get(node) != address:
            self.directory[node] = address
            self._close_outbox(node)

    def assume_incarnation(self, incarnation: int) -> None:
        """Take the incarnation the launcher gave this node process (on joining),
        before any actor starts: its actors' incarnations derive from it."""
        if self._cells:
            raise RuntimeError("a node takes its incarnation before its actors start")
        self.incarnation = incarnation
        self._host_ref = ActorRef(self.name, "_host", incarnation)

    # --- actors ------------------------------------------------------------------

    def next_ref(self, name: str) -> ActorRef:
        """A fresh incarnation of actor ``name`` on this node."""
        count = self._counters.get(name, 0) + 1
        self._counters[name] = count
        return ActorRef(self.name, name, self.incarnation * _INCARNATION_STRIDE + count)

    def register(
        self,
        ref: ActorRef,
        mailbox: trio.MemorySendChannel[Envelope],
        handles: frozenset[type] = frozenset(),
    ) -> None:
        """Make ``ref`` the current incarnation of its name on this node.

        ``handles`` are the message types it has handlers for (see :meth:`local_handlers`).
        """
        self._cells[ref.name] = (ref, mailbox)
        self._handles[ref.name] = handles
        self.placement.setdefault(ref.name, self.name)

    def unregister(self, ref: ActorRef) -> None:
        """Forget ``ref`` if it is still the current incarnation."""
        cell = self._cells.get(ref.name)
        if cell is not None and cell[0] == ref:
            del self._cells[ref.name]
            self._handles.pop(ref.name, None)

    def local_handlers(self, message_type: type) -> list[ActorRef]:
        """The local actors that handle ``message_type`` (to broadcast node events)."""
        return [self._cells[n][0] for n, types in self._handles.items() if message_type in types]

    def current(self, name: str) -> ActorRef | None:
        """The current incarnation of local actor ``name``, if it runs."""
        cell = self._cells.get(name)
        return None if cell is None else cell[0]

    def stop_actor(self, name: str) -> None:
        """Ask local actor ``name`` to stop once its queued messages are handled."""
        cell = self._cells.get(name)
        if cell is not None:
            cell[1].close()

    def locate(self, target: ActorRef | str) -> ActorRef:
        """An address for an actor ref or a cluster-wide actor name.

        Raises:
            ActorGone: ``target`` is a name no node is known to run.
        """
        if isinstance(target, ActorRef):
            return target
        node = self.placement.get(target)
        if node is None:
            known = ", ".join(sorted(self.placement)) or "none"
            raise ActorGone(f"no actor named {target!r} in the cluster (known: {known})")
        return ActorRef(node, target, 0)

    # --- sending -----------------------------------------------------------------

    async def tell(
        self, target: ActorRef | str, msg: object, sender: ActorRef | None = None
    ) -> None:
        """Deliver ``msg`` to ``target`` without waiting for a reply.

        Waits while the local mailbox or the connection to the peer is full
        (backpressure); never drops because a queue is full.

        Raises:
            UnknownNode: the target's node has no known address.
            CodecError: ``msg`` cannot be encoded for another node.
        """
        await self.deliver(Envelope(TELL, self.locate(target), msg, sender or self._host_ref))

    async def ask(
        self,
        target: ActorRef | str,
        msg: object,
        *,
        timeout: float | None = None,
        sender: ActorRef | None = None,
    ) -> Any:
        """Deliver ``msg`` and wait for the reply (see :meth:`ActorContext.ask`)."""
        ref = self.locate(target)
        asker = sender or self._host_ref
        cid = next(self._cids)
        pending = _Pending(asker, ref.node)
        self._pending[cid] = pending
        limit = self.ask_timeout_s if timeout is None else timeout
        try:
            with trio.move_on_after(limit):
                await self.deliver(Envelope(ASK, ref, msg, asker, cid))
                await pending.done.wait()
        finally:
            del self._pending[cid]
        if not pending.done.is_set():
            raise AskTimeout(f"no reply from {ref} to {type(msg).__name__} within {limit:g}s")
        if pending.kind == FAIL:
            error_type, text = pending.body
            if error_type == "ActorGone":
                raise ActorGone(text)
            if error_type == "NodeUnreachable":
                raise NodeUnreachable(text)
            raise RemoteError(error_type, text)
        return None if isinstance(pending.body, Ack) else pending.body

    async def reply(self, request: Envelope, kind: int, body: Any) -> None:
        """Answer an ask (``kind`` REPLY with a message, FAIL with (type, text))."""
        if request.sender is None:
            return
        await self.deliver(Envelope(kind, request.sender, body, request.receiver, request.cid))

    async def complete(self, actor: ActorRef, result: Mapping[str, Any]) -> None:
        """Report the job finished to the launcher."""
        await self.tell(LAUNCHER, JobComplete(actor, dict(result)), sender=actor)

    async def deliver(self, env: Envelope) -> None:
        """Route one envelope to a local mailbox or onto the wire."""
        node = env.receiver.node
        if node == self.name:
            if self.force_codec:
                env = decode(encode(env).to_bytes())
            await self.route(env)
            return
        if node in self._down:
            self.stats.dropped_unreachable += 1
            if env.kind == ASK:
                raise NodeUnreachable(f"node {node!r} of {env.receiver} is down")
            return
        frame = encode(env)
        outbox = self._outboxes.get(node)
        if outbox is None:
            address = self.directory.get(node)
            if address is None:
                if env.kind in (REPLY, FAIL) and len(self._held.get(node, ())) < HELD_ANSWERS:
                    self._held.setdefault(node, []).append(env)
                    self.log.info("answer_held", to=str(env.receiver), reason="address unknown")
                    return
                known = ", ".join(sorted(self.directory)) or "none"
                raise UnknownNode(f"no address for node {node!r} (known: {known})")
            outbox = self._outboxes[node] = self.transport.connect(address, node)
        sent = False
        with trio.move_on_after(self.send_timeout_s):
            try:
                await outbox.send(frame)
                sent = True
            except TransportClosed:
                pass
        if not sent:
            # A dead or partitioned peer must not hang its senders: the message is
            # dropped, and the connection is dialed afresh for the next one.
            self.stats.dropped_unreachable += 1
            self.log.warning(
                "message_unreachable", to=str(env.receiver), after_s=self.send_timeout_s
            )
            self._drop_outbox(node, outbox)
            return
        self.stats.sent += 1

    async def deliver_held(self) -> None:
        """Send the answers held for nodes whose address is now known."""
        for node in [n for n in self._held if n in self.directory]:
            for env in self._held.pop(node):
                try:
                    await self.deliver(env)
                except (UnknownNode, NodeUnreachable, TransportClosed):
                    pass  # the asker's node went meanwhile: its ask fails there

    def _drop_outbox(self, node: str, outbox: Outbox) -> None:
        if self._outboxes.get(node) is outbox:
            del self._outboxes[node]
        outbox.close()

    def _close_outbox(self, node: str) -> None:
        """Close the connection to ``node``, if any; the next send dials afresh."""
        old = self._outboxes.pop(node, None)
        if old is not None:
            old.close()

    # --- receiving ---------------------------------------------------------------

    async def route(self, env: Envelope) -> None:
        """Hand an arrived envelope to its mailbox or to the waiting asker."""
        if env.kind in (REPLY, FAIL):
            pending = self._pending.get(env.cid)
            if pending is None or pending.asker != env.receiver or pending.done.is_set():
                self.stats.dropped_late_reply += 1
                return
            if env.sender is None or env.sender.node != pending.target:
                # Only the node that was asked may answer (a guessed cid must not).
                who = "nobody" if env.sender is None else repr(env.sender.node)
                self._rejected("reply_from_elsewhere", f"reply to {pending.target!r} from {who}")
                return
            pending.kind, pending.body = env.kind, env.body
            pending.done.set()
            return
        cell = self._cells.get(env.receiver.name)
        if cell is None:
            self.stats.dropped_no_actor += 1
            self.log.info("message_dropped", reason="no_actor", to=str(env.receiver))
            await self.refuse(env, f"no actor {env.receiver.name!r} on node {self.name!r}")
            return
        ref, mailbox = cell
        if env.receiver.incarnation not in (0, ref.incarnation):
            self.stats.dropped_stale += 1
            self.log.info(
                "message_dropped", reason="stale_incarnation", to=str(env.receiver), now=str(ref)
            )
            await self.refuse(env, f"{env.receiver} was restarted (now {ref})")
            return
        try:
            await mailbox.send(env)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.dropped_no_actor += 1
            await self.refuse(env, f"actor {ref} is stopping")

    async def refuse(self, env: Envelope, why: str) -> None:
        """Tell a waiting asker at once that its target is gone."""
        if env.kind == ASK and env.sender is not None:
            try:
                await self.reply(env, FAIL, ("ActorGone", why))
            except (UnknownNode, TransportClosed):
                pass


HELD_ANSWERS = 256
"""At most this many answers are held per unknown node (more: refused as before)."""


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
