"""Actors: attrs classes with async message handlers and a bounded mailbox.

An actor handles one message at a time. A handler's return value is the reply to an
``ask``; an exception in a handler is sent back to the asker and then crashes the
actor, so its supervisor restarts it with a fresh incarnation (OTP's "let it
crash"). An actor may also define ``run()``, a loop that runs beside its handlers;
when ``run`` returns the actor stops normally.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
import structlog
import trio

from .codec import ASK, FAIL, REPLY, Envelope
from .errors import ActorGone, CodecError, NodeUnreachable, NotReady, Refused, RemoteError
from .groups import sole
from .messages import Ack, ActorRef

__all__ = ["Actor", "ActorContext", "Promise", "Router", "handler"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class Router(Protocol):
    """What an actor needs of the node it runs on; `actorml.node.Node` is the one we ship.

    Actors depend on this interface, not on the node, as the node depends on the
    `actorml.transport.Transport` interface, not on nng.
    """

    name: str
    incarnation: int
    ask_timeout_s: float
    placement: dict[str, str]
    run_dir: Path | None
    stats: Any
    log: Any

    def next_ref(self, name: str) -> ActorRef: ...

    def register(
        self,
        ref: ActorRef,
        mailbox: trio.MemorySendChannel[Envelope],
        handles: frozenset[type] = frozenset(),
    ) -> None: ...

    def unregister(self, ref: ActorRef) -> None: ...

    def locate(self, target: ActorRef | str) -> ActorRef: ...

    async def tell(
        self, target: ActorRef | str, msg: object, sender: ActorRef | None = None
    ) -> None: ...

    async def ask(
        self,
        target: ActorRef | str,
        msg: object,
        *,
        timeout: float | None = None,
        sender: ActorRef | None = None,
    ) -> Any: ...

    async def reply(self, request: Envelope, kind: int, body: Any) -> None: ...

    async def refuse(self, env: Envelope, why: str) -> None: ...

    async def complete(self, actor: ActorRef, result: Mapping[str, Any]) -> None: ...


def handler(fn: F) -> F:
    """Mark an ``async def name(self, msg: MessageType)`` method as the handler for
    ``MessageType`` (taken from the annotation of its message parameter)."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"handler {fn.__qualname__} must be an async def")
    fn._actorml_handler = True  # type: ignore[attr-defined]
    return typing.cast(F, fn)


_HANDLERS: dict[type, dict[type, str]] = {}


def _handlers(cls: type) -> dict[type, str]:
    """Message type -> handler method name for an actor class (computed once)."""
    known = _HANDLERS.get(cls)
    if known is not None:
        return known
    table: dict[type, str] = {}
    for klass in reversed(cls.__mro__):
        for name, fn in vars(klass).items():
            if not getattr(fn, "_actorml_handler", False):
                continue
            hints = typing.get_type_hints(fn)
            params = [p for p in inspect.signature(fn).parameters if p != "self"]
            if len(params) != 1 or params[0] not in hints:
                raise TypeError(
                    f"handler {cls.__qualname__}.{name} must take one annotated message argument"
                )
            table[hints[params[0]]] = name
    _HANDLERS[cls] = table
    return table


class Actor:
    """Base class for actors. Subclass it with ``@attrs.define(eq=False)``.

    Attributes:
        ctx: set by the runtime before :meth:`started` runs: this actor's address,
            logger and the means to talk to other actors.
    """

    ctx: ActorContext

    async def started(self) -> None:
        """Called once the actor is registered, before any message is handled."""

    async def stopping(self) -> None:
        """Called on a normal or graceful stop (not on a crash)."""

    def closed(self) -> None:
        """Called once the actor has ended, however it ended (a normal stop, a crash or a
        cancellation): release what it holds outside Python's memory (files, sockets).

        Synchronous, so it runs even in a cancelled scope; it must not raise.
        """

    async def run(self) -> None:
        """Optional main loop beside the handlers; the actor stops when it returns."""
        await trio.sleep_forever()


@attrs.define(eq=False)
class Promise:
    """A reply owed to an asker (see :meth:`ActorContext.promise`)."""

    node: Router
    request: Envelope | None
    done: bool = False

    async def resolve(self, reply: object) -> None:
        """Send the reply (once; later calls do nothing)."""
        if self.done or self.request is None or self.request.kind != ASK:
            return
        self.done = True
        await self.node.reply(self.request, REPLY, Ack() if reply is None else reply)

    async def fail(self, error: BaseException) -> None:
        """Answer with an error: the asker gets RemoteError."""
        if self.done or self.request is None or self.request.kind != ASK:
            return
        self.done = True
        await self.node.reply(self.request, FAIL, (type(error).__name__, str(error)))


