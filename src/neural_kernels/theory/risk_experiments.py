r"""Experiments that check :mod:`~neural_kernels.theory.risk` against ridge regressions.

- :func:`power_law_task`: :math:`\lambda_i = i^{-\alpha}`, :math:`v_i^2 \propto i^{-\beta}`
  normalised to :math:`\sum_i v_i^2 = 1`.
- :func:`rf_experiment`: random-feature (or kernel) ridge regression on Gaussian data in
  the task's eigenbasis (Gaussian universality made exact): inputs
  :math:`x \sim N(0, I_M)`, target :math:`y = v^\top x + \epsilon`, features
  :math:`\Phi = X \Lambda^{1/2} G^\top / \sqrt{k}` with :math:`G_{ji} \sim N(0, 1)`, so
  that :math:`E_G[\Phi\Phi^\top] = X \Lambda X^\top`. The fitted predictor is linear,
  :math:`\hat\beta = \Lambda^{1/2} G^\top \Phi^\top (\Phi\Phi^\top + \delta I)^{-1} y /
  \sqrt{k}`, so its test risk is exact: :math:`\lVert\hat\beta - v\rVert^2 + \sigma^2`.
- :func:`kernel_eigensystem`: a data set as the population (uniform on its ``N`` points):
  the kernel operator's eigenvalues are ``eigh(K) / N`` and the targets' coefficients
  ``U^T y / sqrt(N)``.
- :func:`krr_experiment`: kernel ridge regression on ``n`` points drawn with replacement
  from that population, the risk measured on all of it (a fresh draw from the population).
- :func:`twin_features`, :func:`twin_rf_experiment`: random features from the last hidden
  layer of a finite twin (``net.module``) of a one-hidden-layer network, whose limit
  kernel is the network's NNGP less the last layer's bias variance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError

__all__ = [
    "kernel_eigensystem",
    "krr_experiment",
    "mean_and_error",
    "power_law_task",
    "rf_experiment",
    "twin_features",
    "twin_rf_experiment",
]


def mean_and_error(samples: Any) -> tuple[float, float]:
    """The mean of ``samples`` and its standard error (``0`` for a single sample)."""
    r = np.asarray(samples, dtype=np.float64).reshape(-1)
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(r.size)) if r.size > 1 else 0.0


def power_law_task(
    n_modes: int = 2000, alpha: float = 1.5, beta: float = 1.3
) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues (M,), target coefficients (M,))`` of the power-law task."""
    if int(n_modes) < 1 or not (alpha > 0 and beta > 0):
        raise HyperparameterError(
            "power_law_task: need n_modes >= 1 and positive exponents, got "
            f"{n_modes}, {alpha}, {beta}"
        )
    i = np.arange(1, int(n_modes) + 1, dtype=np.float64)
    v2 = i**-beta
    return i**-alpha, np.sqrt(v2 / v2.sum())


def _check_counts(where: str, **counts: float) -> None:
    for name, value in counts.items():
        if not (value >= 1):
            raise HyperparameterError(f"{where}: {name} must be at least 1, got {value}")


def rf_experiment(
    eigenvalues: Any,
    target_coefficients: Any,
    n: int,
    n_features: float,
    ridge: float,
    noise: float = 0.0,
    trials: int = 10,
    seed: int = 0,
) -> tuple[float, float]:
    r"""Mean and standard error of the measured test risk over ``trials`` draws.

    ``n_features = inf`` runs kernel ridge regression with :math:`K = X \\Lambda X^\top`.
    Shapes: eigenvalues and coefficients ``(M,)``; cost per trial
    :math:`O(n M k + n^3)`.
    """
    where = "rf_experiment"
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64))
    v = torch.as_tensor(np.asarray(target_coefficients, dtype=np.float64))
    if lam.ndim != 1 or v.shape != lam.shape:
        raise ShapeError(
            f"{where}: eigenvalues and coefficients must both be (M,), got "
            f"{tuple(lam.shape)}, {tuple(v.shape)}"
        )
    _check_counts(where, n=n, n_features=n_features, trials=trials)
    if ridge < 0 or noise < 0:
        raise HyperparameterError(
            f"{where}: ridge and noise must be non-negative, got {ridge}, {noise}"
        )
    gen = torch.Generator().manual_seed(seed)
    root = lam.sqrt()
    risks = []
    for _ in range(int(trials)):
        x = torch.randn(int(n), lam.numel(), generator=gen, dtype=torch.float64)
        y = x @ v + math.sqrt(noise) * torch.randn(int(n), generator=gen, dtype=torch.float64)
        xs = x * root
        if math.isinf(n_features):
            k = xs @ xs.T
            alpha = torch.linalg.solve(k + ridge * torch.eye(int(n), dtype=torch.float64), y)
            beta = root * (xs.T @ alpha)
        else:
            k_f = int(n_features)
            g = torch.randn(k_f, lam.numel(), generator=gen, dtype=torch.float64)
            phi = xs @ g.T / math.sqrt(k_f)
            alpha = torch.linalg.lstsq(
                phi @ phi.T + ridge * torch.eye(int(n), dtype=torch.float64), y[:, None]
            ).solution[:, 0]
            beta = root * (g.T @ (phi.T @ alpha)) / math.sqrt(k_f)
        risks.append(float(((beta - v) ** 2).sum()) + noise)
    return mean_and_error(risks)


