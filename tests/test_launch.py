"""Clusters of real node processes: launching, embedding, supervising, stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from actorml import ActorGone, RemoteError
from actorml.errors import ClusterGaveUp
from actorml.launch import Cluster, open_cluster
from actorml.topology import ActorSpec, ClusterSpec, NodeSpec, SupervisorSpec, Topology
from tests.cluster_actors import Add, Crash, Finish, Get, Resolve, Resolved, Total
from tests.processes import up_until_ready

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_root")]

ROOT = Path(__file__).resolve().parent.parent
COUNTER = "tests.cluster_actors:Counter"
FINISHER = "tests.cluster_actors:Finisher"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _topology(
    tmp_path: Path, *, cluster_strategy: str = "one_for_one", **node_kw: object
) -> Topology:
    return Topology(
        cluster=ClusterSpec(
            name="t",
            run_dir=str(tmp_path / "runs"),
            heartbeat_interval_s=0.2,
            heartbeat_deadline_s=5.0,  # generous: a loaded CI machine is not a dead node
            supervisor=SupervisorSpec(strategy=cluster_strategy, max_restarts=2, within_s=60.0),
        ),
        nodes=(
            NodeSpec(name="n1", actors=(ActorSpec(name="c1", kind=COUNTER),), **node_kw),  # type: ignore[arg-type]
            NodeSpec(name="n2", actors=(ActorSpec(name="c2", kind=COUNTER, args={"start": 100}),)),
        ),
    )


async def _ask_through_restart(cluster: Cluster, name: str, msg: object) -> Any:
    """Ask, retrying while the actor is between incarnations (OTP: its mailbox died)."""
    while True:
        try:
            return await cluster.ask(name, msg)
        except ActorGone:
            await trio.sleep(0.01)


def _socket_dirs() -> set[str]:
    """The launchers' private socket directories (and what is in them) still there."""
    root = os.environ["ACTORML_SOCKET_ROOT"]
    return {f"{d}/{f}" for d in os.listdir(root) for f in ["", *os.listdir(f"{root}/{d}")]}


class TestEmbedding:
    async def test_ask_and_tell_from_host(self, tmp_path: Path) -> None:
        """A host program talks to actors in node processes with tell and ask."""
        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                await cluster.tell("c1", Add(5))
                await cluster.tell("c2", Add(1))
                one: Total = await cluster.ask("c1", Get())
                two: Total = await cluster.ask("c2", Get())
                pids = [cluster.pid("n1"), cluster.pid("n2")]
        assert (one.value, two.value) == (5, 101)
        assert one.pid != two.pid and set(pids) == {one.pid, two.pid}
        assert not any(_alive(p) for p in pids if p)
        assert _socket_dirs() == set()

    async def test_error_in_block_stops_nodes(self, tmp_path: Path) -> None:
        """An exception in the host's block still stops every node process."""
        pids: list[int | None] = []
        with pytest.raises(KeyError), trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                pids = [cluster.pid("n1"), cluster.pid("n2")]
                raise KeyError("boom")
        assert pids and not any(_alive(p) for p in pids if p)

    async def test_cancel_stops_nodes(self, tmp_path: Path) -> None:
        """Cancelling the host's block stops every node process."""
        pids: list[int | None] = []
        with trio.move_on_after(60) as outer:
            async with open_cluster(_topology(tmp_path)) as cluster:
                pids = [cluster.pid("n1"), cluster.pid("n2")]
                outer.cancel()
                await trio.sleep_forever()
        assert outer.cancelled_caught
        assert pids and not any(_alive(p) for p in pids if p)

    async def test_a_node_imports_only_what_its_topology_names(self, tmp_path: Path) -> None:
        """In a node process a dotted path its topology does not name is refused unimported
        (a kind inside a message can make no node run code); the named ones resolve."""
        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                stranger: Resolved = await cluster.ask("c1", Resolve("model", "fractions:Fraction"))
                named: Resolved = await cluster.ask("c1", Resolve("actor", COUNTER))
        assert stranger.outcome == (
            "refused: model kind 'fractions:Fraction' is not configured on this node "
            "(only kinds its topology names are imported)"
        )
        assert named.outcome == "ok: Counter"

    async def test_completion_result(self, tmp_path: Path) -> None:
        """An actor's ctx.complete() ends cluster.wait() with its summary."""
        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                await cluster.tell("c2", Finish(7))
                result = await cluster.wait()
        assert result == {"completed_by": "c2", "value": 7, "by": "c2"}

    async def test_logs_bind_node_actor_incarnation(self, tmp_path: Path) -> None:
        """Node logs are JSON lines in the run directory with node, actor and incarnation."""
        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                with pytest.raises(RemoteError):
                    await cluster.ask("c1", Crash("logged"))
                await _ask_through_restart(cluster, "c1", Get())
                run_dir = cluster.run_dir
        import json

        events = [
            json.loads(line) for line in (run_dir / "logs" / "n1.jsonl").read_text().splitlines()
        ]
        crashed = [e for e in events if e["event"] == "child_crashed"]
        assert crashed and crashed[0]["node"] == "n1" and crashed[0]["child"] == "c1"
        assert crashed[0]["actor"] == "c1" and crashed[0]["incarnation"] > 0
        assert "RuntimeError('logged')" in crashed[0]["error"]
        restarted = [e for e in events if e["event"] == "child_restarted"]
        assert [e["child"] for e in restarted] == ["c1"]


