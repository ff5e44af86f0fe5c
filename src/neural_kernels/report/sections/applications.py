"""Section ``applications``: the scikit-learn classifier and exact permutation learning.

* ``nk.sklearn.NeuralKernelClassifier`` (NNGP and NTK, at convergence and at a finite
  training time) on the demo's data, as a user of scikit-learn would run it.
* :mod:`neural_kernels.applications.permutations`: the infinite ensemble of two-layer
  ReLU networks trained on the ``k`` pairs ``(e_i, P e_i)``; its mean on and off the
  support of ``Px`` (the sign features) and the number of models whose average recovers
  every binary input exactly with probability 0.9, for small ``k`` (the sub-command-sized
  runs are in ``benchmarks``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...applications import permutations as perm
from ..model import Plot, Section
from ._common import COLORS, Context


def _classifier(ctx: Context) -> dict[str, float]:
    from ...sklearn import NeuralKernelClassifier

    x = ctx.x_train.double().numpy()
    y = ctx.targets.argmax(1).numpy()
    xt = ctx.x_test.double().numpy()
    yt = ctx.y_test.numpy()
    out = {}
    for get in ("nngp", "ntk"):
        for t in (None, 10.0):
            model = NeuralKernelClassifier(ctx.net, get=get, t=t, diag_reg=ctx.diag_reg)
            key = f"{get}_t_inf" if t is None else f"{get}_t_{t:g}"
            out[key] = float(model.fit(x, y).score(xt, yt))
    return out


def build(ctx: Context) -> Section:
    """The scikit-learn estimator on the demo data, and permutations for small ``k``."""
    with ctx.progress("applications: scikit-learn classifier"):
        accuracy = _classifier(ctx)
    ks = (3, 4) if ctx.quick else (3, 4, 5)
    grid = [int(m) for m in np.unique(np.geomspace(4, 600, 30).astype(int))]
    perms: dict[str, Any] = {}
    with ctx.progress("applications: permutations"):
        for k in ks:
            task = perm.permutation_task(k, generator=torch.Generator().manual_seed(ctx.seed))
            row: dict[str, Any] = {"test_inputs": len(task.x_test)}
            for variant in perm.VARIANTS:
                mean, cov = perm.ensemble_gaussian(task, variant)
                gen = torch.Generator().manual_seed(ctx.seed + k)
                on, off = perm.closed_form_mean(k, 2, variant)
                row[variant] = {
                    "mu_on_c2": on,
                    "mu_off_c2": off,
                    "models_for_90pct": perm.models_needed(
                        mean, cov, task.y_test, 0.1, samples=2000, generator=gen
                    ),
                    "models_for_90pct_union_bound": perm.models_needed_bound(
                        mean, cov.diagonal(), task.y_test, 0.1
                    ),
                    "recovery_vs_models": perm.recovery_curve(
                        mean, cov, task.y_test, grid, samples=1000, generator=gen
                    ),
                }
            perms[str(k)] = row
    data = {
        "classifier_accuracy": accuracy,
        "chance": ctx.chance,
        "permutations": perms,
        "models_grid": grid,
    }
    lines = ["Applications: nk.sklearn.NeuralKernelClassifier test accuracy"]
    lines += [f"  {key}: {acc:.3f}" for key, acc in accuracy.items()]
    lines += ["Exact permutation learning: models for 90% exact recovery of all inputs"]
    lines += [
        f"  k={k}: NNGP {row['nngp']['models_for_90pct']:.0f} (union bound "
        f"{row['nngp']['models_for_90pct_union_bound']:.0f}), "
        f"NTK {row['ntk']['models_for_90pct']:.0f} ({row['test_inputs']} test inputs)"
        for k, row in perms.items()
    ]

    def draw(ax: Any) -> None:
        for i, (k, row) in enumerate(perms.items()):
            for variant, style in (("nngp", "-"), ("ntk", "--")):
                ax.plot(
                    grid,
                    row[variant]["recovery_vs_models"],
                    style,
                    color=COLORS[i],
                    label=f"k={k}, {variant}",
                )
        ax.axhline(0.9, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("models M in the ensemble")
        ax.set_ylabel("P(every binary input recovered exactly)")
        ax.set_title("Exact permutation learning by infinite-width ensembles")
        ax.legend(fontsize=8)

    return Section(
        "applications",
        data,
        lines,
        [
            Plot(
                "permutation_recovery",
                draw,
                "Probability that the rounded average of M converged two-layer ReLU "
                "networks (infinite width) maps every binary input with >= 2 ones to Px.",
            )
        ],
        title="Applications: scikit-learn and permutation learning",
        text="The demo network as a scikit-learn classifier (nk.sklearn), and the "
        "exact learning of a k x k permutation from its k basis pairs by ensembles of "
        "wide networks (nk.applications.permutations).",
    )
