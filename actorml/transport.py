"""Moving frames between nodes: nng sockets, and the contract tests also implement.

A node listens on one inbound ``Pull0`` socket and keeps one outbound ``Push0``
socket per peer, dialed without blocking, so delivery between two nodes is FIFO on
one pipe and a slow receiver slows its senders down (nng's buffers fill, ``send``
waits). Pipe events arrive on nng's threads and are handed to trio with
``TrioToken.run_sync_soon``; nothing is done on nng's thread but that hand-off (and,
on a TLS inbox, noting the name a new pipe's certificate proves).

``tls+tcp://`` addresses use mutual TLS: an inbox accepts only peers whose certificate
the cluster CA signed, an outbox accepts only a listener whose certificate names the
node it meant to reach, and the inbox tells, with every frame, the node name its
sender proved (the certificate's common name). A peer that fails the handshake never
gets a pipe, so not one of its frames is received.
"""

from __future__ import annotations

import socket as _socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import pynng
import structlog
import trio
from pynng._nng import ffi, lib
from pynng.exceptions import check_err

from .codec import Frame
from .errors import TransportClosed

__all__ = [
    "Inbox",
    "NngTransport",
    "Outbox",
    "TLSCredentials",
    "Transport",
    "bound_address",
]

DEFAULT_RECV_MAX_SIZE = 256 * 1024 * 1024


class Inbox(Protocol):
    """Where a node's frames arrive."""

    address: str

    async def receive(self) -> tuple[Any, str | None]:
        """The next frame (a buffer) and its sender's authenticated identity.

        The identity is the name the peer proved (the common name of its TLS
        certificate, a node name), or None where the transport authenticates nobody
        (ipc inside one user's private directory; plain tcp with ``insecure = true``).
        Raises TransportClosed once closed.
        """
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

    def connect(self, address: str, peer: str | None = None) -> Outbox:
        """An outbox to ``address``, where node ``peer`` is expected to listen
        (an authenticating transport refuses a listener that cannot prove it)."""
        ...


@attrs.frozen(repr=False)  # no key in a log line or a traceback
class TLSCredentials:
    """What a node proves and trusts on ``tls+tcp://`` pipes, as PEM text.

    Attributes:
        ca: the cluster CA's certificate: peers must show a certificate it signed.
        cert: this node's certificate (common name: the node name).
        key: this node's private key.
    """

    ca: str
    cert: str
    key: str

    def __repr__(self) -> str:
        return "TLSCredentials(...)"

    def server(self) -> pynng.TLSConfig:
        """For an inbox: show our certificate, require one the CA signed from each peer."""
        return pynng.TLSConfig(
            pynng.TLSConfig.MODE_SERVER,
            ca_string=self.ca,
            own_cert_string=self.cert,
            own_key_string=self.key,
            auth_mode=pynng.TLSConfig.AUTH_MODE_REQUIRED,
        )

    def client(self, peer: str) -> pynng.TLSConfig:
        """For an outbox to node ``peer``: its certificate must be the CA's and name it."""
        return pynng.TLSConfig(
            pynng.TLSConfig.MODE_CLIENT,
            server_name=peer,
            ca_string=self.ca,
            own_cert_string=self.cert,
            own_key_string=self.key,
            # Stated, not left to nng's default. (AUTH_MODE_NONE would be ignored by
            # pynng 0.9.0, which skips a falsy mode: never rely on it.)
            auth_mode=pynng.TLSConfig.AUTH_MODE_REQUIRED,
        )


def is_tls(address: str) -> bool:
    """True for the addresses whose pipes are mutually authenticated."""
    return address.startswith(("tls+tcp://", "tls+tcp4://", "tls+tcp6://"))


# --- nng ------------------------------------------------------------------------


def _own_buffer(msg: Any) -> Any:
    """A cffi buffer over the body of nng message ``msg`` that frees it when collected.

    Arrays decoded from a frame are views of this buffer, so the message lives as
    long as any of them does.
    """
    size = lib.nng_msg_len(msg)
    body = ffi.cast("char *", lib.nng_msg_body(msg))
    owner = ffi.gc(body, lambda _: lib.nng_msg_free(msg))
    return ffi.buffer(owner, size)


