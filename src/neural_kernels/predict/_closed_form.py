r"""The closed-form predictor shared by GP inference and gradient-descent MSE dynamics.

A :class:`Predictor` holds the train-train kernels by name and factorises each
regularised one at most once (:class:`Factor`: a Cholesky factor for :math:`t = \infty`,
an eigendecomposition for finite times), then serves any number of predictions
(see :mod:`neural_kernels.predict` for the formulas).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from .._validation import as_tensor, parse_get
from ..errors import HyperparameterError, ShapeError, SingularKernelError, describe
from ._cg import CGFactor, SolveInfo, cg_options
from ._inputs import (
    BARE,
    Kernels,
    check_test,
    check_test_test,
    dynamics_of,
    offset,
    prior_of,
)
from ._results import Gaussian

SOLVERS = ("cholesky", "cg")


def sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.mT)


def _max_abs_and_asymmetry(a: Tensor, rows: int = 512) -> tuple[float, float]:
    """``max |A|`` and ``max |A - A^T|``, a block of rows at a time (no n x n temporary)."""
    scale = asym = 0.0
    for start in range(0, a.shape[0], rows):
        block = a[start : start + rows]
        scale = max(scale, float(block.max()), -float(block.min()))
        asym = max(asym, float((block - a[:, start : start + rows].mT).abs().max()))
    return scale, asym


# ----------------------------------------------------------------------------------------
# Factorisations of a regularised train-train kernel
# ----------------------------------------------------------------------------------------


class Factor:
    """Cholesky factor and eigendecomposition of one regularised kernel, each made once."""

    def __init__(self, a: Tensor, diag_reg: float, absolute: bool, label: str, where: str) -> None:
        n = a.shape[0]
        scale, asym = _max_abs_and_asymmetry(a.detach())
        if not asym <= max(1e-4, 100 * torch.finfo(a.dtype).eps) * scale:
            raise SingularKernelError(
                describe(
                    where,
                    f"{label} is not symmetric (max |A - A^T| = {asym:.3g}, max |A| = {scale:.3g})",
                    "Pass the train-train kernel k(x_train, x_train), e.g. net.kernel(x_train).",
                )
            )
        self.a, self.n, self.label, self.where = a, n, label, where
        self.symmetric = asym == 0.0
        self.diag_reg, self.absolute = diag_reg, absolute
        self.shift = diag_reg if absolute else diag_reg * torch.diagonal(a).sum() / n

    def regularised(self) -> Tensor:
        """The regularised kernel ``(A + A^T)/2 + shift * I`` (a fresh tensor)."""
        if self.a.requires_grad:
            reg = sym(self.a)
            if self.diag_reg == 0:
                return reg
            return reg + torch.diag_embed(torch.as_tensor(self.shift).to(reg).expand(self.n))
        reg = self.a + self.a.mT  # one n x n buffer, updated in place
        reg.mul_(0.5)
        if self.diag_reg != 0:
            reg.diagonal().add_(self.shift)
        return reg

    def _singular(self, detail: str) -> SingularKernelError:
        return SingularKernelError(
            describe(
                self.where,
                f"the {self.label} train-train kernel ({self.n} x {self.n}, "
                f"{str(self.a.dtype).removeprefix('torch.')}) {detail} with "
                f"diag_reg={self.diag_reg}",
                "Pass diag_reg > 0 (e.g. diag_reg=1e-4, relative to the mean diagonal) to "
                "regularise it, remove duplicate training points, or use float64.",
            )
        )

    @cached_property
    def chol(self) -> Tensor:
        reg = self.regularised()
        low, info = torch.linalg.cholesky_ex(reg)
        if int(info) != 0:
            raise self._singular("is not positive definite (Cholesky failed)")
        pivots = torch.diagonal(low).detach()
        floor = self.n * torch.finfo(reg.dtype).eps * float(torch.diagonal(reg).abs().max())
        if not bool(torch.isfinite(pivots).all()) or float(pivots.min()) ** 2 <= floor:
            raise self._singular("is numerically singular (a Cholesky pivot is at rounding level)")
        return low

    def solve(self, b: Tensor) -> Tensor:
        """``A~^{-1} b`` by the cached Cholesky factor."""
        return torch.cholesky_solve(b, self.chol)

    @cached_property
    def eig(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues (clipped at 0 after the PSD check) and eigenvectors of ``A~``."""
        if self.symmetric and not self.a.requires_grad:
            # A + shift I has the eigenvectors of A: no regularised n x n copy.
            evals, evecs = torch.linalg.eigh(self.a)
            evals = evals + self.shift
        else:
            evals, evecs = torch.linalg.eigh(self.regularised())
        top = float(evals.detach().abs().max()) if evals.numel() else 0.0
        low = float(evals.detach().min()) if evals.numel() else 0.0
        if not math.isfinite(low) or low < -math.sqrt(torch.finfo(evals.dtype).eps) * top:
            raise self._singular(f"is not positive semi-definite (eigenvalue {low:.3g})")
        return evals.clamp_min(0), evecs


