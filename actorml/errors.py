"""Every exception the runtime raises, in one leaf module that imports nothing of actorml.

Whoever raises and whoever catches import this module, never each other (as attrs'
``attr/exceptions.py`` and structlog's ``structlog/exceptions.py`` do).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorGone",
    "AskTimeout",
    "ClusterGaveUp",
    "ClusterStartError",
    "CodecError",
    "CredentialsError",
    "NoSnapshot",
    "NodeUnreachable",
    "NotReady",
    "Refused",
    "RemoteError",
    "SupervisorGaveUp",
    "TopologyError",
    "TransportClosed",
    "UnknownKind",
    "UnknownNode",
]


class ActorGone(Exception):
    """The addressed actor does not exist or was restarted since the address was made."""


class NodeUnreachable(ActorGone):
    """The addressed actor's node is down (it died and has not come back yet)."""


class RemoteError(Exception):
    """A handler raised while answering an ask.

    Attributes:
        error_type: the name of the exception class raised on the remote side.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class Refused(Exception):
    """Raise from a handler to fail the ask (the asker gets RemoteError naming this
    class) without crashing the actor: a request that is wrong, not a broken actor."""


class NotReady(Refused):
    """Raise from a handler while the actor is still getting ready (loading its data).

    The asker gets ``RemoteError("NotReady", ...)``; :meth:`ActorContext.ask_when_up`
    and the roles' own retries wait and ask again: a role that is busy loading is
    not a failure, however long the load takes.
    """


class AskTimeout(TimeoutError):
    """No reply to an ask within its deadline."""


class UnknownNode(LookupError):
    """A message addressed a node this node has no address for."""


class CodecError(ValueError):
    """A frame that cannot be decoded (or a value that cannot be encoded).

    Attributes:
        reason: a short machine-readable cause (``truncated``, ``oversized``,
            ``bad_magic``, ``bad_header``, ``unknown_tag``, ``bad_field``, ``bad_array``,
            ``too_deep``, ``over_budget``, ``bad_frame``, ``unencodable``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CredentialsError(ValueError):
    """A node's TLS files are missing or unreadable (``str(err)`` names the file and the fix)."""


class TransportClosed(Exception):
    """The socket behind an inbox or outbox was closed."""


class SupervisorGaveUp(Exception):
    """A supervisor exceeded its restart intensity, stopped its children and ended.

    The last child error (if the last exit was a crash) is the ``__cause__``.
    """

    def __init__(
        self, supervisor: str, child: str, restarts: int, within_s: float, max_restarts: int
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: {restarts} restarts of {child!r} "
            f"within {within_s}s (max_restarts={max_restarts})"
        )
        self.supervisor = supervisor
        self.child = child
        self.restarts = restarts
        self.within_s = within_s
        self.max_restarts = max_restarts


class ClusterGaveUp(RuntimeError):
    """Node processes kept dying faster than the cluster's restart intensity allows."""


class ClusterStartError(RuntimeError):
    """A node did not come up within ``ready_timeout_s``, or died while starting."""


class NoSnapshot(FileNotFoundError):
    """The run directory holds no complete snapshot to resume from."""


class UnknownKind(LookupError):
    """A kind that is neither registered nor an importable dotted path.

    Attributes:
        group: the registry group, e.g. ``"actor"``.
        kind: the kind that failed to resolve.
        problem: the one-line explanation (also ``str(err)``).
    """

    def __init__(self, group: str, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.group = group
        self.kind = kind
        self.problem = problem

    def __str__(self) -> str:
        return self.problem

    def __reduce__(self) -> tuple[type[UnknownKind], tuple[str, str, str]]:
        return (type(self), (self.group, self.kind, self.problem))


class TopologyError(ValueError):
    """A topology that cannot be used, located as precisely as we can.

    ``str(err)`` is one line: ``"{source}:{line}: {key}: {problem}"``, leaving out the
    parts that are unknown.

    Attributes:
        source: the file path, ``"<string>"``, ``"<dict>"`` or None (built in Python).
        line: 1-based line in ``source``, or None when unknown.
        key: the key path, e.g. ``"node[1].actor[0].kind"``; empty for syntax errors.
        problem: what is wrong and what would be valid.
    """

    def __init__(
        self, key: str, problem: str, *, source: str | None = None, line: int | None = None
    ) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return ": ".join(part for part in (where, self.key, self.problem) if part)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_topology_error, (self.key, self.problem, self.source, self.line))


def _topology_error(key: str, problem: str, source: str | None, line: int | None) -> TopologyError:
    return TopologyError(key, problem, source=source, line=line)
