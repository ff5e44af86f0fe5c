r"""Coordinate check: the size of every layer's activations after a few steps, against width.

Train a twin of each width for ``steps`` optimizer steps (per-layer rates from
:func:`~neural_kernels.abc.param_groups`) and record, after every step, the mean absolute
coordinate :math:`\frac{1}{N n}\sum |h_{i\alpha}|` of each leaf module's output. In a
parametrization that is stable and maximal (muP), every curve is flat in the width; in
the standard parametrization at a fixed learning rate, the activations after a step grow
with the width (TP4 Thm 3.3 fails: the network blows up as ``n`` grows).

The slope of :math:`\log(\text{mean } |h|)` against :math:`\log n` at the last step
summarises the check (:attr:`CoordCheck.slopes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._validation import as_tensor, check_positive_int
from ..errors import HyperparameterError, ModelError, describe
from .optim import check_lr, param_groups

__all__ = ["CoordCheck", "coord_check"]


@dataclass(frozen=True)
class CoordCheck:
    """The result of :func:`coord_check`.

    Attributes:
        widths: the widths, increasing.
        layers: the leaf modules' names (in the order they run).
        values: mean absolute activation, shape ``(len(widths), steps + 1, len(layers))``
            (step 0 is initialisation), averaged over seeds.
        parametrization: the parametrization's name.

    """

    widths: tuple[int, ...]
    layers: tuple[str, ...]
    values: np.ndarray
    parametrization: str

    @property
    def slopes(self) -> np.ndarray:
        """Log-log slope of each layer's activation size against width at the last step."""
        return self.slopes_at(self.values.shape[1] - 1)

    def slopes_at(self, step: int) -> np.ndarray:
        """Log-log slope of each layer's activation size against width after ``step`` steps."""
        logn = np.log(np.asarray(self.widths, dtype=float))
        logv = np.log(np.maximum(self.values[:, step, :], 1e-300))
        return np.polyfit(logn, logv, 1)[0]

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, for JSON."""
        return {
            "parametrization": self.parametrization,
            "widths": list(self.widths),
            "layers": list(self.layers),
            "values": self.values.tolist(),
            "slopes": self.slopes.tolist(),
        }

    def plot(self, ax: Any = None) -> Any:
        """Mean absolute activation against width, one line per layer (last step).

        Needs matplotlib (the ``plot`` extra). Returns the axes.
        """
        import matplotlib.pyplot as plt  # optional extra

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.4))
        for j, name in enumerate(self.layers):
            ax.plot(self.widths, self.values[:, -1, j], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel(f"mean |activation| after {self.values.shape[1] - 1} steps")
        ax.set_title(f"coordinate check: {self.parametrization}")
        ax.legend(fontsize=6)
        return ax


def coord_check(
    make_model: Callable[[int, Any], nn.Module],
    widths: Sequence[int],
    x: Any,
    y: Any,
    steps: int = 3,
    lr: float = 0.1,
    parametrization: Any = "mup",
    *,
    optimizer: str = "sgd",
    seeds: int = 3,
    loss: str = "mse",
) -> CoordCheck:
    r"""Record each layer's mean absolute activation after a few steps, against width.

    Args:
        make_model: ``make_model(width, parametrization)`` returns a twin, e.g.
            ``lambda n, p: net.module(x.shape[1:], width=n, parametrization=p,
            base_width=64)``; the global torch seed is set before each call.
        widths: at least two widths.
        x: inputs ``(N, *features)``.
        y: targets ``(N, d_out)`` (mse) or class indices ``(N,)`` (cross entropy).
        steps: full-batch optimizer steps.
        lr: the base learning rate (per-layer rates from :func:`param_groups`).
        parametrization: passed to ``make_model`` (a name or an ``ABC``).
        optimizer: ``"sgd"`` or ``"adam"``.
        seeds: networks averaged per width.
        loss: ``"mse"`` (:math:`\frac{1}{2N}\sum (f - y)^2`) or ``"cross_entropy"``.

    Returns:
        A :class:`CoordCheck`.

    Raises:
        HyperparameterError: fewer than two widths, a bad ``steps``/``seeds``/``lr``/``loss``.
        ModelError: the models of two widths have different leaf modules.

    """
    where = "nk.abc.coord_check"
    ws = [int(w) for w in widths]
    if len(ws) < 2 or any(w < 1 for w in ws):
        raise HyperparameterError(
            describe(where, f"widths={list(widths)!r}", "Give at least two widths >= 1.")
        )
    check_positive_int(where, "steps", steps)
    check_positive_int(where, "seeds", seeds)
    check_lr(where, lr)
    if loss not in ("mse", "cross_entropy"):
        raise HyperparameterError(
            describe(where, f"loss={loss!r}", "Use 'mse' or 'cross_entropy'.")
        )
    xt = as_tensor(x, "x", where)
    yt = y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))
    names: tuple[str, ...] | None = None
    out = []
    for width in sorted(ws):
        runs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = make_model(width, parametrization)
            model = model.to(xt.dtype)
            leaf_names, rec = _record(model, xt, yt, steps, lr, optimizer, loss)
            if names is None:
                names = leaf_names
            elif names != leaf_names:
                raise ModelError(
                    describe(
                        where,
                        f"the model of width {width} has leaf modules {leaf_names}, "
                        f"another width {names}",
                        "make_model must build the same architecture at every width.",
                    )
                )
            runs.append(rec)
        out.append(np.mean(runs, axis=0))
    name = getattr(parametrization, "name", str(parametrization))
    return CoordCheck(tuple(sorted(ws)), names or (), np.stack(out), name)


def _record(
    model: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float, optimizer: str, loss: str
) -> tuple[tuple[str, ...], np.ndarray]:
    """Train ``steps`` steps and return the leaf names and ``(steps + 1, leaves)`` sizes."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    sizes: dict[str, float] = {}
    order: list[str] = []

    def hook(name: str) -> Callable[..., None]:
        def run(_mod: nn.Module, _inp: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                if name not in sizes:
                    order.append(name)
                sizes[name] = float(output.detach().abs().mean())

        return run

    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    groups = param_groups(model, lr, optimizer)
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(groups) if optimizer == "sgd" else torch.optim.Adam(groups)
    )
    rows = []
    try:
        for step in range(steps + 1):
            sizes.clear()
            order.clear()
            out = model(x)
            rows.append([sizes[n] for n in order])
            if step == steps:
                break
            opt.zero_grad()
            _loss(out, y, loss).backward()
            opt.step()
    finally:
        for h in handles:
            h.remove()
    values = np.asarray(rows, dtype=float)
    values[~np.isfinite(values)] = math.inf
    return tuple(order), values


def _loss(out: Tensor, y: Tensor, loss: str) -> Tensor:
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(out, y.long())
    return 0.5 * ((out - y.to(out.dtype)) ** 2).sum() / out.shape[0]
