r"""Predictions of infinitely wide networks: Bayesian inference and gradient-descent training.

The functions follow Neural Tangents' ``predict`` module so that users can migrate, and
its conventions exactly (the reference values in ``shared/reference`` come from it).
Notation: ``n`` training points, targets ``y`` of shape ``(n, k)`` (or ``(n,)``, read as
``k = 1``), ``N = y.numel() = n k``; ``K`` is the NNGP kernel and ``T`` the NTK, with
subscripts ``d`` (train, "data") and ``t`` (test), so ``T_td`` is test x train, shape
``(m, n)``. One kernel is shared by the ``k`` output columns.

**Regularisation.** The train-train kernel that is inverted or diagonalised is

.. math:: \tilde A = A + \mathrm{diag\_reg} \cdot \frac{\mathrm{tr}(A)}{n} I

(``diag_reg`` is relative to the mean diagonal), or :math:`A + \mathrm{diag\_reg}\, I`
with ``diag_reg_absolute=True``. Each kernel is regularised with its own trace.

**Training time.** Gradient flow on :math:`L = \frac{1}{2N} \sum (f - y)^2` with
learning rate :math:`\eta` runs in absolute time :math:`\tau = \eta t` (``t`` counts
steps of size ``learning_rate``):

.. math:: \frac{df}{d\tau} = -\frac{1}{N} T (f - y).

With :math:`\tilde T = V \operatorname{diag}(\lambda) V^\top` and
:math:`M(\tau) = V \operatorname{diag}\big((1 - e^{-\lambda \tau / N}) / \lambda\big) V^\top`
(the entry is :math:`\tau / N` where :math:`\lambda = 0`), an infinite ensemble of
infinitely wide networks (initial outputs :math:`\mathcal{N}(0, K)`) trained for time
:math:`\tau` outputs a Gaussian with

* NTK test mean :math:`T_{td} M y`; NNGP: the same with ``K`` for ``T``;
* NTK test covariance
  :math:`K_{tt} + T_{td} M K_{dd} M T_{dt} - (T_{td} M K_{dt} + \mathrm{transpose})`
  (``K_dd`` unregularised); NNGP test covariance
  :math:`K_{tt} - K_{td} V \operatorname{diag}\big((1 - e^{-2\lambda\tau/N})/\lambda\big)
  V^\top K_{dt}`;
* train mean :math:`V \operatorname{diag}(1 - e^{-\lambda\tau/N}) V^\top y`; NTK train
  covariance :math:`E K_{dd} E` with :math:`E = V \operatorname{diag}(e^{-\lambda\tau/N})
  V^\top`; NNGP train covariance :math:`V \operatorname{diag}(\lambda e^{-2\lambda\tau/N})
  V^\top` (eigen-pairs of the regularised ``K``).

``t = None`` (or ``inf``) is the limit, computed by a Cholesky solve: the GP posteriors of
:func:`gp_inference` (train outputs: ``y`` with zero covariance). Finite times use one
eigendecomposition per kernel, made on first use and reused for every later call.

The arrays of one prediction are :class:`Gaussian` ``(mean, cov)``; with several times
``t`` (a 1-D tensor) they gain a leading time axis: mean ``(len(t), m, k)``, cov
``(len(t), m, m)``. Several kernels at once (``get=("nngp", "ntk")``) give
:class:`Predictions`, a named tuple of Gaussians in the order asked.

**Arguments.** The predictors of :func:`gradient_descent_mse` and
:func:`gradient_descent` take ``t`` and then keywords only: their Neural Tangents
counterparts take ``(t, fx_train_0, fx_test_0, k_test_train)`` positionally, so a
positional call would be ambiguous. The predictors of :func:`gp_inference` and
:func:`gradient_descent_mse_ensemble` accept Neural Tangents' positional order.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any, NamedTuple, Union

import numpy as np
import torch
from torch import Tensor

from ._validation import as_tensor, check_batch
from .errors import (
    HyperparameterError,
    InputTypeError,
    NeuralKernelsError,
    NonFiniteError,
    ShapeError,
    SingularKernelError,
    describe,
)
from .kernel import Kernel

__all__ = [
    "Gaussian",
    "Outputs",
    "Predictions",
    "SingularKernelError",
    "gp_inference",
    "gradient_descent",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "max_learning_rate",
]

#: Names of the predictions of gradient-descent training.
GD_NAMES = ("nngp", "ntk")
#: Names of the posteriors of :func:`gp_inference`.
GP_NAMES = ("nngp", "ntk", "ntkgp")
#: Internal name of a kernel passed as one bare tensor (it is its own prior covariance).
_BARE = "kernel"

KernelLike = Union[Kernel, Mapping[str, Any], Tensor, np.ndarray]  # noqa: UP007
Get = Union[str, Iterable[str], None]  # noqa: UP007


class Gaussian(NamedTuple):
    """Mean and covariance of the outputs on a set of points.

    Attributes:
        mean: shape ``(m, k)`` (``(m,)`` for 1-D targets), with a leading time axis for
            several times.
        cov: shape ``(m, m)`` (one covariance shared by the ``k`` output columns), with a
            leading time axis for several times; ``None`` when it was not computed.

    """

    mean: Tensor
    cov: Tensor | None = None

    @property
    def covariance(self) -> Tensor | None:
        """Neural Tangents' name for :attr:`cov`."""
        return self.cov


class Outputs(NamedTuple):
    """Outputs on the training and test points (of :func:`gradient_descent`).

    Unpacks like Neural Tangents' ``(fx_train_t, fx_test_t)``.

    Attributes:
        train: outputs on the training points, shape ``(n, k)`` (time axis first).
        test: outputs on the test points, ``(m, k)``; ``None`` without ``k_test_train``.

    """

    train: Tensor
    test: Tensor | None = None