def _alloc_message(frame: Frame) -> Any:
    """A raw ``nng_msg *`` holding ``frame``, written straight into nng's own buffer."""
    msg_p = ffi.new("nng_msg **")
    rv = lib.nng_msg_alloc(msg_p, frame.size)
    if rv != 0:
        raise MemoryError(f"nng could not allocate a {frame.size}-byte message")
    msg = msg_p[0]
    body = ffi.buffer(ffi.cast("char *", lib.nng_msg_body(msg)), frame.size)
    frame.write_into(memoryview(body))
    return msg


# pynng's async calls complete on an nng thread that runs Python to hand the result
# to trio (``run_sync_soon``): GIL hand-offs and wake-ups that were most of a small
# round trip, and a good part of the CPU spent per large message. So both ends make
# non-blocking calls on trio's thread and, when nng cannot take or give a message at
# once, sleep on the socket's send or receive fd, which nng makes readable when it
# can: trio polls it like any other fd.


_PEERS_KEPT = 4096  # pipe ids remembered by a TLS inbox (one per connection made)


@attrs.define(eq=False)
class _NngInbox:
    address: str
    socket: pynng.Pull0
    tls: bool = False
    _fd: int = attrs.field(init=False)
    _msg_p: Any = attrs.field(init=False, factory=lambda: ffi.new("nng_msg **"))
    # pipe id -> the node name its peer's certificate proves (TLS only)
    _peers: OrderedDict[int, str] = attrs.field(init=False, factory=OrderedDict)

    def __attrs_post_init__(self) -> None:
        self._fd = self.socket.recv_fd
        if self.tls:
            # Noted before the pipe delivers anything: frames may wait in the socket's
            # queue after their pipe closed, when its name can no longer be read.
            self.socket.add_pre_pipe_connect_cb(lambda pipe: self._note(pipe.pipe))

    def _note(self, pipe: Any) -> str | None:
        # Runs on nng's thread for a new pipe, or on trio's: one non-blocking nng
        # call and one dict store, safe under the GIL.
        name = _peer_cn(pipe)
        if name is not None:
            self._peers[lib.nng_pipe_id(pipe)] = name
            while len(self._peers) > _PEERS_KEPT:
                self._peers.popitem(last=False)
        return name

    def _peer(self, msg: Any) -> str | None:
        """The node name the sender of ``msg`` proved, or None if it cannot be told."""
        pipe = lib.nng_msg_get_pipe(msg)
        name = self._peers.get(lib.nng_pipe_id(pipe))
        return name if name is not None else self._note(pipe)

    async def receive(self) -> tuple[Any, str | None]:
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            rv = lib.nng_recvmsg(self.socket.socket, self._msg_p, lib.NNG_FLAG_NONBLOCK)
            if rv == 0:
                peer = None
                if self.tls:
                    peer = self._peer(self._msg_p[0])
                    if peer is None:  # never pass it on as if nobody were checked
                        lib.nng_msg_free(self._msg_p[0])
                        structlog.get_logger().warning("frame_unattributed", inbox=self.address)
                        continue
                buffer = _own_buffer(self._msg_p[0])
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return buffer, peer
            if rv == lib.NNG_ECLOSED:
                raise TransportClosed(self.address)
            if rv != lib.NNG_EAGAIN:
                check_err(rv)
            try:
                await trio.lowlevel.wait_readable(self._fd)
            except trio.ClosedResourceError as exc:
                raise TransportClosed(self.address) from exc
            waited = True

    def close(self) -> None:
        _close(self.socket, self._fd)


