"""What an engine needs to run a topology's nodes on many hosts: Kubernetes, Slurm.

``actorml deploy kubernetes FILE`` writes one pod per node (and one for the launcher)
behind a headless service, so each has a stable DNS name; the topology, rewritten to
name those hosts, in a ConfigMap; each pod's certificates from its own Secret.
``actorml deploy slurm FILE`` writes a batch script that starts ``actorml up`` on the
launcher's host and one ``srun`` task per node on the host the topology names. The
manifests are JSON, which is also YAML: ``kubectl apply -f`` reads it as it is.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import attrs

from .messages import LAUNCHER_NODE
from .topology import Topology

__all__ = [
    "TLS_MOUNT",
    "kubernetes",
    "kubernetes_secrets",
    "kubernetes_text",
    "pod_name",
    "slurm",
]

TLS_MOUNT = "/etc/actorml/tls"  # where a pod finds ca.crt and its own NAME.crt, NAME.key
_CONFIG_MOUNT = "/etc/actorml/config"
DEFAULT_BASE_PORT = 7000


def pod_name(cluster: str, node: str) -> str:
    """A DNS label for node ``node`` of cluster ``cluster`` (a pod's hostname)."""
    label = re.sub(r"[^a-z0-9-]+", "-", f"{cluster}-{node}".lower()).strip("-")
    return label[:63].rstrip("-")


def _tls_topology(topology: Topology, hosts: dict[str, str], launcher: str) -> Topology:
    """``topology`` with every node on its host, over TLS, certificates at ``TLS_MOUNT``."""
    cluster = attrs.evolve(
        topology.cluster,
        transport="tcp",
        host=launcher,
        base_port=topology.cluster.base_port or DEFAULT_BASE_PORT,
        tls_dir=None if topology.cluster.insecure else TLS_MOUNT,
    )
    nodes = tuple(attrs.evolve(n, host=hosts[n.name], address=None) for n in topology.nodes)
    return attrs.evolve(topology, cluster=cluster, nodes=nodes)


def kubernetes(topology: Topology, *, image: str, namespace: str = "default") -> dict[str, Any]:
    """The manifests (a ``v1`` ``List``) that run ``topology`` on Kubernetes.

    One headless Service named after the cluster; one Pod per node and one for the
    launcher, each with that service as its ``subdomain``, so that node ``N`` is
    ``pod_name(cluster, N).SERVICE.NAMESPACE.svc.cluster.local``; a ConfigMap with the
    topology naming those hosts; each pod mounts the Secret ``POD-tls`` (its node's
    ``ca.crt``, ``NAME.crt``, ``NAME.key``) at ``TLS_MOUNT``.
    """
    service = pod_name(topology.cluster.name, "")
    suffix = f"{service}.{namespace}.svc.cluster.local"
    names = [LAUNCHER_NODE, *(n.name for n in topology.nodes)]
    pods = {n: pod_name(service, "launcher" if n == LAUNCHER_NODE else n) for n in names}
    if len(set(pods.values())) != len(pods):
        raise ValueError("node names that differ only in case or punctuation clash as pod names")
    hosts = {n: f"{pods[n]}.{suffix}" for n in names}
    deployed = _tls_topology(topology, hosts, hosts[LAUNCHER_NODE])
    config = f"{service}-topology"
    labels = {"app.kubernetes.io/name": "actorml", "actorml/cluster": service}
    items: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace, "labels": labels},
            "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config, "namespace": namespace, "labels": labels},
            "data": {"topology.toml": deployed.to_toml()},
        },
    ]
    topology_file = f"{_CONFIG_MOUNT}/topology.toml"
    for name in names:
        if name == LAUNCHER_NODE:
            command = ["actorml", "up", topology_file, "--run-dir", "/var/lib/actorml/run"]
            restart = "Never"  # a launcher that dies ends the run: start it again by hand
        else:
            command = ["actorml", "node", name, "--topology", topology_file,
                       "--run-dir", "/var/lib/actorml/run"]  # fmt: skip
            restart = "OnFailure"  # exit 0: the launcher stopped it; otherwise rejoin
        volumes = [{"name": "topology", "configMap": {"name": config}}]
        mounts = [{"name": "topology", "mountPath": _CONFIG_MOUNT, "readOnly": True}]
        if deployed.cluster.tls:
            secret = f"{pods[name]}-tls"
            volumes.append({"name": "tls", "secret": {"secretName": secret, "defaultMode": 0o400}})
            mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pods[name],
                    "namespace": namespace,
                    "labels": {**labels, "actorml/node": pods[name]},
                },
                "spec": {
                    "hostname": pods[name],
                    "subdomain": service,
                    "restartPolicy": restart,
                    "containers": [
                        {
                            "name": "node",
                            "image": image,
                            "command": command,
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def kubernetes_secrets(topology: Topology, tls_dir: str) -> list[str]:
    """The ``kubectl`` commands that make each pod's Secret from an ``actorml certs`` set."""
    service = pod_name(topology.cluster.name, "")
    lines = []
    for name in [LAUNCHER_NODE, *(n.name for n in topology.nodes)]:
        pod = pod_name(service, "launcher" if name == LAUNCHER_NODE else name)
        files = [f"{tls_dir}/ca.crt", f"{tls_dir}/{name}.crt", f"{tls_dir}/{name}.key"]
        sources = " ".join(f"--from-file={shlex.quote(f)}" for f in files)
        lines.append(f"kubectl create secret generic {pod}-tls {sources}")
    return lines


def slurm(topology: Topology, *, topology_path: str) -> str:
    """A batch script that runs ``topology`` in one Slurm allocation.

    The topology's hosts are Slurm node names: the launcher (and the nodes without a
    host of their own) on ``[cluster] host``, each other node on its ``host``. The
    script asks for those hosts, starts ``actorml up`` on the launcher's and one task
    per node elsewhere, and ends when the launcher does.

    Raises:
        ValueError: no node runs on another host (``actorml up`` alone is enough), or
            the cluster's host is an IP address rather than a Slurm node name.
    """
    cluster = topology.cluster
    remote = [n for n in topology.nodes if topology.remote(n.name)]
    if not remote:
        raise ValueError(
            "no node has a host of its own: run `actorml up` in one task (give nodes "
            "host = '<slurm node name>' to spread them)"
        )
    hosts = list(dict.fromkeys([cluster.host, *(str(n.host) for n in remote)]))
    path = shlex.quote(topology_path)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={shlex.quote(cluster.name)}",
        f"#SBATCH --nodelist={','.join(hosts)}",
        f"#SBATCH --nodes={len(hosts)}",
        f"#SBATCH --ntasks={len(remote) + 1}",
        "set -uo pipefail",
        "# The launcher first; the nodes join it, in any order, and exit 0 when it stops",
        "# them. A node that fails is started again (its engine's job) and rejoins.",
        f"srun --nodes=1 --ntasks=1 --exact -w {shlex.quote(cluster.host)} actorml up {path} &",
        "launcher=$!",
    ]
    for node in remote:
        command = (
            f"srun --nodes=1 --ntasks=1 --exact -w {shlex.quote(str(node.host))} "
            f"actorml node {shlex.quote(node.name)} --topology {path}"
        )
        lines.append(f"(until {command}; do sleep 1; done) &  # node {node.name}")
    lines += [
        "wait $launcher",
        "status=$?",
        "kill $(jobs -p) 2>/dev/null  # the launcher is gone: nothing left to join",
        "wait",
        "exit $status",
        "",
    ]
    return "\n".join(lines)


def kubernetes_text(manifests: dict[str, Any]) -> str:
    """The manifests as a file ``kubectl apply -f`` reads (JSON is YAML)."""
    return json.dumps(manifests, indent=2) + "\n"
