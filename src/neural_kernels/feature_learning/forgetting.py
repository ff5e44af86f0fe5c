r"""Forgetting on split digits: sequential two-class tasks, early-stopped against converged.

Five tasks ``{0,1}, {2,3}, {4,5}, {6,7}, {8,9}`` share one scalar output (target
:math:`+1` for the even digit, :math:`-1` for the odd one). A ReLU MLP
(:func:`~neural_kernels.feature_learning.nonlinear.mlp`) is trained on them in turn by
full-batch gradient descent on :math:`\frac{1}{2N}\sum(f-y)^2`, each task for
``early_steps`` (early stopping) or ``converged_steps`` steps. With :math:`a_{j,i}` the
test accuracy on task :math:`i` after training on task :math:`j`:

* ``final_accuracy``: :math:`\frac{1}{5}\sum_i a_{5,i}`;
* ``forgetting``: :math:`\frac{1}{4}\sum_{i<5} (\max_{j \ge i} a_{j,i} - a_{5,i})`.

The kernel picture predicts that a lazy (wide, NTK-parametrized) network trained to
convergence on a later task overwrites the earlier ones along the shared kernel's
directions; stopping early leaves less of each task overwritten.
:func:`forgetting_sweep` repeats it across widths and seeds: Wenger, Dangel & Kristiadi
find that width reduces forgetting only when the tasks are not trained to convergence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import HyperparameterError
from ._digits import digits
from .nonlinear import mlp, train_gd

__all__ = ["Forgetting", "ForgettingSweep", "forgetting_sweep", "split_digits_forgetting"]

REGIMES = ("early", "converged")

TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


@dataclass
class Forgetting:
    """The numbers of :func:`split_digits_forgetting`, per regime (``early``/``converged``)."""

    width: int
    depth: int
    parametrization: str
    lr: float
    early_steps: int
    converged_steps: int
    #: ``accuracy[regime][j][i]``: on task i after training on task j
    accuracy: dict[str, list[list[float]]] = field(default_factory=dict)
    final_accuracy: dict[str, float | None] = field(default_factory=dict)
    forgetting: dict[str, float | None] = field(default_factory=dict)
    #: a regime whose training produced non-finite outputs (its numbers are then ``None``)
    diverged: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def split_digits_forgetting(
    width: int = 256,
    depth: int = 1,
    parametrization: str = "ntk",
    *,
    lr: float | None = None,
    early_steps: int = 10,
    converged_steps: int = 300,
    seed: int = 0,
) -> Forgetting:
    """Train the five split-digits tasks in turn, early-stopped and to convergence.

    Args:
        width: hidden width.
        depth: hidden ReLU layers.
        parametrization: ``"ntk"``, ``"standard"`` or ``"mup"`` (base width 64).
        lr: learning rate (default: ``N / lambda_max`` of the analytic NTK on the first task,
            ``N`` its number of targets, for ``"ntk"``/``"standard"``; 0.5 for muP).
        early_steps: steps per task when stopping early.
        converged_steps: steps per task when training to convergence.
        seed: initialisation seed (both regimes start from the same weights).

    Returns:
        A :class:`Forgetting`.

    Raises:
        HyperparameterError: an unknown parametrization, bad steps (``early_steps`` must be
            below ``converged_steps``), width, depth or learning rate.

    """
    where = "nk.feature_learning.split_digits_forgetting"
    if parametrization not in ("ntk", "standard", "mup"):
        raise HyperparameterError(
            f"{where}: parametrization={parametrization!r}. Use 'ntk', 'standard' or 'mup'."
        )
    if not (isinstance(early_steps, int) and isinstance(converged_steps, int)) or not (
        0 < early_steps < converged_steps
    ):
        raise HyperparameterError(
            f"{where}: early_steps={early_steps!r}, converged_steps={converged_steps!r}. "
            "Pass integers with 0 < early_steps < converged_steps."
        )
    if not isinstance(width, int) or width < 1:
        raise HyperparameterError(f"{where}: width={width!r}. Pass an integer >= 1.")
    x, labels, xt, labels_t = digits(1200, 597)
    data = []
    for a, b in TASKS:
        keep, keep_t = (labels == a) | (labels == b), (labels_t == a) | (labels_t == b)
        y = torch.where(labels[keep] == a, 1.0, -1.0).double()[:, None]
        yt = torch.where(labels_t[keep_t] == a, 1.0, -1.0).double()[:, None]
        data.append((x[keep], y, xt[keep_t], yt))
    net = mlp("relu", depth, n_out=1)
    if lr is None and parametrization == "mup":
        lr = 0.5
    if lr is None:
        lam = float(torch.linalg.eigvalsh(net.kernel(data[0][0], get=("nngp", "ntk")).ntk)[-1])
        lr = data[0][1].numel() / lam
    if not (math.isfinite(lr) and lr > 0):
        raise HyperparameterError(f"{where}: lr={lr!r}. Pass a positive finite learning rate.")
    res = Forgetting(width, depth, parametrization, float(lr), early_steps, converged_steps)
    kw: dict[str, Any] = {"base_width": 64} if parametrization == "mup" else {}
    for regime, steps in (("early", early_steps), ("converged", converged_steps)):
        gen = torch.Generator().manual_seed(seed)
        model = net.module(
            (64,), width=width, parametrization=parametrization, generator=gen,
            dtype=torch.float64, **kw,
        )  # fmt: skip
        acc: list[list[float]] = []
        finite = True
        for xs, ys, _, _ in data:
            train_gd(model, xs, ys, lr, steps, mup=parametrization == "mup")
            with torch.no_grad():
                outs = [model(xq) for _, _, xq, _ in data]
            finite = finite and all(bool(torch.isfinite(o).all()) for o in outs)
            acc.append(
                [
                    float((torch.sign(o) == d[3]).double().mean())
                    for o, d in zip(outs, data, strict=True)
                ]
            )
        res.accuracy[regime] = acc
        res.diverged[regime] = not finite
        if not finite:
            res.final_accuracy[regime] = res.forgetting[regime] = None
            continue
        res.final_accuracy[regime] = sum(acc[-1]) / len(TASKS)
        res.forgetting[regime] = sum(
            max(acc[j][i] for j in range(i, len(TASKS))) - acc[-1][i] for i in range(len(TASKS) - 1)
        ) / (len(TASKS) - 1)
    return res


@dataclass
class ForgettingSweep:
    """:func:`forgetting_sweep`'s numbers; ``[regime][i]`` follows ``widths``, mean over seeds."""

    widths: list[int]
    depth: int
    parametrization: str
    seeds: int
    early_steps: int
    converged_steps: int
    forgetting: dict[str, list[float | None]] = field(default_factory=dict)
    final_accuracy: dict[str, list[float | None]] = field(default_factory=dict)
    #: every run: ``runs[str(width)][seed]`` is a :meth:`Forgetting.to_dict`
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def forgetting_sweep(
    widths: tuple[int, ...] = (64, 256, 1024, 4096),
    depth: int = 1,
    parametrization: str = "ntk",
    *,
    seeds: int = 3,
    early_steps: int = 10,
    converged_steps: int = 300,
    progress: Any = None,
) -> ForgettingSweep:
    """:func:`split_digits_forgetting` for each width and seed ``0 .. seeds-1``.

    Returns:
        A :class:`ForgettingSweep` (a regime with a diverged run has ``None`` at that width).

    Raises:
        HyperparameterError: no widths, ``seeds < 1``, or what
            :func:`split_digits_forgetting` refuses.

    """
    where = "nk.feature_learning.forgetting_sweep"
    if not widths:
        raise HyperparameterError(f"{where}: widths=(). Pass one or more widths.")
    if not isinstance(seeds, int) or seeds < 1:
        raise HyperparameterError(f"{where}: seeds={seeds!r}. Pass an integer >= 1.")
    out = ForgettingSweep(list(widths), depth, parametrization, seeds, early_steps,
                          converged_steps)  # fmt: skip
    total = len(widths) * seeds
    for k, w in enumerate(widths):
        runs = []
        for s in range(seeds):
            runs.append(
                split_digits_forgetting(
                    w,
                    depth,
                    parametrization,
                    early_steps=early_steps,
                    converged_steps=converged_steps,
                    seed=s,
                )
            )
            if progress is not None:
                progress(k * seeds + s + 1, total)
        out.runs[str(w)] = [r.to_dict() for r in runs]
        for regime in REGIMES:
            lost = _mean([r.forgetting[regime] for r in runs])
            out.forgetting.setdefault(regime, []).append(lost)
            acc = _mean([r.final_accuracy[regime] for r in runs])
            out.final_accuracy.setdefault(regime, []).append(acc)
    return out
