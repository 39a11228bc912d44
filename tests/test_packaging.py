"""A real wheel, installed in a fresh virtualenv, is what a user gets.

The repository is installed editable in the interpreter running the tests, so importing
``actorml`` here proves nothing about the wheel. This test builds the wheel offline
(``--no-isolation``: the build backend comes from the running interpreter), installs it
with ``--no-deps --no-index`` into a virtualenv that sees the system site-packages (the
dependencies, nothing downloaded), and checks from outside the repository that the
venv's copy wins, that ``actors/``, ``protocols/`` and ``models/`` install only as
``actorml.*``, and that the console script works.

The build runs on a copy of the source tree: setuptools writes ``build/`` and
``actorml.egg-info/`` next to ``pyproject.toml``, which in the repository would clash
with the editable install's metadata and with any concurrent build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("actors", "protocols", "models")
# Not part of a source tree: what .gitignore keeps out, plus the repository itself.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    "runs",
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".benchmarks",
    ".venv",
)

PROBE = """
import json, sys
import actorml, actorml.actors, actorml.protocols, actorml.models
from actorml import registry
modules = [actorml, actorml.actors, actorml.protocols, actorml.models]
print(json.dumps({
    "prefix": sys.prefix,
    "files": {m.__name__: m.__file__ for m in modules},
    "pinger": sys.modules[registry.resolve("actor", "pinger").__module__].__file__,
}))
"""


OUTER_PTH = "outer-environment.pth"
"""The venv's window onto the test interpreter's packages (see `make_venv`)."""


def clean_env() -> dict[str, str]:
    """The environment without anything that would point Python at the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tail(done: subprocess.CompletedProcess, lines: int = 30) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@pytest.fixture(name="wheel", scope="module")
def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from the repository's source, offline."""
    work = tmp_path_factory.mktemp("wheel")
    try:
        yield build_wheel(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_wheel(work: Path) -> Path:
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    out = work / "dist"
    done = run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source],
        cwd=work,
    )
    assert done.returncode == 0, (
        "python -m build --wheel --no-isolation failed; the [build-system] requirements of "
        f"pyproject.toml must be installed (pip install -e '.[test]'):\n{tail(done)}"
    )
    wheels = list(out.glob("actorml-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(name="venv", scope="module")
def _venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv, seeing the running interpreter's packages, with only the wheel
    installed."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    try:
        yield make_venv(venv, wheel)
    finally:
        shutil.rmtree(venv.parent, ignore_errors=True)


def make_venv(venv: Path, wheel: Path) -> Path:
    """A venv whose own site-packages hold only the wheel, and which sees the packages of
    the interpreter running the tests (its dependencies, and pip).

    Not ``--system-site-packages``: run from inside a virtualenv, that would show the
    *base* interpreter's packages, where a user who installed into the venv has none of
    actorml's dependencies. The running interpreter's site directories are added by a
    ``.pth`` file instead: they come after the venv's own, so the wheel's copy wins, and
    their own ``.pth`` files (an editable install of the repository) are not run.
    """
    done = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    assert done.returncode == 0, tail(done)
    python = venv / "bin" / "python"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (venv / "lib" / version / "site-packages" / OUTER_PTH).write_text("\n".join(outer) + "\n")
    done = run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=venv.parent)
    assert done.returncode == 0, tail(done)
    return venv


class TestWheel:
    def test_wheel_holds_only_the_actorml_package(self, wheel):
        """Every file in the wheel lies under actorml/ or its dist-info: no top-level actors."""
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            top_level = archive.read(
                next(n for n in names if n.endswith(".dist-info/top_level.txt"))
            ).decode()
            entry_points = archive.read(
                next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
            ).decode()
        stray = [n for n in names if not re.match(r"^(actorml/|actorml-[^/]+\.dist-info/)", n)]
        assert not stray, f"files outside actorml/ in the wheel: {stray}"
        for sub in SUBPACKAGES:
            assert f"actorml/{sub}/__init__.py" in names, f"actorml.{sub} is missing"
        assert top_level.split() == ["actorml"]
        assert re.search(r"^actorml = actorml\.cli:command$", entry_points, flags=re.M)

    def test_venv_imports_the_wheel_not_the_repository(self, venv, tmp_path):
        """From outside the repository, the venv imports actorml and its roles from the wheel."""
        done = run([venv / "bin" / "python", "-c", PROBE], cwd=tmp_path)
        assert done.returncode == 0, tail(done)
        probe = json.loads(done.stdout)
        assert Path(probe["prefix"]) == venv
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = site / "site-packages"
        files = {**probe["files"], "actorml.actors.pingpong": probe["pinger"]}
        for module, file in files.items():
            path = Path(file)
            assert path.is_relative_to(site), f"{module} imported from {path}, not the venv"
            assert not path.is_relative_to(ROOT), f"{module} imported from the repository"
        installed = sorted(p.name for p in site.iterdir() if p.name != OUTER_PTH)
        assert len(installed) == 2 and installed[0] == "actorml", installed
        assert re.fullmatch(r"actorml-[^/]+\.dist-info", installed[1]), installed

    def test_console_script_checks_an_example(self, venv, tmp_path):
        """The venv's `actorml` script validates examples/pingpong.toml with status 0."""
        script = venv / "bin" / "actorml"
        assert script.is_file()
        assert str(venv / "bin" / "python") in script.read_text()[:1000]  # the venv's own
        done = run([script, "check", ROOT / "examples" / "pingpong.toml"], cwd=tmp_path)
        assert done.returncode == 0, tail(done)
        assert done.stdout.startswith("ok: "), done.stdout
