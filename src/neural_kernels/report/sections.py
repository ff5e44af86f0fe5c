r"""The sections of the demo report, one function each.

1. :func:`infinite_width` -- NNGP and NTK of a fully connected network and of a small
   CNN with global average pooling: eigenvalue spectra, Bayesian posteriors and
   gradient-descent predictions against training time.
2. :func:`finite_vs_infinite` -- finite twins of growing width, in the NTK and the
   standard parametrization, trained by full-batch gradient descent, against the
   kernel predictions for the same initial outputs.
3. :func:`gaussian_picture` -- the output of random finite networks at initialisation
   against the NNGP Gaussian.
4. :func:`kernel_movement` -- how far the empirical NTK moves during training.

Conventions (those of :mod:`neural_kernels.predict`): loss
:math:`\frac{1}{2N}\sum (f - y)^2` with :math:`N` = targets' size, time
:math:`\tau` = steps x learning rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Context", "Sizes", "add_sections", "sizes_for"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@dataclass(frozen=True)
class Sizes:
    """How big each part of the report is (the default run and ``--quick``)."""

    cnn_train: int
    cnn_test: int
    finite_train: int
    finite_test: int
    widths: tuple[int, ...]
    steps: int
    gauss_widths: tuple[int, ...]
    gauss_seeds: int
    probe: int


def sizes_for(quick: bool) -> Sizes:
    """The sizes of the default run, or of ``--quick``."""
    if quick:
        return Sizes(100, 50, 100, 50, (64, 128, 256, 512), 100, (2, 16, 256), 200, 16)
    return Sizes(
        600, 300, 300, 150, (64, 128, 256, 512, 1024, 2048, 4096), 100, (2, 8, 64, 512), 500, 32
    )


@dataclass
class Context:
    """What the sections share: the data (standardised), the targets and the FC kernels."""

    x_train: Tensor  # (n, features), the demo's dtype
    x_test: Tensor
    targets: Tensor  # (n, classes), one-hot minus 1/classes
    targets_test: Tensor
    y_test: Tensor  # (m,) class indices
    n_classes: int
    net: Any  # the demo's fully connected network
    k_train: Any  # its kernels, train x train
    k_test: Any  # test x train
    diag_reg: float
    seed: int
    quick: bool
    quiet: bool
    chance: float


def _progress(label: str, ctx: Context) -> Any:
    from ..cli import _Progress

    return _Progress(label, enabled=not ctx.quiet)


def _floats(t: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(t).reshape(-1)]


def _mean(prediction: Any) -> Tensor:
    """The mean of a single-kernel prediction of :mod:`neural_kernels.predict`."""
    return prediction.mean  # type: ignore[no-any-return]


def _scores(mean: Tensor, ctx_targets: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Test accuracy and test MSE of predictions ``mean`` (..., m, k)."""
    acc = (mean.argmax(-1) == y).double().mean(-1)
    mse = ((mean - ctx_targets) ** 2).mean((-2, -1))
    return acc, mse


# ----------------------------------------------------------------------------------------
# 1. Infinite width
# ----------------------------------------------------------------------------------------

#: Training times in units of N / lambda_max (the slowest-to-fastest mode time scale).
_TIMES = np.logspace(-1, 6, 29)


def _cnn(n_classes: int) -> Any:
    import neural_kernels as nk

    s, b = math.sqrt(2.0), 0.1
    return nk.Sequential(
        nk.Conv(32, 3, padding="valid", w_std=s, b_std=b),
        nk.ReLU(),
        nk.Conv(32, 3, padding="valid", w_std=s, b_std=b),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(n_classes, w_std=1.0, b_std=b),
    )


