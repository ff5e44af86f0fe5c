"""Convolutional kernels on the digits: an infinitely wide CNN, trained and Bayesian.

The NNGP and NTK of a 3-layer CNN with global average pooling, computed on the 8x8
digits in bounded memory; the exact posterior of the infinitely wide Bayesian network
and the infinite ensemble trained by gradient descent; then a finite CNN of the same
architecture, whose empirical NTK approaches the analytic one as it widens.

    python examples/cnn_digits.py            # 1000 training digits, about half a minute
    python examples/cnn_digits.py --n 200    # a few seconds
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from sklearn.datasets import load_digits

import neural_kernels as nk


def network() -> nk.Sequential:
    """Three ReLU convolutions (3x3, same padding), global average pooling, a readout."""
    s, b = math.sqrt(2.0), 0.1
    return nk.Sequential(
        nk.Conv(64, 3, w_std=s, b_std=b, padding="same"),
        nk.ReLU(),
        nk.Conv(64, 3, w_std=s, b_std=b, padding="same"),
        nk.ReLU(),
        nk.Conv(64, 3, w_std=s, b_std=b, padding="same"),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(10, w_std=1.0, b_std=b),
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the example; returns the printed numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="training digits")
    parser.add_argument("--m", type=int, default=500, help="test digits")
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64).reshape(-1, 1, 8, 8)
    x = (x - x.mean()) / x.std()
    labels = torch.as_tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[: args.n], perm[args.n : args.n + args.m]
    y = torch.nn.functional.one_hot(labels[train], 10).double() - 0.1

    net = network()
    print("compiled kernels:", nk.native_status()["reason"])
    start = time.perf_counter()
    k_train = net.kernel(x[train])  # (n, n): symmetric, computed once per pair
    k_test = net.kernel(x[test], x[train])  # (m, n)
    print(f"kernels of {args.n} + {args.m} digits: {time.perf_counter() - start:.1f} s")

    results = {}
    posterior = nk.predict.gp_inference(k_train, y, diag_reg=1e-4)
    trained = nk.predict.gradient_descent_mse(k_train, y, diag_reg=1e-4)
    # gradient flow on (1/2N) sum (f - y)^2: the NTK's mode of eigenvalue lam settles at
    # t ~ N / lam, so times are given in units of N / lam_max
    unit = y.numel() / float(torch.linalg.eigvalsh(k_train.ntk)[-1])
    times = torch.tensor([1e1, 1e2, 1e3, 1e4, 1e5, 1e6], dtype=torch.float64) * unit

    def accuracy(mean: torch.Tensor) -> float:
        return float((mean.argmax(-1) == labels[test]).double().mean())

    for name in ("nngp", "ntk"):
        results[f"{name}_posterior_accuracy"] = accuracy(posterior(name, k_test).mean)
        curve = [accuracy(m) for m in trained(times, k_test_train=k_test, get=name).mean]
        results[f"{name}_trained_accuracy"] = curve[-1]
        print(f"{name}: posterior test accuracy {results[f'{name}_posterior_accuracy']:.3f}")
        print("  during training, t lam_max / N = 1e1 .. 1e6:", " ".join(f"{a:.2f}" for a in curve))

    # A finite CNN of the same architecture: its empirical NTK against the limit (one
    # network each; the distance falls like 1 / sqrt(width)).
    probe = x[test[:8]]
    limit = net.kernel(probe, get="ntk").ntk
    for width in (64, 1024):
        model = net.module(probe.shape[1:], width=width, generator=torch.Generator().manual_seed(1))
        finite = nk.empirical_ntk(model.double(), probe, trace_outputs="mean")
        err = float((finite - limit).norm() / limit.norm())
        results[f"empirical_ntk_error_width_{width}"] = err
        print(f"width {width:4d}: relative distance of the empirical NTK to the limit {err:.3f}")
    return results


if __name__ == "__main__":
    main()
