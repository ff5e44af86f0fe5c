"""Checks and readers of the predictors' inputs: numbers, targets, times, kernels."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import Tensor

from .._validation import as_tensor
from ..errors import (
    HyperparameterError,
    InputTypeError,
    NonFiniteError,
    ShapeError,
    describe,
)
from ..kernel import Kernel

if TYPE_CHECKING:
    from ..store.stored import StoredKernel

#: Names of the predictions of gradient-descent training.
GD_NAMES = ("nngp", "ntk")
#: Names of the posteriors of :func:`~neural_kernels.predict.gp_inference`.
GP_NAMES = ("nngp", "ntk", "ntkgp")
#: Internal name of a kernel passed as one bare tensor (it is its own prior covariance).
BARE = "kernel"

KernelLike = Union[Kernel, "StoredKernel", Mapping[str, Any], Tensor, np.ndarray]
Get = Union[str, Iterable[str], None]  # noqa: UP007


def real(value: Any, name: str, where: str, *, positive: bool = False) -> float:
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


def targets(y: Any, where: str) -> tuple[Tensor, bool]:
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


def times_of(t: Any, where: str, dtype: torch.dtype, device: torch.device) -> Tensor:
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


def offset(value: Any, shape: tuple[int, ...], vector: bool, name: str, where: str, like: Tensor):
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


class Kernels:
    """Kernel matrices by name, from a ``Kernel``, a mapping or one bare tensor.

    A bare tensor has no name: it stands for whichever single kernel is needed (for a
    training kernel, it is its own prior covariance, like the NNGP).
    """

    def __init__(self, obj: Any, role: str, where: str) -> None:
        self.role, self.where = role, where
        self.stored_variances: Tensor | None = None
        if isinstance(obj, Kernel):
            if obj.self_pairs:
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
        elif getattr(obj, "stored", False) is True:  # a StoredKernel (store of the scale extra)
            raw = {"nngp": obj.nngp, "ntk": obj.ntk}
            self.bare = False
            self.stored_variances = obj.cov1
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
            raw = {BARE: obj}
            self.bare = True
        if not isinstance(obj, Kernel):
            self.kernel = None
        self._raw = {key: value for key, value in raw.items() if value is not None}
        self._checked: dict[str, Tensor] = {}

    def variances(self) -> Tensor | None:
        """The NNGP variances of the first inputs, when known (a Kernel or an NNGP)."""
        if self.kernel is not None:
            return self.kernel.cov1.detach()
        if self.stored_variances is not None:
            return self.stored_variances
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
        key = BARE if self.bare else name
        if key == BARE and not self.bare:
            raise InputTypeError(
                describe(
                    self.where,
                    f"{self.role} is a Kernel or dict but the training kernel is a bare tensor",
                    "Pass bare tensors for every kernel, or a Kernel for every kernel.",
                )
            )
        if key not in self._checked:
            raw = self._raw[key]
            if hasattr(raw, "to_tensor"):  # a stored kernel: read it whole
                raw = raw.to_tensor()
            t = as_tensor(raw, f"{self.role}.{key}", self.where)
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


def prior_of(g: str) -> str:
    """The kernel whose Gaussian the outputs have at initialisation."""
    return {"ntk": "nngp", "ntkgp": "ntk"}.get(g, g)


def dynamics_of(g: str) -> str:
    """The kernel that is inverted (or drives training)."""
    return "ntk" if g == "ntkgp" else g


def check_test(
    k_td: Tensor,
    n: int,
    role: str,
    where: str,
    given: Kernels | None = None,
    train: Kernels | None = None,
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
    given: Kernels | None,
    train: Kernels | None,
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


def check_test_test(k_tt: Tensor, m: int, where: str) -> None:
    if tuple(k_tt.shape) != (m, m):
        raise ShapeError(
            describe(
                where,
                f"k_test_test has shape {tuple(k_tt.shape)} but k_test_train has {m} rows",
                f"Pass the test-test kernel of shape ({m}, {m}).",
            )
        )


def ntk_of(k: Any, role: str, where: str) -> tuple[Tensor, Kernels]:
    """The NTK matrix of ``k`` (a Kernel, a dict or a bare tensor) and its reader."""
    ks = Kernels(k, role, where)
    ks.require(["ntk"], "gradient-descent training")
    key = BARE if ks.bare else "ntk"
    t = as_tensor(ks._raw[key], role, where)
    if t.ndim != 2:
        raise ShapeError(describe(where, f"{role} has shape {tuple(t.shape)}", "Pass a matrix."))
    return t, ks


def compute_cov_flag(compute_cov: Any, k_test_test: Any, where: str) -> Any:
    if compute_cov is None:
        return k_test_test is not None
    if not isinstance(compute_cov, (bool, np.bool_)):
        raise HyperparameterError(
            describe(where, f"compute_cov={compute_cov!r}", "Pass True, False or None.")
        )
    return bool(compute_cov)


MSE_KEYWORDS = "k_test_train=, k_test_test=, get=, compute_cov=, fx_train_0=, fx_test_0="
ODE_KEYWORDS = "k_test_train=, fx_train_0=, fx_test_0="


def no_positional(args: tuple[Any, ...], where: str, keywords: str) -> None:
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