def _kernel_curves(
    k_train: Any, k_test: Any, ctx: Context, targets: Tensor, targets_test: Tensor, y: Tensor
) -> dict[str, Any]:
    """Spectra, posteriors and gradient-descent predictions of both kernels."""
    import neural_kernels as nk

    out: dict[str, Any] = {}
    n_total = targets.numel()
    post = nk.predict.gp_inference(k_train, targets, diag_reg=ctx.diag_reg)
    gd = nk.predict.gradient_descent_mse(k_train, targets, 1.0, diag_reg=ctx.diag_reg)
    for name in ("nngp", "ntk"):
        kernel = k_train[name] if isinstance(k_train, dict) else getattr(k_train, name)
        evals = torch.linalg.eigvalsh(kernel).flip(0).clamp_min(0)
        lam_max = float(evals[0])
        times = torch.as_tensor(_TIMES * n_total / lam_max, dtype=targets.dtype)
        mean = _mean(gd(times, k_test_train=k_test, get=name))
        acc, mse = _scores(mean, targets_test, y)
        p = _mean(post(get=name, k_test_train=k_test))
        p_acc, p_mse = _scores(p, targets_test, y)
        out[name] = {
            "eigenvalues": _floats(evals),
            "lambda_max": lam_max,
            "times_in_units_of_N_over_lambda_max": [float(v) for v in _TIMES],
            "times": _floats(times),
            "gd_test_accuracy": _floats(acc),
            "gd_test_mse": _floats(mse),
            "posterior_test_accuracy": float(p_acc),
            "posterior_test_mse": float(p_mse),
        }
    return out


def infinite_width(ctx: Context) -> Any:
    """Section 1: spectra and predictions of the FC and CNN kernels."""
    from ..cli import Plot, Section

    sizes = sizes_for(ctx.quick)
    t0 = time.perf_counter()
    data: dict[str, Any] = {
        "fc": {
            "network": repr(ctx.net),
            "n_train": ctx.x_train.shape[0],
            "n_test": ctx.x_test.shape[0],
            **_kernel_curves(
                ctx.k_train, ctx.k_test, ctx, ctx.targets, ctx.targets_test, ctx.y_test
            ),
        }
    }
    notes = []
    if ctx.x_train.shape[1] == 64:
        n, m = min(sizes.cnn_train, ctx.x_train.shape[0]), min(sizes.cnn_test, ctx.x_test.shape[0])
        cnn = _cnn(ctx.n_classes)
        x = torch.cat([ctx.x_train[:n], ctx.x_test[:m]]).reshape(-1, 1, 8, 8)
        with _progress("CNN kernel (train+test)^2", ctx) as progress:
            k = cnn.kernel(x, get=("nngp", "ntk"), progress=progress)
        k_train = {g: getattr(k, g)[:n, :n] for g in ("nngp", "ntk")}
        k_test = {g: getattr(k, g)[n:, :n] for g in ("nngp", "ntk")}
        data["cnn"] = {
            "network": repr(cnn),
            "n_train": n,
            "n_test": m,
            **_kernel_curves(
                k_train,
                k_test,
                ctx,
                ctx.targets[:n],
                ctx.targets_test[:m],
                ctx.y_test[:m],
            ),
        }
    else:
        notes.append("CNN skipped: the data are not 8x8 images (64 features)")
    data["chance_test_accuracy"] = ctx.chance
    data["seconds"] = time.perf_counter() - t0
    nets = [k for k in ("fc", "cnn") if k in data]
    lines = [f"{'':10} {'posterior acc':>14} {'GD acc (last t)':>16} {'posterior MSE':>14}"]
    for net in nets:
        for g in ("nngp", "ntk"):
            d = data[net][g]
            lines.append(
                f"  {net.upper()} {g.upper():5} {d['posterior_test_accuracy']:>14.4f} "
                f"{d['gd_test_accuracy'][-1]:>16.4f} {d['posterior_test_mse']:>14.5f}"
            )
    lines += notes

    def spectrum(ax: Any) -> None:
        for i, (net, g) in enumerate((a, b) for a in nets for b in ("nngp", "ntk")):
            ev = np.asarray(data[net][g]["eigenvalues"])
            ev = ev / ev[0]
            ax.loglog(
                np.arange(1, len(ev) + 1),
                np.maximum(ev, 1e-18),
                color=_COLORS[i],
                label=f"{net.upper()} {g.upper()} (n={len(ev)})",
            )
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue / largest eigenvalue")
        ax.set_title("Spectra of the train x train kernels")
        ax.legend(fontsize=8)

    def curve(key: str, ylabel: str, title: str) -> Any:
        def draw(ax: Any) -> None:
            for i, (net, g) in enumerate((a, b) for a in nets for b in ("nngp", "ntk")):
                d = data[net][g]
                ax.semilogx(
                    d["times_in_units_of_N_over_lambda_max"],
                    d[f"gd_{key}"],
                    color=_COLORS[i],
                    label=f"{net.upper()} {g.upper()} gradient descent",
                )
                ax.axhline(d[f"posterior_{key}"], color=_COLORS[i], ls=":", lw=1)
            if key == "test_accuracy":
                ax.axhline(ctx.chance, color="gray", ls="--", lw=1, label="chance (majority)")
            ax.set_xlabel(r"training time $\tau\,\lambda_{max}/N$")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.legend(fontsize=7)

        return draw

    return Section(
        "infinite_width",
        data,
        ["infinite width: NNGP and NTK predictions (test set)", *lines],
        [
            Plot(
                "spectra",
                spectrum,
                "Eigenvalues of the NNGP and NTK train kernels of the "
                "fully connected network and the CNN, normalised by the largest (log-log).",
            ),
            Plot(
                "accuracy_vs_time",
                curve("test_accuracy", "test accuracy", "Test accuracy during training"),
                "Test accuracy of infinitely wide networks trained by gradient descent "
                "(solid) against training time; dotted: the t = infinity posterior means.",
            ),
            Plot(
                "mse_vs_time",
                curve("test_mse", "test MSE", "Test MSE during training"),
                "Test mean squared error against training time (solid: gradient descent, "
                "dotted: posterior means at t = infinity).",
            ),
        ],
        title="1. Infinite width: NNGP and NTK",
    )


