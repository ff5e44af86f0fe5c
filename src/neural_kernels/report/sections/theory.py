r"""Section ``theory``: theory against experiment (:mod:`neural_kernels.theory`).

At small sizes: the finite-width corrections against exact Monte Carlo of the Gram chain,
the normalised corrections against depth over width (criticality), deep classifiers on
the Dirichlet sphere, the random-feature risk of the eigenframework against ridge
regressions, and the training residual along the NTK's eigendirections. The functions
``*_section`` turn the numbers of :mod:`neural_kernels.theory.checks` into report
sections; ``neural-kernels theory`` uses them at the issue's sizes.
"""

from __future__ import annotations

import math
from typing import Any

from ..model import Plot, Section
from ._common import Context

__all__ = [
    "build",
    "criticality_section",
    "dynamics_section",
    "finite_width_section",
    "risk_section",
    "sphere_section",
]


def finite_width_section(rows: list[dict[str, Any]], prefix: str = "") -> Section:
    """The check table: ``1/n`` theory against Monte Carlo of the Gram chain."""
    lines = ["Finite-width corrections (theory | leading order | Monte Carlo +- s.e. | z)"]
    for r in rows:
        lines.append(
            f"  {r['quantity']:28} {r['theory']:.6f} | {r['leading_order']:.6f} | "
            f"{r['monte_carlo']:.6f} +- {r['standard_error']:.6f} | {r['z']:+.2f}"
        )
    return Section(
        f"{prefix}finite_width",
        {"rows": rows, "max_abs_z": max(abs(r["z"]) for r in rows)},
        lines,
        title="Finite-width corrections against exact Monte Carlo",
        text="Each row: the order-1/n prediction of nk.theory.finite_width (the exact value "
        "for ReLU), the infinite-width or leading-order value, and the mean of exact Gram-chain "
        "samples with its standard error; |z| < 4 is agreement.",
    )


def criticality_section(data: dict[str, Any], prefix: str = "") -> Section:
    """``V/(n K^2)`` against ``L/n``: linear at criticality, exponential away from it."""
    lines = [
        f"Criticality: ReLU class {data['relu_class']}, tanh class {data['tanh_class']}; "
        f"V/(nK^2) at L/n = {data['depth'] / data['width']:g}:"
    ]
    for name, c in data["curves"].items():
        lines.append(f"  {name:18} (w_std {c['w_std']:.3f}): {c['vertex'][-1]:.4g}")

    def draw(ax: Any) -> None:
        for name, c in data["curves"].items():
            ax.semilogy(c["depth_over_width"][1:], c["vertex"][1:], label=name)
        ax.set_xlabel("depth / width  L/n")
        ax.set_ylabel("Var(G) / K^2  (order 1/n)")
        ax.legend(fontsize=8)

    return Section(
        f"{prefix}criticality",
        data,
        lines,
        [
            Plot(
                f"{prefix}criticality_depth_to_width",
                draw,
                "Normalised kernel fluctuation "
                "against depth over width, at and away from criticality.",
            )
        ],
        title="Criticality: corrections against depth over width",
        text="At criticality the normalised fluctuation grows linearly in L/n (ReLU: 5L/n); "
        "away from it, exponentially or to zero.",
    )


def sphere_section(data: dict[str, Any], prefix: str = "") -> Section:
    """Deep classifiers on the Dirichlet sphere."""
    r = data["relu_ntk"]
    lines = [
        f"Infinite depth on the sphere (d = 2, n = {data['n']}, {data['n_test']} test): "
        f"Bayes {data['bayes']:.3f}, optimal activation (depth {data['depth']}) "
        f"{data['optimal_activation']:.3f}, 1-NN {data['nearest_neighbour']:.3f}, majority "
        f"{data['majority']:.3f}",
        f"  ReLU NTK (n = {r['n']}): share of majority predictions "
        + ", ".join(
            f"L={d}: {s:.2f}" for d, s in zip(r["depths"], r["majority_share"], strict=True)
        ),
    ]

    def draw(ax: Any) -> None:
        ax.semilogx(r["depths"], r["majority_share"], "o-", label="ReLU NTK: majority share")
        ax.semilogx(r["depths"], r["accuracy"], "s-", label="ReLU NTK: accuracy")
        for key, style in (("bayes", "k--"), ("optimal_activation", "g--"),
                           ("nearest_neighbour", "b:"), ("majority", "r:")):  # fmt: skip
            ax.axhline(data[key], color=style[0], ls=style[1:], label=key.replace("_", " "))
        ax.set_xlabel("depth L")
        ax.set_ylabel("accuracy / share")
        ax.legend(fontsize=7)

    return Section(
        f"{prefix}infinite_depth",
        data,
        lines,
        [Plot(f"{prefix}sphere_depth", draw, "Deep classifiers on the Dirichlet sphere.")],
        title="Infinite depth: the classifier each activation leads to",
        text="The optimal activation h1 + h7 (alpha = (d-1)/2) is Bayes-consistent; ReLU's deep "
        "NTK tends to the majority vote.",
    )