class TestSupervision:
    async def test_crashed_actor_restarts_with_new_incarnation(self, tmp_path: Path) -> None:
        """An actor that raises is restarted in its node; its state starts afresh."""
        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                await cluster.tell("c1", Add(3))
                first: Total = await cluster.ask("c1", Get())
                with pytest.raises(RemoteError, match="asked to crash"):
                    await cluster.ask("c1", Crash())
                second: Total = await _ask_through_restart(cluster, "c1", Get())
                stats = await cluster.stats("n1")
        assert second.incarnation != first.incarnation and second.value == 0
        assert second.pid == first.pid
        assert stats.restarts == {"c1": 1}

    async def test_stale_incarnation_dropped_across_processes(self, tmp_path: Path) -> None:
        """A message to the previous incarnation is dropped, counted and refused."""
        from actorml import ActorRef

        with trio.fail_after(60):
            async with open_cluster(_topology(tmp_path)) as cluster:
                first: Total = await cluster.ask("c1", Get())
                with pytest.raises(RemoteError):
                    await cluster.ask("c1", Crash())
                await _ask_through_restart(cluster, "c1", Get())
                old = ActorRef("n1", "c1", first.incarnation)
                with pytest.raises(ActorGone, match="was restarted"):
                    await cluster.ask(old, Get())
                stats = await cluster.stats("n1")
        assert stats.counters["dropped_stale"] == 1

    async def test_killed_node_is_restarted(self, tmp_path: Path) -> None:
        """kill -9 of a node process: the launcher restarts only that node."""
        with trio.fail_after(90):
            async with open_cluster(_topology(tmp_path)) as cluster:
                old_pid, other = cluster.pid("n1"), cluster.pid("n2")
                assert old_pid is not None
                os.kill(old_pid, signal.SIGKILL)
                while cluster.node_restarts.get("n1", 0) < 1:
                    await trio.sleep(0.05)
                total: Total = await _ask_through_restart(cluster, "c1", Get())
                assert total.pid not in (old_pid, None) and cluster.pid("n2") == other
                assert cluster.procs["n1"].incarnation == 2

    async def test_hung_node_is_judged_dead_by_heartbeat(self, tmp_path: Path) -> None:
        """A stopped (hung) node misses its heartbeat deadline and is replaced."""
        with trio.fail_after(90):
            async with open_cluster(_topology(tmp_path)) as cluster:
                old_pid = cluster.pid("n2")
                assert old_pid is not None
                os.kill(old_pid, signal.SIGSTOP)
                while cluster.node_restarts.get("n2", 0) < 1:
                    await trio.sleep(0.05)
                total: Total = await cluster.ask("c2", Get())
                assert total.pid != old_pid and not _alive(old_pid)
                assert cluster.deaths[0][0] == "n2" and "no heartbeat" in cluster.deaths[0][1]

    async def test_one_for_all_restarts_every_node(self, tmp_path: Path) -> None:
        """With one_for_all at the cluster level, one node's death restarts all nodes."""
        with trio.fail_after(90):
            async with open_cluster(_topology(tmp_path, cluster_strategy="one_for_all")) as cluster:
                pids = {n: cluster.pid(n) for n in ("n1", "n2")}
                os.kill(pids["n2"] or 0, signal.SIGKILL)
                while cluster.node_restarts.get("n2", 0) < 1:
                    await trio.sleep(0.05)
                assert cluster.node_restarts == {"n1": 1, "n2": 1}
                assert all(cluster.pid(n) != pids[n] for n in pids)
                await cluster.ask("c1", Get())

    async def test_rest_for_one_restarts_the_later_nodes(self, tmp_path: Path) -> None:
        """With rest_for_one, a node's death restarts it and the nodes started after it."""
        topology = _topology(tmp_path, cluster_strategy="rest_for_one")
        with trio.fail_after(120):
            async with open_cluster(topology) as cluster:
                first = cluster.pid("n1")
                os.kill(cluster.pid("n2") or 0, signal.SIGKILL)
                while cluster.node_restarts.get("n2", 0) < 1:
                    await trio.sleep(0.05)
                assert cluster.node_restarts == {"n2": 1} and cluster.pid("n1") == first
                os.kill(first or 0, signal.SIGKILL)
                while cluster.node_restarts.get("n1", 0) < 1:
                    await trio.sleep(0.05)
                assert cluster.node_restarts == {"n1": 1, "n2": 2}
                await _ask_through_restart(cluster, "c2", Get())

    async def test_cluster_gives_up_after_intensity(self, tmp_path: Path) -> None:
        """More node deaths than max_restarts within the window end the cluster with an error."""
        with pytest.raises(ClusterGaveUp, match=r"^cluster gave up: more than 2 node restarts"):
            with trio.fail_after(120):
                async with open_cluster(_topology(tmp_path)) as cluster:
                    for _ in range(3):
                        restarts = cluster.node_restarts.get("n1", 0)
                        pid = cluster.pid("n1")
                        os.kill(pid or 0, signal.SIGKILL)
                        while (
                            cluster.node_restarts.get("n1", 0) == restarts and not cluster.failure
                        ):
                            await trio.sleep(0.05)
                    await trio.sleep_forever()

    async def test_node_supervisor_gives_up(self, tmp_path: Path) -> None:
        """A node whose root supervisor exceeds its intensity exits and is restarted."""
        topology = _topology(tmp_path, supervisor=SupervisorSpec(max_restarts=1, within_s=60.0))
        with trio.fail_after(90):
            async with open_cluster(topology) as cluster:
                first = cluster.pid("n1")
                for _ in range(2):
                    with pytest.raises(RemoteError):
                        await _ask_through_restart(cluster, "c1", Crash())
                while cluster.node_restarts.get("n1", 0) < 1:
                    await trio.sleep(0.05)
                assert cluster.deaths[0][0] == "n1" and "gave up" in cluster.deaths[0][1]
                total: Total = await cluster.ask("c1", Get())
                assert total.pid != first


