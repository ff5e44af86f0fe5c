r"""Hyperparameter transfer across width: the best learning rate under SP and muP.

For each width ``n`` and each learning rate :math:`\eta` of a factor-2 grid, train the
twin ``net.module(in_shape, width=n, parametrization=p, base_width=n_0)`` with SGD and the
per-layer rates of :func:`neural_kernels.abc.param_groups` for a fixed budget of steps,
and record the training loss at the end (mean over seeds; a diverged run counts as
``inf``). Under muP the trained function has a width-independent limit, so the best
:math:`\eta` stays put (it moves by at most one grid step); under the standard
parametrization the optimum drifts with the width (TP5, Fig. 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._validation import as_tensor, check_positive_int
from ..abc.optim import check_lr, param_groups
from ..errors import HyperparameterError, describe

__all__ = ["Transfer", "lr_transfer", "plot_transfers"]


@dataclass(frozen=True)
class Transfer:
    """The result of :func:`lr_transfer`.

    Attributes:
        widths: the widths, increasing.
        lrs: the learning-rate grid, increasing.
        loss: final training loss, shape ``(len(widths), len(lrs))`` (``inf``: diverged).
        parametrization: its name.

    """

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    loss: np.ndarray
    parametrization: str

    @property
    def best_index(self) -> list[int]:
        """Grid index of the best learning rate, per width."""
        return [int(np.argmin(row)) for row in self.loss]

    @property
    def best_lr(self) -> list[float]:
        """The best learning rate, per width."""
        return [self.lrs[i] for i in self.best_index]

    @property
    def shift(self) -> int:
        """Largest move of the best learning rate across widths, in grid steps."""
        idx = self.best_index
        return max(idx) - min(idx)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, for JSON (a diverged loss is ``None``)."""
        return {
            "parametrization": self.parametrization,
            "widths": list(self.widths),
            "lrs": list(self.lrs),
            "loss": [[float(v) if math.isfinite(v) else None for v in r] for r in self.loss],
            "best_lr": self.best_lr,
            "shift": self.shift,
        }

    def plot(self, ax: Any = None) -> Any:
        """Final training loss against learning rate, one line per width (matplotlib)."""
        import matplotlib.pyplot as plt  # optional extra

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.4))
        for w, row in zip(self.widths, self.loss, strict=True):
            ok = np.isfinite(row)
            ax.plot(np.asarray(self.lrs)[ok], row[ok], marker="o", ms=3, label=f"n={w}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"learning-rate transfer: {self.parametrization}")
        ax.legend(fontsize=6)
        return ax


def plot_transfers(results: Mapping[str, Transfer], ax: Any) -> Any:
    """Several parametrizations' sweeps on one axes (muP solid, others dashed); returns ``ax``."""
    for p, tr in results.items():
        for w, row in zip(tr.widths, tr.loss, strict=True):
            ax.plot(tr.lrs, row, "o-" if p == "mup" else "s--", ms=3, label=f"{p} n={w}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6)
    return ax


def lr_transfer(
    net: Any,
    x: Any,
    y: Any,
    widths: Sequence[int],
    lrs: Sequence[float],
    parametrization: Any = "mup",
    *,
    base_width: int | None = None,
    steps: int = 100,
    batch_size: int = 64,
    seeds: int = 1,
    dtype: torch.dtype = torch.float32,
) -> Transfer:
    r"""Final training loss (softmax cross entropy) against learning rate, for each width.

    Args:
        net: a network of ``nk`` layers whose hidden widths follow ``width`` (e.g.
            ``nk.Sequential(nk.Dense(64), nk.ReLU(), nk.Dense(10))``).
        x: inputs ``(N, *in_shape)``.
        y: class indices ``(N,)``.
        widths: at least two widths.
        lrs: the learning-rate grid (a factor-2 grid: ``[2.0**k for k in range(-6, 3)]``).
        parametrization: ``"standard"``, ``"mup"``, ... or an ``nk.abc.ABC``.
        base_width: where every parametrization is the standard one (default: the
            smallest width).
        steps: SGD steps per run (batches without replacement, one order per seed).
        batch_size: examples per step.
        seeds: runs averaged per (width, rate); seed ``s`` fixes the init and the order.
        dtype: dtype of the twins.

    Returns:
        A :class:`Transfer`; the loss is over the whole training set after ``steps``.

    Raises:
        HyperparameterError: fewer than two widths, a rate that is not positive, bad
            ``steps``/``batch_size``/``seeds``.

    """
    where = "nk.feature_learning.lr_transfer"
    ws = sorted(int(w) for w in widths)
    if len(ws) < 2 or ws[0] < 1:
        raise HyperparameterError(describe(where, f"widths={list(widths)!r}",
                                           "Give at least two widths >= 1."))  # fmt: skip
    grid = sorted(check_lr(where, lr) for lr in lrs)
    if not grid:
        raise HyperparameterError(describe(where, "lrs=[]", "Give a grid of learning rates."))
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seeds", seeds)):
        check_positive_int(where, name, value)
    xt = as_tensor(x, "x", where).to(dtype)
    yt = (y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))).long()
    base = ws[0] if base_width is None else int(base_width)
    loss = np.zeros((len(ws), len(grid)))
    for i, width in enumerate(ws):
        for j, lr in enumerate(grid):
            runs = [
                _train(net, xt, yt, width, base, parametrization, lr, steps, batch_size, s, dtype)
                for s in range(seeds)
            ]
            loss[i, j] = float(np.mean(runs))
    name = getattr(parametrization, "name", str(parametrization))
    return Transfer(tuple(ws), tuple(grid), loss, name)


def _train(
    net: Any, x: Tensor, y: Tensor, width: int, base: int, parametrization: Any, lr: float,
    steps: int, batch_size: int, seed: int, dtype: torch.dtype,
) -> float:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    model: nn.Module = net.module(tuple(x.shape[1:]), width=width, parametrization=parametrization,
                                  base_width=base, generator=gen, dtype=dtype)  # fmt: skip
    opt = torch.optim.SGD(param_groups(model, lr))
    n, bs = x.shape[0], min(batch_size, x.shape[0])
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(steps * bs // n + 1)])
    for t in range(steps):
        idx = order[t * bs : (t + 1) * bs]
        opt.zero_grad()
        value = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(value):
            return math.inf
        value.backward()
        opt.step()
    with torch.no_grad():
        final = float(nn.functional.cross_entropy(model(x), y))
    return final if math.isfinite(final) else math.inf
