"""Shard failover inside one process: the memory network partitions a shard's node away,
its death is announced, the backup takes over; nothing acknowledged is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from actorml.local import LocalCluster, open_local_cluster
from actorml.messages import NodeDown
from actorml.testing import MemoryNetwork
from actorml.topology import Topology


def job(eval_every_clocks: int = 0) -> Topology:
    return Topology.from_dict(
        {
            "cluster": {"name": "failover", "ask_timeout_s": 30.0},
            "job": {
                "workers": 4,
                "shards": 2,
                "epochs": 30,
                "batch_size": 16,
                "jitter_s": 0.005,
                "replication": 2,
                "progress": False,
                "eval_every_clocks": eval_every_clocks,
            },
            "data": {"source": "sklearn:breast_cancer"},
            "model": {"kind": "logreg"},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "protocol": {"kind": "bsp"},
        }
    )


async def test_backup_takes_over_and_nothing_is_lost(tmp_path: Path) -> None:
    """Cutting shard-0's node off mid-job promotes replica-0; the job ends, audit clean."""
    async with _running(tmp_path, seed=3) as (cluster, network):
        await _metric_lines(tmp_path, 100)
        await _kill_shard_0(cluster, network)
        with trio.fail_after(120):
            result = await cluster.wait()
        scheduler = cluster.actors["scheduler"]
        assert scheduler.primaries == ["replica-0", "shard-1"]  # type: ignore[attr-defined]
        assert scheduler.map_version == 1  # type: ignore[attr-defined]
    assert result["test_accuracy"] > 0.9
    for audit in result["audit"].values():
        assert audit["lost"] == 0 and audit["doubled"] == 0 and audit["unreported"] == 0


@asynccontextmanager
async def _running(
    run_dir: Path, *, seed: int, eval_every_clocks: int = 0
) -> AsyncIterator[tuple[LocalCluster, MemoryNetwork]]:
    """The failover job in this process, its nodes on a seeded memory network."""
    network = MemoryNetwork(seed=seed, capacity=64)
    async with (
        network.running(),
        open_local_cluster(
            job(eval_every_clocks),
            lambda _name, address: network.transport(address),
            run_dir=run_dir,
        ) as cluster,
    ):
        yield cluster, network


async def _kill_shard_0(cluster: LocalCluster, network: MemoryNetwork) -> None:
    """shard-0's node dies: its actors stop, the network loses it, everyone is told."""
    await cluster.supervisors["shard-0"].shutdown()
    network.partition(["mem://shard-0"], [f"mem://{n}" for n in cluster.nodes if n != "shard-0"])
    down = NodeDown("shard-0", 1, "cut off by the test")
    for name, node in cluster.nodes.items():
        if name != "shard-0":
            node.mark_down("shard-0")
            for ref in node.local_handlers(NodeDown):
                await node.tell(ref, down)


async def _metric_lines(run_dir: Path, at_least: int) -> None:
    with trio.fail_after(60):
        while (
            not (run_dir / "metrics.jsonl").exists()
            or len((run_dir / "metrics.jsonl").read_text().splitlines()) < at_least
        ):
            await trio.sleep(0.05)


async def test_an_evaluation_that_meets_the_dead_shard_is_skipped(tmp_path: Path) -> None:
    """The scheduler evaluating while it already knows shard-0's node is down skips the
    evaluation instead of crashing, so it is still there to fail the slice over."""
    async with _running(tmp_path, seed=5, eval_every_clocks=1) as (cluster, network):
        await _metric_lines(tmp_path, 40)
        # Only the scheduler's node hears of the death yet: its next evaluations ask
        # shard-0 for its tables and get NodeUnreachable at once.
        cluster.nodes["scheduler"].mark_down("shard-0")
        lines = len((tmp_path / "metrics.jsonl").read_text().splitlines())
        await _metric_lines(tmp_path, lines + 16)
        assert cluster.supervisors["scheduler"].restarts["scheduler"] == 0
        await _kill_shard_0(cluster, network)
        with trio.fail_after(120):
            result = await cluster.wait()
        assert cluster.actors["scheduler"].primaries == ["replica-0", "shard-1"]  # type: ignore[attr-defined]
    for audit in result["audit"].values():
        assert audit["lost"] == 0 and audit["doubled"] == 0


async def test_a_push_applied_but_never_acknowledged_is_applied_once(tmp_path: Path) -> None:
    """shard-0 applies and replicates a push, then dies before acknowledging it: the
    worker resends it (same seq) to the promoted backup, which already holds it and
    acknowledges without applying it again."""
    async with _running(tmp_path, seed=11) as (cluster, network):
        await _metric_lines(tmp_path, 60)
        primary, backup = cluster.actors["shard-0"], cluster.actors["replica-0"]
        applied = trio.Event()
        apply = primary.push  # type: ignore[attr-defined]

        async def apply_then_die(msg: object) -> None:
            await apply(msg)  # applied here and replicated to the backup
            applied.set()
            await trio.sleep_forever()  # the node dies before the acknowledgement leaves

        primary.push = apply_then_die  # type: ignore[attr-defined]
        with trio.fail_after(60):
            await applied.wait()
        duplicates = backup.pushes_duplicate  # type: ignore[attr-defined]
        await _kill_shard_0(cluster, network)
        with trio.fail_after(120):
            result = await cluster.wait()
        assert backup.pushes_duplicate == duplicates + 1  # type: ignore[attr-defined]
    audit = result["audit"]["0"]
    assert (audit["lost"], audit["doubled"]) == (0, 0)


async def test_a_primary_that_dies_as_the_job_finishes_fails_over_first(tmp_path: Path) -> None:
    """shard-0's node dies while the scheduler collects the final tables: the finish waits
    for the failover instead of crashing the scheduler, and the job ends, audit clean."""
    async with _running(tmp_path, seed=13) as (cluster, network):
        scheduler = cluster.actors["scheduler"]
        fetch = scheduler._fetch_audited  # type: ignore[attr-defined]
        dying = trio.Event()

        async def fetch_as_shard_0_dies() -> object:
            if scheduler._finished and not dying.is_set():  # type: ignore[attr-defined]
                dying.set()  # the scheduler's node hears of the death first
                cluster.nodes["scheduler"].mark_down("shard-0")
            return await fetch()

        scheduler._fetch_audited = fetch_as_shard_0_dies  # type: ignore[attr-defined]
        with trio.fail_after(120):
            await dying.wait()
        await _kill_shard_0(cluster, network)
        with trio.fail_after(120):
            result = await cluster.wait()
        assert cluster.supervisors["scheduler"].restarts["scheduler"] == 0
        assert cluster.actors["scheduler"].primaries == ["replica-0", "shard-1"]  # type: ignore[attr-defined]
    for audit in result["audit"].values():
        assert (audit["lost"], audit["doubled"]) == (0, 0)
