r"""The theory against experiments the library runs: JSON-ready checks for the reports.

Each function runs one experiment of issue 13 and returns plain numbers (lists, floats,
strings) that go into ``results.json`` of ``neural-kernels theory`` and of the demo's
"Theory against experiment" section.

- :func:`finite_width_table`: the order-``1/n`` predictions of
  :func:`~neural_kernels.theory.finite_width` against exact Monte Carlo of the Gram chain
  (:func:`~neural_kernels.theory.sample_gram_chain`); each row has the theory, the
  leading order, the Monte Carlo mean, its standard error and the z-score.
- :func:`criticality_profiles`: normalised corrections against ``L/n`` for ReLU and tanh
  at criticality and tanh away from it.
- :func:`sphere_classifiers`: infinitely deep networks on the Dirichlet sphere: Bayes,
  the optimal activation's deep kernel, 1-NN, and the ReLU NTK drifting to the majority.
- :func:`power_law_risk`: random-feature ridge regression on the power-law task,
  eigenframework against Gaussian-feature experiments, and the optimal-ridge curves.
- :func:`digits_risk`: kernel ridge regression with a depth-3 ReLU NTK on the digits and
  random features from a finite twin's last hidden layer, predicted against measured.
- :func:`dynamics`: the training residual along the NTK's eigendirections.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "criticality_profiles",
    "digits_risk",
    "dynamics",
    "finite_width_table",
    "power_law_risk",
    "sphere_classifiers",
]


def _mlp(act: Any, depth: int, width: int, cw: float) -> Any:
    from ..layers import Dense, Sequential

    layers: list[Any] = [Dense(width, w_std=math.sqrt(cw))]
    for _ in range(depth - 1):
        layers += [act, Dense(width, w_std=math.sqrt(cw))]
    return Sequential(*layers)


def _row(name: str, theory: float, leading: float, samples: torch.Tensor) -> dict[str, Any]:
    mean = float(samples.mean())
    err = float(samples.std() / math.sqrt(samples.numel()))
    return {
        "quantity": name,
        "theory": theory,
        "leading_order": leading,
        "monte_carlo": mean,
        "standard_error": err,
        "z": (mean - theory) / err if err > 0 else 0.0,
    }


def finite_width_table(
    n_samples: int = 100_000, seed: int = 0, two_inputs: bool = True
) -> list[dict[str, Any]]:
    """The check table of the finite-width corrections (one input, ``K^(1) = 1``).

    Rows: ReLU ``Var(G^8)/K^2`` at ``n = 64`` (exactly ``(1 + 5/n)^7 - 1 = 0.6931``; the
    ``1/n`` theory ``5 * 7 / n``), tanh ``E[G^8]`` at ``n = 32`` (``K + K1/n``), tanh
    ``Var(G^4)`` at ``n = 32`` (``V/n``), and tanh ``E[G^6_{12}]`` of two inputs at
    ``n = 64``. ``theory`` is the exact value where one is known, else ``K + K1/n`` or
    ``V/n``; ``leading_order`` is the ``1/n`` theory (ReLU row) or the infinite-width
    value. ``two_inputs=False`` leaves out the last row (the costliest recursion).
    """
    from ..layers import ReLU, Tanh
    from .finite_width import finite_width
    from .gram_chain import sample_gram_chain

    gen = torch.Generator().manual_seed(seed)
    one = torch.ones(1, 1, dtype=torch.float64)
    rows = []
    net = _mlp(ReLU(), 8, 64, 2.0)
    x = one / math.sqrt(2.0)
    fw = finite_width(net, x)
    g = sample_gram_chain(net, x, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    exact = (1 + 5 / 64) ** 7 - 1
    rows.append(_row("relu Var(G)/K^2, L=8, n=64", exact, float(fw.normalized_variance()[-1, 0]),
                     (g - 1.0) ** 2))  # fmt: skip
    net = _mlp(Tanh(), 8, 32, 1.0)
    fw = finite_width(net, one)
    g = sample_gram_chain(net, one, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    rows.append(_row("tanh E[G], L=8, n=32", float(fw.mean()[-1, 0, 0]), float(fw.K[-1, 0, 0]), g))
    net = _mlp(Tanh(), 4, 32, 1.0)
    fw = finite_width(net, one)
    g = sample_gram_chain(net, one, n_samples=n_samples, generator=gen)[-1, :, 0, 0]
    rows.append(_row("tanh Var(G), L=4, n=32", float(fw.variance()[-1, 0, 0]), 0.0,
                     (g - g.mean()) ** 2 * n_samples / (n_samples - 1)))  # fmt: skip
    if not two_inputs:
        return rows
    two = torch.tensor([[1.0, 0.6], [0.6, 1.2]], dtype=torch.float64)
    x = torch.linalg.cholesky(two) * math.sqrt(2.0)
    net = _mlp(Tanh(), 6, 64, 1.0)
    fw = finite_width(net, x)
    g = sample_gram_chain(net, x, n_samples=max(1, n_samples // 2), generator=gen)[-1, :, 0, 1]
    rows.append(_row("tanh E[G_12], L=6, n=64", float(fw.mean()[-1, 0, 1]), float(fw.K[-1, 0, 1]),
                     g))  # fmt: skip
    return rows


def criticality_profiles(depth: int = 64, width: int = 32) -> dict[str, Any]:
    """``V/(n K^2)`` and the NTK's relative variance against ``L/n`` for four set-ups.

    ReLU and tanh at criticality (linear in ``L/n``: ``5 L/n`` and slowly ``(2/3) L/n``),
    tanh with ``w_std = 1.3`` (a nonzero fixed point, ``chi_parallel < 1``: the
    fluctuation saturates) and ``w_std = 0.8`` (the kernel decays to zero: it grows
    faster than linearly).
    """
    from ..layers import ReLU, Tanh
    from .criticality import criticality, depth_profile

    relu, tanh = criticality(ReLU()), criticality(Tanh())
    setups = {
        "relu critical": (ReLU(), relu.w_std or math.sqrt(2.0), 0.0),
        "tanh critical": (Tanh(), tanh.w_std or 1.0, 0.0),
        "tanh w_std 1.3": (Tanh(), 1.3, 0.0),
        "tanh w_std 0.8": (Tanh(), 0.8, 0.0),
    }
    out: dict[str, Any] = {"depth": depth, "width": width, "curves": {}}
    for name, (act, w_std, b_std) in setups.items():
        prof = depth_profile(act, depth, width, float(w_std), b_std)
        out["curves"][name] = {
            "w_std": float(w_std),
            "depth_over_width": prof["depth_over_width"].tolist(),
            "vertex": prof["vertex"].tolist(),
            "ntk_variance": prof["ntk_variance"].tolist(),
        }
    out["relu_class"] = relu.universality
    out["tanh_class"] = tanh.universality
    return out


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).double().mean())


def sphere_classifiers(
    n: int = 1000,
    n_test: int = 2000,
    depth: int = 100,
    relu_n: int = 100,
    relu_depths: tuple[int, ...] = (10, 100, 1000, 10_000),
    seed: int = 0,
    relu_test: int = 500,
) -> dict[str, Any]:
    """Deep classifiers on the ``d = 2`` Dirichlet sphere (:mod:`.sphere`).

    Accuracies on ``n_test`` points of the Bayes classifier, the deep NNGP of the optimal
    activation ``h1 + h7`` (``alpha = (d - 1)/2``) at ``depth`` trained on ``n`` points,
    1-NN, and majority vote; then the ReLU NTK trained on ``relu_n`` points at growing
    depths with the share of its predictions equal to the training majority, on the first
    ``relu_test`` test points (the deep kernel costs ``depth x relu_n x relu_test``).
    """
    from .infinite_depth import deep_predict, optimal_activation
    from .sphere import bayes_predict, nearest_neighbour_predict, sample_dirichlet_sphere

    gen = torch.Generator().manual_seed(seed)
    x, y = sample_dirichlet_sphere(n, generator=gen)
    xt, yt = sample_dirichlet_sphere(n_test, generator=gen)
    major = 1.0 if float(y.sum()) >= 0 else -1.0
    out: dict[str, Any] = {"d": 2, "n": n, "n_test": n_test, "depth": depth}
    out["bayes"] = _accuracy(bayes_predict(xt), yt)
    out["optimal_activation"] = _accuracy(deep_predict(optimal_activation(2), x, y, xt, depth), yt)
    out["nearest_neighbour"] = _accuracy(nearest_neighbour_predict(x, y, xt), yt)
    out["majority"] = _accuracy(torch.full_like(yt, major), yt)
    from ..layers import ReLU

    xr, yr = x[:relu_n], y[:relu_n]
    major_r = 1.0 if float(yr.sum()) >= 0 else -1.0
    share, acc = [], []
    for depth_r in relu_depths:
        pred = deep_predict(ReLU(), xr, yr, xt[:relu_test], depth_r, kernel="ntk")
        share.append(float((pred == major_r).double().mean()))
        acc.append(_accuracy(pred, yt[:relu_test]))
    out["relu_ntk"] = {
        "n": relu_n,
        "n_test": min(relu_test, n_test),
        "depths": list(relu_depths),
        "majority_share": share,
        "accuracy": acc,
    }
    return out


def _pairs(ks: list[float]) -> list[Any]:
    return [k if math.isfinite(k) else "inf" for k in ks]


def power_law_risk(
    n: int = 200,
    n_modes: int = 2000,
    ks: tuple[float, ...] = (20, 50, 100, 150, 190, 210, 250, 300, 400, 800, 2000, math.inf),
    ridges: tuple[float, ...] = (1e-3, 0.1),
    trials: int = 10,
    optimal_ks: tuple[float, ...] = (50, 100, 200, 400, math.inf),
    optimal_ns: tuple[int, ...] = (50, 100, 200, 400),
    optimal_trials: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Random-feature risk on the power-law task: theory against experiment.

    The task: ``n_modes`` eigenvalues :math:`i^{-1.5}`, :math:`v_i^2 \propto i^{-1.3}`.
    For each ridge and number of features ``k``: the predicted test risk
    (:func:`~neural_kernels.theory.rf_risk`) and the measured one over ``trials`` draws
    (:func:`~neural_kernels.theory.risk_experiments.rf_experiment`); the largest
    relative deviation at ``k >= 100`` per ridge. At the optimal ridge: the predicted
    risk against ``k`` (``n`` fixed) and against ``n`` (``k = 300``) and the measured
    risk at those ridges.
    """
    from .risk import optimal_ridge, rf_risk
    from .risk_experiments import power_law_task, rf_experiment

    lam, v = power_law_task(n_modes, 1.5, 1.3)
    out: dict[str, Any] = {"n": n, "n_modes": n_modes, "trials": trials, "ks": _pairs(list(ks))}
    curves = {}
    for ridge in ridges:
        theory, measured, err = [], [], []
        for k in ks:
            theory.append(rf_risk(lam, v, n, k, ridge).test_risk)
            m, e = rf_experiment(lam, v, n, k, ridge, trials=trials, seed=seed)
            measured.append(m)
            err.append(e)
        dev = [abs(m - t) / t for m, t, k in zip(measured, theory, ks, strict=True) if k >= 100]
        curves[str(ridge)] = {
            "ridge": ridge,
            "theory": theory,
            "measured": measured,
            "standard_error": err,
            "max_relative_deviation_k_ge_100": max(dev) if dev else 0.0,
        }
    out["curves"] = curves

    def optimum(n_: int, k: float) -> dict[str, float]:
        ridge, pred = optimal_ridge(lam, v, n_, k)
        m, e = rf_experiment(lam, v, n_, k, ridge, trials=optimal_trials, seed=seed + 1)
        return {"ridge": ridge, "theory": pred.test_risk, "measured": m, "standard_error": e}

    out["optimal_in_k"] = {"n": n, "ks": _pairs(list(optimal_ks)),
                           "points": [optimum(n, k) for k in optimal_ks]}  # fmt: skip
    out["optimal_in_n"] = {"k": 300, "ns": list(optimal_ns),
                           "points": [optimum(m, 300) for m in optimal_ns]}  # fmt: skip
    for key in ("optimal_in_k", "optimal_in_n"):
        t = [p["theory"] for p in out[key]["points"]]
        out[key]["theory_decreasing"] = bool(all(a > b for a, b in itertools.pairwise(t)))
    return out


