"""MkDocs hooks: the guide, the examples and one API page per public module, generated.

Nothing here is written to disk: the pages are built from ``README.md``, ``examples/*.py``
and the package's own files at build time, so they cannot go stale. A module is public
when no part of its dotted name starts with ``_``; each gets ``api/<dotted.name>.md``
holding a mkdocstrings directive. The navigation lists them grouped by package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "neural_kernels"
EXAMPLES = ROOT / "examples"


def public_modules() -> list[str]:
    """Dotted names of the public modules, packages first, sorted."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        elif parts[-1] == "__main__":
            continue
        if any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return sorted(names, key=lambda n: (n.split(".")[:-1], n))


def _api_nav(modules: list[str]) -> list[Any]:
    """``neural_kernels`` and its modules first, then one section per subpackage."""
    groups: dict[str, list[str]] = {}
    for name in modules:
        parts = name.split(".")
        key = parts[1] if len(parts) > 2 or name in _packages(modules) else ""
        groups.setdefault(key, []).append(name)
    nav: list[Any] = [{n: f"api/{n}.md"} for n in groups.pop("", [])]
    for key, names in sorted(groups.items()):
        nav.append({key: [{n: f"api/{n}.md"} for n in names]})
    return nav


def _packages(modules: list[str]) -> set[str]:
    return {m for m in modules if any(o.startswith(m + ".") for o in modules)} - {"neural_kernels"}


def _guide() -> str:
    """The README, with paths made relative to the site's root."""
    text = (ROOT / "README.md").read_text()
    return re.sub(r'src="docs/', 'src="', text)


def _examples() -> str:
    parts = [
        "# Examples\n",
        "Each script runs on its own (`python examples/<name>.py`) and is run by the tests.\n",
    ]
    for path in sorted(EXAMPLES.glob("*.py")):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        summary = doc.split("\n\n")[0].replace("\n", " ")
        parts.append(f"## `{path.name}`\n\n{summary}\n\n```python\n{source.rstrip()}\n```\n")
    return "\n".join(parts)


def on_config(config: Any) -> Any:
    """The navigation: guide, examples, migration guide, then the API by package."""
    config.nav = [
        {"Guide": "index.md"},
        {"Examples": "examples.md"},
        {"Migrating from Neural Tangents": "migrating_from_neural_tangents.md"},
        {"GPyTorch, BoTorch, scikit-learn": "integrations.md"},
        {"API reference": _api_nav(public_modules())},
    ]
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages (nothing is written to ``docs/``)."""
    from mkdocs.structure.files import File  # imported here: the tests read this file bare

    files.append(File.generated(config, "index.md", content=_guide()))
    files.append(File.generated(config, "examples.md", content=_examples()))
    for name in public_modules():
        content = f"# `{name}`\n\n::: {name}\n"
        files.append(File.generated(config, f"api/{name}.md", content=content))
    return files
