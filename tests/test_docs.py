"""The documentation site's generated pages (``docs/hooks.py``, run by ``make docs``).

Every public module gets its API page and a place in the navigation without editing the
docs: a package added under ``src/neural_kernels`` appears on the next build. The build
itself (``mkdocs build --strict``) is ``make docs``; here only the page list is checked, and
without mkdocs installed (the hooks import it only to add the pages).
"""

from __future__ import annotations

import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import neural_kernels as nk

ROOT = Path(__file__).resolve().parents[1]


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_by_import() -> set[str]:
    """Public modules as Python sees them: no part of the dotted name starts with ``_``."""
    names = {"neural_kernels"}
    for info in pkgutil.walk_packages(nk.__path__, "neural_kernels."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    return names


def _leaves(nav: Any) -> list[str]:
    if isinstance(nav, dict):
        return [leaf for value in nav.values() for leaf in _leaves(value)]
    if isinstance(nav, list):
        return [leaf for item in nav for leaf in _leaves(item)]
    return [nav]


def test_every_public_module_has_an_api_page_in_the_navigation() -> None:
    hooks = _hooks()
    modules = hooks.public_modules()
    assert set(modules) == _public_by_import()
    # The packages added after the first site, with no edit of the docs.
    for package in ("abc", "dkm", "theory", "applications", "sklearn", "gpytorch", "core"):
        assert f"neural_kernels.{package}" in modules, package
    assert not [m for m in modules if "._" in m]

    class Config(dict):
        nav: Any = None

    config = hooks.on_config(Config())
    pages = _leaves(config.nav)
    assert sorted(p for p in pages if p.startswith("api/")) == sorted(
        f"api/{m}.md" for m in modules
    )
    assert {"index.md", "examples.md", "migrating_from_neural_tangents.md"} <= set(pages)
    assert (ROOT / "docs" / "migrating_from_neural_tangents.md").is_file()


def test_the_readme_describes_every_package_folder() -> None:
    # The development section has one paragraph a folder; a new package adds its own.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Development") :]
    package = ROOT / "src" / "neural_kernels"
    folders = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    missing = [f for f in folders if f"{f}/`" not in section]
    assert not missing, f"README.md's Development section does not describe {missing}"
