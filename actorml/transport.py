"""Moving frames between nodes: nng sockets, and the contract tests also implement.

A node listens on one inbound ``Pull0`` socket and keeps one outbound ``Push0``
socket per peer, dialed without blocking, so delivery between two nodes is FIFO on
one pipe and a slow receiver slows its senders down (nng's buffers fill, ``send``
waits). Pipe events arrive on nng's threads and are handed to trio with
``TrioToken.run_sync_soon``; nothing is done on nng's thread but that hand-off.
"""

from __future__ import annotations

import socket as _socket
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import pynng
import trio
from pynng._nng import ffi, lib

from .codec import Frame

__all__ = ["Inbox", "NngTransport", "Outbox", "Transport", "TransportClosed"]

DEFAULT_RECV_MAX_SIZE = 256 * 1024 * 1024


class TransportClosed(Exception):
    """The socket behind an inbox or outbox was closed."""


class Inbox(Protocol):
    """Where a node's frames arrive."""

    address: str

    async def receive(self) -> Any:
        """The next frame as a buffer; raises TransportClosed once closed."""
        ...

    def close(self) -> None: ...


class Outbox(Protocol):
    """The way to one peer."""

    async def send(self, frame: Frame) -> None:
        """Send one frame; waits while the peer is not keeping up (backpressure)."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Makes inboxes and outboxes for one kind of address."""

    def listen(self, address: str) -> Inbox: ...

    def connect(self, address: str) -> Outbox: ...


# --- nng ------------------------------------------------------------------------


def _steal_buffer(message: pynng.Message) -> Any:
    """A cffi buffer over the message body that frees the nng message when collected.

    pynng's Message frees its nng_msg in ``__del__``; arrays decoded from the body
    must outlive it, so the buffer takes the ownership over instead.
    """
    msg = message._nng_msg
    with message._mem_freed_lock:
        message._mem_freed = True
    size = lib.nng_msg_len(msg)
    body = ffi.cast("char *", lib.nng_msg_body(msg))
    owner = ffi.gc(body, lambda _: lib.nng_msg_free(msg))
    return ffi.buffer(owner, size)


def _make_message(frame: Frame) -> pynng.Message:
    """An nng message holding ``frame``, written straight into nng's own buffer."""
    msg_p = ffi.new("nng_msg **")
    rv = lib.nng_msg_alloc(msg_p, frame.size)
    if rv != 0:
        raise MemoryError(f"nng could not allocate a {frame.size}-byte message")
    msg = msg_p[0]
    body = ffi.buffer(ffi.cast("char *", lib.nng_msg_body(msg)), frame.size)
    frame.write_into(memoryview(body))
    return pynng.Message(msg)


@attrs.define(eq=False)
class _NngInbox:
    address: str
    socket: pynng.Pull0

    async def receive(self) -> Any:
        try:
            message = await self.socket.arecv_msg()
        except pynng.Closed as exc:
            raise TransportClosed(self.address) from exc
        return _steal_buffer(message)

    def close(self) -> None:
        self.socket.close()


@attrs.define(eq=False)
class _NngOutbox:
    address: str
    socket: pynng.Push0

    async def send(self, frame: Frame) -> None:
        message = _make_message(frame)
        try:
            await self.socket.asend_msg(message)
        except pynng.Closed as exc:
            raise TransportClosed(self.address) from exc

    def close(self) -> None:
        self.socket.close()


@attrs.define(eq=False)
class NngTransport:
    """nng sockets for ``ipc://`` and ``tcp://`` addresses.

    Args:
        recv_max_size: the largest frame accepted. Set explicitly because on stream
            transports nng drops the pipe on a larger message, which looks like a dead
            peer; the codec is told the same limit.
        on_pipe_lost: called in trio (never on nng's thread) with the outbox address
            whose connection dropped.
    """

    recv_max_size: int = DEFAULT_RECV_MAX_SIZE
    on_pipe_lost: Callable[[str], None] | None = None
    on_pipe_added: Callable[[str], None] | None = None

    def listen(self, address: str) -> Inbox:
        socket = pynng.Pull0(recv_max_size=self.recv_max_size)
        try:
            socket.listen(address)
        except pynng.NNGException:
            socket.close()
            raise
        bound = address
        if address.startswith("tcp://") and address.endswith(":0"):
            # pynng reports sa_port as stored: in network byte order.
            port = _socket.ntohs(socket.listeners[0].local_address.port)
            bound = f"{address.rsplit(':', 1)[0]}:{port}"
        return _NngInbox(bound, socket)

    def connect(self, address: str) -> Outbox:
        socket = pynng.Push0(recv_max_size=self.recv_max_size)
        self._watch(socket, address)
        socket.dial(address, block=False)
        return _NngOutbox(address, socket)

    def _watch(self, socket: pynng.Socket, address: str) -> None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            return
        lost, added = self.on_pipe_lost, self.on_pipe_added
        if lost is not None:
            socket.add_post_pipe_remove_cb(lambda _pipe: _soon(token, lost, address))
        if added is not None:
            socket.add_post_pipe_connect_cb(lambda _pipe: _soon(token, added, address))


def _soon(token: trio.lowlevel.TrioToken, fn: Callable[[str], None], arg: str) -> None:
    # Runs on an nng thread: only hand over to trio, never block here.
    try:
        token.run_sync_soon(fn, arg)
    except trio.RunFinishedError:
        pass
