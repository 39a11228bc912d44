"""Every broken topology or data file is one line naming the file, line, key and fix,
and exit status 2, before any process starts (issue: "only the cluster's own")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from actorml.cli import main

ROOT = Path(__file__).resolve().parent.parent

JOB = """\
[cluster]
name = "bad"
{cluster}
[job]
workers = 2
shards = 1
epochs = 1
{job}
[model]
kind = "{model}"

[data]
source = "{source}"
{data}
"""


def _job(
    cluster: str = "",
    job: str = "",
    model: str = "logreg",
    source: str = "sklearn:breast_cancer",
    data: str = "",
) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        return JOB.format(
            cluster=cluster, job=job, model=model, source=source.format(tmp=tmp), data=data
        )

    return make


def _npz(name: str, **arrays: np.ndarray) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        np.savez(tmp / name, **arrays)  # type: ignore[arg-type]

    return make


def _file(name: str, content: bytes) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return make


_rng = np.random.default_rng(0)
_nan_X = _rng.random((60, 3))
_nan_X[7, 1] = np.nan

# (case, topology, data files to make, expected "key: problem" start of the message)
CASES: list[tuple[str, Callable[[Path], str], Callable[[Path], None] | None, str]] = [
    ("bad host", _job(cluster='transport = "tcp"\nhost = "no such host!"'), None,
     "cluster.host: invalid host 'no such host!'"),
    ("ports overflow", _job(cluster='transport = "tcp"\nbase_port = 65534'), None,
     "cluster.base_port: expected a port from 1 to 65531"),
    ("infinite ask timeout", _job(cluster="ask_timeout_s = inf"), None,
     "cluster.ask_timeout_s: expected a number of seconds above 0 and at most 3600"),
    ("endless heartbeat", _job(cluster="heartbeat_deadline_s = 1e308"), None,
     "cluster.heartbeat_deadline_s: expected a number of seconds above 0 and at most 600"),
    ("huge mailbox", _job(cluster=f"mailbox_size = {2**63 - 1}"), None,
     "cluster.mailbox_size: expected an integer from 1 to 1000000"),
    ("missing model module", _job(model="nosuchmodule:Model"), None,
     "model.kind: cannot import model 'nosuchmodule:Model'"),
    ("test size out of range", _job(data="test_size = 2"), None,
     "data.test_size: cannot load 'sklearn:breast_cancer': test_size must lie in (0, 1)"),
    ("unknown sklearn set", _job(source="sklearn:nope"), None,
     "data.source: cannot load 'sklearn:nope': unknown sklearn dataset 'nope'"),
    ("corrupt npz", _job(source="npz:{tmp}/c.npz"), _file("c.npz", b"PK\x03\x04junk" * 9),
     "data.source: cannot load 'npz:"),
    ("pickled npz", _job(source="npz:{tmp}/p.npz"),
     _npz("p.npz", X=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1])),
     "data.source: cannot load 'npz:"),
    ("npz with the wrong keys", _job(source="npz:{tmp}/k.npz"),
     _npz("k.npz", A=np.ones((4, 2)), b=np.ones(4)), "data.source: cannot load 'npz:"),
    ("garbage libsvm", _job(source="libsvm:{tmp}/g.svm"),
     _file("g.svm", b"this is not libsvm\n\x00\x01"), "data.source: cannot load 'libsvm:"),
    ("empty libsvm", _job(source="libsvm:{tmp}/e.svm"), _file("e.svm", b""),
     "data.source: cannot load 'libsvm:"),
    ("a NaN in the data", _job(source="npz:{tmp}/n.npz"),
     _npz("n.npz", X=_nan_X, y=np.arange(60) % 2), "data.source: cannot load 'npz:"),
    ("a node with no actors",
     lambda tmp: '[cluster]\nname = "x"\n[[node]]\nname = "a"\n', None,
     "node[0].actor: node 'a' runs no actor"),
    ("negative rounds",
     lambda tmp: (
         '[cluster]\nname = "pp"\n[[node]]\nname = "a"\n[[node.actor]]\nname = "ponger"\n'
         'kind = "ponger"\n[[node]]\nname = "b"\n[[node.actor]]\nname = "pinger"\n'
         'kind = "pinger"\nrestart = "transient"\nargs = { rounds = -5 }\n'
     ), None, "node[1].actor[0].args.rounds: 'rounds' must be >= 1"),
]  # fmt: skip
CASES.append(
    (
        "too many workers",
        lambda tmp: _job()(tmp).replace("workers = 2", "workers = 100000"),
        None,
        "job.workers: expected an integer from 1 to 1024",
    )
)


@pytest.mark.parametrize(
    ("case", "topology", "files", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_check_exits_2_with_one_line(
    case: str,
    topology: Callable[[Path], str],
    files: Callable[[Path], None] | None,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`actorml check` on a broken file: status 2, one line 'error: FILE:LINE: KEY: ...'."""
    if files is not None:
        files(tmp_path)
    path = tmp_path / "topology.toml"
    path.write_text(topology(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(path)])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:"), lines[0]
    assert lines[0].split(": ", 2)[2].startswith(expected), lines[0]


@pytest.mark.slow
def test_data_found_bad_only_by_the_scheduler_ends_the_job_at_once(tmp_path: Path) -> None:
    """`actorml up` on data whose flaw only loading shows (a NaN): the scheduler is not
    restarted over and over; the job fails at once with one line and exit status 1."""
    _npz("n.npz", X=_nan_X, y=np.arange(60) % 2)(tmp_path)
    path = tmp_path / "topology.toml"
    path.write_text(_job(cluster=f'run_dir = "{tmp_path}"', source="npz:{tmp}/n.npz")(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "actorml", "up", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    # One line says why (nodes still stopping may log warnings after it).
    failed = [ln for ln in done.stderr.splitlines() if ln.startswith("actorml: job failed")]
    assert len(failed) == 1, done.stderr
    last = failed[0]
    assert re.fullmatch(
        rf"actorml: job failed: cannot load 'npz:{re.escape(str(tmp_path))}/n.npz': "
        r"X_(train|test) holds 1 non-finite values \(NaN or inf\); fill or drop those rows first",
        last,
    ), last
    assert "child_restarted" not in done.stdout + done.stderr


def test_a_run_directory_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`actorml up` with a run_dir it cannot create: status 2, one line naming the fix."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = tmp_path / "topology.toml"
    path.write_text(
        f'[cluster]\nname = "pp"\nrun_dir = "{blocker}/runs"\n[[node]]\nname = "a"\n'
        '[[node.actor]]\nname = "ponger"\nkind = "ponger"\n'
    )
    assert main(["up", str(path)]) == 2
    _out, err = capsys.readouterr()
    assert err == (
        f"error: cannot create the run directory under '{blocker}/runs' (not a directory); "
        "set [cluster] run_dir or --run-dir to a directory you can write\n"
    )
