"""The package's own imports: no cycles between modules, no arrows back up the layers.

Measured from the source with :mod:`ast`: module-level imports only (imports inside
functions and ``if TYPE_CHECKING:`` blocks are not executed at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "neural_kernels"

#: Lower layers never import these (arrows point one way: the CLI and the report on top).
TOP = {"cli": set(), "report": {"cli"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            out.extend(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                stem = node.module or ""
                root = (f"{base}.{stem}" if stem else base) if node.level else stem
                targets = [f"{root}.{a.name}" for a in node.names] + [root]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith(PACKAGE):
                    edges[name].add(t)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    # A package's __init__ importing its own submodules is how it re-exports them.
    return b.startswith(a + ".")


def test_no_import_cycles() -> None:
    edges = _edges(_modules())
    pruned = {a: {b for b in bs if not _is_package_init_edge(a, b)} for a, bs in edges.items()}
    assert _cycles(pruned) == []


def test_no_arrows_back_up() -> None:
    edges = _edges(_modules())
    bad = []
    for a, bs in edges.items():
        if a == f"{PACKAGE}.__main__":  # the entry point runs the command line
            continue
        sub_a = a.split(".")[1] if "." in a else ""
        for b in bs:
            sub_b = b.split(".")[1] if "." in b else ""
            if sub_b in TOP and sub_a != sub_b and sub_a not in TOP:
                bad.append((a, b))
            if sub_a in TOP and sub_b in TOP[sub_a]:
                bad.append((a, b))
    assert bad == []


def test_the_measurement_sees_imports() -> None:
    edges = _edges(_modules())
    assert "neural_kernels.core.protocol" in edges["neural_kernels.layers.base"]
    assert "neural_kernels.report" in edges["neural_kernels.cli"]
    # a made-up cycle is found
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
