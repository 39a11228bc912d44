"""Mutual TLS on tcp pipes: who may connect, and the name a frame's sender proved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pynng
import pytest
import trio
from structlog.testing import capture_logs

from actorml import Actor, handler
from actorml.actor import run_actor
from actorml.certs import CertificateSet, write_set
from actorml.codec import TELL, Envelope, encode
from actorml.control import NodeControl
from actorml.messages import LAUNCHER_NODE, ActorRef, Shutdown, message
from actorml.node import Node
from actorml.transport import NngTransport, TLSCredentials

ADDRESS = "tls+tcp://127.0.0.1:0"


@message("test.tls.note")
class Note:
    text: str


@attrs.define(eq=False)
class Recorder(Actor):
    """Keeps every note; ``heard`` is set by the note ``wanted``."""

    wanted: str = "honest"
    notes: list[str] = attrs.field(factory=list)
    heard: trio.Event = attrs.field(factory=trio.Event)

    @handler
    async def note(self, msg: Note) -> None:
        self.notes.append(msg.text)
        if msg.text == self.wanted:
            self.heard.set()


@pytest.fixture(name="certs")
def _certs(tmp_path: Path) -> CertificateSet:
    return write_set(tmp_path / "tls", ["victim", "worker-1", LAUNCHER_NODE])


@pytest.fixture(name="stranger")
def _stranger(tmp_path: Path) -> TLSCredentials:
    """worker-1's credentials, but from a CA the cluster never heard of."""
    return write_set(tmp_path / "other", ["worker-1"]).files("worker-1").load()


@attrs.define(eq=False)
class Victim:
    node: Node
    recorder: Recorder
    control: NodeControl


@pytest.fixture(name="victim")
async def _victim(certs: CertificateSet) -> AsyncIterator[Victim]:
    """A TLS node with a recording actor, and the honest worker-1 that can reach it."""
    async with trio.open_nursery() as nursery:
        node = Node("victim", NngTransport(tls=certs.files("victim").load()), ADDRESS)
        await nursery.start(node.serve)
        recorder = Recorder()
        await nursery.start(run_actor, node, "recorder", lambda: recorder, 16)
        control = NodeControl(node)
        await nursery.start(run_actor, node, "_node", lambda: control, 16)
        yield Victim(node, recorder, control)
        nursery.cancel_scope.cancel()


async def _honest_note(certs: CertificateSet, victim: Victim) -> None:
    """worker-1 sends the note ``honest``; returns once the recorder has it."""
    async with trio.open_nursery() as nursery:
        worker = Node("worker-1", NngTransport(tls=certs.files("worker-1").load()), ADDRESS)
        await nursery.start(worker.serve)
        worker.set_peer("victim", victim.node.address)
        with trio.fail_after(30):
            await worker.tell(ActorRef("victim", "recorder"), Note("honest"))
            await victim.recorder.heard.wait()
        nursery.cancel_scope.cancel()


def _frame(body: object, sender: str, to: str = "recorder") -> bytes:
    env = Envelope(TELL, ActorRef("victim", to), body, ActorRef(sender, "_node", 1))
    return encode(env).to_bytes()


async def _dial(socket: pynng.Push0, address: str) -> None:
    """Dial and wait for the handshake's outcome (nng runs it on its own threads)."""
    await trio.to_thread.run_sync(lambda: socket.dial(address, block=True))


class TestMutualTLS:
    async def test_cluster_nodes_talk_and_the_receiver_learns_who(
        self, certs: CertificateSet, victim: Victim
    ) -> None:
        """A node with the cluster's certificate reaches a TLS node's actor."""
        await _honest_note(certs, victim)
        assert victim.recorder.notes == ["honest"]
        assert victim.node.stats.received == 1

    @pytest.mark.parametrize("who", ["another CA", "no certificate"])
    async def test_a_peer_without_a_cluster_certificate_delivers_nothing(
        self, who: str, certs: CertificateSet, stranger: TLSCredentials, victim: Victim
    ) -> None:
        """A peer whose certificate another CA signed, or that shows none, never gets a
        pipe: its frames never reach the node; an honest one, sent after, does."""
        ca = certs.files("victim").load().ca
        if who == "another CA":  # it trusts our CA, so only the node can refuse it
            config = TLSCredentials(ca, stranger.cert, stranger.key).client("victim")
        else:
            config = pynng.TLSConfig(
                pynng.TLSConfig.MODE_CLIENT,
                server_name="victim",
                ca_string=ca,
                auth_mode=pynng.TLSConfig.AUTH_MODE_REQUIRED,
            )
        with pynng.Push0(tls_config=config) as rogue:
            with trio.fail_after(30), pytest.raises(pynng.NNGException):
                await _dial(rogue, victim.node.address)
            assert not rogue.pipes
        await _honest_note(certs, victim)
        assert victim.recorder.notes == ["honest"]
        assert victim.node.stats.received == 1

    async def test_a_cluster_node_cannot_speak_as_the_launcher(
        self, certs: CertificateSet, victim: Victim
    ) -> None:
        """worker-1, with its valid certificate, sends Shutdown claiming to be the
        launcher: the node drops it as spoofed_sender and keeps serving."""
        worker = certs.files("worker-1").load()
        with capture_logs() as logs, pynng.Push0(tls_config=worker.client("victim")) as pipe:
            with trio.fail_after(30):
                await _dial(pipe, victim.node.address)
                await pipe.asend(_frame(Shutdown("forged"), LAUNCHER_NODE, to="_node"))
                # Same pipe, so it arrives after the forgery: when it is heard, the
                # forgery has been judged.
                await pipe.asend(_frame(Note("honest"), "worker-1"))
                await victim.recorder.heard.wait()
        assert victim.node.stats.rejected == {"spoofed_sender": 1}
        assert not victim.control.shutdown_requested.is_set()
        (event,) = [e for e in logs if e["event"] == "frame_rejected"]
        assert event["detail"] == "peer 'worker-1' sent a frame claiming to be from '_launcher'"

    async def test_a_tls_address_needs_credentials(self) -> None:
        """Listening or dialing tls+tcp without credentials is refused, not done in clear."""
        transport = NngTransport()
        with pytest.raises(ValueError, match=r"needs TLS credentials"):
            transport.listen(ADDRESS)
        with pytest.raises(ValueError, match=r"needs TLS credentials"):
            transport.connect("tls+tcp://127.0.0.1:9", "victim")
