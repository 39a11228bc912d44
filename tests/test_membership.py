"""The protocol's clock vector under membership changes, deterministic on the memory
transport with trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorml import ActorRef
from actorml.actor import run_actor
from actorml.messages import LAUNCHER_NODE, NodeDown
from actorml.node import Node
from actorml.protocols.bsp import BSP
from actorml.protocols.contract import Clocks, GetClocks, Join, Leave, MayRead, ReadOk, Tick
from actorml.protocols.ssp import SSP
from actorml.testing import MemoryNetwork

WORKERS = ["w0", "w1", "w2"]


async def _cluster(nursery: trio.Nursery, network: MemoryNetwork, protocol: object) -> Node:
    """A protocol node and a host node whose 'workers' live on nodes n-w0.. (placement).

    The host plays the launcher too: only the launcher may announce a dead node.
    """
    placement = {"protocol": "p", **{w: f"n-{w}" for w in WORKERS}}
    p = Node("p", network.transport("mem://p"), "mem://p", placement=dict(placement))
    host = Node(
        LAUNCHER_NODE, network.transport("mem://host"), "mem://host", placement=dict(placement)
    )
    for node in (p, host):
        await nursery.start(node.serve)
    p.set_peer(LAUNCHER_NODE, "mem://host")
    host.set_peer("p", "mem://p")
    await nursery.start(run_actor, p, "protocol", lambda: protocol, 64)
    return host


class TestMembership:
    @pytest.mark.parametrize("how", ["killed", "finished"])
    async def test_dead_worker_releases_the_barrier(
        self, autojump_clock: trio.testing.MockClock, how: str
    ) -> None:
        """Under BSP, workers waiting on a dead one proceed once it is removed (epoch + 1);
        so do they when it finishes (Leave): a leave advances the slowest clock."""
        network = MemoryNetwork(seed=0)
        async with network.running(), trio.open_nursery() as nursery:
            host = await _cluster(nursery, network, BSP(workers=WORKERS))
            for w in ("w0", "w1"):
                await host.tell("protocol", Tick(w, 0, 1))
            answers: list[ReadOk] = []

            async def wait_for(worker: str) -> None:
                answers.append(await host.ask("protocol", MayRead(worker, 0, 1), timeout=600))

            nursery.start_soon(wait_for, "w0")
            nursery.start_soon(wait_for, "w1")
            await trio.sleep(100)  # virtual time: still blocked, w2 never ticked
            assert answers == []
            before: Clocks = await host.ask("protocol", GetClocks())
            if how == "killed":
                await host.tell(ActorRef("p", "protocol"), NodeDown("n-w2", 1, "SIGKILL"))
            else:
                await host.tell("protocol", Leave("w2", "finished"))
            with trio.fail_after(1):
                while len(answers) < 2:
                    await trio.sleep(0.01)
            after: Clocks = await host.ask("protocol", GetClocks())
            assert after.clocks == {"w0": 1, "w1": 1} and after.epoch == before.epoch + 1
            assert all(a.min_clock == 1 for a in answers)
            nursery.cancel_scope.cancel()

    @pytest.mark.parametrize("staleness,own,expected", [(3, 2, 7), (3, 9, 9), (0, 2, 10)])
    async def test_rejoin_within_the_staleness_bound(
        self, autojump_clock: trio.testing.MockClock, staleness: int, own: int, expected: int
    ) -> None:
        """A rejoining worker resumes at its own clock, but never more than s behind."""
        network = MemoryNetwork(seed=0)
        async with network.running(), trio.open_nursery() as nursery:
            host = await _cluster(nursery, network, SSP(workers=WORKERS, staleness=staleness))
            for w in ("w0", "w1"):
                await host.tell("protocol", Tick(w, 0, 10))
            await host.tell("protocol", NodeDown("n-w2", 1, "killed"))
            await host.tell("protocol", Leave("nobody"))  # an unknown leave is harmless
            joined = await host.ask("protocol", Join("w2", 2, own))
            assert joined.clock == expected
            clocks: Clocks = await host.ask("protocol", GetClocks())
            assert clocks.clocks["w2"] == expected and clocks.min_clock == min(expected, 10)
            nursery.cancel_scope.cancel()

    async def test_stale_incarnation_ticks_are_ignored(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a worker rejoins, ticks from its dead incarnation do not move its clock."""
        network = MemoryNetwork(seed=0)
        async with network.running(), trio.open_nursery() as nursery:
            host = await _cluster(nursery, network, SSP(workers=WORKERS, staleness=1))
            await host.ask("protocol", Join("w0", 7, 0))
            await host.tell("protocol", Tick("w0", 6, 50))  # the old incarnation, late
            await host.tell("protocol", Tick("w0", 7, 1))
            clocks: Clocks = await host.ask("protocol", GetClocks())
            assert clocks.clocks["w0"] == 1
            nursery.cancel_scope.cancel()