def _k(k: Any) -> float:
    return math.inf if k == "inf" else float(k)


def risk_section(power: dict[str, Any], digits: dict[str, Any] | None, prefix: str = "") -> Section:
    """Random-feature and kernel ridge risk: eigenframework against ridge regressions."""
    ks = [_k(k) for k in power["ks"]]
    finite = [k for k in ks if math.isfinite(k)]
    big = 2 * max(finite)
    xs = [k if math.isfinite(k) else big for k in ks]
    lines = [f"Random-feature risk, power-law task (n = {power['n']}, {power['trials']} trials):"]
    for key, c in power["curves"].items():
        lines.append(
            f"  ridge {key}: max |measured - theory| / theory at k >= 100: "
            f"{100 * c['max_relative_deviation_k_ge_100']:.1f}%"
        )
    ok, on = power["optimal_in_k"], power["optimal_in_n"]
    lines.append(
        "  optimal ridge, in k: "
        + ", ".join(f"{p['theory']:.3f}/{p['measured']:.3f}" for p in ok["points"])
        + f" (theory/measured; decreasing: {ok['theory_decreasing']})"
    )
    lines.append(
        "  optimal ridge, in n: "
        + ", ".join(f"{p['theory']:.3f}/{p['measured']:.3f}" for p in on["points"])
        + f" (decreasing: {on['theory_decreasing']})"
    )
    data: dict[str, Any] = {"power_law": power}
    if digits is not None:
        data["digits"] = digits
        lines.append(
            f"  digits, depth-3 ReLU NTK KRR (ridge {digits['ridge']}): "
            + ", ".join(f"n={p['n']}: {p['theory']:.4f}/{p['measured']:.4f}" for p in digits["krr"])
            + f" (max deviation {100 * digits['max_krr_relative_deviation']:.1f}%)"
        )
        lines.append(
            "  digits, finite-twin features: "
            + ", ".join(
                f"k={p['k']}: {p['theory']:.4f}/{p['measured']:.4f}"
                for p in digits["twin_rf"]["points"]
            )
            + f" (max deviation {100 * digits['max_twin_rf_relative_deviation']:.1f}%)"
        )

    def draw_k(ax: Any) -> None:
        for key, c in power["curves"].items():
            line = ax.loglog(xs, c["theory"], "-", label=f"theory, ridge {key}")[0]
            ax.errorbar(xs, c["measured"], yerr=c["standard_error"], fmt="o",
                        color=line.get_color(), ms=3, label=f"measured, ridge {key}")  # fmt: skip
        ax.axvline(power["n"], color="gray", ls=":", label="k = n")
        ax.set_xlabel(f"features k (k = inf drawn at {big:g})")
        ax.set_ylabel("test risk")
        ax.legend(fontsize=7)

    def draw_opt(ax: Any) -> None:
        kx = [_k(k) if math.isfinite(_k(k)) else big for k in ok["ks"]]
        ax.loglog(kx, [p["theory"] for p in ok["points"]], "o-", label="in k (theory)")
        ax.loglog(kx, [p["measured"] for p in ok["points"]], "x", label="in k (measured)")
        ax.loglog(on["ns"], [p["theory"] for p in on["points"]], "s-", label="in n (theory)")
        ax.loglog(on["ns"], [p["measured"] for p in on["points"]], "+", label="in n (measured)")
        ax.set_xlabel("k or n")
        ax.set_ylabel("test risk at the optimal ridge")
        ax.legend(fontsize=7)

    plots = [
        Plot(f"{prefix}rf_risk_vs_features", draw_k, "Random-feature risk against k."),
        Plot(f"{prefix}rf_risk_optimal_ridge", draw_opt, "Risk at the optimal ridge."),
    ]
    return Section(
        f"{prefix}risk",
        data,
        lines,
        plots,
        title="Random-feature and kernel ridge risk",
        text="The eigenframework (nk.theory.rf_risk, krr_risk) against ridge regressions on "
        "Gaussian features, on the digits with the NTK, and with a finite twin's last layer.",
    )


