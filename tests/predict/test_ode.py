"""Gradient descent on any loss by an ODE solver (``neural_kernels.predict.ode``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import neural_kernels as nk

from .._support.predict import F64, raises

P = nk.predict


def test_gradient_descent_mse_loss_equals_closed_form(problem: dict) -> None:
    kdd, ktd, y = problem["kdd"], problem["ktd"], problem["y"]
    fx0 = 0.3 * torch.randn(12, 2, dtype=F64)
    ft0 = 0.3 * torch.randn(6, 2, dtype=F64)
    times = torch.tensor([0.0, 0.5, 3.0, 20.0], dtype=F64)
    closed = P.gradient_descent_mse(kdd, y, learning_rate=0.7)
    want_train = closed(times, get="ntk", fx_train_0=fx0).mean
    want_test = closed(times, k_test_train=ktd, get="ntk", fx_train_0=fx0, fx_test_0=ft0).mean
    for loss in ("mse", lambda f, t: 0.5 * ((f - t) ** 2).mean()):
        ode = P.gradient_descent(loss, kdd, y, learning_rate=0.7)
        train, test = ode(times, k_test_train=ktd, fx_train_0=fx0, fx_test_0=ft0)
        torch.testing.assert_close(train, want_train, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(test, want_test, rtol=1e-7, atol=1e-8)
    # Unsorted times and a scalar time.
    ode = P.gradient_descent("mse", kdd.ntk, y, learning_rate=0.7)
    shuffled = ode(times[[2, 0, 3, 1]], fx_train_0=fx0).train
    torch.testing.assert_close(shuffled, want_train[[2, 0, 3, 1]], rtol=1e-7, atol=1e-8)
    assert ode(3.0).test is None and ode(3.0).train.shape == (12, 2)


def test_gradient_descent_cross_entropy_and_momentum(problem: dict) -> None:
    kdd, ktd = problem["kdd"], problem["ktd"]
    labels = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).to(F64)
    ode = P.gradient_descent("cross_entropy", kdd, labels)
    out = ode(torch.tensor([0.0, 1.0, 10.0, 100.0]), k_test_train=ktd)
    losses = [float(-(labels * torch.log_softmax(f, -1)).sum(-1).mean()) for f in out.train]
    assert losses[0] == pytest.approx(math.log(3))
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    assert out.test.shape == (4, 6, 3) and torch.isfinite(out.test).all()
    # Momentum: the ODE follows discrete heavy-ball steps on the linearised model
    # (time sqrt(lr) * steps), here in function space.
    y = problem["y"]
    lr, mu, steps = 0.02, 0.9, 400
    ntk = kdd.ntk
    f, v = torch.zeros_like(y), torch.zeros_like(y)
    for _ in range(steps):
        v = mu * v - lr * ntk @ (f - y) / y.numel()
        f = f + v
    mom = P.gradient_descent("mse", kdd, y, learning_rate=lr, momentum=mu)
    got = mom(float(steps)).train
    assert float((got - f).norm() / (f - 0).norm()) < 0.05
    loss = [
        float(0.5 * ((g - y) ** 2).mean()) for g in mom(torch.tensor([0.0, 100.0, 800.0])).train
    ]
    assert loss[2] < loss[1] < loss[0]
    raises(nk.HyperparameterError, "momentum", P.gradient_descent, "mse", kdd, y, momentum=1.5)
    raises(nk.HyperparameterError, "infinite", P.gradient_descent("mse", kdd, y), None)
    raises(nk.HyperparameterError, "loss=", P.gradient_descent, "hinge", kdd, y)


def test_solver_failure_is_a_solver_error() -> None:
    # f = 1 + h with dh/dtau = f^2 blows up at tau = 1: the solver cannot reach tau = 10.
    k, y = torch.eye(3, dtype=F64), torch.ones(3, 1, dtype=F64)
    ode = P.gradient_descent(lambda f, t: -(f**3).sum() / 3, k, y)
    msg = raises(P.SolverError, "ODE solver failed", ode, 10.0, fx_train_0=torch.ones_like(y))
    assert "LSODA" in msg
    assert issubclass(nk.SolverError, RuntimeError) and nk.SolverError is P.SolverError