class Predictions(tuple):  # type: ignore[type-arg]
    """The predictions for several kernels: a named tuple of :class:`Gaussian`.

    Its fields are the kernel names in the order asked for (``get=("ntk", "nngp")``
    gives fields ``ntk, nngp``; ``get=None`` the default order ``nngp, ntk[, ntkgp]``),
    so that it unpacks like Neural Tangents' tuples and reads by attribute::

        fx_nngp, fx_ntk = predict_fn(t, get=("nngp", "ntk"))
        predict_fn(t).ntk.mean

    Reading it like the dict that earlier versions returned (``out["ntk"]``,
    ``"ntk" in out``, ``keys()``, ``values()``, ``items()``, ``get()``) still works but is
    deprecated (a ``DeprecationWarning``); iterating over it yields the Gaussians, not
    the names (``out._fields`` holds the names).
    """

    __slots__ = ()
    _fields: tuple[str, ...]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            _warn_by_name(f"predictions[{key!r}]", f"predictions.{key}")
            if key not in self._fields:
                raise KeyError(key)
            return tuple.__getitem__(self, self._fields.index(key))
        return tuple.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            _warn_by_name(f"{key!r} in predictions", "predictions._fields")
            return key in self._fields
        return tuple.__contains__(self, key)

    def keys(self) -> tuple[str, ...]:
        """The kernel names (deprecated: use ``_fields``)."""
        _warn_by_name("predictions.keys()", "predictions._fields")
        return self._fields

    def values(self) -> tuple[Gaussian, ...]:
        """The Gaussians (deprecated: the predictions are that tuple)."""
        _warn_by_name("predictions.values()", "tuple(predictions)")
        return tuple(self)

    def items(self) -> Iterator[tuple[str, Gaussian]]:
        """Pairs ``(name, Gaussian)`` (deprecated: use ``_asdict().items()``)."""
        _warn_by_name("predictions.items()", "zip(predictions._fields, predictions)")
        return zip(self._fields, tuple(self), strict=True)

    def get(self, key: str, default: Any = None) -> Any:
        """The Gaussian of ``key`` or ``default`` (deprecated: use ``getattr``)."""
        _warn_by_name(f"predictions.get({key!r})", f"getattr(predictions, {key!r}, default)")
        return tuple(self)[self._fields.index(key)] if key in self._fields else default

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_predictions, (self._fields, tuple(self)))


def _warn_by_name(old: str, new: str) -> None:
    warnings.warn(
        f"{old}: predictions for several kernels are a named tuple now; reading them like "
        f"a dict is deprecated. Use {new} (or unpack them in the order asked).",
        DeprecationWarning,
        stacklevel=3,
    )


@functools.cache
def _predictions_type(names: tuple[str, ...]) -> type[Predictions]:
    """The :class:`Predictions` class with fields ``names`` (one class per order)."""
    base = collections.namedtuple("Predictions", names)  # type: ignore[misc]
    return type("Predictions", (Predictions, base), {"__slots__": (), "__module__": __name__})


