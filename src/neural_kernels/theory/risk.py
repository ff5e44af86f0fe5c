r"""Test risk of kernel ridge regression and random-feature regression, in closed form.

The eigenframework of Simon, Karkada, Ghosh and Belkin ("More is better in modern
machine learning"): a task is the kernel's eigenvalues :math:`\lambda_i` (``(M,)``) and
the target's coefficients :math:`v_i` in the kernel's orthonormal eigenfunctions,
:math:`y = \sum_i v_i \phi_i(x) + \epsilon` with noise variance :math:`\sigma^2`. The
estimator is ridge regression with the (random-feature) kernel matrix and ridge
:math:`\delta`, as :math:`(\hat K + \delta I)^{-1}` with no ``1/n``.

**Kernel ridge regression** (:func:`krr_risk`, infinitely many features). The effective
regularisation :math:`\kappa` solves

.. math:: \sum_i \frac{\lambda_i}{\lambda_i + \kappa} + \frac{\delta}{\kappa} = n,

and with the learnabilities :math:`L_i = \lambda_i / (\lambda_i + \kappa)` and
:math:`E_0 = n / (n - \sum_i L_i^2)`,

.. math:: E_{te} = E_0 \Big(\sum_i (1 - L_i)^2 v_i^2 + \sigma^2\Big), \qquad
          E_{tr} = \Big(\frac{\delta}{n \kappa}\Big)^2 E_{te}.

**Random-feature regression** (:func:`rf_risk`, ``k`` features, the kernel estimated by
:math:`\hat K = \Phi \Phi^\top` with features scaled by :math:`1/\sqrt{k}`). With
:math:`\mathrm{df}_1(\gamma) = \sum_i \lambda_i / (\lambda_i + \gamma)` and
:math:`\mathrm{df}_2(\gamma) = \sum_i \lambda_i^2 / (\lambda_i + \gamma)^2`, the pair
:math:`(\kappa, \gamma)` solves :math:`n = \mathrm{df}_1(\gamma) + \delta / \kappa` and
:math:`k = \mathrm{df}_1(\gamma) + k \kappa / \gamma`, and

.. math:: E_{te} = \frac{\sum_i \big(\frac{\gamma}{\lambda_i + \gamma}
          - \frac{k \kappa \lambda_i}{(k - \mathrm{df}_2)(\lambda_i + \gamma)^2}\big) v_i^2
          + \sigma^2}{1 - \frac{\mathrm{df}_2 (k - 2 \mathrm{df}_1) + \mathrm{df}_1^2}
          {n (k - \mathrm{df}_2)}},

which tends to the kernel ridge risk as :math:`k \to \infty`. Eliminating
:math:`\kappa = \gamma (k - \mathrm{df}_1(\gamma)) / k` leaves one equation in
:math:`\gamma`, monotone on the interval where :math:`\mathrm{df}_1(\gamma) < k`; it is
solved by Brent's method in :math:`\log \gamma` to machine precision. At zero ridge the
limits are taken exactly (``n < k``: :math:`\mathrm{df}_1(\gamma) = n`; ``k < n``:
:math:`\mathrm{df}_1(\gamma) = k`, :math:`\kappa = 0`); ``n = k`` at zero ridge is the
interpolation threshold, where the risk is infinite, and is refused.

Both risks include the noise: they are the expected squared error against noisy test
targets. A risk is the mean over outputs when ``target_coefficients`` has a second axis
(``(M, c)``), as for one-hot labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from ..errors import HyperparameterError, NonFiniteError, ShapeError

__all__ = ["RiskPrediction", "krr_risk", "optimal_ridge", "rf_risk"]


@dataclass(frozen=True)
class RiskPrediction:
    r"""The eigenframework's prediction for one ``(n, k, ridge, noise)``.

    Attributes:
        test_risk: :math:`E_{te}`, expected squared error on a fresh noisy test point.
        train_risk: :math:`E_{tr} = (\delta / (n \kappa))^2 E_{te}` (``0`` at zero ridge
            below the interpolation threshold).
        kappa: effective regularisation :math:`\kappa`.
        gamma: :math:`\gamma` of the random-feature equations (``kappa`` for kernel ridge).
        learnabilities: :math:`L_i = \lambda_i / (\lambda_i + \kappa)`, ``(M,)``.
        df1, df2: :math:`\mathrm{df}_1(\gamma)`, :math:`\mathrm{df}_2(\gamma)`.

    """

    test_risk: float
    train_risk: float
    kappa: float
    gamma: float
    learnabilities: np.ndarray
    df1: float
    df2: float

    def as_dict(self) -> dict[str, float]:
        """The scalar fields, for JSON."""
        return {
            "test_risk": self.test_risk,
            "train_risk": self.train_risk,
            "kappa": self.kappa,
            "gamma": self.gamma,
            "df1": self.df1,
            "df2": self.df2,
        }


def _task(where: str, eigenvalues: Any, target_coefficients: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(lambda (M,), v^2 (M,))``; ``v^2`` averaged over outputs."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    v = np.asarray(target_coefficients, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ShapeError(
            f"{where}: eigenvalues must be a non-empty 1-D array, got shape {lam.shape}"
        )
    if v.ndim not in (1, 2) or v.shape[0] != lam.shape[0]:
        raise ShapeError(
            f"{where}: target_coefficients must have shape (M,) or (M, c) with M = "
            f"{lam.shape[0]} eigenvalues, got {v.shape}"
        )
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(v))):
        raise NonFiniteError(f"{where}: eigenvalues and target coefficients must be finite")
    if np.any(lam < 0):
        raise HyperparameterError(
            f"{where}: eigenvalues must be non-negative, got a minimum of {lam.min():.3g}; "
            "clip round-off negatives of a kernel's spectrum to zero first"
        )
    if not np.any(lam > 0):
        raise HyperparameterError(f"{where}: at least one eigenvalue must be positive")
    v2 = v**2 if v.ndim == 1 else (v**2).mean(axis=1)
    return lam, v2


def _scalars(where: str, n: Any, ridge: Any, noise: Any) -> tuple[float, float, float]:
    for name, value in (("n", n), ("ridge", ridge), ("noise", noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise HyperparameterError(
                f"{where}: {name} must be a number, got {type(value).__name__}"
            )
        if not math.isfinite(float(value)):
            raise NonFiniteError(f"{where}: {name} must be finite, got {value}")
    if float(n) < 1:
        raise HyperparameterError(f"{where}: n (training points) must be at least 1, got {n}")
    if float(ridge) < 0:
        raise HyperparameterError(f"{where}: ridge must be non-negative, got {ridge}")
    if float(noise) < 0:
        raise HyperparameterError(f"{where}: noise (a variance) must be non-negative, got {noise}")
    return float(n), float(ridge), float(noise)


def _df(lam: np.ndarray, g: float) -> tuple[float, float]:
    r = lam / (lam + g)
    return float(r.sum()), float((r * r).sum())


def _root_log(f: Any, lo: float, hi: float) -> float:
    """The root of ``f`` (decreasing) in ``(lo, hi)``, found on ``log`` scale."""
    t = brentq(
        lambda s: f(math.exp(s)), math.log(lo), math.log(hi), xtol=1e-15, rtol=1e-15, maxiter=500
    )
    return math.exp(t)


def _bracket_below(f: Any, hi: float, floor: float = 0.0) -> float:
    """A point ``lo`` in ``(floor, hi)`` with ``f(lo) > 0``, halving towards ``floor``."""
    width = hi - floor
    for _ in range(2000):
        width /= 2.0
        lo = floor + width
        if lo <= floor or width < 1e-300:
            break
        if f(lo) > 0:
            return lo
    raise HyperparameterError("the risk equations have no solution for these inputs")


def _solve_df1(lam: np.ndarray, target: float, where: str) -> float:
    """``gamma`` with ``df1(gamma) = target``, for ``0 < target < #(lambda > 0)``."""
    positive = int(np.count_nonzero(lam > 0))
    if target >= positive:
        raise HyperparameterError(
            f"{where}: at zero ridge the task needs more positive eigenvalues ({positive}) "
            f"than training points or features ({target:g}); use a positive ridge"
        )

    def f(g: float) -> float:
        return _df(lam, g)[0] - target

    hi = float(lam.sum()) / target * 2.0 + 1e-300
    lo = _bracket_below(f, hi)
    return _root_log(f, lo, hi)