def _gain(evals: Tensor, s: Tensor) -> Tensor:
    """``(1 - exp(-l s)) / l`` for eigenvalues ``l >= 0`` and finite ``s``; ``s`` at ``l = 0``."""
    pos = evals > 0
    safe = torch.where(pos, evals, torch.ones_like(evals))
    return torch.where(pos, -torch.expm1(-safe * s) / safe, s.expand(-1, evals.shape[-1]))


def _vmat(v: Tensor, w: Tensor, x: Tensor) -> Tensor:
    """``V diag(w_t) x`` for every time: ``w`` (T, n), ``x`` (n, k) -> (T, n, k), one GEMM."""
    tt, n = w.shape
    k = x.shape[1]
    stacked = (w.mT[:, :, None] * x[:, None, :]).reshape(n, tt * k)
    return (v @ stacked).reshape(n, tt, k).permute(1, 0, 2)


# ----------------------------------------------------------------------------------------
# The closed-form predictor shared by gp_inference, gradient_descent_mse and the ensemble
# ----------------------------------------------------------------------------------------


class Predictor:
    """Closed-form predictions from train-train kernels, with cached factorisations."""

    def __init__(
        self,
        kernels: Kernels,
        y: Tensor,
        vector: bool,
        diag_reg: float,
        absolute: bool,
        where: str,
        learning_rate: float = 1.0,
        like: Tensor | None = None,
        solver: str = "cholesky",
        solver_options: Any = None,
    ) -> None:
        self.kernels, self.vector, self.where = kernels, vector, where
        self.diag_reg, self.absolute, self.learning_rate = diag_reg, absolute, learning_rate
        self.n = y.shape[0]
        if solver not in SOLVERS:
            raise HyperparameterError(
                describe(where, f"solver={solver!r}", f"Use one of {SOLVERS}.")
            )
        self.solver = solver
        self.solver_options = cg_options(solver_options, where) if solver == "cg" else {}
        #: Iterations and residuals of the conjugate-gradient solves made so far.
        self.solves: list[SolveInfo] = []
        if like is None:  # dtype and device of the computation: the training kernel's
            name = kernels.names[0] if kernels.names else None
            raw = None if name is None else kernels._raw[name]
            if raw is not None and hasattr(raw, "to_tensor"):  # a stored kernel
                like = torch.empty(0, dtype=raw.dtype)
            else:
                like = y if raw is None else as_tensor(raw, "k_train_train", where)
        self.dtype = torch.promote_types(like.dtype, y.dtype)
        self.device = like.device
        self.y = y.to(dtype=self.dtype, device=self.device)
        self._factors: dict[str, Factor | CGFactor] = {}
        self._cache: dict[tuple[str, ...], Tensor] = {}

    # -- kernels and factors -----------------------------------------------------------

    def train(self, name: str) -> Tensor:
        k = self.kernels.get(name, self.dtype, self.device)
        if tuple(k.shape) != (self.n, self.n):
            raise ShapeError(
                describe(
                    self.where,
                    f"k_train_train has shape {tuple(k.shape)} but y_train has {self.n} rows",
                    f"Pass the kernel of the {self.n} training points, shape ({self.n}, "
                    f"{self.n}), and targets with one row per training point.",
                )
            )
        return k

    def _stored(self, name: str) -> Any:
        """The stored kernel (read by blocks) under ``name``, or ``None``."""
        raw = self.kernels._raw.get(name)
        if raw is None or not hasattr(raw, "to_tensor"):
            return None
        if tuple(raw.shape) != (self.n, self.n):
            self.train(name)  # raises the shape error
        return raw

    def times_train(self, name: str, b: Tensor) -> Tensor:
        """``A @ b`` for the train-train kernel ``name`` (streamed when stored)."""
        stored = self._stored(name)
        if stored is not None and self.solver == "cg":
            return stored.matmul(b).to(self.dtype)
        return self.train(name) @ b

    def factor(self, name: str) -> Factor | CGFactor:
        if name not in self._factors and self.solver == "cg":
            label = "NTK" if name == "ntk" else "NNGP" if name == "nngp" else "given"
            stored = self._stored(name)
            self._factors[name] = CGFactor(
                self.train(name) if stored is None else stored,
                self.n,
                self.dtype,
                self.diag_reg,
                self.absolute,
                label,
                self.where,
                self.solver_options,
                self.solves,
            )
        if name not in self._factors:
            label = "NTK" if name == "ntk" else "NNGP" if name == "nngp" else "given"
            self._factors[name] = Factor(
                self.train(name), self.diag_reg, self.absolute, label, self.where
            )
        return self._factors[name]

    def names(self, get: Any, allowed: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
        """Requested names and whether one Gaussian (not :class:`Predictions`) is returned."""
        if self.kernels.bare:
            if get is not None:
                raise HyperparameterError(
                    describe(
                        self.where,
                        f"get={get!r} but k_train_train is one bare tensor (no names)",
                        "Leave get=None, or pass a Kernel / dict with nngp and ntk.",
                    )
                )
            return (BARE,), True
        if get is None:
            have = self.kernels.names
            default = tuple(g for g in allowed if dynamics_of(g) in have)
            if not default:
                raise HyperparameterError(
                    describe(self.where, "k_train_train holds no kernel", "Pass a Kernel.")
                )
            return default, False
        return parse_get(get, self.where, allowed, allowed), isinstance(get, str)

    def _q(self, g: str) -> Tensor:
        """``V^T K_dd V`` in the eigenbasis of the NTK (for NTK covariances), cached."""
        key = ("q", g)
        if key not in self._cache:
            _, v = self.factor(g).eig
            self._cache[key] = sym(v.mT @ self.train("nngp") @ v)
        return self._cache[key]

    def _inv_y(self, g: str) -> Tensor:
        key = ("inv_y", g)
        if key not in self._cache:
            self._cache[key] = self.factor(g).solve(self.y)
        return self._cache[key]

    # -- one prediction ----------------------------------------------------------------

    def predict(
        self,
        names: tuple[str, ...],
        t: Tensor | None,
        k_test_train: Any,
        k_test_test: Any,
        compute_cov: bool,
        fx_train_0: Any = None,
        fx_test_0: Any = None,
    ) -> dict[str, Gaussian]:
        """Gaussians per name at times ``t`` (``None``: the limit / GP posterior)."""
        for g in names:
            need = [dynamics_of(g)] + (["nngp"] if compute_cov and g == "ntk" else [])
            self.kernels.require(need, f'get="{g}"' + (" with compute_cov" if compute_cov else ""))
        td = tt = None
        if k_test_train is not None:
            td = Kernels(k_test_train, "k_test_train", self.where)
            if self.kernels.bare and not td.bare:
                td.get(BARE, self.dtype, self.device)  # raises the mixed-inputs error
            need = [dynamics_of(g) for g in names]
            if compute_cov:
                need += [prior_of(g) for g in names]
            td.require(need, "the test predictions")
            if compute_cov:
                if k_test_test is None:
                    raise HyperparameterError(
                        describe(
                            self.where,
                            "compute_cov=True on test points without k_test_test",
                            "Pass k_test_test (the test-test kernel, e.g. net.kernel(x_test)) "
                            "or compute_cov=False.",
                        )
                    )
                tt = Kernels(k_test_test, "k_test_test", self.where)
                tt.require([prior_of(g) for g in names], "the test covariance")
        k = self.y.shape[1]
        out = {}
        for g in names:
            out[g] = self._one(g, t, td, tt, compute_cov, fx_train_0, fx_test_0, k)
        return out

    def _one(self, g, t, td, tt, compute_cov, fx_train_0, fx_test_0, k) -> Gaussian:
        dyn, prior = dynamics_of(g), prior_of(g)
        if td is None:
            m = self.n
            ktd = kpd = ktt = None
        else:
            ktd = td.get(dyn, self.dtype, self.device)
            check_test(ktd, self.n, "k_test_train", self.where, td, self.kernels, k)
            m = ktd.shape[0]
            kpd = td.get(prior, self.dtype, self.device) if compute_cov else None
            if kpd is not None:
                check_test(kpd, self.n, "k_test_train", self.where, td, self.kernels, k)
            ktt = tt.get(prior, self.dtype, self.device) if compute_cov else None
            if ktt is not None:
                check_test_test(ktt, m, self.where)
        f0d = offset(fx_train_0, (self.n, k), self.vector, "fx_train_0", self.where, self.y)
        f0t = offset(fx_test_0, (m, k), self.vector, "fx_test_0", self.where, self.y)

        tshape: tuple[int, ...] = ()
        if t is None:
            mean, cov = self._limit(g, dyn, ktd, kpd, ktt, compute_cov, f0d, f0t)
        else:
            tshape = tuple(t.shape)
            flat = t.reshape(-1)
            inf = torch.isinf(flat)
            if bool(inf.all()):
                mean, cov = self._limit(g, dyn, ktd, kpd, ktt, compute_cov, f0d, f0t)
                mean = mean.expand(flat.shape[0], *mean.shape)
                cov = None if cov is None else cov.expand(flat.shape[0], *cov.shape)
            else:
                finite = torch.where(inf, torch.zeros_like(flat), flat)
                mean, cov = self._finite(g, dyn, finite, ktd, kpd, ktt, compute_cov, f0d, f0t)
                if bool(inf.any()):
                    m_inf, c_inf = self._limit(g, dyn, ktd, kpd, ktt, compute_cov, f0d, f0t)
                    mean = torch.where(inf[:, None, None], m_inf, mean)
                    if cov is not None:
                        cov = torch.where(inf[:, None, None], c_inf, cov)
            mean = mean.reshape(*tshape, *mean.shape[1:])
            cov = None if cov is None else cov.reshape(*tshape, *cov.shape[1:])
        if self.vector:
            mean = mean[..., 0]
        return Gaussian(mean, cov)

    def _limit(self, g, dyn, ktd, kpd, ktt, compute_cov, f0d, f0t):
        """``t = inf``: the GP posterior by a Cholesky solve."""
        factor = self.factor(dyn)
        if ktd is None:  # training points: y, no variance
            mean = self.y.clone()
            cov = torch.zeros(self.n, self.n, dtype=self.dtype, device=self.device)
            return mean, (cov if compute_cov else None)
        mean = ktd @ (self._inv_y(dyn) if f0d is None else factor.solve(self.y - f0d))
        if f0t is not None:
            mean = mean + f0t
        if not compute_cov:
            return mean, None
        if g == "ntk":
            b = factor.solve(ktd.mT)  # T~^-1 T_dt
            cross = b.mT @ kpd.mT  # T_td T~^-1 K_dt
            cov = ktt + b.mT @ self.times_train("nngp", b) - (cross + cross.mT)
        else:
            cov = ktt - ktd @ factor.solve(ktd.mT)
        return mean, sym(cov)

    def _finite(self, g, dyn, t, ktd, kpd, ktt, compute_cov, f0d, f0t):
        """Finite times ``t`` (1-D): the eigendecomposition, reused for every time."""
        evals, v = self.factor(dyn).eig
        s = (self.learning_rate * t / self.y.numel())[:, None]  # (T, 1)
        rhs = self.y if f0d is None else self.y - f0d
        vr = v.mT @ rhs  # (n, k)
        lam = evals[None, :]
        k = rhs.shape[1]
        if ktd is None:  # training points
            mean = _vmat(v, -torch.expm1(-lam * s), vr)
            if f0d is not None:
                mean = mean + f0d
            cov = None
            if compute_cov:
                if g == "ntk":
                    e = torch.exp(-lam * s)
                    q = self._q(dyn)
                    cov = torch.stack([(v * ei) @ q @ (v * ei).mT for ei in e])
                else:
                    w = lam * torch.exp(-2 * lam * s)
                    cov = torch.stack([(v * wi) @ v.mT for wi in w])
                cov = sym(cov)
            return mean, cov
        gain = _gain(lam, s)  # (T, n)
        m = ktd.shape[0]
        if compute_cov or t.shape[0] * k >= m:
            p = ktd @ v  # (m, n)
            mean = (
                (p @ (gain.mT[:, :, None] * vr[:, None, :]).reshape(self.n, -1))
                .reshape(m, -1, k)
                .permute(1, 0, 2)
            )
        else:
            p = None
            mean = (
                (ktd @ _vmat(v, gain, vr).permute(1, 0, 2).reshape(self.n, -1))
                .reshape(m, -1, k)
                .permute(1, 0, 2)
            )
        if f0t is not None:
            mean = mean + f0t
        if not compute_cov:
            return mean, None
        if p is None:
            p = ktd @ v
        covs = []
        if g == "ntk":
            q = self._q(dyn)
            pk = kpd @ v  # K_td V
            for gi in gain:
                a = p * gi  # T_td M in the eigenbasis: T_td M = a V^T
                cross = a @ pk.mT
                covs.append(ktt + a @ q @ a.mT - (cross + cross.mT))
        else:
            for gi in _gain(lam, 2 * s):
                covs.append(ktt - (p * gi) @ p.mT)
        return mean, sym(torch.stack(covs))
