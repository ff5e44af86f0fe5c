r"""Theory against experiment: the runs behind ``neural-kernels theory`` and the demo.

Each function runs one check at the sizes it is given and returns JSON-ready numbers
(floats, lists, dicts of them):

- :func:`finite_width_checks`: the order-``1/n`` predictions (:func:`finite_width`)
  against exact Gram-chain Monte Carlo (:func:`sample_gram_chain`): ReLU's
  :math:`\mathrm{Var}(G^L)/K^2`, exactly :math:`(1 + 5/n)^{L-1} - 1` and at leading
  order :math:`5(L-1)/n`; tanh's mean shift and variance.
- :func:`criticality_checks`: :func:`criticality` for common activations and
  :func:`depth_profile` (normalised variance against ``L/n``) at and away from
  criticality.
- :func:`sphere_checks`: infinitely deep classifiers on the Dirichlet sphere law
  (:mod:`~neural_kernels.theory.sphere`): Bayes, 1-nearest neighbour, the
  Bayes-consistent activation, and ReLU's NTK drifting to the majority class with depth.
- :func:`risk_checks`: the eigenframework (:func:`rf_risk`, :func:`krr_risk`) against
  ridge regressions on the power-law task and on the digits' NTK.
- :func:`dynamics_checks`: :func:`eigendirection_dynamics` on digits.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch

__all__ = [
    "criticality_checks",
    "dynamics_checks",
    "finite_width_checks",
    "risk_checks",
    "sphere_checks",
]


def finite_width_checks(n_samples: int = 100_000, seed: int = 0) -> list[dict[str, Any]]:
    """Rows ``{quantity, theory, leading_order, monte_carlo, se, z}`` of the check table."""
    import neural_kernels as nk

    from ._network import chain_network
    from .finite_width import finite_width
    from .gram_chain import sample_gram_chain
    from .risk_experiments import mean_and_error

    gen = torch.Generator().manual_seed(seed)
    one = torch.tensor([[1.0]], dtype=torch.float64)
    rows: list[dict[str, Any]] = []
    n, depth = 64, 8
    net = chain_network(nk.ReLU(), depth, n, math.sqrt(2.0))
    x = one * math.sqrt(1 / 2.0)
    fw = finite_width(net, x)
    g = sample_gram_chain(net, x, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    value, se = mean_and_error((g - 1.0) ** 2)
    exact = (1 + 5 / n) ** (depth - 1) - 1
    rows.append(
        {
            "quantity": f"ReLU Var(G^L)/K^2, n={n}, L={depth}",
            "theory": exact,
            "leading_order": float(fw.normalized_variance()[-1, 0]),
            "monte_carlo": value,
            "se": se,
        }
    )
    net = chain_network(nk.Tanh(), 8, 32, 1.0)
    fw = finite_width(net, one)
    g = sample_gram_chain(net, one, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    value, se = mean_and_error(g)
    rows.append(
        {
            "quantity": "tanh E[G^L], n=32, L=8",
            "theory": float(fw.mean()[-1, 0, 0]),
            "leading_order": float(fw.K[-1, 0, 0]),
            "monte_carlo": value,
            "se": se,
        }
    )
    net = chain_network(nk.Tanh(), 4, 32, 1.0)
    fw = finite_width(net, one)
    g = sample_gram_chain(net, one, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    value, se = mean_and_error((g - g.mean()) ** 2)
    var = float(fw.variance()[-1, 0, 0])
    rows.append(
        {
            "quantity": "tanh Var(G^L), n=32, L=4",
            "theory": var,
            "leading_order": var,
            "monte_carlo": value,
            "se": se,
        }
    )
    for row in rows:
        row["z"] = (row["monte_carlo"] - row["theory"]) / row["se"]
    return rows


def criticality_checks(depth: int = 32, width: int = 64) -> dict[str, Any]:
    """Criticality of common activations and the ``L/n`` profiles of ReLU and tanh."""
    import neural_kernels as nk

    from .criticality import criticality, depth_profile

    table = {}
    for name, act in (
        ("relu", nk.ReLU()),
        ("tanh", nk.Tanh()),
        ("erf", nk.Erf()),
        ("gelu", nk.GELU()),
        ("sigmoid", nk.Sigmoid()),
    ):
        c = criticality(act)
        table[name] = {
            "class": c.universality,
            "w_std": c.w_std,
            "b_std": c.b_std,
            "fixed_point": c.fixed_point,
            "chi_parallel": c.chi_parallel,
            "chi_perp": c.chi_perp,
        }
    profiles: dict[str, Any] = {}
    for name, act, w_std in (("relu", nk.ReLU(), math.sqrt(2.0)), ("tanh", nk.Tanh(), 1.0)):
        for label, scale in (("critical", 1.0), ("off_critical", 1.1)):
            p = depth_profile(act, depth, width, w_std * scale)
            profiles[f"{name}_{label}"] = {
                "depth_over_width": p["depth_over_width"].tolist(),
                "vertex": p["vertex"].tolist(),
                "kernel": p["kernel"].tolist(),
            }
    return {"activations": table, "depth": depth, "width": width, "profiles": profiles}


def sphere_checks(
    n: int = 1000,
    n_test: int = 2000,
    n_relu: int = 100,
    relu_depths: tuple[int, ...] = (10, 100, 1000, 10_000),
    seed: int = 0,
) -> dict[str, Any]:
    r"""Deep classifiers on the Dirichlet sphere law (``d = 2``) against Bayes and 1-NN.

    On ``n`` training and ``n_test`` test points: Bayes, majority vote, 1-NN, the
    Bayes-consistent activation (:func:`optimal_activation`, ``alpha = 1/2``) at depth
    100, erf at depth 200, and :math:`\rho^3` (the 1-NN class) at depth 30. On
    ``n_relu`` training points: the share of ReLU NTK predictions equal to the majority
    class at each of ``relu_depths`` (it tends to 1).
    """
    import neural_kernels as nk

    from . import sphere
    from .infinite_depth import deep_predict, hermite_mixture, optimal_activation

    gen = torch.Generator().manual_seed(seed)
    x, y = sphere.sample_dirichlet_sphere(n, generator=gen)
    xt, yt = sphere.sample_dirichlet_sphere(n_test, generator=gen)

    def acc(pred: torch.Tensor) -> float:
        return float((pred == yt).double().mean())

    majority = 1.0 if float(y.sum()) >= 0 else -1.0
    one_nn = sphere.nearest_neighbour_predict(x, y, xt)
    cube = deep_predict(hermite_mixture({3: 1.0}), x, y, xt, depth=30)
    out: dict[str, Any] = {
        "n": n,
        "n_test": n_test,
        "bayes": acc(sphere.bayes_predict(xt)),
        "majority": acc(torch.full_like(yt, majority)),
        "one_nn": acc(one_nn),
        "optimal_activation_depth_100": acc(deep_predict(optimal_activation(2), x, y, xt, 100)),
        "erf_depth_200": acc(deep_predict(nk.Erf(), x, y, xt, depth=200)),
        "rho_cubed_depth_30": acc(cube),
        "rho_cubed_agrees_with_one_nn": float((cube == one_nn).double().mean()),
    }
    xr, yr = x[:n_relu], y[:n_relu]
    major_r = 1.0 if float(yr.sum()) >= 0 else -1.0
    shares = []
    for d in relu_depths:
        pred = deep_predict(nk.ReLU(), xr, yr, xt, depth=d, kernel="ntk")
        shares.append(float((pred == major_r).double().mean()))
    out["relu_ntk"] = {"n": n_relu, "depths": list(relu_depths), "majority_share": shares}
    return out


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..feature_learning._digits import digits

    x, labels, _, _ = digits(n_train=n)
    y = torch.nn.functional.one_hot(labels, 10).double()
    return x, labels, y - y.mean(0)


def risk_checks(
    ks: tuple[int, ...] = (20, 50, 100, 150, 190, 210, 300, 500, 1000, 2000),
    trials: int = 10,
    n_modes: int = 2000,
    digits_n: tuple[int, ...] = (50, 100, 200, 400),
    seed: int = 0,
) -> dict[str, Any]:
    """Random-feature and kernel ridge risk: theory against ridge regressions."""
    import neural_kernels as nk

    from .risk import krr_risk, optimal_ridge, rf_risk
    from .risk_experiments import (
        kernel_eigensystem,
        krr_experiment,
        power_law_task,
        rf_experiment,
    )

    lam, v = power_law_task(n_modes, 1.5, 1.3)
    n = 200
    curves: dict[str, Any] = {}
    for ridge in (1e-3, 0.1):
        theory = [rf_risk(lam, v, n, k, ridge).test_risk for k in ks]
        measured = [rf_experiment(lam, v, n, k, ridge, trials=trials, seed=seed) for k in ks]
        curves[str(ridge)] = {
            "theory": theory,
            "measured": [m for m, _ in measured],
            "se": [s for _, s in measured],
            "relative_error": [m / t - 1 for (m, _), t in zip(measured, theory, strict=True)],
        }
    big = [i for i, k in enumerate(ks) if k >= 100]
    worst = max(abs(curves["0.1"]["relative_error"][i]) for i in big) if big else math.nan
    opt_k = [optimal_ridge(lam, v, n, k)[1].test_risk for k in ks]
    opt_n = {str(m): optimal_ridge(lam, v, m, 300)[1].test_risk for m in (50, 100, 200, 400)}
    x, _, y = _digits(1797)
    layers = [m for _ in range(3) for m in (nk.Dense(512, w_std=math.sqrt(2.0)), nk.ReLU())]
    net = nk.Sequential(*layers, nk.Dense(10))
    k = cast(torch.Tensor, net.kernel(x, get="ntk").ntk)
    eig, coef = kernel_eigensystem(k, y)
    digits_rows = []
    for m in digits_n:
        for ridge in (1e-2, 1e-1):
            got, se = krr_experiment(k, y, m, ridge, trials=max(3, trials // 2), seed=seed)
            pred = krr_risk(eig, coef, m, ridge)
            digits_rows.append(
                {
                    "n": m,
                    "ridge": ridge,
                    "theory": pred.test_risk,
                    "measured": got,
                    "se": se,
                    "relative_error": got / pred.test_risk - 1,
                }
            )
    return {
        "power_law": {"n": n, "n_modes": n_modes, "alpha": 1.5, "beta": 1.3, "ks": list(ks)},
        "curves": curves,
        "worst_relative_error_k_ge_100_ridge_0.1": worst,
        "peak_k_small_ridge": ks[int(np.argmax(curves["0.001"]["theory"]))],
        "optimal_ridge_risk_vs_k": opt_k,
        "optimal_ridge_risk_vs_n_at_k300": opt_n,
        "digits_ntk": digits_rows,
    }


def dynamics_checks(
    n: int = 64, widths: tuple[int, ...] = (64, 256, 1024, 4096), seeds: int = 2
) -> dict[str, Any]:
    """Residuals along the NTK's eigendirections on digits (even against odd)."""
    import neural_kernels as nk

    from .eigen_dynamics import eigendirection_dynamics

    x, labels, _ = _digits(n)
    y = ((labels % 2).double() * 2 - 1)[:, None]
    net = nk.Sequential(
        nk.Dense(512, w_std=math.sqrt(2.0), b_std=0.1), nk.ReLU(), nk.Dense(1, b_std=0.1)
    )
    r = eigendirection_dynamics(net, x, y, widths=widths, seeds=seeds)
    return {"n": n, **r.as_dict()}
