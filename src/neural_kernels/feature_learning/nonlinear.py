r"""Nonlinear networks across width: muP converges to a trained function, NTK to a kernel.

A tanh or ReLU MLP with ``depth`` hidden layers is trained by full-batch gradient descent
on :math:`L = \frac{1}{2N}\sum (f - y)^2` (``N`` the targets' size) on a digits
regression task (one-hot targets centred at 0.1) for ``steps`` steps of base learning
rate :math:`\eta`, in two parametrizations:

* **muP** (``net.module(..., parametrization="mup", base_width=w0)`` with
  :func:`neural_kernels.abc.param_groups`): the output layer starts at
  :math:`O(n^{-1/2})`, the features move by :math:`\Theta(1)` and the trained function
  tends to a width-independent, deterministic limit. Measured: the relative gap between
  the test outputs of successive widths,
  :math:`\|f_{n_{i+1}} - f_{n_i}\| / \|f_{n_{\max}}\|`, which shrinks with width.
* **NTK parametrization** (plain learning rate :math:`\eta`): the network tends to the
  linearised model, i.e. :func:`neural_kernels.predict.gradient_descent_mse` with the
  analytic NTK of the declared network at time :math:`\tau = \eta\, \mathrm{steps}`,
  started from the network's own initial outputs. Measured: the relative gap
  :math:`\|f_n - f_{\mathrm{kernel}}\| / \|f_{\mathrm{kernel}}\|` on test points, which
  falls like :math:`n^{-1/2}`.

Gaps are averaged over ``seeds`` (each seed draws new initial weights; the data are
fixed). Everything runs in float64. Needs scikit-learn for the digits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import HyperparameterError
from ._digits import digits

__all__ = ["NonlinearSweep", "mlp", "nonlinear_sweep", "plot_nonlinear_sweep", "train_gd"]

ACTIVATIONS = ("tanh", "relu")


def mlp(activation: str, depth: int, width: int = 64, n_out: int = 10) -> Any:
    """``depth`` hidden layers of ``width`` with ``activation`` and a ``Dense(n_out)`` readout.

    Weight std ``sqrt(2)`` before ReLU, ``1`` before tanh; bias std ``0.1``. Layers carry the
    NTK parametrization; ``net.module(..., parametrization="mup")`` overrides it.
    """
    import neural_kernels as nk

    if activation not in ACTIVATIONS:
        raise HyperparameterError(
            f"nk.feature_learning.mlp: activation={activation!r} is unknown. "
            f"Use one of {ACTIVATIONS}."
        )
    if not isinstance(depth, int) or depth < 1:
        raise HyperparameterError(
            f"nk.feature_learning.mlp: depth={depth!r}. Pass an integer >= 1."
        )
    w_std = math.sqrt(2.0) if activation == "relu" else 1.0
    layers: list[Any] = []
    for _ in range(depth):
        layers += [
            nk.Dense(width, w_std=w_std, b_std=0.1, parametrization="ntk"),
            nk.ReLU() if activation == "relu" else nk.Tanh(),
        ]
    layers.append(nk.Dense(n_out, w_std=1.0, b_std=0.1, parametrization="ntk"))
    return nk.Sequential(*layers)


def train_gd(
    model: torch.nn.Module, x: Tensor, y: Tensor, lr: float, steps: int, *, mup: bool
) -> list[float]:
    r"""Full-batch gradient descent on :math:`\frac{1}{2N}\sum(f-y)^2`; returns the losses.

    ``mup=True`` uses the per-layer rates of :func:`neural_kernels.abc.param_groups`.
    """
    import neural_kernels as nk

    params = nk.abc.param_groups(model, lr) if mup else [{"params": list(model.parameters())}]
    opt = torch.optim.SGD(params, lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (model(x) - y).pow(2).sum() / y.numel()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@dataclass
class NonlinearSweep:
    """The numbers of :func:`nonlinear_sweep` (lists indexed like ``widths``)."""

    activation: str
    depth: int
    widths: list[int]
    n_train: int
    n_test: int
    steps: int
    lr: float
    seeds: list[int]
    ntk_lr: float = 0.0
    #: relative test gap between widths i and i+1 (muP), length ``len(widths) - 1``
    mup_successive_gap: list[float] = field(default_factory=list)
    #: relative test gap of each muP width to the widest one
    mup_gap_to_widest: list[float] = field(default_factory=list)
    #: relative test gap of each NTK-parametrized width to the kernel prediction
    ntk_gap_to_kernel: list[float] = field(default_factory=list)
    #: relative test gap of each muP width to the kernel prediction at time ``lr * steps``
    mup_gap_to_kernel: list[float] = field(default_factory=list)
    mup_final_loss: list[float] = field(default_factory=list)
    ntk_final_loss: list[float] = field(default_factory=list)
    mup_test_accuracy: list[float] = field(default_factory=list)
    ntk_test_accuracy: list[float] = field(default_factory=list)
    kernel_test_accuracy: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def _mean_of(pred: Any) -> Tensor:
    """The mean of a prediction (a Gaussian) or the tensor itself."""
    return pred.mean if hasattr(pred, "mean") and not isinstance(pred, Tensor) else pred


def _mean(rows: list[list[float]]) -> list[float]:
    return [sum(col) / len(col) for col in zip(*rows, strict=True)]


def nonlinear_sweep(
    activation: str = "tanh",
    widths: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
    *,
    depth: int = 1,
    n_train: int = 256,
    n_test: int = 128,
    steps: int = 200,
    lr: float = 1.0,
    seeds: Sequence[int] = (0, 1),
    base_width: int | None = None,
    ntk_lr: float | None = None,
) -> NonlinearSweep:
    """Train muP and NTK-parametrized MLPs of every width; gaps between widths and to the kernel.

    Args:
        activation: ``"tanh"`` or ``"relu"``.
        widths: increasing hidden widths (at least two).
        depth: hidden layers.
        n_train: digits training examples (float64, ``X/16`` centred).
        n_test: digits test examples.
        steps: gradient-descent steps.
        lr: base learning rate (per-layer muP rates are scaled from ``base_width``).
        seeds: initialisation seeds to average the gaps over.
        base_width: muP base width (default ``widths[0]``).
        ntk_lr: learning rate of the NTK-parametrized nets (default ``N / lambda_max`` of the
            analytic NTK, ``N`` the targets' size).

    Returns:
        A :class:`NonlinearSweep`.

    Raises:
        HyperparameterError: fewer than two widths, widths not increasing, bad activation,
            depth, steps or learning rate.

    """
    import neural_kernels as nk

    where = "nk.feature_learning.nonlinear_sweep"
    ws = [int(w) for w in widths]
    if len(ws) < 2 or any(b <= a for a, b in itertools.pairwise(ws)):
        raise HyperparameterError(f"{where}: widths={ws}. Pass at least two increasing widths.")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise HyperparameterError(f"{where}: lr={lr!r}. Pass a positive finite learning rate.")
    if not isinstance(steps, int) or steps < 1:
        raise HyperparameterError(f"{where}: steps={steps!r}. Pass an integer >= 1.")
    if not seeds:
        raise HyperparameterError(f"{where}: no seeds. Pass at least one seed.")
    net = mlp(activation, depth)
    x, labels, xt, labels_t = digits(n_train, n_test)
    y = torch.nn.functional.one_hot(labels, 10).double() - 0.1
    k_train = net.kernel(x, get=("nngp", "ntk"))
    k_test = net.kernel(xt, x, get="ntk")
    gd = nk.predict.gradient_descent_mse(k_train, y, lr, diag_reg=0.0)
    if ntk_lr is None:  # the kernel's own scale: N / lambda_max (stable: below 2 N / lambda_max)
        ntk_lr = y.numel() / float(torch.linalg.eigvalsh(k_train.ntk)[-1])
    gd_ntk = nk.predict.gradient_descent_mse(k_train, y, ntk_lr, diag_reg=0.0)
    b0 = ws[0] if base_width is None else int(base_width)
    out = NonlinearSweep(activation, depth, ws, n_train, n_test, steps, float(lr), list(seeds))
    out.ntk_lr = float(ntk_lr)
    rows: dict[str, list[list[float]]] = {k: [] for k in ("succ", "widest", "ntk", "mupk")}
    lm, ln, am, an, ak = [], [], [], [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        f_mup, r_ntk, r_mupk, loss_m, loss_n, acc_m, acc_n = [], [], [], [], [], [], []
        for w in ws:
            m = net.module(
                (64,), width=w, parametrization="mup", base_width=b0, generator=gen,
                dtype=torch.float64,
            )  # fmt: skip
            loss_m.append(train_gd(m, x, y, lr, steps, mup=True)[-1])
            with torch.no_grad():
                f_mup.append(m(xt))
            acc_m.append(float((f_mup[-1].argmax(1) == labels_t).double().mean()))
            n = net.module((64,), width=w, generator=gen, dtype=torch.float64)
            with torch.no_grad():
                f0, f0t = n(x), n(xt)
            pred = _mean_of(
                gd_ntk(float(steps), k_test_train=k_test, get="ntk", fx_train_0=f0, fx_test_0=f0t)
            )
            loss_n.append(train_gd(n, x, y, ntk_lr, steps, mup=False)[-1])
            with torch.no_grad():
                fn = n(xt)
            r_ntk.append(_rel(fn, pred))
            acc_n.append(float((fn.argmax(1) == labels_t).double().mean()))
            kernel_pred = _mean_of(gd(float(steps), k_test_train=k_test, get="ntk"))
            r_mupk.append(_rel(f_mup[-1], kernel_pred))
        ak.append(float((kernel_pred.argmax(1) == labels_t).double().mean()))
        top = torch.linalg.norm(f_mup[-1])
        rows["succ"].append(
            [float(torch.linalg.norm(b - a) / top) for a, b in itertools.pairwise(f_mup)]
        )
        rows["widest"].append([_rel(f, f_mup[-1]) for f in f_mup])
        rows["ntk"].append(r_ntk)
        rows["mupk"].append(r_mupk)
        lm.append(loss_m)
        ln.append(loss_n)
        am.append(acc_m)
        an.append(acc_n)
    out.mup_successive_gap = _mean(rows["succ"])
    out.mup_gap_to_widest = _mean(rows["widest"])
    out.ntk_gap_to_kernel = _mean(rows["ntk"])
    out.mup_gap_to_kernel = _mean(rows["mupk"])
    out.mup_final_loss, out.ntk_final_loss = _mean(lm), _mean(ln)
    out.mup_test_accuracy, out.ntk_test_accuracy = _mean(am), _mean(an)
    out.kernel_test_accuracy = sum(ak) / len(ak)
    return out


def plot_nonlinear_sweep(sweep: NonlinearSweep, ax: Any = None) -> Any:
    """Log-log gaps against width: muP successive gap, NTK gap to the kernel, ``n^{-1/2}``."""
    if ax is None:
        import matplotlib.pyplot as plt  # optional extra

        _, ax = plt.subplots(figsize=(5, 3.5))
    w = sweep.widths
    ax.loglog(w[1:], sweep.mup_successive_gap, "o-", label=r"muP: $\|f_{2n}-f_n\|/\|f\|$")
    ax.loglog(w, sweep.ntk_gap_to_kernel, "s-", label="NTK param: gap to kernel prediction")
    ax.loglog(w, sweep.mup_gap_to_kernel, "^:", label="muP: gap to kernel prediction")
    ref = sweep.ntk_gap_to_kernel[0]
    ax.loglog(w, [ref * math.sqrt(w[0] / v) for v in w], "k--", lw=1, label=r"$\propto n^{-1/2}$")
    ax.set_xlabel("width n")
    ax.set_ylabel("relative test-output gap")
    ax.set_title(f"{sweep.activation} MLP, depth {sweep.depth}")
    ax.legend(fontsize=7)
    return ax