def _rebuild_predictions(names: tuple[str, ...], values: tuple[Gaussian, ...]) -> Predictions:
    return _predictions_type(tuple(names))(*values)


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def _real(value: Any, name: str, where: str, *, positive: bool = False) -> float:
    """A finite real number ``>= 0`` (``> 0`` when ``positive``)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = float(value.detach())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HyperparameterError(
            describe(where, f"{name}={value!r} of type {type(value).__name__}", "Pass a number.")
        )
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise HyperparameterError(
            describe(where, f"{name}={v}", f"{name} must be a finite number {bound}.")
        )
    return v


def _targets(y: Any, where: str) -> tuple[Tensor, bool]:
    """``y`` as a finite ``(n, k)`` tensor, and whether it was given as a vector."""
    t = as_tensor(y, "y_train", where)
    if t.ndim not in (1, 2) or t.shape[0] == 0 or t.numel() == 0:
        raise ShapeError(
            describe(
                where,
                f"y_train has shape {tuple(t.shape)}",
                "Pass targets of shape (n, k) (or (n,) for one output), one row per training "
                "point.",
            )
        )
    return (t[:, None], True) if t.ndim == 1 else (t, False)


def _parse_get(get: Any, allowed: tuple[str, ...], default: tuple[str, ...], where: str) -> Any:
    """Normalise ``get`` to a tuple of names (``default`` for ``None``)."""
    if get is None:
        return default
    names = (get,) if isinstance(get, str) else tuple(get) if isinstance(get, Iterable) else None
    if names is None or not names or any(g not in allowed for g in names):
        raise HyperparameterError(
            describe(
                where,
                f"get={get!r}",
                f"Ask for one of {', '.join(repr(a) for a in allowed)} or a tuple of them.",
            )
        )
    return tuple(dict.fromkeys(names))


def _times(t: Any, where: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Training times as a tensor (any shape), checked to be >= 0; ``None`` is ``inf``."""
    if t is None:
        t = math.inf
    try:
        tt = torch.as_tensor(t, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputTypeError(
            describe(
                where,
                f"t={t!r} is not a number or a tensor of times ({err})",
                "Pass a float, a 1-D tensor of times, or None for t = infinity.",
            )
        ) from None
    if bool(torch.isnan(tt).any()):
        raise NonFiniteError(describe(where, f"t={t!r} holds NaN", "Pass times >= 0."))
    if bool((tt < 0).any()):
        raise HyperparameterError(
            describe(
                where,
                f"t={t!r} holds negative times",
                "Training times are >= 0 (t = 0 is the initialisation, None is t = infinity).",
            )
        )
    return tt


def _offset(value: Any, shape: tuple[int, ...], vector: bool, name: str, where: str, like: Tensor):
    """Initial outputs ``fx_*_0``: ``None``/0 or a tensor broadcastable to ``shape``."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0:
        return None
    v = as_tensor(value, name, where).to(dtype=like.dtype, device=like.device)
    if vector and v.ndim >= 1:
        v = v[..., None]
    try:
        return torch.broadcast_to(v, shape)
    except RuntimeError:
        raise ShapeError(
            describe(
                where,
                f"{name} has shape {tuple(value.shape) if hasattr(value, 'shape') else ()} "
                f"but the outputs have shape {shape if not vector else shape[:1]}",
                f"Pass {name} with the shape of the network's outputs on those points (or a "
                "scalar).",
            )
        ) from None


class _Kernels:
    """Kernel matrices by name, from a ``Kernel``, a mapping or one bare tensor.

    A bare tensor has no name: it stands for whichever single kernel is needed (for a
    training kernel, it is its own prior covariance, like the NNGP).
    """

    def __init__(self, obj: Any, role: str, where: str) -> None:
        self.role, self.where = role, where
        if isinstance(obj, Kernel):
            if obj.diagonal:
                raise ShapeError(
                    describe(
                        where,
                        f"{role} is a diagonal Kernel (from kernel_diag)",
                        "Pass the full matrix from net.kernel(x1, x2).",
                    )
                )
            raw: dict[str, Any] = {"nngp": obj.nngp, "ntk": obj.ntk}
            self.bare = False
            self.kernel: Kernel | None = obj
        elif isinstance(obj, Mapping):
            bad = [key for key in obj if key not in GD_NAMES]
            if bad:
                raise InputTypeError(
                    describe(
                        where,
                        f"{role} has keys {sorted(map(str, obj))}",
                        'Pass a Kernel or a dict with keys "nngp" and/or "ntk".',
                    )
                )
            raw = dict(obj)
            self.bare = False
        else:
            raw = {_BARE: obj}
            self.bare = True
        if not isinstance(obj, Kernel):
            self.kernel = None
        self._raw = {key: value for key, value in raw.items() if value is not None}
        self._checked: dict[str, Tensor] = {}

    def variances(self) -> Tensor | None:
        """The NNGP variances of the first inputs, when known (a Kernel or an NNGP)."""
        if self.kernel is not None:
            return self.kernel.cov1.detach()
        nngp = self._raw.get("nngp")
        if isinstance(nngp, Tensor) and nngp.ndim == 2 and nngp.shape[0] == nngp.shape[1]:
            return torch.diagonal(nngp).detach()
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._raw)

    def add(self, name: str, value: Tensor) -> None:
        self._raw[name] = value
        self._checked.pop(name, None)

    def require(self, needed: Iterable[str], why: str) -> None:
        """Every name in ``needed`` must be available (a bare tensor serves one name)."""
        needed = tuple(dict.fromkeys(needed))
        if self.bare:
            if len(needed) > 1:
                raise InputTypeError(
                    describe(
                        self.where,
                        f"{self.role} is one bare tensor but {why} needs {' and '.join(needed)}",
                        f"Pass {self.role} as a Kernel (net.kernel(...)) or a dict with those "
                        "keys.",
                    )
                )
            return
        missing = [name for name in needed if name not in self._raw]
        if missing:
            raise HyperparameterError(
                describe(
                    self.where,
                    f"{self.role} has no {' or '.join(m.upper() for m in missing)} "
                    f"(it holds {', '.join(self.names) or 'nothing'}) but {why} needs it",
                    'Compute it with net.kernel(..., get=("nngp", "ntk")), or ask for a '
                    "prediction that does not need it.",
                )
            )

    def get(self, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
        key = _BARE if self.bare else name
        if key == _BARE and not self.bare:
            raise InputTypeError(
                describe(
                    self.where,
                    f"{self.role} is a Kernel or dict but the training kernel is a bare tensor",
                    "Pass bare tensors for every kernel, or a Kernel for every kernel.",
                )
            )
        if key not in self._checked:
            t = as_tensor(self._raw[key], f"{self.role}.{key}", self.where)
            if t.ndim != 2:
                raise ShapeError(
                    describe(
                        self.where,
                        f"{self.role} ({key}) has shape {tuple(t.shape)}",
                        "Pass a 2-D kernel matrix.",
                    )
                )
            self._checked[key] = t
        return self._checked[key].to(dtype=dtype, device=device)


def _prior(g: str) -> str:
    """The kernel whose Gaussian the outputs have at initialisation."""
    return {"ntk": "nngp", "ntkgp": "ntk"}.get(g, g)


def _dynamics(g: str) -> str:
    """The kernel that is inverted (or drives training)."""
    return "ntk" if g == "ntkgp" else g


def _check_test(
    k_td: Tensor,
    n: int,
    role: str,
    where: str,
    given: _Kernels | None = None,
    train: _Kernels | None = None,
    n_out: int | None = None,
) -> None:
    """A test-train kernel must have one column per training point."""
    if k_td.shape[1] != n:
        hint = _transpose_hint(k_td, n, role, given, train, n_out) if k_td.shape[0] == n else ""
        raise ShapeError(
            describe(
                where,
                f"{role} has shape {tuple(k_td.shape)} but there are {n} training points",
                f"Pass the test-train kernel of shape (n_test, {n}).{hint}",
            )
        )


def _transpose_hint(
    k_td: Tensor,
    n: int,
    role: str,
    given: _Kernels | None,
    train: _Kernels | None,
    n_out: int | None,
) -> str:
    """What an ``(n, m)`` matrix passed as a test-train kernel most likely is.

    A :class:`Kernel` says which inputs its rows are: the hint to transpose it is given
    only when they are the training points (its ``cov1`` is the training variances). A
    bare matrix of the shape of the training outputs is more likely initial outputs.
    """
    transpose = (
        " It is the train-test kernel k(x_train, x_test) (its rows are the training "
        "points): pass its transpose, or compute net.kernel(x_test, x_train)."
    )
    if given is not None and given.kernel is not None:
        ref = None if train is None else train.variances()
        first = given.kernel.cov1
        if ref is not None:
            same = first.shape == ref.shape and bool(
                torch.allclose(first.detach().to(ref), ref, rtol=1e-6, atol=0.0)
            )
            return transpose if same else ""
    if n_out is not None and k_td.shape[1] == n_out:
        return (
            f" It has the shape of the outputs on the training points ({n}, {n_out}): "
            f"initial outputs go in fx_train_0=, the test-train kernel in {role}=."
        )
    return (
        " If it is the train-test kernel k(x_train, x_test), pass its transpose, or compute "
        "net.kernel(x_test, x_train)."
    )


def _check_test_test(k_tt: Tensor, m: int, where: str) -> None:
    if tuple(k_tt.shape) != (m, m):
        raise ShapeError(
            describe(
                where,
                f"k_test_test has shape {tuple(k_tt.shape)} but k_test_train has {m} rows",
                f"Pass the test-test kernel of shape ({m}, {m}).",
            )
        )


def _sym(a: Tensor) -> Tensor:
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


class _Factor:
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
            reg = _sym(self.a)
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


class _Predictor:
    """Closed-form predictions from train-train kernels, with cached factorisations."""

    def __init__(
        self,
        kernels: _Kernels,
        y: Tensor,
        vector: bool,
        diag_reg: float,
        absolute: bool,
        where: str,
        learning_rate: float = 1.0,
        like: Tensor | None = None,
    ) -> None:
        self.kernels, self.vector, self.where = kernels, vector, where
        self.diag_reg, self.absolute, self.learning_rate = diag_reg, absolute, learning_rate
        self.n = y.shape[0]
        if like is None:  # dtype and device of the computation: the training kernel's
            name = kernels.names[0] if kernels.names else None
            like = y if name is None else as_tensor(kernels._raw[name], "k_train_train", where)
        self.dtype = torch.promote_types(like.dtype, y.dtype)
        self.device = like.device
        self.y = y.to(dtype=self.dtype, device=self.device)
        self._factors: dict[str, _Factor] = {}
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

    def factor(self, name: str) -> _Factor:
        if name not in self._factors:
            label = "NTK" if name == "ntk" else "NNGP" if name == "nngp" else "given"
            self._factors[name] = _Factor(
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
            return (_BARE,), True
        if get is None:
            have = self.kernels.names
            default = tuple(g for g in allowed if _dynamics(g) in have)
            if not default:
                raise HyperparameterError(
                    describe(self.where, "k_train_train holds no kernel", "Pass a Kernel.")
                )
            return default, False
        return _parse_get(get, allowed, allowed, self.where), isinstance(get, str)

    def _q(self, g: str) -> Tensor:
        """``V^T K_dd V`` in the eigenbasis of the NTK (for NTK covariances), cached."""
        key = ("q", g)
        if key not in self._cache:
            _, v = self.factor(g).eig
            self._cache[key] = _sym(v.mT @ self.train("nngp") @ v)
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
            need = [_dynamics(g)] + (["nngp"] if compute_cov and g == "ntk" else [])
            self.kernels.require(need, f'get="{g}"' + (" with compute_cov" if compute_cov else ""))
        td = tt = None
        if k_test_train is not None:
            td = _Kernels(k_test_train, "k_test_train", self.where)
            if self.kernels.bare and not td.bare:
                td.get(_BARE, self.dtype, self.device)  # raises the mixed-inputs error
            need = [_dynamics(g) for g in names]
            if compute_cov:
                need += [_prior(g) for g in names]
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
                tt = _Kernels(k_test_test, "k_test_test", self.where)
                tt.require([_prior(g) for g in names], "the test covariance")
        k = self.y.shape[1]
        out = {}
        for g in names:
            out[g] = self._one(g, t, td, tt, compute_cov, fx_train_0, fx_test_0, k)
        return out

    def _one(self, g, t, td, tt, compute_cov, fx_train_0, fx_test_0, k) -> Gaussian:
        dyn, prior = _dynamics(g), _prior(g)
        if td is None:
            m = self.n
            ktd = kpd = ktt = None
        else:
            ktd = td.get(dyn, self.dtype, self.device)
            _check_test(ktd, self.n, "k_test_train", self.where, td, self.kernels, k)
            m = ktd.shape[0]
            kpd = td.get(prior, self.dtype, self.device) if compute_cov else None
            if kpd is not None:
                _check_test(kpd, self.n, "k_test_train", self.where, td, self.kernels, k)
            ktt = tt.get(prior, self.dtype, self.device) if compute_cov else None
            if ktt is not None:
                _check_test_test(ktt, m, self.where)
        f0d = _offset(fx_train_0, (self.n, k), self.vector, "fx_train_0", self.where, self.y)
        f0t = _offset(fx_test_0, (m, k), self.vector, "fx_test_0", self.where, self.y)

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
            cov = ktt + b.mT @ self.train("nngp") @ b - (cross + cross.mT)
        else:
            cov = ktt - ktd @ factor.solve(ktd.mT)
        return mean, _sym(cov)

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
                cov = _sym(cov)
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
        assert p is not None
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
        return mean, _sym(torch.stack(covs))


def _format(out: dict[str, Gaussian], single: bool) -> Gaussian | Predictions:
    """One Gaussian, or a :class:`Predictions` named tuple in the order of ``out``."""
    if single:
        return next(iter(out.values()))
    return _predictions_type(tuple(out))(*out.values())


def _compute_cov_flag(compute_cov: Any, k_test_test: Any, where: str) -> Any:
    if compute_cov is None:
        return k_test_test is not None
    if not isinstance(compute_cov, (bool, np.bool_)):
        raise HyperparameterError(
            describe(where, f"compute_cov={compute_cov!r}", "Pass True, False or None.")
        )
    return bool(compute_cov)


_MSE_KEYWORDS = "k_test_train=, k_test_test=, get=, compute_cov=, fx_train_0=, fx_test_0="
_ODE_KEYWORDS = "k_test_train=, fx_train_0=, fx_test_0="


def _no_positional(args: tuple[Any, ...], where: str, keywords: str) -> None:
    """Refuse positional arguments after ``t`` (their order would be ambiguous)."""
    if args:
        raise InputTypeError(
            describe(
                f"{where} predict_fn",
                f"{len(args)} positional argument(s) after t",
                f"Pass them by keyword ({keywords}). Neural Tangents' order (t, fx_train_0, "
                "fx_test_0, k_test_train) and this library's earlier order (t, k_test_train, ...) "
                "disagree, so positional calls are not accepted.",
            )
        )


# ----------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------


def gp_inference(
    k_train_train: KernelLike,
    y_train: Any,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
) -> Callable[..., Gaussian | Predictions]:
    r"""Posterior of the NNGP, the NTK ensemble, or the NTK-GP, given training data.

    ``"nngp"`` is the exact posterior of an infinitely wide Bayesian network; ``"ntk"``
    the distribution of an infinite ensemble of infinitely wide networks trained by
    gradient flow on MSE for infinite time; ``"ntkgp"`` the posterior of a GP with the
    NTK as covariance (He et al. 2020). With :math:`\tilde A = A + \mathrm{diag\_reg}
    \cdot \mathrm{tr}(A)/n \cdot I` (or :math:`+ \mathrm{diag\_reg}\, I` when
    ``diag_reg_absolute``):

    * nngp: :math:`\mu = K_{td} \tilde K^{-1} y`,
      :math:`\Sigma = K_{tt} - K_{td} \tilde K^{-1} K_{dt}`;
    * ntk: :math:`\mu = T_{td} \tilde T^{-1} y`, :math:`\Sigma = K_{tt} + T_{td}
      \tilde T^{-1} K_{dd} \tilde T^{-1} T_{dt} - (T_{td} \tilde T^{-1} K_{dt} +
      \mathrm{transpose})`;
    * ntkgp: :math:`\mu = T_{td} \tilde T^{-1} y`,
      :math:`\Sigma = T_{tt} - T_{td} \tilde T^{-1} T_{dt}`.

    One Cholesky factorisation per kernel is made on first use and cached.

    Args:
        k_train_train: the train-train kernel: a :class:`~neural_kernels.Kernel` from
            ``net.kernel(x_train)`` (or a dict with ``"nngp"``/``"ntk"`` tensors), or one
            bare ``(n, n)`` tensor (then ``get`` must be ``None`` and the NNGP formulas
            apply to it).
        y_train: targets, shape ``(n, k)`` or ``(n,)``; must be finite.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.

    Returns:
        ``post(get=None, k_test_train=None, k_test_test=None, compute_cov=None)``.
        ``get`` is ``"nngp"``, ``"ntk"``, ``"ntkgp"`` or a tuple (``None``: every one the
        kernel allows). ``k_test_train`` is the test-train kernel (``(m, n)``, e.g.
        ``net.kernel(x_test, x_train)``); ``None`` gives the training points
        (``N(y, 0)``). ``k_test_test`` (``(m, m)``) is needed for covariances;
        ``compute_cov=None`` computes them when it is given. The positional order is
        Neural Tangents' (``get, k_test_train, k_test_test``). Returns a
        :class:`Gaussian` for a single name (or a bare kernel), else :class:`Predictions`
        (a named tuple of Gaussians, fields in the order asked).

    Raises:
        ShapeError: kernels and targets disagree in size.
        NonFiniteError: NaN or infinite targets or kernels.
        SingularKernelError: the regularised kernel is singular or not positive definite.
        HyperparameterError: unknown ``get``, negative ``diag_reg``, a missing kernel.

    """
    where = "predict.gp_inference"
    diag_reg = _real(diag_reg, "diag_reg", where)
    y, vector = _targets(y_train, where)
    core = _Predictor(
        _Kernels(k_train_train, "k_train_train", where),
        y,
        vector,
        diag_reg,
        bool(diag_reg_absolute),
        where,
    )

    def post(
        get: Get = None,
        k_test_train: KernelLike | None = None,
        k_test_test: KernelLike | None = None,
        compute_cov: bool | None = None,
    ) -> Gaussian | Predictions:
        """Posterior on the test points (see :func:`gp_inference`)."""
        names, single = core.names(get, GP_NAMES)
        cov = _compute_cov_flag(compute_cov, k_test_test, where)
        return _format(core.predict(names, None, k_test_train, k_test_test, cov), single)

    return post


def gradient_descent_mse(
    k_train_train: KernelLike,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
) -> Callable[..., Gaussian | Predictions]:
    r"""Outputs of infinitely wide networks trained by gradient flow on MSE, in closed form.

    The dynamics is full-batch gradient flow on :math:`L = \frac{1}{2N}\sum (f - y)^2`
    with :math:`N` = ``y_train.numel()``, in absolute time
    :math:`\tau = \mathrm{learning\_rate} \cdot t`:
    :math:`df/d\tau = -\frac{1}{N} \tilde T (f - y)` on the training points. With
    :math:`\tilde A = A + \mathrm{diag\_reg} \cdot \mathrm{tr}(A)/n \cdot I` (or
    :math:`+\mathrm{diag\_reg}\, I`) :math:`= V \operatorname{diag}(\lambda) V^\top` and
    :math:`M = V \operatorname{diag}((1 - e^{-\lambda\tau/N})/\lambda) V^\top`:

    * test mean: :math:`f_{t,0} + A_{td} M (y - f_{d,0})` (``A = T`` for ``"ntk"``,
      ``K`` for ``"nngp"``); train mean: :math:`f_{d,0} + V \operatorname{diag}(1 -
      e^{-\lambda\tau/N}) V^\top (y - f_{d,0})`;
    * NTK test covariance: :math:`K_{tt} + T_{td} M K_{dd} M T_{dt} - (T_{td} M K_{dt}
      + \mathrm{transpose})`; NNGP: :math:`K_{tt} - K_{td} V \operatorname{diag}((1 -
      e^{-2\lambda\tau/N})/\lambda) V^\top K_{dt}`;
    * NTK train covariance: :math:`E K_{dd} E`, :math:`E = V \operatorname{diag}(
      e^{-\lambda\tau/N}) V^\top`; NNGP: :math:`V \operatorname{diag}(\lambda
      e^{-2\lambda\tau/N}) V^\top`;
    * ``t = None`` or ``inf``: the limits by a Cholesky solve (:func:`gp_inference`;
      train outputs ``y`` with zero covariance).

    The covariances are those of an infinite ensemble (initial outputs
    :math:`\mathcal{N}(0, K)`). ``fx_train_0``/``fx_test_0`` shift the means only, as in
    Neural Tangents: they give the outputs of one network linearised around
    initial outputs ``fx_0``. One eigendecomposition per kernel (``torch.linalg.eigh``)
    serves every finite time and every call.

    Args:
        k_train_train: a :class:`~neural_kernels.Kernel` (``net.kernel(x_train)``), a dict
            with ``"nngp"``/``"ntk"`` tensors, or one bare ``(n, n)`` tensor (then
            ``get`` stays ``None``; it is its own prior covariance).
        y_train: targets, shape ``(n, k)`` or ``(n,)``; must be finite.
        learning_rate: step size; only ``learning_rate * t`` matters.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.

    Returns:
        ``predict_fn(t=None, *, k_test_train=None, k_test_test=None, get=None,
        compute_cov=None, fx_train_0=0.0, fx_test_0=0.0)``, everything after ``t``
        keyword-only (Neural Tangents' positional order ``(t, fx_train_0, fx_test_0,
        k_test_train)`` differs from this one's, so a positional call is refused rather
        than read in either order). ``t``: a time, a tensor of times (leading axes of the
        outputs), ``None`` or ``inf``. ``k_test_train``: ``(m, n)`` test-train kernel;
        ``None`` predicts the training points. ``k_test_test``: ``(m, m)``, needed for
        test covariances. ``get``: ``"nngp"``, ``"ntk"`` or a tuple (``None``: both, as
        available). ``compute_cov=None``: covariances when ``k_test_test`` is given (on
        training points: not). Returns a :class:`Gaussian` for a single name (or a bare
        kernel), else :class:`Predictions` (fields in the order asked).

    Raises:
        ShapeError: kernels and targets disagree in size.
        NonFiniteError: NaN or infinite targets, kernels or times.
        SingularKernelError: a kernel that is not PSD (finite times) or singular
            (``t = inf``) without ``diag_reg``.
        HyperparameterError: negative time, unknown ``get``, a missing kernel, bad
            ``learning_rate``/``diag_reg``.

    """
    where = "predict.gradient_descent_mse"
    learning_rate = _real(learning_rate, "learning_rate", where, positive=True)
    diag_reg = _real(diag_reg, "diag_reg", where)
    y, vector = _targets(y_train, where)
    core = _Predictor(
        _Kernels(k_train_train, "k_train_train", where),
        y,
        vector,
        diag_reg,
        bool(diag_reg_absolute),
        where,
        learning_rate,
    )

    def predict_fn(
        t: Any = None,
        *positional: Any,
        k_test_train: KernelLike | None = None,
        k_test_test: KernelLike | None = None,
        get: Get = None,
        compute_cov: bool | None = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = 0.0,
    ) -> Gaussian | Predictions:
        """Outputs at time(s) ``t`` (see :func:`gradient_descent_mse`)."""
        _no_positional(positional, where, _MSE_KEYWORDS)
        names, single = core.names(get, GD_NAMES)
        cov = _compute_cov_flag(compute_cov, k_test_test, where)
        times: Tensor | None = _times(t, where, core.dtype, core.device)
        if times is not None and times.ndim == 0 and bool(torch.isinf(times)):
            times = None
        return _format(
            core.predict(names, times, k_test_train, k_test_test, cov, fx_train_0, fx_test_0),
            single,
        )

    return predict_fn


def gradient_descent_mse_ensemble(
    net: Any,
    x_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
    memory_budget: int | None = None,
) -> Callable[..., Gaussian | Predictions]:
    r"""Outputs of an infinite ensemble of infinitely wide ``net`` trained on MSE.

    :func:`gradient_descent_mse` with the kernels of ``net`` (same formulas and
    conventions: relative ``diag_reg``, time ``learning_rate * t`` with the loss
    normalised by ``N = y_train.numel()``). The train-train kernels are computed once,
    on first need, and cached with their factorisations; test kernels are computed on
    each call.

    Example::

        predict_fn = nk.predict.gradient_descent_mse_ensemble(net, x_train, y_train,
                                                              diag_reg=1e-3)
        g = predict_fn(t=None, x_test=x_test, get="ntk", compute_cov=True)

    Args:
        net: a layer or network (``nk.Sequential(...)``) whose ``kernel`` is used.
        x_train: training inputs, shape ``(n, *features)``.
        y_train: targets, shape ``(n, k)`` or ``(n,)``.
        learning_rate: step size; only ``learning_rate * t`` matters.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.
        memory_budget: passed to ``net.kernel`` (bytes of working memory).

    Returns:
        ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)`` (Neural
        Tangents' positional order): a :class:`Gaussian` for ``get="nngp"`` or ``"ntk"``,
        :class:`Predictions` (fields in the order asked) for a tuple or ``None`` (both).
        ``x_test=None`` predicts the training points.

    """
    from .layers.base import Layer

    where = "predict.gradient_descent_mse_ensemble"
    if not isinstance(net, Layer):
        raise InputTypeError(
            describe(
                where,
                f"net has type {type(net).__name__}",
                "Pass a network built from neural_kernels layers, e.g. nk.Sequential(...).",
            )
        )
    learning_rate = _real(learning_rate, "learning_rate", where, positive=True)
    diag_reg = _real(diag_reg, "diag_reg", where)
    x = as_tensor(x_train, "x_train", where)
    check_batch(x, "x_train", where)
    y, vector = _targets(y_train, where)
    if y.shape[0] != x.shape[0]:
        raise ShapeError(
            describe(
                where,
                f"x_train has {x.shape[0]} rows but y_train has {y.shape[0]}",
                "Pass one target row per training input.",
            )
        )
    kernels = _Kernels({}, "k_train_train", where)
    core = _Predictor(
        kernels, y, vector, diag_reg, bool(diag_reg_absolute), where, learning_rate, like=x
    )

    def predict_fn(
        t: Any = None, x_test: Any = None, get: Get = None, compute_cov: bool = False
    ) -> Gaussian | Predictions:
        """Outputs on ``x_test`` at time(s) ``t`` (see :func:`gradient_descent_mse_ensemble`)."""
        names = _parse_get(get, GD_NAMES, GD_NAMES, where)
        cov = _compute_cov_flag(compute_cov, None, where)
        times: Tensor | None = _times(t, where, core.dtype, core.device)
        if times is not None and times.ndim == 0 and bool(torch.isinf(times)):
            times = None
        need = tuple(dict.fromkeys([*names, *(["nngp"] if cov and "ntk" in names else [])]))
        need = tuple(n for n in GD_NAMES if n in need)
        missing = tuple(n for n in need if n not in kernels.names)
        if missing:
            k = net.kernel(x, None, get=missing, memory_budget=memory_budget)
            for name in missing:
                kernels.add(name, getattr(k, name))
        k_td = k_tt = None
        if x_test is not None:
            xt = as_tensor(x_test, "x_test", where)
            check_batch(xt, "x_test", where)
            k_td = net.kernel(xt, x, get=need, memory_budget=memory_budget)
            if cov:
                k_tt = net.kernel(xt, None, get="nngp", memory_budget=memory_budget)
        out = core.predict(names, times, k_td, k_tt, cov)
        return _format(out, isinstance(get, str))

    return predict_fn


# ----------------------------------------------------------------------------------------
# Any loss, by an ODE solver
# ----------------------------------------------------------------------------------------


def _mse(fx: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((fx - y) ** 2).mean()


def _cross_entropy(fx: Tensor, y: Tensor) -> Tensor:
    return -(y * torch.log_softmax(fx, dim=-1)).sum(-1).mean()


_LOSSES = {"mse": _mse, "cross_entropy": _cross_entropy}


def _ntk_of(k: Any, role: str, where: str) -> tuple[Tensor, _Kernels]:
    """The NTK matrix of ``k`` (a Kernel, a dict or a bare tensor) and its reader."""
    ks = _Kernels(k, role, where)
    ks.require(["ntk"], "gradient-descent training")
    key = _BARE if ks.bare else "ntk"
    t = as_tensor(ks._raw[key], role, where)
    if t.ndim != 2:
        raise ShapeError(describe(where, f"{role} has shape {tuple(t.shape)}", "Pass a matrix."))
    return t, ks


def gradient_descent(
    loss: Callable[[Tensor, Tensor], Tensor] | str,
    k_train_train: KernelLike,
    y_train: Any,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    *,
    method: str = "DOP853",
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> Callable[..., Outputs]:
    r"""Mean outputs of infinitely wide networks trained on any loss, by an ODE solver.

    In function space, gradient flow on ``loss(f(x_train), y_train)`` is

    .. math:: \frac{df_x}{d\tau} = -T(x, x_{train})\, \nabla_{f_{train}} L,
              \qquad \tau = \mathrm{learning\_rate} \cdot t,

    for training and test points alike (``T`` the NTK). The loss's own normalisation
    sets the time scale: ``"mse"`` is :math:`\frac{1}{2N}\sum (f - y)^2`
    (``N = y.numel()``), which reproduces :func:`gradient_descent_mse` exactly;
    ``"cross_entropy"`` is :math:`-\frac{1}{n}\sum_i \sum_c y_{ic} \log
    \mathrm{softmax}(f_i)_c` (mean over examples of the per-example cross-entropy, as
    ``torch.nn.functional.cross_entropy`` with probability targets; Neural Tangents'
    example divides by ``n k`` instead). A callable ``loss(fx, y) -> scalar`` is
    differentiated by autograd.

    With ``momentum`` (heavy ball, ``v <- momentum v - lr grad``, ``theta <- theta + v``)
    the continuous limit is second order, as in Neural Tangents: in time
    :math:`\tau = \sqrt{\mathrm{lr}}\, t`,

    .. math:: \ddot f = -T \nabla L - \frac{1 - \mathrm{momentum}}{\sqrt{\mathrm{lr}}}
              \dot f, \qquad \dot f(0) = 0.

    Since test outputs do not feed back, the solver integrates only
    :math:`h(\tau) = -\int_0^\tau \nabla L\, d\tau'` (``n k`` values; ``2 n k`` with
    momentum) with ``scipy.integrate.solve_ivp``; then
    :math:`f_x(\tau) = f_x(0) + T(x, x_{train}) h(\tau)` for any test set.

    Args:
        loss: ``"mse"``, ``"cross_entropy"``, or ``loss(fx, y)`` returning a scalar
            tensor (``fx`` and ``y`` of the shape of ``y_train``).
        k_train_train: the train-train NTK: a Kernel (its ``ntk``), a dict with ``"ntk"``
            or a bare ``(n, n)`` tensor.
        y_train: targets, shape ``(n, k)`` or ``(n,)``.
        learning_rate: step size.
        momentum: ``None`` (plain gradient descent) or a number in ``[0, 1)``.
        method: ``solve_ivp`` method (``"DOP853"``, ``"RK45"``, ``"LSODA"``, ...; an
            explicit Runge-Kutta pair by default, like Neural Tangents' ``odeint``).
        rtol: relative tolerance of the solver.
        atol: absolute tolerance of the solver.

    Returns:
        ``predict_fn(t, *, k_test_train=None, fx_train_0=0.0, fx_test_0=0.0)`` (everything
        after ``t`` keyword-only: Neural Tangents' positional order differs) returning
        :class:`Outputs` ``(train, test)`` at the finite time(s) ``t`` (a number or a
        tensor of times: leading axes), ``test`` ``None`` without ``k_test_train``
        (``(m, n)``).

    """
    where = "predict.gradient_descent"
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise HyperparameterError(
                describe(where, f"loss={loss!r}", f"Use one of {sorted(_LOSSES)} or a callable.")
            )
        loss_fn: Callable[[Tensor, Tensor], Tensor] = _LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise InputTypeError(
            describe(where, f"loss has type {type(loss).__name__}", "Pass a callable or a name.")
        )
    learning_rate = _real(learning_rate, "learning_rate", where, positive=True)
    if momentum is not None:
        momentum = _real(momentum, "momentum", where)
        if momentum >= 1:
            raise HyperparameterError(
                describe(where, f"momentum={momentum}", "momentum must be in [0, 1).")
            )
    y, vector = _targets(y_train, where)
    ntk, train_kernels = _ntk_of(k_train_train, "k_train_train", where)
    dtype = torch.promote_types(ntk.dtype, y.dtype)
    ntk, y = _sym(ntk.to(dtype)), y.to(dtype=dtype, device=ntk.device)
    n, k = y.shape
    if tuple(ntk.shape) != (n, n):
        raise ShapeError(
            describe(
                where,
                f"k_train_train has shape {tuple(ntk.shape)} but y_train has {n} rows",
                f"Pass the ({n}, {n}) NTK of the training points.",
            )
        )
    scale = math.sqrt(learning_rate) if momentum is not None else learning_rate
    damping = None if momentum is None else (1 - momentum) / math.sqrt(learning_rate)

    def grad_loss(f: Tensor) -> Tensor:
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            value = loss_fn(f[:, 0] if vector else f, y[:, 0] if vector else y)
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise InputTypeError(
                    describe(
                        where,
                        "loss(fx, y) did not return a scalar tensor",
                        "Reduce the loss to a scalar (sum or mean).",
                    )
                )
            (grad,) = torch.autograd.grad(value.reshape(()), f)
        if not bool(torch.isfinite(grad).all()):
            raise NonFiniteError(
                describe(
                    where,
                    "the loss gradient became NaN or infinite",
                    "Use a smaller learning rate or time, or a stable loss.",
                )
            )
        return grad

    def predict_fn(
        t: Any,
        *positional: Any,
        k_test_train: KernelLike | None = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = 0.0,
    ) -> Outputs:
        """Mean outputs at the finite time(s) ``t`` (see :func:`gradient_descent`)."""
        from scipy.integrate import solve_ivp

        _no_positional(positional, where, _ODE_KEYWORDS)

        times = _times(t, where, torch.float64, torch.device("cpu"))
        if bool(torch.isinf(times).any()):
            raise HyperparameterError(
                describe(
                    where,
                    "t is None or infinite",
                    "An ODE is integrated to finite times only: pass finite t (for MSE, "
                    "gradient_descent_mse has t = inf in closed form).",
                )
            )
        f0 = _offset(fx_train_0, (n, k), vector, "fx_train_0", where, y)
        f0 = torch.zeros_like(y) if f0 is None else f0
        ktd = None
        if k_test_train is not None:
            ktd, given = _ntk_of(k_test_train, "k_test_train", where)
            ktd = ktd.to(dtype=dtype, device=y.device)
            _check_test(ktd, n, "k_test_train", where, given, train_kernels, k)
        flat = (times.reshape(-1) * scale).numpy()
        order = np.unique(flat)

        def rhs(_: float, z: np.ndarray) -> np.ndarray:
            zt = torch.from_numpy(z).to(dtype=dtype, device=y.device)
            h = zt[: n * k].reshape(n, k)
            g = -grad_loss(f0 + ntk @ h).reshape(-1)
            if damping is None:
                return g.cpu().numpy().astype(np.float64)
            u = zt[n * k :]
            return torch.cat([u, g - damping * u]).cpu().numpy().astype(np.float64)

        size = n * k * (1 if damping is None else 2)
        z0 = np.zeros(size)
        if order[-1] > 0:
            sol = solve_ivp(
                rhs, (0.0, float(order[-1])), z0, method=method, t_eval=order, rtol=rtol, atol=atol
            )
            if not sol.success:
                raise NeuralKernelsError(
                    describe(
                        where,
                        f"the ODE solver failed ({sol.message})",
                        "Try another method (e.g. 'LSODA'), looser tolerances, or shorter times.",
                    )
                )
            zs = sol.y.T
        else:
            zs = z0[None]
        hs = torch.as_tensor(zs[:, : n * k], dtype=dtype, device=y.device).reshape(-1, n, k)
        index = torch.as_tensor(np.searchsorted(order, flat))
        hs = hs[index]
        train = f0 + ntk @ hs
        test = None
        if ktd is not None:
            ft0 = _offset(fx_test_0, (ktd.shape[0], k), vector, "fx_test_0", where, y)
            test = ktd @ hs
            if ft0 is not None:
                test = test + ft0
        shape = tuple(times.shape)

        def finish(a: Tensor) -> Tensor:
            a = a.reshape(*shape, *a.shape[1:])
            return a[..., 0] if vector else a

        return Outputs(finish(train), None if test is None else finish(test))

    return predict_fn


def max_learning_rate(
    ntk_train_train: KernelLike,
    y_train_size: int | None = None,
    momentum: float = 0.0,
    eps: float = 1e-12,
) -> float:
    r"""Largest stable learning rate of full-batch gradient descent on MSE (Neural Tangents).

    With the loss :math:`\frac{1}{2N}\sum (f - y)^2` one step maps the residual by
    :math:`I - \frac{\eta}{N} T`, a contraction iff :math:`\eta < 2N / \lambda_{max}(T)`;
    with momentum the bound is :math:`2 (1 + \mathrm{momentum}) N / \lambda_{max}`
    ("Why Momentum Really Works"). Returns
    :math:`2 (1 + \mathrm{momentum})\, N / (\lambda_{max} + \mathrm{eps})`.

    Args:
        ntk_train_train: the ``(n, n)`` NTK (a Kernel, a dict with ``"ntk"``, or a tensor).
        y_train_size: ``N = y_train.numel()`` (``n k`` for ``k`` outputs sharing the
            kernel); ``None`` means ``n`` (one output).
        momentum: the momentum of the optimiser.
        eps: guards against a zero kernel.

    Returns:
        The learning rate, a float.

    """
    where = "predict.max_learning_rate"
    ntk, _ = _ntk_of(ntk_train_train, "ntk_train_train", where)
    n = ntk.shape[0]
    if ntk.shape[1] != n:
        raise ShapeError(
            describe(where, f"ntk_train_train has shape {tuple(ntk.shape)}", "Pass a square NTK.")
        )
    if y_train_size is None:
        factor = n
    elif (
        isinstance(y_train_size, bool)
        or not isinstance(y_train_size, numbers.Integral)
        or (y_train_size < 1)
    ):
        raise HyperparameterError(
            describe(where, f"y_train_size={y_train_size!r}", "Pass y_train.numel(), an int.")
        )
    else:
        factor = int(y_train_size)
    momentum = _real(momentum, "momentum", where)
    a = _sym(ntk.detach())
    if a.device.type == "cpu":
        import scipy.linalg

        top = float(scipy.linalg.eigvalsh(a.numpy(), subset_by_index=[n - 1, n - 1])[-1])
    else:
        top = float(torch.linalg.eigvalsh(a)[-1])
    return 2 * (1 + momentum) * factor / (top + eps)
