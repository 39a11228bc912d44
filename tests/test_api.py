"""The public door: ``actorml.__all__`` against docs/runtime.md, and a light import.

``actorml.models.__all__`` against docs/models.md is checked in tests/test_models.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import actorml

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DOC = ROOT / "docs" / "runtime.md"

# Imported by the roles and models, never by the runtime itself: a user who only wants
# actors must not pay seconds of numba/LLVM start-up for each node process.
HEAVY = ("numba", "llvmlite", "sklearn", "matplotlib", "scipy", "pandas")
ROLE_PACKAGES = ("actorml.actors", "actorml.protocols", "actorml.models")


def documented_names(text: str) -> list[str]:
    """The names under "## Public API", each written as a level-3 heading ``### `name` ``."""
    match = re.search(r"^## Public API[ \t]*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match is not None, "docs/runtime.md has no '## Public API' section"
    return re.findall(r"^### `(\w+)`[ \t]*$", match.group(1), flags=re.M)


class TestPublicApi:
    def test_all_matches_the_documented_api(self):
        """actorml.__all__ names exactly the names docs/runtime.md documents as public."""
        names = documented_names(RUNTIME_DOC.read_text(encoding="utf-8"))
        assert len(names) == len(set(names)), "a name is documented twice"
        undocumented = set(actorml.__all__) - set(names)
        unexported = set(names) - set(actorml.__all__)
        assert not undocumented, f"in actorml.__all__ but not in docs/runtime.md: {undocumented}"
        assert not unexported, f"in docs/runtime.md but not in actorml.__all__: {unexported}"

    def test_all_has_no_duplicates(self):
        """Every public name is listed once in actorml.__all__."""
        assert len(actorml.__all__) == len(set(actorml.__all__))

    def test_every_public_name_exists_and_has_a_docstring(self):
        """Each name in actorml.__all__ is importable from actorml and documented in code."""
        missing = [n for n in actorml.__all__ if not hasattr(actorml, n)]
        assert not missing
        # __doc__ itself, not inspect.getdoc: a class must not live on its base's docstring.
        bare = [n for n in actorml.__all__ if not (getattr(actorml, n).__doc__ or "").strip()]
        assert not bare, f"public names without a docstring: {bare}"

    def test_star_import_gives_exactly_all(self):
        """`from actorml import *` binds the names of __all__ and nothing else."""
        namespace: dict[str, object] = {}
        exec("from actorml import *", namespace)
        namespace.pop("__builtins__")
        assert set(namespace) == set(actorml.__all__)

    def test_documented_names_parser(self):
        """Only level-3 headings inside the Public API section count."""
        text = (
            "# Doc\n### `Outside`\n## Public API\nintro `NotAName`\n"
            "### `Actor`\ntext\n### `handler`\n## Next\n### `After`\n"
        )
        assert documented_names(text) == ["Actor", "handler"]


class TestImportCost:
    def test_runtime_imports_without_heavy_dependencies(self):
        """`import actorml` loads no numba, scikit-learn, matplotlib, nor the role packages."""
        code = "import json, sys\nimport actorml\nprint(json.dumps(sorted(sys.modules)))\n"
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        modules = set(json.loads(done.stdout))
        assert "actorml" in modules  # the probe itself works
        loaded = sorted(
            m
            for m in modules
            for top in (*HEAVY, *ROLE_PACKAGES)
            if m == top or m.startswith(top + ".")
        )
        assert not loaded, f"`import actorml` imported {loaded}"
