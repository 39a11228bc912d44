"""Nodes on other hosts: started by their own engine, they join the launcher and rejoin.

Here "other hosts" are other loopback addresses (127.0.0.2, 127.0.0.3): the launcher
starts only the nodes on its own host and waits for the others, which a test starts
as its host's engine would (``actorml node NAME --topology FILE``). See
``tests/test_netns.py`` for hosts emulated with network namespaces.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from actorml.certs import write_set
from actorml.hosts import as_url, joining_options
from actorml.launch import Cluster, open_cluster
from actorml.logship import LogShipper
from actorml.messages import LAUNCHER_NODE
from actorml.nodeproc import EXIT_JUDGED_DEAD
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, Topology
from tests.cluster_actors import Add, Get, Total

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_root")]

COUNTER = "tests.cluster_actors:Counter"
ROOT = Path(__file__).resolve().parent.parent


def _topology(tmp_path: Path, **cluster: Any) -> Topology:
    base = random.randrange(20000, 60000, 10)
    tls_dir = tmp_path / "tls"
    if not tls_dir.exists():
        write_set(tls_dir, [LAUNCHER_NODE, "here", "there"])
    return Topology(
        cluster=ClusterSpec(
            name="hosts",
            transport="tcp",
            base_port=base,
            tls_dir=str(tls_dir),
            run_dir=str(tmp_path / "runs"),
            heartbeat_interval_s=0.2,
            heartbeat_deadline_s=3.0,
            prewarm=False,
            **cluster,
        ),
        nodes=(
            NodeSpec(name="here", actors=(ActorSpec(name="c1", kind=COUNTER),)),
            NodeSpec(
                name="there",
                host="127.0.0.2",
                actors=(ActorSpec(name="c2", kind=COUNTER, args={"start": 100}),),
            ),
        ),
    )


@asynccontextmanager
async def _engine(tmp_path: Path, topology: Topology, *extra: str) -> AsyncIterator[trio.Process]:
    """Node ``there`` as its host's engine starts it; killed on leaving if still running."""
    path = tmp_path / "topology.toml"
    path.write_text(topology.to_toml(), encoding="utf-8")
    command = [
        sys.executable, "-m", "actorml", "node", "there", "--topology", str(path),
        "--run-dir", str(tmp_path / "there"), *extra,
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        if process.stderr is not None:
            await process.stderr.aclose()


async def _total(cluster: Cluster, name: str, *, not_pid: int = 0) -> Total:
    """Ask ``name`` for its total, again until a process other than ``not_pid`` answers."""
    while True:
        try:
            total: Total = await cluster.ask(name, Get(), timeout=1.0)
            if total.pid != not_pid:
                return total
        except Exception:
            pass
        await trio.sleep(0.05)


class TestJoin:
    async def test_launcher_waits_for_a_node_on_another_host(self, tmp_path: Path) -> None:
        """The launcher starts only its own host's nodes; the other joins over mutual TLS,
        and on leaving it is asked to stop and exits 0."""
        topology = _topology(tmp_path)
        with trio.fail_after(90):
            async with (
                _engine(tmp_path, topology) as there,
                open_cluster(topology) as cluster,
            ):
                assert cluster.procs["there"].pid is None  # not the launcher's child
                assert cluster.procs["there"].address.startswith("tls+tcp://127.0.0.2:")
                total = await _total(cluster, "c2")
                assert (total.value, total.pid) == (100, there.pid)
                await cluster.tell("c2", Add(5))
                assert (await _total(cluster, "c2")).value == 105
                shipped = cluster.run_dir / "logs" / "there.jsonl"
            assert there.returncode == 0
            # Its log stays on its host and reached the launcher's logs/ too.
            events = [json.loads(line)["event"] for line in shipped.read_text().splitlines()]
            assert "node_ready" in events
            here = tmp_path / "there" / "logs" / "there.jsonl"
            assert "node_ready" in here.read_text()

    async def test_node_back_at_a_new_address_rejoins(self, tmp_path: Path) -> None:
        """A node killed on its host and started again elsewhere rejoins with a new
        incarnation; the launcher learns its new address, and nobody restarts it but
        its engine."""
        topology = _topology(tmp_path)
        new = f"127.0.0.3:{topology.cluster.base_port + 9}"
        with trio.fail_after(120):
            async with _engine(tmp_path, topology) as first, open_cluster(topology) as cluster:
                before = await _total(cluster, "c2")
                first.send_signal(signal.SIGKILL)
                await first.wait()
                async with _engine(tmp_path, topology, "--listen", new) as second:
                    after = await _total(cluster, "c2", not_pid=before.pid)
                    assert after.pid == second.pid
                    assert after.incarnation != before.incarnation
                    assert cluster.procs["there"].incarnation == 2
                    assert cluster.procs["there"].address == f"tls+tcp://{new}"
                    assert cluster.node_restarts == {"there": 1}
                    assert [name for name, _ in cluster.deaths] == ["there"]

    async def test_node_judged_dead_by_silence_is_left_to_its_engine(self, tmp_path: Path) -> None:
        """A node on another host that stops beating is judged dead after the deadline
        and left to its engine: the launcher starts no process for it, and tells it to
        leave with a failure if it turns out to be alive."""
        topology = _topology(tmp_path)
        with trio.fail_after(90):
            async with _engine(tmp_path, topology) as there, open_cluster(topology) as cluster:
                await _total(cluster, "c2")
                there.send_signal(signal.SIGSTOP)  # hung, not dead: no pipe closes
                try:
                    await cluster.procs["there"].exited.wait()
                finally:
                    there.send_signal(signal.SIGCONT)
                name, reason = cluster.deaths[-1]
                assert name == "there" and reason.startswith("no heartbeat for")
                assert cluster.procs["there"].pid is None
                # Back, it beats again: told to leave, it exits with a failure its
                # engine restarts it on.
                assert await there.wait() == EXIT_JUDGED_DEAD


class TestRefusals:
    async def test_no_launcher_no_wait_forever(self, tmp_path: Path) -> None:
        """A node whose launcher never answers exits 2 after ready_timeout_s, naming
        the address it tried and the fix."""
        topology = _topology(tmp_path, ready_timeout_s=2.0)
        path = tmp_path / "topology.toml"
        path.write_text(topology.to_toml(), encoding="utf-8")
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, "-m", "actorml", "node", "there", "--topology", str(path),
                 "--run-dir", str(tmp_path / "there")],
                cwd=ROOT, capture_stderr=True, check=False,
            )  # fmt: skip
        assert result.returncode == 2
        assert result.stderr.decode().strip() == (
            f"error: no launcher answered at tls+tcp://127.0.0.1:{topology.cluster.base_port} "
            "within 2s (start `actorml up` there, or pass --launcher)"
        )

    def test_other_host_needs_a_fixed_launcher_port(self, tmp_path: Path) -> None:
        """A node on another host cannot find a launcher on a port chosen at random."""
        with pytest.raises(ValueError, match=r"^cluster.base_port: node 'there' runs on"):
            Topology(
                cluster=ClusterSpec(name="h", transport="tcp", tls_dir=str(tmp_path)),
                nodes=(NodeSpec(name="there", host="10.0.0.2"),),
            )

    def test_other_host_needs_certificates_it_can_read(self) -> None:
        """Certificates made for one run stay on the launcher's host: tls_dir it is."""
        with pytest.raises(ValueError, match=r"^cluster.tls_dir: node 'there' runs on"):
            Topology(
                cluster=ClusterSpec(name="h", transport="tcp", base_port=7000),
                nodes=(NodeSpec(name="there", host="10.0.0.2"),),
            )

    def test_other_host_needs_tcp(self) -> None:
        """ipc sockets do not leave a host."""
        with pytest.raises(ValueError, match=r"^node\[0\].host: node 'there' runs on"):
            Topology(
                cluster=ClusterSpec(name="h"),
                nodes=(NodeSpec(name="there", host="10.0.0.2"),),
            )


