"""Exception groups from trio nurseries, seen from the outside.

trio wraps every error that leaves a nursery in an ``ExceptionGroup``. Where a nursery
is an implementation detail (an actor's mailbox loop beside its ``run``, a cluster
beside the host's block), callers should see the one exception that happened.
"""

from __future__ import annotations

__all__ = ["sole"]


def sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups, or the group itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
