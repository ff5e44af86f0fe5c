r"""Finite twins of growing width trained by gradient descent: shared by sections 2 and 4.

One hidden ReLU layer, in the NTK and the standard parametrization, trained by
full-batch gradient descent on :math:`\frac{1}{2N}\sum (f - y)^2` (``N`` the targets'
size; :func:`~neural_kernels.empirical.train_mse`) with learning rate
``N / lambda_max``; the kernel prediction is ``nk.predict.gradient_descent_mse`` at
``t = steps`` from the twin's own initial outputs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ._common import Context, mean_of, scores, sizes_for

#: The key of the trained twins in :meth:`Context.shared`.
KEY = "trained_twins"


def _twin_net(width: int, parametrization: str, n_out: int) -> Any:
    """One hidden ReLU layer of ``width``, declared in ``parametrization``."""
    import neural_kernels as nk

    p = parametrization
    return nk.Sequential(
        nk.Dense(width, w_std=math.sqrt(2.0), b_std=0.1, parametrization=p),
        nk.ReLU(),
        nk.Dense(n_out, w_std=1.0, b_std=0.1, parametrization=p),
    )


def trained_twins(ctx: Context) -> dict[str, Any]:
    """Train the twins of every width and parametrization (use ``ctx.shared(KEY, ...)``)."""
    import neural_kernels as nk

    sizes = sizes_for(ctx.quick)
    n = min(sizes.finite_train, ctx.x_train.shape[0])
    m = min(sizes.finite_test, ctx.x_test.shape[0])
    x, xt = ctx.x_train[:n], ctx.x_test[:m]
    y, yt, labels = ctx.targets[:n], ctx.targets_test[:m], ctx.y_test[:m]
    probe = x[: sizes.probe].float()
    k_out = ctx.n_classes
    gen = torch.Generator().manual_seed(ctx.seed)
    runs = [(p, w) for p in ("ntk", "standard") for w in sizes.widths]
    out: dict[str, Any] = {
        "n_train": n,
        "n_test": m,
        "steps": sizes.steps,
        "widths": list(sizes.widths),
        "probe_points": int(probe.shape[0]),
        "network": "Dense(width, w_std=sqrt(2), b_std=0.1), ReLU, Dense(classes, w_std=1, "
        "b_std=0.1); twins in float32, kernels in float64",
        "learning_rate_rule": "N / lambda_max(NTK of the declared widths), N = n * classes",
        "ntk": {},
        "standard": {},
    }
    t0 = time.perf_counter()
    with ctx.progress("finite twins: train") as progress:
        for i, (param, width) in enumerate(runs):
            net = _twin_net(width, param, k_out)
            k_train = net.kernel(x, get=("nngp", "ntk"))
            k_test = net.kernel(xt, x, get=("nngp", "ntk"))
            lam_max = float(torch.linalg.eigvalsh(k_train.ntk)[-1])
            lr = y.numel() / lam_max
            model = net.module((x.shape[1],), generator=gen, dtype=torch.float32)
            xf, xtf = x.float(), xt.float()
            with torch.no_grad():
                f0, f0t = model(xf).double(), model(xtf).double()
            theta0 = nk.empirical_ntk(model, probe)
            nk.empirical.train_mse(model, xf, y.float(), learning_rate=lr, steps=sizes.steps)
            with torch.no_grad():
                ft = model(xtf).double()
            theta1 = nk.empirical_ntk(model, probe)
            gd = nk.predict.gradient_descent_mse(k_train, y, lr, diag_reg=0.0)
            pred = mean_of(
                gd(float(sizes.steps), k_test_train=k_test, get="ntk", fx_train_0=f0, fx_test_0=f0t)
            )
            rms_pred = float(pred.pow(2).mean().sqrt())
            acc_f, mse_f = scores(ft, yt, labels)
            acc_k, mse_k = scores(pred, yt, labels)
            out[param][str(width)] = {
                "learning_rate": lr,
                "time": lr * sizes.steps,
                "rms_difference": float((ft - pred).pow(2).mean().sqrt()),
                "relative_rms_difference": float((ft - pred).pow(2).mean().sqrt()) / rms_pred,
                "finite_test_accuracy": float(acc_f),
                "finite_test_mse": float(mse_f),
                "kernel_test_accuracy": float(acc_k),
                "kernel_test_mse": float(mse_k),
                "ntk_relative_change": float(
                    torch.linalg.norm(theta1 - theta0) / torch.linalg.norm(theta0)
                ),
            }
            progress(i + 1, len(runs))
    out["seconds"] = time.perf_counter() - t0
    return out
