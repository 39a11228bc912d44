"""Message vocabularies: one home and one tag prefix each, every tag documented."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from actorml import messages

DOCS = Path(__file__).resolve().parent.parent / "docs" / "messages.md"

# home module -> the tag prefix it owns
HOMES = {
    "actorml.messages": "actorml.",
    "actorml.protocols.contract": "protocol.",
    "actorml.actors.messages": "ps.",
    "actorml.actors.mp_messages": "mp.",
    "actorml.actors.bench": "bench.",
    "actorml.actors.pingpong": "demo.",
    "actorml.actors.pipemessages": "pipe.",
}


@pytest.fixture(name="shipped", scope="module")
def _shipped() -> dict[str, type]:
    """Tag -> class of every message actorml ships (test modules' own left out)."""
    for module in HOMES:
        importlib.import_module(module)
    return {
        tag: cls for tag, cls in messages._BY_TAG.items() if cls.__module__.startswith("actorml.")
    }


class TestVocabularies:
    def test_each_message_lives_in_a_home(self, shipped: dict[str, type]) -> None:
        """Every shipped message class is defined in one of the vocabulary homes."""
        strays = {
            tag: cls.__module__ for tag, cls in shipped.items() if cls.__module__ not in HOMES
        }
        assert strays == {}

    def test_each_home_uses_only_its_prefix(self, shipped: dict[str, type]) -> None:
        """A home's tags all start with its own prefix, and no prefix is shared."""
        wrong = {
            tag: HOMES[cls.__module__]
            for tag, cls in shipped.items()
            if cls.__module__ in HOMES and not tag.startswith(HOMES[cls.__module__])
        }
        assert wrong == {}
        assert len(set(HOMES.values())) == len(HOMES)

    def test_every_tag_is_documented(self, shipped: dict[str, type]) -> None:
        """docs/messages.md lists every shipped tag, and lists no tag the code lacks."""
        listed = set(re.findall(r"^\| `([a-z_.]+)` \| `\w+` \|", DOCS.read_text(), re.M))
        assert sorted(set(shipped) - listed) == []
        assert sorted(listed - set(shipped)) == []

    def test_every_message_says_what_it_is(self, shipped: dict[str, type]) -> None:
        """Every shipped message class has a docstring (the docs table quotes it)."""
        bare = sorted(tag for tag, cls in shipped.items() if not (cls.__doc__ or "").strip())
        assert bare == []
