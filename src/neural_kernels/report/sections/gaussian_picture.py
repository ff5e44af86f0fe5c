"""Section 3, ``gaussian_picture``: outputs of random finite networks against N(0, K(x, x))."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..model import Plot, Section
from ._common import COLORS, Context, sizes_for


def build(ctx: Context) -> Section:
    """Section 3: outputs at initialisation over many seeds against N(0, K(x, x))."""
    sizes = sizes_for(ctx.quick)
    x0 = ctx.x_test[:1]
    var = float(ctx.net.kernel(x0).nngp[0, 0])
    gen = torch.Generator().manual_seed(ctx.seed + 1)
    samples: dict[str, list[float]] = {}
    total = len(sizes.gauss_widths) * sizes.gauss_seeds
    with ctx.progress("Gaussian picture: random networks") as progress:
        for i, w in enumerate(sizes.gauss_widths):
            vals = []
            for s in range(sizes.gauss_seeds):
                model = ctx.net.module((x0.shape[1],), width=w, generator=gen, dtype=x0.dtype)
                with torch.no_grad():
                    vals.append(float(model(x0)[0, 0]))
                if s % 50 == 49:
                    progress(i * sizes.gauss_seeds + s + 1, total)
            samples[str(w)] = vals
    stats = {}
    for key, vals in samples.items():
        v = np.asarray(vals)
        z = np.sort((v - 0.0) / math.sqrt(var))
        cdf = np.array([0.5 * (1 + math.erf(zi / math.sqrt(2))) for zi in z])
        k = len(z)
        ks = float(max(np.max(np.arange(1, k + 1) / k - cdf), np.max(cdf - np.arange(k) / k)))
        c = v - v.mean()
        stats[key] = {
            "mean": float(v.mean()),
            "variance": float(v.var(ddof=1)),
            "excess_kurtosis": float((c**4).mean() / (c**2).mean() ** 2 - 3.0),
            "ks_distance_to_nngp": ks,
        }
    data = {
        "nngp_variance": var,
        "seeds": sizes.gauss_seeds,
        "widths": list(sizes.gauss_widths),
        "stats": stats,
        "samples": samples,
    }
    lines = [f"Gaussian picture: output 0 at one test point, NNGP variance {var:.4g}"]
    lines += [
        f"  width {w:>5}: variance {s['variance']:.4g}, excess kurtosis "
        f"{s['excess_kurtosis']:+.3f}, KS distance {s['ks_distance_to_nngp']:.3f}"
        for w, s in stats.items()
    ]

    def draw(ax: Any) -> None:
        sd = math.sqrt(var)
        edges = np.linspace(-4 * sd, 4 * sd, 41)
        for i, (w, vals) in enumerate(samples.items()):
            ax.hist(
                vals,
                bins=edges,
                density=True,
                histtype="step",
                lw=1.5,
                color=COLORS[i],
                label=f"width {w}",
            )
        grid = np.linspace(-4 * sd, 4 * sd, 200)
        ax.plot(
            grid,
            np.exp(-(grid**2) / (2 * var)) / math.sqrt(2 * math.pi * var),
            "k-",
            lw=2,
            label=r"NNGP $\mathcal{N}(0, K(x,x))$",
        )
        ax.set_xlabel("network output f(x) at initialisation")
        ax.set_ylabel("density")
        ax.set_title(f"Outputs of {sizes.gauss_seeds} random networks per width")
        ax.legend(fontsize=8)

    return Section(
        "gaussian_picture",
        data,
        lines,
        [
            Plot(
                "gaussian_picture",
                draw,
                "Histogram of one output of randomly initialised "
                "finite networks (one per seed) at one test input, per width, against the "
                "NNGP density N(0, K(x,x)).",
            )
        ],
        title="3. The Gaussian picture at initialisation",
        text=f"The fully connected network of section 1 with hidden widths overridden; "
        f"{sizes.gauss_seeds} independent initialisations per width.",
    )
