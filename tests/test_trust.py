"""Who may say what: forged senders, control messages from the wrong role, stray replies."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from actorml import Actor, handler
from actorml.actor import run_actor
from actorml.codec import REPLY, TELL, Envelope, encode
from actorml.control import LauncherControl, NodeControl
from actorml.messages import (
    LAUNCHER,
    LAUNCHER_NODE,
    ActorRef,
    Directory,
    Heartbeat,
    JobComplete,
    NodeDown,
    Shutdown,
    message,
)
from actorml.node import Node
from actorml.testing import MemoryNetwork
from actorml.trust import refusal


@message("test.trust.slow")
class Slow:
    pass


@message("test.trust.answer")
class Answer:
    text: str


@attrs.define(eq=False)
class Responder(Actor):
    """Answers Slow once ``release`` is set."""

    release: trio.Event = attrs.field(factory=trio.Event)

    @handler
    async def slow(self, msg: Slow) -> Answer:
        await self.release.wait()
        return Answer("the real answer")


def _env(body: object, sender: str | None, to: str = "victim", kind: int = TELL) -> Envelope:
    ref = None if sender is None else ActorRef(sender, "_node", 1)
    return Envelope(kind, ActorRef(to, "_node"), body, ref)


class TestRefusal:
    def test_a_peer_speaks_only_for_itself(self) -> None:
        """With an authenticated peer, an envelope claiming another sender is refused."""
        forged = _env(NodeDown("shard-0", 1, "lie"), LAUNCHER_NODE)
        assert refusal(forged, peer="worker-3") == (
            "spoofed_sender",
            "peer 'worker-3' sent a frame claiming to be from '_launcher'",
        )
        assert refusal(_env(Heartbeat("worker-3", 1), None), peer="worker-3") is not None
        assert refusal(forged, peer=LAUNCHER_NODE) is None

    @pytest.mark.parametrize(
        "body", [Directory({}, {}), Shutdown("now"), NodeDown("shard-0", 1, "lie")]
    )
    def test_orders_come_only_from_the_launcher(self, body: object) -> None:
        """Directory, Shutdown and NodeDown from any node but the launcher are refused."""
        assert refusal(_env(body, "worker-1"), peer=None) == (
            "not_from_launcher",
            f"{type(body).__name__} from 'worker-1'",
        )
        assert refusal(_env(body, LAUNCHER_NODE), peer=None) is None

    def test_a_node_reports_only_about_itself(self) -> None:
        """A heartbeat or a job completion on behalf of another node is refused."""
        beat = _env(Heartbeat("worker-0", 1), "worker-1", to=LAUNCHER_NODE)
        assert refusal(beat, None) == (
            "impersonation",
            "Heartbeat about 'worker-0' from 'worker-1'",
        )
        done = JobComplete(ActorRef("scheduler", "scheduler"), {"test_accuracy": 1.0})
        assert refusal(_env(done, "attacker", to=LAUNCHER_NODE), None) == (
            "impersonation",
            "JobComplete about 'scheduler' from 'attacker'",
        )
        assert refusal(_env(done, "scheduler", to=LAUNCHER_NODE), "scheduler") is None


async def _node(network: MemoryNetwork, name: str, nursery: trio.Nursery) -> Node:
    node = Node(name, network.transport(f"mem://{name}", identity=name), f"mem://{name}")
    await nursery.start(node.serve)
    return node


class TestLiveNode:
    async def test_forged_orders_change_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Forged NodeDown, Directory and Shutdown, sent as the launcher by another peer
        or by a node that is not the launcher, are dropped and counted; the node serves on."""
        network = MemoryNetwork(seed=1)
        async with trio.open_nursery() as nursery:
            victim = await _node(network, "victim", nursery)
            victim.set_peer("shard-0", "mem://shard-0")
            control = NodeControl(victim)
            await nursery.start(run_actor, victim, "_node", lambda: control, 16)
            orders = [
                NodeDown("shard-0", 1, "forged"),
                Directory({"shard-0": "mem://mallory"}, {"scheduler": "mallory"}),
                Shutdown("forged"),
            ]
            for body in orders:  # as the launcher, from an authenticated stranger
                data = encode(_env(body, LAUNCHER_NODE)).to_bytes()
                await network.inject("mem://victim", data, peer="mallory")
            for body in orders:  # honestly from a worker, which may not give orders
                data = encode(_env(body, "worker-0")).to_bytes()
                await network.inject("mem://victim", data, peer="worker-0")
            await trio.testing.wait_all_tasks_blocked()
            assert victim.stats.rejected == {"spoofed_sender": 3, "not_from_launcher": 3}
            assert victim.directory == {"shard-0": "mem://shard-0"}
            assert "shard-0" not in victim._down
            assert not control.shutdown_requested.is_set()
            assert not control.directory_ready.is_set()
            # The real launcher is still obeyed.
            data = encode(_env(Shutdown("real"), LAUNCHER_NODE)).to_bytes()
            await network.inject("mem://victim", data, peer=LAUNCHER_NODE)
            await trio.testing.wait_all_tasks_blocked()
            assert control.shutdown_requested.is_set()
            nursery.cancel_scope.cancel()

    async def test_only_the_asked_node_may_answer(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A reply with the right correlation id from a third node is dropped; the asker
        gets the asked node's answer."""
        network = MemoryNetwork(seed=2)
        async with trio.open_nursery() as nursery:
            asker = await _node(network, "asker", nursery)
            await _node(network, "mallory", nursery)
            answerer = await _node(network, "answerer", nursery)
            asker.set_peer("answerer", "mem://answerer")
            answerer.set_peer("asker", "mem://asker")
            responder = Responder()
            await nursery.start(run_actor, answerer, "responder", lambda: responder, 16)
            got: list[object] = []

            async def ask() -> None:
                got.append(await asker.ask(ActorRef("answerer", "responder"), Slow()))

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            cid = next(iter(asker._pending))
            forged = Envelope(
                REPLY, asker._host_ref, Answer("forged"), ActorRef("mallory", "responder"), cid
            )
            await network.inject("mem://asker", encode(forged).to_bytes(), peer="mallory")
            await trio.testing.wait_all_tasks_blocked()
            assert got == [] and asker.stats.rejected == {"reply_from_elsewhere": 1}
            responder.release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert got == [Answer("the real answer")]
            nursery.cancel_scope.cancel()

    async def test_the_launcher_hears_reports_only_from_their_node(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A JobComplete forged by another node never reaches the launcher's handler."""
        network = MemoryNetwork(seed=3)
        heard: list[object] = []
        async with trio.open_nursery() as nursery:
            launcher = await _node(network, LAUNCHER_NODE, nursery)
            control = LauncherControl(heard.append)
            await nursery.start(run_actor, launcher, LAUNCHER.name, lambda: control, 16)
            done = JobComplete(ActorRef("scheduler", "scheduler"), {"test_accuracy": 1.0})
            forged = Envelope(TELL, LAUNCHER, done, ActorRef("attacker", "x", 1))
            await network.inject(f"mem://{LAUNCHER_NODE}", encode(forged).to_bytes(), peer=None)
            honest = Envelope(TELL, LAUNCHER, done, ActorRef("scheduler", "scheduler", 1))
            await network.inject(
                f"mem://{LAUNCHER_NODE}", encode(honest).to_bytes(), peer="scheduler"
            )
            await trio.testing.wait_all_tasks_blocked()
            assert heard == [done]
            assert launcher.stats.rejected == {"impersonation": 1}
            nursery.cancel_scope.cancel()
