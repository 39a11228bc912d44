"""The ``actorml`` command: ``up``, ``check``, ``node``, ``certs``, ``deploy``, ``scale``.

Exit statuses of ``actorml up``: 0 success; 1 the job failed (the cluster gave up or
did not start); 2 bad usage, a bad topology file or a missing TLS file (one line on
stderr naming the key); 130 on Ctrl-C, 143 on SIGTERM (after an orderly shutdown).
``actorml node`` exits 3 when its root supervisor gives up (the launcher then decides).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import trio

from . import builtins as _builtins  # noqa: F401 - registers the built-in kinds
from .errors import CredentialsError, TopologyError, UnknownKind
from .groups import sole
from .topology import Topology, check_topology

__all__ = ["command", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actorml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="launch every node of a topology and run the job")
    up.add_argument("topology", type=Path, nargs="?", help="the topology file")
    up.add_argument(
        "--resume", type=Path, metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest snapshot (its topology.toml)",
    )  # fmt: skip
    up.add_argument("--run-dir", type=Path, help="where this run's files go (default: new)")
    up.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    check = sub.add_parser("check", help="validate a topology file")
    check.add_argument("topology", type=Path)
    node = sub.add_parser(
        "node", help="run one node: on another host it joins the launcher (see docs/hosts.md)"
    )
    node.add_argument("name")
    node.add_argument("--topology", type=Path, required=True)
    node.add_argument(
        "--launcher", "--join", dest="launcher", metavar="ADDRESS",
        help="the launcher's address, HOST:PORT or a url (default: [cluster] host and base_port)",
    )  # fmt: skip
    node.add_argument(
        "--listen", metavar="ADDRESS",
        help="listen here, HOST:PORT or a url, instead of the topology's address for the node",
    )  # fmt: skip
    node.add_argument("--run-dir", type=Path, help="where its files go (default: under run_dir)")
    node.add_argument("--socket-dir", type=Path, help="its ipc sockets' directory (launcher's)")
    node.add_argument(
        "--incarnation", type=int, help="given by `actorml up`; without it the node joins"
    )
    node.add_argument("--tls-ca", type=Path, help="the cluster CA's certificate (tcp)")
    node.add_argument("--tls-cert", type=Path, help="this node's certificate (tcp)")
    node.add_argument("--tls-key", type=Path, help="this node's private key (tcp)")
    scale = sub.add_parser("scale", help="grow or shrink the workers of a running job")
    scale.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's directory")
    scale.add_argument("--workers", type=int, required=True, help="how many workers it runs")
    scale.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (300)")
    deploy = sub.add_parser(
        "deploy", help="write what an engine needs to run a topology on many hosts"
    )
    deploy.add_argument("engine", choices=["kubernetes", "slurm"])
    deploy.add_argument("topology", type=Path)
    deploy.add_argument("--out", type=Path, help="the file to write (default: beside FILE)")
    deploy.add_argument("--image", default="actorml:latest", help="kubernetes: the image")
    deploy.add_argument("--namespace", default="default", help="kubernetes: the namespace")
    certs = sub.add_parser(
        "certs", help="make a cluster CA and a certificate and key for every node, for tls_dir"
    )
    certs.add_argument("directory", type=Path, help="where to write them (new or empty; 0700)")
    certs.add_argument("--topology", type=Path, help="certify every node of this topology")
    certs.add_argument("--nodes", help="certify these node names (comma-separated)")
    certs.add_argument(
        "--hosts", default="", help="host names or IP addresses every certificate also names"
    )
    certs.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    return parser


def load(path: Path, *, deep: bool = False) -> Topology:
    """Load and fully check a topology file, or exit with status 2 and one line.

    ``deep`` adds the checks too costly for every start (``actorml check`` reads the
    whole dataset of a training job).
    """
    try:
        topology = Topology.from_toml(path)
        problems = check_topology(topology, deep=deep)
        if problems:
            raise problems[0]
    except (TopologyError, UnknownKind) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"error: cannot read topology file {path}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    return topology


def main(argv: list[str] | None = None) -> int:
    """Run the ``actorml`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        topology = load(args.topology, deep=True)
        actors = sum(len(n.actors) for n in topology.nodes)
        print(f"ok: {args.topology}: {len(topology.nodes)} nodes, {actors} actors")
        return 0
    if args.command == "node":
        _leave(_node(args))
    if args.command == "certs":
        return _certs(args)
    if args.command == "deploy":
        return _deploy(args)
    if args.command == "scale":
        return _scale(args)
    return _up(args)


def command() -> NoReturn:
    """The ``actorml`` command (and ``python -m actorml``): :func:`main`, then leave at
    once: the launcher has nothing left to save once its nodes are down and its files
    written, and tearing down what it imported (numba, scipy) takes up to a second."""
    _leave(main())


def _leave(status: int) -> NoReturn:
    """End a node process now, skipping the interpreter's teardown.

    Tearing down the modules a node has loaded (numba, scipy, scikit-learn) takes a
    second or more, seven processes at once on a small machine, while the launcher
    waits for them to exit. Everything the node must keep is written by now: its log
    lines are flushed one by one and its actors closed their files when they stopped.
    """
    atexit._run_exitfuncs()  # what exit handlers were registered still run
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _certs(args: argparse.Namespace) -> int:
    from .certs import Authority, cluster_hosts, write_set
    from .messages import LAUNCHER_NODE
    from .topology.fields import valid_name

    if args.topology is None and not args.nodes:
        return _fail("actorml certs needs --topology FILE or --nodes a,b,c")
    if args.days < 1:
        return _fail(f"--days must be a positive number of days, got {args.days}")
    names: list[str] = []
    hosts: dict[str, tuple[str, ...]] = {}
    if args.topology is not None:
        topology = load(args.topology)
        names += [n.name for n in topology.nodes]
        hosts = cluster_hosts(topology)
    for name in filter(None, (n.strip() for n in (args.nodes or "").split(","))):
        try:
            valid_name(name)
        except ValueError as exc:
            return _fail(f"--nodes: {exc}")
        names.append(name)
    extra = tuple(h.strip() for h in args.hosts.split(",") if h.strip())
    hosts["*"] = (*hosts.get("*", ()), *extra)
    names = list(dict.fromkeys([LAUNCHER_NODE, *names]))
    try:
        write_set(args.directory, names, authority=Authority.new(days=args.days), hosts=hosts)
    except FileExistsError as exc:
        return _fail(f"{exc} (choose a new or empty directory)")
    except OSError as exc:
        return _fail(f"cannot write to {str(args.directory)!r}: {exc.strerror}")
    print(f"ok: {args.directory}: a CA and certificates for {', '.join(names)}")
    print(f"  set [cluster] tls_dir = {str(args.directory)!r}; give each host only its node's key")
    return 0


def _scale(args: argparse.Namespace) -> int:
    """``actorml scale``: 0 once the launcher scaled the job, 1 if it refused, 2 bad usage
    or no answer (no launcher runs that directory)."""
    from .scaling import scale_request, wait_answer

    if args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    if not (args.run_dir / "topology.toml").is_file():
        return _fail(f"{str(args.run_dir)!r} is not a run directory (no topology.toml in it)")
    answer_path = scale_request(args.run_dir, args.workers)
    answer = trio.run(wait_answer, answer_path, args.timeout)
    if answer is None:
        return _fail(
            f"no answer within {args.timeout:g}s: is `actorml up` running with run "
            f"directory {str(args.run_dir)!r}?"
        )
    if "error" in answer:
        print(f"actorml: cannot scale: {answer['error']}", file=sys.stderr)
        return 1
    print(f"ok: {answer['workers']} workers (added: {', '.join(answer['added']) or 'none'}; "
          f"removed: {', '.join(answer['removed']) or 'none'})")  # fmt: skip
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from . import deploy

    topology = load(args.topology)
    if args.engine == "kubernetes":
        out = args.out or args.topology.with_suffix(".kubernetes.yaml")
        try:
            manifests = deploy.kubernetes(topology, image=args.image, namespace=args.namespace)
        except ValueError as exc:
            return _fail(str(exc))
        text = deploy.kubernetes_text(manifests)
        after = [
            "make each pod's certificates (`actorml certs DIR --topology FILE`), then:",
            *(f"  {line}" for line in deploy.kubernetes_secrets(topology, "DIR")),
            f"  kubectl apply -f {out}",
        ]
    else:
        out = args.out or args.topology.with_suffix(".slurm.sh")
        try:
            text = deploy.slurm(topology, topology_path=str(args.topology.resolve()))
        except ValueError as exc:
            return _fail(str(exc))
        after = [f"  sbatch {out}"]
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {str(out)!r}: {exc.strerror}")
    print(f"ok: {out}: {len(topology.nodes)} nodes for {args.engine}")
    print("\n".join(after))
    return 0


def _node(args: argparse.Namespace) -> int:
    from .errors import RemoteError
    from .hosts import joining_options
    from .nodeproc import run_node_process

    # Started by an engine, it checks its topology as `actorml up` would have.
    joining = args.incarnation is None
    topology = load(args.topology) if joining else Topology.from_toml(args.topology)
    try:
        tls = _node_credentials(args, topology)
        options = joining_options(topology, args.name, args.launcher, args.listen)
    except (CredentialsError, ValueError) as exc:
        return _fail(str(exc))
    except KeyError as exc:
        return _fail(str(exc.args[0]))
    run_dir = args.run_dir or options.run_dir
    socket_dir = args.socket_dir or options.run_dir

    async def serve() -> int:
        status = 0
        async with trio.open_nursery() as nursery:

            async def body() -> None:
                nonlocal status
                status = await run_node_process(
                    topology,
                    args.name,
                    launcher_address=options.launcher,
                    run_dir=run_dir,
                    socket_dir=socket_dir,
                    incarnation=args.incarnation,
                    tls=tls,
                    listen=options.listen,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(body)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    # The launcher is gone or wants us gone: stop at once, sockets close.
                    nursery.cancel_scope.cancel()
                    break
        return status

    try:
        try:
            return trio.run(serve)
        except BaseExceptionGroup as group:
            raise sole(group) from None
    except RemoteError as exc:  # the launcher refused the join
        return _fail(str(exc).removeprefix("Refused: "))
    except trio.TooSlowError:
        return _fail(
            f"no launcher answered at {options.launcher} within "
            f"{topology.cluster.ready_timeout_s:g}s (start `actorml up` there, or pass --launcher)"
        )


def _node_credentials(args: argparse.Namespace, topology: Topology) -> Any:
    """The node's TLS credentials: from the options, else from ``tls_dir``; None off tcp.

    Raises:
        CredentialsError: TLS is on but they are missing or unreadable.
    """
    from .certs import CertificateSet, NodeFiles

    cluster = topology.cluster
    if not cluster.tls:
        return None
    given = (args.tls_ca, args.tls_cert, args.tls_key)
    if all(given):
        return NodeFiles(*given).load(key="--tls-ca/--tls-cert/--tls-key")
    if cluster.tls_dir is not None:
        return CertificateSet(Path(cluster.tls_dir)).files(args.name).load()
    raise CredentialsError(
        f"node {args.name} runs over tls+tcp but has no certificate: pass --tls-ca, "
        "--tls-cert and --tls-key, or set [cluster] tls_dir"
    )


def _up(args: argparse.Namespace) -> int:
    """``actorml up``: the template starts warming first, beside the checks."""
    owned: dict[str, Any] = {"template": _early_template(args)}
    try:
        return _launch(args, owned)
    finally:
        if owned.get("template") is not None:  # the launch ended before it took it
            owned["template"].kill()


def _early_template(args: argparse.Namespace) -> Any:
    """A template for the topology's nodes, started before the topology is checked.

    Checking a training topology imports what the template imports anyway, so the two
    run side by side. Read roughly here: a file that does not parse starts none (the
    check then says why), and what is wrong with it is found by the check.
    """
    import tomllib

    path = args.resume / "topology.toml" if args.resume is not None else args.topology
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("cluster", {}).get("prewarm", True) is not True:
            return None
        from .nodestart import node_environment
        from .topology.core import kinds_in
        from .zygote import Template, warm_spec

        return Template.start(warm_spec(kinds_in(raw), raw), node_environment())
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _launch(args: argparse.Namespace, owned: dict[str, Any]) -> int:
    from .errors import ClusterGaveUp, ClusterStartError
    from .launch import open_cluster
    from .log import configure_logging
    from .scaling import serve_requests

    if args.resume is not None:
        from .errors import NoSnapshot
        from .resume import latest_snapshot

        try:
            snapshot = latest_snapshot(args.resume)
        except NoSnapshot as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        args.topology, args.run_dir = args.resume / "topology.toml", args.resume
        print(f"actorml: resuming from {snapshot}")
    elif args.topology is None:
        print("error: actorml up needs a topology file (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    topology = load(args.topology)
    try:
        from .certs import user_set

        user_set(topology)  # before anything starts: one line, not a failed launch
    except CredentialsError as exc:
        return _fail(str(exc))
    if args.log_level:
        import attrs

        topology = attrs.evolve(
            topology, cluster=attrs.evolve(topology.cluster, log_level=args.log_level)
        )
    outcome: dict[str, Any] = {"status": 1, "signal": None}
    from .launch import new_run_dir

    try:  # before any process starts: a place for the run's files, or one line why not
        run_dir = args.run_dir or new_run_dir(topology)
        (Path(run_dir) / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = args.run_dir or topology.cluster.run_dir
        print(
            f"error: cannot create the run directory under {str(where)!r} "
            f"({(exc.strerror or str(exc)).lower()}); set [cluster] run_dir or --run-dir "
            "to a directory you can write",
            file=sys.stderr,
        )
        return 2

    async def run() -> None:
        configure_logging(
            node="launcher",
            log_file=Path(run_dir) / "logs" / "launcher.jsonl",
            level=topology.cluster.log_level,
            console_level="warning",
        )
        print(f"actorml: run directory {run_dir} (logs in {Path(run_dir) / 'logs'})")
        started = time.perf_counter()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        outcome["signal"] = signum
                        print(f"actorml: {signal.Signals(signum).name}, stopping", flush=True)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(on_signal)
                resume = args.resume is not None
                template = owned.pop("template")
                async with open_cluster(
                    topology, run_dir=Path(run_dir), resume=resume, template=template
                ) as cluster:
                    nursery.start_soon(serve_requests, cluster)  # `actorml scale`
                    names = ", ".join(
                        f"{n} (pid {p.pid})" if p.pid else f"{n} (joined from its host)"
                        for n, p in cluster.procs.items()
                    )
                    print(f"actorml: {len(cluster.procs)} nodes ready: {names}", flush=True)
                    result = await cluster.wait()
                    # Reported as soon as the job completes: stopping the nodes takes
                    # a moment more (the scheduler draws its plot meanwhile).
                    report(result, time.perf_counter() - started)
                nursery.cancel_scope.cancel()
        if outcome["signal"] is not None:
            print(f"actorml: stopped; every node is down (run directory {run_dir})")

    def report(result: dict[str, Any], elapsed: float) -> None:
        result["elapsed_s"] = round(elapsed, 2)
        (Path(run_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        error = result.get("error")
        print("actorml: job failed" if error else "actorml: job complete")
        for key, value in result.items():
            print(f"  {key}: {value}")
        sys.stdout.flush()
        if error:  # the job ran to its end, but what it produced cannot be trusted
            print(f"actorml: job failed: {error}", file=sys.stderr)
        outcome["status"] = 1 if error else 0

    try:
        try:
            trio.run(run)
        except BaseExceptionGroup as group:
            raise sole(group) from None
    except (ClusterGaveUp, ClusterStartError) as exc:
        print(f"actorml: {exc}", file=sys.stderr)
        return 1
    if outcome["signal"] is not None:
        return 128 + int(outcome["signal"])
    return int(outcome["status"])
