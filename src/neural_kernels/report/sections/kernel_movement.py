"""Section 4, ``kernel_movement``: how far the empirical NTK moves during training."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import Plot, Section
from ._common import COLORS, Context
from ._twins import KEY, trained_twins


def build(ctx: Context) -> Section:
    """Section 4: relative Frobenius change of the empirical NTK during training."""
    twins = ctx.shared(KEY, trained_twins)
    widths = twins["widths"]
    data = {
        "probe_points": twins["probe_points"],
        "widths": widths,
        **{
            p: [twins[p][str(w)]["ntk_relative_change"] for w in widths]
            for p in ("ntk", "standard")
        },
    }
    lines = [f"{'width':>8} {'NTK param':>12} {'standard':>12}   (||dTheta||_F / ||Theta_0||_F)"]
    lines += [
        f"{w:>8} {a:>12.4g} {b:>12.4g}"
        for w, a, b in zip(widths, data["ntk"], data["standard"], strict=True)
    ]

    def draw(ax: Any) -> None:
        for i, p in enumerate(("ntk", "standard")):
            ax.loglog(widths, data[p], "o-", color=COLORS[i], label=f"{p} parametrization")
        w = np.asarray(widths, dtype=float)
        ax.loglog(
            w, data["ntk"][0] * np.sqrt(w[0] / w), "k--", lw=1, label=r"$\propto 1/\sqrt{width}$"
        )
        ax.loglog(w, data["ntk"][0] * w[0] / w, "k:", lw=1, label=r"$\propto 1/width$")
        ax.set_xlabel("width (hidden units)")
        ax.set_ylabel(r"$\|\Theta_T - \Theta_0\|_F / \|\Theta_0\|_F$")
        ax.set_title("Movement of the empirical NTK during training")
        ax.legend(fontsize=8)

    return Section(
        "kernel_movement",
        data,
        ["kernel movement: relative change of the empirical NTK", *lines],
        [
            Plot(
                "kernel_movement",
                draw,
                "Relative Frobenius change of the empirical NTK "
                "(on training points) between initialisation and the end of training, "
                "against width (log-log).",
            )
        ],
        title="4. Kernel movement during training",
    )