def krr_risk(
    eigenvalues: Any, target_coefficients: Any, n: float, ridge: float = 0.0, noise: float = 0.0
) -> RiskPrediction:
    r"""Kernel ridge regression's test and train risk from the eigenframework.

    Args:
        eigenvalues: ``(M,)`` non-negative kernel eigenvalues :math:`\lambda_i`.
        target_coefficients: ``(M,)`` or ``(M, c)`` coefficients :math:`v_i` of the target in
            the orthonormal eigenfunctions (risks are averaged over the ``c`` outputs).
        n: number of training points.
        ridge: :math:`\delta \ge 0`, added as :math:`(K + \delta I)^{-1}`.
        noise: label-noise variance :math:`\sigma^2`.

    Returns:
        A :class:`RiskPrediction` (``gamma`` equals ``kappa``).

    """
    where = "krr_risk"
    lam, v2 = _task(where, eigenvalues, target_coefficients)
    n, ridge, noise = _scalars(where, n, ridge, noise)
    if ridge == 0.0:
        kappa = _solve_df1(lam, n, where)
    else:

        def f(k: float) -> float:
            return _df(lam, k)[0] + ridge / k - n

        hi = (float(lam.sum()) + ridge) / n
        kappa = hi if f(hi) >= 0 else _root_log(f, ridge / n, hi)
    L = lam / (lam + kappa)
    df1, df2 = float(L.sum()), float((L * L).sum())
    e0 = n / (n - df2)
    test = e0 * (float(((1 - L) ** 2 * v2).sum()) + noise)
    train = (ridge / (n * kappa)) ** 2 * test
    return RiskPrediction(test, train, kappa, kappa, L, df1, df2)


