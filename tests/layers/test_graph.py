"""``Aggregate``: the reference graph case, properties, finite twins and bad inputs.

The reference ``seq_aggregate_gap_ntk`` (Neural Tangents' dense ``Aggregate``) fixes the
convention ``y_j = sum_i A_ij x_i``, i.e. ``K' = A1^T K A2``: its adjacency matrices are
not symmetric.
"""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support import reference as ref
from .._support.finite import finite_kernels, rel_error
from .._support.properties import assert_kernel_properties

CASE = "seq_aggregate_gap_ntk"


def _case() -> tuple[nk.Sequential, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    case = ref.cases()[CASE]
    data = ref.arrays(CASE)
    x1, x2 = ref.inputs(CASE)
    p1, p2 = torch.from_numpy(data["pattern1"]), torch.from_numpy(data["pattern2"])
    return ref.network(case["layers"], ndim=x1.ndim), x1, x2, p1, p2


def _adjacency(n: int, nodes: int, seed: int) -> torch.Tensor:
    """Random weighted directed adjacency ``(n, nodes, nodes)``, float64."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.rand(n, nodes, nodes, generator=g, dtype=torch.float64) < 0.4
    return edges * torch.rand(n, nodes, nodes, generator=g, dtype=torch.float64) * 1.5


# ----------------------------------------------------------------------------------------
# Reference values
# ----------------------------------------------------------------------------------------


def test_reference_graph_case() -> None:
    net, x1, x2, p1, p2 = _case()
    ref.assert_case(CASE, ref.our_kernels(net, x1, x2, p1, p2))


def test_reference_pins_the_direction_of_edges() -> None:
    """Transposed adjacency (``K' = A1 K A2^T``) does not reproduce the reference."""
    net, x1, x2, p1, p2 = _case()
    data = ref.arrays(CASE)
    wrong = net.kernel(x1, x2, get="nngp", pattern=(p1.mT, p2.mT)).nngp.numpy()
    assert abs(wrong - data["nngp_12"]).max() > 1e-3 * abs(data["nngp_12"]).max()


# ----------------------------------------------------------------------------------------
# Formula and consistency with the finite twin
# ----------------------------------------------------------------------------------------


def test_kernel_is_a1t_k_a2() -> None:
    """After a Dense (a Gaussian layer) the output kernel is ``A1^T (w^2 K0 + b^2) A2``."""
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    a1, a2 = _adjacency(3, 5, 1), _adjacency(2, 5, 2)
    net = nk.Sequential(nk.Dense(7, w_std=1.3, b_std=0.4), nk.Aggregate())
    k = net.kernel(x1, x2, pattern=(a1, a2))
    k0 = torch.einsum("aic,bjc->abij", x1, x2) / 4 * 1.3**2 + 0.4**2
    expected = torch.einsum("aip,abij,bjq->abpq", a1, k0, a2)
    torch.testing.assert_close(k.nngp, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(k.ntk, expected, rtol=1e-12, atol=0)  # T0 = 0
    assert k.nngp.shape == (3, 2, 5, 5)
    c1 = torch.einsum("aic,ajc->aij", x1, x1) / 4 * 1.3**2 + 0.4**2
    c1 = torch.einsum("aip,aij,ajq->apq", a1, c1, a1)
    torch.testing.assert_close(k.cov1, c1, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("shape", "layer", "nodes"),
    [
        ((4, 3), nk.Aggregate(), 4),  # (n, L, C), the default node axis
        ((3, 4, 2), nk.Aggregate(aggregate_axis=(1, 2)), 12),  # a grid, flattened
        ((3, 4, 2), nk.Aggregate(aggregate_axis=2), 4),  # one axis of a grid
        ((3, 4, 2), nk.Aggregate(aggregate_axis=-3), 3),  # negative axis
    ],
)
def test_kernel_equals_kernel_of_aggregated_inputs(
    shape: tuple[int, ...], layer: nk.Aggregate, nodes: int
) -> None:
    """``Aggregate`` then a network = the network on inputs aggregated by the finite twin."""
    g = torch.Generator().manual_seed(5)
    x1 = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    a1, a2 = _adjacency(3, nodes, 1), _adjacency(2, nodes, 2)
    tail = [nk.Dense(6, w_std=1.1, b_std=0.3), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1)]
    net = nk.Sequential(layer, *tail)
    twin = layer.module(shape)
    with nk.graph_pattern(a1):
        y1 = twin(x1)
    with nk.graph_pattern(a2):
        y2 = twin(x2)
    expected = nk.Sequential(*tail).kernel(y1, y2)
    got = net.kernel(x1, x2, pattern=(a1, a2))
    torch.testing.assert_close(got.nngp, expected.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.ntk, expected.ntk, rtol=1e-12, atol=0)


def test_channels_first_after_conv() -> None:
    """With ``channel_axis=1`` the layer aggregates ``(n, C, L)`` like the twin."""
    g = torch.Generator().manual_seed(7)
    x1 = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    a1, a2 = _adjacency(3, 5, 1), _adjacency(2, 5, 2)
    tail = [nk.Conv(4, 3, padding="same"), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1)]
    layer = nk.Aggregate(channel_axis=1)
    twin = layer.module((2, 5))
    with nk.graph_pattern(a1):
        y1 = twin(x1)
    with nk.graph_pattern(a2):
        y2 = twin(x2)
    torch.testing.assert_close(y1, torch.einsum("aci,aij->acj", x1, a1))
    expected = nk.Sequential(*tail).kernel(y1, y2)
    got = nk.Sequential(layer, *tail).kernel(x1, x2, pattern=(a1, a2))
    torch.testing.assert_close(got.nngp, expected.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.ntk, expected.ntk, rtol=1e-12, atol=0)
    # inside a network, after a Conv
    net = nk.Sequential(
        nk.Conv(4, 3, padding="valid"),
        nk.ReLU(),
        nk.Aggregate(channel_axis=1),
        nk.Flatten(),
        nk.Dense(1),
    )
    k = net.kernel(x1, x2, pattern=(_adjacency(3, 3, 4), _adjacency(2, 3, 5)))
    assert k.nngp.shape == (3, 2) and torch.isfinite(k.ntk).all()


def test_twin_output() -> None:
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    a = _adjacency(2, 4, 0)
    twin = nk.Aggregate().module((4, 3))
    with nk.graph_pattern(a) as given:
        assert given is a
        y = twin(x)
    torch.testing.assert_close(y, torch.einsum("bic,bij->bjc", x, a))
    with nk.graph_pattern(a.bool()):  # boolean adjacency works too
        torch.testing.assert_close(twin(x), torch.einsum("bic,bij->bjc", x, (a > 0).double()))
    with nk.graph_pattern(a), nk.graph_pattern(a[:1]):  # the innermost block wins
        assert twin(x[:1]).shape == (1, 4, 3)
    assert "axes=(1,)" in repr(twin)


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------


def test_properties_reference_network() -> None:
    net, x1, x2, p1, p2 = _case()
    assert_kernel_properties(net, x1[:5], x2[:4], pattern=(p1[:5], p2[:4]))


def test_properties_weighted_graph() -> None:
    g = torch.Generator().manual_seed(11)
    x1 = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    x2 = torch.randn(4, 4, 3, generator=g, dtype=torch.float64)
    net = nk.Sequential(
        nk.Dense(8, w_std=1.4, b_std=0.2),
        nk.Aggregate(),
        nk.Erf(),
        nk.Aggregate(aggregate_axis=1),
        nk.Dense(8),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )
    assert_kernel_properties(net, x1, x2, pattern=(_adjacency(5, 4, 1), _adjacency(4, 4, 2)))


def test_patterns_are_sliced_with_the_blocks() -> None:
    """Every example keeps its own adjacency whatever the blocks."""
    net, x1, _, p1, _ = _case()
    full = net.kernel(x1, pattern=p1)
    for block in (1, 3, (2, 5)):
        k = net.kernel(x1, pattern=p1, block_size=block)
        torch.testing.assert_close(k.nngp, full.nngp, rtol=1e-12, atol=0)
    # a permuted batch with permuted adjacency permutes the kernel
    perm = torch.randperm(x1.shape[0])
    k = net.kernel(x1[perm], pattern=p1[perm], block_size=3)
    torch.testing.assert_close(k.nngp, full.nngp[perm][:, perm], rtol=1e-12, atol=0)


def test_gradient_flows_to_inputs_and_adjacency() -> None:
    net, x1, _, p1, _ = _case()
    x = x1[:3].clone().requires_grad_(True)
    a = p1[:3].clone().requires_grad_(True)
    k = net.kernel(x, pattern=a)
    k.ntk.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------
# Monte Carlo: finite twins converge to the closed form
# ----------------------------------------------------------------------------------------


def _mc_net(readout: int) -> nk.Sequential:
    # one hidden layer: the Monte Carlo estimates are unbiased at any width
    return nk.Sequential(
        nk.Dense(64, w_std=1.2, b_std=0.1),
        nk.Aggregate(),
        nk.ReLU(),
        nk.Aggregate(),
        nk.Dense(readout, w_std=0.9, b_std=0.2),
    )


def test_monte_carlo_agrees() -> None:
    data = ref.arrays(CASE)
    x1, x2 = torch.from_numpy(data["x1"])[:4], torch.from_numpy(data["x2"])[:3]
    p1, p2 = torch.from_numpy(data["pattern1"])[:4], torch.from_numpy(data["pattern2"])[:3]
    exact = _mc_net(1).kernel(x1, x2, pattern=(p1, p2))
    exact_sym = _mc_net(1).kernel(x1, pattern=p1)
    assert exact.nngp.shape == (4, 3, 6, 6)
    # NNGP: many readout units, forward passes only; NTK: few readout units (Jacobians)
    mc = finite_kernels(_mc_net(128), x1, x2, p1, p2, width=256, samples=32, ntk=False)
    mc_sym = finite_kernels(_mc_net(128), x1, None, p1, None, width=256, samples=16, ntk=False)
    mc_ntk = finite_kernels(_mc_net(2), x1, x2, p1, p2, width=256, samples=12)
    errors = {
        "nngp": rel_error(mc["nngp"], exact.nngp),
        "nngp_sym": rel_error(mc_sym["nngp"], exact_sym.nngp),
        "ntk": rel_error(mc_ntk["ntk"], exact.ntk),
    }
    # relative Frobenius errors of about 1/sqrt(width * samples) and 1/sqrt(readout * samples)
    assert max(errors.values()) < 0.12, errors
    # unbiased estimates: every entry within a few standard errors (entries of nodes
    # without predecessors are deterministic: a zero standard error, an exact estimate)
    for est, name in ((mc, "nngp"), (mc_ntk, "ntk")):
        value = getattr(exact, name)
        floor = 1e-12 * float(value.abs().max())
        z = (est[name] - value).abs() / (est[name + "_stderr"] + floor)
        # (few samples: standard errors are noisy, deviations follow Student's t)
        assert float(z.max()) < 6.0, f"{name}: largest deviation {float(z.max()):.2f} stderr"


# ----------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------


def test_missing_pattern() -> None:
    net, x1, *_ = _case()
    for call in (
        lambda: net.kernel(x1),
        lambda: net.kernel_diag(x1),
    ):
        with pytest.raises(nk.InputTypeError, match=r"Aggregate.*Pass pattern=\.\.\. to kernel"):
            call()
    twin = net.module(x1.shape[1:])
    with pytest.raises(nk.InputTypeError, match="graph_pattern"):
        twin(x1.float())


def test_pattern_shapes() -> None:
    net, x1, x2, p1, _ = _case()
    with pytest.raises(nk.ShapeError, match=r"Aggregate.*6 nodes.*\(6, 6\)"):
        net.kernel(x1, pattern=p1[:, :5, :5])
    with pytest.raises(nk.ShapeError, match="pattern1"):
        net.kernel(x1, pattern=p1[:5])
    with pytest.raises(nk.ShapeError, match="pattern2"):
        net.kernel(x1, x2, pattern=(p1, p1))
    with pytest.raises(nk.ShapeError, match=r"pattern=\(pattern1, pattern2\)"):
        net.kernel(x1, x2, pattern=p1)
    with pytest.raises(nk.ShapeError, match="square"):
        net.kernel_diag(x1, pattern=p1[:, :, :5])
    twin = nk.Aggregate().module((6, 3))
    with nk.graph_pattern(p1), pytest.raises(nk.ShapeError, match=r"\(2, 6, 6\)"):
        twin(x1[:2])
    with pytest.raises(nk.ShapeError, match="graph_pattern"), nk.graph_pattern(p1[0]):
        pass
    with pytest.raises(nk.NonFiniteError), nk.graph_pattern([[[float("nan")]]]):
        pass


def test_bad_arguments() -> None:
    with pytest.raises(nk.HyperparameterError, match="batch_axis=0"):
        nk.Aggregate(batch_axis=1)
    with pytest.raises(nk.HyperparameterError, match="channel_axis"):
        nk.Aggregate(channel_axis=2)
    with pytest.raises(nk.HyperparameterError, match="aggregate_axis"):
        nk.Aggregate(aggregate_axis="1")  # type: ignore[arg-type]
    with pytest.raises(nk.HyperparameterError, match="aggregate_axis"):
        nk.Aggregate(aggregate_axis=())
    seq = nk.Sequential(nk.Dense(4), nk.Aggregate(aggregate_axis=0))
    with pytest.raises(nk.LayerCompatibilityError, match="not the batch axis"):
        seq.out_shape((6, 3))
    with pytest.raises(nk.LayerCompatibilityError, match="channel axis 2"):
        nk.Sequential(nk.Dense(4), nk.Aggregate(aggregate_axis=-1)).out_shape((6, 3))
    with pytest.raises(nk.HyperparameterError, match="repeats"):
        nk.Sequential(nk.Dense(4), nk.Aggregate(aggregate_axis=(1, -2))).out_shape((6, 3))
    with pytest.raises(nk.ShapeError, match="no node axis"):
        nk.Sequential(nk.Dense(4), nk.Aggregate()).out_shape((3,))
    with pytest.raises(nk.LayerCompatibilityError, match="channel_axis=1"):
        nk.Sequential(nk.Conv(4, 3, padding="same"), nk.Aggregate()).out_shape((2, 6))
    with pytest.raises(nk.LayerCompatibilityError, match="channel_axis=-1"):
        nk.Sequential(nk.Dense(4), nk.Aggregate(channel_axis=1)).out_shape((6, 3))
    for cls in (nk.InputTypeError, nk.ShapeError, nk.HyperparameterError):
        assert issubclass(cls, nk.NeuralKernelsError)
