r"""Finite linear networks against their exact limits, across widths (the acceptance check).

For each seed, one batch order; along it train

* the muP limit (:class:`~.linear.LinearMuPLimit`) and networks sampled from it at each
  width with plain SGD: the gap :math:`\mathrm{RMS}(f_n - f_\infty)` of the test logits
  and :math:`\lVert K_n - K_\infty\rVert_F / \lVert K_\infty\rVert_F` of the test feature
  kernels after training shrink like :math:`n^{-1/2}`; the limit's own kernel moves by
  :math:`\lVert K_T - K_0\rVert_F / \lVert K_0\rVert_F = \Theta(1)` and :math:`f_0 \equiv 0`;
* NTK-parametrized networks (:class:`~.linear.LinearNTKNetwork`) and the NTK limit started
  from each network's own initial function: the features' relative movement falls like
  :math:`n^{-1/2}` or faster and the limit's feature kernel does not move at all.

The slopes are least-squares fits of :math:`\log(\text{gap})` against :math:`\log n`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import as_tensor, check_positive_int
from ..errors import HyperparameterError, describe
from .linear import LinearMuPLimit, LinearNTKLimit

__all__ = ["LinearSweep", "linear_limit_sweep", "relative_change"]


def relative_change(k1: Tensor, k0: Tensor) -> float:
    """``||k1 - k0||_F / ||k0||_F``."""
    return float(torch.linalg.norm(k1 - k0) / torch.linalg.norm(k0))


def _rms(a: Tensor, b: Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


def slope(widths: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(widths)``."""
    v = np.maximum(np.asarray(values, dtype=float), 1e-300)
    return float(np.polyfit(np.log(np.asarray(widths, dtype=float)), np.log(v), 1)[0])


