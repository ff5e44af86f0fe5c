"""Section ``more_layers``: the later layers on the digits, as kernels and as twins.

Each network is a small variation of one convolutional network on the 8 x 8 digits:
locally connected layers (``ConvLocal``), upsampling (``ConvTranspose``), resizing
(``ImageResize``), cropping (``Index``), a deep network (``repeat``), the Gaussian
normalized kernel (``ExpNormalized``), a fixed linear map of the rows (``DotGeneral``),
and a ``Dense`` applied at every position between ``ChannelsLast`` and ``ChannelsFirst``.
For each: the NTK's kernel-regression test accuracy and the time to compute the kernel;
for one, the Monte Carlo NTK of finite twins against the closed form. Input masking
(``mask_constant``): the digits read as sequences of their first 4 to 8 rows, padded with
NaN, through a 1-D convolutional network; its accuracy, and the largest difference
between the masked kernel of padded sequences and the kernel of the unpadded ones.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from ..model import Plot, Section
from ._common import Context, mean_of, scores


def given(t: Tensor | None) -> Tensor:
    """A kernel that was asked for (never ``None``)."""
    if t is None:  # pragma: no cover (get="ntk" asks for it)
        raise ValueError("the NTK was not computed")
    return t


def _networks(classes: int) -> dict[str, Any]:
    import neural_kernels as nk

    s, b = math.sqrt(2.0), 0.1
    eye = torch.eye(8, dtype=torch.float64)

    def head(*layers: Any) -> Any:
        return nk.Sequential(*layers, nk.Flatten(), nk.Dense(classes, b_std=b))

    return {
        "conv": head(
            nk.Conv(32, 3, w_std=s, b_std=b), nk.ReLU(), nk.Conv(32, 3, w_std=s), nk.ReLU()
        ),
        "conv_local": head(
            nk.ConvLocal(32, 3, w_std=s, b_std=b),
            nk.ReLU(),
            nk.ConvLocal(32, 3, w_std=s),
            nk.ReLU(),
        ),
        "conv_transpose": head(
            nk.Conv(32, 3, w_std=s, b_std=b),
            nk.ReLU(),
            nk.ConvTranspose(32, 2, stride=2, w_std=s),
            nk.ReLU(),
        ),
        "index_crop": head(
            nk.Index(nk.Slice[:, :, 1:7, 1:7]),
            nk.Conv(32, 3, w_std=s, b_std=b),
            nk.ReLU(),
            nk.Conv(32, 3, w_std=s),
            nk.ReLU(),
        ),
        "repeat_depth_8": head(
            nk.Conv(32, 3, padding="same", w_std=s, b_std=b),
            nk.repeat(nk.Sequential(nk.ReLU(), nk.Conv(32, 3, padding="same", w_std=s)), 7),
            nk.ReLU(),
        ),
        "exp_normalized": head(
            nk.Conv(32, 3, w_std=s, b_std=b),
            nk.ExpNormalized(gamma=1.0),
            nk.Conv(32, 3, w_std=s),
            nk.ReLU(),
        ),
        "dot_general": head(  # a fixed blur of the rows: row i becomes rows i and i + 1
            nk.DotGeneral(
                lhs=0.5 * (eye[:7] + eye[1:]), dimension_numbers=(((1,), (2,)), ((), ()))
            ),
            nk.Conv(32, 3, w_std=s, b_std=b),
            nk.ReLU(),
            nk.Conv(32, 3, w_std=s),
            nk.ReLU(),
        ),
        "resize_channels_last": nk.Sequential(
            nk.ImageResize(12, "nearest"),
            nk.Conv(32, 3, stride=2, w_std=s, b_std=b),
            nk.ReLU(),
            nk.ChannelsLast(),
            nk.Dense(32, w_std=s),
            nk.ReLU(),
            nk.ChannelsFirst(),
            nk.Flatten(),
            nk.Dense(classes, b_std=b),
        ),
    }


def _masking(ctx: Context, x: Tensor, n: int) -> dict[str, Any]:
    """Digits as row sequences of random lengths, padded with NaN and masked."""
    import neural_kernels as nk

    net = nk.Sequential(
        nk.Conv(16, 3, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.Conv(16, 3, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(ctx.n_classes, b_std=0.1),
    )
    rows = x[:, 0].transpose(1, 2)  # (n, 8 columns as channels, 8 rows as positions)
    g = torch.Generator().manual_seed(ctx.seed)
    lengths = torch.randint(4, 9, (rows.shape[0],), generator=g)
    padded = rows.masked_fill(torch.arange(8)[None, None, :] >= lengths[:, None, None], math.nan)
    start = time.perf_counter()
    ntk = given(net.kernel(padded, get="ntk", mask_constant=math.nan).ntk)
    seconds = time.perf_counter() - start
    post = nk.predict.gp_inference(ntk[:n, :n], ctx.targets[:n].double(), diag_reg=ctx.diag_reg)
    m = rows.shape[0] - n
    mean = mean_of(post(k_test_train=ntk[n:, :n]))
    acc, _ = scores(mean, ctx.targets_test[:m].double(), ctx.y_test[:m])
    crop = rows[:6, :, :5]  # six sequences of 5 rows, alone and padded to 8
    pad = torch.cat([crop, torch.full_like(rows[:6, :, :3], math.nan)], dim=2)
    masked = given(net.kernel(pad, mask_constant=math.nan).ntk)
    gap = (masked - given(net.kernel(crop).ntk)).abs().max()
    return {
        "network": repr(net),
        "lengths": [int(lengths.min()), int(lengths.max())],
        "test_accuracy": float(acc),
        "kernel_seconds": seconds,
        "padded_vs_unpadded_max_abs": float(gap),
    }


def build(ctx: Context) -> Section:
    """The section: accuracy and time per network, and one Monte Carlo check."""
    import neural_kernels as nk

    n, m = (80, 40) if ctx.quick else (160, 80)
    n, m = min(n, ctx.x_train.shape[0]), min(m, ctx.x_test.shape[0])
    x = torch.cat([ctx.x_train[:n], ctx.x_test[:m]]).reshape(-1, 1, 8, 8).double()
    targets = ctx.targets[:n].double()
    results: dict[str, Any] = {}
    with ctx.progress("More layers: kernels") as progress:
        nets = _networks(ctx.n_classes)
        for i, (name, net) in enumerate(nets.items()):
            start = time.perf_counter()
            ntk = given(net.kernel(x, get="ntk").ntk)
            seconds = time.perf_counter() - start
            post = nk.predict.gp_inference(ntk[:n, :n], targets, diag_reg=ctx.diag_reg)
            mean = mean_of(post(k_test_train=ntk[n:, :n]))
            acc, mse = scores(mean, ctx.targets_test[:m].double(), ctx.y_test[:m])
            results[name] = {
                "network": repr(net),
                "test_accuracy": float(acc),
                "test_mse": float(mse),
                "kernel_seconds": seconds,
                "examples": n + m,
            }
            progress(i + 1, len(nets))
    # Monte Carlo NTK of finite twins against the closed form, on four digits (one output)
    net = nk.Sequential(*nets["conv_transpose"].layers[:-1], nk.Dense(1, b_std=0.1))
    x4 = x[:4]
    exact = given(net.kernel(x4, get="ntk").ntk)
    samples = 4 if ctx.quick else 6
    mc = nk.monte_carlo_kernel(
        net,
        x4,
        n_samples=samples,
        width=64,
        get="ntk",
        generator=torch.Generator().manual_seed(ctx.seed),
    )
    rel = float((given(mc.ntk) - exact).norm() / exact.norm())
    masking = _masking(ctx, x, n)
    data = {
        "train": n,
        "test": m,
        "networks": results,
        "monte_carlo": {
            "network": "conv_transpose",
            "width": 64,
            "samples": samples,
            "ntk_relative_error": rel,
        },
        "masking": masking,
    }
    lines = [f"More layers: NTK regression on {n} digits, tested on {m}"]
    lines += [
        f"  {name:17} accuracy {r['test_accuracy']:.3f}  kernel {r['kernel_seconds']:.2f} s"
        for name, r in results.items()
    ]
    lines.append(
        f"  Monte Carlo NTK of {samples} width-64 ConvTranspose twins: relative error {rel:.3f}"
    )
    lines.append(
        f"  masked row sequences of lengths 4-8: accuracy {masking['test_accuracy']:.3f}, "
        f"padded vs unpadded kernel max difference {masking['padded_vs_unpadded_max_abs']:.1e}"
    )

    def draw(ax: Any) -> None:
        names = list(results)
        ax.barh(names, [results[k]["test_accuracy"] for k in names], color="tab:blue")
        ax.axvline(ctx.chance, color="k", ls=":", label="chance")
        ax.set_xlabel("NTK regression test accuracy")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("More layers on the digits")

    return Section(
        "more_layers",
        data,
        lines,
        [
            Plot(
                "more_layers",
                draw,
                "Test accuracy of NTK kernel regression for convolutional networks built "
                "with the layers added for compatibility with Neural Tangents.",
            )
        ],
        title="More layers",
        text="Locally connected and transposed convolutions, cropping, resizing, deep "
        "repeated blocks and a per-position Dense between convolutions, each an exact kernel.",
    )
