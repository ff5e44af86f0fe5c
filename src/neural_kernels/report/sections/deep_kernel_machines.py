r"""Section ``deep_kernel_machines``: representation learning at infinite width.

A deep kernel machine (:mod:`neural_kernels.dkm`) learns the Gram matrix of each hidden
layer by maximising the NNGP likelihood minus ``nu`` times each Gram's KL divergence from
its NNGP prior; ``nu = inf`` is the NNGP. On a small subset of the demo's data: the full
DKM of a network with the fixed input layer :math:`G_0 = XX^\top/d`, two learned
arc-cosine Gram layers and a Gaussian likelihood (noise variance 0.1) on the demo's
targets, fitted by L-BFGS from the NNGP for several ``nu``: test accuracy and objective
against ``nu``, the NNGP as the ``nu = inf`` point. The full experiment (300 training
digits, three splits, the sparse DKM) is ``neural-kernels dkm``.
"""

from __future__ import annotations

import math
from typing import Any

from ..model import Plot, Section
from ._common import Context

#: ``nu`` of the section, the NNGP first.
NUS = (math.inf, 100.0, 10.0, 1.0)


def build(ctx: Context) -> Section:
    """The section: one DKM per ``nu`` on a subset of the demo's training points."""
    from ...dkm import experiment

    n, m, steps = (50, 200, 10) if ctx.quick else (100, 300, 25)
    n, m = min(n, ctx.x_train.shape[0]), min(m, ctx.x_test.shape[0])
    x, xt = ctx.x_train[:n].double(), ctx.x_test[:m].double()
    labels = ctx.targets[:n].argmax(1)
    with ctx.progress("Deep kernel machines") as progress:
        res = experiment.compare(
            x, labels, xt, ctx.y_test[:m], nus=NUS, steps=steps, progress=progress
        )
    nngp = res[str(math.inf)]
    finite = [nu for nu in NUS if math.isfinite(nu)]
    lines = [f"Deep kernel machines: {n} training points, {m} test, {steps} L-BFGS steps"]
    for nu in NUS:
        r = res[str(nu)]
        label = "NNGP (nu=inf)" if not math.isfinite(nu) else f"DKM nu={nu:g}"
        lines.append(
            f"  {label:15} accuracy {r['test_accuracy']:.3f}  objective {r['objective']:9.1f}"
            f"  (+{r['objective_rise']:.1f} from the NNGP)"
        )

    def draw_accuracy(ax: Any) -> None:
        ax.semilogx(finite, [res[str(nu)]["test_accuracy"] for nu in finite], "o-", label="DKM")
        ax.axhline(nngp["test_accuracy"], color="k", ls="--", label="NNGP (nu = inf)")
        ax.set_xlabel("nu")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)

    def draw_objective(ax: Any) -> None:
        ax.semilogx(finite, [res[str(nu)]["objective"] for nu in finite], "o-", label="DKM")
        ax.axhline(nngp["objective"], color="k", ls="--", label="NNGP (nu = inf)")
        ax.set_xlabel("nu")
        ax.set_ylabel("objective (nats)")
        ax.legend(fontsize=8)

    return Section(
        "deep_kernel_machines",
        {"train": n, "test": m, "steps": steps, "noise_var": 0.1, "results": res},
        lines,
        [
            Plot("dkm_accuracy_vs_nu", draw_accuracy, "DKM test accuracy against nu."),
            Plot("dkm_objective_vs_nu", draw_objective, "DKM objective against nu."),
        ],
        title="Representation learning: deep kernel machines",
        text="Every Gram matrix starts at the NNGP; a finite nu lets the hidden layers' "
        "Grams move away from their priors when that raises the likelihood.",
    )
