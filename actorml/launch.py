"""Launching a cluster: one OS process per node, supervised from the launcher.

:func:`open_cluster` is the whole life of a cluster inside an ``async with`` block:
it makes a run directory, starts every node as ``actorml node NAME``, waits for all
to be ready, hands the body a :class:`Cluster` to talk to the actors, restarts node
processes that die (by the cluster's supervisor strategy and restart intensity, as
judged by exit status or a missed heartbeat deadline), and on leaving the block, on
success, error or cancellation, stops the nodes in reverse order and removes every
socket file.
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from .actor import run_actor
from .certs import CertificateSet, for_cluster
from .control import JUDGED_DEAD, LauncherControl
from .errors import (
    ActorGone,
    AskTimeout,
    ClusterGaveUp,
    ClusterStartError,
    Refused,
    UnknownNode,
)
from .groups import sole
from .log import configure_logging
from .logship import append_lines
from .messages import (
    LAUNCHER_NODE,
    ActorRef,
    Directory,
    GetStats,
    Heartbeat,
    JobComplete,
    LogLines,
    NodeDown,
    NodeGaveUp,
    NodeHello,
    NodeIdle,
    NodeJoin,
    NodeJoined,
    NodeReady,
    Shutdown,
    Stats,
)
from .node import Node
from .nodestart import node_address, node_environment, placement, warn_if_insecure
from .process import ChildProcess, spawn
from .resume import mark_resume
from .supervisor import RestartIntensity, Strategy
from .topology import NodeSpec, Topology
from .transport import NngTransport
from .zygote import Template, warm_spec

__all__ = ["Cluster", "open_cluster"]


class _DiedStarting(Exception):
    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"node {node} died while starting: {reason}")
        self.node = node


def _status(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


@attrs.define(eq=False)
class NodeProcess:
    """The launcher's view of one node process.

    A ``remote`` one runs on another host under that host's engine: it has no
    process here, joins by itself, and is judged dead by its heartbeats alone.
    """

    name: str
    incarnation: int = 0
    process: ChildProcess | None = None
    address: str | None = None
    hello: trio.Event = attrs.field(factory=trio.Event)
    ready: trio.Event = attrs.field(factory=trio.Event)
    exited: trio.Event = attrs.field(factory=trio.Event)
    last_beat: float = 0.0
    idle: bool = False
    expected_exit: bool = False
    death_reason: str = ""
    remote: bool = False
    fenced: bool = False
    join_token: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@attrs.define(eq=False)
class Cluster:
    """A running cluster, as the program that opened it sees it."""

    topology: Topology
    run_dir: Path
    socket_dir: Path
    node: Node
    procs: dict[str, NodeProcess]
    certs: CertificateSet | None = None
    completed: trio.Event = attrs.field(factory=trio.Event)
    result: dict[str, Any] | None = None
    failure: BaseException | None = None
    node_restarts: dict[str, int] = attrs.field(factory=dict)
    deaths: list[tuple[str, str]] = attrs.field(factory=list)
    log: Any = attrs.field(factory=lambda: structlog.get_logger())
    _nursery: trio.Nursery | None = None
    _restart_lock: trio.Lock = attrs.field(factory=trio.Lock)
    _intensity: RestartIntensity | None = None
    _stopping: bool = False
    template: Template | None = None

    # --- talking to actors -------------------------------------------------------

    def ref(self, name: str) -> ActorRef:
        """The address of actor ``name`` (any incarnation)."""
        return self.node.locate(name)

    async def tell(self, target: ActorRef | str, msg: object) -> None:
        """Send ``msg`` to an actor of the cluster (see :meth:`Node.tell`)."""
        await self.node.tell(target, msg)

    async def ask(self, target: ActorRef | str, msg: object, timeout: float | None = None) -> Any:
        """Ask an actor of the cluster and wait for the reply (see :meth:`Node.ask`)."""
        return await self.node.ask(target, msg, timeout=timeout)

    async def stats(self, node: str, timeout: float | None = None) -> Stats:
        """Counters and restart counts of node ``node``."""
        reply: Stats = await self.node.ask(ActorRef(node, "_node"), GetStats(), timeout=timeout)
        return reply

    async def add_node(self, spec: NodeSpec) -> None:
        """Start a new node process running ``spec``'s actors, without a restart.

        The topology (and ``topology.toml`` in the run directory) grows by the node,
        every node learns where it is and where its actors are, and this returns once
        it is ready.

        Raises:
            ValueError: a node or actor of that name exists already.
            ClusterStartError: it did not come up.
        """
        async with self._restart_lock:
            topology = attrs.evolve(self.topology, nodes=(*self.topology.nodes, spec))
            self._set_topology(topology)
            await self._start(spec.name)
            try:
                await self._wait_up([spec.name])
            except _DiedStarting as exc:
                raise ClusterStartError(str(exc)) from None
            self.log.info("node_added", node=spec.name)

    async def remove_node(self, name: str) -> None:
        """Stop node ``name`` in order and forget it; the others are told it is gone
        (``NodeDown`` with reason ``removed``), so it is not waited for."""
        async with self._restart_lock:
            proc = self.procs[name]
            await self._stop_node(proc)
            del self.procs[name]
            nodes = tuple(n for n in self.topology.nodes if n.name != name)
            self._set_topology(attrs.evolve(self.topology, nodes=nodes))
            self.node.mark_down(name)
            await self._announce_down(proc, "removed")
            await self._broadcast_directory()
            self.log.info("node_removed", node=name)

    def _set_topology(self, topology: Topology) -> None:
        self.topology = topology
        (self.run_dir / "topology.toml").write_text(topology.to_toml(), encoding="utf-8")
        self.node.placement.clear()
        self.node.placement.update(placement(topology))

    def pid(self, node: str) -> int | None:
        """The OS process id of node ``node``'s current process."""
        return self.procs[node].pid

    async def wait(self) -> dict[str, Any]:
        """Wait until the job completes; returns the summary an actor reported.

        Raises:
            ClusterGaveUp: node processes kept failing.
        """
        await self.completed.wait()
        if self.failure is not None:
            raise self.failure
        return dict(self.result or {})

    # --- what nodes report ----------------------------------------------------------

    def _report(self, msg: Any) -> None:
        proc = self.procs.get(getattr(msg, "node", ""))
        if isinstance(msg, JobComplete):
            if self.result is None:
                self.result = {"completed_by": msg.actor.name, **msg.result}
                self.log.info("job_completed", by=str(msg.actor))
            self.completed.set()
            return
        if proc is None or msg.incarnation != proc.incarnation:
            return  # from a node process that has since been replaced
        if isinstance(msg, LogLines):
            append_lines(self.run_dir / "logs" / f"{proc.name}.jsonl", msg)
        elif isinstance(msg, Heartbeat):
            proc.last_beat = trio.current_time()
            if proc.remote and proc.exited.is_set() and not proc.fenced:
                # Judged dead, yet it beats: its peers have moved on without it, so it
                # must leave and come back as a new incarnation (its engine restarts it).
                proc.fenced = True
                assert self._nursery is not None
                self._nursery.start_soon(self._fence, proc)
        elif isinstance(msg, NodeHello):
            proc.address = msg.address
            self.node.set_peer(proc.name, msg.address)
            proc.last_beat = trio.current_time()
            proc.hello.set()
        elif isinstance(msg, NodeReady):
            proc.ready.set()
        elif isinstance(msg, NodeIdle):
            proc.idle = True
            if all(p.idle for p in self.procs.values()) and self.result is None:
                self.result = {"status": "every actor finished"}
                self.completed.set()
        elif isinstance(msg, NodeGaveUp):
            proc.death_reason = f"its root supervisor gave up: {msg.error}"
            self.log.error("node_gave_up", node=proc.name, error=msg.error)

    # --- processes ---------------------------------------------------------------

    def _command(self, name: str, incarnation: int) -> list[str]:
        return [
            sys.executable, "-m", "actorml", "node", name,
            "--topology", str(self.run_dir / "topology.toml"),
            "--launcher", self.node.address,
            "--run-dir", str(self.run_dir),
            "--socket-dir", str(self.socket_dir),
            "--incarnation", str(incarnation),
            *self._tls_options(name),
        ]  # fmt: skip

    def _tls_options(self, name: str) -> list[str]:
        """The node's own key and certificate and the CA's: never another node's key."""
        if self.certs is None:
            return []
        files = self.certs.files(name)
        files.load()  # a node added later needs its files too: say so here, not in its log
        paths = {"--tls-ca": files.ca, "--tls-cert": files.cert, "--tls-key": files.key}
        return [part for option, path in paths.items() for part in (option, str(path))]

    async def _start(self, name: str) -> None:
        """Start node ``name`` here, or, if it runs on another host, wait for it to join."""
        if self.topology.remote(name):
            self._await_join(name)
        else:
            await self._spawn(name)

    def _await_join(self, name: str) -> None:
        self.procs[name] = NodeProcess(name, remote=True)
        self.log.info("node_awaited", node=name, host=self.topology.node(name).host)

    async def _join(self, msg: NodeJoin) -> NodeJoined:
        """A node on another host joins: the first time, or back after a restart.

        A node back (at its old address or a new one) gets the next incarnation; the
        incarnation it replaces is announced dead first, so no peer marks the new one
        down after learning its address.

        Raises:
            Refused: the launcher does not expect that node to join.
        """
        old = self.procs.get(msg.node)
        if old is None or not old.remote or self._stopping:
            why = (
                "the cluster is stopping" if self._stopping
                else "it is not in the topology" if old is None
                else "the launcher starts it on its own host (give the node a host = ...)"
            )  # fmt: skip
            raise Refused(f"node {msg.node!r} cannot join: {why}")
        if old.join_token == msg.token:  # a retry whose answer was lost
            return NodeJoined(msg.node, old.incarnation)
        if old.incarnation == 0:  # awaited since the start
            old.incarnation, old.join_token = 1, msg.token
            self.node.set_peer(msg.node, msg.address)  # (the sender proved its name)
            self.log.info("node_joined", node=msg.node, address=msg.address, pid=msg.pid)
            return NodeJoined(msg.node, 1)
        assert self._nursery is not None
        proc = NodeProcess(msg.node, old.incarnation + 1, remote=True, join_token=msg.token)
        if not old.exited.is_set():  # back before its silence was noticed
            old.death_reason = "a new incarnation joined"
            await self._lost(old)
        self.procs[msg.node] = proc
        self.node.set_peer(msg.node, msg.address)
        self.log.info(
            "node_joined", node=msg.node, address=msg.address, incarnation=proc.incarnation
        )
        self._nursery.start_soon(self._rejoin, proc)
        return NodeJoined(msg.node, proc.incarnation)

    async def _rejoin(self, proc: NodeProcess) -> None:
        """Bring a node that joined again into the cluster: directory, then ready."""
        try:
            await self._wait_up([proc.name])
        except (_DiedStarting, ClusterStartError) as exc:
            self.log.warning("node_rejoin_failed", node=proc.name, error=str(exc))
            if not proc.exited.is_set():
                proc.death_reason = str(exc)
                await self._lost(proc)
            return
        self.node_restarts[proc.name] = self.node_restarts.get(proc.name, 0) + 1
        self.log.info("node_rejoined", node=proc.name, incarnation=proc.incarnation)

    async def _lost(self, proc: NodeProcess) -> None:
        """A node on another host is judged dead: its peers are told; its host's
        engine, not the launcher, starts it again."""
        proc.exited.set()
        reason = proc.death_reason or "lost"
        self.deaths.append((proc.name, reason))
        self.log.warning(
            "node_died", node=proc.name, incarnation=proc.incarnation, judged_by=reason,
            restarted_by="its host",
        )  # fmt: skip
        await self._announce_down(proc, reason)

    async def _fence(self, proc: NodeProcess) -> None:
        """Tell a node judged dead that still runs to leave (bounded: it may be cut off)."""
        self.log.warning("node_fenced", node=proc.name, incarnation=proc.incarnation)
        with trio.move_on_after(self.topology.cluster.ask_timeout_s):
            await self.node.tell(ActorRef(proc.name, "_node"), Shutdown(JUDGED_DEAD))

    async def _spawn(self, name: str) -> None:
        assert self._nursery is not None
        old = self.procs.get(name)
        proc = NodeProcess(name, incarnation=(old.incarnation if old else 0) + 1)
        self.procs[name] = proc
        proc.process = await self._start_process(self._command(name, proc.incarnation))
        self.log.info("node_started", node=name, pid=proc.pid, incarnation=proc.incarnation)
        self._nursery.start_soon(self._watch, proc)

    async def _start_process(self, command: list[str]) -> ChildProcess:
        """Fork the node from the template; start it plainly if there is none or it
        fails (said once)."""
        env = node_environment()
        if self.template is not None:
            try:
                with trio.move_on_after(self.topology.cluster.ready_timeout_s):
                    if not self.template.announced and await self.template.ready():
                        self.template.announced = True
                        self.log.info(
                            "template_ready",
                            warm_s=self.template.warm_s,
                            not_warmed=self.template.skipped,
                        )
                    return await self.template.fork(command, env)
                raise OSError(f"not ready within {self.topology.cluster.ready_timeout_s} s")
            except OSError as exc:
                self.log.warning("template_unavailable", error=str(exc), then="plain starts")
                template, self.template = self.template, None
                with trio.CancelScope(shield=True):
                    await template.aclose()
        return spawn(command, env=env)

    async def _watch(self, proc: NodeProcess) -> None:
        assert proc.process is not None
        code = await proc.process.wait()
        proc.exited.set()
        if proc.expected_exit or self._stopping or not proc.ready.is_set():
            return
        how = _status(code)
        reason = proc.death_reason or how
        self.deaths.append((proc.name, reason))
        self.log.warning("node_died", node=proc.name, pid=proc.pid, status=how, judged_by=reason)
        await self._announce_down(proc, reason)
        await self._after_death(proc.name)

    async def _announce_down(self, proc: NodeProcess, reason: str) -> None:
        """Tell every other live node that ``proc`` died (bounded: a hung peer is skipped)."""
        down = NodeDown(proc.name, proc.incarnation, reason)
        for other in self.procs.values():
            if other is proc or other.exited.is_set() or not other.ready.is_set():
                continue
            with trio.move_on_after(1.0):
                await self.node.tell(ActorRef(other.name, "_node"), down)

    async def _wait_up(self, names: list[str]) -> None:
        """Wait until every node in ``names`` is ready, or the job is already over.

        A job may end while it starts: an actor that finds its input unusable completes
        it with an ``error`` (bad data stays bad; waiting for the nodes that wait for it
        would only end in a timeout).

        Raises:
            _DiedStarting: one exited first (its death is handled by the caller: a node
                that dies before it is ready is its starter's problem, not the watcher's).
            ClusterStartError: not all ready within ``ready_timeout_s``.
        """
        limit = self.topology.cluster.ready_timeout_s
        with trio.move_on_after(limit):
            async with trio.open_nursery() as nursery:

                async def over() -> None:
                    await self.completed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(over)
                for name in names:
                    await self._until(self.procs[name], "hello")
                await self._broadcast_directory()
                for name in names:
                    await self._until(self.procs[name], "ready")
                nursery.cancel_scope.cancel()
            return
        late = [n for n in names if not self.procs[n].ready.is_set()]
        raise ClusterStartError(f"nodes {', '.join(late)} not ready within {limit:g}s")

    async def _until(self, proc: NodeProcess, what: str) -> None:
        event: trio.Event = getattr(proc, what)
        async with trio.open_nursery() as nursery:

            async def first(e: trio.Event) -> None:
                await e.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, event)
            nursery.start_soon(first, proc.exited)
        if not event.is_set():
            code = None if proc.process is None else proc.process.returncode
            status = "judged dead" if code is None else _status(code)
            reason = proc.death_reason or status
            self.deaths.append((proc.name, f"died while starting: {reason}"))
            self.log.warning("node_died", node=proc.name, status=status, while_="starting")
            raise _DiedStarting(proc.name, reason)

    async def _broadcast_directory(self) -> None:
        addresses = {n: p.address for n, p in self.procs.items() if p.address}
        addresses[LAUNCHER_NODE] = self.node.address
        directory = Directory(addresses, placement(self.topology))
        for name in addresses:
            if name != LAUNCHER_NODE and not self.procs[name].exited.is_set():
                await self.node.tell(ActorRef(name, "_node"), directory)

    async def _after_death(self, name: str) -> None:
        async with self._restart_lock:
            while not self._stopping:
                assert self._intensity is not None
                if self._intensity.record():
                    spec = self.topology.cluster.supervisor
                    self.failure = ClusterGaveUp(
                        f"cluster gave up: more than {spec.max_restarts} node restarts "
                        f"within {spec.within_s:g}s (last: {name}, {self.deaths[-1][1]})"
                    )
                    self.log.error("cluster_gave_up", node=name)
                    self.completed.set()
                    return
                # Only the nodes it runs: another host's nodes are that host's engine's.
                order = [n.name for n in self.topology.nodes if not self.procs[n.name].remote]
                strategy = self.topology.cluster.supervisor.strategy
                if strategy == Strategy.ONE_FOR_ONE:
                    again = [name]
                elif strategy == Strategy.ONE_FOR_ALL:
                    again = order
                else:
                    again = order[order.index(name) :]
                for other in reversed(again):
                    if other != name:
                        await self._stop_node(self.procs[other])
                for other in again:
                    await self._spawn(other)
                try:
                    await self._wait_up(again)
                except _DiedStarting as exc:
                    name = exc.node  # it died again before it was up: that is a restart too
                    continue
                for other in again:  # counted once the node is back up
                    self.node_restarts[other] = self.node_restarts.get(other, 0) + 1
                self.log.info("nodes_restarted", nodes=again, strategy=strategy.value)
                return

    async def _stop_node(self, proc: NodeProcess) -> None:
        """Stop one node: ask it to stop its actors, then reap its process."""
        await self._request_stop(proc)
        await self._reap(proc)

    async def _request_stop(self, proc: NodeProcess) -> None:
        """Ask a node to stop its actors; returns once they have (or its timeout passed)."""
        proc.expected_exit = True
        if proc.exited.is_set() or (proc.process is None and not proc.remote):
            return
        timeout = self.topology.cluster.supervisor.shutdown_timeout_s
        with trio.move_on_after(timeout):
            try:
                await self.node.ask(
                    ActorRef(proc.name, "_node"), Shutdown("launcher"), timeout=timeout
                )
            except (ActorGone, AskTimeout, UnknownNode) as exc:
                # It is gone or hung: reaping deals with it.
                self.log.info("node_stop_unanswered", node=proc.name, error=str(exc))

    async def _reap(self, proc: NodeProcess) -> None:
        """Wait for the process to exit; SIGTERM it after the timeout, SIGKILL after another."""
        if proc.process is None:
            return
        timeout = self.topology.cluster.supervisor.shutdown_timeout_s
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                self.log.warning("node_signalled", node=proc.name, signal=sig.name)
                proc.process.send_signal(sig)
            with trio.move_on_after(timeout):
                code = await proc.process.wait()
                self.log.info("node_exited", node=proc.name, status=_status(code))
                return

    async def _monitor_heartbeats(self) -> None:
        cluster = self.topology.cluster
        while True:
            await trio.sleep(cluster.heartbeat_interval_s)
            now = trio.current_time()
            for proc in list(self.procs.values()):
                late = now - proc.last_beat
                if (
                    proc.ready.is_set()
                    and not proc.exited.is_set()
                    and not proc.expected_exit
                    and late > cluster.heartbeat_deadline_s
                ):
                    proc.death_reason = f"no heartbeat for {late:.1f}s"
                    self.log.warning("node_unresponsive", node=proc.name, silent_s=round(late, 2))
                    if proc.process is not None:
                        proc.process.kill()  # its watcher takes it from here
                    elif proc.remote:
                        await self._lost(proc)

    async def _cancel_on_failure(self, body: trio.CancelScope) -> None:
        await self.completed.wait()
        if self.failure is not None:
            body.cancel()

    async def _shutdown(self) -> None:
        """Stop the nodes' actors in reverse topology order, then reap every process."""
        self._stopping = True
        procs = [self.procs[s.name] for s in reversed(self.topology.nodes) if s.name in self.procs]
        for proc in procs:
            await self._request_stop(proc)
        async with trio.open_nursery() as nursery:
            for proc in procs:
                nursery.start_soon(self._reap, proc)
        if self.template is not None:
            await self.template.aclose()
        self.log.info("cluster_stopped", run_dir=str(self.run_dir))