def digits_risk(
    ns: tuple[int, ...] = (100, 200, 400, 1000),
    ridge: float = 1e-2,
    trials: int = 6,
    rf_n: int = 100,
    rf_ks: tuple[int, ...] = (50, 100, 300, 1000),
    rf_population: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """KRR risk of a depth-3 ReLU NTK on the digits, and finite-twin random features.

    The population is all 1797 digits (inputs ``/16`` centred, targets one-hot centred);
    :func:`~neural_kernels.theory.kernel_eigensystem` gives its eigensystem, and
    :func:`~neural_kernels.theory.krr_risk` the risk of ``n`` draws with replacement,
    measured by :func:`~.risk_experiments.krr_experiment`. Random features: the last
    hidden layer of a one-hidden-layer ReLU twin of width ``k`` on ``rf_population``
    digits against :func:`~neural_kernels.theory.rf_risk` of the limit kernel.
    """
    from .._validation import given
    from ..feature_learning._digits import digits
    from ..layers import Dense, ReLU, Sequential
    from .risk import krr_risk, rf_risk
    from .risk_experiments import kernel_eigensystem, krr_experiment, twin_rf_experiment

    x, labels, _, _ = digits(n_train=1797)
    y = torch.nn.functional.one_hot(labels, 10).double()
    y = y - y.mean(0)
    layers = [m for _ in range(3) for m in (Dense(256, w_std=2**0.5), ReLU())]
    net = Sequential(*layers, Dense(10))
    lam, v = kernel_eigensystem(net, x, y, get="ntk")
    k = given(net.kernel(x, get="ntk").ntk, "the NTK")
    krr = []
    for n in ns:
        m, e = krr_experiment(k, y, n, ridge, trials=trials, seed=seed)
        krr.append({"n": n, "theory": krr_risk(lam, v, n, ridge).test_risk, "measured": m,
                    "standard_error": e})  # fmt: skip
    for p in krr:
        p["relative_deviation"] = abs(p["measured"] - p["theory"]) / p["theory"]
    xs, ys = x[:rf_population], y[:rf_population] - y[:rf_population].mean(0)
    twin = Sequential(Dense(64, w_std=2**0.5, b_std=0.1), ReLU(), Dense(10, b_std=0.3))
    limit = twin.kernel(xs, get="nngp").nngp - 0.3**2
    lam_t, v_t = kernel_eigensystem(limit, ys)
    rf = []
    for width in rf_ks:
        m, e = twin_rf_experiment(twin, xs, ys, rf_n, width, ridge, trials=trials, seed=seed)
        t = rf_risk(lam_t, v_t, rf_n, width, ridge).test_risk
        rf.append({"k": width, "theory": t, "measured": m, "standard_error": e,
                   "relative_deviation": abs(m - t) / t})  # fmt: skip
    return {
        "ridge": ridge,
        "trials": trials,
        "krr": krr,
        "max_krr_relative_deviation": max(p["relative_deviation"] for p in krr),
        "twin_rf": {"n": rf_n, "population": rf_population, "points": rf},
        "max_twin_rf_relative_deviation": max(p["relative_deviation"] for p in rf),
    }


def dynamics(
    widths: tuple[int, ...] = (32, 128, 512, 2048),
    n_points: int = 24,
    seeds: int = 2,
    n_directions: int = 3,
) -> dict[str, Any]:
    """:func:`~neural_kernels.theory.eigendirection_dynamics` on a small regression task.

    ``n_points`` Gaussian inputs in 5 dimensions, target ``sin(2 x_1) + 0.3 x_2``, a
    one-hidden-layer ReLU network (``w_std^2 = 2``, ``b_std = 0.1``).
    """
    from ..layers import Dense, ReLU, Sequential
    from .eigen_dynamics import eigendirection_dynamics

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_points, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :1] * 2.0) + 0.3 * x[:, 1:2]
    net = Sequential(Dense(64, w_std=2**0.5, b_std=0.1), ReLU(), Dense(1, b_std=0.1))
    res = eigendirection_dynamics(net, x, y, widths=widths, seeds=seeds, n_directions=n_directions)
    out = res.as_dict()
    gaps = np.asarray([res.gap[int(w)] for w in widths])
    out["widths"] = list(widths)
    out["gap_times_sqrt_width"] = (gaps * np.sqrt(np.asarray(widths, dtype=float))).tolist()
    return out
