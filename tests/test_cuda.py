"""Every public entry point on CUDA tensors: results on the device, equal to the CPU's.

Skipped without a CUDA device. Closed-form kernels (fully connected with closed-form and
quadrature activations, convolutions with pooling, attention, graphs, residual blocks,
normalisation), ``kernel_diag``, Monte Carlo kernels, the finite twin, empirical kernels
by every strategy, predictions (Cholesky and CG) and concurrent calls: float64 on the
device against the same call on the CPU, to 1e-10 (the compiled CPU path steps aside
on the device, so this also checks the eager path there against the compiled one).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest
import torch
from torch import nn

import neural_kernels as nk

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
)

F64 = torch.float64
ROOT2 = math.sqrt(2.0)


def _close(on_device: torch.Tensor, on_cpu: torch.Tensor, rtol: float = 1e-10) -> None:
    assert on_device.device.type == "cuda"
    scale = float(on_cpu.abs().max())
    torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=rtol, atol=rtol * scale)


def _inputs(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=F64)


NETWORKS: dict[str, tuple[Callable[[], nk.Sequential], tuple[int, ...]]] = {
    "fc_closed_form": (
        lambda: nk.Sequential(nk.Dense(64, w_std=ROOT2, b_std=0.1), nk.ReLU(),
                              nk.Dense(64, w_std=1.2), nk.Erf(), nk.Dense(3)),
        (6,),
    ),
    "fc_quadrature": (
        lambda: nk.Sequential(nk.Dense(32, b_std=0.2), nk.GELU(), nk.Dense(32), nk.Softplus(),
                              nk.Dense(2)),
        (5,),
    ),
    "cnn_gap": (
        lambda: nk.Sequential(nk.Conv(8, 3, padding="same", w_std=ROOT2, b_std=0.1), nk.ReLU(),
                              nk.Conv(8, 3, padding="same", w_std=ROOT2), nk.ReLU(),
                              nk.GlobalAvgPool(), nk.Dense(1)),
        (3, 6, 6),
    ),
    "myrtle_like": (
        lambda: nk.Sequential(nk.Conv(8, 3, padding="same", w_std=ROOT2), nk.ReLU(),
                              nk.AvgPool(2, 2), nk.Conv(8, 3, padding="same", w_std=ROOT2),
                              nk.ReLU(), nk.AvgPool(2, 2), nk.Flatten(), nk.Dense(2)),
        (3, 8, 8),
    ),
    "attention": (
        lambda: nk.Sequential(nk.Dense(16, b_std=0.1), nk.GlobalSelfAttention(16, 16, 16, 2),
                              nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1, b_std=0.1)),
        (4, 3),
    ),
    "residual_layernorm": (
        lambda: nk.Sequential(nk.Dense(8), nk.Residual(nk.ReLU(), nk.Dense(8, w_std=1.3,
                              b_std=0.2)), nk.LayerNorm(), nk.Tanh(), nk.Dense(1)),
        (4,),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(NETWORKS))
def test_closed_form_kernels(name: str) -> None:
    make, shape = NETWORKS[name]
    net = make()
    x1, x2 = _inputs(4, shape, 0), _inputs(3, shape, 1)
    cpu = net.kernel(x1, x2)
    gpu = net.kernel(x1.cuda(), x2.cuda())
    for what in ("nngp", "ntk"):
        _close(getattr(gpu, what), getattr(cpu, what))
    sym_cpu, sym_gpu = net.kernel(x1), net.kernel(x1.cuda())
    _close(sym_gpu.ntk, sym_cpu.ntk)
    assert torch.equal(sym_gpu.ntk, sym_gpu.ntk.T)
    _close(net.kernel_diag(x1.cuda()).ntk, net.kernel_diag(x1).ntk)


def test_graph_kernels() -> None:
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(3, 5, 4, generator=g, dtype=F64)
    x2 = torch.randn(2, 5, 4, generator=g, dtype=F64)
    a1 = torch.rand(3, 5, 5, generator=g, dtype=F64) * (torch.rand(3, 5, 5, generator=g) < 0.4)
    a2 = torch.rand(2, 5, 5, generator=g, dtype=F64) * (torch.rand(2, 5, 5, generator=g) < 0.4)
    net = nk.Sequential(nk.Dense(7, w_std=1.3, b_std=0.4), nk.Aggregate(), nk.ReLU(), nk.Dense(2))
    cpu = net.kernel(x1, x2, pattern=(a1, a2))
    gpu = net.kernel(x1.cuda(), x2.cuda(), pattern=(a1.cuda(), a2.cuda()))
    _close(gpu.nngp, cpu.nngp)
    _close(gpu.ntk, cpu.ntk)


def test_float32_on_the_device_is_close_to_float64() -> None:
    make, shape = NETWORKS["cnn_gap"]
    net = make()
    x = _inputs(4, shape, 3)
    exact = net.kernel(x).ntk
    single = net.kernel(x.float().cuda()).ntk
    assert single.dtype == torch.float32 and single.device.type == "cuda"
    torch.testing.assert_close(single.double().cpu(), exact, rtol=1e-4, atol=1e-5)


def test_finite_twin_and_monte_carlo() -> None:
    make, shape = NETWORKS["fc_closed_form"]
    net = make()
    x = _inputs(5, shape, 4)
    module = net.module(shape, width=256, dtype=F64, device="cuda")
    out = module(x.cuda())
    assert out.device.type == "cuda" and out.shape == (5, 3)
    g = torch.Generator(device="cuda").manual_seed(0)
    mc = nk.monte_carlo_kernel(net, x.cuda(), n_samples=256, width=256, generator=g)
    assert mc.nngp.device.type == "cuda"
    exact = net.kernel(x)
    rel = (mc.nngp.cpu() - exact.nngp).abs().max() / exact.nngp.abs().max()
    assert float(rel) < 0.3  # 256 draws: about 0.1 per entry


def _torch_models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))
    cnn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 5 * 5, 2))  # fmt: skip
    return {"mlp": (mlp.to(F64), (6,)), "cnn": (cnn.to(F64), (2, 5, 5))}


@pytest.mark.parametrize("strategy", ["structured", "jacobian", "ntvp", "auto"])
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_empirical_kernels(strategy: str, model_name: str) -> None:
    model, shape = _torch_models()[model_name]
    x1, x2 = _inputs(4, shape, 5), _inputs(3, shape, 6)
    cpu = nk.empirical_ntk(model, x1, x2, strategy=strategy, trace_outputs="full")
    model.cuda()
    gpu = nk.empirical_ntk(model, x1.cuda(), x2.cuda(), strategy=strategy, trace_outputs="full")
    _close(gpu, cpu)
    _close(nk.empirical_nngp(model, x1.cuda()), nk.empirical_nngp(model.cpu(), x1))


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_predictions(solver: str) -> None:
    make, shape = NETWORKS["fc_closed_form"]
    net = make()
    xt, xs = _inputs(12, shape, 7), _inputs(4, shape, 8)
    y = torch.sin(xt[:, :2].sum(1, keepdim=True))
    options = {"rank": 6} if solver == "cg" else None
    results = []
    for device in ("cpu", "cuda"):
        a, b, t = xt.to(device), xs.to(device), y.to(device)
        ktt, kst = net.kernel(a), net.kernel(b, a)
        post = nk.predict.gp_inference(ktt, t, diag_reg=1e-3, solver=solver, solver_options=options)
        gd = nk.predict.gradient_descent_mse(ktt, t, diag_reg=1e-3)
        results.append((post("ntk", kst).mean, gd(2.0, k_test_train=kst, get="ntk").mean))
    (gp_cpu, gd_cpu), (gp_gpu, gd_gpu) = results
    _close(gp_gpu, gp_cpu, rtol=1e-7 if solver == "cg" else 1e-10)
    _close(gd_gpu, gd_cpu)


def test_concurrent_calls_give_identical_results() -> None:
    make, shape = NETWORKS["cnn_gap"]
    net = make()
    x = _inputs(6, shape, 9).cuda()
    model, mshape = _torch_models()["mlp"]
    model.cuda()
    xm = _inputs(5, mshape, 10).cuda()
    want = (net.kernel(x).ntk, nk.empirical_ntk(model, xm))
    got: list[tuple[torch.Tensor, torch.Tensor]] = []
    lock = threading.Lock()

    def work() -> None:
        pair = (net.kernel(x).ntk, nk.empirical_ntk(model, xm))
        torch.cuda.synchronize()
        with lock:
            got.append(pair)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4
    for kernel, emp in got:
        assert torch.equal(kernel, want[0]) and torch.equal(emp, want[1])
