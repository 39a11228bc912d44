"""The one registry: a sealed process resolves only what it was configured with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actorml import registry
from actorml.errors import UnknownKind


@pytest.fixture(name="sealed")
def _sealed() -> Iterator[None]:
    registry.seal(["fractions:Fraction"])
    try:
        yield
    finally:
        registry.unseal()


class TestSeal:
    def test_an_unlisted_dotted_path_is_refused_unimported(self, sealed: None) -> None:
        """After seal, a dotted path not given is refused before any import happens."""
        with pytest.raises(
            UnknownKind,
            match=r"^model kind 'decimal:Decimal' is not configured on this node \(only kinds",
        ):
            registry.resolve("model", "decimal:Decimal")

    def test_listed_paths_and_registered_names_still_resolve(self, sealed: None) -> None:
        """The paths given to seal and every registered name keep working."""
        import fractions

        assert registry.resolve("model", "fractions:Fraction") is fractions.Fraction
        assert registry.resolve("protocol", "ssp").__name__ == "SSP"

    def test_unsealed_any_importable_path_resolves(self) -> None:
        """Without seal (a program embedding actorml), dotted paths import as before."""
        import decimal

        assert registry.resolve("model", "decimal:Decimal") is decimal.Decimal
