"""Every public name of an earlier layout still works: the same object, with a warning.

The names below were public in modules that the redesign moved (``layers/base.py`` held
the combinators; ``report/html.py`` wrote the report). They resolve to the objects of
their new home and say where that is in a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib

import pytest

import neural_kernels as nk
from neural_kernels import report

MOVED = {
    ("neural_kernels.layers.base", name): getattr(nk, name)
    for name in (
        "FanInConcat",
        "FanInProduct",
        "FanInSum",
        "FanOut",
        "Identity",
        "Parallel",
        "Residual",
        "Sequential",
    )
}
MOVED["neural_kernels.report.html", "write_report"] = report.write_report


@pytest.mark.parametrize(("module", "name"), sorted(MOVED))
def test_a_moved_name_works_with_a_deprecation_warning(module: str, name: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} is deprecated"):
        obj = getattr(mod, name)
    assert obj is MOVED[module, name]


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    for module in {m for m, _ in MOVED}:
        with pytest.raises(AttributeError, match="no attribute 'Bogus'"):
            getattr(importlib.import_module(module), "Bogus")  # noqa: B009
