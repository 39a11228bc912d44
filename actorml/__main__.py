"""``python -m actorml``: the same as the ``actorml`` command."""

from .cli import command

command()