@attrs.define(eq=False)
class ActorContext:
    """What an actor uses to reach the world: its address, its log, its node."""

    node: Router
    ref: ActorRef
    log: Any
    _mailbox: trio.MemorySendChannel[Envelope] | None = None
    _current: Envelope | None = None

    def promise(self) -> Promise:
        """Answer the ask being handled later: return this from the handler, then
        ``await promise.resolve(reply)`` (from any later handler or task).

        This is how a handler waits for something without blocking the actor's
        mailbox (a barrier answering each worker once the slowest arrives).
        """
        return Promise(self.node, self._current)

    @property
    def sender(self) -> ActorRef | None:
        """Who sent the message being handled (None outside a handler, or if unknown).

        Between nodes the runtime has already checked the sender's node against the
        authenticated peer (`actorml.trust`), so an actor may rely on it to decide
        whom it obeys (`only_from`).
        """
        return None if self._current is None else self._current.sender

    def only_from(self, *names: str) -> None:
        """Refuse the message being handled unless one of the actors ``names`` sent it.

        Raises:
            Refused: naming the message, its sender and who may send it.
        """
        sender = self.sender
        if sender is None or sender.name not in names:
            body = type(self._current.body).__name__ if self._current else "message"
            raise Refused(
                f"{self.ref.name} takes {body} only from {', '.join(names)}, not from {sender}"
            )

    @property
    def restarted(self) -> bool:
        """True unless this is the first incarnation of this actor in the cluster (its
        node process was restarted, or its supervisor restarted it): time to recover
        state rather than start afresh."""
        return self.node.incarnation > 1 or self.ref.incarnation % (1 << 20) > 1

    def locate(self, target: ActorRef | str) -> ActorRef:
        """An address for ``target``: a ref as it is, or an actor name in the cluster."""
        return self.node.locate(target)

    async def tell(self, target: ActorRef | str, msg: object) -> None:
        """Send ``msg`` without waiting for an answer.

        Waits while the receiver's mailbox (or the connection to its node) is full:
        that is the backpressure. Cancellation abandons the send.
        """
        await self.node.tell(target, msg, sender=self.ref)

    async def ask(self, target: ActorRef | str, msg: object, timeout: float | None = None) -> Any:
        """Send ``msg`` and wait for the reply.

        Raises:
            AskTimeout: no reply within ``timeout`` seconds (the cluster's
                ``ask_timeout_s`` when None); the time spent waiting on a full mailbox
                counts.
            RemoteError: the handler raised.
            ActorGone: no such actor, or it was restarted since ``target`` was made.
        """
        return await self.node.ask(target, msg, timeout=timeout, sender=self.ref)

    async def ask_when_up(
        self,
        target: ActorRef | str,
        msg: object,
        *,
        within_s: float | None = None,
        timeout: float | None = None,
        through_restarts: bool = False,
    ) -> Any:
        """Ask, retrying while ``target`` does not exist yet or is not ready yet.

        ``target`` may still be starting (it does not exist yet: retried for up to
        ``within_s`` seconds, default the ask timeout) or busy getting ready (it answers
        ``NotReady``, say while it loads its data: retried with no deadline, since it
        is alive and says so with every answer). ``through_restarts``: also wait out
        the restart of a node that died, instead of failing at once. ``timeout``
        bounds each single ask, as in :meth:`ask`.

        Raises:
            ActorGone: ``target`` did not appear within ``within_s`` seconds.
            AskTimeout, RemoteError: as :meth:`ask`.
        """
        limit = self.node.ask_timeout_s if within_s is None else within_s
        deadline = trio.current_time() + limit
        busy = _Busy(self.log, str(target))
        while True:
            try:
                return await self.ask(target, msg, timeout=timeout)
            except NodeUnreachable as exc:
                if not through_restarts or trio.current_time() >= deadline:
                    raise  # its node is dead: waiting would only stall us
                self.log.info("waiting_for_restart", target=str(target), error=str(exc))
                await trio.sleep(0.1)
            except ActorGone:
                if trio.current_time() >= deadline:
                    raise
                await trio.sleep(0.02)
            except RemoteError as exc:
                if exc.error_type != NotReady.__name__:
                    raise
                await busy.wait(str(exc).removeprefix(f"{NotReady.__name__}: "))
                deadline = trio.current_time() + limit

    async def complete(self, **result: Any) -> None:
        """Tell the launcher the job is done, with a summary it prints and saves.

        A result with an ``error`` (a string) says the job ended but failed:
        ``actorml up`` prints it and exits 1.
        """
        await self.node.complete(self.ref, result)

    def stop(self) -> None:
        """Stop this actor normally once the messages already queued are handled."""
        if self._mailbox is not None:
            self._mailbox.close()