class TestJoiningOptions:
    def test_defaults_come_from_the_topology(self, tmp_path: Path) -> None:
        """Without options a node finds the launcher at [cluster] host and base_port."""
        topology = _topology(tmp_path)
        options = joining_options(topology, "there", None, None)
        assert options.launcher == f"tls+tcp://127.0.0.1:{topology.cluster.base_port}"
        assert options.listen is None

    def test_host_port_is_the_clusters_scheme(self, tmp_path: Path) -> None:
        """HOST:PORT and tcp:// mean tls+tcp:// on a TLS cluster."""
        topology = _topology(tmp_path)
        assert as_url(topology, "launcher.train.svc:7000") == "tls+tcp://launcher.train.svc:7000"
        assert as_url(topology, "tcp://10.0.0.1:7000") == "tls+tcp://10.0.0.1:7000"
        with pytest.raises(ValueError, match=r"^invalid address 'nowhere' \(expected"):
            as_url(topology, "nowhere")


class TestLogShipper:
    def test_bounded_oldest_dropped_and_counted(self) -> None:
        """Past its capacity the queue drops the oldest lines and says how many."""
        shipper = LogShipper(capacity=3, batch=2)
        for i in range(5):
            shipper.tap(f"line {i}\n")
        first = shipper.take("there", 2)
        assert first is not None
        assert (first.lines, first.dropped) == (["line 2\n", "line 3\n"], 2)
        second = shipper.take("there", 2)
        assert second is not None and (second.lines, second.dropped) == (["line 4\n"], 0)
        assert shipper.take("there", 2) is None
