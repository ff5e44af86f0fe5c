r"""Section ``theory``: theory against experiment, at demo sizes.

The checks of :mod:`neural_kernels.theory.experiment` at small sizes: the 1/width
corrections against exact Gram-chain Monte Carlo, criticality and the normalised
correction against ``L/n``, infinitely deep classifiers on the sphere, the random-feature
and kernel ridge risk against ridge regressions, and the training residual along the
NTK's eigendirections against trained twins. :func:`sections` builds the same at any
size; ``neural-kernels theory`` runs it at the full sizes.
"""

from __future__ import annotations

from typing import Any

from ..model import Plot, Section
from ._common import Context

#: Sizes of the demo section (quick) and of ``neural-kernels theory`` (full).
SIZES: dict[str, dict[str, Any]] = {
    "quick": {
        "chain_samples": 5000,
        "sphere": {"n": 200, "n_test": 400, "n_relu": 50, "relu_depths": (10, 100)},
        "risk": {"ks": (50, 100, 200, 400, 1000), "trials": 3, "digits_n": (100,)},
        "dynamics": {"n": 32, "widths": (64, 512), "seeds": 1},
    },
    "demo": {
        "chain_samples": 20000,
        "sphere": {"n": 300, "n_test": 600, "n_relu": 60, "relu_depths": (10, 100, 1000)},
        "risk": {"ks": (50, 100, 190, 300, 1000), "trials": 4, "digits_n": (100, 200)},
        "dynamics": {"n": 48, "widths": (64, 256, 1024), "seeds": 2},
    },
    "full": {
        "chain_samples": 100_000,
        "sphere": {"n": 1000, "n_test": 2000, "n_relu": 100},
        "risk": {},
        "dynamics": {"n": 64, "widths": (64, 256, 1024, 4096), "seeds": 3},
    },
}


def _finite_width(rows: list[dict[str, Any]]) -> Section:
    lines = ["1/width corrections against the exact Gram chain (Monte Carlo):"]
    for r in rows:
        lines.append(
            f"  {r['quantity']:32} theory {r['theory']:.5g}  leading {r['leading_order']:.5g}"
            f"  MC {r['monte_carlo']:.5g} +- {r['se']:.2g}  (z {r['z']:+.1f})"
        )
    return Section(
        "theory_finite_width",
        {"rows": rows},
        lines,
        title="Finite-width corrections",
        text="The order-1/n predictions of nk.theory.finite_width against exact Monte Carlo "
        "of the Gram chain; for ReLU the exact variance (1 + 5/n)^(L-1) - 1 departs from "
        "the leading order 5(L-1)/n.",
    )


def _criticality(res: dict[str, Any]) -> Section:
    lines = ["Criticality (class, critical w_std, b_std):"]
    for name, row in res["activations"].items():
        w = "-" if row["w_std"] is None else f"{row['w_std']:.4f}"
        b = "-" if row["b_std"] is None else f"{row['b_std']:.4f}"
        lines.append(f"  {name:8} {row['class']:16} w_std {w:8} b_std {b}")

    def draw(ax: Any) -> None:
        for key, p in res["profiles"].items():
            ax.plot(p["depth_over_width"], p["vertex"], label=key.replace("_", " "))
        ax.set_xlabel("L / n")
        ax.set_ylabel("Var(G^L) / (n K^2) x n")
        ax.set_yscale("log")
        ax.legend(fontsize=7)

    return Section(
        "theory_criticality",
        res,
        lines,
        [Plot("theory_depth_to_width", draw, "Normalised correction against depth/width.")],
        title="Criticality",
    )


def _sphere(res: dict[str, Any]) -> Section:
    relu = res["relu_ntk"]
    lines = [
        f"Infinite depth on the sphere (d=2, {res['n']} train / {res['n_test']} test): "
        f"Bayes {res['bayes']:.3f}, majority {res['majority']:.3f}, 1-NN {res['one_nn']:.3f}",
        f"  optimal activation (L=100) {res['optimal_activation_depth_100']:.3f}, erf (L=200) "
        f"{res['erf_depth_200']:.3f}, rho^3 (L=30) {res['rho_cubed_depth_30']:.3f} "
        f"(= 1-NN on {100 * res['rho_cubed_agrees_with_one_nn']:.0f}% of points)",
        f"  ReLU NTK (n={relu['n']}) share of majority-class predictions: "
        + ", ".join(
            f"L={d}: {s:.3f}" for d, s in zip(relu["depths"], relu["majority_share"], strict=True)
        ),
    ]

    def draw(ax: Any) -> None:
        ax.semilogx(relu["depths"], relu["majority_share"], "o-")
        ax.set_xlabel("depth L")
        ax.set_ylabel("share predicting the majority class")
        ax.set_ylim(0, 1.05)

    return Section(
        "theory_infinite_depth",
        res,
        lines,
        [Plot("theory_relu_majority", draw, "ReLU NTK predictions drift to the majority class.")],
        title="Infinite depth",
    )


