"""Finite networks trained by gradient descent against the closed form (Lee et al. 2019).

Network ``Dense(W, w_std=1.5, b_std=0.1), ReLU, Dense(2, w_std=1.5, b_std=0.1)`` in NTK
parametrization, ``n = 8`` training points in ``d = 3``, ``m = 4`` test points, float64.
For each width ``W``, ``members`` finite twins (``net.module``) are trained together by
full-batch gradient descent on ``1/(2N) sum (f - y)^2`` (``N = y.numel()``) with step
``lr`` and compared after ``s`` steps with ``nk.predict.gradient_descent_mse`` at
``t = s`` (learning rate ``lr``). One JSON line per width:

``gap``
    per time: RMS over members and test outputs of (trained output - the closed form
    linearised around the member's own initial outputs), divided by the RMS distance the
    outputs moved; shrinks like ``1 / sqrt(W)``.
``mean_z`` / ``cov_z``
    per time: the largest |z-score| of the ensemble mean / covariance of the test
    outputs against the closed-form Gaussian (prior mean 0), with the Monte Carlo
    standard errors ``sqrt(S_ii / M)`` and ``sqrt((S_ii S_jj + S_ij^2) / M)``.
``cov_rel``
    per time: relative Frobenius error of the ensemble covariance.
``train_seconds`` / ``peak_mb``
    the training time of the ensemble and the process's peak resident memory (``VmHWM``)
    after it, in MiB.

``python -m benchmarks.bench_predict_training [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

import neural_kernels as nk
from neural_kernels.layers.dense import DenseModule

from ._common import maxrss_mb

WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
QUICK_WIDTHS = (128, 1024)
MEMBERS = 128
QUICK_MEMBERS = 32
LR = 0.025
STEPS = (20, 80, 320)


def train_ensemble(
    net: nk.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    width: int,
    members: int,
    steps: tuple[int, ...],
    lr: float,
    seed: int,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Train ``members`` twins at once (stacked ``Dense`` weights); outputs on all of ``x``."""
    gen = torch.Generator().manual_seed(seed)
    mods = [
        net.module(x.shape[1:], width=width, parametrization="ntk", generator=gen, dtype=x.dtype)
        for _ in range(members)
    ]
    layers: list[Any] = []
    for i, child in enumerate(mods[0]):
        if isinstance(child, DenseModule):
            w = torch.stack([m[i].weight.detach() for m in mods]).requires_grad_()
            b = torch.stack([m[i].bias.detach() for m in mods]).requires_grad_()
            layers.append((child.w_scale, w, child.b_scale, b))
        else:
            layers.append(child)
    params = [p for layer in layers if isinstance(layer, tuple) for p in layer[1::2]]

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        h = None
        for layer in layers:
            if not isinstance(layer, tuple):
                h = layer(h)
                continue
            w_scale, w, b_scale, b = layer
            if h is None:
                m, out, fan_in = w.shape
                h = (inputs @ w.reshape(m * out, fan_in).T).reshape(len(inputs), m, out)
                h = h.transpose(0, 1)
            else:
                h = h @ w.mT
            h = w_scale * h + b_scale * b[:, None, :]
        return h

    with torch.no_grad():
        f0 = forward(x)
        twins = torch.stack([m(x) for m in mods[:4]])
    torch.testing.assert_close(f0[:4], twins, rtol=1e-12, atol=1e-12)
    n = y.shape[0]
    outputs, done = {}, 0
    for target in sorted(steps):
        for _ in range(target - done):
            loss = 0.5 * ((forward(x[:n]) - y) ** 2).sum() / y.numel()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, grad in zip(params, grads, strict=True):
                    p -= lr * grad
        done = target
        with torch.no_grad():
            outputs[target] = forward(x)
    return f0, outputs


def run_width(width: int, members: int, seed: int = 1) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    n, m, d = 8, 4, 3
    x = torch.randn(n + m, d, generator=gen, dtype=torch.float64)
    y = torch.cat([torch.sin(2 * x[:n, :1]), 0.5 * x[:n, 1:2] - x[:n, 2:3] ** 2], dim=1)
    net = nk.Sequential(
        nk.Dense(512, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(2, w_std=1.5, b_std=0.1)
    )
    start = time.perf_counter()
    f0, outs = train_ensemble(net, x, y, width, members, STEPS, LR, seed=width)
    train_seconds = time.perf_counter() - start
    fn = nk.predict.gradient_descent_mse(net.kernel(x[:n]), y, learning_rate=LR)
    ktd, ktt = net.kernel(x[n:], x[:n]), net.kernel(x[n:])
    ens = fn(
        torch.tensor([float(s) for s in STEPS], dtype=torch.float64),
        k_test_train=ktd,
        k_test_test=ktt,
        get="ntk",
    )
    record: dict[str, Any] = {
        "name": "predict_vs_training",
        "width": width,
        "members": members,
        "lr": LR,
        "steps": list(STEPS),
        "gap": [],
        "mean_z": [],
        "cov_z": [],
        "cov_rel": [],
        "train_seconds": train_seconds,
        "peak_mb": maxrss_mb(),
    }
    for i, s in enumerate(STEPS):
        trained = outs[s][:, n:]
        moved = (trained - f0[:, n:]).pow(2).mean().sqrt()
        lin = torch.stack(
            [
                fn(
                    float(s), k_test_train=ktd, get="ntk", fx_train_0=f0[j, :n], fx_test_0=f0[j, n:]
                ).mean
                for j in range(members)
            ]
        )
        record["gap"].append(float((lin - trained).pow(2).mean().sqrt() / moved))
        mean, cov = ens.mean[i], ens.cov[i]
        sd = cov.diagonal().sqrt()
        z = (trained.mean(0) - mean) / (sd[:, None] / math.sqrt(members))
        record["mean_z"].append(float(z.abs().max()))
        cz, cr = 0.0, 0.0
        for c in range(y.shape[1]):
            sample = torch.cov(trained[:, :, c].T)
            se = ((sd[:, None] * sd[None]) ** 2 + cov**2).div(members).sqrt()
            cz = max(cz, float(((sample - cov) / se).abs().max()))
            cr = max(cr, float((sample - cov).norm() / cov.norm()))
        record["cov_z"].append(cz)
        record["cov_rel"].append(cr)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_predict_training")
    parser.add_argument("--quick", action="store_true", help="two widths, 32 members")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched products: threads only add overhead
    try:
        members = QUICK_MEMBERS if args.quick else MEMBERS
        for width in QUICK_WIDTHS if args.quick else WIDTHS:
            print(json.dumps(run_width(width, members)), flush=True)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
