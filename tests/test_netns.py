"""Three hosts emulated with network namespaces: a training job spread over them, one
host killed mid-run and started again (one node at a new address), over mutual TLS.

Each "host" is a network namespace joined to the others by a veth pair to a bridge
in a fourth namespace (the switch), with addresses from 198.18.0.0/15 (set aside for
network tests). Host A runs ``actorml up`` (the launcher, the scheduler, worker-0);
hosts B and C run their nodes under a plain process manager (``tests/host_engine.py``)
as ``actorml node NAME --topology FILE``. The test makes and removes every namespace,
link and address itself; it needs root and ``ip netns`` and skips, saying why, without.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from actorml import Topology, open_cluster
from actorml.certs import write_set
from actorml.messages import LAUNCHER_NODE
from tests.test_chaos import check_audit, training

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3"}
MOVED = "198.18.0.13"  # where host C's worker-2 comes back
PLACES = {  # node -> host; the rest run on host A, with the launcher
    "shard-0": "b", "worker-1": "b",
    "shard-1": "c", "worker-2": "c", "worker-3": "c",
}  # fmt: skip
BASE_PORT = 7100


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _why_no_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"am-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        return f"ip netns add failed: {err.decode().strip() or exc}"
    _ip("netns", "delete", probe)
    return None


@attrs.frozen
class Hosts:
    namespaces: dict[str, str]  # host -> namespace name

    def run(self, host: str, command: list[str]) -> list[str]:
        """``command`` as run on ``host``."""
        return ["ip", "netns", "exec", self.namespaces[host], *command]


@contextmanager
def _hosts() -> Iterator[Hosts]:
    """Three hosts and a switch; every namespace (and with it every link) removed after."""
    tag = secrets.token_hex(2)
    switch = f"am-{tag}-sw"
    names = {h: f"am-{tag}-{h}" for h in ADDRESS}
    made: list[str] = []
    try:
        for ns in (switch, *names.values()):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for host, ns in names.items():
            inner, outer = f"am{tag}{host}", f"am{tag}{host}s"
            # Made inside the namespaces: removing them removes the pair.
            _ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer,
                "netns", switch)  # fmt: skip
            _ip("-n", switch, "link", "set", outer, "master", "br0")
            _ip("-n", switch, "link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"{ADDRESS[host]}/15", "dev", inner)
            if host == "c":
                _ip("-n", ns, "addr", "add", f"{MOVED}/15", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
        yield Hosts(names)
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"am-{tag}" not in left, f"namespaces left behind: {left}"


def _topology(tmp_path: Path) -> Topology:
    """The chaos test's SSP job, over tcp with TLS, its nodes placed on the three hosts."""
    job = training(tmp_path / "runs", "ssp")
    cluster = attrs.evolve(
        job.cluster,
        name="hosts",
        transport="tcp",
        host=ADDRESS["a"],
        base_port=BASE_PORT,
        tls_dir=str(tmp_path / "tls"),
        heartbeat_deadline_s=3.0,
        ready_timeout_s=120.0,
    )
    nodes = tuple(
        attrs.evolve(n, host=ADDRESS[PLACES[n.name]]) if n.name in PLACES else n for n in job.nodes
    )
    return attrs.evolve(job, cluster=cluster, nodes=nodes)


def _node(path: Path, tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "actorml", "node", name, "--topology", str(path),
        "--run-dir", str(tmp_path / f"host-{PLACES[name]}"), *extra,
    ]  # fmt: skip


@asynccontextmanager
async def _engine(
    hosts: Hosts, host: str, commands: list[list[str]]
) -> AsyncIterator[trio.Process]:
    """Host ``host``'s process manager running ``commands``; on leaving, its whole
    process group is killed (if still running) and reaped."""
    command = hosts.run(
        host, [sys.executable, str(ROOT / "tests" / "host_engine.py"), json.dumps(commands)]
    )
    process = await trio.lowlevel.open_process(command, cwd=ROOT, start_new_session=True)
    try:
        yield process
    finally:
        _kill_group(process)
        with trio.CancelScope(shield=True):
            await process.wait()


