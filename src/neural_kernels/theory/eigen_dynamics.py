r"""Gradient descent along the NTK's eigendirections: theory against trained networks.

For full-batch gradient flow on :math:`\frac{1}{2N}\sum (f - y)^2` (``N`` the targets'
size, time :math:`\tau` = steps x learning rate) a network in the kernel regime keeps
its NTK :math:`\Theta` fixed, so the training residual :math:`r = f(X) - y` obeys
:math:`\dot r = -\Theta r / N`: along each eigenvector :math:`u_i` of :math:`\Theta` with
eigenvalue :math:`\lambda_i`,

.. math:: u_i^\top r(\tau) = e^{-\lambda_i \tau / N}\, u_i^\top r(0).

:func:`eigendirection_dynamics` trains finite twins of growing width (NTK
parametrization) by plain gradient descent and records, for the top eigendirections of
the infinite-width NTK, the measured ratio :math:`u_i^\top r(\tau) / u_i^\top r(0)`
against :math:`e^{-\lambda_i \tau / N}` (for a discrete step :math:`\eta`, the exact
factor :math:`(1 - \eta \lambda_i / N)^{\tau/\eta}`, used here). The gap shrinks as the
width grows, like :math:`1/\sqrt{\text{width}}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import HyperparameterError, ShapeError

__all__ = ["EigenDynamics", "eigendirection_dynamics"]


@dataclass(frozen=True)
class EigenDynamics:
    r"""Measured and predicted residual ratios along the NTK's top eigendirections.

    Attributes:
        eigenvalues: ``(m,)`` the top ``m`` eigenvalues of the infinite-width NTK.
        times: ``(T,)`` the recorded times :math:`\tau` (steps x learning rate).
        theory: ``(T, m)`` predicted ratios :math:`(1 - \\eta\\lambda_i/N)^{\tau/\\eta}`.
        measured: width -> ``(T, m)`` ratios measured on trained twins (mean over seeds).
        gap: width -> the residual's deviation from the theory along the followed
            directions, :math:`\\max_i |u_i^\top r(\tau) - \rho_i(\tau) u_i^\top r(0)| /
            \\lVert u^\top r(0) \rVert`, averaged over recorded times and seeds.

    """

    eigenvalues: np.ndarray
    times: np.ndarray
    theory: np.ndarray
    measured: dict[int, np.ndarray] = field(default_factory=dict)
    gap: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "eigenvalues": self.eigenvalues.tolist(),
            "times": self.times.tolist(),
            "theory": self.theory.tolist(),
            "measured": {str(w): m.tolist() for w, m in self.measured.items()},
            "gap": {str(w): g for w, g in self.gap.items()},
        }


def eigendirection_dynamics(
    net: Any,
    x: Tensor,
    y: Tensor,
    widths: tuple[int, ...] = (64, 256, 1024),
    steps: int | None = None,
    n_directions: int = 4,
    n_times: int = 8,
    seeds: int = 2,
    learning_rate: float | None = None,
) -> EigenDynamics:
    """Train twins of ``net`` at each width and compare their residuals with the theory.

    Args:
        net: an nk network in the NTK parametrization with one output.
        x: training inputs ``(n, d)``.
        y: targets ``(n, 1)``.
        widths: widths of the finite twins.
        steps: gradient-descent steps. Default: enough for the slowest followed direction
            to decay by ``e^{-3}`` in theory.
        n_times: how many times to record, evenly spaced over the steps.
        n_directions: how many top eigendirections to follow.
        seeds: twins per width (ratios averaged).
        learning_rate: step size; default ``N / (2 lambda_max)`` (a quarter of the
            stability limit ``2N / lambda_max``).

    Returns:
        An :class:`EigenDynamics`.

    """
    from ..empirical import train_mse

    x = torch.as_tensor(x).double()
    y = torch.as_tensor(y).double()
    if y.ndim != 2 or y.shape != (x.shape[0], 1):
        raise ShapeError(
            f"eigendirection_dynamics: y must be (n, 1) for x of {x.shape[0]} rows, "
            f"got {tuple(y.shape)}"
        )
    if (
        not widths
        or any(int(w) < 1 for w in widths)
        or (steps is not None and steps < 1)
        or seeds < 1
        or n_times < 1
    ):
        raise HyperparameterError(
            "eigendirection_dynamics: widths, steps, seeds and n_times must be positive, got "
            f"{widths}, {steps}, {seeds}, {n_times}"
        )
    n_data = y.numel()
    theta = net.kernel(x, get="ntk").ntk.double()
    lam, u = torch.linalg.eigh(theta)
    lam, u = lam.flip(0)[:n_directions], u.flip(1)[:, :n_directions]
    lr = float(learning_rate) if learning_rate is not None else n_data / (2.0 * float(lam[0]))
    if not (lr > 0 and math.isfinite(lr)):
        raise HyperparameterError(
            f"eigendirection_dynamics: learning_rate must be positive, got {lr}"
        )
    if steps is None:
        steps = max(1, math.ceil(3.0 * n_data / (lr * float(lam[-1]))))
    marks = np.unique(np.linspace(0, steps, n_times + 1).round().astype(int))[1:]
    times = marks * lr
    theory = (1.0 - lr * lam.numpy()[None, :] / n_data) ** marks[:, None]
    measured: dict[int, np.ndarray] = {}
    gap: dict[int, float] = {}
    for w in widths:
        ratios = np.zeros((len(marks), len(lam)))
        total = 0.0
        for s in range(seeds):
            with torch.random.fork_rng():
                torch.manual_seed(1000 * s + int(w))
                model = net.module(tuple(x.shape[1:]), width=int(w)).double()
            with torch.no_grad():
                r0 = u.T @ (model(x) - y)[:, 0]
            done = 0
            for i, m in enumerate(marks):
                train_mse(model, x, y, learning_rate=lr, steps=int(m - done))
                done = int(m)
                with torch.no_grad():
                    ri = u.T @ (model(x) - y)[:, 0]
                ratios[i] += (ri / r0).numpy()
                dev = (ri - torch.as_tensor(theory[i]) * r0).abs().max() / r0.norm()
                total += float(dev) / seeds
        measured[int(w)] = ratios / seeds
        gap[int(w)] = total / len(marks)
    return EigenDynamics(lam.numpy(), times, theory, measured, gap)