def _risk(res: dict[str, Any]) -> Section:
    ks = res["power_law"]["ks"]
    worst = 100 * res["worst_relative_error_k_ge_100_ridge_0.1"]
    lines = [
        "Random-feature ridge regression, power law (2000 modes, n=200): worst relative "
        f"error for k>=100 at ridge 0.1: {worst:.1f}%;"
        f" interpolation peak at k={res['peak_k_small_ridge']} (ridge 1e-3)",
    ]
    for row in res["digits_ntk"]:
        lines.append(
            f"  digits depth-3 ReLU NTK, n={row['n']}, ridge {row['ridge']:g}: theory "
            f"{row['theory']:.4f}, measured {row['measured']:.4f} "
            f"({100 * row['relative_error']:+.1f}%)"
        )

    def draw(ax: Any) -> None:
        for ridge, c in res["curves"].items():
            line = ax.loglog(ks, c["theory"], label=f"theory, ridge {ridge}")[0]
            ax.errorbar(ks, c["measured"], yerr=c["se"], fmt="o", color=line.get_color())
        ax.axvline(res["power_law"]["n"], color="k", ls=":", lw=0.8)
        ax.set_xlabel("features k")
        ax.set_ylabel("test risk")
        ax.legend(fontsize=7)

    return Section(
        "theory_risk",
        res,
        lines,
        [Plot("theory_rf_risk", draw, "Random-feature risk: eigenframework against experiment.")],
        title="Random-feature and kernel ridge risk",
    )


def _dynamics(res: dict[str, Any]) -> Section:
    gaps = res["gap"]
    lines = [
        "Residual along the NTK's eigendirections, deviation from exp(-lambda t/N): "
        + ", ".join(f"width {w}: {g:.4f}" for w, g in gaps.items())
    ]

    def draw(ax: Any) -> None:
        times = res["times"]
        theory = list(zip(*res["theory"], strict=True))
        widest = max(gaps, key=int)
        measured = list(zip(*res["measured"][widest], strict=True))
        for i, col in enumerate(theory):
            line = ax.semilogy(times, col, label=f"lambda={res['eigenvalues'][i]:.3g}")[0]
            ax.semilogy(times, [abs(v) for v in measured[i]], "o", color=line.get_color())
        ax.set_xlabel("time t (steps x learning rate)")
        ax.set_ylabel(f"residual ratio (dots: width {widest})")
        ax.legend(fontsize=7)

    return Section(
        "theory_dynamics",
        res,
        lines,
        [Plot("theory_eigen_dynamics", draw, "Residual decay along NTK eigendirections.")],
        title="Training dynamics along eigendirections",
    )


def sections(size: str = "demo", progress: Any = None) -> list[Section]:
    """Run every check at ``size`` (``"quick"``, ``"demo"`` or ``"full"``) as sections."""
    from ...theory import experiment as ex

    s = SIZES[size]
    steps: list[tuple[str, Any]] = [
        ("finite width", lambda: _finite_width(ex.finite_width_checks(s["chain_samples"]))),
        ("criticality", lambda: _criticality(ex.criticality_checks())),
        ("infinite depth", lambda: _sphere(ex.sphere_checks(**s["sphere"]))),
        ("risk", lambda: _risk(ex.risk_checks(**s["risk"]))),
        ("dynamics", lambda: _dynamics(ex.dynamics_checks(**s["dynamics"]))),
    ]
    out = []
    for i, (_, run) in enumerate(steps):
        out.append(run())
        if progress is not None:
            progress(i + 1, len(steps))
    return out


def build(ctx: Context) -> Section:
    """The demo's section: every check at demo sizes, merged into one section."""
    with ctx.progress("Theory against experiment") as progress:
        parts = sections("quick" if ctx.quick else "demo", progress)
    return Section(
        "theory",
        {p.name: p.data for p in parts},
        [line for p in parts for line in p.summary],
        [plot for p in parts for plot in p.plots],
        title="Theory against experiment",
        text="Each result of nk.theory next to an experiment the library runs; the full "
        "sizes are `neural-kernels theory`.",
    )
