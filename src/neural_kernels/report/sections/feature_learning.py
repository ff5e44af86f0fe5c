r"""Section ``feature_learning``: abc-parametrizations, muP and an exact feature-learning limit.

* the classification of SP (c=0 and c=1), NTK, mean field and muP (TP4 Thms 3.3-3.8);
* a coordinate check: each layer's mean absolute activation after 3 SGD steps against
  width, flat under muP and growing under SP at the same learning rate;
* learning-rate transfer: final training loss after 20 Adam steps against a factor-2
  grid of base rates for two widths, SP and muP (TP5's protocol in miniature; the full
  protocol is ``neural-kernels feature-learning``);
* the exact muP limit of the linear network (TP4 Cor 6.2) against finite widths, and the
  relative feature-kernel change of NTK-parametrized networks (falls with width) against
  muP ones (order one). The full sizes are in ``python -m benchmarks.bench_feature_learning``.
"""

from __future__ import annotations

from typing import Any

import torch

import neural_kernels as nk

from ..model import Plot, Section
from ._common import Context

ROWS = (("standard c=0", nk.abc.ABC.standard(0)), ("standard c=1", nk.abc.ABC.standard(1)),
        ("ntk", "ntk"), ("mean_field", "mean_field"), ("mup", "mup"))  # fmt: skip


def build(ctx: Context) -> Section:
    """The section: classification, coordinate check, transfer, the linear limit."""
    from ...feature_learning._digits import digits
    from ...feature_learning.transfer import plot_transfers

    table = {}
    lines = ["abc-parametrizations (depth 1): r, stable, regime"]
    for label, p in ROWS:
        c = nk.abc.classify(p, 1)
        table[label] = {"r": str(c.r), "stable": c.stable, "regime": c.regime}
        lines.append(f"  {label:14} r={c.r!s:5} stable={c.stable!s:5} {c.regime}")
    widths = (64, 256) if ctx.quick else (64, 256, 1024)
    net = nk.Sequential(nk.Dense(64), nk.Tanh(), nk.Dense(64), nk.Tanh(), nk.Dense(10))
    xtr, ytr, xte, yte = digits(300, 100)
    with ctx.progress("Feature learning"):
        x = xtr[:32]
        y = torch.nn.functional.one_hot(ytr[:32], 10).double()

        def make(n: int, p: Any) -> torch.nn.Module:
            return net.module((64,), width=n, parametrization=p, base_width=64,
                              dtype=torch.float64)  # fmt: skip

        coords = {p: nk.abc.coord_check(make, widths, x, y, steps=3, lr=0.5,
                                        parametrization=p, seeds=1)
                  for p in ("standard", "mup")}  # fmt: skip
        lrs = [2.0**k for k in range(-12, -2)]
        transfer = {
            p: nk.feature_learning.lr_transfer(net, xtr.float(), ytr, widths[:2], lrs, p,
                                               steps=20, batch_size=32, optimizer="adam")
            for p in ("standard", "mup")
        }  # fmt: skip
        sweep = nk.feature_learning.linear_limit_sweep(
            xtr, ytr, xte, widths, y_test=yte, steps=30 if ctx.quick else 60, seeds=1
        )
    for p, cc in coords.items():
        lines.append(f"coordinate check {p}: slopes {[round(float(s), 2) for s in cc.slopes]}")
    for p, tr in transfer.items():
        lines.append(f"transfer (Adam) {p}: best lr per width {tr.best_lr} "
                     f"(moves {tr.shift} steps)")  # fmt: skip
    s = sweep.slopes
    lines.append(
        f"linear muP limit: kernel change {sweep.mup_limit_kernel_change:.2f}, f0 = "
        f"{sweep.mup_limit_f0:g}; gap slopes logits {s['mup_logit_gap']:.2f}, kernel "
        f"{s['mup_kernel_gap']:.2f}; NTK kernel-change slope {s['ntk_kernel_change']:.2f}"
    )

    def draw_coords(ax: Any) -> None:
        for p, cc in coords.items():
            ax.plot(cc.widths, cc.values[:, -1, -2], "o-", label=f"{p}: last hidden")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel("mean |activation| after 3 steps")
        ax.legend(fontsize=7)

    def draw_transfer(ax: Any) -> None:
        plot_transfers(transfer, ax)

    def draw_limit(ax: Any) -> None:
        ax.loglog(sweep.widths, sweep.mup_logit_gap, "o-", label="muP: logits vs limit")
        ax.loglog(sweep.widths, sweep.mup_kernel_change, "o-", label="muP: kernel change")
        ax.loglog(sweep.widths, sweep.ntk_kernel_change, "s--", label="NTK: kernel change")
        ax.set_xlabel("width")
        ax.legend(fontsize=7)

    return Section(
        "feature_learning",
        {
            "classification": table,
            "coord_check": {p: cc.as_dict() for p, cc in coords.items()},
            "transfer": {p: tr.as_dict() for p, tr in transfer.items()},
            "linear_limit": sweep.as_dict(),
        },
        lines,
        [
            Plot("fl_coord_check", draw_coords, "Coordinate check: SP grows, muP is flat."),
            Plot("fl_transfer", draw_transfer, "Training loss against learning rate."),
            Plot("fl_linear_limit", draw_limit, "The linear muP limit against width."),
        ],
        title="Feature learning: abc-parametrizations and muP",
        text="Under muP the features move by order one at every width and the finite "
        "networks converge to an exact feature-learning limit; under the NTK "
        "parametrization the features freeze as the width grows.",
    )