def _template_for(topology: Topology) -> Template | None:
    """A template for the nodes of ``topology``, unless it asks for plain starts."""
    if not topology.cluster.prewarm:
        return None
    try:
        return Template.start(warm_spec(topology.named_kinds(), topology.extra), node_environment())
    except OSError as exc:
        structlog.get_logger().warning("template_unavailable", error=str(exc), then="plain starts")
        return None


def new_run_dir(topology: Topology) -> Path:
    """A fresh directory under the cluster's ``run_dir`` for one run's files."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{topology.cluster.name}-{stamp}-{secrets.token_hex(2)}"
    path = Path(topology.cluster.run_dir) / name
    path.mkdir(parents=True)
    return path


_configured_logging = False  # set once open_cluster itself set structlog up


@asynccontextmanager
async def open_cluster(
    topology: Topology,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    template: Template | None = None,
) -> AsyncIterator[Cluster]:
    """Start every node of ``topology`` as its own process and supervise them.

    A node whose ``host`` is another host's is not started here: it is started there
    (``actorml node NAME --topology FILE``, by hand or by an engine) and joins; the
    cluster is ready once it has. It is judged dead by its heartbeats and never
    started by the launcher: its host's engine starts it again, and it rejoins (see
    ``docs/hosts.md``).

    Yields once every node is ready. Leaving the block, normally, by an exception or by
    cancellation, stops the nodes in reverse topology order (each asked to shut down,
    then SIGTERM, then SIGKILL after the supervisor's ``shutdown_timeout_s``) and
    removes the socket directory.

    With ``resume``, the roles start from the latest snapshot in ``run_dir`` (see
    :mod:`actorml.resume`) instead of afresh.

    A tcp cluster runs every pipe over mutual TLS: with the set in ``[cluster] tls_dir``
    or, without one, a CA and certificates made for this run in the private socket
    directory (removed with it); each node process is handed its own key only.

    Node processes are forked from a pre-warmed template (see :mod:`actorml.zygote`):
    ``template``, one already started for this topology (it is closed with the
    cluster), else one started here, unless ``[cluster] prewarm = false``.

    Raises:
        CredentialsError: a file of ``tls_dir`` is missing or unreadable.
        NoSnapshot: ``resume`` but ``run_dir`` holds no snapshot.
        ClusterStartError: a node was not ready within ``ready_timeout_s``.
        ClusterGaveUp: node processes died more often than the restart intensity allows
            (raised on leaving the block; the block is cancelled when it happens).
    """
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(topology)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        mark_resume(run_dir)
    global _configured_logging
    if _configured_logging or not structlog.is_configured():
        _configured_logging = True
        # Embedded in a program that has not set logging up: keep the launcher's events
        # in the run directory and only warnings on the console.
        configure_logging(
            node="launcher",
            log_file=run_dir / "logs" / "launcher.jsonl",
            level=topology.cluster.log_level,
            console_level="warning",
        )
    (run_dir / "topology.toml").write_text(topology.to_toml(), encoding="utf-8")
    # ipc paths must stay short (about 100 bytes), hence /tmp rather than the run dir.
    socket_root = os.environ.get("ACTORML_SOCKET_ROOT", "/tmp")
    socket_dir = Path(tempfile.mkdtemp(prefix="actorml-", dir=socket_root))
    cluster_spec = topology.cluster
    try:
        certs = for_cluster(topology, socket_dir)
    except BaseException:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    warn_if_insecure(cluster_spec, structlog.get_logger())
    tls = None if certs is None else certs.files(LAUNCHER_NODE).load()
    node = Node(
        LAUNCHER_NODE,
        NngTransport(recv_max_size=cluster_spec.recv_max_size, tls=tls),
        node_address(topology, LAUNCHER_NODE, socket_dir),
        placement=placement(topology),
        ask_timeout_s=cluster_spec.ask_timeout_s,
        send_timeout_s=cluster_spec.ask_timeout_s,
        max_frame_size=cluster_spec.recv_max_size,
    )
    cluster = Cluster(topology, run_dir, socket_dir, node, {}, certs)
    cluster.template = template or _template_for(topology)
    cluster._intensity = RestartIntensity(
        cluster_spec.supervisor.max_restarts, cluster_spec.supervisor.within_s
    )
    body = trio.CancelScope()
    try:
        async with trio.open_nursery() as nursery:
            cluster._nursery = nursery
            # The launcher's inbox outlives a cancelled block: the ordered shutdown
            # needs the nodes' answers. It is cancelled explicitly once they are down.
            inbox_scope = trio.CancelScope(shield=True)

            async def serve(*, task_status: trio.TaskStatus[str]) -> None:
                with inbox_scope:
                    await node.serve(task_status=task_status)

            await nursery.start(serve)
            for spec in topology.nodes:  # before the first join can arrive
                if topology.remote(spec.name):
                    cluster._await_join(spec.name)
            control = LauncherControl(cluster._report, cluster._join)
            await nursery.start(run_actor, node, "_launcher", lambda: control, 4096)
            try:
                for spec in topology.nodes:
                    if not topology.remote(spec.name):
                        await cluster._spawn(spec.name)
                try:
                    await cluster._wait_up([n.name for n in topology.nodes])
                except _DiedStarting as exc:
                    log = run_dir / "logs" / f"{exc.node}.jsonl"
                    raise ClusterStartError(f"{exc} (its log: {log})") from None
                nursery.start_soon(cluster._monitor_heartbeats)
                nursery.start_soon(cluster._cancel_on_failure, body)
                cluster.log.info("cluster_ready", nodes=len(topology.nodes), run_dir=str(run_dir))
                with body:
                    yield cluster
            finally:
                with trio.CancelScope(shield=True):
                    await cluster._shutdown()
                inbox_scope.cancel()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The block's own exception comes out bare, as if no nursery were involved.
        raise sole(group) from None
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    if cluster.failure is not None:
        raise cluster.failure