def dynamics_section(data: dict[str, Any], prefix: str = "") -> Section:
    """Residual along the NTK's eigendirections: trained twins against the theory."""
    widths = data["widths"]
    lines = [
        "Training along NTK eigendirections, deviation from exp(-lambda t / N) per width: "
        + ", ".join(f"{w}: {data['gap'][str(w)]:.4f}" for w in widths)
    ]

    def draw(ax: Any) -> None:
        times = data["times"]
        theory = list(zip(*data["theory"], strict=True))
        for i, th in enumerate(theory):
            line = ax.semilogy(times, th, "-", label=f"theory, lambda_{i + 1}")[0]
            for w, marker in zip((widths[0], widths[-1]), ("x", "o"), strict=True):
                meas = [row[i] for row in data["measured"][str(w)]]
                ax.semilogy(times, [abs(m) for m in meas], marker, color=line.get_color(),
                            ms=4, label=f"width {w}" if i == 0 else None)  # fmt: skip
        ax.set_xlabel("time (steps x learning rate)")
        ax.set_ylabel("residual ratio along u_i")
        ax.legend(fontsize=7)

    return Section(
        f"{prefix}eigen_dynamics",
        data,
        lines,
        [
            Plot(
                f"{prefix}eigendirection_dynamics",
                draw,
                "Residual along the NTK's top "
                "eigenvectors: theory (lines) against the narrowest and widest twins.",
            )
        ],
        title="Training dynamics along the NTK's eigendirections",
        text="Gradient descent on MSE: u_i^T r(t) = exp(-lambda_i t / N) u_i^T r(0) in the "
        "kernel regime; the deviation shrinks like 1/sqrt(width).",
    )


def build(ctx: Context) -> Section:
    """The demo's section: every check of :mod:`neural_kernels.theory.checks`, small."""
    from ...theory import checks

    quick = ctx.quick
    with ctx.progress("Theory against experiment") as progress:
        rows = checks.finite_width_table(5_000 if quick else 10_000, two_inputs=False)
        parts = [finite_width_section(rows)]
        progress(1, 5)
        parts.append(criticality_section(checks.criticality_profiles(12, 12)))
        progress(2, 5)
        sphere = checks.sphere_classifiers(
            n=40 if quick else 60, n_test=100 if quick else 150, depth=10, relu_n=30,
            relu_depths=(10, 50), relu_test=50,
        )  # fmt: skip
        parts.append(sphere_section(sphere))
        progress(3, 5)
        power = checks.power_law_risk(
            n=40, n_modes=200, ks=(10, 20, 36, 44, 80, 200, math.inf), trials=2,
            optimal_ks=(20, 80, math.inf), optimal_ns=(20, 40, 80), optimal_trials=2,
        )  # fmt: skip
        parts.append(risk_section(power, None))
        progress(4, 5)
        parts.append(dynamics_section(checks.dynamics(widths=(32, 512), n_points=12, seeds=1)))
        progress(5, 5)
    plots = [Plot(f"theory_{p.name}", p.draw, p.caption) for s in parts for p in s.plots]
    return Section(
        "theory",
        {s.name: s.data for s in parts},
        [line for s in parts for line in s.summary],
        plots,
        title="Theory against experiment",
        text="Small versions of the checks of nk.theory; the issue's sizes are "
        "'neural-kernels theory'. " + " ".join(s.text for s in parts),
    )