def rf_risk(
    eigenvalues: Any,
    target_coefficients: Any,
    n: float,
    n_features: float,
    ridge: float = 0.0,
    noise: float = 0.0,
) -> RiskPrediction:
    r"""Random-feature ridge regression's test and train risk from the eigenframework.

    Args:
        eigenvalues: ``(M,)`` non-negative kernel eigenvalues.
        target_coefficients: ``(M,)`` or ``(M, c)`` target coefficients.
        n: number of training points.
        ridge: :math:`\delta \ge 0`.
        noise: label-noise variance.
        n_features: ``k``, the number of random features (``inf`` gives :func:`krr_risk`).

    Returns:
        A :class:`RiskPrediction`.

    Raises:
        HyperparameterError: ``n_features < 1``, or zero ridge at ``n == n_features`` (the
            interpolation threshold, infinite risk).

    """
    where = "rf_risk"
    k = n_features
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, float, np.integer, np.floating))
        or not k >= 1
    ):
        raise HyperparameterError(f"{where}: n_features must be a number >= 1, got {k!r}")
    if math.isinf(float(k)):
        return krr_risk(eigenvalues, target_coefficients, n, ridge, noise)
    k = float(k)
    lam, v2 = _task(where, eigenvalues, target_coefficients)
    n, ridge, noise = _scalars(where, n, ridge, noise)
    positive = int(np.count_nonzero(lam > 0))
    if ridge == 0.0:
        if n == k:
            raise HyperparameterError(
                f"{where}: n = n_features = {n:g} at zero ridge is the interpolation threshold "
                "(infinite risk); use a positive ridge"
            )
        gamma = _solve_df1(lam, min(n, k), where)
        kappa = gamma * (k - n) / k if n < k else 0.0
    else:
        # gamma must keep df1(gamma) < k; g(gamma) = df1 + delta k / (gamma (k - df1)) - n
        # decreases in gamma on that interval.
        floor = _solve_df1(lam, k, where) if k < positive else 0.0

        def f(g: float) -> float:
            d1 = _df(lam, g)[0]
            return d1 + ridge * k / (g * (k - d1)) - n

        hi = max(floor * 2.0, (float(lam.sum()) + ridge) / n * 2.0, 1e-300)
        while f(hi) > 0:
            hi *= 2.0
        lo = _bracket_below(f, hi, floor)
        gamma = _root_log(f, lo, hi)
        kappa = gamma * (k - _df(lam, gamma)[0]) / k
    df1, df2 = _df(lam, gamma)
    num = float(
        ((gamma / (lam + gamma) - k * kappa * lam / ((k - df2) * (lam + gamma) ** 2)) * v2).sum()
    )
    den = 1.0 - (df2 * (k - 2 * df1) + df1**2) / (n * (k - df2))
    test = (num + noise) / den
    train = (ridge / (n * kappa)) ** 2 * test if kappa > 0 else 0.0
    return RiskPrediction(
        test, train, kappa, gamma, lam / (lam + kappa) if kappa > 0 else np.ones_like(lam), df1, df2
    )


def optimal_ridge(
    eigenvalues: Any,
    target_coefficients: Any,
    n: float,
    n_features: float = math.inf,
    noise: float = 0.0,
    ridges: Any = None,
) -> tuple[float, RiskPrediction]:
    """The ridge that minimises the predicted test risk, and the prediction there.

    Searched over ``ridges`` (default: 0 and a log grid from ``1e-8`` to ``1e3`` times the
    eigenvalues' sum), then refined by a bounded scalar search in ``log`` ridge between
    the grid neighbours of the best point. Zero ridge is allowed where it is defined.
    """
    from scipy.optimize import minimize_scalar

    lam, _ = _task("optimal_ridge", eigenvalues, target_coefficients)
    scale = float(lam.sum())
    grid = (
        np.asarray(ridges, dtype=np.float64)
        if ridges is not None
        else np.concatenate([[0.0], scale * np.logspace(-8, 3, 45)])
    )

    def risk(r: float) -> RiskPrediction:
        return rf_risk(eigenvalues, target_coefficients, n, n_features, r, noise)

    values = []
    for r in grid:
        try:
            values.append(risk(float(r)).test_risk)
        except HyperparameterError:
            values.append(math.inf)  # zero ridge at the interpolation threshold
    best = int(np.argmin(values))
    lo = grid[best - 1] if best > 0 else grid[best]
    hi = grid[best + 1] if best + 1 < len(grid) else grid[best]
    r_best = float(grid[best])
    if lo > 0 and hi > lo:
        res = minimize_scalar(
            lambda t: risk(math.exp(t)).test_risk,
            bounds=(math.log(lo), math.log(hi)),
            method="bounded",
            options={"xatol": 1e-6},
        )
        if res.fun < values[best]:
            r_best = math.exp(float(res.x))
    return r_best, risk(r_best)