# ----------------------------------------------------------------------------------------
# 2 and 4. Finite twins trained by gradient descent
# ----------------------------------------------------------------------------------------


def _twin_net(width: int, parametrization: str, n_out: int) -> Any:
    """One hidden ReLU layer of ``width``, declared in ``parametrization``."""
    import neural_kernels as nk

    p = parametrization
    return nk.Sequential(
        nk.Dense(width, w_std=math.sqrt(2.0), b_std=0.1, parametrization=p),
        nk.ReLU(),
        nk.Dense(n_out, w_std=1.0, b_std=0.1, parametrization=p),
    )


def finite_twins(ctx: Context) -> dict[str, Any]:
    """Train the twins of every width and parametrization; the data of sections 2 and 4."""
    import neural_kernels as nk

    sizes = sizes_for(ctx.quick)
    n = min(sizes.finite_train, ctx.x_train.shape[0])
    m = min(sizes.finite_test, ctx.x_test.shape[0])
    x, xt = ctx.x_train[:n], ctx.x_test[:m]
    y, yt, labels = ctx.targets[:n], ctx.targets_test[:m], ctx.y_test[:m]
    probe = x[: sizes.probe].float()
    k_out = ctx.n_classes
    gen = torch.Generator().manual_seed(ctx.seed)
    runs = [(p, w) for p in ("ntk", "standard") for w in sizes.widths]
    out: dict[str, Any] = {
        "n_train": n,
        "n_test": m,
        "steps": sizes.steps,
        "widths": list(sizes.widths),
        "probe_points": int(probe.shape[0]),
        "network": "Dense(width, w_std=sqrt(2), b_std=0.1), ReLU, Dense(classes, w_std=1, "
        "b_std=0.1); twins in float32, kernels in float64",
        "learning_rate_rule": "N / lambda_max(NTK of the declared widths), N = n * classes",
        "ntk": {},
        "standard": {},
    }
    t0 = time.perf_counter()
    with _progress("finite twins: train", ctx) as progress:
        for i, (param, width) in enumerate(runs):
            net = _twin_net(width, param, k_out)
            k_train = net.kernel(x, get=("nngp", "ntk"))
            k_test = net.kernel(xt, x, get=("nngp", "ntk"))
            lam_max = float(torch.linalg.eigvalsh(k_train.ntk)[-1])
            lr = y.numel() / lam_max
            model = net.module((x.shape[1],), generator=gen, dtype=torch.float32)
            xf, xtf = x.float(), xt.float()
            with torch.no_grad():
                f0, f0t = model(xf).double(), model(xtf).double()
            theta0 = nk.empirical_ntk(model, probe)
            nk.empirical.train_mse(model, xf, y.float(), learning_rate=lr, steps=sizes.steps)
            with torch.no_grad():
                ft = model(xtf).double()
            theta1 = nk.empirical_ntk(model, probe)
            gd = nk.predict.gradient_descent_mse(k_train, y, lr, diag_reg=0.0)
            pred = _mean(
                gd(float(sizes.steps), k_test_train=k_test, get="ntk", fx_train_0=f0, fx_test_0=f0t)
            )
            rms_pred = float(pred.pow(2).mean().sqrt())
            acc_f, mse_f = _scores(ft, yt, labels)
            acc_k, mse_k = _scores(pred, yt, labels)
            out[param][str(width)] = {
                "learning_rate": lr,
                "time": lr * sizes.steps,
                "rms_difference": float((ft - pred).pow(2).mean().sqrt()),
                "relative_rms_difference": float((ft - pred).pow(2).mean().sqrt()) / rms_pred,
                "finite_test_accuracy": float(acc_f),
                "finite_test_mse": float(mse_f),
                "kernel_test_accuracy": float(acc_k),
                "kernel_test_mse": float(mse_k),
                "ntk_relative_change": float(
                    torch.linalg.norm(theta1 - theta0) / torch.linalg.norm(theta0)
                ),
            }
            progress(i + 1, len(runs))
    out["seconds"] = time.perf_counter() - t0
    return out


