r"""Criticality and universality classes of an activation (Roberts, Yaida, Hanin, ch. 5).

For one input the kernel recursion :math:`K' = C_b + C_W \langle s^2\rangle_K` has the
susceptibilities

.. math::
    \chi_\parallel(K) = \frac{C_W}{2K^2}\langle s^2 (z^2 - K)\rangle_K, \qquad
    \chi_\perp(K) = C_W \langle s'^2\rangle_K,

and a network is critical when, at a fixed point :math:`K^*`, both equal one: then
kernels neither explode nor vanish with depth and every finite-width correction grows
only like ``L/n``. The classes:

- **scale-invariant** (:math:`s = a_+ z` for ``z > 0``, :math:`a_- z` otherwise): ``C_b
  = 0``, :math:`C_W = 2/(a_+^2 + a_-^2)`; every ``K`` is a fixed point.
- **K* = 0** (:math:`s(0) = 0`, :math:`s'(0) \ne 0`): ``C_b = 0``, :math:`C_W =
  1/s'(0)^2`, provided :math:`a_1 = s'''(0)/s'(0) + \tfrac34 (s''(0)/s'(0))^2 < 0`;
  then :math:`K^{(l)} \sim 1/(-a_1 l)` (tanh: ``a_1 = -2``).
- **half-stable**: a fixed point :math:`K^* > 0` with :math:`\chi_\parallel = \chi_\perp
  = 1` and :math:`C_b \ge 0` (SiLU/SWISH, GELU).
- **none**: no such point (sigmoid, softplus, monomials).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import LayerCompatibilityError, describe
from ..layers import Elementwise
from ._gauss import derivative, expect_1d

__all__ = ["Criticality", "criticality", "depth_profile", "susceptibilities"]

_WHERE = "nk.theory.criticality"


@dataclass(frozen=True)
class Criticality:
    r"""The critical initialisation of an activation and its universality class.

    Attributes:
        universality: ``"scale-invariant"``, ``"K*=0"``, ``"half-stable"`` or ``"none"``.
        w_std: critical weight standard deviation ``sqrt(C_W)`` (``None`` for ``"none"``).
        b_std: critical bias standard deviation ``sqrt(C_b)``.
        fixed_point: ``K*`` (``None`` when every ``K`` is fixed: scale-invariant).
        chi_parallel: :math:`\chi_\parallel` at the fixed point (``1`` when critical).
        chi_perp: :math:`\chi_\perp` at the fixed point.
        a1: the ``K* = 0`` class's coefficient (``None`` otherwise).

    """

    universality: str
    w_std: float | None
    b_std: float | None
    fixed_point: float | None
    chi_parallel: float | None
    chi_perp: float | None
    a1: float | None = None


def _check(activation: object) -> Elementwise:
    if not isinstance(activation, Elementwise):
        raise LayerCompatibilityError(
            describe(
                _WHERE,
                f"{activation!r}, not an elementwise activation",
                "Pass an activation layer such as nk.ReLU() or nk.Tanh().",
            )
        )
    return activation


def _averages(act: Elementwise, k: float) -> tuple[float, float, float]:
    """``<s^2>``, ``<s'^2>`` and ``<s^2 (z^2 - K)>/(2K^2)`` at ``K``."""
    z, w = expect_1d(k)
    s = act.fn(z)
    sp = derivative(act.fn, z)
    s2 = float((w * s * s).sum())
    sp2 = float((w * sp * sp).sum())
    d_s2 = float((w * s * s * (z * z - k)).sum()) / (2.0 * k * k)
    return s2, sp2, d_s2


def susceptibilities(
    activation: Elementwise, k: float, w_std: float, b_std: float = 0.0
) -> tuple[float, float, float]:
    """``(K', chi_parallel, chi_perp)`` of one layer at the single-input kernel ``k > 0``."""
    act = _check(activation)
    cw = w_std * w_std
    s2, sp2, d_s2 = _averages(act, float(k))
    return b_std * b_std + cw * s2, cw * d_s2, cw * sp2


def _taylor(act: Elementwise, order: int) -> list[float]:
    """``s(0), s'(0), ..., s^(order)(0)`` by nested autograd."""
    with torch.enable_grad():
        x = torch.zeros((), dtype=torch.float64, requires_grad=True)
        y = act.fn(x)
        out = [float(y.detach())]
        for _ in range(order):
            (y,) = torch.autograd.grad(y, x, create_graph=True)
            out.append(float(y.detach()))
            if not y.requires_grad:
                out += [0.0] * (order + 1 - len(out))
                break
    return out


