"""Child processes that die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A parent that starts a sleeping child with die_with_parent, names it, and exits.
PARENT = """
import subprocess, sys
from actorml.process import die_with_parent
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    stdout=subprocess.DEVNULL,  # so that our reader sees the end of our output
    stderr=subprocess.DEVNULL,
    preexec_fn=die_with_parent,
)
print(child.pid, flush=True)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class TestDieWithParent:
    def test_child_is_terminated_when_its_parent_exits(self) -> None:
        """A process started with die_with_parent gets SIGTERM once its parent is gone."""
        done = subprocess.run(
            [sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=60, check=True
        )
        child = int(done.stdout)
        try:
            deadline = time.monotonic() + 10.0
            while _running(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _running(child), "the child outlived its parent"
        finally:
            if _running(child):
                os.kill(child, signal.SIGKILL)

    def test_sets_the_signal_in_the_calling_process(self) -> None:
        """Called in a child, it arms SIGTERM as the parent-death signal."""
        script = (
            "import ctypes, signal; from actorml.process import die_with_parent;"
            " die_with_parent(); libc = ctypes.CDLL(None); sig = ctypes.c_int();"
            " libc.prctl(2, ctypes.byref(sig), 0, 0, 0); print(sig.value)"  # PR_GET_PDEATHSIG
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
        assert int(done.stdout) == signal.SIGTERM
