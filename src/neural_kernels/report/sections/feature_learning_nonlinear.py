"""Section ``feature_learning_nonlinear``: nonlinear networks, muP against the kernel limit."""

from __future__ import annotations

from typing import Any

from ..model import Plot, Section
from ._common import Context


def build(ctx: Context) -> Section:
    """Tanh and ReLU MLPs across width: muP settles on one function, NTK on the kernel."""
    from ...feature_learning.nonlinear import nonlinear_sweep, plot_nonlinear_sweep

    widths = (32, 128, 512) if ctx.quick else (32, 128, 512, 2048)
    n = 32 if ctx.quick else 64
    sweeps = {}
    with ctx.progress("nonlinear muP/NTK sweep") as progress:
        for i, act in enumerate(("tanh", "relu")):
            sweeps[act] = nonlinear_sweep(
                act, widths, n_train=n, n_test=n, steps=30, lr=1.0, seeds=(0, 1)
            )
            progress(i + 1, 2)
    data = {act: s.to_dict() for act, s in sweeps.items()}
    lines = ["relative test-output gaps (mean over 2 seeds)"]
    for act, s in sweeps.items():
        lines.append(f"{act}: {'width':>6} {'muP next':>10} {'NTK-kernel':>11} {'muP-kernel':>11}")
        succ = [f"{g:>10.4g}" for g in s.mup_successive_gap] + [f"{'-':>10}"]
        for w, a, b, c in zip(
            s.widths, succ, s.ntk_gap_to_kernel, s.mup_gap_to_kernel, strict=True
        ):
            lines.append(f"      {w:>6} {a} {b:>11.4g} {c:>11.4g}")

    def drawer(act: str) -> Any:
        def draw(ax: Any) -> None:
            plot_nonlinear_sweep(sweeps[act], ax)

        return draw

    return Section(
        "feature_learning_nonlinear",
        data,
        lines,
        [
            Plot(
                f"nonlinear_{act}",
                drawer(act),
                f"{act} MLP on digits: the gap between the test outputs of successive muP "
                "widths, and of NTK-parametrized nets to nk.predict's kernel prediction, "
                "against width (log-log).",
            )
            for act in sweeps
        ],
        title="Nonlinear networks: muP vs the kernel limit",
    )
