"""A pre-warmed template for node processes: a fork server (a zygote).

Started plainly, a node process pays for an interpreter, a few seconds of imports
(numpy, numba, scipy, scikit-learn, the runtime) and the loading of compiled kernels
from numba's cache, every node at once on a small machine, and again at every restart.
The launcher instead starts one *template* process that does all of that once, and
forks every node from it: a fork costs milliseconds and shares the template's pages.

Safe at fork:

- no thread is alive in the template (numba, OpenBLAS and nng start threads; the
  template starts none of them: it forks before any exists, checked before each fork);
- each node is orphaned on purpose as it starts (a middle process forks it and exits)
  and so becomes the launcher's own child (the launcher is a child subreaper); it then
  sets ``PR_SET_PDEATHSIG`` again, to die with the launcher, and the launcher waits for
  it and signals it as any child it spawned itself;
- it starts its own session, closes every inherited descriptor, takes the plain
  command's environment, working directory and process title (``ps`` shows ``actorml
  node NAME ...``), reseeds the random generators and configures its logging afresh.

If the template cannot start, dies or refuses, the launcher starts nodes plainly and
says so once. The template talks to the launcher over a socket pair only they hold,
in length-prefixed JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import random
import runpy
import socket
import struct
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .process import ChildProcess, adopt, become_subreaper, spawn

__all__ = ["Template", "warm_spec"]

_TITLE_ROOM = 8192  # bytes of argv the template reserves for its nodes' process titles
_HEADER = struct.Struct(">I")
_MAX_REQUEST = 1 << 20


def warm_spec(kinds: Iterable[str], tables: Mapping[str, Any]) -> dict[str, Any]:
    """What a template for a topology imports and warms.

    ``kinds``: every kind the topology names (``Topology.named_kinds()``); ``tables``:
    its extra top-level tables (``[job]``, ``[model]``, ...). Each table whose section
    kind offers ``warm(tables)`` (a training ``[job]`` does) is warmed by it.
    """
    plain = {k: dict(v) for k, v in tables.items() if isinstance(v, Mapping)}
    return {"kinds": sorted(kinds), "tables": json.loads(json.dumps(plain, default=str))}


class Template:
    """The launcher's end of a template process: ask it for nodes with :meth:`fork`."""

    def __init__(self, process: ChildProcess, sock: socket.socket) -> None:
        self.process = process
        self._stdlib_sock = sock
        self._trio_sock: Any = None
        self._lock = trio.Lock()
        self._ready: bool | None = None
        self.failure = ""
        self.warm_s = 0.0
        self.skipped: list[str] = []  # what it could not warm, and why
        self.announced = False
        self.forked: list[int] = []  # the pids of the nodes it forked

    @classmethod
    def start(cls, spec: Mapping[str, Any], env: Mapping[str, str]) -> Template:
        """Start a template that imports and warms what ``spec`` names (see
        :func:`warm_spec`), with the environment its nodes get (``env``).

        Call it from the thread that lives as long as the launcher (it is spawned as
        nodes are; see :mod:`actorml.process`).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            command = [
                sys.executable, "-m", "actorml.zygote", str(theirs.fileno()),
                json.dumps(dict(spec)), " " * _TITLE_ROOM,
            ]  # fmt: skip
            process = spawn(command, env=env, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        global _templates_alive
        _templates_alive += 1
        become_subreaper(True)
        return cls(process, ours)

    async def ready(self) -> bool:
        """Wait until the template has warmed up; False if it cannot serve (see
        ``failure``)."""
        if self._ready is None:
            async with self._lock:
                if self._ready is None:
                    reply = await self._receive()
                    self._ready = bool(reply.get("ready"))
                    self.failure = str(reply.get("error", "the template exited"))
                    self.warm_s = float(reply.get("seconds", 0.0))
                    self.skipped = [str(s) for s in reply.get("skipped", [])]
        return self._ready

    async def fork(self, command: Sequence[str], env: Mapping[str, str]) -> ChildProcess:
        """A node process running ``command`` (``python -m actorml node ...``), forked.

        Raises:
            OSError: the template is not serving (it died, or refused at start).
        """
        if not await self.ready():
            raise OSError(f"the template cannot fork: {self.failure}")
        request = {
            "argv": list(command), "env": dict(env), "cwd": os.getcwd(), "parent": os.getpid(),
        }  # fmt: skip
        async with self._lock:
            await self._send(request)
            reply = await self._receive()
        if "pid" not in reply:
            self._ready = False
            self.failure = str(reply.get("error", "the template exited"))
            raise OSError(f"the template cannot fork: {self.failure}")
        self.forked.append(int(reply["pid"]))
        return adopt(int(reply["pid"]))

    async def aclose(self) -> None:
        """Stop the template (closing its socket ends it) and wait for it."""
        self._stdlib_sock.close()
        with trio.move_on_after(5.0) as waited:
            await self.process.wait()
        if waited.cancelled_caught:
            self.process.kill()
            await self.process.wait()
        _release_subreaper()

    def kill(self) -> None:
        """Stop the template at once, outside trio (a launch that ends before it runs)."""
        self._stdlib_sock.close()
        self.process.kill()
        if self.process.popen is not None:
            self.process.popen.wait()
        _release_subreaper()

    @property
    def _sock(self) -> Any:
        if self._trio_sock is None:
            self._trio_sock = trio.socket.from_stdlib_socket(self._stdlib_sock)
        return self._trio_sock

    async def _send(self, value: Mapping[str, Any]) -> None:
        data = json.dumps(value).encode()
        view = memoryview(_HEADER.pack(len(data)) + data)
        try:
            while view:
                view = view[await self._sock.send(view) :]
        except OSError as exc:
            raise OSError(f"the template is gone ({exc})") from None

    async def _receive(self) -> dict[str, Any]:
        try:
            header = await _read_exactly(self._sock.recv, _HEADER.size)
            if header is None:
                return {}
            body = await _read_exactly(self._sock.recv, _HEADER.unpack(header)[0])
        except OSError:
            return {}
        return json.loads(body) if body else {}


_templates_alive = 0


def _release_subreaper() -> None:
    global _templates_alive
    _templates_alive -= 1
    if _templates_alive == 0:
        become_subreaper(False)


async def _read_exactly(recv: Any, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = await recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


# --- inside the template process ----------------------------------------------------


def _serve(fd: int, spec: Mapping[str, Any]) -> int:
    sock = socket.socket(fileno=fd)
    started = time.perf_counter()
    try:
        skipped = _warm(spec)
    except Exception as exc:  # warming is an optimisation: say why and serve no node
        _send(sock, {"ready": False, "error": f"warming failed: {type(exc).__name__}: {exc}"})
        return 1
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        _send(sock, {"ready": False, "error": f"{threads} threads alive; forking is unsafe"})
        return 1
    # What was imported stays untouched by the collector in the nodes, so their pages
    # stay shared with the template instead of being copied on the first collection.
    gc.freeze()
    seconds = round(time.perf_counter() - started, 3)
    _send(sock, {"ready": True, "seconds": seconds, "skipped": skipped})
    while (request := _receive(sock)) is not None:
        try:
            reply: dict[str, Any] = {"pid": _fork_node(request, sock)}
        except (OSError, KeyError, TypeError, ValueError) as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _send(sock, reply)
    return 0


def _warm(spec: Mapping[str, Any]) -> list[str]:
    """Import what the nodes will run and load their kernels from numba's cache.

    Returns what could not be warmed (a section whose ``warm`` raised), and why.
    """
    import importlib

    from . import nodeproc, registry  # noqa: F401  (imported to be inherited)

    for group in ("actor", "protocol", "model", "optimizer", "source"):
        for name in registry.known(group):
            registry.resolve(group, name)
    for kind in spec.get("kinds", ()):
        if ":" in kind:  # a user's kind: a bad one is for the node to report
            with contextlib.suppress(Exception):
                importlib.import_module(kind.split(":", 1)[0])
    tables = spec.get("tables", {})
    skipped: list[str] = []
    for warm in registry.section_hooks(tables, "warm"):
        try:
            warm(tables)
        except Exception as exc:  # less warm, not broken: the nodes load what is missing
            skipped.append(f"{getattr(warm, '__qualname__', warm)}: {type(exc).__name__}: {exc}")
    return skipped


def _fork_node(request: Mapping[str, Any], sock: socket.socket) -> int:
    """Fork a node through a middle process that exits: the node is orphaned to the
    launcher (a subreaper). Returns the node's pid."""
    argv, env, cwd, parent = request["argv"], request["env"], request["cwd"], request["parent"]
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise OSError(f"{threads} threads alive in the template; forking is unsafe")
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # the middle process
        status = 0
        try:
            os.close(read_end)
            me = os.getpid()
            node = os.fork()
            if node == 0:
                os.close(write_end)
                _become_node(argv, env, cwd, parent, me, sock)  # never returns
            os.write(write_end, str(node).encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        pid = pipe.read()
    os.waitpid(middle, 0)
    if not pid:
        raise OSError("the fork failed")
    return int(pid)


def _become_node(
    argv: list[str], env: dict[str, str], cwd: str, parent: int, middle: int, sock: socket.socket
) -> None:
    status = 1
    try:
        os.setsid()
        sock.close()
        deadline = time.monotonic() + 10.0
        while os.getppid() == middle:  # orphaned once the middle process exits
            if time.monotonic() > deadline:
                os._exit(1)
            time.sleep(0.0002)
        from .process import die_with_parent

        die_with_parent()
        if os.getppid() != parent:  # not adopted by the launcher, or it died meanwhile
            os._exit(1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        _set_title(argv)
        random.seed()
        import numpy as np

        np.random.seed()
        # What the plain start runs: `python -m actorml node ...`.
        sys.argv = [sys.argv[0], *argv[3:]]
        runpy.run_module("actorml", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _set_title(argv: Sequence[str]) -> None:
    """Show ``argv`` as this process's command line (``ps``, ``pgrep -f``).

    The template was started with room to spare in its own arguments; their memory
    (``arg_start`` .. ``arg_end`` in ``/proc/self/stat``) is overwritten in place.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of stat(5)
        title = b"\0".join(a.encode() for a in argv)[: end - start - 1]
        ctypes.memmove(start, title + b"\0" * (end - start - len(title)), end - start)


def _send(sock: socket.socket, value: Mapping[str, Any]) -> None:
    data = json.dumps(value).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _receive(sock: socket.socket) -> dict[str, Any] | None:
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    size = _HEADER.unpack(header)[0]
    if size > _MAX_REQUEST:
        return None
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    request: dict[str, Any] = json.loads(body)
    return request


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


if __name__ == "__main__":
    status = _serve(int(sys.argv[1]), json.loads(sys.argv[2]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # no teardown of what was imported: nothing is left to save
