r"""Section 1, ``infinite_width``: spectra and predictions of the NNGP and the NTK.

The fully connected network of the demo and, on 8x8 images, a small CNN with global
average pooling: eigenvalue spectra of the train kernels, Bayesian posteriors, and
gradient-descent predictions against training time (``nk.predict``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model import Plot, Section
from ._common import COLORS, Context, floats, mean_of, scores, sizes_for

#: Training times in units of N / lambda_max (the slowest-to-fastest mode time scale).
_TIMES = np.logspace(-1, 6, 29)


def _cnn(n_classes: int) -> Any:
    import neural_kernels as nk

    s, b = math.sqrt(2.0), 0.1
    return nk.Sequential(
        nk.Conv(32, 3, padding="valid", w_std=s, b_std=b),
        nk.ReLU(),
        nk.Conv(32, 3, padding="valid", w_std=s, b_std=b),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(n_classes, w_std=1.0, b_std=b),
    )


def _as_float64(k: Any) -> Any:
    if isinstance(k, dict):
        return {name: v.to(torch.float64) for name, v in k.items()}
    return k.to(torch.float64)


def _kernel_curves(
    k_train: Any, k_test: Any, ctx: Context, targets: Tensor, targets_test: Tensor, y: Tensor
) -> dict[str, Any]:
    """Spectra, posteriors and gradient-descent predictions of both kernels.

    Solved in float64 whatever the kernels' dtype (as the demo's kernel ridge): float32
    kernels of a thousand digits are singular at rounding level at ``diag_reg = 1e-4``.
    """
    import neural_kernels as nk

    f64 = torch.float64
    k_train, k_test = _as_float64(k_train), _as_float64(k_test)
    targets, targets_test = targets.to(f64), targets_test.to(f64)
    out: dict[str, Any] = {}
    n_total = targets.numel()
    post = nk.predict.gp_inference(k_train, targets, diag_reg=ctx.diag_reg)
    gd = nk.predict.gradient_descent_mse(k_train, targets, 1.0, diag_reg=ctx.diag_reg)
    for name in ("nngp", "ntk"):
        kernel = k_train[name] if isinstance(k_train, dict) else getattr(k_train, name)
        evals = torch.linalg.eigvalsh(kernel).flip(0).clamp_min(0)
        lam_max = float(evals[0])
        times = torch.as_tensor(_TIMES * n_total / lam_max, dtype=targets.dtype)
        mean = mean_of(gd(times, k_test_train=k_test, get=name))
        acc, mse = scores(mean, targets_test, y)
        p = mean_of(post(get=name, k_test_train=k_test))
        p_acc, p_mse = scores(p, targets_test, y)
        out[name] = {
            "eigenvalues": floats(evals),
            "lambda_max": lam_max,
            "times_in_units_of_N_over_lambda_max": [float(v) for v in _TIMES],
            "times": floats(times),
            "gd_test_accuracy": floats(acc),
            "gd_test_mse": floats(mse),
            "posterior_test_accuracy": float(p_acc),
            "posterior_test_mse": float(p_mse),
        }
    return out


def build(ctx: Context) -> Section:
    """Section 1: spectra and predictions of the FC and CNN kernels."""
    sizes = sizes_for(ctx.quick)
    t0 = time.perf_counter()
    data: dict[str, Any] = {
        "fc": {
            "network": repr(ctx.net),
            "n_train": ctx.x_train.shape[0],
            "n_test": ctx.x_test.shape[0],
            **_kernel_curves(
                ctx.k_train, ctx.k_test, ctx, ctx.targets, ctx.targets_test, ctx.y_test
            ),
        }
    }
    notes = []
    if ctx.x_train.shape[1] == 64:
        n, m = min(sizes.cnn_train, ctx.x_train.shape[0]), min(sizes.cnn_test, ctx.x_test.shape[0])
        cnn = _cnn(ctx.n_classes)
        x = torch.cat([ctx.x_train[:n], ctx.x_test[:m]]).reshape(-1, 1, 8, 8)
        with ctx.progress("CNN kernel (train+test)^2") as progress:
            k = cnn.kernel(x, get=("nngp", "ntk"), progress=progress)
        k_train = {g: getattr(k, g)[:n, :n] for g in ("nngp", "ntk")}
        k_test = {g: getattr(k, g)[n:, :n] for g in ("nngp", "ntk")}
        data["cnn"] = {
            "network": repr(cnn),
            "n_train": n,
            "n_test": m,
            **_kernel_curves(
                k_train,
                k_test,
                ctx,
                ctx.targets[:n],
                ctx.targets_test[:m],
                ctx.y_test[:m],
            ),
        }
    else:
        notes.append("CNN skipped: the data are not 8x8 images (64 features)")
    data["chance_test_accuracy"] = ctx.chance
    data["seconds"] = time.perf_counter() - t0
    nets = [k for k in ("fc", "cnn") if k in data]
    lines = [f"{'':10} {'posterior acc':>14} {'GD acc (last t)':>16} {'posterior MSE':>14}"]
    for net in nets:
        for g in ("nngp", "ntk"):
            d = data[net][g]
            lines.append(
                f"  {net.upper()} {g.upper():5} {d['posterior_test_accuracy']:>14.4f} "
                f"{d['gd_test_accuracy'][-1]:>16.4f} {d['posterior_test_mse']:>14.5f}"
            )
    lines += notes

    def spectrum(ax: Any) -> None:
        for i, (net, g) in enumerate((a, b) for a in nets for b in ("nngp", "ntk")):
            ev = np.asarray(data[net][g]["eigenvalues"])
            ev = ev / ev[0]
            ax.loglog(
                np.arange(1, len(ev) + 1),
                np.maximum(ev, 1e-18),
                color=COLORS[i],
                label=f"{net.upper()} {g.upper()} (n={len(ev)})",
            )
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue / largest eigenvalue")
        ax.set_title("Spectra of the train x train kernels")
        ax.legend(fontsize=8)

    def curve(key: str, ylabel: str, title: str) -> Any:
        def draw(ax: Any) -> None:
            for i, (net, g) in enumerate((a, b) for a in nets for b in ("nngp", "ntk")):
                d = data[net][g]
                ax.semilogx(
                    d["times_in_units_of_N_over_lambda_max"],
                    d[f"gd_{key}"],
                    color=COLORS[i],
                    label=f"{net.upper()} {g.upper()} gradient descent",
                )
                ax.axhline(d[f"posterior_{key}"], color=COLORS[i], ls=":", lw=1)
            if key == "test_accuracy":
                ax.axhline(ctx.chance, color="gray", ls="--", lw=1, label="chance (majority)")
            ax.set_xlabel(r"training time $\tau\,\lambda_{max}/N$")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.legend(fontsize=7)

        return draw

    return Section(
        "infinite_width",
        data,
        ["infinite width: NNGP and NTK predictions (test set)", *lines],
        [
            Plot(
                "spectra",
                spectrum,
                "Eigenvalues of the NNGP and NTK train kernels of the "
                "fully connected network and the CNN, normalised by the largest (log-log).",
            ),
            Plot(
                "accuracy_vs_time",
                curve("test_accuracy", "test accuracy", "Test accuracy during training"),
                "Test accuracy of infinitely wide networks trained by gradient descent "
                "(solid) against training time; dotted: the t = infinity posterior means.",
            ),
            Plot(
                "mse_vs_time",
                curve("test_mse", "test MSE", "Test MSE during training"),
                "Test mean squared error against training time (solid: gradient descent, "
                "dotted: posterior means at t = infinity).",
            ),
        ],
        title="1. Infinite width: NNGP and NTK",
    )
