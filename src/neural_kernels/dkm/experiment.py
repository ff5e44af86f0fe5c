r"""The DKM against the NNGP on a classification data set (Yang et al.'s digits set-up).

The set-up of the DKM paper's small experiments, on flat inputs ``x`` ``(n, d)`` with
integer labels:

* a stratified split (:func:`stratified_split`): ``n_train`` training points, as many per
  class as possible, and ``n_test`` test points from the rest; the pixels standardised
  with the training statistics (:func:`standardise`);
* the network of :func:`network`: the fixed input layer :math:`G_0 = X X^\top / d`, then
  ``layers`` learned Gram layers of the arc-cosine kernel with :math:`\sigma_w^2 = 2`,
  :math:`\sigma_b^2 = 0.1`, and the output kernel;
* a Gaussian likelihood on one-hot targets minus ``1 / classes`` with a fixed noise
  variance; the full DKM trained by L-BFGS from the NNGP; the NNGP itself is ``nu = inf``.

:func:`compare` runs one split for several ``nu`` and returns plain numbers (accuracy,
objective at the NNGP start and at the end, KL terms, seconds); :func:`sparse_run` trains
a sparse DKM with inducing points. The command ``neural-kernels dkm`` and the report
section ``deep_kernel_machines`` are built on these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import HyperparameterError, describe
from .model import DKM

__all__ = ["compare", "network", "one_hot_targets", "sparse_run", "standardise", "stratified_split"]

WHERE = "nk.dkm.experiment"


def stratified_split(labels: Tensor, n_train: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """Training and test indices: ``n_train`` points spread evenly over the classes.

    The classes take turns (in a random order within each class) until ``n_train`` points
    are chosen, so class counts differ by at most one where every class has enough
    points; the test points are ``n_test`` of the others, at random.
    Deterministic in ``seed``.

    Raises:
        HyperparameterError: not enough points for the split.

    """
    n = labels.shape[0]
    if n_train < 1 or n_test < 1 or n_train + n_test > n:
        raise HyperparameterError(
            describe(
                WHERE,
                f"n_train={n_train}, n_test={n_test} for {n} points",
                f"Ask for at least one of each and at most {n} points in all.",
            )
        )
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    shuffled = labels[perm]
    rank = torch.zeros(n, dtype=torch.long)  # rank of each shuffled point within its class
    for c in torch.unique(labels):
        members = (shuffled == c).nonzero().reshape(-1)
        rank[members] = torch.arange(members.shape[0])
    order = torch.argsort(rank * n + torch.arange(n))  # round robin over the classes
    train = perm[order[:n_train]].sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[train] = False
    test = perm[mask[perm]][:n_test]
    return train, test


def standardise(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Zero mean, unit variance per feature with the training statistics (constant: kept)."""
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x_train - mean) / std, (x_test - mean) / std


def one_hot_targets(labels: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot targets minus ``1 / classes``, ``(n, classes)`` (``-0.1`` for ten classes)."""
    return torch.nn.functional.one_hot(labels.long(), classes).to(dtype) - 1.0 / classes


def network(
    features: int, classes: int, layers: int = 2, w_var: float = 2.0, b_var: float = 0.1
) -> Any:
    r"""``Dense`` (no bias, :math:`G_0 = XX^\top/d`) + ``layers + 1`` x ``[ReLU, Dense]``."""
    import neural_kernels as nk

    w, b = math.sqrt(w_var), math.sqrt(b_var)
    blocks: list[Any] = [nk.Dense(features, w_std=1.0, b_std=None)]
    for i in range(layers + 1):
        blocks += [nk.ReLU(), nk.Dense(classes if i == layers else features, w_std=w, b_std=b)]
    return nk.Sequential(*blocks)


def _accuracy(mean: Tensor, labels: Tensor) -> float:
    return float((mean.argmax(1) == labels).double().mean())


def compare(
    x_train: Tensor,
    labels_train: Tensor,
    x_test: Tensor,
    labels_test: Tensor,
    *,
    nus: Sequence[float] = (math.inf, 10.0),
    layers: int = 2,
    noise_var: float = 0.1,
    steps: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit the full DKM for each ``nu`` (``math.inf``: the NNGP) on one split.

    Returns:
        ``{str(nu): {...}}`` with ``test_accuracy``, ``test_mse``, ``train_accuracy``,
        ``objective_nngp`` (the start), ``objective`` (the end), ``objective_rise``,
        ``kl`` (one per learned layer), ``steps`` (optimiser steps taken) and
        ``fit_seconds``.

    """
    classes = int(labels_train.max()) + 1
    targets = one_hot_targets(labels_train, classes, x_train.dtype)
    targets_test = one_hot_targets(labels_test, classes, x_train.dtype)
    out: dict[str, dict[str, Any]] = {}
    for i, nu in enumerate(nus):
        dkm = DKM(network(x_train.shape[1], classes, layers), nu=nu, noise_var=noise_var)
        start = time.perf_counter()
        dkm.fit(x_train, targets, steps=steps, optimizer="lbfgs")
        seconds = time.perf_counter() - start
        pred = dkm.predict(x_test).mean
        out[str(nu)] = {
            "nu": nu if math.isfinite(nu) else "inf",
            "test_accuracy": _accuracy(pred, labels_test),
            "test_mse": float((pred - targets_test).square().mean()),
            "train_accuracy": _accuracy(dkm.predict(x_train).mean, labels_train),
            "objective_nngp": dkm.history[0],
            "objective": dkm.history[-1],
            "objective_rise": dkm.history[-1] - dkm.history[0],
            "kl": dkm.kl_terms(),
            "steps": len(dkm.history) - 1,
            "fit_seconds": seconds,
        }
        if progress is not None:
            progress(i + 1, len(nus))
    return out


def sparse_run(
    x_train: Tensor,
    labels_train: Tensor,
    x_test: Tensor,
    labels_test: Tensor,
    *,
    nu: float = 10.0,
    inducing: int = 200,
    layers: int = 2,
    noise_var: float = 0.1,
    steps: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a sparse DKM (``inducing`` training points as inducing inputs) by L-BFGS.

    Returns the test accuracy of the sparse DKM and of the NNGP on the same points, the
    objective at the start and at the end, and the seconds of the fit.
    """
    classes = int(labels_train.max()) + 1
    targets = one_hot_targets(labels_train, classes, x_train.dtype)
    net = network(x_train.shape[1], classes, layers)
    dkm = DKM(net, nu=nu, noise_var=noise_var, inducing=inducing, seed=seed)
    start = time.perf_counter()
    dkm.fit(x_train, targets, steps=steps, optimizer="lbfgs")
    seconds = time.perf_counter() - start
    dkm.reset_output()
    nngp = DKM(net, nu=math.inf, noise_var=noise_var).initialize(x_train, targets)
    return {
        "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]),
        "inducing": inducing,
        "nu": nu,
        "test_accuracy": _accuracy(dkm.predict(x_test).mean, labels_test),
        "nngp_test_accuracy": _accuracy(nngp.predict(x_test).mean, labels_test),
        "objective_start": dkm.history[0],
        "objective": float(dkm.objective().detach()),
        "steps": len(dkm.history) - 1,
        "fit_seconds": seconds,
    }
