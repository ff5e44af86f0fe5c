"""Every convolutional and sequence case of ``tests/data/reference`` to rtol 1e-9.

Inputs there are channels-last; networks that start with ``Conv`` take them transposed
to PyTorch's channels-first layout (``tests/reference.py``). Kernels of spatial cases
end in a readout ``Dense``, so they are ``(n1, n2)`` matrices like the FC ones.
"""

from __future__ import annotations

import pytest

from ._support import reference as ref

#: Graph cases need adjacency patterns: tests/layers/test_graph.py checks them.
NAMES = [
    name for name in ref.case_names("cnn_") + ref.case_names("seq_") if "aggregate" not in name
]


@pytest.mark.parametrize("name", NAMES)
def test_spatial_reference(name: str) -> None:
    case = ref.cases()[name]
    x1, x2 = ref.inputs(name)
    net = ref.network(case["layers"], ndim=x1.ndim)
    ref.assert_case(name, ref.our_kernels(net, x1, x2))
