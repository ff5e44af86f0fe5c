"""Section ``ntk_limits``: limits of the NTK perspective (conditioning, stability, movement).

Also forgetting on split digits (five two-class tasks in turn) at two widths, early-stopped
against converged; the full sizes are in ``neural-kernels feature-learning``.
"""

from __future__ import annotations

from typing import Any

from ..model import Plot, Section
from ._common import Context

KEYS = ("condition", "jacobian_constant", "kernel_movement", "linearisation_gap")


def build(ctx: Context) -> Section:
    """Empirical-NTK statistics across width for the NTK, standard (two rates) and muP nets."""
    from ...feature_learning.forgetting import forgetting_sweep
    from ...feature_learning.ntk_limits import ntk_gp_vs_ensemble, ntk_limits_sweep, plot_ntk_limits

    widths = (16, 64, 256)
    n = 24 if ctx.quick else 48
    with ctx.progress("NTK limits sweep") as progress:
        res = ntk_limits_sweep(
            widths, (1,), n_train=n, n_test=n, n_probe=2, steps=30, progress=progress
        )
    gp = ntk_gp_vs_ensemble(256, 1, 4, n_train=n, n_test=2 * n, steps=100)
    with ctx.progress("Split-digits forgetting"):
        fg = forgetting_sweep((64, 256), seeds=1, converged_steps=60 if ctx.quick else 100)
    data = {"sweep": res.to_dict(), "ntk_gp_vs_ensemble": gp.to_dict(), "forgetting": fg.to_dict()}
    lines = [
        f"ReLU MLP depth 1, {n} digits, {res.steps} GD steps; 'standard_fixed' and 'mup' "
        f"at learning rate {res.fixed_lr}, the others at N / lambda_max",
        f"{'setup':>15} {'width':>6} " + " ".join(f"{k:>18}" for k in KEYS),
    ]
    for name in res.setups:
        for w in widths:
            r = res.runs[name]["1"][str(w)]
            vals = " ".join(f"{'diverged':>18}" if r[k] is None else f"{r[k]:>18.4g}" for k in KEYS)
            lines.append(f"{name:>15} {w:>6} {vals}")
    lines.append(f"NTK-GP vs ensemble of {gp.members} width-{gp.width} nets:")
    for label, s in (("NTK-GP", gp.ntk_gp), ("ensemble", gp.ensemble)):
        lines.append(
            f"  {label:>9}: log-lik {s['log_likelihood']:.4g}, coverage 50% "
            f"{s['coverage_50']:.3f}, 90% {s['coverage_90']:.3f}, accuracy {s['accuracy']:.3f}"
        )
    lines.append(
        f"split digits, NTK param., {fg.early_steps} (early) / {fg.converged_steps} "
        "(converged) steps per task: forgetting and final accuracy by width"
    )
    for i, w in enumerate(fg.widths):
        nums = [fg.forgetting["early"][i], fg.forgetting["converged"][i],
                fg.final_accuracy["early"][i], fg.final_accuracy["converged"][i]]  # fmt: skip
        cells = ["diverged" if v is None else f"{v:.3f}" for v in nums]
        lines.append(f"  width {w:>5}: forgetting early {cells[0]}, converged {cells[1]}; "
                     f"accuracy early {cells[2]}, converged {cells[3]}")  # fmt: skip

    def drawer(key: str) -> Any:
        def draw(ax: Any) -> None:
            plot_ntk_limits(res, 1, [ax], keys=(key,))

        return draw

    return Section(
        "ntk_limits",
        data,
        lines,
        [
            Plot(
                f"ntk_limits_{key}",
                drawer(key),
                f"{key.replace('_', ' ')} against width (log-log), one line per set-up "
                "(condition: of the empirical NTK Gram at initialisation).",
            )
            for key in KEYS
        ],
        title="Limits of the NTK perspective",
        text="'standard' trains at the kernel's rate N / lambda_max, which keeps a "
        "standard-parametrized network lazy; 'standard_fixed' trains the same network at a "
        "fixed practical rate, next to muP at the same base rate: there the kernel moves.",
    )
