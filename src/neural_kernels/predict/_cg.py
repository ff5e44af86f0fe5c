r"""Preconditioned conjugate gradients for kernels that need not fit in memory.

``solver="cg"`` solves :math:`\tilde A X = B` with :math:`\tilde A = A + s I` (``s`` the
regulariser) using only products :math:`A V`: a stored kernel
(:class:`~neural_kernels.store.StoredMatrix`) streams its blocks once per product, so an
iteration costs one read of the store. The columns of ``B`` are solved together (one
product per iteration for all of them).

**Preconditioners** (``solver_options["preconditioner"]``, rank ``r`` =
``solver_options["rank"]``), with :math:`\sigma = \max(s, 10^{-8}\, \mathrm{tr}(A)/n)`:

``"nystrom"`` (default)
    The randomized Nystrom approximation :math:`\hat A = U \hat\Lambda U^\top` (``U``
    ``n x r`` orthonormal) from one product :math:`Y = A \Omega` with a Gaussian test
    matrix :math:`\Omega` (``n x r``, orthonormalised, seeded so that solves repeat);
    Frangella, Tropp and Udell 2023. With a tiny shift
    :math:`\nu = \sqrt{n}\,\epsilon\,\lVert Y\rVert`, :math:`Y_\nu = Y + \nu\Omega`,
    :math:`C^\top C = \Omega^\top Y_\nu`, :math:`U \Sigma V^\top = Y_\nu C^{-1}` and
    :math:`\hat\Lambda = \max(\Sigma^2 - \nu, 0)`, the preconditioner is

    .. math:: P^{-1} = (\hat\lambda_r + \sigma)\, U (\hat\Lambda + \sigma I)^{-1} U^\top
              + (I - U U^\top).

    It costs one streamed product (one read of the store, against ``r`` block-row reads
    for the pivoted Cholesky factor) and :math:`O(n r^2)` work, and captures the top of
    the spectrum whatever the diagonal looks like.
``"pivoted_cholesky"``
    A rank-``r`` pivoted Cholesky factor :math:`L` (``n x r``) of ``A`` (greedy on the
    largest remaining diagonal; Harbrecht, Peters and Schneider 2012; Gardner et al.
    2018) gives :math:`P = L L^\top + \sigma I`, applied by the Woodbury identity

    .. math:: P^{-1} r = \sigma^{-1}\big(r - L (\sigma I + L^\top L)^{-1} L^\top r\big).

    It costs ``r`` rows of ``A`` (from a store, ``r`` reads of a block row) and
    :math:`O(n r^2)` work.
``None``
    No preconditioner (``rank=0`` too).

**Why Nystrom is the default.** Measured with rank 100 on stored NTKs of the 8x8 digits
(``python -m benchmarks.bench_store --only precond``; relative residual ``1e-10``), the
Nystrom preconditioner took fewer iterations and less time than the pivoted Cholesky
one in every case: the fully connected ReLU NTK of all 1797 digits 89 iterations against
131 (``diag_reg=1e-4``) and 89 against 158 (``1e-6``), about 60% of the CPU time; a CNN
with global average pooling on 300 digits 26 against 33 and 27 against 39, on all 1797
digits 63 against 85 (``1e-4``; 70% of the CPU time); without a preconditioner 113-401
iterations. Its set-up is one streamed product, where the
pivoted Cholesky factor reads ``r`` block rows (about ``r / (n / block)`` reads of the
store). The pivoted Cholesky factor stays the choice for a kernel that is not positive
semi-definite to working precision, where the Nystrom sketch has no Cholesky factor
(that case raises an error naming it).

**Progress.** ``solver_options["progress"]``, a callable, is called as
``progress(kernel, iteration, residual)`` (``kernel`` the solve's label, e.g. ``"NTK"``)
before the first iteration (``0``, ``1.0``) and after each one, with the largest relative
residual of the columns (the command line draws it as a bar of decimal digits gained
towards ``tol``).

**Why not GPyTorch's ``linear_operator``.** Its ``linear_cg`` and pivoted-Cholesky
preconditioner were weighed and not used: the CG there is built for GP training
(modified batch CG with tridiagonal outputs for log-determinants, tolerances and
iteration caps set through global ``settings`` contexts and tuned for float32, where a
solve that stops at its cap only warns), so it would not give the float64, ``1e-10``
relative-residual solve with an error on failure and per-solve iteration counts that
predictions need; a stored kernel would have to be wrapped as a ``LinearOperator``
subclass anyway (``_matmul``, ``_get_indices`` for pivoting); and the core library
depends on torch, numpy and scipy alone, while gpytorch / linear_operator is an extra.
The loop below is the textbook preconditioned CG, about forty lines.
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
DEFAULTS: dict[str, Any] = {
    "tol": 1e-10,
    "max_iter": 1000,
    "rank": 100,
    "preconditioner": "nystrom",
    "progress": None,
}
#: The preconditioners of ``solver_options["preconditioner"]``.
PRECONDITIONERS = ("pivoted_cholesky", "nystrom", None)


class SolveInfo(NamedTuple):
    """One conjugate-gradient solve: kernel name, iterations, largest relative residual."""

    kernel: str
    iterations: int
    residual: float


def cg_options(options: Any, where: str) -> dict[str, Any]:
    """Merged ``solver_options`` (``tol``, ``max_iter``, ``rank``, ``preconditioner``), checked."""
    merged = dict(DEFAULTS)
    for key, value in dict(options or {}).items():
        if key not in DEFAULTS:
            raise HyperparameterError(
                describe(where, f"solver_options key {key!r}", f"Use keys of {sorted(DEFAULTS)}.")
            )
        merged[key] = value
    if merged["preconditioner"] not in PRECONDITIONERS:
        raise HyperparameterError(
            describe(
                where,
                f"solver_options preconditioner={merged['preconditioner']!r}",
                "Use 'pivoted_cholesky', 'nystrom' or None.",
            )
        )
    if merged["progress"] is not None and not callable(merged["progress"]):
        raise HyperparameterError(
            describe(
                where,
                f"solver_options progress={merged['progress']!r}",
                "Pass a callable progress(kernel, iteration, residual), or None.",
            )
        )
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
        rank = min(int(options["rank"]), n)
        kind = options["preconditioner"] if rank > 0 else None
        #: ``_precondition`` is ``r -> r - basis @ (weights * (basis^T r))`` times ``outer``
        self.basis = torch.zeros(n, 0, dtype=dtype)
        self.inner: Tensor | None = None
        self.weights = torch.zeros(0, dtype=dtype)
        self.outer = 1.0
        if kind == "pivoted_cholesky":
            with self._threads(1):
                self.basis = self._pivoted_cholesky(rank)
            gram = self.basis.mT @ self.basis
            self.inner = torch.linalg.cholesky(
                self.sigma * torch.eye(gram.shape[0], dtype=dtype) + gram
            )
            self.outer = 1 / self.sigma
        elif kind == "nystrom":
            with self._threads(rank):
                self.basis, eig = self._nystrom(rank)
            top = float(eig[-1]) if eig.numel() else 0.0  # the smallest kept eigenvalue
            self.weights = 1 - (top + self.sigma) / (eig + self.sigma)

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

    def _nystrom(self, rank: int) -> tuple[Tensor, Tensor]:
        """``U`` (``n x r``, orthonormal) and ``lambda`` (``r``) with ``A ~ U diag(lambda) U^T``."""
        g = torch.Generator().manual_seed(0)
        omega = torch.linalg.qr(torch.randn(self.n, rank, generator=g, dtype=self.dtype))[0]
        y = self.op.matmul(omega)
        nu = math.sqrt(self.n) * torch.finfo(self.dtype).eps * float(torch.linalg.norm(y))
        nu = max(nu, torch.finfo(self.dtype).tiny)
        y = y + nu * omega
        core = omega.mT @ y
        chol, info = torch.linalg.cholesky_ex((core + core.mT) / 2)
        if int(info) != 0:
            raise SingularKernelError(
                describe(
                    self.where,
                    f"the {self.label} train-train kernel is not positive semi-definite "
                    "(its Nystrom sketch has no Cholesky factor)",
                    "Pass a positive semi-definite kernel, or "
                    "solver_options={'preconditioner': 'pivoted_cholesky'}.",
                )
            )
        b = torch.linalg.solve_triangular(chol, y.mT, upper=False).mT  # Y_nu C^{-1}
        u, sv, _ = torch.linalg.svd(b, full_matrices=False)
        return u, (sv**2 - nu).clamp_min(0)

    def _precondition(self, r: Tensor) -> Tensor:
        if self.inner is not None:  # pivoted Cholesky, by Woodbury
            lr = self.basis.mT @ r
            return (r - self.basis @ torch.cholesky_solve(lr, self.inner)) * self.outer
        if self.basis.shape[1] == 0:
            return r
        return r - self.basis @ (self.weights[:, None] * (self.basis.mT @ r))

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
        progress = self.options["progress"]
        if progress is not None:
            progress(self.label, it, residual)
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
            if progress is not None:
                progress(self.label, it, residual)
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