@attrs.define(eq=False)
class _NngOutbox:
    address: str
    socket: pynng.Push0
    _fd: int = attrs.field(init=False)
    # Senders that must wait queue here, in order; trio's Lock is fair, so frames
    # leave in the order their senders called send().
    _turn: trio.Lock = attrs.field(init=False, factory=trio.Lock)

    def __attrs_post_init__(self) -> None:
        self._fd = self.socket.send_fd

    async def send(self, frame: Frame) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        msg = _alloc_message(frame)
        sent = False
        try:
            if not self._turn.locked():  # never overtake a frame already waiting
                sent = self._try_send(msg)
            if sent:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            async with self._turn:
                while not (sent := self._try_send(msg)):
                    await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError as exc:
            raise TransportClosed(self.address) from exc
        finally:
            if not sent:  # nng takes the message only when it accepts it
                lib.nng_msg_free(msg)

    def _try_send(self, msg: Any) -> bool:
        rv = lib.nng_sendmsg(self.socket.socket, msg, lib.NNG_FLAG_NONBLOCK)
        if rv == lib.NNG_EAGAIN:
            return False
        if rv == lib.NNG_ECLOSED:
            raise TransportClosed(self.address)
        check_err(rv)
        return True

    def close(self) -> None:
        _close(self.socket, self._fd)


def _peer_cn(pipe: Any) -> str | None:
    """The common name of the certificate the peer of ``pipe`` showed, or None."""
    out = ffi.new("char **")
    if lib.nng_pipe_get_string(pipe, b"tls-peer-cn", out) != 0:
        return None
    try:
        return str(ffi.string(out[0]).decode("utf-8", "replace"))
    finally:
        lib.nng_strfree(out[0])


def bound_address(socket: pynng.Socket, address: str) -> str:
    """The address ``socket``, listening on ``address``, can be dialed at.

    ``tcp://HOST:0`` (or ``tls+tcp://HOST:0``) asks the OS for a free port; the answer
    names the port it chose. Any other address is returned as it is.
    """
    if address.startswith(("tcp://", "tls+tcp://")) and address.endswith(":0"):
        # pynng reports sa_port as stored: in network byte order.
        port = _socket.ntohs(socket.listeners[0].local_address.port)
        return f"{address.rsplit(':', 1)[0]}:{port}"
    return address


def _close(socket: pynng.Socket, fd: int) -> None:
    try:
        trio.lowlevel.notify_closing(fd)  # wakes a task waiting on the fd
    except RuntimeError:
        pass  # not in trio: nobody can be waiting
    socket.close()


@attrs.define(eq=False)
class NngTransport:
    """nng sockets for ``ipc://``, ``tcp://`` and ``tls+tcp://`` addresses.

    Args:
        tls: this node's certificate, key and cluster CA; needed for ``tls+tcp://``.
        recv_max_size: the largest frame accepted. Set explicitly because on stream
            transports nng drops the pipe on a larger message, which looks like a dead
            peer; the codec is told the same limit.
        on_pipe_lost: called in trio (never on nng's thread) with the outbox address
            whose connection dropped.
    """

    recv_max_size: int = DEFAULT_RECV_MAX_SIZE
    tls: TLSCredentials | None = None
    on_pipe_lost: Callable[[str], None] | None = None
    on_pipe_added: Callable[[str], None] | None = None

    def listen(self, address: str) -> Inbox:
        """Listen on ``address``.

        Raises:
            ValueError: a ``tls+tcp://`` address without ``tls`` credentials.
        """
        tls = is_tls(address)
        socket = pynng.Pull0(recv_max_size=self.recv_max_size)
        try:
            if tls:
                socket.tls_config = self._credentials(address).server()
            inbox = _NngInbox(address, socket, tls)
            socket.listen(address)
        except BaseException:
            socket.close()
            raise
        inbox.address = bound_address(socket, address)
        return inbox

    def connect(self, address: str, peer: str | None = None) -> Outbox:
        """An outbox to ``address`` (dialed in the background, redialed when lost).

        Over ``tls+tcp://`` the listener must prove it is node ``peer``.

        Raises:
            ValueError: a ``tls+tcp://`` address without ``tls`` credentials or ``peer``.
        """
        socket = pynng.Push0(recv_max_size=self.recv_max_size)
        if is_tls(address):
            try:
                if peer is None:
                    raise ValueError(f"connecting to {address!r} needs the node expected there")
                socket.tls_config = self._credentials(address).client(peer)
            except BaseException:
                socket.close()
                raise
        self._watch(socket, address)
        socket.dial(address, block=False)
        return _NngOutbox(address, socket)

    def _credentials(self, address: str) -> TLSCredentials:
        if self.tls is None:
            raise ValueError(f"{address!r} needs TLS credentials (NngTransport(tls=...))")
        return self.tls

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
