"""Child OS processes that die with the launcher, awaited from trio.

``trio.lowlevel.open_process`` forks from a worker thread, and Linux delivers
``PR_SET_PDEATHSIG`` when the *thread* that forked exits, so node processes would be
signalled whenever trio retires an idle worker thread. Forking here, from the trio
thread itself, ties each node to the launcher's lifetime instead; exits are awaited
through a pidfd.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

import attrs
import trio

__all__ = ["ChildProcess", "adopt", "become_subreaper", "die_with_parent", "spawn"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (``PR_SET_PDEATHSIG``).

    Meant as ``subprocess.Popen(..., preexec_fn=die_with_parent)``: it runs in the child
    between fork and exec, and the setting survives the exec. "Parent" is the *thread*
    that forked, so fork from a thread that lives as long as the parent should (see the
    module docstring).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def become_subreaper(on: bool = True) -> bool:
    """Adopt this process's orphaned descendants (``PR_SET_CHILD_SUBREAPER``), or stop.

    A node forked by the template (:mod:`actorml.zygote`) is orphaned on purpose as it
    starts and becomes the launcher's own child: the launcher waits for it and it dies
    with the launcher, as a node the launcher spawned itself. Returns False where Linux
    refuses.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


@attrs.define(eq=False)
class ChildProcess:
    """A started child process; any number of tasks may :meth:`wait` for it.

    ``popen``: the ``Popen`` that started it, or None for a child this process adopted
    (see :func:`adopt`), which is awaited with ``waitpid``.
    """

    popen: subprocess.Popen[bytes] | None
    _pidfd: int
    _pid: int = 0
    _returncode: int | None = None
    _done: trio.Event = attrs.field(factory=trio.Event)
    _waiting: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen is not None else self._pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen is not None else self._returncode

    async def wait(self) -> int:
        """Wait for the process to exit and return its status (-N: killed by signal N).

        Cancellation is safe: the process is left running and can be waited for again.
        """
        if self._waiting:
            await self._done.wait()
        elif not self._done.is_set():
            self._waiting = True
            try:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._reap()
                os.close(self._pidfd)
                self._done.set()
            finally:
                self._waiting = False
        code = self.returncode
        assert code is not None
        return code

    def _reap(self) -> None:
        if self.popen is not None:
            self.popen.wait()
            return
        try:
            _, status = os.waitpid(self._pid, 0)
            self._returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # not ours to reap after all: it exited, status unknown
            self._returncode = -signal.SIGKILL

    def send_signal(self, sig: int) -> None:
        """Signal the process unless it has already been reaped."""
        if self._done.is_set():
            return
        if self.popen is not None:
            self.popen.send_signal(sig)
        else:
            os.kill(self._pid, sig)

    def kill(self) -> None:
        """SIGKILL the process unless it has already been reaped."""
        self.send_signal(signal.SIGKILL)


def spawn(
    command: Sequence[str], *, env: Mapping[str, str], pass_fds: Sequence[int] = ()
) -> ChildProcess:
    """Start ``command`` in its own session, set to receive SIGTERM when we die.

    Its own session keeps a terminal's Ctrl-C away from it: the launcher decides the
    order in which nodes stop. ``pass_fds``: descriptors it inherits (no other does).
    """
    popen = subprocess.Popen(
        list(command),
        env=dict(env),
        start_new_session=True,
        preexec_fn=die_with_parent,
        pass_fds=tuple(pass_fds),
    )
    return ChildProcess(popen, os.pidfd_open(popen.pid))


def adopt(pid: int) -> ChildProcess:
    """A child this process did not start itself but now parents (a subreaper's)."""
    return ChildProcess(None, os.pidfd_open(pid), pid)
