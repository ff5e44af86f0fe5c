"""Every convolutional and sequence case of ``shared/reference`` to rtol 1e-9.

Inputs there are channels-last; networks that start with ``Conv`` take them transposed
to PyTorch's channels-first layout (``tests/reference.py``). Kernels of spatial cases
end in a readout ``Dense``, so they are ``(n1, n2)`` matrices like the FC ones.
"""

from __future__ import annotations

import pytest
import torch

from . import reference as ref

#: Graph cases need adjacency patterns: tests/layers/test_graph.py checks them.
NAMES = [
    name
    for name in ref.case_names("cnn_") + ref.case_names("seq_")
    if not isinstance(name, str) or "aggregate" not in name
][: None if ref.REFERENCE_DIR.joinpath("cases.json").is_file() else 1]


@pytest.mark.parametrize("name", NAMES)
def test_spatial_reference(name: str) -> None:
    case = ref.cases()[name]
    data = ref.arrays(name)
    x1, x2 = ref.inputs(name)
    net = ref.network(case["layers"], ndim=x1.ndim)
    k11 = net.kernel(x1)
    k12 = net.kernel(x1, x2)
    k22 = net.kernel(x2, None)
    diag1 = net.kernel_diag(x1)
    values = {
        "nngp_11": (k11.nngp, True),
        "ntk_11": (k11.ntk, True),
        "nngp_12": (k12.nngp, False),
        "ntk_12": (k12.ntk, False),
        "nngp_22": (k22.nngp, True),
        "ntk_22": (k22.ntk, True),
        "nngp_diag1": (diag1.nngp, False),
        "ntk_diag1_persample": (diag1.ntk, False),
        "nngp_diag2": (k12.cov2, False),
    }
    for key, (value, square) in values.items():
        assert torch.isfinite(value).all(), f"{name}: our {key} is not finite"
        diag_like = key.startswith(("nngp_diag", "ntk_diag"))
        ref.assert_matches(
            value,
            data[key],
            square=square,
            what=f"{name} {key}",
            rtol_off=ref.RTOL_DIAG if diag_like else ref.RTOL_OFF,
        )
