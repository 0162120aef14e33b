"""The modules of advcorrupt import each other without a cycle.

The graph is read from the source with ``ast``, not by importing: one node per module under
``advcorrupt/`` (a package is its ``__init__.py``), one edge per intra-package import executed when
the module is imported. That is every ``import`` / ``from ... import`` statement at module level,
relative or absolute, including those inside module-level ``if`` / ``try`` / ``with`` blocks and
class bodies, but not those inside functions (deferred until called) or under
``if TYPE_CHECKING:`` (never executed). ``from a.b import c`` is an edge to ``a.b`` and, when ``c``
is a module, to ``a.b.c``; an import of ``a.b.c`` also runs the package ``a.b``. A module's own
ancestor packages are not edges: Python has initialised them before the module runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import advcorrupt

PACKAGE_ROOT = Path(advcorrupt.__file__).parent


def module_files(root: Path, package: str) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file under ``root`` (``__init__.py`` -> the package)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_time_statements(body: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported (not in functions, not TYPE_CHECKING-only)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from import_time_statements(node.body)
            yield from import_time_statements(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from import_time_statements(node.body)
        else:  # try / with / for / while / match: their blocks run at import time
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []) or []:
                    yield from import_time_statements(
                        child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child]
                    )


def _with_parents(name: str, modules: dict[str, Path]) -> set[str]:
    """``name`` and every package above it that is one of ``modules``."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def absolute_base(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from <...> import`` written in ``package`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    return ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the same package that importing it imports directly."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in import_time_statements(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= _with_parents(alias.name, modules)
                continue
            base = absolute_base(node, package)
            targets |= _with_parents(base, modules)
            targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
        own_ancestors = _with_parents(name, modules)
        graph[name] = {t for t in targets if t not in own_ancestors}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(component)}")  # unreachable for a real component


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


# ------------------------------------------------------------------------------------------
# the checker itself
# ------------------------------------------------------------------------------------------
def test_graph_counts_module_level_imports_only(tmp_path: Path) -> None:
    root = _write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "from . import b\nfrom .sub.c import g\n",
        "b.py": "import os\n\ndef later():\n    from . import a\n",
        "sub/__init__.py": "",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\n"
                    "try:\n    from .. import b\nexcept ImportError:\n    pass\n",
    })  # fmt: skip
    graph = import_graph(module_files(root, "pkg"))
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b", "pkg.sub", "pkg.sub.c"},
        "pkg.b": set(),  # the import inside a function is deferred: no edge
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b"},  # TYPE_CHECKING-only: no edge; inside try: an edge
    }
    assert cycles(graph) == []


def test_a_cycle_is_found_and_printed_as_a_path(tmp_path: Path) -> None:
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "layers/__init__.py": "from .insert import insert\n",
        "layers/insert.py": "from ..models import table\n",
        "models/__init__.py": "from .zoo import table\n",
        "models/zoo.py": "from ..layers.insert import insert\n",
        "other.py": "from .layers import insert\n",
    })  # fmt: skip
    found = cycles(import_graph(module_files(root, "pkg")))
    assert found == [["pkg.layers", "pkg.layers.insert", "pkg.models", "pkg.models.zoo", "pkg.layers"]]


# ------------------------------------------------------------------------------------------
# advcorrupt
# ------------------------------------------------------------------------------------------
def test_advcorrupt_modules_import_each_other_without_a_cycle() -> None:
    modules = module_files(PACKAGE_ROOT, "advcorrupt")
    graph = import_graph(modules)
    assert len(modules) > 30 and sum(map(len, graph.values())) > 30  # the walk saw the package
    assert {"advcorrupt.layers", "advcorrupt.layers.insert"} <= graph["advcorrupt.models.sfim_zoo"]
    found = cycles(graph)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_layers_never_import_models_even_inside_functions() -> None:
    """``layers/`` sits under ``models/``: each zoo model declares its SFIM points, layers reads them."""
    files = sorted((PACKAGE_ROOT / "layers").rglob("*.py"))
    assert files
    for path in files:
        package = "advcorrupt.layers"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = absolute_base(node, package)
                imported = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            else:
                continue
            bad = [m for m in imported if m == "advcorrupt.models" or m.startswith("advcorrupt.models.")]
            assert not bad, f"layers/{path.name}:{node.lineno} imports {bad}"
