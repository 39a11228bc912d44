"""Fixtures any test may use."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Shared CI machines stall now and then: judge examples by their outcome, not their speed.
# "ci" (the default) draws the same examples on every run, so a red build is never luck
# and a green one is never luck either: inputs that once found a bug are kept as
# @example. Explore with HYPOTHESIS_PROFILE=dev (random, more examples, a database).
settings.register_profile("ci", deadline=None, derandomize=True, database=None)
settings.register_profile("dev", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    # On a failing example hypothesis imports libcst to suggest a patch, and libcst
    # imports the deprecated mypy_extensions.TypedDict: under `filterwarnings = error`
    # that turns an ordinary test failure into a pytest INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


@pytest.fixture(name="ipc_dir")
def _ipc_dir() -> Iterator[str]:
    """A short directory for ipc:// socket files, which must all be gone afterwards.

    Unix socket paths are limited to ~100 bytes, so this lives directly under /tmp.
    """
    path = tempfile.mkdtemp(prefix="am-", dir="/tmp")
    try:
        yield path
        leaked = os.listdir(path)
        assert not leaked, f"ipc socket files left behind: {leaked}"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="socket_root")
def _socket_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Launchers started by the test put their socket directories in a fresh root."""
    root = tempfile.mkdtemp(prefix="amt-", dir="/tmp")
    monkeypatch.setenv("ACTORML_SOCKET_ROOT", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="registry_copy")
def _sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry as it is, in a copy this test may add to."""
    from actorml import registry

    monkeypatch.setattr(
        registry, "_groups", {group: dict(kinds) for group, kinds in registry._groups.items()}
    )
