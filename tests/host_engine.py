"""A plain process manager, as a host's engine would be (systemd's ``Restart=on-failure``).

    python tests/host_engine.py '[["actorml", "node", "a", ...], [...]]'

Starts each command; starts again one that exits with a non-zero status (at most
``RESTARTS`` times each); exits 0 once every command has exited 0, 1 if one failed
too often. SIGTERM is passed on to the commands. It knows nothing of actorml: a node
it starts joins the cluster by itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

RESTARTS = 5


def main(commands: list[list[str]]) -> int:
    running = {i: subprocess.Popen(c) for i, c in enumerate(commands)}
    restarts = dict.fromkeys(running, 0)

    def forward(signum: int, _frame: object) -> None:
        for process in running.values():
            process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    status = 0
    while running:
        for i, process in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            if code == 0 or restarts[i] >= RESTARTS:
                del running[i]
                status = status or (0 if code == 0 else 1)
                continue
            restarts[i] += 1
            print(f"host_engine: {commands[i][:4]} exited {code}, restarting", file=sys.stderr)
            running[i] = subprocess.Popen(commands[i])
        time.sleep(0.1)  # a poll loop, as simple engines are
    return status


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