def finite_vs_infinite(twins: dict[str, Any]) -> Any:
    """Section 2: RMS difference between trained twins and kernel predictions."""
    from ..cli import Plot, Section

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
                color=_COLORS[i],
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
                color=_COLORS[i],
                label=f"finite, {param}",
            )
            ax.semilogx(
                widths,
                [d[str(w)]["kernel_test_accuracy"] for w in widths],
                ":",
                color=_COLORS[i],
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


def kernel_movement(twins: dict[str, Any]) -> Any:
    """Section 4: relative Frobenius change of the empirical NTK during training."""
    from ..cli import Plot, Section

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
            ax.loglog(widths, data[p], "o-", color=_COLORS[i], label=f"{p} parametrization")
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


# ----------------------------------------------------------------------------------------
# 3. The Gaussian picture
# ----------------------------------------------------------------------------------------


def gaussian_picture(ctx: Context) -> Any:
    """Section 3: outputs at initialisation over many seeds against N(0, K(x, x))."""
    from ..cli import Plot, Section

    sizes = sizes_for(ctx.quick)
    x0 = ctx.x_test[:1]
    var = float(ctx.net.kernel(x0).nngp[0, 0])
    gen = torch.Generator().manual_seed(ctx.seed + 1)
    samples: dict[str, list[float]] = {}
    total = len(sizes.gauss_widths) * sizes.gauss_seeds
    with _progress("Gaussian picture: random networks", ctx) as progress:
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
                color=_COLORS[i],
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


def add_sections(report: Any, ctx: Context) -> None:
    """Append sections 1 to 4 to ``report``."""
    report.add(infinite_width(ctx))
    twins = finite_twins(ctx)
    report.add(finite_vs_infinite(twins))
    report.add(gaussian_picture(ctx))
    report.add(kernel_movement(twins))
