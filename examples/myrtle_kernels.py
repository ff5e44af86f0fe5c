"""Myrtle kernels: the NNGP and NTK of Myrtle CNNs of depth 5, 7 and 10.

A port of Neural Tangents' ``examples/myrtle_kernels.py`` (the architectures of Shankar
et al., "Neural kernels without tangents"). Instead of CIFAR-10, which must be
downloaded, the bundled 8x8 digits are used; the network keeps Myrtle's pattern (blocks
of 3x3 ReLU convolutions separated by 2x2 average pooling, then pooling down to one
position and a readout). The kernels are computed in blocks within a memory budget, and
the exact posterior of each infinitely wide Bayesian network is scored on held-out
digits.

    python examples/myrtle_kernels.py              # 600 training digits, under a minute
    python examples/myrtle_kernels.py --n 200 --depths 5

Neural Tangents -> neural-kernels, as used here:

* ``stax.Conv(1, (3, 3), W_std=..., padding='SAME')`` -> ``nk.Conv(1, 3, w_std=...,
  padding="same")``; inputs are channels first (N, C, H, W) as in torch;
* ``stax.AvgPool((2, 2), strides=(2, 2))`` -> ``nk.AvgPool(2, stride=2)``;
* ``nt.batch(kernel_fn, batch_size=...)`` -> ``net.kernel(x, memory_budget=...)`` (or
  ``block_size=``): blocks of example pairs are sized by the budget;
* ``nt.predict.gp_inference(k_train_train, y_train, diag_reg)`` -> the same function.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from sklearn.datasets import load_digits

import neural_kernels as nk

#: Convolutions per block for each depth, as in Neural Tangents' example.
BLOCKS = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def myrtle(depth: int, image_size: int = 8, w_std: float = math.sqrt(2.0)) -> nk.Sequential:
    """The Myrtle network of a depth in ``BLOCKS`` for square images of ``image_size``."""
    layers: list[nk.Layer] = []
    pools = [1, 1, max(1, int(math.log2(image_size)) - 2)]  # the last pools to one position
    for count, pool in zip(BLOCKS[depth], pools, strict=True):
        layers += [nk.Conv(1, 3, w_std=w_std, padding="same"), nk.ReLU()] * count
        layers += [nk.AvgPool(2, stride=2)] * pool
    return nk.Sequential(*layers, nk.Flatten(), nk.Dense(10, w_std=w_std))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the example; returns the printed numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="training digits")
    parser.add_argument("--m", type=int, default=300, help="test digits")
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 7, 10])
    parser.add_argument("--memory-budget", type=int, default=256 * 2**20)
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64).reshape(-1, 1, 8, 8)
    x = (x - x.mean()) / x.std()
    y = torch.nn.functional.one_hot(torch.as_tensor(digits.target), 10).double() - 0.1
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[: args.n], perm[args.n : args.n + args.m]

    results: dict[str, float] = {}
    for depth in args.depths:
        net = myrtle(depth)
        start = time.perf_counter()
        k_dd = net.kernel(x[tr], memory_budget=args.memory_budget)
        k_td = net.kernel(x[te], x[tr], memory_budget=args.memory_budget)
        seconds = time.perf_counter() - start
        predict = nk.predict.gp_inference(k_dd, y[tr], diag_reg=1e-4)
        for name in ("nngp", "ntk"):
            mean = predict(get=name, k_test_train=k_td).mean
            acc = float((mean.argmax(1) == y[te].argmax(1)).double().mean())
            results[f"myrtle{depth}_{name}_accuracy"] = acc
        results[f"myrtle{depth}_seconds"] = seconds
        print(
            f"Myrtle-{depth}: kernels of {args.n} + {args.m} digits in {seconds:.1f} s; "
            f"posterior test accuracy NNGP {results[f'myrtle{depth}_nngp_accuracy']:.3f}, "
            f"NTK {results[f'myrtle{depth}_ntk_accuracy']:.3f}"
        )
    return results


if __name__ == "__main__":
    main()
