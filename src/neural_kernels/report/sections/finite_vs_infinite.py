"""Section 2, ``finite_vs_infinite``: trained finite twins against the NTK prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import Plot, Section
from ._common import COLORS, Context
from ._twins import KEY, trained_twins


def build(ctx: Context) -> Section:
    """Section 2: RMS difference between trained twins and kernel predictions."""
    twins = ctx.shared(KEY, trained_twins)
    widths = twins["widths"]
    lines = [f"{'width':>8} {'NTK param: RMS diff':>20} {'standard: RMS diff':>20}"]
    for w in widths:
        a, b = twins["ntk"][str(w)], twins["standard"][str(w)]
        lines.append(f"{w:>8} {a['rms_difference']:>20.4g} {b['rms_difference']:>20.4g}")

    def draw(ax: Any) -> None:
        for i, param in enumerate(("ntk", "standard")):
            ax.loglog(
                widths,
                [twins[param][str(w)]["rms_difference"] for w in widths],
                "o-",
                color=COLORS[i],
                label=f"{param} parametrization",
            )
        w = np.asarray(widths, dtype=float)
        first = twins["ntk"][str(widths[0])]["rms_difference"]
        ax.loglog(w, first * np.sqrt(w[0] / w), "k--", lw=1, label=r"$\propto 1/\sqrt{width}$")
        ax.set_xlabel("width (hidden units)")
        ax.set_ylabel("RMS(finite - kernel prediction), test")
        ax.set_title("Finite networks approach the NTK prediction")
        ax.legend(fontsize=8)

    def accuracy(ax: Any) -> None:
        for i, param in enumerate(("ntk", "standard")):
            d = twins[param]
            ax.semilogx(
                widths,
                [d[str(w)]["finite_test_accuracy"] for w in widths],
                "o-",
                color=COLORS[i],
                label=f"finite, {param}",
            )
            ax.semilogx(
                widths,
                [d[str(w)]["kernel_test_accuracy"] for w in widths],
                ":",
                color=COLORS[i],
                label=f"kernel, {param}",
            )
        ax.set_xlabel("width (hidden units)")
        ax.set_ylabel("test accuracy")
        ax.set_title("Test accuracy after training")
        ax.legend(fontsize=8)

    data = {k: v for k, v in twins.items()}
    return Section(
        "finite_vs_infinite",
        data,
        [
            f"finite vs infinite: {twins['steps']} gradient-descent steps, "
            f"{twins['n_train']} train, {twins['n_test']} test",
            *lines,
        ],
        [
            Plot(
                "finite_vs_infinite",
                draw,
                "RMS difference between the test outputs of "
                "trained finite networks and the NTK prediction from the same initial "
                "outputs, against width (log-log).",
            ),
            Plot(
                "finite_accuracy",
                accuracy,
                "Test accuracy of the trained finite networks "
                "(solid) and of their kernel predictions (dotted) against width.",
            ),
        ],
        title="2. Finite versus infinite width",
        text="Finite twins with one hidden ReLU layer are trained by full-batch gradient "
        "descent on 1/(2N) sum (f - y)^2 with learning rate N / lambda_max for a fixed number "
        "of steps; the kernel prediction is nk.predict.gradient_descent_mse at t = steps "
        "with the twin's own initial outputs. Standard-parametrization twins are compared "
        "with the kernel of the network with the same declared widths.",
    )
