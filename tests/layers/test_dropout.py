"""``Dropout(p)``: the self-pair formula, layouts, blocks, Monte Carlo and bad inputs.

Training-mode dropout multiplies the covariance of an example with itself at the same
position by ``1/(1-p)`` and leaves every other entry alone (Neural Tangents'
``Dropout(rate=1-p, mode="train")``). ``kernel(x)`` pairs each example with itself on
its diagonal; ``kernel(x, x)`` pairs two independent batches.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

import neural_kernels as nk

from .._support.finite import finite_kernels, rel_error

P = 0.3
F = 1.0 / (1.0 - P)


def _inputs(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]


def _pair(*head: nk.Layer, tail: tuple[nk.Layer, ...] = ()) -> tuple[nk.Sequential, nk.Sequential]:
    """The network with ``Dropout(P)`` and the same with the identity (test mode)."""
    return (
        nk.Sequential(*head, nk.Dropout(P), *tail),
        nk.Sequential(*head, nk.Dropout(P, mode="test"), *tail),
    )


def _self_mask(n1: int, n2: int, trailing: int) -> torch.Tensor:
    return torch.eye(n1, n2, dtype=torch.bool).reshape(n1, n2, *([1] * trailing))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-13, atol=0)


# ----------------------------------------------------------------------------------------
# The formula
# ----------------------------------------------------------------------------------------


def test_fully_connected_formula() -> None:
    x1, x2 = _inputs((5, 4), (3, 4))
    net, base = _pair(nk.Dense(8, w_std=1.3, b_std=0.2), nk.ReLU())
    b11, b12 = base.kernel(x1), base.kernel(x1, x2)
    scale = torch.ones(5, 5, dtype=torch.float64).fill_diagonal_(F)
    k11 = net.kernel(x1)
    for name in ("nngp", "ntk"):
        _close(getattr(k11, name), getattr(b11, name) * scale)
        # two batches are independent examples: nothing on their "diagonal" is scaled
        _close(getattr(net.kernel(x1, x1), name), getattr(base.kernel(x1, x1), name))
        _close(getattr(net.kernel(x1, x2), name), getattr(b12, name))
        _close(getattr(net.kernel_diag(x1), name), getattr(base.kernel_diag(x1), name) * F)
    k12 = net.kernel(x1, x2)
    _close(k12.cov1, b12.cov1 * F)
    _close(k12.cov2, b12.cov2 * F)
    _close(k11.cov1, k11.nngp.diagonal())
    for block in (1, 2, (2, 3), (3, 1)):
        _close(net.kernel(x1, block_size=block).nngp, k11.nngp)
        _close(net.kernel(x1, block_size=block).ntk, k11.ntk)


def test_diagonal_layout_formula() -> None:
    """Sequences after a Dense (no layer needs the full covariance): ``(n1, n2, L)``."""
    x1, x2 = _inputs((4, 5, 3), (2, 5, 3))
    net, base = _pair(nk.Dense(8, w_std=1.2, b_std=0.3), nk.ReLU())
    k, b = net.kernel(x1), base.kernel(x1)
    assert k.nngp.shape == (4, 4, 5) and k.layout == "diagonal"
    mask = _self_mask(4, 4, 1)
    _close(k.nngp, torch.where(mask, b.nngp * F, b.nngp))
    _close(k.ntk, torch.where(mask, b.ntk * F, b.ntk))
    _close(net.kernel(x1, x2).nngp, base.kernel(x1, x2).nngp)
    _close(k.cov1, b.cov1 * F)
    _close(net.kernel(x1, block_size=(3, 2)).nngp, k.nngp)


@pytest.mark.parametrize("shape", [(2, 6), (2, 4, 3)])
def test_full_layout_formula(shape: tuple[int, ...]) -> None:
    """Only same-example *same-position* entries are scaled (``(n1, n2, H, H', W, W')``)."""
    x1, x2 = _inputs((4, *shape), (3, *shape))
    ndim = len(shape) - 1
    # AvgPool with a window of 1 is the identity but needs the full spatial covariance
    net, base = _pair(
        nk.Conv(5, 3, padding="same", w_std=1.2, b_std=0.2),
        nk.ReLU(),
        tail=(nk.AvgPool((1,) * ndim),),
    )
    k, b = net.kernel(x1), base.kernel(x1)
    assert k.layout == "full" and k.nngp.ndim == 2 + 2 * ndim
    pos = torch.ones((), dtype=torch.bool)
    for size in shape[1:]:
        pos = pos[..., None, None] & torch.eye(size, dtype=torch.bool)
    mask = _self_mask(4, 4, 2 * ndim) & pos
    assert int(mask.sum()) == 4 * torch.tensor(shape[1:]).prod()
    _close(k.nngp, torch.where(mask, b.nngp * F, b.nngp))
    _close(k.ntk, torch.where(mask, b.ntk * F, b.ntk))
    _close(k.cov1, torch.where(pos, b.cov1 * F, b.cov1))
    _close(net.kernel(x1, x2).nngp, base.kernel(x1, x2).nngp)
    _close(net.kernel_diag(x1).nngp, torch.where(pos, b.cov1 * F, b.cov1))
    for block in (1, (3, 2)):
        _close(net.kernel(x1, block_size=block).nngp, k.nngp)


def test_p_zero_and_test_mode_are_the_identity() -> None:
    (x,) = _inputs((4, 3))
    head = (nk.Dense(6, b_std=0.1), nk.ReLU())
    ref = nk.Sequential(*head, nk.Dense(1)).kernel(x)
    for layer in (nk.Dropout(0.0), nk.Dropout(0.9, mode="test")):
        _close(nk.Sequential(*head, layer, nk.Dense(1)).kernel(x).ntk, ref.ntk)


def test_properties_deep_network() -> None:
    """Symmetric, PSD, kernel_diag = diagonal, blocks, float32; x2=x1 only off the diagonal."""
    x1, x2 = _inputs((6, 4), (3, 4))
    net = nk.Sequential(
        nk.Dense(8, w_std=1.4, b_std=0.1),
        nk.ReLU(),
        nk.Dropout(0.2),
        nk.Dense(8, w_std=1.2, b_std=0.1),
        nk.Erf(),
        nk.Dropout(0.5),
        nk.Dense(1),
    )
    k11, kxx, k12 = net.kernel(x1), net.kernel(x1, x1), net.kernel(x1, x2)
    diag = net.kernel_diag(x1)
    off = ~torch.eye(6, dtype=torch.bool)
    for name in ("nngp", "ntk"):
        a = getattr(k11, name)
        assert torch.equal(a, a.T)
        eig = torch.linalg.eigvalsh(a)
        assert float(eig.min()) > -1e-12 * float(eig.max())
        torch.testing.assert_close(getattr(diag, name), a.diagonal(), rtol=1e-12, atol=0)
        torch.testing.assert_close(getattr(kxx, name)[off], a[off], rtol=1e-12, atol=0)
        assert (getattr(kxx, name).diagonal() < a.diagonal()).all()
        for block in (1, (2, 4)):
            blocked = getattr(net.kernel(x1, block_size=block), name)
            torch.testing.assert_close(blocked, a, rtol=1e-12, atol=0)
        single = getattr(net.kernel(x1.float(), x2.float()), name)
        torch.testing.assert_close(single.double(), getattr(k12, name), rtol=1e-4, atol=1e-5)
    _close(k12.cov2, net.kernel(x2).nngp.diagonal())


def test_gradients() -> None:
    (x,) = _inputs((4, 3))
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(nk.Dense(8, w_std=w), nk.ReLU(), nk.Dropout(P), nk.Dense(1))
    k = net.kernel(x)
    k.ntk.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad)
    with torch.no_grad():  # the autograd path (no symmetry) gives the same kernel
        _close(net.kernel(x).nngp, k.nngp.detach())


# ----------------------------------------------------------------------------------------
# Finite twin and Monte Carlo
# ----------------------------------------------------------------------------------------


def test_twin_is_torch_dropout() -> None:
    head = (nk.Dense(16), nk.ReLU())
    twin = nk.Sequential(*head, nk.Dropout(P)).module((4,))[-1]
    assert isinstance(twin, nn.Dropout) and twin.p == P
    twin = nk.Sequential(*head, nk.Dropout(P, mode="test")).module((4,))[-1]
    assert isinstance(twin, nn.Identity)
    model = nk.Sequential(nk.Dense(16), nk.ReLU(), nk.Dropout(0.5), nk.Dense(1)).module((3,))
    x = torch.randn(8, 3)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    layer = nk.Dropout(0.25)
    assert pickle.loads(pickle.dumps(layer)) == layer and "p=0.25" in repr(layer)


def _mc_net(readout: int) -> nk.Sequential:
    # one hidden layer: the Monte Carlo estimates are unbiased at any width
    return nk.Sequential(
        nk.Dense(64, w_std=1.3, b_std=0.2),
        nk.ReLU(),
        nk.Dropout(P),
        nk.Dense(readout, w_std=0.9, b_std=0.1),
    )


def _z(est: torch.Tensor, stderr: torch.Tensor, exact: torch.Tensor) -> float:
    return float(((est - exact).abs() / stderr).max())


def test_monte_carlo_fully_connected() -> None:
    """Twins with ``nn.Dropout`` in training mode: x2=None shares masks, x2=x1 does not."""
    x1, x2 = _inputs((5, 4), (3, 4), seed=1)
    exact = {
        "11": _mc_net(1).kernel(x1),
        "xx": _mc_net(1).kernel(x1, x1),
        "12": _mc_net(1).kernel(x1, x2),
    }
    torch.manual_seed(0)  # dropout masks
    gen = torch.Generator().manual_seed(0)
    args = {"11": (x1, None), "xx": (x1, x1), "12": (x1, x2)}
    for key, (a, b) in args.items():
        mc = nk.monte_carlo_kernel(
            _mc_net(256), a, b, n_samples=24, width=256, get="nngp", generator=gen
        )
        err = rel_error(mc.nngp, exact[key].nngp)
        assert err < 0.1, (key, err)
        assert _z(mc.nngp, mc.nngp_stderr, exact[key].nngp) < 6.0, key
        if key != "12":  # the diagonals of "11" and "xx" are 1/(1-p) = 1.43 apart
            ratio = mc.nngp.diagonal() / exact[key].nngp.diagonal()
            assert float((ratio - 1).abs().max()) < 0.2, (key, ratio)
    for key in ("11", "xx"):
        a, b = args[key]
        mc = nk.monte_carlo_kernel(_mc_net(4), a, b, n_samples=12, width=256, generator=gen)
        err = rel_error(mc.ntk, exact[key].ntk)
        assert err < 0.1, (key, err)
        # few samples: standard errors are noisy, deviations follow Student's t
        assert _z(mc.ntk, mc.ntk_stderr, exact[key].ntk) < 6.0, key


def test_monte_carlo_positions() -> None:
    """Per-node kernels on sequences: cross-position entries are not scaled."""
    (x,) = _inputs((3, 5, 3), seed=2)
    g = torch.Generator().manual_seed(3)
    a = (torch.rand(3, 5, 5, generator=g) < 0.5).double()

    def net(readout: int) -> nk.Sequential:
        return nk.Sequential(
            nk.Dense(64, w_std=1.3, b_std=0.2),
            nk.ReLU(),
            nk.Dropout(0.5),
            nk.Aggregate(),
            nk.Dense(readout, w_std=0.9, b_std=0.1),
        )

    exact = net(1).kernel(x, pattern=a).nngp  # (3, 3, 5, 5), full layout
    mc = finite_kernels(net(128), x, None, a, None, width=256, samples=24, ntk=False)
    assert rel_error(mc["nngp"], exact) < 0.1
    assert _z(mc["nngp"], mc["nngp_stderr"] + 1e-12, exact) < 6.0


# ----------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), True, "0.5", None])
def test_bad_p(p: object) -> None:
    with pytest.raises(nk.HyperparameterError, match=r"Dropout.*0 <= p < 1"):
        nk.Dropout(p)  # type: ignore[arg-type]


def test_bad_mode_and_placement() -> None:
    with pytest.raises(nk.HyperparameterError, match="mode='train' or mode='test'"):
        nk.Dropout(0.5, mode="eval")
    with pytest.raises(nk.LayerCompatibilityError, match="raw inputs"):
        nk.Sequential(nk.Dropout(0.5), nk.Dense(1)).out_shape((3,))
    nk.Sequential(nk.Dropout(0.5, mode="test"), nk.Dense(1)).out_shape((3,))
    # the output of dropout is not Gaussian: an activation needs a Dense in between
    with pytest.raises(nk.LayerCompatibilityError, match="not Gaussian"):
        nk.Sequential(nk.Dense(4), nk.Dropout(0.5), nk.ReLU()).out_shape((3,))
