"""The reference data in ``tests/data/reference`` is complete, well formed and all used.

Every case of ``cases.json`` has its ``.npz`` (and nothing else is there), its manifest
entry, the arrays the conventions promise in float64 with the shapes of the case, and is
compared by at least one test; the README names every case.
"""

from __future__ import annotations

import numpy as np
import pytest

from . import test_reference_fc, test_reference_spatial
from ._support import reference as ref
from .layers import test_graph
from .predict import test_gp

KERNELS = ("nngp_11", "ntk_11", "nngp_12", "ntk_12", "nngp_22", "ntk_22")
DIAGONALS = ("nngp_diag1", "nngp_diag2", "nngp_diag1_persample", "ntk_diag1_persample")


def test_every_case_has_its_file_and_nothing_else_is_there() -> None:
    names = set(ref.cases())
    assert len(names) == len(ref.cases()) == 41
    files = {p.stem for p in ref.REFERENCE_DIR.glob("*.npz") if not p.stem.startswith("nt16_")}
    assert names - files == set(), f"cases without a file: {sorted(names - files)}"
    assert files - names == set(), f"files without a case: {sorted(files - names)}"
    assert set(ref.manifest()) == names


def test_every_layer_reference_is_loaded_by_a_layer_test() -> None:
    """The ``nt16_*.npz`` files pin the later layers; each is read by ``tests/layers``."""
    stems = {p.stem.removeprefix("nt16_") for p in ref.REFERENCE_DIR.glob("nt16_*.npz")}
    assert len(stems) >= 11
    sources = "".join(p.read_text() for p in (ref.REFERENCE_DIR.parents[1] / "layers").glob("*.py"))
    unused = {s for s in stems if f'load("{s}")' not in sources}
    assert unused == set(), f"layer references no test loads: {sorted(unused)}"
    readme = (ref.REFERENCE_DIR / "README.md").read_text()
    assert all(f"nt16_{s}.npz" in readme for s in stems)


def test_a_missing_file_is_an_error_not_a_skip(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(ref, "REFERENCE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="restore it from version control"):
        ref.reference_file("cases.json")
    with pytest.raises(pytest.fail.Exception, match="not a case"):
        ref.arrays("no_such_case")


@pytest.mark.parametrize("name", sorted(ref.cases()))
def test_case_arrays(name: str) -> None:
    case = ref.cases()[name]
    data = ref.arrays(name)
    assert sorted(ref.manifest()[name]["arrays"]) == sorted(k for k in data if k != "case_json")
    n1, n2 = case["input_shape"][0], case["n2"]
    assert data["x1"].shape == tuple(case["input_shape"])
    assert data["x2"].shape == (n2, *case["input_shape"][1:])
    expected = {
        "nngp_11": (n1, n1),
        "ntk_11": (n1, n1),
        "nngp_12": (n1, n2),
        "ntk_12": (n1, n2),
        "nngp_22": (n2, n2),
        "ntk_22": (n2, n2),
        "nngp_diag1": (n1,),
        "nngp_diag2": (n2,),
        "nngp_diag1_persample": (n1,),
        "ntk_diag1_persample": (n1,),
    }
    for key, shape in expected.items():
        assert data[key].dtype == np.float64, f"{name} {key}: {data[key].dtype}"
        assert data[key].shape == shape, f"{name} {key}: {data[key].shape} != {shape}"
    bad = ref.nonfinite(name)
    assert bad <= set(KERNELS + DIAGONALS)
    for key in set(KERNELS + DIAGONALS) - bad:
        assert np.isfinite(data[key]).all(), f"{name} {key} is not finite nor listed so"
    assert ("pattern1" in data) == bool(case.get("pattern"))
    if case.get("predict"):
        assert any(k.startswith("gd_") for k in data) and any(k.startswith("gp_") for k in data)


def test_every_case_is_used_by_a_test() -> None:
    used = set(test_reference_fc.NAMES) | set(test_reference_spatial.NAMES) | {test_graph.CASE}
    assert set(ref.cases()) - used == set(), f"unused cases: {sorted(set(ref.cases()) - used)}"
    predicted = {name for name, case in ref.cases().items() if case.get("predict")}
    assert set(test_gp.PREDICT_CASES) == predicted and len(predicted) == 5


def test_readme_names_every_case() -> None:
    readme = (ref.REFERENCE_DIR / "README.md").read_text()
    missing = [name for name in ref.cases() if f"`{name}`" not in readme]
    assert missing == [], f"README.md does not name {missing}"
    for fact in ("Neural Tangents 0.6.5", "JAX 0.5.3", "float64"):
        assert fact in readme