def _half_stable(act: Elementwise) -> tuple[float, float, float] | None:
    """``(K*, C_W, C_b)`` with ``chi_par = chi_perp = 1`` and ``C_b >= 0``, if any."""
    from scipy.optimize import brentq

    def gap(log_k: float) -> float:
        k = math.exp(log_k)
        _, sp2, d_s2 = _averages(act, k)
        return d_s2 / sp2 - 1.0

    grid = np.linspace(math.log(1e-3), math.log(1e3), 121)
    values = [gap(float(t)) for t in grid]
    for lo, hi, vlo, vhi in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
        if not (np.isfinite(vlo) and np.isfinite(vhi)) or vlo * vhi > 0:
            continue
        k = math.exp(brentq(gap, float(lo), float(hi), xtol=1e-14, rtol=1e-14))
        s2, sp2, _ = _averages(act, k)
        cw = 1.0 / sp2
        cb = k - cw * s2
        if cb >= -1e-12:
            return k, cw, max(cb, 0.0)
    return None


def criticality(activation: Elementwise) -> Criticality:
    """The critical ``(w_std, b_std)``, universality class, fixed point and susceptibilities.

    Args:
        activation: an elementwise activation layer (its ``fn`` is differentiated by
            autograd and integrated against Gaussians).

    Returns:
        A :class:`Criticality`.

    Raises:
        LayerCompatibilityError: ``activation`` is not an elementwise activation.

    """
    act = _check(activation)
    slopes = act.arccos_slopes()
    if slopes is not None:
        a_minus, a_plus = slopes
        a2 = 0.5 * (a_plus**2 + a_minus**2)
        if a2 > 0:
            return Criticality("scale-invariant", math.sqrt(1.0 / a2), 0.0, None, 1.0, 1.0)
    s0, s1, s2, s3 = _taylor(act, 3)
    tol = 1e-12
    if abs(s0) <= tol and abs(s1) > tol:
        a1 = s3 / s1 + 0.75 * (s2 / s1) ** 2
        if a1 < 0:
            return Criticality("K*=0", 1.0 / abs(s1), 0.0, 0.0, 1.0, 1.0, a1)
    found = _half_stable(act)
    if found is not None:
        k, cw, cb = found
        _, chi_par, chi_perp = susceptibilities(act, k, math.sqrt(cw), math.sqrt(cb))
        return Criticality("half-stable", math.sqrt(cw), math.sqrt(cb), k, chi_par, chi_perp)
    return Criticality("none", None, None, None, None, None)


def depth_profile(
    activation: Elementwise,
    depth: int,
    width: int,
    w_std: float,
    b_std: float = 0.0,
    k0: float = 1.0,
) -> dict[str, Tensor]:
    """Normalised finite-width corrections of one input against depth (the L/n plot).

    Builds ``Sequential(Dense, act, ..., Dense)`` with ``depth`` Dense layers of width
    ``width`` and runs :func:`~neural_kernels.theory.finite_width` on an input with
    ``K^(1) = k0``.

    Returns:
        ``{"depth_over_width": (L,), "kernel": (L,), "vertex": V/(n K^2) (L,),
        "mean_shift": K1/(n K) (L,), "ntk_variance": Var(Theta)/Theta^2 (L,)}``.

    """
    from ._network import chain_network
    from .finite_width import finite_width

    act = _check(activation)
    net = chain_network(act, depth, width, w_std, b_std)
    cw0 = w_std * w_std
    x = torch.tensor([[math.sqrt(max(k0 - b_std * b_std, 0.0) / cw0)]], dtype=torch.float64)
    fw = finite_width(net, x)
    n = torch.tensor(fw.widths, dtype=torch.float64)
    k = fw.K[:, 0, 0]
    return {
        "depth_over_width": torch.arange(1, depth + 1, dtype=torch.float64) / width,
        "kernel": k,
        "vertex": fw.normalized_variance()[:, 0],
        "mean_shift": fw.K1[:, 0, 0] / (n * k),
        "ntk_variance": fw.ntk_relative_variance()[:, 0],
    }
