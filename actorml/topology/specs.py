"""The spec classes: a cluster's settings, its nodes, their actors and supervisors.

Frozen attrs classes whose validators check every value when built, in Python or by the
loader (which reports the same failures located in the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ..supervisor import Restart, Strategy
from .fields import (
    MAX_MAILBOX,
    FieldValueError,
    boolean,
    checked,
    choice,
    describe,
    hint,
    host_name,
    instance_of,
    integer,
    items_of,
    nonempty_string,
    number,
    optional_host_name,
    optional_positive_int,
    optional_string,
    seconds,
    to_args,
    to_float,
    to_restart,
    to_strategy,
    to_tuple,
    toml_args,
    valid_address,
    valid_kind,
    valid_name,
)

__all__ = ["CLUSTER_SUPERVISOR", "ActorSpec", "ClusterSpec", "NodeSpec", "SupervisorSpec"]

# Strategy and Restart are the supervisor's own enums: one object model for both.


@attrs.frozen
class SupervisorSpec:
    """How a supervisor restarts its children: OTP strategy and restart intensity."""

    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE,
        converter=to_strategy,
        validator=checked(choice("strategy", list(Strategy))),
    )
    max_restarts: int = attrs.field(default=3, validator=checked(integer(0)))
    within_s: float = attrs.field(
        default=5.0, converter=to_float, validator=checked(number(positive=True))
    )
    shutdown_timeout_s: float = attrs.field(
        default=5.0, converter=to_float, validator=checked(number(positive=False))
    )


CLUSTER_SUPERVISOR = SupervisorSpec(max_restarts=3, within_s=10.0)


@attrs.frozen
class ActorSpec:
    """One actor: its cluster-wide name, its kind, and the arguments for its class."""

    name: str = attrs.field(
        validator=checked(valid_name), metadata=hint("expected an actor name unique in the cluster")
    )
    kind: str = attrs.field(
        validator=checked(valid_kind),
        metadata=hint("expected a registered kind or 'pkg.module:Class'"),
    )
    restart: Restart = attrs.field(
        default=Restart.PERMANENT,
        converter=to_restart,
        validator=checked(choice("restart type", list(Restart))),
    )
    args: Mapping[str, Any] = attrs.field(
        factory=dict, converter=to_args, validator=checked(toml_args), hash=False
    )
    mailbox_size: int | None = attrs.field(default=None, validator=checked(optional_positive_int))
    shutdown_timeout_s: float = attrs.field(
        default=5.0, converter=to_float, validator=checked(number(positive=False))
    )


@attrs.frozen
class NodeSpec:
    """One node (OS process): its actors, started in order under one root supervisor."""

    name: str = attrs.field(
        validator=checked(valid_name), metadata=hint("expected a node name unique in the cluster")
    )
    actors: tuple[ActorSpec, ...] = attrs.field(
        default=(), converter=to_tuple, validator=checked(items_of(ActorSpec))
    )
    supervisor: SupervisorSpec = attrs.field(
        factory=SupervisorSpec, validator=checked(instance_of(SupervisorSpec))
    )
    address: str | None = attrs.field(default=None, validator=checked(valid_address))
    # Where the node runs: unset (or the cluster's own ``host``) means the launcher's
    # host, where ``actorml up`` starts it; any other host runs it under its own engine
    # (``actorml node NAME``) and the launcher waits for it to join.
    host: str | None = attrs.field(default=None, validator=checked(optional_host_name))


@attrs.frozen
class ClusterSpec:
    """Settings shared by every node, and how ``actorml up`` supervises node processes."""

    name: str = attrs.field(
        validator=checked(valid_name), metadata=hint("expected a cluster name, such as 'pingpong'")
    )
    transport: Literal["ipc", "tcp"] = attrs.field(
        default="ipc", validator=checked(choice("transport", ("ipc", "tcp")))
    )
    host: str = attrs.field(default="127.0.0.1", validator=checked(host_name))
    base_port: int = attrs.field(default=0, validator=checked(integer(0, 65535)))
    # tcp: every pipe is mutually authenticated TLS unless ``insecure``; certificates
    # come from ``tls_dir`` (made by ``actorml certs``) or are made for the run.
    insecure: bool = attrs.field(default=False, validator=checked(boolean))
    tls_dir: str | None = attrs.field(default=None, validator=checked(optional_string))
    mailbox_size: int = attrs.field(default=1024, validator=checked(integer(1, MAX_MAILBOX)))
    recv_max_size: int = attrs.field(
        default=256 * 1024 * 1024, validator=checked(integer(1, 2**32 - 1))
    )
    ask_timeout_s: float = attrs.field(
        default=10.0, converter=to_float, validator=checked(seconds(3600))
    )
    ready_timeout_s: float = attrs.field(
        default=60.0, converter=to_float, validator=checked(seconds(3600))
    )
    run_dir: str = attrs.field(default="runs", validator=checked(nonempty_string))
    log_level: str = attrs.field(
        default="info",
        validator=checked(choice("log level", ("debug", "info", "warning", "error"))),
    )
    heartbeat_interval_s: float = attrs.field(
        default=0.5, converter=to_float, validator=checked(seconds(60))
    )
    heartbeat_deadline_s: float = attrs.field(
        default=3.0, converter=to_float, validator=checked(seconds(600))
    )
    supervisor: SupervisorSpec = attrs.field(
        default=CLUSTER_SUPERVISOR, validator=checked(instance_of(SupervisorSpec))
    )
    # Node processes forked from a pre-warmed template (actorml.zygote), or started
    # plainly, each importing everything itself.
    prewarm: bool = attrs.field(default=True, validator=checked(boolean))

    @property
    def tls(self) -> bool:
        """True if every pipe between nodes is mutual TLS (tcp, not ``insecure``)."""
        return self.transport == "tcp" and not self.insecure

    def __attrs_post_init__(self) -> None:
        if self.tls_dir is not None and self.transport != "tcp":
            raise FieldValueError(
                "tls_dir",
                f"certificates are for transport = 'tcp', got transport = {self.transport!r} "
                "(remove tls_dir, or set transport = 'tcp')",
            )
        if self.tls_dir is not None and self.insecure:
            raise FieldValueError(
                "tls_dir",
                "insecure = true turns TLS off, so tls_dir would be ignored (remove one of them)",
            )
        if not self.heartbeat_deadline_s > self.heartbeat_interval_s:
            raise FieldValueError(
                "heartbeat_deadline_s",
                f"expected a number greater than heartbeat_interval_s "
                f"({self.heartbeat_interval_s!r}), got {describe(self.heartbeat_deadline_s)}",
            )
