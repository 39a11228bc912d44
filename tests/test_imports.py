"""The project's modules import one way: no module reaches itself through its imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package name -> folder (pyproject's package-dir mapping)
PACKAGES = {
    "actorml": "actorml",
    "actorml.actors": "actors",
    "actorml.protocols": "protocols",
    "actorml.models": "models",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts]
            parts = [p for p in parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (lazy, TYPE_CHECKING and relative ones too).

    A module importing its own parent package is left out: Python runs the parent's
    ``__init__`` first anyway, so that edge adds no order of its own.
    """
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                dep = owner(target)
                if dep and dep != name and not name.startswith(dep + "."):
                    deps.add(dep)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class TestImports:
    def test_no_import_circle(self) -> None:
        """No project module imports, directly or through others, a module that imports it."""
        assert circles(import_graph()) == []

    def test_the_walk_sees_a_circle(self) -> None:
        """The circle finder reports a circle made of two modules and of three."""
        assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
        assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]

    def test_the_walk_sees_lazy_imports(self) -> None:
        """An import inside a function counts: actorml.cli imports the launcher lazily."""
        assert "actorml.launch" in import_graph()["actorml.cli"]

    def test_the_runtime_imports_no_role(self) -> None:
        """actorml imports actorml.actors/.protocols/.models only through the registry."""
        graph = import_graph()
        roles = ("actorml.actors", "actorml.protocols", "actorml.models")
        leaks = {
            name: sorted(d for d in deps if d.startswith(roles))
            for name, deps in graph.items()
            if not name.startswith(roles) and any(d.startswith(roles) for d in deps)
        }
        assert leaks == {}
