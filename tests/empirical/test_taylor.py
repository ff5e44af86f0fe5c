"""Linearisation and Taylor expansion of a model (``neural_kernels.empirical.taylor``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neural_kernels as nk

from .._support.empirical import F64, rel_err


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1)).double()


def test_linearized_training_matches_closed_form_kernel_prediction():
    model = _mlp()
    gen = torch.Generator().manual_seed(1)
    x, x_test = (
        torch.randn(8, 3, generator=gen, dtype=F64),
        torch.randn(4, 3, generator=gen, dtype=F64),
    )
    y = torch.randn(8, 1, generator=gen, dtype=F64)
    f_lin = nk.linearize(model)
    k_dd = nk.empirical_ntk(model, x)
    k_td = nk.empirical_ntk(model, x_test, x)
    with torch.no_grad():
        f0, f0_test = model(x), model(x_test)
    n = y.numel()
    lam_max = float(torch.linalg.eigvalsh(k_dd)[-1])
    lr, steps = 1e-2 * n / lam_max, 100  # t * lr * lam_max / N = 1
    opt = torch.optim.SGD(f_lin.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((f_lin(x) - y) ** 2).mean()).backward()  # 1/(2N) sum (f - y)^2
        opt.step()
    with torch.no_grad():
        train, test = f_lin(x), f_lin(x_test)
    # exactly the discrete kernel dynamics f <- f - lr/N K (f - y)
    lam, v = torch.linalg.eigh(k_dd)
    decay = v @ torch.diag((1 - lr * lam / n) ** steps) @ v.T
    assert rel_err(train, y + decay @ (f0 - y)) < 1e-9
    gain = v @ torch.diag((1 - (1 - lr * lam / n) ** steps) / lam) @ v.T
    assert rel_err(test, f0_test + k_td @ gain @ (y - f0)) < 1e-9
    # and the closed-form gradient flow at t = steps (time tau = lr * t) up to discretisation
    predict_fn = nk.predict.gradient_descent_mse(k_dd, y, learning_rate=lr)
    pred = predict_fn(t=steps, k_test_train=k_td, fx_train_0=f0, fx_test_0=f0_test)
    assert (
        rel_err(test, pred.mean) < 1e-2
        and rel_err(train, predict_fn(t=steps, fx_train_0=f0).mean) < 1e-2
    )
    slow = lr / 4  # the gap shrinks with the step size (first order in lr)
    f_lin2 = nk.linearize(model)
    opt = torch.optim.SGD(f_lin2.parameters(), lr=slow)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((f_lin2(x) - y) ** 2).mean()).backward()
        opt.step()
    predict_slow = nk.predict.gradient_descent_mse(k_dd, y, learning_rate=slow)
    pred2 = predict_slow(t=steps, k_test_train=k_td, fx_train_0=f0, fx_test_0=f0_test)
    with torch.no_grad():
        ratio = rel_err(f_lin2(x_test), pred2.mean) / rel_err(test, pred.mean)
    assert 0.15 < ratio < 0.35


def test_linearize_equals_taylor_order_one_and_model_at_init():
    model = _mlp()
    x = torch.randn(5, 3, dtype=F64)
    lin, tay = nk.linearize(model), nk.taylor_expand(model, 1)
    with torch.no_grad():
        assert torch.allclose(lin(x), model(x), rtol=1e-14, atol=1e-14)
        for a, b in zip(lin.parameters(), tay.parameters(), strict=True):
            delta = 0.1 * torch.randn_like(a)
            a.add_(delta)
            b.add_(delta)
    assert torch.allclose(lin(x), tay(x), rtol=1e-13, atol=1e-14)
    ga = torch.autograd.grad(lin(x).sum(), list(lin.parameters()))
    gb = torch.autograd.grad(tay(x).sum(), list(tay.parameters()))
    for a, b in zip(ga, gb, strict=True):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-14)
    # the gradient of the linearisation is the Jacobian at theta_0, whatever theta
    j0 = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    for a, b in zip(ga, j0, strict=True):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-14)
    assert "order=1" in repr(lin)


def test_taylor_expansion_is_exact_at_the_degree_of_the_model():
    torch.manual_seed(0)
    deep_linear = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    x = torch.randn(5, 3, dtype=F64)
    exp0, exp1, exp2, exp3 = (nk.taylor_expand(deep_linear, m) for m in range(4))
    with torch.no_grad():
        for e in (exp0, exp1, exp2, exp3):
            e.model[0].weight.add_(0.3)
            e.model[1].weight.sub_(0.2)
        target = exp2.model(x)  # the model itself at the new parameters
        at_init = deep_linear(x)
    with torch.no_grad():
        assert torch.allclose(exp0(x), at_init, rtol=1e-13)  # order 0: the constant f(theta_0)
        assert not torch.allclose(exp1(x), target, rtol=1e-6)  # bilinear: order 1 misses a term
        assert torch.allclose(exp2(x), target, rtol=1e-12, atol=1e-13)  # order 2 is exact
        assert torch.allclose(exp3(x), target, rtol=1e-12, atol=1e-13)


def test_expansion_keeps_the_inner_mode_and_refuses_training_batch_norm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    with pytest.raises(nk.ModelError, match=r"eval\(\)"):
        nk.linearize(model)
    lin = nk.linearize(model.eval())
    lin.train()
    assert lin.training and not lin.model.training
