"""solver="cg": preconditioned conjugate gradients equal the Cholesky solve."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.errors import HyperparameterError, SolverError


def _problem(n: int = 120) -> tuple[nk.Kernel, nk.Kernel, nk.Kernel, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    net = nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    xt = torch.randn(25, 6, generator=g, dtype=torch.float64)
    y = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return net.kernel(x), net.kernel(xt, x), net.kernel(xt), y


def test_cg_equals_cholesky_for_every_posterior() -> None:
    k, ktd, ktt, y = _problem()
    exact = nk.predict.gp_inference(k, y, diag_reg=1e-4)(None, ktd, ktt)
    post = nk.predict.gp_inference(k, y, diag_reg=1e-4, solver="cg", solver_options={"rank": 20})
    approx = post(None, ktd, ktt)
    for name in exact._fields:
        a, b = getattr(exact, name), getattr(approx, name)
        torch.testing.assert_close(b.mean, a.mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.covariance, a.covariance, atol=1e-6, rtol=0)
    assert post.solves and all(s.residual <= 1e-10 for s in post.solves)


def test_preconditioner_cuts_iterations() -> None:
    k, ktd, _, y = _problem()
    counts = {}
    for rank in (0, 60):
        post = nk.predict.gp_inference(
            k, y, diag_reg=1e-3, solver="cg", solver_options={"rank": rank}
        )
        post("ntk", ktd)
        counts[rank] = post.solves[0].iterations
    assert counts[60] < counts[0]


def test_nystrom_preconditioner_equals_cholesky_with_fewer_iterations() -> None:
    # an ill-conditioned kernel: a deep ReLU NTK of 200 points in two dimensions
    g = torch.Generator().manual_seed(4)
    net = nk.Sequential(*[nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU()] * 3, nk.Dense(1))
    x = torch.randn(200, 2, generator=g, dtype=torch.float64)
    xt = torch.randn(20, 2, generator=g, dtype=torch.float64)
    y = torch.randn(200, 2, generator=g, dtype=torch.float64)
    k, ktd = net.kernel(x, get="ntk"), net.kernel(xt, x, get="ntk")
    ntk = k.ntk
    assert float(torch.linalg.cond(ntk + 1e-6 * ntk.diagonal().mean() * torch.eye(200))) > 1e4
    exact = nk.predict.gp_inference(k, y, diag_reg=1e-6)("ntk", ktd)
    counts = {}
    for pre in ("nystrom", None):
        options = {"preconditioner": pre, "rank": 40, "max_iter": 5000}
        post = nk.predict.gp_inference(k, y, diag_reg=1e-6, solver="cg", solver_options=options)
        got = post("ntk", ktd)
        torch.testing.assert_close(got.mean, exact.mean, atol=1e-6, rtol=0)
        counts[pre] = post.solves[0].iterations
        assert post.solves[0].residual <= 1e-10
    assert counts["nystrom"] < counts[None] / 2


def test_gradient_descent_at_infinity_with_cg() -> None:
    k, ktd, _, y = _problem()
    exact = nk.predict.gradient_descent_mse(k, y, diag_reg=1e-4)(float("inf"), k_test_train=ktd)
    cg = nk.predict.gradient_descent_mse(k, y, diag_reg=1e-4, solver="cg")
    got = cg(float("inf"), k_test_train=ktd)
    torch.testing.assert_close(got.ntk.mean, exact.ntk.mean, atol=1e-6, rtol=0)
    with pytest.raises(HyperparameterError, match="t = inf only"):
        cg(1.0, k_test_train=ktd)


def test_cg_refusals() -> None:
    k, ktd, _, y = _problem(40)
    with pytest.raises(HyperparameterError, match="solver='qr'"):
        nk.predict.gp_inference(k, y, solver="qr")
    with pytest.raises(HyperparameterError, match="solver_options key"):
        nk.predict.gp_inference(k, y, solver="cg", solver_options={"iters": 3})
    with pytest.raises(HyperparameterError, match="preconditioner='ilu'"):
        nk.predict.gp_inference(k, y, solver="cg", solver_options={"preconditioner": "ilu"})
    post = nk.predict.gp_inference(
        k, y, diag_reg=1e-6, solver="cg", solver_options={"max_iter": 1, "rank": 0}
    )
    with pytest.raises(SolverError, match="after 1 iterations"):
        post("nngp", ktd)


def test_progress_reports_every_iteration_and_the_final_residual() -> None:
    k, ktd, _, y = _problem(80)
    calls: list[tuple[str, int, float]] = []
    options = {"rank": 10, "progress": lambda *a: calls.append(a)}
    post = nk.predict.gp_inference(k, y, diag_reg=1e-4, solver="cg", solver_options=options)
    post("ntk", ktd)
    (solve,) = post.solves
    assert [c[1] for c in calls] == list(range(solve.iterations + 1))
    assert calls[0][2] == 1.0 and calls[-1][2] == solve.residual <= 1e-10
    assert {c[0] for c in calls} == {solve.kernel}
    with pytest.raises(HyperparameterError, match="progress=3"):
        nk.predict.gp_inference(k, y, solver="cg", solver_options={"progress": 3})
