r"""Bayesian optimisation with infinite-width surrogates (needs the ``botorch`` extra).

One loop, :func:`run_bo`: Sobol initial design on the unit cube, then ``iterations``
steps of: fit ``SingleTaskGP`` (outcomes standardised, noise and kernel hyperparameters
fitted by marginal likelihood with ``fit_gpytorch_mll``), maximise ``qLogExpectedImprovement``
with ``q = 1`` by ``optimize_acqf``, evaluate. It returns the best value found after each
evaluation. Inputs live in ``[0, 1]^d`` and are mapped affinely to the problem's box.

Surrogates (:data:`SURROGATES`): ``"matern"`` is ``SingleTaskGP``'s default (Matérn-5/2
with one lengthscale per dimension); ``"ibnn"`` is the NNGP of
``Dense -> (ReLU -> Dense) x 3`` (:math:`\sigma_w^2 = 10`, :math:`\sigma_b^2 = 1.6` to
start, both fitted, the paper's I-BNN); ``"ntk"`` the NTK of the same network; ``"erf"``
the NNGP of a deeper ``Erf`` network (5 hidden layers), all through
:class:`neural_kernels.gpytorch.NeuralKernel`.

Problems (:data:`PROBLEMS`, maximised): ``branin`` (2-d), ``hartmann6``, ``ackley10`` from
``botorch.test_functions`` (negated), and ``mlp200``, the output of a fixed random ReLU
MLP ``200 -> 50 -> 50 -> 1`` with every weight and bias drawn from :math:`\mathcal N(0, 1)`
on ``[0, 1]^200`` (the high-dimensional problem of BoTorch's infinite-width BNN tutorial).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import HyperparameterError, describe
from ..layers.activations import Erf, ReLU
from ..layers.base import Layer
from ..layers.combinators import Sequential
from ..layers.dense import Dense

__all__ = ["PROBLEMS", "SURROGATES", "Problem", "make_problem", "run_bo", "surrogate_kernel"]

#: Surrogate names: SingleTaskGP's default and three infinite-width networks.
SURROGATES = ("matern", "ibnn", "ntk", "erf")
#: Problem names and their input dimensions.
PROBLEMS = {"branin": 2, "hartmann6": 6, "ackley10": 10, "mlp200": 200}


@dataclass(frozen=True)
class Problem:
    """A function to maximise on ``[0, 1]^dim``.

    Attributes:
        name: one of :data:`PROBLEMS`.
        dim: input dimension.
        f: ``(n, dim) -> (n, 1)`` values (float64).
        optimum: the known maximum, or ``None``.

    """

    name: str
    dim: int
    f: Callable[[Tensor], Tensor]
    optimum: float | None


def make_problem(name: str, seed: int = 1234) -> Problem:
    """The problem ``name`` of :data:`PROBLEMS` (``seed`` draws the ``mlp200`` weights)."""
    from botorch.test_functions import Ackley, Branin, Hartmann

    if name == "mlp200":
        g = torch.Generator().manual_seed(seed)
        sizes = ((200, 50), (50, 50), (50, 1))
        params = [
            (
                torch.randn(o, i, generator=g, dtype=torch.float64),
                torch.randn(o, generator=g, dtype=torch.float64),
            )
            for i, o in sizes
        ]

        def mlp(x: Tensor) -> Tensor:
            h = x
            for j, (w, b) in enumerate(params):
                h = h @ w.T + b
                if j < len(params) - 1:
                    h = torch.relu(h)
            return h

        return Problem(name, 200, mlp, None)
    makers = {
        "branin": lambda: Branin(negate=True),
        "hartmann6": lambda: Hartmann(dim=6, negate=True),
        "ackley10": lambda: Ackley(dim=10, negate=True),
    }
    if name not in makers:
        raise HyperparameterError(
            describe(
                "applications.bayesopt.make_problem",
                f"got problem {name!r}",
                f"Use one of {', '.join(PROBLEMS)}.",
            )
        )
    fn = makers[name]().to(torch.float64)
    lo, hi = fn.bounds[0], fn.bounds[1]

    def f(x: Tensor) -> Tensor:
        with torch.no_grad():
            return fn(lo + (hi - lo) * x).unsqueeze(-1)

    return Problem(name, fn.dim, f, float(fn.optimal_value))


def _fc(depth: int, act: Callable[[], Layer], w_std: float, b_std: float) -> Layer:
    layers: list[Layer] = [Dense(1, w_std, b_std)]
    for _ in range(depth):
        layers += [act(), Dense(1, w_std, b_std)]
    return Sequential(*layers)


def surrogate_kernel(name: str) -> object | None:
    """The covariance module of surrogate ``name`` (``None``: SingleTaskGP's default)."""
    from ..gpytorch import NeuralKernel

    ibnn = _fc(3, ReLU, math.sqrt(10.0), math.sqrt(1.6))
    if name == "matern":
        return None
    if name == "ibnn":
        return NeuralKernel(ibnn, "nngp")
    if name == "ntk":
        return NeuralKernel(ibnn, "ntk")
    if name == "erf":
        return NeuralKernel(_fc(5, Erf, 1.5, 0.3), "nngp")
    raise HyperparameterError(
        describe(
            "applications.bayesopt.surrogate_kernel",
            f"got surrogate {name!r}",
            f"Use one of {', '.join(SURROGATES)}.",
        )
    )


def run_bo(
    problem: Problem,
    surrogate: str,
    *,
    n_init: int,
    iterations: int,
    seed: int = 0,
    raw_samples: int = 64,
    restarts: int = 2,
) -> Tensor:
    """Best value found after each of the ``n_init + iterations`` evaluations.

    The initial design depends on ``seed`` alone, so surrogates start from the same
    points. Returns a float64 tensor of length ``n_init + iterations``.
    """
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.utils.sampling import draw_sobol_samples
    from gpytorch.mlls import ExactMarginalLogLikelihood

    surrogate_kernel(surrogate)  # checks the name before any work
    d = problem.dim
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    x = draw_sobol_samples(bounds=bounds, n=n_init, q=1, seed=seed).squeeze(-2)
    y = problem.f(x)
    torch.manual_seed(seed)
    for _ in range(iterations):
        gp = SingleTaskGP(
            x,
            y,
            outcome_transform=Standardize(m=1),
            covar_module=surrogate_kernel(surrogate),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optimizer warnings of a hard fit are expected
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            acq = qLogExpectedImprovement(gp, best_f=y.max())
            cand, _ = optimize_acqf(
                acq, bounds, q=1, num_restarts=restarts, raw_samples=raw_samples
            )
        x = torch.cat([x, cand.detach()])
        y = torch.cat([y, problem.f(cand.detach())])
    return torch.cummax(y.squeeze(-1), 0).values