@dataclass(frozen=True)
class LinearSweep:
    """The result of :func:`linear_limit_sweep` (means over seeds).

    Attributes:
        widths: the finite widths.
        mup_logit_gap: RMS of finite minus limit test logits, per width.
        mup_kernel_gap: relative Frobenius gap of the test feature kernels, per width.
        mup_kernel_change: the finite muP networks' own relative kernel change, per width.
        ntk_kernel_change: NTK-parametrized networks' relative kernel change, per width.
        ntk_logit_gap: RMS of NTK-network minus NTK-limit test logits, per width.
        mup_limit_kernel_change: the muP limit's ``||K_T - K_0|| / ||K_0||``.
        mup_limit_f0: largest ``|f_0|`` of the muP limit on the test inputs.
        ntk_limit_kernel_change: the NTK limit's (exactly 0).
        accuracy: test accuracy of the limits and networks (``"mup_limit"``, ...).
        loss: training loss of the muP limit after each step (first seed).

    """

    widths: tuple[int, ...]
    mup_logit_gap: tuple[float, ...]
    mup_kernel_gap: tuple[float, ...]
    mup_kernel_change: tuple[float, ...]
    ntk_kernel_change: tuple[float, ...]
    ntk_logit_gap: tuple[float, ...]
    mup_limit_kernel_change: float
    mup_limit_f0: float
    ntk_limit_kernel_change: float
    accuracy: dict[str, Any] = field(default_factory=dict)
    loss: tuple[float, ...] = ()

    @property
    def slopes(self) -> dict[str, float]:
        """Log-log slopes against width of every per-width quantity."""
        return {
            name: slope(self.widths, getattr(self, name))
            for name in (
                "mup_logit_gap",
                "mup_kernel_gap",
                "mup_kernel_change",
                "ntk_kernel_change",
                "ntk_logit_gap",
            )
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers and lists, for JSON."""
        out: dict[str, Any] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()
        }
        out["slopes"] = self.slopes
        return out


def linear_limit_sweep(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    widths: Sequence[int],
    *,
    y_test: Any = None,
    steps: int = 300,
    lr: float = 0.5,
    batch_size: int = 64,
    seeds: int = 3,
    sigma: float = 1.0,
    loss: str = "cross_entropy",
    d_out: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> LinearSweep:
    r"""Train the linear muP and NTK limits and finite networks of each width on one batch order.

    Args:
        x_train: inputs ``(N, d)`` (a bias is added by the models).
        y_train: class indices ``(N,)`` (cross entropy) or targets ``(N, d_out)`` (mse).
        x_test: inputs on which logits and feature kernels are compared.
        widths: finite widths, at least two.
        y_test: test labels, for accuracies (optional).
        steps: SGD steps; ``lr``, ``batch_size`` as usual (batches without replacement,
            reshuffled every epoch).
        lr: the learning rate of every model.
        batch_size: examples per step.
        seeds: independent batch orders and samples (the results are their means).
        sigma: ``sigma_in = sigma_out``.
        loss: ``"cross_entropy"`` or ``"mse"``.
        d_out: outputs (default: the number of classes, or ``y_train.shape[1]``).
        progress: called with a short label before each seed.

    Returns:
        A :class:`LinearSweep`.

    """
    where = "nk.feature_learning.linear_limit_sweep"
    xtr = as_tensor(x_train, "x_train", where).to(torch.float64)
    xte = as_tensor(x_test, "x_test", where).to(torch.float64)
    ytr = y_train if isinstance(y_train, Tensor) else torch.as_tensor(np.asarray(y_train))
    ws = sorted(int(w) for w in widths)
    if len(ws) < 2 or ws[0] < 1:
        raise HyperparameterError(describe(where, f"widths={ws}", "Give two widths >= 1 or more."))
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seeds", seeds)):
        check_positive_int(where, name, value)
    if d_out is None:
        d_out = int(ytr.max()) + 1 if loss == "cross_entropy" else int(ytr.shape[1])
    d = xtr.shape[1]
    rows: dict[str, list[list[float]]] = {
        k: [] for k in ("mup_logit_gap", "mup_kernel_gap", "mup_kernel_change",
                        "ntk_kernel_change", "ntk_logit_gap")
    }  # fmt: skip
    acc: dict[str, list[Any]] = {"mup_limit": [], "ntk": [], "mup": []}
    limit_change, limit_f0, ntk_limit_change = [], [], []
    losses: list[float] = []
    for seed in range(seeds):
        if progress is not None:
            progress(f"seed {seed + 1}/{seeds}")
        gen = torch.Generator().manual_seed(seed)
        batches = _batches(xtr.shape[0], batch_size, steps, gen)
        limit = LinearMuPLimit(d, d_out, sigma, sigma)
        limit_f0.append(float(limit(xte).abs().max()))
        k0 = limit.feature_kernel(xte)
        nets = [limit.sample(n, torch.Generator().manual_seed(1000 * seed + i))
                for i, n in enumerate(ws)]  # fmt: skip
        proto = LinearNTKLimit(d, d_out, sigma, sigma)
        ntk_nets = [proto.sample(n, torch.Generator().manual_seed(2000 * seed + i))
                    for i, n in enumerate(ws)]  # fmt: skip
        ntk_limits = [LinearNTKLimit.of(net) for net in ntk_nets]
        ntk_k0 = [net.feature_kernel(xte).detach() for net in ntk_nets]
        mup_k0 = [net.feature_kernel(xte).detach() for net in nets]
        ntk_limit_k0 = ntk_limits[0].feature_kernel(xte)
        for idx in batches:
            xb, yb = xtr[idx], ytr[idx]
            step_loss = limit.step(xb, yb, lr, loss)
            if seed == 0:
                losses.append(step_loss)
            for model in (*nets, *ntk_nets):
                model.step(xb, yb, lr, loss)  # type: ignore[operator]
            for lim in ntk_limits:
                lim.step(xb, yb, lr, loss)
        f_inf, k_inf = limit(xte), limit.feature_kernel(xte)
        limit_change.append(relative_change(k_inf, k0))
        ntk_limit_change.append(
            float((ntk_limits[0].feature_kernel(xte) - ntk_limit_k0).abs().max())
        )
        with torch.no_grad():
            rows["mup_logit_gap"].append([_rms(net(xte), f_inf) for net in nets])
            rows["mup_kernel_gap"].append(
                [relative_change(net.feature_kernel(xte), k_inf) for net in nets]
            )
            rows["mup_kernel_change"].append(
                [
                    relative_change(net.feature_kernel(xte), k)
                    for net, k in zip(nets, mup_k0, strict=True)
                ]
            )
            rows["ntk_kernel_change"].append(
                [relative_change(net.feature_kernel(xte), k)
                 for net, k in zip(ntk_nets, ntk_k0, strict=True)]
            )  # fmt: skip
            rows["ntk_logit_gap"].append(
                [_rms(net(xte), lim(xte)) for net, lim in zip(ntk_nets, ntk_limits, strict=True)]
            )
            if y_test is not None and loss == "cross_entropy":
                yte = torch.as_tensor(np.asarray(y_test))
                acc["mup_limit"].append(_accuracy(f_inf, yte))
                acc["mup"].append([_accuracy(net(xte), yte) for net in nets])
                acc["ntk"].append([_accuracy(net(xte), yte) for net in ntk_nets])
    mean = {k: tuple(float(v) for v in np.mean(np.asarray(r), axis=0)) for k, r in rows.items()}
    accuracy: dict[str, Any] = {}
    if acc["mup_limit"]:
        accuracy = {
            "mup_limit": float(np.mean(acc["mup_limit"])),
            "mup": [float(v) for v in np.mean(np.asarray(acc["mup"]), axis=0)],
            "ntk": [float(v) for v in np.mean(np.asarray(acc["ntk"]), axis=0)],
        }
    return LinearSweep(
        widths=tuple(ws),
        mup_limit_kernel_change=float(np.mean(limit_change)),
        mup_limit_f0=float(max(limit_f0)),
        ntk_limit_kernel_change=float(max(ntk_limit_change)),
        accuracy=accuracy,
        loss=tuple(losses),
        **mean,
    )


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[Tensor]:
    """``steps`` index batches, without replacement within an epoch."""
    out: list[Tensor] = []
    bs = min(batch_size, n)
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out.extend(perm[i : i + bs] for i in range(0, n - bs + 1, bs))
    return out[:steps]


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())
