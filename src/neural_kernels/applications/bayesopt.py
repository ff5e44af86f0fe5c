r"""Bayesian optimisation with infinite-width surrogates (needs the ``botorch`` extra).

One loop, :func:`run_bo`: Sobol initial design on the unit cube, then ``iterations``
steps of: fit ``SingleTaskGP`` (outcomes standardised, noise and kernel hyperparameters
fitted by marginal likelihood with ``fit_gpytorch_mll``), maximise ``qLogExpectedImprovement``
with ``q = 1`` by ``optimize_acqf``, evaluate. It returns the best value found after each
evaluation. Inputs live in ``[0, 1]^d`` and are mapped affinely to the problem's box.

Surrogates (:data:`SURROGATES`): ``"matern"`` is the Matérn-5/2 kernel with one
lengthscale per dimension and BoTorch's Gamma priors (lengthscale Gamma(3, 6), output
scale Gamma(2, 0.15), noise Gamma(1.1, 0.05)): ``SingleTaskGP``'s default up to BoTorch
0.11 and the baseline of the I-BNN paper; ``"default"`` is whatever ``SingleTaskGP``
builds without a ``covar_module`` in the installed BoTorch (since 0.12 an RBF kernel
with dimension-scaled LogNormal lengthscale priors). ``"ibnn"`` is the NNGP of
``Dense -> (ReLU -> Dense) x 3`` (:math:`\sigma_w^2 = 10`, :math:`\sigma_b^2 = 1.6` to
start, both fitted, the paper's I-BNN); ``"ibnn_tutorial"`` the I-BNN of BoTorch's
tutorial: depth 2, :math:`\sigma_w^2 = 10`, :math:`\sigma_b^2 = 5` in a ``ScaleKernel``,
nothing fitted (neither the kernel nor the noise); ``"ntk"`` the NTK of the ``"ibnn"``
network; ``"erf"`` the NNGP of a deeper ``Erf`` network (5 hidden layers), all through
:class:`neural_kernels.gpytorch.NeuralKernel`.

Problems (:data:`PROBLEMS`, maximised): ``branin`` (2-d), ``hartmann6``, ``ackley10`` from
``botorch.test_functions`` (negated), and ``mlp200``, the output of a fixed random ReLU
MLP ``200 -> 50 -> 50 -> 1`` with every weight and bias drawn from :math:`\mathcal N(0, 1)`
on ``[0, 1]^200`` (the high-dimensional problem of BoTorch's infinite-width BNN tutorial,
whose text draws the weights from :math:`\mathcal N(0, 1)`; its code writes the random
vector into another model, so the tutorial's MLP keeps PyTorch's default initialisation).
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

__all__ = [
    "FIXED",
    "PROBLEMS",
    "SURROGATES",
    "Problem",
    "make_problem",
    "run_bo",
    "surrogate_kernel",
]

#: Surrogate names: two stationary baselines and four infinite-width networks.
SURROGATES = ("matern", "ibnn", "ntk", "erf", "default", "ibnn_tutorial")
#: Surrogates whose hyperparameters stay at their initial values (no marginal likelihood fit).
FIXED = frozenset({"ibnn_tutorial"})
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


def surrogate_kernel(name: str, dim: int | None = None) -> object | None:
    """The covariance module of surrogate ``name`` for ``dim`` inputs (``None``: the default).

    ``dim`` is needed by ``"matern"`` only (one lengthscale per input dimension).
    """
    from ..gpytorch import NeuralKernel

    where = "applications.bayesopt.surrogate_kernel"
    ibnn = _fc(3, ReLU, math.sqrt(10.0), math.sqrt(1.6))
    if name == "default":
        return None
    if name == "matern":
        from botorch.models.utils.gpytorch_modules import get_matern_kernel_with_gamma_prior

        if dim is None or dim < 1:
            raise HyperparameterError(
                describe(where, f"got dim={dim!r} for 'matern'", "Pass the input dimension.")
            )
        return get_matern_kernel_with_gamma_prior(ard_num_dims=dim)
    if name == "ibnn":
        return NeuralKernel(ibnn, "nngp")
    if name == "ibnn_tutorial":
        from gpytorch.kernels import ScaleKernel

        return ScaleKernel(NeuralKernel(_fc(2, ReLU, math.sqrt(10.0), math.sqrt(5.0)), "nngp"))
    if name == "ntk":
        return NeuralKernel(ibnn, "ntk")
    if name == "erf":
        return NeuralKernel(_fc(5, Erf, 1.5, 0.3), "nngp")
    raise HyperparameterError(
        describe(where, f"got surrogate {name!r}", f"Use one of {', '.join(SURROGATES)}.")
    )


def _likelihood(name: str) -> object | None:
    """``"matern"``'s Gamma-prior noise (BoTorch's former default); else the default."""
    if name != "matern":
        return None
    from botorch.models.utils.gpytorch_modules import get_gaussian_likelihood_with_gamma_prior

    return get_gaussian_likelihood_with_gamma_prior()


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

    d = problem.dim
    surrogate_kernel(surrogate, d)  # checks the name before any work
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    x = draw_sobol_samples(bounds=bounds, n=n_init, q=1, seed=seed).squeeze(-2)
    y = problem.f(x)
    torch.manual_seed(seed)
    for _ in range(iterations):
        gp = SingleTaskGP(
            x,
            y,
            outcome_transform=Standardize(m=1),
            covar_module=surrogate_kernel(surrogate, d),
            likelihood=_likelihood(surrogate),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optimizer warnings of a hard fit are expected
            if surrogate not in FIXED:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            gp.eval()
            acq = qLogExpectedImprovement(gp, best_f=y.max())
            cand, _ = optimize_acqf(
                acq, bounds, q=1, num_restarts=restarts, raw_samples=raw_samples
            )
        x = torch.cat([x, cand.detach()])
        y = torch.cat([y, problem.f(cand.detach())])
    return torch.cummax(y.squeeze(-1), 0).values