def _kill_group(process: trio.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_gone(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                return False
    return True


async def _clocks(metrics: Path, at_least: int, launcher: trio.Process, err: Path) -> None:
    """Wait until the scheduler has recorded ``at_least`` completed clocks; fail at once
    if the launcher exits first."""
    async with trio.open_nursery() as nursery:

        async def launcher_exits() -> None:
            code = await launcher.wait()
            raise AssertionError(f"launcher exited {code} early: {err.read_text()[-3000:]}")

        nursery.start_soon(launcher_exits)
        while True:
            try:
                lines = metrics.read_text().count("\n")
            except FileNotFoundError:
                lines = 0
            if lines >= at_least:
                break
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("event") == event:
            found.append(entry)
    return found


WHY_NOT = _why_no_namespaces()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"no network namespaces here: {WHY_NOT}")
async def test_three_hosts_one_killed_and_back_elsewhere(tmp_path: Path, socket_root: str) -> None:
    """Scheduler, shards and workers on three hosts over mutual TLS; host C's processes
    are killed mid-run and started again by its engine, worker-2 at a new address; the
    job finishes within 2% of the undisturbed loss and loses nothing."""
    topology = _topology(tmp_path)
    write_set(tmp_path / "tls", [LAUNCHER_NODE, *(n.name for n in topology.nodes)])
    path = tmp_path / "topology.toml"
    path.write_text(topology.to_toml(), encoding="utf-8")
    run_dir = tmp_path / "run"
    on_b = [_node(path, tmp_path, n) for n in PLACES if PLACES[n] == "b"]
    on_c = [_node(path, tmp_path, n) for n in PLACES if PLACES[n] == "c"]
    moved = f"{MOVED}:{BASE_PORT + 50}"
    on_c_again = [
        _node(path, tmp_path, n, *(["--listen", moved] if n == "worker-2" else []))
        for n in PLACES
        if PLACES[n] == "c"
    ]
    groups: list[int] = []
    with _hosts() as hosts, trio.fail_after(600):
        up = hosts.run(
            "a", [sys.executable, "-m", "actorml", "up", str(path), "--run-dir", str(run_dir)]
        )
        err = tmp_path / "launcher.err"
        with err.open("wb") as stderr:
            launcher = await trio.lowlevel.open_process(
                up, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
            )
        groups.append(launcher.pid)
        try:
            async with _engine(hosts, "b", on_b) as b, _engine(hosts, "c", on_c) as c:
                groups += [b.pid, c.pid]
                await _clocks(run_dir / "metrics.jsonl", 60, launcher, err)
                _kill_group(c)  # host C dies: its engine and every node on it
                await c.wait()
                async with _engine(hosts, "c", on_c_again) as again:
                    groups.append(again.pid)
                    assert await launcher.wait() == 0, err.read_text()[-3000:]
                    assert await b.wait() == 0  # the launcher stopped them in order
                    assert await again.wait() == 0
        finally:
            _kill_group(launcher)
            with trio.CancelScope(shield=True):
                await launcher.wait()
    assert all(_group_gone(g) for g in groups), "processes left behind"
    stormy = json.loads((run_dir / "result.json").read_text())
    launcher_log = run_dir / "logs" / "launcher.jsonl"
    died = {e["node"] for e in _events(launcher_log, "node_died")}
    assert died == {"shard-1", "worker-2", "worker-3"}, died
    rejoined = {e["node"] for e in _events(launcher_log, "node_rejoined")}
    assert rejoined == {"shard-1", "worker-2", "worker-3"}, rejoined
    joined = [e for e in _events(launcher_log, "node_joined") if e["node"] == "worker-2"]
    assert joined[-1]["address"] == f"tls+tcp://{moved}"
    check_audit(stormy, worker_kills=2)

    calm_topology = training(tmp_path / "calm", "ssp")  # the same job, undisturbed, one host
    with trio.fail_after(300):
        async with open_cluster(calm_topology) as cluster:
            calm = await cluster.wait()
    assert stormy["test_loss"] <= calm["test_loss"] * 1.02, (stormy, calm)