@attrs.define
class _Busy:
    """Waiting for an actor that answers ``NotReady``: back off, say so now and then."""

    log: Any
    target: str
    attempts: int = 0
    said_at: float = -math.inf

    async def wait(self, why: str) -> None:
        now = trio.current_time()
        if now - self.said_at >= 5.0:
            self.log.info("waiting_until_ready", target=self.target, why=why)
            self.said_at = now
        self.attempts += 1
        await trio.sleep(min(0.5, 0.02 * 2**self.attempts))


async def run_actor(
    node: Router,
    name: str,
    factory: Callable[[], Actor],
    mailbox_size: int,
    *,
    task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one incarnation of an actor until it stops or crashes.

    Registers a fresh incarnation on ``node``, calls ``started()``, reports its
    address through ``task_status``, then handles messages one at a time beside
    ``run()``. A graceful stop (``node.stop_actor`` or ``ctx.stop()``) closes the
    mailbox: what is queued is handled, then the actor stops; cancellation stops at
    once. A handler's exception
    propagates (after the asker got it), which is how a supervisor sees a crash.
    """
    ref = node.next_ref(name)
    send, receive = trio.open_memory_channel[Envelope](mailbox_size)
    actor = factory()
    log = structlog.get_logger().bind(actor=name, incarnation=ref.incarnation)
    structlog.contextvars.bind_contextvars(actor=name, incarnation=ref.incarnation)
    actor.ctx = ActorContext(node, ref, log, send)
    node.register(ref, send, frozenset(_handlers(type(actor))))
    try:
        await actor.started()
        task_status.started(ref)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_mailbox, actor, receive, nursery.cancel_scope)
                await actor.run()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole(group) from None
        await actor.stopping()
    finally:
        node.unregister(ref)
        send.close()
        try:
            actor.closed()
        except Exception as exc:  # never hide the crash that brought us here
            log.error("actor_close_failed", error=f"{type(exc).__name__}: {exc}")
        # Fail what is still queued so askers need not wait for their deadline.
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            while True:
                try:
                    env = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                await node.refuse(env, f"actor {ref} stopped")


async def _serve_mailbox(
    actor: Actor, receive: trio.MemoryReceiveChannel[Envelope], scope: trio.CancelScope
) -> None:
    table = _handlers(type(actor))
    node = actor.ctx.node
    async for env in receive:
        body = env.body
        name = table.get(type(body))
        if name is None:
            node.stats.unhandled += 1
            actor.ctx.log.warning("message_unhandled", message=type(body).__name__)
            if env.kind == ASK:
                problem = f"{actor.ctx.ref} has no handler for {type(body).__name__}"
                await node.reply(env, FAIL, ("Unhandled", problem))
            continue
        actor.ctx._current = env
        try:
            result = await getattr(actor, name)(body)
        except Refused as exc:
            if env.kind == ASK:
                try:
                    await node.reply(env, FAIL, (type(exc).__name__, str(exc)))
                except LookupError as gone:  # an asker nobody knows (a refused join)
                    actor.ctx.log.warning(
                        "reply_undeliverable", to=str(env.sender), error=str(gone)
                    )
            else:  # a refused tell has nobody to tell: say it here
                actor.ctx.log.warning(
                    "message_refused", message=type(body).__name__, error=str(exc)
                )
            continue
        except Exception as exc:
            if env.kind == ASK:
                with trio.CancelScope(shield=True):
                    await node.reply(env, FAIL, (type(exc).__name__, str(exc)))
            raise
        if env.kind == ASK and not isinstance(result, Promise):
            await _answer(node, actor, env, Ack() if result is None else result)
    scope.cancel()


async def _answer(node: Router, actor: Actor, env: Envelope, reply: object) -> None:
    """Send a handler's reply; a reply that cannot travel fails the ask instead.

    The actor keeps running: the fault is in one answer, not in its state.
    """
    try:
        await node.reply(env, REPLY, reply)
    except CodecError as exc:
        actor.ctx.log.error("reply_unencodable", reply=type(reply).__name__, error=str(exc))
        await node.reply(env, FAIL, ("CodecError", f"reply {type(reply).__name__}: {exc}"))
    except LookupError as exc:  # the asker's node is not in the directory
        actor.ctx.log.warning("reply_undeliverable", to=str(env.sender), error=str(exc))
