"""applications.bayesopt: the problems, the surrogate kernels and the BoTorch loop."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("botorch", reason="needs the botorch extra")

from botorch.models.kernels import InfiniteWidthBNNKernel

from neural_kernels.applications import bayesopt as bo
from neural_kernels.errors import HyperparameterError


def test_problems_at_their_known_optima() -> None:
    # Branin's minimiser (pi, 2.275) on [-5, 10] x [0, 15], value 0.397887 (negated here)
    branin = bo.make_problem("branin")
    x = torch.tensor([[(math.pi + 5) / 15, 2.275 / 15]], dtype=torch.float64)
    assert branin.dim == 2
    assert branin.f(x).shape == (1, 1)
    assert branin.f(x).item() == pytest.approx(-0.397887, abs=1e-5)
    # Hartmann-6's minimiser on [0, 1]^6, value -3.32237 (negated here)
    hartmann = bo.make_problem("hartmann6")
    x6 = torch.tensor([[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]])
    assert hartmann.f(x6.double()).item() == pytest.approx(3.32237, abs=1e-4)
    assert hartmann.optimum == pytest.approx(3.32237, abs=1e-4)
    # Ackley's maximum (negated) is 0 at the centre of [-32.768, 32.768]^10
    ackley = bo.make_problem("ackley10")
    assert ackley.f(torch.full((1, 10), 0.5, dtype=torch.float64)).abs().item() < 1e-9
    assert {n: bo.make_problem(n).dim for n in bo.PROBLEMS} == bo.PROBLEMS


def test_mlp200_is_a_fixed_random_function_of_its_seed() -> None:
    x = torch.rand(5, 200, dtype=torch.float64)
    a, b, c = bo.make_problem("mlp200"), bo.make_problem("mlp200"), bo.make_problem("mlp200", 7)
    assert a.dim == 200 and a.optimum is None
    assert a.f(x).shape == (5, 1)
    torch.testing.assert_close(a.f(x), b.f(x), rtol=0, atol=0)
    assert not torch.allclose(a.f(x), c.f(x))
    assert a.f(x).std() > 0


def test_ibnn_surrogate_is_botorchs_infinite_width_bnn() -> None:
    k = bo.surrogate_kernel("ibnn").double()  # type: ignore[union-attr]
    ref = InfiniteWidthBNNKernel(depth=3, acos_eps=0.0).double()
    ref.weight_var = torch.tensor(10.0, dtype=torch.float64)
    ref.bias_var = torch.tensor(1.6, dtype=torch.float64)
    x1, x2 = torch.rand(7, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(k(x1, x2).to_dense(), ref(x1, x2).to_dense(), rtol=1e-9, atol=0)
        ntk = bo.surrogate_kernel("ntk").double()(x1, diag=True)  # type: ignore[union-attr]
        assert bool((ntk > ref(x1, diag=True)).all())  # the NTK adds positive terms
    assert bo.surrogate_kernel("default") is None  # SingleTaskGP builds its own
    assert bo.surrogate_kernel("erf") is not None


def test_matern_is_the_papers_baseline_and_the_tutorial_ibnn_is_fixed() -> None:
    from gpytorch.kernels import MaternKernel, ScaleKernel

    matern = bo.surrogate_kernel("matern", 6)
    assert isinstance(matern, ScaleKernel) and isinstance(matern.base_kernel, MaternKernel)
    assert matern.base_kernel.nu == 2.5 and matern.base_kernel.lengthscale.shape == (1, 6)
    with pytest.raises(HyperparameterError, match="dim"):
        bo.surrogate_kernel("matern")
    # the tutorial's kernel: InfiniteWidthBNNKernel(2), weight_var 10, bias_var 5, scaled
    tut = bo.surrogate_kernel("ibnn_tutorial").double()  # type: ignore[union-attr]
    ref = InfiniteWidthBNNKernel(depth=2, acos_eps=0.0).double()
    ref.weight_var = torch.tensor(10.0, dtype=torch.float64)
    ref.bias_var = torch.tensor(5.0, dtype=torch.float64)
    x = torch.rand(6, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = tut.outputscale * ref(x).to_dense()
        torch.testing.assert_close(tut(x).to_dense(), expected, rtol=1e-9, atol=0)
    assert "ibnn_tutorial" in bo.FIXED and "ibnn" not in bo.FIXED


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: bo.make_problem("rosenbrock"), "rosenbrock"),
        (lambda: bo.surrogate_kernel("rbf"), "rbf"),
    ],
)
def test_unknown_names_are_refused(call, name: str) -> None:
    with pytest.raises(HyperparameterError, match=name) as err:
        call()
    assert "Use one of" in str(err.value)


def test_loop_shares_the_design_and_only_improves() -> None:
    problem = bo.make_problem("branin")
    runs = {
        s: bo.run_bo(problem, s, n_init=4, iterations=1, seed=3, raw_samples=8, restarts=1)
        for s in ("matern", "ibnn", "ibnn_tutorial")
    }
    from botorch.utils.sampling import draw_sobol_samples

    bounds = torch.stack([torch.zeros(2), torch.ones(2)]).double()
    design = draw_sobol_samples(bounds=bounds, n=4, q=1, seed=3).squeeze(-2)
    start = torch.cummax(problem.f(design).squeeze(-1), 0).values
    for best in runs.values():
        assert best.shape == (5,) and best.dtype == torch.float64
        torch.testing.assert_close(best[:4], start, rtol=0, atol=0)
        assert bool((best[1:] >= best[:-1]).all())
        assert best[-1].item() <= problem.optimum + 1e-9  # type: ignore[operator]
