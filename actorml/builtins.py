"""The kinds actorml ships, registered by name (imported lazily on first use)."""

from __future__ import annotations

from . import registry

_ACTORS = {
    "pinger": "actorml.actors.pingpong:Pinger",
    "ponger": "actorml.actors.pingpong:Ponger",
}


def register_builtins() -> None:
    """Register every built-in kind; safe to call more than once."""
    for name, target in _ACTORS.items():
        registry.register("actor", name, target)


register_builtins()
