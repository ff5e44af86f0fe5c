r"""Do practical widths behave like the NTK? Kernel comparisons, a training tracker, width sweeps.

* :func:`kernel_distance` (relative Frobenius change :math:`\|K_1 - K_0\|_F/\|K_0\|_F`),
  :func:`kernel_cosine_distance` (:math:`1 - \langle K_0, K_1\rangle_F / (\|K_0\|_F
  \|K_1\|_F)`, the "kernel distance" of Fort et al. 2020) and
  :func:`centered_kernel_alignment` (CKA, Cortes et al. 2012 / Kornblith et al. 2019).
* :class:`KernelTracker` records, during a user's training loop, how far the empirical
  NTK on probe inputs has moved from initialisation, and the gap between the network and
  its linearisation at initialisation.
* :func:`width_sweep` measures, per width and parametrization: the empirical NTK at
  initialisation against the closed form, and how much the kernel moves when the finite
  twin is trained by gradient descent.

Everything returns plain floats, dataclasses and dicts (``to_dict()``) for reports.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ._empirical_core import forward_ad_ready
from ._validation import as_tensor, check_parametrization, check_positive_int
from .errors import HyperparameterError, InputTypeError, ShapeError, SingularKernelError, describe

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

    Example:
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
            :func:`~neural_kernels.empirical_ntk`.

    """

    def __init__(
        self,
        model: nn.Module,
        x_probe: Any,
        *,
        strategy: str = "auto",
        trace_outputs: bool | str = True,
        memory_budget: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        from .empirical import empirical_ntk

        self._ntk = empirical_ntk
        self.model = model
        self.options = {
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
            f0, tangent = jvp(f, (theta0,), (delta,))
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
            return self._ntk(self.model, self.x_probe, **self.options)

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


# ----------------------------------------------------------------------------------------
# Width sweeps
# ----------------------------------------------------------------------------------------

#: The per-width numbers of a sweep that can be fitted against the width.
SWEEP_METRICS = ("ntk_error", "ntk_error_of_mean", "nngp_error", "kernel_change",
                 "cosine_change", "linearization_gap")  # fmt: skip


@dataclass(frozen=True)
class WidthSweepRow:
    r"""The numbers of one (parametrization, width) of :func:`width_sweep`, over seeds.

    Attributes:
        parametrization: ``"ntk"`` or ``"standard"``.
        width: the hidden width.
        n_params: trainable parameters of one twin.
        ntk_error: mean over seeds of :math:`\|\hat\Theta_0 - \Theta\|_F/\|\Theta\|_F`
            (empirical NTK at initialisation, mean over outputs, against ``net.kernel``).
        ntk_error_std: its standard deviation over seeds.
        ntk_error_of_mean: the same error for the seed-averaged empirical NTK.
        nngp_error: mean over seeds of the NNGP's relative error (one network's outputs).
        kernel_change: mean over seeds of :math:`\|\hat\Theta_T - \hat\Theta_0\|_F /
            \|\hat\Theta_0\|_F` after training.
        kernel_change_std: its standard deviation over seeds.
        cosine_change: mean of :math:`1 - \cos(\hat\Theta_0, \hat\Theta_T)`.
        cka: mean CKA of :math:`\hat\Theta_0` and :math:`\hat\Theta_T`.
        linearization_gap: mean of :math:`\|f_T - f^{lin}_T\| / \|f_T - f_0\|` (the
            linearisation at initialisation evaluated at the trained parameters).
        train_loss: mean final training loss :math:`\frac{1}{2N}\sum (f - y)^2`.
        initial_loss: mean initial training loss.
        learning_rate: mean learning rate used.
        seeds: the number of seeds.

    """

    parametrization: str
    width: int
    n_params: int
    ntk_error: float
    ntk_error_std: float
    ntk_error_of_mean: float
    nngp_error: float
    kernel_change: float
    kernel_change_std: float
    cosine_change: float
    cka: float
    linearization_gap: float
    train_loss: float
    initial_loss: float
    learning_rate: float
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WidthSweep:
    """The result of :func:`width_sweep`: one row per (parametrization, width).

    Attributes:
        rows: the rows, parametrizations in the given order, widths increasing.
        settings: the options of the sweep (numbers and strings only).

    """

    rows: tuple[WidthSweepRow, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def select(self, parametrization: str) -> list[WidthSweepRow]:
        """The rows of one parametrization, widths increasing."""
        return [r for r in self.rows if r.parametrization == parametrization]

    def slope(self, metric: str, parametrization: str) -> float:
        """Least-squares slope of ``log(metric)`` against ``log(width)`` (``-0.5``: 1/sqrt)."""
        pts = self._points(metric, parametrization)
        if len(pts) < 2:
            return math.nan
        xs = [math.log(w) for w, _ in pts]
        ys = [math.log(v) for _, v in pts]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((a - mx) ** 2 for a in xs)
        return (
            sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / var if var else math.nan
        )

    def width_at(self, metric: str, threshold: float, parametrization: str) -> float | None:
        """The width where ``metric`` first falls below ``threshold`` (log-log interpolation).

        ``None`` if it never does within the sweep; the smallest width if it already does.
        """
        pts = self._points(metric, parametrization)
        for i, (w, v) in enumerate(pts):
            if v <= threshold:
                if i == 0:
                    return float(w)
                (w0, v0) = pts[i - 1]
                t = (math.log(threshold) - math.log(v0)) / (math.log(v) - math.log(v0))
                return float(math.exp(math.log(w0) + t * (math.log(w) - math.log(w0))))
        return None

    def _points(self, metric: str, parametrization: str) -> list[tuple[int, float]]:
        if metric not in SWEEP_METRICS:
            raise HyperparameterError(
                describe(
                    "WidthSweep", f"metric={metric!r}", f"Use one of {', '.join(SWEEP_METRICS)}."
                )
            )
        rows = self.select(parametrization)
        return [(r.width, getattr(r, metric)) for r in rows if getattr(r, metric) > 0]

    def summary(self, thresholds: Sequence[float] = (0.1, 0.01)) -> dict[str, Any]:
        """Per parametrization: log-log slopes and the widths where errors fall below thresholds."""
        out: dict[str, Any] = {}
        for p in dict.fromkeys(r.parametrization for r in self.rows):
            out[p] = {
                "slopes": {
                    m: self.slope(m, p) for m in ("ntk_error", "kernel_change", "linearization_gap")
                },
                "width_at": {
                    f"{m}<={t}": self.width_at(m, t, p)
                    for m in ("ntk_error", "kernel_change")
                    for t in thresholds
                },
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """Rows, settings and summary as plain data (JSON-serialisable but for NaN slopes)."""
        return {
            "rows": [r.to_dict() for r in self.rows],
            "settings": dict(self.settings),
            "summary": self.summary(),
        }


def width_sweep(
    net: Any,
    x: Any,
    widths: Sequence[int],
    parametrizations: Sequence[str] = ("ntk", "standard"),
    n_seeds: int = 4,
    *,
    train_steps: int = 100,
    learning_rate: float | None = None,
    lr_fraction: float = 0.5,
    y: Any = None,
    strategy: str = "auto",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> WidthSweep:
    r"""How close finite twins of ``net`` are to its NTK, per width and parametrization.

    For every parametrization ``p`` and width ``w``, the network is rebuilt with every
    hidden width ``w`` (its readout keeps its width) and parametrization ``p``; its closed
    form ``Theta = kernel(x).ntk`` is computed (in the standard parametrization the NTK
    depends on the widths, so each width has its own). Then for ``n_seeds`` twins:

    (a) the empirical NTK at initialisation (mean over outputs, which is what the closed
        form describes) against ``Theta``: relative Frobenius error; also the NNGP;
    (b) training by full-batch gradient descent for ``train_steps`` steps on
        :math:`\frac{1}{2N}\sum (f(x) - y)^2`, with learning rate ``learning_rate`` or, by
        default, ``lr_fraction`` times the largest stable rate of the twin's own NTK
        (:func:`~neural_kernels.predict.max_learning_rate`) — so that every width trains
        the same "kernel time" — then how far the empirical NTK moved (relative Frobenius
        change, cosine distance, CKA) and the gap to the linearised network;
    (c) :meth:`WidthSweep.summary` fits the error and movement against the width (slope
        ``-0.5`` is :math:`1/\sqrt{w}`) and says where they fall below 10 % and 1 %.

    Args:
        net: a network description (``nk.Sequential(...)`` of ``Dense``/``Conv`` and
            friends), or a function ``(width, parametrization) -> network`` for anything
            the automatic rewrite does not handle.
        x: inputs ``(n, *features)`` (the training set of (b) too).
        widths: hidden widths, e.g. ``(32, 128, 512, 2048)``.
        parametrizations: among ``"ntk"`` and ``"standard"``.
        n_seeds: twins per width.
        train_steps: gradient-descent steps (``0``: no training, no movement measured).
        learning_rate: a fixed learning rate for every width (overrides ``lr_fraction``).
        lr_fraction: fraction of each twin's largest stable learning rate.
        y: targets ``(n, k)``; default standard normal (fixed seed), ``k`` the outputs.
        strategy: passed to :func:`~neural_kernels.empirical_ntk`.
        dtype: dtype of the twins and kernels (default float64).
        seed: base seed of the twins' initialisations and of the default targets.
        progress: called as ``progress(done, total)`` after every twin.

    Returns:
        A :class:`WidthSweep` (``to_dict()`` for a report).

    """
    from .empirical import empirical_nngp, empirical_ntk
    from .layers.base import Layer
    from .predict import max_learning_rate

    where = "width_sweep"
    ws = _widths(widths, where)
    params = (
        tuple(parametrizations) if not isinstance(parametrizations, str) else (parametrizations,)
    )
    for p in params:
        check_parametrization(where, p)
    check_positive_int(where, "n_seeds", n_seeds)
    if (
        isinstance(train_steps, bool)
        or not isinstance(train_steps, numbers.Integral)
        or train_steps < 0
    ):
        raise HyperparameterError(
            describe(where, f"train_steps={train_steps!r}", "Pass an integer >= 0.")
        )
    if not (isinstance(net, Layer) or callable(net)):
        raise InputTypeError(
            describe(
                where,
                f"net has type {type(net).__name__}",
                "Pass a network description or a function (width, parametrization) -> network.",
            )
        )
    xt = as_tensor(x, "x", where).detach().to(dtype)
    targets = None if y is None else as_tensor(y, "y", where).detach().to(dtype)
    rows = []
    total, done = len(params) * len(ws) * int(n_seeds), 0
    for p in params:
        for w in ws:
            layer = _at_width(net, w, p, where)
            closed = layer.kernel(xt, get=("nngp", "ntk"))
            runs = []
            for s in range(int(n_seeds)):
                gen = torch.Generator().manual_seed(seed * 100_003 + 7919 * w + 31 * s + 1)
                model = layer.module(xt.shape[1:], parametrization=p, generator=gen, dtype=dtype)
                k0 = empirical_ntk(model, xt, strategy=strategy, trace_outputs="mean")
                g0 = empirical_nngp(model, xt, trace_outputs="mean")
                run = {
                    "k0": k0,
                    "ntk_error": kernel_distance(closed.ntk, k0),
                    "nngp_error": kernel_distance(closed.nngp, g0),
                    "n_params": sum(q.numel() for q in model.parameters() if q.requires_grad),
                }
                if train_steps > 0:
                    run.update(_train(model, xt, targets, k0, int(train_steps), learning_rate,
                                      lr_fraction, strategy, seed, max_learning_rate))  # fmt: skip
                runs.append(run)
                done += 1
                if progress is not None:
                    progress(done, total)
            rows.append(_row(p, w, runs, closed.ntk))
    settings = {
        "n": int(xt.shape[0]),
        "widths": list(ws),
        "parametrizations": list(params),
        "n_seeds": int(n_seeds),
        "train_steps": int(train_steps),
        "learning_rate": learning_rate,
        "lr_fraction": float(lr_fraction),
        "dtype": str(dtype).replace("torch.", ""),
        "strategy": strategy,
        "seed": int(seed),
    }
    return WidthSweep(tuple(rows), settings)


def _widths(widths: Any, where: str) -> tuple[int, ...]:
    ws = (widths,) if isinstance(widths, numbers.Integral) else tuple(widths)
    if not ws:
        raise HyperparameterError(
            describe(where, "widths is empty", "Pass widths such as (64, 256, 1024).")
        )
    for w in ws:
        check_positive_int(where, "width", w)
    return tuple(sorted(int(w) for w in ws))


def _train(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    k0: Tensor,
    steps: int,
    learning_rate: float | None,
    lr_fraction: float,
    strategy: str,
    seed: int,
    max_lr: Callable[..., float],
) -> dict[str, Any]:
    """Full-batch gradient descent on MSE; the tracker's numbers after training."""
    with torch.no_grad():
        out0 = model(x)
    if y is None:
        gen = torch.Generator().manual_seed(seed + 12345)
        y = torch.randn(out0.shape, generator=gen, dtype=out0.dtype)
    y = y.reshape(out0.shape)
    lr = float(learning_rate) if learning_rate is not None else lr_fraction * max_lr(k0, y.numel())
    tracker = KernelTracker(model, x, strategy=strategy, trace_outputs="mean")
    params = [q for q in model.parameters() if q.requires_grad]
    initial = 0.5 * float(((out0 - y) ** 2).mean())
    for _ in range(steps):
        loss = 0.5 * ((model(x) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for q, g in zip(params, grads, strict=True):
                q.sub_(lr * g)
    with torch.no_grad():
        final = 0.5 * float(((model(x) - y) ** 2).mean())
    snap = tracker.record(steps)
    return {
        "kernel_change": snap.kernel_distance,
        "cosine_change": snap.cosine_distance,
        "cka": snap.cka,
        "linearization_gap": snap.relative_linearization_gap,
        "train_loss": final,
        "initial_loss": initial,
        "learning_rate": lr,
    }


def _row(p: str, w: int, runs: list[dict[str, Any]], closed: Tensor) -> WidthSweepRow:
    def mean(key: str) -> float:
        vals = [r[key] for r in runs if key in r]
        return float(sum(vals) / len(vals)) if vals else math.nan

    def std(key: str) -> float:
        vals = [r[key] for r in runs if key in r]
        if len(vals) < 2:
            return 0.0
        m = sum(vals) / len(vals)
        return float(math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)))

    k_mean = torch.stack([r["k0"] for r in runs]).mean(0)
    return WidthSweepRow(
        parametrization=p,
        width=w,
        n_params=int(runs[0]["n_params"]),
        ntk_error=mean("ntk_error"),
        ntk_error_std=std("ntk_error"),
        ntk_error_of_mean=kernel_distance(closed, k_mean),
        nngp_error=mean("nngp_error"),
        kernel_change=mean("kernel_change"),
        kernel_change_std=std("kernel_change"),
        cosine_change=mean("cosine_change"),
        cka=mean("cka"),
        linearization_gap=mean("linearization_gap"),
        train_loss=mean("train_loss"),
        initial_loss=mean("initial_loss"),
        learning_rate=mean("learning_rate"),
        seeds=len(runs),
    )


def _at_width(net: Any, width: int, parametrization: str, where: str) -> Any:
    """The network with every hidden width ``width`` and the given parametrization."""
    from .layers.base import Layer

    if isinstance(net, Layer):
        return _rewrite(net, width, parametrization, True, where)
    layer = net(width, parametrization)
    if not isinstance(layer, Layer):
        raise InputTypeError(
            describe(
                where,
                f"net({width}, {parametrization!r}) returned {type(layer).__name__}",
                "The function must return a network description (a Layer).",
            )
        )
    return layer


def _rewrite(layer: Any, width: int, p: str, top: bool, where: str) -> Any:
    """Rebuild ``layer`` with hidden widths ``width`` (the readout keeps its own)."""
    from .layers.base import Parallel, Residual, Sequential, _holds_width

    if type(layer) is Residual:
        branch = layer.layers[1].layers[0]
        return Residual(*(_rewrite(c, width, p, False, where) for c in branch.layers))
    if type(layer) is Sequential:
        readout = None
        if top:
            readout = max((i for i, c in enumerate(layer.layers) if _holds_width(c)), default=None)
        return Sequential(
            *(_rewrite(c, width, p, i == readout, where) for i, c in enumerate(layer.layers))
        )
    if type(layer) is Parallel:
        return Parallel(*(_rewrite(c, width, p, top, where) for c in layer.layers))
    names = (
        {f.name for f in dataclasses.fields(layer)} if dataclasses.is_dataclass(layer) else set()
    )
    changes: dict[str, Any] = {}
    if "parametrization" in names:
        changes["parametrization"] = p
    if layer.has_width and not top:
        key = next((n for n in ("out_features", "out_channels") if n in names), None)
        if key is None:
            raise HyperparameterError(
                describe(
                    where,
                    f"cannot change the width of {layer!r}",
                    "Pass net as a function (width, parametrization) -> network.",
                )
            )
        changes[key] = width
    elif any(_holds_width(c) for c in layer._sublayers()):
        raise HyperparameterError(
            describe(
                where,
                f"cannot rebuild {type(layer).__name__} with new widths",
                "Pass net as a function (width, parametrization) -> network.",
            )
        )
    return dataclasses.replace(layer, **changes) if changes else layer
