"""An actor kind whose module starts a thread when imported: forking after it is unsafe."""

from __future__ import annotations

import threading

from actorml import Actor

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-at-import", daemon=True).start()


class Idle(Actor):
    """Does nothing; its module's thread is the point."""
