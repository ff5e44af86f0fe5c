"""Infinite-width kernels in GPyTorch, BoTorch and scikit-learn, and exact permutations.

Four short uses of the optional extras (``pip install "neural-kernels[botorch,sklearn]"``):

1. scikit-learn: ``nk.sklearn.NeuralKernelRegressor`` (the trained infinite ensemble's
   mean, here at convergence) and ``nk.sklearn.NeuralKernel`` inside
   ``GaussianProcessRegressor``, which fits ``w_std`` and ``b_std`` by marginal likelihood;
2. GPyTorch: ``nk.gpytorch.NeuralKernel`` fitted by marginal likelihood in an exact GP;
3. BoTorch: the same kernel as the covariance of ``SingleTaskGP`` in a few steps of
   Bayesian optimisation with qLogEI on Branin (``nk.applications.bayesopt.run_bo``);
4. permutations: how many converged wide two-layer networks must be averaged to learn a
   permutation of size ``k`` exactly from its ``k`` basis pairs.

    python examples/integrations.py            # about a minute on one core
    python examples/integrations.py --steps 20
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch

import neural_kernels as nk


def relu_net(depth: int = 3) -> nk.Sequential:
    """``Dense -> (ReLU -> Dense) x depth``, sigma_w^2 = 10, sigma_b^2 = 1.6 (the I-BNN)."""
    layers: list[nk.Layer] = [nk.Dense(1, math.sqrt(10.0), math.sqrt(1.6))]
    for _ in range(depth):
        layers += [nk.ReLU(), nk.Dense(1, math.sqrt(10.0), math.sqrt(1.6))]
    return nk.Sequential(*layers)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the four uses; return their numbers (R^2, best values, models needed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="training points")
    parser.add_argument("--steps", type=int, default=4, help="Bayesian optimisation steps")
    parser.add_argument("--k", type=int, default=5, help="permutation size")
    args = parser.parse_args(argv)
    out: dict[str, float] = {}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 2, generator=gen, dtype=torch.float64)
    noise = 0.1 * torch.randn(args.n, generator=gen, dtype=torch.float64)
    y = torch.sin(6 * x[:, 0]) + x[:, 1] ** 2 + noise
    xt = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    yt = torch.sin(6 * xt[:, 0]) + xt[:, 1] ** 2

    # 1. scikit-learn
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import WhiteKernel

    reg = nk.sklearn.NeuralKernelRegressor(relu_net(), get="ntk", diag_reg=1e-3)
    out["sklearn_regressor_r2"] = float(reg.fit(x.numpy(), y.numpy()).score(xt.numpy(), yt.numpy()))
    kernel = nk.sklearn.NeuralKernel(relu_net()) + WhiteKernel(1e-2, (1e-10, 1.0))
    gpr = GaussianProcessRegressor(kernel, normalize_y=True).fit(x.numpy(), y.numpy())
    out["sklearn_gpr_r2"] = float(gpr.score(xt.numpy(), yt.numpy()))
    print(f"scikit-learn: NTK regressor R^2 {out['sklearn_regressor_r2']:.3f}, "
          f"GP with fitted w_std/b_std R^2 {out['sklearn_gpr_r2']:.3f}")  # fmt: skip

    # 2. GPyTorch (and BoTorch's SingleTaskGP, which is an exact GP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit in the extras' imports
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

    gp = SingleTaskGP(x, y[:, None], covar_module=nk.gpytorch.NeuralKernel(relu_net()))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    with torch.no_grad():
        pred = gp.posterior(xt).mean.squeeze(-1)
    out["gpytorch_r2"] = float(1 - ((pred - yt) ** 2).sum() / ((yt - yt.mean()) ** 2).sum())
    w_std = float(gp.covar_module.w_std.detach())
    print(f"GPyTorch: SingleTaskGP with the NNGP, fitted w_std {w_std:.2f}, "
          f"R^2 {out['gpytorch_r2']:.3f}")  # fmt: skip

    # 3. BoTorch: Bayesian optimisation on Branin
    from neural_kernels.applications import bayesopt

    branin = bayesopt.make_problem("branin")
    best = bayesopt.run_bo(branin, "ibnn", n_init=6, iterations=args.steps, raw_samples=16)
    out["bo_branin_start"] = float(best[5])
    out["bo_branin_best"] = float(best[-1])
    print(f"BoTorch: Branin best {best[5]:.3f} after the design, {best[-1]:.3f} after "
          f"{args.steps} qLogEI steps (optimum {branin.optimum:.3f})")  # fmt: skip

    # 4. exact permutation learning
    from neural_kernels.applications import permutations as perm

    task = perm.permutation_task(args.k, generator=gen)
    mean, cov = perm.ensemble_gaussian(task, "nngp")
    m = perm.models_needed(mean, cov, task.y_test, 0.1, samples=1000, generator=gen)
    out["permutation_models_needed"] = m
    # the union bound over inputs needs only the variances: sufficient, and close to m
    bound = perm.models_needed_bound(mean, cov.diagonal(), task.y_test, 0.1)
    out["permutation_models_bound"] = bound
    print(f"permutations: k={args.k}, {m:.0f} converged wide networks recover all "
          f"{len(task.x_test)} unseen inputs exactly with probability 0.9 "
          f"(union bound: {bound:.0f})")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
