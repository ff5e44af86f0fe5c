"""Training in function space: a finite network against its NTK dynamics.

A port of Neural Tangents' ``examples/function_space.py``. A fully connected ReLU
network in the NTK parametrization is trained by full-batch gradient descent on the
mean squared error; its empirical NTK at initialisation predicts the whole trajectory
in closed form (``nk.predict.gradient_descent_mse``), from the network's own initial
outputs. The wider the network, the closer the two.

    python examples/function_space.py              # 256 training digits, a few seconds
    python examples/function_space.py --width 4096

Neural Tangents -> neural-kernels, as used here:

* ``stax.serial(stax.Dense(512, 1.5, 0.05), stax.Relu(), ...)`` -> ``nk.Sequential(
  nk.Dense(512, w_std=1.5, b_std=0.05), nk.ReLU(), ...)``; ``init_fn``/``apply_fn`` ->
  ``net.module(in_shape, ...)``, a ``torch.nn.Module``;
* ``nt.empirical_ntk_fn(apply_fn)(x1, x2, params)`` -> ``nk.empirical_ntk(model, x1, x2)``
  (per output, averaged over the outputs, as Neural Tangents');
* ``nt.predict.gradient_descent_mse(k_train_train, y_train, learning_rate)`` and
  ``predict_fn(t, fx_train_0, fx_test_0, k_test_train)`` -> the same function with the
  arguments after ``t`` as keywords.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits

import neural_kernels as nk


def network(width: int) -> nk.Sequential:
    """Two hidden ReLU layers and a readout of 10, NTK parametrization."""
    return nk.Sequential(
        nk.Dense(width, w_std=1.5, b_std=0.05),
        nk.ReLU(),
        nk.Dense(width, w_std=1.5, b_std=0.05),
        nk.ReLU(),
        nk.Dense(10, w_std=1.5, b_std=0.05),
    )


def data(n: int, m: int) -> tuple[torch.Tensor, ...]:
    """Standardised digits and centred one-hot targets."""
    digits = load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    y = torch.nn.functional.one_hot(torch.as_tensor(digits.target), 10).double() - 0.1
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:n], perm[n : n + m]
    return x[tr], y[tr], x[te], y[te]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the example; returns the printed numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="training digits")
    parser.add_argument("--m", type=int, default=256, help="test digits")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--lr", type=float, default=None, help="default: half the largest stable rate"
    )
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = data(args.n, args.m)
    net = network(args.width)
    model = net.module(x_train.shape[1:], generator=torch.Generator().manual_seed(1))
    model = model.double()

    with torch.no_grad():
        fx_train_0, fx_test_0 = model(x_train), model(x_test)
    k_train_train = nk.empirical_ntk(model, x_train)
    k_test_train = nk.empirical_ntk(model, x_test, x_train)
    lr = args.lr or 0.5 * nk.predict.max_learning_rate(k_train_train, y_train.numel())
    predict_fn = nk.predict.gradient_descent_mse(k_train_train, y_train, lr)

    # Gradient descent on L = 1/(2N) sum (f - y)^2, N = y.numel(), as predict assumes.
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    results: dict[str, float] = {}
    for step in range(1, args.steps + 1):
        optimizer.zero_grad()
        loss = 0.5 * ((model(x_train) - y_train) ** 2).sum() / y_train.numel()
        loss.backward()
        optimizer.step()
        if step in (args.steps // 10, args.steps):
            pred = predict_fn(
                torch.tensor(float(step)),
                fx_train_0=fx_train_0,
                fx_test_0=fx_test_0,
                k_test_train=k_test_train,
            )
            with torch.no_grad():
                f_test = model(x_test)
            gap = float((f_test - pred.mean).norm() / pred.mean.norm())
            acc_net = float((f_test.argmax(1) == y_test.argmax(1)).double().mean())
            acc_ntk = float((pred.mean.argmax(1) == y_test.argmax(1)).double().mean())
            print(
                f"step {step:5d}: train loss {loss.item():.4f}, test accuracy network "
                f"{acc_net:.3f} / NTK dynamics {acc_ntk:.3f}, relative gap {gap:.4f}"
            )
            results[f"gap_step_{step}"] = gap
            results["accuracy_network"], results["accuracy_ntk"] = acc_net, acc_ntk
    return results


if __name__ == "__main__":
    main()
