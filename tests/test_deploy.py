"""``actorml deploy``: the Kubernetes manifests and the Slurm script for a topology."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from actorml.deploy import TLS_MOUNT
from actorml.messages import LAUNCHER_NODE
from actorml.topology import Topology

ROOT = Path(__file__).resolve().parent.parent

JOB = """
[cluster]
name = "Train"
transport = "tcp"
host = "cn01"
base_port = 7000
tls_dir = "certs"

[job]
workers = 3
shards = 2

[data]
source = "sklearn:breast_cancer"

[model]
kind = "logreg"
"""

PLACED = {"shard-0": "cn02", "shard-1": "cn03", "worker-1": "cn02", "worker-2": "cn03"}


def _write(tmp_path: Path, placed: dict[str, str] | None = None) -> Path:
    topology = Topology.from_toml_string(JOB)
    if placed:
        import attrs

        nodes = tuple(
            attrs.evolve(n, host=placed[n.name]) if n.name in placed else n for n in topology.nodes
        )
        topology = attrs.evolve(topology, nodes=nodes)
    path = tmp_path / "train.toml"
    path.write_text(topology.to_toml(), encoding="utf-8")
    return path


def _deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorml", "deploy", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


class TestKubernetes:
    def test_one_pod_per_node_each_named_once(self, tmp_path: Path) -> None:
        """One pod per node and one for the launcher, each node named by exactly one pod's
        command; the topology they share names every pod's DNS name as its host."""
        path = _write(tmp_path)
        out = tmp_path / "train.yaml"
        result = _deploy("kubernetes", str(path), "--out", str(out), "--image", "me/train:1")
        assert result.returncode == 0, result.stderr
        manifests = json.loads(out.read_text())  # JSON is YAML: what kubectl reads
        kinds = [item["kind"] for item in manifests["items"]]
        assert kinds.count("Service") == 1 and kinds.count("ConfigMap") == 1
        pods = [item for item in manifests["items"] if item["kind"] == "Pod"]
        topology = Topology.from_toml_string(
            next(i for i in manifests["items"] if i["kind"] == "ConfigMap")["data"]["topology.toml"]
        )
        nodes = [n.name for n in topology.nodes]
        commands = [pod["spec"]["containers"][0]["command"] for pod in pods]
        named = [c[2] for c in commands if c[1] == "node"]
        assert sorted(named) == sorted(nodes)  # every node exactly once
        assert [c[1] for c in commands].count("up") == 1
        service = next(i for i in manifests["items"] if i["kind"] == "Service")
        assert service["spec"]["clusterIP"] == "None"
        for pod in pods:
            spec = pod["spec"]
            assert spec["subdomain"] == service["metadata"]["name"]
            assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", spec["hostname"])
            assert spec["containers"][0]["image"] == "me/train:1"
            dns = f"{spec['hostname']}.train.default.svc.cluster.local"
            command = spec["containers"][0]["command"]
            if command[1] == "node":
                assert topology.node(command[2]).host == dns
                assert spec["restartPolicy"] == "OnFailure"
            else:
                assert topology.cluster.host == dns
            secret = next(v for v in spec["volumes"] if v["name"] == "tls")["secret"]
            assert secret["secretName"] == f"{spec['hostname']}-tls"
        assert topology.cluster.tls_dir == TLS_MOUNT
        assert all(topology.remote(n) for n in nodes)  # every node joins the launcher pod
        # The secrets each pod needs, one command per pod, naming only its own key.
        secrets = [line for line in result.stdout.splitlines() if "create secret" in line]
        assert len(secrets) == len(pods)
        for line, name in zip(secrets, [LAUNCHER_NODE, *nodes], strict=True):
            keys = [w for w in shlex.split(line) if w.endswith(".key")]
            assert keys == [f"--from-file=DIR/{name}.key"]


class TestSlurm:
    def test_one_task_per_node_on_its_host(self, tmp_path: Path) -> None:
        """The script asks for the topology's hosts and starts each node on another host
        exactly once, on its host, and the launcher once, on the cluster's host."""
        path = _write(tmp_path, PLACED)
        out = tmp_path / "train.sh"
        result = _deploy("slurm", str(path), "--out", str(out))
        assert result.returncode == 0, result.stderr
        script = out.read_text()
        assert subprocess.run(["bash", "-n", str(out)], check=False).returncode == 0
        directives = dict(
            line[len("#SBATCH ") :].split("=", 1)
            for line in script.splitlines()
            if line.startswith("#SBATCH ")
        )
        assert directives["--nodelist"].split(",") == ["cn01", "cn02", "cn03"]
        tasks = [shlex.split(line.split("(until ", 1)[1].split(";")[0]) for line in
                 script.splitlines() if line.startswith("(until srun")]  # fmt: skip
        started = {t[t.index("node") + 1]: t[t.index("-w") + 1] for t in tasks}
        assert len(tasks) == len(started) == len(PLACED)
        assert started == PLACED
        assert int(directives["--ntasks"]) == len(PLACED) + 1
        ups = [line for line in script.splitlines() if " actorml up " in line]
        assert len(ups) == 1 and "-w cn01 " in ups[0]

    def test_nothing_to_spread(self, tmp_path: Path) -> None:
        """A topology with every node on the launcher's host needs no batch script."""
        result = _deploy("slurm", str(_write(tmp_path)), "--out", str(tmp_path / "x.sh"))
        assert result.returncode == 2
        assert result.stderr.startswith("error: no node has a host of its own")


@pytest.mark.parametrize("engine", ["kubernetes", "slurm"])
def test_bad_topology_is_one_line(tmp_path: Path, engine: str) -> None:
    """A topology that does not check stops deploy with status 2 and one line."""
    path = tmp_path / "bad.toml"
    path.write_text('[cluster]\nname = "x"\nbase_prot = 7\n', encoding="utf-8")
    result = _deploy(engine, str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "base_prot" in result.stderr
