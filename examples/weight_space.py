"""Training in weight space: a network against its linearisation.

A port of Neural Tangents' ``examples/weight_space.py``. A fully connected network and
its first-order Taylor expansion around the initial weights (``nk.linearize``) are
trained side by side with the same optimiser and the same batches; the wider the
network, the closer its training follows the linear model's.

    python examples/weight_space.py                # width 1024, a few seconds
    python examples/weight_space.py --width 64     # a visible gap

Neural Tangents -> neural-kernels, as used here:

* ``nt.linearize(apply_fn, params)`` -> ``nk.linearize(model)``: a trainable
  ``torch.nn.Module`` whose parameters start at the model's and whose outputs are
  ``f(x, w0) + J(x, w0) (w - w0)`` (Jacobian-vector products by ``torch.func``);
* ``optimizers.momentum`` / ``optax`` -> any ``torch.optim`` optimiser.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits

import neural_kernels as nk


def network(width: int) -> nk.Sequential:
    """One hidden ReLU layer and a readout of 10, NTK parametrization."""
    return nk.Sequential(
        nk.Dense(width, w_std=1.5, b_std=0.05), nk.ReLU(), nk.Dense(10, w_std=1.5, b_std=0.05)
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the example; returns the printed numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="training digits")
    parser.add_argument("--m", type=int, default=256, help="test digits")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64) / 16.0
    x = x - x.mean(0)
    y = torch.nn.functional.one_hot(torch.as_tensor(digits.target), 10).double()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x_train, y_train = x[perm[: args.n]], y[perm[: args.n]]
    x_test, y_test = x[perm[args.n : args.n + args.m]], y[perm[args.n : args.n + args.m]]

    model = network(args.width).module(
        x.shape[1:], generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    linear = nk.linearize(model)
    opt_net = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    opt_lin = torch.optim.SGD(linear.parameters(), lr=args.lr, momentum=0.9)
    batches = torch.Generator().manual_seed(2)

    results: dict[str, float] = {}
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, args.n, (args.batch,), generator=batches)
        for module, opt in ((model, opt_net), (linear, opt_lin)):
            opt.zero_grad()
            loss = 0.5 * ((module(x_train[idx]) - y_train[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        if step % max(1, args.steps // 4) == 0 or step == args.steps:
            with torch.no_grad():
                f_net, f_lin = model(x_test), linear(x_test)
            gap = float((f_net - f_lin).norm() / f_lin.norm())
            acc_net = float((f_net.argmax(1) == y_test.argmax(1)).double().mean())
            acc_lin = float((f_lin.argmax(1) == y_test.argmax(1)).double().mean())
            print(
                f"step {step:5d}: test accuracy network {acc_net:.3f} / linearised "
                f"{acc_lin:.3f}, relative gap between their outputs {gap:.4f}"
            )
            results["gap"], results["accuracy_network"], results["accuracy_linear"] = (
                gap,
                acc_net,
                acc_lin,
            )
    return results


if __name__ == "__main__":
    main()
