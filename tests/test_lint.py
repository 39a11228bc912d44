"""The code stays formatted, linted and (the runtime package) type-checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check() -> None:
    """ruff finds nothing to complain about."""
    done = _run(sys.executable, "-m", "ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    """Every file is formatted as ruff formats it."""
    done = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_runtime() -> None:
    """The public runtime package type-checks."""
    done = _run(sys.executable, "-m", "mypy", "actorml")
    assert done.returncode == 0, done.stdout + done.stderr
