"""The README's promises: its Python example runs, its commands are the ones CI runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actorml.cli import main as actorml_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"


def section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next level-2 heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}[ \t]*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match is not None, f"README.md has no '## {title}' section"
    return match.group(1)


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language fenced blocks in ``text``."""
    return re.findall(rf"^```{language}[ \t]*\n(.*?)^```", text, flags=re.M | re.S)


def command_lines(block: str) -> list[str]:
    """The command lines of a shell block (no blank lines, no comments)."""
    lines = [line.strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def live_pids(pids: set[int], marker: str) -> list[int]:
    """Those of ``pids`` still running a command line that mentions ``marker``."""
    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if marker.encode() in cmdline:
            alive.append(pid)
    return alive


@pytest.mark.slow
class TestActorsIn20Lines:
    def test_example_runs_and_leaves_no_process(self, tmp_path, ipc_dir):
        """The example, saved as mymodule.py, prints Add(n=5), exits 0 and stops its node."""
        blocks = fenced(section("Actors in 20 lines"), "python")
        assert len(blocks) == 1, "expected exactly one python block in 'Actors in 20 lines'"
        assert '"mymodule:Counter"' in blocks[0]  # the file name below must match it
        (tmp_path / "mymodule.py").write_text(blocks[0], encoding="utf-8")
        # ipc_dir fails the test if a socket file is left behind.
        env = {**os.environ, "ACTORML_SOCKET_ROOT": ipc_dir}
        try:
            done = subprocess.run(
                [sys.executable, "mymodule.py"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            # Node processes run `actorml node NAME --topology <tmp_path>/runs/...`.
            survivors = subprocess.run(
                ["pgrep", "-f", f"actorml node .*--topology {tmp_path}/"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            for pid in survivors:  # never leak them into the rest of the run
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "Add(n=5)" in done.stdout.splitlines(), output
        assert not survivors, f"node processes left running: {survivors}"
        runs = list((tmp_path / "runs").iterdir())
        assert len(runs) == 1, runs
        # Each node process logs its own pid when ready (logs/<node>.jsonl, JSON lines).
        events = [
            json.loads(line)
            for log in (runs[0] / "logs").glob("*.jsonl")
            for line in log.read_text(encoding="utf-8").splitlines()
        ]
        pids = {e["pid"] for e in events if e.get("event") == "node_ready"}
        assert pids, f"no node_ready event in {runs[0] / 'logs'}"
        assert not live_pids(pids, str(tmp_path)), "a node process outlived the example"


class TestTwoCommands:
    def test_test_command_is_what_ci_runs(self):
        """The README's test command is a line of .ci/run, verbatim."""
        ci_lines = command_lines(CI_RUN.read_text(encoding="utf-8"))
        blocks = fenced(section("Two commands"), "sh")
        commands = [line for block in blocks for line in command_lines(block)]
        tests = [c for c in commands if "pytest" in c]
        assert len(tests) == 1, f"expected one test command, found {tests}"
        assert tests[0] in ci_lines, f"{tests[0]!r} is not a line of .ci/run"

    def test_every_command_is_the_test_or_the_main_job(self, capsys):
        """Each sh line is in .ci/run or installs and runs `actorml up` on a valid example."""
        ci_lines = command_lines(CI_RUN.read_text(encoding="utf-8"))
        blocks = fenced(section("Two commands"), "sh")
        assert len(blocks) == 2
        jobs = []
        for line in (line for block in blocks for line in command_lines(block)):
            if line in ci_lines:
                continue
            steps = [shlex.split(step) for step in line.split("&&")]
            assert steps[0][:3] == ["pip", "install", "-e"], f"{line!r} does not install first"
            assert steps[-1][:2] == ["actorml", "up"] and len(steps[-1]) == 3, line
            jobs.append(steps[-1][2])
        assert len(jobs) == 1, f"expected one main job command, found {jobs}"
        topology = ROOT / jobs[0]
        assert topology.is_file(), f"the main job's topology {jobs[0]} does not exist"
        assert actorml_main(["check", str(topology)]) == 0
        assert capsys.readouterr().out.startswith(f"ok: {topology}:")
