r"""Preconditioned conjugate gradients for kernels that need not fit in memory.

``solver="cg"`` solves :math:`\tilde A X = B` with :math:`\tilde A = A + s I` (``s`` the
regulariser) using only products :math:`A V`: a stored kernel
(:class:`~neural_kernels.store.StoredMatrix`) streams its blocks once per product, so an
iteration costs one read of the store.

**Preconditioner.** A rank-``r`` pivoted Cholesky factor :math:`L` (``n x r``) of ``A``
(greedy on the largest remaining diagonal; Harbrecht, Peters and Schneider 2012; Gardner
et al. 2018) gives :math:`P = L L^\top + \sigma I`, applied by the Woodbury identity

.. math:: P^{-1} r = \sigma^{-1}\big(r - L (\sigma I + L^\top L)^{-1} L^\top r\big),

with :math:`\sigma = \max(s, 10^{-8}\, \mathrm{tr}(A)/n)`. It costs ``r`` rows of ``A``
and :math:`O(n r^2)` work. The columns of ``B`` are solved together (one product per
iteration for all of them). Written here rather than taken from GPyTorch's
``linear_operator``: the operator is a store read by blocks, the solve must run in
float64 to a tolerance of ``1e-10`` and report its iterations, and the core library
depends on torch, numpy and scipy alone.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..core.tiling import single_threaded
from ..errors import HyperparameterError, SingularKernelError, SolverError, describe

__all__ = ["CGFactor", "SolveInfo", "cg_options"]

#: Defaults of ``solver_options``.
DEFAULTS: dict[str, Any] = {"tol": 1e-10, "max_iter": 1000, "rank": 100}


class SolveInfo(NamedTuple):
    """One conjugate-gradient solve: kernel name, iterations, largest relative residual."""

    kernel: str
    iterations: int
    residual: float


def cg_options(options: Any, where: str) -> dict[str, Any]:
    """Merged ``solver_options`` (``tol``, ``max_iter``, ``rank``), checked."""
    merged = dict(DEFAULTS)
    for key, value in dict(options or {}).items():
        if key not in DEFAULTS:
            raise HyperparameterError(
                describe(where, f"solver_options key {key!r}", f"Use keys of {sorted(DEFAULTS)}.")
            )
        merged[key] = value
    if not merged["tol"] > 0 or int(merged["max_iter"]) < 1 or int(merged["rank"]) < 0:
        raise HyperparameterError(
            describe(
                where,
                f"solver_options={options!r}",
                "Use tol > 0, max_iter >= 1, rank >= 0.",
            )
        )
    return merged


class _Dense:
    """A kernel in memory as an operator."""

    def __init__(self, a: Tensor) -> None:
        self.a = a

    def matmul(self, v: Tensor) -> Tensor:
        return self.a @ v

    def diagonal(self) -> Tensor:
        return torch.diagonal(self.a).clone()

    def row(self, i: int) -> Tensor:
        return self.a[i]


class _Stored:
    """A stored kernel (``StoredMatrix``) as an operator, in a given dtype."""

    def __init__(self, m: Any, dtype: torch.dtype) -> None:
        self.m, self.dtype = m, dtype

    def matmul(self, v: Tensor) -> Tensor:
        return self.m.matmul(v).to(self.dtype)

    def diagonal(self) -> Tensor:
        return self.m.diagonal().to(self.dtype)

    def row(self, i: int) -> Tensor:
        return self.m.read(i, i + 1, 0, self.m.shape[1])[0].to(self.dtype)


class CGFactor:
    """Solves with one regularised kernel by preconditioned CG (the ``Factor`` interface)."""

    def __init__(
        self,
        kernel: Any,
        n: int,
        dtype: torch.dtype,
        diag_reg: float,
        absolute: bool,
        label: str,
        where: str,
        options: dict[str, Any],
        log: list[SolveInfo],
    ) -> None:
        self.op: _Dense | _Stored = (
            _Dense(kernel) if isinstance(kernel, Tensor) else _Stored(kernel, dtype)
        )
        self.n, self.dtype, self.label, self.where = n, dtype, label, where
        self.options, self.log = options, log
        self.diag = self.op.diagonal()
        if not bool(torch.isfinite(self.diag).all()) or float(self.diag.min()) < 0:
            raise SingularKernelError(
                describe(
                    where,
                    f"the {label} train-train kernel has a negative or non-finite diagonal",
                    "Pass a positive semi-definite train-train kernel.",
                )
            )
        mean = float(self.diag.mean()) if n else 1.0
        self.shift = diag_reg if absolute else diag_reg * mean
        self.sigma = max(self.shift, 1e-8 * mean, torch.finfo(dtype).tiny)
        with self._threads(1):
            self.low = self._pivoted_cholesky(int(options["rank"]))
        inner = self.sigma * torch.eye(self.low.shape[1], dtype=dtype) + self.low.mT @ self.low
        self.inner = torch.linalg.cholesky(inner)

    def _threads(self, k: int) -> Any:
        """One thread for a stored kernel's block products and for small problems.

        Their skinny products gain nothing from threads and stall on a loaded machine (a
        product streaming a 2048 x 2048 store took 0.7 s on two threads, 0.09 s on one).
        """
        small = self.n * max(self.n, k) < 1 << 22
        return single_threaded() if small or isinstance(self.op, _Stored) else nullcontext()

    def _pivoted_cholesky(self, rank: int) -> Tensor:
        """``L`` (``n x r``) with ``A ~ L L^T``: greedy on the largest remaining diagonal."""
        d = self.diag.clone()
        rank = min(rank, self.n)
        low = torch.zeros(self.n, rank, dtype=self.dtype)
        top = float(d.max()) if self.n else 0.0
        for k in range(rank):
            i = int(torch.argmax(d))
            pivot = float(d[i])
            if pivot <= 1e-12 * top:
                return low[:, :k]
            col = (self.op.row(i) - low[:, :k] @ low[i, :k]) / math.sqrt(pivot)
            low[:, k] = col
            d = (d - col**2).clamp_min(0)
            d[i] = 0
        return low

    def _precondition(self, r: Tensor) -> Tensor:
        lr = self.low.mT @ r
        return (r - self.low @ torch.cholesky_solve(lr, self.inner)) / self.sigma

    def _apply(self, v: Tensor) -> Tensor:
        return self.op.matmul(v) + self.shift * v

    def solve(self, b: Tensor) -> Tensor:
        r"""``X`` with :math:`\tilde A X = B` to relative residual ``tol`` per column."""
        with self._threads(b.shape[-1]):
            return self._solve(b)

    def _solve(self, b: Tensor) -> Tensor:
        b = b.to(self.dtype)
        tol, max_iter = float(self.options["tol"]), int(self.options["max_iter"])
        norms = torch.linalg.vector_norm(b, dim=0)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        x = torch.zeros_like(b)
        r = b.clone()
        z = self._precondition(r)
        p = z.clone()
        rz = (r * z).sum(0)
        residual = float((torch.linalg.vector_norm(r, dim=0) / safe).max()) if b.numel() else 0.0
        it = 0
        while residual > tol and it < max_iter:
            ap = self._apply(p)
            curvature = (p * ap).sum(0)
            if not bool((curvature > 0).all()):
                raise SingularKernelError(
                    describe(
                        self.where,
                        f"the {self.label} train-train kernel is not positive definite "
                        "(conjugate gradients met a direction of non-positive curvature)",
                        "Pass diag_reg > 0 (e.g. 1e-4, relative to the mean diagonal).",
                    )
                )
            alpha = rz / curvature
            x += alpha * p
            r -= alpha * ap
            it += 1
            residual = float((torch.linalg.vector_norm(r, dim=0) / safe).max())
            z = self._precondition(r)
            rz_new = (r * z).sum(0)
            p = z + (rz_new / torch.where(rz != 0, rz, torch.ones_like(rz))) * p
            rz = rz_new
        self.log.append(SolveInfo(self.label, it, residual))
        if not residual <= tol:
            raise SolverError(
                describe(
                    self.where,
                    f"conjugate gradients on the {self.label} kernel reached relative "
                    f"residual {residual:.3g} after {it} iterations (tol {tol:g})",
                    "Raise diag_reg, solver_options['rank'] (a better preconditioner) or "
                    "solver_options['max_iter'], or use solver='cholesky'.",
                )
            )
        return x

    @property
    def eig(self) -> tuple[Tensor, Tensor]:
        raise HyperparameterError(
            describe(
                self.where,
                "solver='cg' with a finite training time",
                "Conjugate gradients serve t = inf only; use solver='cholesky' for finite t.",
            )
        )