def kernel_eigensystem(
    kernel: Any, targets: Any, y: Any = None, *, get: str = "ntk"
) -> tuple[np.ndarray, np.ndarray]:
    """The population eigensystem of a kernel on a data set of ``N`` points.

    Two forms: ``kernel_eigensystem(K, y)`` with a kernel matrix, or
    ``kernel_eigensystem(net, x, y, get="ntk")`` with an nk network, whose kernel
    ``net.kernel(x, get=get)`` (``"nngp"`` or ``"ntk"``) is computed first.

    Args:
        kernel: ``(N, N)`` symmetric kernel matrix, or an nk network.
        targets: ``(N,)`` or ``(N, c)`` targets (with a network: the inputs ``x``).
        y: the targets, with a network only.
        get: which kernel of the network.

    Returns:
        ``eigenvalues (N,)`` (``eigh(K) / N``, round-off negatives clipped to zero) and
        ``coefficients (N,)`` or ``(N, c)`` (``U^T y / sqrt(N)``), in decreasing order;
        what :func:`~neural_kernels.theory.krr_risk` and
        :func:`~neural_kernels.theory.rf_risk` take.

    """
    if hasattr(kernel, "kernel") and not isinstance(kernel, Tensor):
        if y is None or get not in ("nngp", "ntk"):
            raise HyperparameterError(
                "kernel_eigensystem: with a network pass (net, x, y, get='nngp' or 'ntk'), "
                f"got y={'None' if y is None else 'given'}, get={get!r}"
            )
        x = torch.as_tensor(targets)
        kernel, targets = getattr(kernel.kernel(x, get=get), get), y
    elif y is not None:
        raise ShapeError(
            "kernel_eigensystem: a third argument (y) goes with a network, not a kernel matrix"
        )
    k = torch.as_tensor(kernel).double()
    y = torch.as_tensor(targets).double()
    n = k.shape[0]
    if k.ndim != 2 or k.shape[1] != n or y.shape[0] != n:
        raise ShapeError(
            "kernel_eigensystem: need a square (N, N) kernel and (N, ...) targets, got "
            f"{tuple(k.shape)}, {tuple(y.shape)}"
        )
    w, u = torch.linalg.eigh((k + k.T) / 2)
    w, u = w.flip(0), u.flip(1)
    coef = u.T @ y / math.sqrt(n)
    return (w / n).clamp_min(0).numpy(), coef.numpy()


def krr_experiment(
    kernel: Tensor, targets: Tensor, n: int, ridge: float, trials: int = 10, seed: int = 0
) -> tuple[float, float]:
    r"""Mean and standard error of kernel ridge regression's risk on the population.

    Each trial draws ``n`` training indices with replacement from the ``N`` points, fits
    :math:`\alpha = (K_{nn} + \\delta I)^{-1} y_n` and measures the squared error of
    :math:`K_{Nn}\alpha` on all ``N`` points (averaged over outputs).
    """
    _check_counts("krr_experiment", n=n, trials=trials)
    k = torch.as_tensor(kernel).double()
    y = torch.as_tensor(targets).double()
    y = y[:, None] if y.ndim == 1 else y
    gen = torch.Generator().manual_seed(seed)
    risks = []
    for _ in range(int(trials)):
        idx = torch.randint(0, k.shape[0], (int(n),), generator=gen)
        knn = k[idx][:, idx]
        alpha = torch.linalg.lstsq(
            knn + ridge * torch.eye(int(n), dtype=torch.float64), y[idx]
        ).solution
        risks.append(float(((k[:, idx] @ alpha - y) ** 2).mean()))
    return mean_and_error(risks)


def _last_dense(net: Any) -> Any:
    layers = getattr(net, "layers", None)
    from ..layers import Dense

    if not layers or not isinstance(layers[-1], Dense):
        raise LayerCompatibilityError(
            f"twin_features: the network must be a Sequential ending in Dense, got {net!r}"
        )
    return layers[-1]


def twin_features(net: Any, x: Tensor, width: int, seed: int = 0) -> Tensor:
    r"""Random features ``(N, width)`` of a finite twin's last hidden layer.

    The features are the last hidden layer's activations times ``w_std / sqrt(width)`` of
    the final Dense, so :math:`\\Phi\\Phi^\top` tends to the NNGP of ``net`` less the final
    layer's ``b_std^2``. Only the layers before the final Dense are sampled at ``width``.
    """
    last = _last_dense(net)
    _check_counts("twin_features", width=width)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = net.module(tuple(x.shape[1:]), width=int(width)).to(x.dtype)
    with torch.no_grad():
        h = module[:-1](x)
    return h.reshape(h.shape[0], -1) * (last.w_std / math.sqrt(h.shape[-1]))


def twin_rf_experiment(
    net: Any,
    x: Tensor,
    targets: Tensor,
    n: int,
    width: int,
    ridge: float,
    trials: int = 10,
    seed: int = 0,
) -> tuple[float, float]:
    """Random-feature ridge regression with :func:`twin_features` on a data set as population.

    Each trial samples a fresh twin (the features) and ``n`` training indices with
    replacement; the risk is measured on all ``N`` points, averaged over outputs.
    """
    _check_counts("twin_rf_experiment", n=n, trials=trials)
    y = torch.as_tensor(targets).double()
    y = y[:, None] if y.ndim == 1 else y
    gen = torch.Generator().manual_seed(seed)
    risks = []
    for t in range(int(trials)):
        phi = twin_features(net, x.double(), width, seed=seed * 1000 + t)
        idx = torch.randint(0, x.shape[0], (int(n),), generator=gen)
        pn = phi[idx]
        alpha = torch.linalg.lstsq(
            pn @ pn.T + ridge * torch.eye(int(n), dtype=torch.float64), y[idx]
        ).solution
        risks.append(float(((phi @ (pn.T @ alpha) - y) ** 2).mean()))
    return mean_and_error(risks)
