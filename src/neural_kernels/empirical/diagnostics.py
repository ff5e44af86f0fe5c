r"""Do practical widths behave like the NTK? Kernel comparisons, a training tracker, width sweeps.

* :func:`kernel_distance` (relative Frobenius change :math:`\|K_1 - K_0\|_F/\|K_0\|_F`),
  :func:`kernel_cosine_distance` (:math:`1 - \langle K_0, K_1\rangle_F / (\|K_0\|_F
  \|K_1\|_F)`, the "kernel distance" of Fort et al. 2020) and
  :func:`centered_kernel_alignment` (CKA, Cortes et al. 2012 / Kornblith et al. 2019).
* :class:`KernelTracker` records, during a user's training loop, how far the empirical
  NTK on probe inputs has moved from initialisation, and the gap between the network and
  its linearisation at initialisation.
* :func:`~neural_kernels.width_sweep` (in :mod:`.sweep`) measures, per width and
  parametrization, the empirical NTK at initialisation against the closed form and how
  much the kernel moves when the finite twin is trained by gradient descent.

Everything returns plain floats, dataclasses and dicts (``to_dict()``) for reports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jvp

from .._functional import functional_call
from .._validation import as_tensor
from ..errors import ShapeError, SingularKernelError, describe
from ._model import DEFAULT_TRACE, forward_ad_ready
from .ntk import empirical_ntk

# ----------------------------------------------------------------------------------------
# Comparing kernels
# ----------------------------------------------------------------------------------------


def _matrix(k: Any, name: str, where: str) -> Tensor:
    """A kernel as a float64 matrix; ``(n1, n2, k, k)`` blocks become ``(n1 k, n2 k)``."""
    t = as_tensor(k, name, where).detach().to(torch.float64)
    if t.ndim == 4:
        n1, n2, a, b = t.shape
        return t.permute(0, 2, 1, 3).reshape(n1 * a, n2 * b)
    if t.ndim != 2:
        raise ShapeError(
            describe(
                where,
                f"{name} has shape {tuple(t.shape)}",
                "Pass a kernel of shape (n1, n2) or (n1, n2, k, k).",
            )
        )
    return t


def _pair(k0: Any, k1: Any, where: str) -> tuple[Tensor, Tensor]:
    a, b = _matrix(k0, "k0", where), _matrix(k1, "k1", where)
    if a.shape != b.shape:
        raise ShapeError(
            describe(
                where,
                f"k0 has shape {tuple(a.shape)} but k1 {tuple(b.shape)}",
                "Compare kernels on the same inputs.",
            )
        )
    return a, b.to(a.device)


def _nonzero(norm: float, name: str, where: str) -> float:
    if norm == 0.0:
        raise SingularKernelError(
            describe(where, f"{name} is zero", "Compare kernels that are not identically zero.")
        )
    return norm


def kernel_distance(k0: Any, k1: Any) -> float:
    r"""Relative Frobenius change :math:`\|K_1 - K_0\|_F / \|K_0\|_F` (``0``: unchanged).

    Kernels ``(n1, n2)`` or ``(n1, n2, k, k)`` (tensors or arrays), compared in float64.
    """
    where = "kernel_distance"
    a, b = _pair(k0, k1, where)
    return float(torch.linalg.norm(b - a)) / _nonzero(float(torch.linalg.norm(a)), "k0", where)


def kernel_cosine_distance(k0: Any, k1: Any) -> float:
    r""":math:`1 - \langle K_0, K_1\rangle_F / (\|K_0\|_F \|K_1\|_F)`: insensitive to scale.

    The "kernel distance" of Fort et al. (2020); ``0`` for proportional kernels.
    """
    where = "kernel_cosine_distance"
    a, b = _pair(k0, k1, where)
    na = _nonzero(float(torch.linalg.norm(a)), "k0", where)
    nb = _nonzero(float(torch.linalg.norm(b)), "k1", where)
    return 1.0 - float((a * b).sum()) / (na * nb)


def centered_kernel_alignment(k0: Any, k1: Any) -> float:
    r"""Centred kernel alignment :math:`\langle HK_0H, HK_1H\rangle_F / (\|HK_0H\|_F \|HK_1H\|_F)`.

    :math:`H = I - \frac{1}{n} 1 1^\top` centres rows and columns (each side its own for
    rectangular kernels). ``1`` means the same kernel up to scale and constant shifts.
    """
    where = "centered_kernel_alignment"
    a, b = _pair(k0, k1, where)

    def centre(m: Tensor) -> Tensor:
        m = m - m.mean(dim=0, keepdim=True)
        return m - m.mean(dim=1, keepdim=True)

    ca, cb = centre(a), centre(b)
    na = _nonzero(float(torch.linalg.norm(ca)), "k0 after centring", where)
    nb = _nonzero(float(torch.linalg.norm(cb)), "k1 after centring", where)
    return float((ca * cb).sum()) / (na * nb)


# ----------------------------------------------------------------------------------------
# Tracking a training run
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelSnapshot:
    r"""How far a model has moved from initialisation, on the tracker's probe inputs.

    Attributes:
        step: the user's step label (``None`` if not given).
        kernel_distance: :math:`\|K - K_0\|_F / \|K_0\|_F` (relative Frobenius change).
        cosine_distance: :math:`1 - \cos(K, K_0)` (Fort et al.'s kernel distance).
        cka: centred kernel alignment of :math:`K` with :math:`K_0`.
        output_change: RMS of :math:`f(\theta) - f(\theta_0)`.
        linearization_gap: RMS of :math:`f(\theta) - f_{lin}(\theta)` where
            :math:`f_{lin}(\theta) = f(\theta_0) + J_0 (\theta - \theta_0)`.
        relative_linearization_gap: :math:`\|f - f_{lin}\| / \|f - f(\theta_0)\|`
            (``0`` while the outputs have not moved).
        parameter_change: :math:`\|\theta - \theta_0\| / \|\theta_0\|`.

    """

    step: int | None
    kernel_distance: float
    cosine_distance: float
    cka: float
    output_change: float
    linearization_gap: float
    relative_linearization_gap: float
    parameter_change: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return dataclasses.asdict(self)


class KernelTracker:
    r"""Record the movement of the empirical NTK and the linearisation gap during training.

    Built at initialisation, it stores :math:`\theta_0`, the empirical NTK :math:`K_0` on
    ``x_probe`` and the outputs there. Call :meth:`record` whenever you like in your
    training loop; it evaluates the model **in eval mode** (restoring every submodule's
    mode afterwards), so that dropout and batch norm use their inference behaviour.

    Examples:
        >>> import torch, neural_kernels as nk
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 1))
        >>> x = torch.randn(16, 3)
        >>> tracker = nk.KernelTracker(model, x[:8])
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> for step in range(3):
        ...     opt.zero_grad(); ((model(x) - 1) ** 2).mean().backward(); opt.step()
        ...     snap = tracker.record(step)
        >>> sorted(tracker.as_dict())[:3]
        ['cka', 'cosine_distance', 'kernel_distance']

    Args:
        model: the ``nn.Module`` being trained (kept by reference).
        x_probe: probe inputs ``(n, *features)``.
        strategy, trace_outputs, memory_budget, dtype: passed to
            :func:`~neural_kernels.empirical_ntk` (``trace_outputs="mean"`` by default:
            the per-output kernel, like every empirical kernel of the library).

    """

    def __init__(
        self,
        model: nn.Module,
        x_probe: Any,
        *,
        strategy: str = "auto",
        trace_outputs: bool | str = DEFAULT_TRACE,
        memory_budget: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.options: dict[str, Any] = {
            "strategy": strategy,
            "trace_outputs": trace_outputs,
            "memory_budget": memory_budget,
            "dtype": dtype,
        }
        with _eval_mode(model):
            self.initial_kernel = empirical_ntk(model, x_probe, **self.options)  # validates
        self.dtype = self.initial_kernel.dtype
        x = (
            x_probe
            if isinstance(x_probe, Tensor)
            else as_tensor(x_probe, "x_probe", "KernelTracker")
        )
        self.x_probe = x.detach().to(self.dtype) if x.is_floating_point() else x.detach()
        self.initial_parameters = self._trainable()
        self.history: list[KernelSnapshot] = []

    def _trainable(self) -> dict[str, Tensor]:
        return {
            n: p.detach().to(self.dtype).clone()
            for n, p in self.model.named_parameters()
            if p.requires_grad
        }

    def record(self, step: int | None = None) -> KernelSnapshot:
        """Measure the model now against initialisation; append to :attr:`history`."""
        k = self.current_kernel()
        theta = self._trainable()
        theta0 = self.initial_parameters
        named = {n: p.detach().to(self.dtype) for n, p in self.model.named_parameters()}
        consts = {n: v for n, v in named.items() if n not in theta0}
        consts.update(
            {
                n: b.to(self.dtype) if b.is_floating_point() else b
                for n, b in self.model.named_buffers()
            }
        )

        def f(p: dict[str, Tensor]) -> Tensor:
            return functional_call(self.model, {**consts, **p}, (self.x_probe,))

        delta = {n: theta[n] - theta0[n] for n in theta0}
        forward_ad_ready()
        with _eval_mode(self.model), torch.no_grad():
            f0, tangent = jvp(f, (theta0,), (delta,))  # type: ignore[misc]  # no aux
            now = f(theta)
        gap = float(torch.linalg.norm(now - f0 - tangent))
        moved = float(torch.linalg.norm(now - f0))
        size = math.sqrt(max(now.numel(), 1))
        norm0 = math.sqrt(sum(float((v * v).sum()) for v in theta0.values()))
        dnorm = math.sqrt(sum(float((v * v).sum()) for v in delta.values()))
        snap = KernelSnapshot(
            step=step,
            kernel_distance=kernel_distance(self.initial_kernel, k),
            cosine_distance=kernel_cosine_distance(self.initial_kernel, k),
            cka=centered_kernel_alignment(self.initial_kernel, k),
            output_change=moved / size,
            linearization_gap=gap / size,
            relative_linearization_gap=gap / moved if moved > 0 else 0.0,
            parameter_change=dnorm / norm0 if norm0 > 0 else math.inf,
        )
        self.history.append(snap)
        return snap

    def current_kernel(self) -> Tensor:
        """The empirical NTK on the probe inputs at the current parameters (eval mode)."""
        with _eval_mode(self.model):
            return empirical_ntk(self.model, self.x_probe, **self.options)

    def as_dict(self) -> dict[str, list[Any]]:
        """The history as columns: ``{field: [value per record]}``."""
        names = [f.name for f in dataclasses.fields(KernelSnapshot)]
        return {n: [getattr(s, n) for s in self.history] for n in names}


class _eval_mode:  # noqa: N801 (a context manager used like a function)
    """Put every submodule in eval mode; restore each one's mode on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        for m, mode in self.modes:
            m.training = mode