def _run_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorml", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


class TestCommandLine:
    def test_up_trains_quickstart(self, tmp_path: Path) -> None:
        """`actorml up examples/quickstart.toml` reports the result, and leaves the plot
        (drawn after the result) and every node stopped in order, none signalled."""
        run = tmp_path / "run"
        done = _run_cli("up", "examples/quickstart.toml", "--run-dir", str(run))
        assert done.returncode == 0, done.stderr
        assert "job complete" in done.stdout and "test_accuracy" in done.stdout
        assert (run / "training.png").stat().st_size > 10_000
        assert json.loads((run / "result.json").read_text())["plot"] == str(run / "training.png")
        log = (run / "logs" / "launcher.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in log]
        exited = {e["node"] for e in events if e["event"] == "node_exited"}
        assert exited == {"scheduler", "shard-0", "shard-1"} | {f"worker-{i}" for i in range(4)}
        assert [e for e in events if e["event"] == "node_signalled"] == []
        assert _socket_dirs() == set()

    def test_up_runs_example(self, tmp_path: Path) -> None:
        """`actorml up examples/pingpong.toml` runs two processes and prints a summary."""
        done = _run_cli("up", "examples/pingpong.toml", "--run-dir", str(tmp_path / "run"))
        assert done.returncode == 0, done.stderr
        assert "job complete" in done.stdout and "median_rtt_us" in done.stdout
        assert f"run directory {tmp_path / 'run'}" in done.stdout
        assert (tmp_path / "run" / "result.json").exists()
        assert {p.name for p in (tmp_path / "run" / "logs").iterdir()} == {
            "launcher.jsonl", "left.jsonl", "right.jsonl"
        }  # fmt: skip
        assert _socket_dirs() == set()

    def test_a_job_that_failed_exits_1(self, tmp_path: Path) -> None:
        """A job that completes with an ``error`` prints it and exits 1, not 0."""
        topology = tmp_path / "t.toml"
        topology.write_text(
            f'[cluster]\nname = "failing"\nrun_dir = "{tmp_path}"\n'
            f'[[node]]\nname = "f"\n[[node.actor]]\nname = "f"\nkind = "{FINISHER}"\n'
            'restart = "transient"\nargs = { error = "3 acknowledged pushes lost (slices 0)" }\n'
        )
        done = _run_cli("up", str(topology))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "actorml: job failed\n" in done.stdout
        failed = [ln for ln in done.stderr.splitlines() if ln.startswith("actorml: job failed")]
        assert failed == ["actorml: job failed: 3 acknowledged pushes lost (slices 0)"]
        assert _socket_dirs() == set()

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_signal_stops_everything(self, tmp_path: Path, signum: int) -> None:
        """Ctrl-C or SIGTERM to `actorml up` stops every node and leaves no socket."""
        topology = tmp_path / "t.toml"
        topology.write_text(
            f'[cluster]\nname = "sig"\nrun_dir = "{tmp_path}"\n'
            f'[[node]]\nname = "sig-a"\n[[node.actor]]\nname = "c"\nkind = "{COUNTER}"\n'
            f'[[node]]\nname = "sig-b"\n[[node.actor]]\nname = "d"\nkind = "{COUNTER}"\n'
        )
        proc, node = up_until_ready(topology, "sig-a", tmp_path)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signum, err
        assert "stopped; every node is down" in out
        assert not _alive(node)
        assert _socket_dirs() == set()

    def test_bad_topology_exits_2_with_one_line(self, tmp_path: Path) -> None:
        """A topology naming an unknown actor kind exits 2 with one line naming the key."""
        bad = tmp_path / "bad.toml"
        bad.write_text(
            '[cluster]\nname = "x"\n[[node]]\nname = "a"\n'
            '[[node.actor]]\nname = "p"\nkind = "pnger"\n'
        )
        for command in ("check", "up"):
            done = _run_cli(command, str(bad))
            assert done.returncode == 2
            assert done.stderr.count("\n") == 1
            assert done.stderr.startswith(
                f"error: {bad}:7: node[0].actor[0].kind: unknown actor kind 'pnger'"
            )

    def test_check_ok(self) -> None:
        """`actorml check` accepts every example (or names the missing data package)."""
        from actorml.models.data import FASHION_MNIST_DIR

        for example in sorted((ROOT / "examples").glob("*.toml")):
            done = _run_cli("check", str(example))
            if example.stem == "fashion_mnist" and not FASHION_MNIST_DIR.is_dir():
                # Without the Debian package the check says how to get it.
                assert done.returncode == 2
                assert "apt-get install dataset-fashion-mnist" in done.stderr
                continue
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("ok: ")


def _pingpong_over_tcp(tmp_path: Path, extra: str = "") -> Path:
    """examples/pingpong.toml on tcp, shorter, with ``extra`` lines in [cluster]."""
    text = (ROOT / "examples" / "pingpong.toml").read_text()
    text = text.replace('transport = "ipc"', f'transport = "tcp"\nrun_dir = "{tmp_path}"{extra}')
    path = tmp_path / "pingpong-tcp.toml"
    path.write_text(text.replace("rounds = 2000", "rounds = 200"))
    return path


class TestTLS:
    def test_certs_then_up_over_tls(self, tmp_path: Path) -> None:
        """`actorml certs` makes a private set (CA, one cert and key per node and the
        launcher); pingpong over tcp with tls_dir runs on it and leaves nothing behind."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        certs = tmp_path / "certs"
        topology = _pingpong_over_tcp(tmp_path, f'\ntls_dir = "{certs}"')
        made = _run_cli("certs", str(certs), "--topology", str(topology))
        assert made.returncode == 0, made.stderr
        assert sorted(p.name for p in certs.iterdir()) == [
            "_launcher.crt", "_launcher.key", "ca.crt", "left.crt", "left.key",
            "right.crt", "right.key",
        ]  # fmt: skip
        assert certs.stat().st_mode & 0o777 == 0o700
        assert {(certs / f"{n}.key").stat().st_mode & 0o777 for n in ("left", "right")} == {0o600}
        cert = x509.load_pem_x509_certificate((certs / "left.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "left"
        assert _run_cli("check", str(topology)).returncode == 0
        done = _run_cli("up", str(topology), "--run-dir", str(tmp_path / "run"))
        assert done.returncode == 0, done.stderr
        assert "job complete" in done.stdout and "median_rtt_us" in done.stdout
        assert "tls+tcp://127.0.0.1:" in (tmp_path / "run" / "logs" / "left.jsonl").read_text()
        assert _socket_dirs() == set()

    async def test_open_cluster_certifies_its_nodes_for_the_run(self, tmp_path: Path) -> None:
        """Without tls_dir the launcher makes a CA and certificates in its private
        directory, hands each node only its own key, and removes them all at the end."""
        topology = _topology(tmp_path)
        topology = attrs.evolve(topology, cluster=attrs.evolve(topology.cluster, transport="tcp"))
        with trio.fail_after(60):
            async with open_cluster(topology) as cluster:
                total: Total = await cluster.ask("c2", Get())
                tls = cluster.socket_dir / "tls"
                assert tls.stat().st_mode & 0o777 == 0o700
                command = cluster._command("n1", 1)
                keys = [part for part in command if part.endswith(".key")]
                assert keys == [str(tls / "n1.key")]
                assert cluster.node.address.startswith("tls+tcp://127.0.0.1:")
        assert total.value == 100
        assert _socket_dirs() == set()

    async def test_insecure_tcp_warns_and_runs_in_clear(self, tmp_path: Path) -> None:
        """`insecure = true` runs plain tcp, and says at start who could then speak."""
        topology = _topology(tmp_path)
        cluster_spec = attrs.evolve(topology.cluster, transport="tcp", insecure=True)
        with trio.fail_after(60):
            async with open_cluster(attrs.evolve(topology, cluster=cluster_spec)) as cluster:
                assert cluster.node.address.startswith("tcp://127.0.0.1:")
                total: Total = await cluster.ask("c1", Get())
        assert total.value == 0
        for name in ("launcher", "n1", "n2"):
            lines = (cluster.run_dir / "logs" / f"{name}.jsonl").read_text().splitlines()
            (warning,) = [e for e in map(json.loads, lines) if e["event"] == "insecure_transport"]
            assert warning["level"] == "warning"
            assert (
                "anyone who can reach a node's port can send it messages as any node"
                in (warning["risk"])
            )
        assert _socket_dirs() == set()

    def test_a_bad_tls_dir_exits_2_with_one_line(self, tmp_path: Path) -> None:
        """A tls_dir without the launcher's files: exit 2, one line naming the key, the
        file and the fix; nothing is started."""
        empty = tmp_path / "empty"
        empty.mkdir()
        topology = _pingpong_over_tcp(tmp_path, f'\ntls_dir = "{empty}"')
        done = _run_cli("up", str(topology))
        assert done.returncode == 2
        assert done.stderr == (
            f"error: cluster.tls_dir: cannot read '{empty}/ca.crt' (no such file or "
            "directory); make a set with `actorml certs DIR --topology FILE`\n"
        )
        assert done.stdout == ""

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            ((), "error: actorml certs needs --topology FILE or --nodes a,b,c\n"),
            (("--nodes", "a,9b"), "error: --nodes: invalid name '9b' (expected a letter "
             "followed by letters, digits, '_', '.' or '-')\n"),
        ],
    )  # fmt: skip
    def test_certs_bad_input_exits_2_with_one_line(
        self, tmp_path: Path, args: tuple[str, ...], message: str
    ) -> None:
        """`actorml certs` without node names, or with a bad one, exits 2 with one line."""
        done = _run_cli("certs", str(tmp_path / "c"), *args)
        assert (done.returncode, done.stderr) == (2, message)
        assert not (tmp_path / "c").exists()
