r"""Width sweeps: how close finite twins are to the NTK, per width and parametrization.

:func:`width_sweep` measures (a) the empirical NTK at initialisation against the closed
form, (b) how much the kernel moves when each twin is trained by gradient descent, and
(c) fits both against the width (:meth:`WidthSweep.summary`). Plain dataclasses and dicts.
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

from .._validation import as_tensor, check_parametrization, check_positive_int
from ..errors import HyperparameterError, InputTypeError, describe
from ..predict import max_learning_rate
from .diagnostics import KernelTracker, kernel_distance
from .ntk import empirical_nngp, empirical_ntk
from .training import train_mse

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
        nngp_error: relative error of the output covariance averaged over seeds and
            outputs against the closed-form NNGP. It is a sample covariance: it shrinks
            like ``1/sqrt(seeds * outputs)``, not with the width (unlike the NTK, which
            concentrates as the width grows).
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
    from ..layers import Layer

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
                k0 = empirical_ntk(model, xt, strategy=strategy)
                g0 = empirical_nngp(model, xt)
                run = {
                    "k0": k0,
                    "ntk_error": kernel_distance(closed.ntk, k0),
                    "g0": g0,
                    "n_params": sum(q.numel() for q in model.parameters() if q.requires_grad),
                }
                if train_steps > 0:
                    run.update(_train(model, xt, targets, k0, int(train_steps), learning_rate,
                                      lr_fraction, strategy, seed))  # fmt: skip
                runs.append(run)
                done += 1
                if progress is not None:
                    progress(done, total)
            rows.append(_row(p, w, runs, closed.ntk, closed.nngp))
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
) -> dict[str, Any]:
    """Full-batch gradient descent on MSE (:func:`train_mse`); the tracker's numbers after."""
    with torch.no_grad():
        out0 = model(x)
    if y is None:
        gen = torch.Generator().manual_seed(seed + 12345)
        y = torch.randn(out0.shape, generator=gen, dtype=out0.dtype)
    y = y.reshape(out0.shape)
    lr = (
        float(learning_rate)
        if learning_rate is not None
        else lr_fraction * max_learning_rate(k0, y.numel())
    )
    tracker = KernelTracker(model, x, strategy=strategy)
    losses = train_mse(model, x, y, learning_rate=lr, steps=steps)
    snap = tracker.record(steps)
    return {
        "kernel_change": snap.kernel_distance,
        "cosine_change": snap.cosine_distance,
        "cka": snap.cka,
        "linearization_gap": snap.relative_linearization_gap,
        "train_loss": float(losses[-1]),
        "initial_loss": float(losses[0]),
        "learning_rate": lr,
    }


def _row(
    p: str, w: int, runs: list[dict[str, Any]], closed: Tensor, closed_nngp: Tensor
) -> WidthSweepRow:
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
    g_mean = torch.stack([r["g0"] for r in runs]).mean(0)
    return WidthSweepRow(
        parametrization=p,
        width=w,
        n_params=int(runs[0]["n_params"]),
        ntk_error=mean("ntk_error"),
        ntk_error_std=std("ntk_error"),
        ntk_error_of_mean=kernel_distance(closed, k_mean),
        nngp_error=kernel_distance(closed_nngp, g_mean),
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
    from ..layers import Layer

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
    from ..core.plan import holds_width
    from ..layers import Parallel, Residual, Sequential

    if type(layer) is Residual:
        return Residual(*(_rewrite(c, width, p, False, where) for c in layer.branch.layers))
    if type(layer) is Sequential:
        readout = None
        if top:
            readout = max((i for i, c in enumerate(layer.layers) if holds_width(c)), default=None)
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
    if layer.requirements.has_width and not top:
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
    elif any(holds_width(c) for c in layer.children()):
        raise HyperparameterError(
            describe(
                where,
                f"cannot rebuild {type(layer).__name__} with new widths",
                "Pass net as a function (width, parametrization) -> network.",
            )
        )
    return dataclasses.replace(layer, **changes) if changes else layer
