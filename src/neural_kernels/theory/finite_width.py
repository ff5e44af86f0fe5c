r"""Order-``1/n`` corrections of a wide fully connected network (Roberts, Yaida, Hanin).

Conventions (the book's): ``z^(1) = b + W x``, ``z^(l+1) = b + W s(z^(l))`` with
``Var b = C_b = b_std^2`` and ``Var W = C_W / n_{l-1}`` (``C_W = w_std^2``), i.e. the
nk network ``Sequential(Dense(n1, w_std, b_std), act, ..., Dense(nL, w_std, b_std))``.

**The Gram chain.** Given the layer below, the Gram matrix of the preactivations

.. math::
    G^{(l+1)} = C_b + \frac{C_W}{n_l} \sum_{j=1}^{n_l} s(z_j) s(z_j)^\top, \qquad
    z_j \sim \mathcal N(0, G^{(l)}) \text{ i.i.d.},

is a Markov chain. With :math:`u` the unique entries of :math:`G`,
:math:`F(u) = C_b + C_W \langle s s\rangle_u`, :math:`J = \partial F/\partial u` and
:math:`H = \partial^2 F/\partial u^2` (autograd on the activation's own dual, float64),

.. math::
    V^{(l+1)} = C_W^2 \operatorname{Cov}_K[s_a s_b, s_c s_d]
        + \frac{n_l}{n_{l-1}} J V^{(l)} J^\top, \qquad
    K_1^{(l+1)} = J K_1^{(l)} + \tfrac12 H : V^{(l)} \frac{n_l}{n_{l-1}},

with :math:`V^{(1)} = K_1^{(1)} = 0`, so that :math:`\mathbb E[G^{(l)}] = K^{(l)} +
K_1^{(l)}/n_{l-1} + O(n^{-2})` and :math:`\operatorname{Cov}(G_{ab}, G_{cd}) =
V^{(l)}_{(ab)(cd)}/n_{l-1} + O(n^{-2})` (the widths' ratios vanish when all hidden
widths are equal). :math:`V/n` is also the connected four-point function of two
different neurons; one neuron's fourth cumulant is :math:`3V/n`.

**The NTK** (learning rates of the NTK parametrization, :math:`\lambda_W = C_W`,
:math:`\lambda_b = C_b`): mean :math:`\Theta^{(l+1)} = \lambda_b + \lambda_W \langle s
s\rangle + C_W \langle s' s'\rangle \Theta^{(l)}`, and for each input alone the
fluctuations :math:`A/n = \operatorname{Cov}(\Theta_{ii}, \Theta_{kk})`,
:math:`B/n = \mathbb E[\Theta_{ik}^2]` (:math:`i \ne k`), :math:`D/n =
\operatorname{Cov}(\Theta_{ii}, z_k^2)`, all zero at ``l = 1``:

.. math::
    A' &= \operatorname{Var}(X) + \varphi^2 V + 2\varphi\chi_\perp D + \chi_\perp^2 A, \\
    D' &= C_W \operatorname{Cov}(X, s^2) + \chi_\parallel \varphi V
          + \chi_\parallel\chi_\perp D, \\
    B' &= C_W^2 \langle s'^4\rangle \Theta^2 + \chi_\perp^2 B,

with :math:`X = \lambda_W s^2 + C_W \Theta s'^2`, :math:`\delta\langle f\rangle = \langle
f (z^2 - K)\rangle / (2K^2)`, :math:`\varphi = \lambda_W \delta\langle s^2\rangle + C_W
\Theta \delta\langle s'^2\rangle`, :math:`\chi_\parallel = C_W \delta\langle s^2\rangle`,
:math:`\chi_\perp = C_W \langle s'^2\rangle`. Then :math:`\operatorname{Var}
\Theta_{ii} = (A + 2B)/n`.

Scaling with width: ``K`` and ``Theta`` are ``O(1)``; the mean shift ``K1/n``, the
covariance ``V/n`` and ``(A + 2B)/n`` are ``O(1/n)``; at criticality ``V/(n K^2)`` and
friends grow like ``L/n`` (linearly in depth), away from it exponentially.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import given
from ..errors import ParametrizationError, describe
from ..layers import Elementwise, Layer
from ._gauss import derivative, expect_1d, gauss_points
from ._network import Chain, check_inputs, input_gram, read_chain

__all__ = ["FiniteWidth", "finite_width"]

_WHERE = "nk.theory.finite_width"


@dataclass(frozen=True)
class FiniteWidth:
    """Leading kernels and their ``1/n`` corrections at every layer ``l = 1..L``.

    Attributes:
        K: ``(L, P, P)`` leading-order NNGP kernel ``K^(l)`` (width independent).
        K1: ``(L, P, P)`` mean correction: ``E[G^(l)] = K + K1 / widths[l]``.
        V: ``(L, P, P, P, P)`` four-point vertex: ``Cov(G_ab, G_cd) = V / widths[l]``.
        ntk: ``(L, P, P)`` mean NTK ``Theta^(l)`` (NTK parametrization).
        A: ``(L, P)`` NTK fluctuation ``n Cov(Theta_ii, Theta_kk)`` of each input alone.
        B: ``(L, P)`` NTK fluctuation ``n E[Theta_ik^2]`` (``i != k``).
        D: ``(L, P)`` NTK-kernel cross term ``n Cov(Theta_ii, z_k^2)``.
        widths: ``n_{l-1}``, the width that normalises layer ``l`` (``n_0`` is the input
            dimension at ``l = 1``, where every correction is zero).

    """

    K: Tensor
    K1: Tensor
    V: Tensor
    ntk: Tensor
    A: Tensor
    B: Tensor
    D: Tensor
    widths: tuple[int, ...]

    def _n(self, like: Tensor) -> Tensor:
        n = torch.tensor(self.widths, dtype=like.dtype)
        return n.view(-1, *[1] * (like.dim() - 1))

    def mean(self) -> Tensor:
        """``E[G^(l)] = K + K1/n`` to order ``1/n``; ``(L, P, P)``."""
        return self.K + self.K1 / self._n(self.K1)

    def covariance(self) -> Tensor:
        """``Cov(G_ab, G_cd) = V/n`` to order ``1/n``; ``(L, P, P, P, P)``."""
        return self.V / self._n(self.V)

    def variance(self) -> Tensor:
        """``Var(G_ab) = V_(ab)(ab)/n``; ``(L, P, P)``."""
        p = self.K.shape[-1]
        flat = self.covariance().reshape(self.K.shape[0], p * p, p * p)
        return torch.diagonal(flat, dim1=1, dim2=2).reshape(self.K.shape)

    def normalized_variance(self) -> Tensor:
        """``Var(G_aa) / K_aa^2`` of each input; ``(L, P)`` (``5(l-1)/n`` for ReLU)."""
        var = torch.diagonal(self.variance(), dim1=1, dim2=2)
        return var / torch.diagonal(self.K, dim1=1, dim2=2) ** 2

    def ntk_variance(self) -> Tensor:
        """``Var(Theta_ii) = (A + 2B)/n`` of each input; ``(L, P)``."""
        return (self.A + 2.0 * self.B) / self._n(self.A)

    def ntk_relative_variance(self) -> Tensor:
        """``Var(Theta_ii) / Theta_ii^2``; ``(L, P)``."""
        return self.ntk_variance() / torch.diagonal(self.ntk, dim1=1, dim2=2) ** 2


def _entries(p: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(p) for b in range(a, p)]


def _pack(k: Tensor, idx: list[tuple[int, int]]) -> Tensor:
    rows = torch.tensor([a for a, _ in idx])
    cols = torch.tensor([b for _, b in idx])
    return k[rows, cols]


def _unpack(u: Tensor, idx: list[tuple[int, int]], p: int) -> Tensor:
    out = torch.zeros(p, p, dtype=u.dtype)
    for m, (a, b) in enumerate(idx):
        out[a, b] = out[b, a] = u[m]
    return out


def layer_map(
    act: Elementwise, cw: float, cb: float, idx: list[tuple[int, int]]
) -> Callable[[Tensor], Tensor]:
    """``F(u) = C_b + C_W <s_a s_b>_u`` on the unique entries ``u`` (the activation's dual)."""
    pos = {pair: m for m, pair in enumerate(idx)}
    ia = torch.tensor([pos[(a, a)] for a, _ in idx])
    ib = torch.tensor([pos[(b, b)] for _, b in idx])

    def fmap(u: Tensor) -> Tensor:
        return cb + cw * act.dual(u, u[ia], u[ib], False)[0]

    return fmap


def jacobian_hessian(fmap: Callable[[Tensor], Tensor], u: Tensor) -> tuple[Tensor, Tensor]:
    """``J`` ``(M, M)`` and ``H`` ``(M, M, M)`` (output first) of ``fmap`` at ``u``, autograd."""
    from torch.autograd.functional import jacobian

    with torch.enable_grad():
        jac = jacobian(fmap, u)
        hess = jacobian(lambda v: jacobian(fmap, v, create_graph=True), u)
    return jac.detach(), hess.detach()


def _moments(act: Elementwise, k: Tensor, idx: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """``E[s_a s_b]`` ``(M,)`` and ``E[s_a s_b s_c s_d]`` ``(M, M)`` under ``N(0, k)``."""
    m = len(idx)
    second = torch.zeros(m, dtype=torch.float64)
    fourth = torch.zeros(m, m, dtype=torch.float64)
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
    for i in range(m):
        groups[tuple(sorted(set(idx[i])))].append((i, -1))
        for j in range(i, m):
            groups[tuple(sorted(set(idx[i] + idx[j])))].append((i, j))
    for points, jobs in groups.items():
        sel = torch.tensor(points)
        z, w = gauss_points(k[sel][:, sel])
        s = act.fn(z)
        local = {p: n for n, p in enumerate(points)}
        for i, j in jobs:
            cols = [local[t] for t in idx[i] + (idx[j] if j >= 0 else ())]
            value = (w * s[:, cols].prod(-1)).sum()
            if j < 0:
                second[i] = value
            else:
                fourth[i, j] = fourth[j, i] = value
    return second, fourth


@dataclass(frozen=True)
class _SingleAverages:
    """Gaussian averages of one input used by the NTK fluctuations."""

    s2: float
    d_s2: float
    d_sp2: float
    sp2: float
    var_x: float
    cov_x_s2: float
    sp4: float


def _single(act: Elementwise, k: float, theta: float, lam: float, cw: float) -> _SingleAverages:
    z, w = expect_1d(k)
    s = act.fn(z)
    sp = derivative(act.fn, z)
    s2, sp2 = s * s, sp * sp
    x = lam * s2 + cw * theta * sp2
    mean_x = float((w * x).sum())
    scale = 0.0 if k <= 0.0 else 1.0 / (2.0 * k * k)
    dev = z * z - k
    return _SingleAverages(
        s2=float((w * s2).sum()),
        d_s2=float((w * s2 * dev).sum()) * scale,
        d_sp2=float((w * sp2 * dev).sum()) * scale,
        sp2=float((w * sp2).sum()),
        var_x=float((w * x * x).sum()) - mean_x**2,
        cov_x_s2=float((w * x * s2).sum()) - mean_x * float((w * s2).sum()),
        sp4=float((w * sp2 * sp2).sum()),
    )


def _check_ntk_parametrization(chain: Chain, net: Layer) -> None:
    for p in chain.parametrizations:
        if p != "ntk":
            raise ParametrizationError(
                describe(
                    _WHERE,
                    f"a Dense layer with parametrization={p!r} in {net!r}",
                    "The NTK recursions use the NTK parametrization: build the Dense "
                    "layers with parametrization='ntk'.",
                )
            )


def _ntk_step(act: Elementwise, cw: float, cb: float, k: Tensor, theta: Tensor) -> Tensor:
    diag = torch.diagonal(k)
    nngp, dot = act.dual(k, diag[:, None], diag[None, :], True)
    return cb + cw * nngp + cw * given(dot, "the derivative dual") * theta


def finite_width(net: Layer, x: Tensor) -> FiniteWidth:
    """Leading kernels, their ``1/n`` corrections and NTK fluctuations, layer by layer.

    Args:
        net: ``nk.Sequential(Dense, act, Dense, ..., act, Dense)`` (NTK parametrization
            for the NTK parts); the hidden widths are the Dense layers' ``out_features``.
        x: inputs ``(P, n0)``; the four-point vertex costs ``O(P^4)`` integrals, with
            three- and four-point integrals by tensor Gauss-Hermite (keep ``P`` small).

    Returns:
        A :class:`FiniteWidth` with tensors of leading axis ``L`` (layers ``1..L``).

    Raises:
        LayerCompatibilityError: a layer the recursions do not cover (named).
        ParametrizationError: a Dense layer in the standard parametrization.

    """
    chain = read_chain(net, _WHERE)
    _check_ntk_parametrization(chain, net)
    x = check_inputs(x, _WHERE)
    p = x.shape[0]
    idx = _entries(p)
    m = len(idx)
    k = input_gram(chain, x)
    theta = chain.cb[0] + chain.cw[0] * (x @ x.T) / x.shape[1]
    cov = torch.zeros(m, m, dtype=torch.float64)  # Cov(u_p, u_q), not yet width-scaled
    shift = torch.zeros(m, dtype=torch.float64)  # E[u] - K
    a_fl = torch.zeros(p, dtype=torch.float64)  # A/n etc., per input
    b_fl = torch.zeros(p, dtype=torch.float64)
    d_fl = torch.zeros(p, dtype=torch.float64)
    widths = [int(x.shape[1])]
    ks, shifts, covs, thetas, aa, bb, dd = [k], [shift], [cov], [theta], [a_fl], [b_fl], [d_fl]
    for layer in range(chain.depth - 1):
        act, cw, cb = chain.acts[layer], chain.cw[layer + 1], chain.cb[layer + 1]
        n = chain.widths[layer]
        u = _pack(k, idx)
        fmap = layer_map(act, cw, cb, idx)
        jac, hess = jacobian_hessian(fmap, u)
        second, fourth = _moments(act, k, idx)
        c4 = cw * cw * (fourth - second[:, None] * second[None, :])
        new_cov = c4 / n + jac @ cov @ jac.T
        new_shift = jac @ shift + 0.5 * torch.einsum("epq,pq->e", hess, cov)
        # Single-input NTK fluctuations (v = Var(G_aa), all quantities already / n).
        var_g = torch.stack([cov[idx.index((a, a)), idx.index((a, a))] for a in range(p)])
        new_a, new_b, new_d = (torch.zeros(p, dtype=torch.float64) for _ in range(3))
        for a in range(p):
            avg = _single(act, float(k[a, a]), float(theta[a, a]), cw, cw)
            chi_par, chi_perp = cw * avg.d_s2, cw * avg.sp2
            phi = cw * avg.d_s2 + cw * float(theta[a, a]) * avg.d_sp2
            v = float(var_g[a])
            new_a[a] = (
                avg.var_x / n
                + phi * phi * v
                + 2 * phi * chi_perp * float(d_fl[a])
                + chi_perp**2 * float(a_fl[a])
            )
            new_d[a] = (
                cw * avg.cov_x_s2 / n + chi_par * phi * v + chi_par * chi_perp * float(d_fl[a])
            )
            new_b[a] = cw * cw * avg.sp4 * float(theta[a, a]) ** 2 / n + chi_perp**2 * float(
                b_fl[a]
            )
        theta = _ntk_step(act, cw, cb, k, theta)
        k = _unpack(fmap(u).detach(), idx, p)
        cov, shift, a_fl, b_fl, d_fl = new_cov, new_shift, new_a, new_b, new_d
        widths.append(n)
        ks.append(k)
        shifts.append(shift)
        covs.append(cov)
        thetas.append(theta)
        aa.append(a_fl)
        bb.append(b_fl)
        dd.append(d_fl)
    nvec = torch.tensor(widths, dtype=torch.float64)
    big = torch.zeros(len(ks), p, p, p, p, dtype=torch.float64)
    for lay, c in enumerate(covs):
        for i, (a, b) in enumerate(idx):
            for j, (c_, d) in enumerate(idx):
                val = c[i, j] * nvec[lay]
                for s, t in {(a, b), (b, a)}:
                    for q, r in {(c_, d), (d, c_)}:
                        big[lay, s, t, q, r] = val
    return FiniteWidth(
        K=torch.stack(ks),
        K1=torch.stack([_unpack(s, idx, p) for s in shifts]) * nvec.view(-1, 1, 1),
        V=big,
        ntk=torch.stack(thetas),
        A=torch.stack(aa) * nvec.view(-1, 1),
        B=torch.stack(bb) * nvec.view(-1, 1),
        D=torch.stack(dd) * nvec.view(-1, 1),
        widths=tuple(widths),
    )
