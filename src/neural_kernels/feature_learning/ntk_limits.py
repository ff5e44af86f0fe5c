r"""Limits of the NTK perspective (Wenger, Dangel & Kristiadi): what the kernel picture needs.

The kernel picture of a trained network rests on a well-conditioned NTK Gram, a Jacobian
that barely moves (the *stable-Jacobian* constant), a kernel that stays put and a
network close to its linearisation. :func:`ntk_limits_sweep` measures each against width
and depth for a ReLU MLP (:func:`~neural_kernels.feature_learning.nonlinear.mlp`) trained
by full-batch gradient descent on :math:`\frac{1}{2N}\sum(f-y)^2` (digits, one-hot
targets centred at 0.1), in four set-ups:

* ``"ntk"``: NTK parametrization at the kernel's rate :math:`\eta = N/\lambda_{\max}`
  (:math:`\lambda_{\max}` of the empirical NTK Gram at initialisation);
* ``"standard"``: standard parametrization at the same rule (which keeps it lazy);
* ``"standard_fixed"``: standard parametrization at a fixed practical rate ``fixed_lr``;
* ``"mup"``: muP at base rate ``fixed_lr`` (base width ``widths[0]``).

Per run, with :math:`\Theta` the empirical NTK (mean over outputs) on the training
points and :math:`J` the Jacobian of the outputs on ``n_probe`` probe points:

* ``lambda_min``, ``lambda_max``, ``condition``: of :math:`\Theta_0` (shape ``(n, n)``);
* ``jacobian_constant``: :math:`\max_t \|J(\theta_t) - J(\theta_0)\|_F /
  \|\theta_t - \theta_0\|_2` over checkpoints of the trajectory (Frobenius norm, an upper
  bound of the operator norm);
* ``kernel_movement``: :math:`\|\Theta_T - \Theta_0\|_F / \|\Theta_0\|_F`;
* ``linearisation_gap``: :math:`\|f_T - f^{\mathrm{lin}}_T\| / \|f^{\mathrm{lin}}_T\|` on
  test points, :math:`f^{\mathrm{lin}}` the linearised network trained by the same gradient
  descent (:func:`neural_kernels.predict.gradient_descent_mse` with the empirical NTK at
  initialisation, started from the network's initial outputs);
* ``test_mse``, ``test_accuracy``, ``diverged`` (a non-finite loss: the other numbers are
  then ``None``).

:func:`ntk_gp_vs_ensemble` sets the NTK-GP posterior (the infinite ensemble trained to
convergence) against an ensemble of trained finite networks in test log-likelihood and
calibration (coverage of central 50 % and 90 % intervals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import HyperparameterError
from ._digits import digits
from .nonlinear import _mean_of, mlp, train_gd

__all__ = [
    "SETUPS",
    "GPvsEnsemble",
    "NTKLimits",
    "ntk_gp_vs_ensemble",
    "ntk_limits_sweep",
    "plot_ntk_limits",
]

#: The set-ups of :func:`ntk_limits_sweep`: ``name -> (parametrization, learning-rate rule)``.
SETUPS = {
    "ntk": ("ntk", "kernel"),
    "standard": ("standard", "kernel"),
    "standard_fixed": ("standard", "fixed"),
    "mup": ("mup", "fixed"),
}


@dataclass
class NTKLimits:
    """The numbers of :func:`ntk_limits_sweep`: ``runs[setup][str(depth)][str(width)]``."""

    widths: list[int]
    depths: list[int]
    setups: list[str]
    n_train: int
    n_test: int
    n_probe: int
    steps: int
    fixed_lr: float
    seed: int
    runs: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)

    def series(self, setup: str, depth: int, key: str) -> list[Any]:
        """``key`` across widths for one set-up and depth."""
        return [self.runs[setup][str(depth)][str(w)][key] for w in self.widths]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def _check(where: str, widths: Sequence[int], depths: Sequence[int], steps: int) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise HyperparameterError(f"{where}: widths={list(widths)}. Pass positive widths.")
    if not depths or any(int(d) < 1 for d in depths):
        raise HyperparameterError(f"{where}: depths={list(depths)}. Pass depths >= 1.")
    if not isinstance(steps, int) or steps < 1:
        raise HyperparameterError(f"{where}: steps={steps!r}. Pass an integer >= 1.")


def _targets(labels: Tensor) -> Tensor:
    return torch.nn.functional.one_hot(labels, 10).double() - 0.1


def _jacobian(model: torch.nn.Module, x: Tensor) -> Tensor:
    """``(n k, P)``: the Jacobian of the flattened outputs on ``x`` (``torch.func.jacrev``)."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def outputs(ps: dict[str, Tensor]) -> Tensor:
        return torch.func.functional_call(model, ps, (x,)).reshape(-1)

    jac = torch.func.jacrev(outputs)(params)
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], 1)


def _flat(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _one_run(
    net: Any, param: str, rule: str, width: int, base: int, data: tuple[Tensor, ...], *,
    steps: int, fixed_lr: float, n_probe: int, gen: torch.Generator,
) -> dict[str, Any]:  # fmt: skip
    import neural_kernels as nk

    x, y, xt, labels_t = data
    kw: dict[str, Any] = {"base_width": base} if param == "mup" else {}
    model = net.module(
        (x.shape[1],), width=width, parametrization=param, generator=gen, dtype=torch.float64, **kw
    )
    theta0 = nk.empirical_ntk(model, x)
    eig = torch.linalg.eigvalsh(theta0)
    lr = y.numel() / float(eig[-1]) if rule == "kernel" else fixed_lr
    out: dict[str, Any] = {
        "learning_rate": lr,
        "lambda_min": float(eig[0]),
        "lambda_max": float(eig[-1]),
        "condition": float(eig[-1] / eig[0]) if eig[0] > 0 else None,  # None: singular
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    theta0_test = nk.empirical_ntk(model, xt, x)
    with torch.no_grad():
        f0, f0t = model(x), model(xt)
    probe = x[:n_probe]
    j0, p0 = _jacobian(model, probe).detach(), _flat(model)
    checkpoints = sorted({max(1, steps // 8), max(1, steps // 4), max(1, steps // 2), steps})
    ratios, done, diverged = [], 0, False
    for c in checkpoints:
        losses = train_gd(model, x, y, lr, c - done, mup=param == "mup")
        done = c
        if not all(math.isfinite(v) for v in losses) or not torch.isfinite(_flat(model)).all():
            diverged = True
            break
        dp = float(torch.linalg.norm(_flat(model) - p0))
        dj = float(torch.linalg.norm(_jacobian(model, probe).detach() - j0))
        ratios.append(dj / dp if dp > 0 else 0.0)
    out["diverged"] = diverged
    if diverged:
        out.update(dict.fromkeys(
            ("jacobian_constant", "kernel_movement", "linearisation_gap", "test_mse",
             "test_accuracy"),
        ))  # fmt: skip
        return out
    theta1 = nk.empirical_ntk(model, x)
    gd = nk.predict.gradient_descent_mse(theta0, y, lr, diag_reg=0.0)
    lin = _mean_of(gd(float(steps), k_test_train=theta0_test, fx_train_0=f0, fx_test_0=f0t))
    with torch.no_grad():
        ft = model(xt)
    yt = _targets(labels_t)
    out.update(
        jacobian_constant=max(ratios),
        kernel_movement=float(torch.linalg.norm(theta1 - theta0) / torch.linalg.norm(theta0)),
        linearisation_gap=float(torch.linalg.norm(ft - lin) / torch.linalg.norm(lin)),
        test_mse=float((ft - yt).pow(2).mean()),
        test_accuracy=float((ft.argmax(1) == labels_t).double().mean()),
    )
    return out


def ntk_limits_sweep(
    widths: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    depths: Sequence[int] = (1, 2, 3, 4),
    setups: Sequence[str] = tuple(SETUPS),
    *,
    n_train: int = 128,
    n_test: int = 128,
    n_probe: int = 4,
    steps: int = 200,
    fixed_lr: float = 0.5,
    seed: int = 0,
    progress: Any = None,
) -> NTKLimits:
    """Kernel statistics, Jacobian stability, kernel movement and linearisation gap by width.

    Args:
        widths: hidden widths (the first is muP's base width).
        depths: numbers of hidden ReLU layers.
        setups: names from :data:`SETUPS`.
        n_train: digits training points (float64, ``X/16`` centred).
        n_test: digits test points.
        n_probe: training points on which the Jacobian is taken (``n_probe * 10`` rows).
        steps: full-batch gradient-descent steps.
        fixed_lr: the learning rate of ``"standard_fixed"`` and muP's base rate.
        seed: the initialisation seed.
        progress: optional callable ``progress(done, total)``.

    Returns:
        An :class:`NTKLimits`.

    Raises:
        HyperparameterError: empty or non-positive widths or depths, an unknown set-up,
            bad ``steps`` or ``fixed_lr``.

    """
    where = "nk.feature_learning.ntk_limits_sweep"
    _check(where, widths, depths, steps)
    bad = [s for s in setups if s not in SETUPS]
    if bad:
        raise HyperparameterError(f"{where}: unknown setups {bad}. Use some of {list(SETUPS)}.")
    if not (isinstance(fixed_lr, (int, float)) and math.isfinite(fixed_lr) and fixed_lr > 0):
        raise HyperparameterError(f"{where}: fixed_lr={fixed_lr!r}. Pass a positive rate.")
    x, labels, xt, labels_t = digits(n_train, n_test)
    data = (x, _targets(labels), xt, labels_t)
    ws, ds = [int(w) for w in widths], [int(d) for d in depths]
    out = NTKLimits(ws, ds, list(setups), n_train, n_test, n_probe, steps, fixed_lr, seed)
    total, done = len(setups) * len(ds) * len(ws), 0
    for name in setups:
        param, rule = SETUPS[name]
        out.runs[name] = {}
        for d in ds:
            net = mlp("relu", d)
            out.runs[name][str(d)] = {}
            for w in ws:
                gen = torch.Generator().manual_seed(seed)
                out.runs[name][str(d)][str(w)] = _one_run(
                    net, param, rule, w, ws[0], data, steps=steps, fixed_lr=fixed_lr,
                    n_probe=n_probe, gen=gen,
                )  # fmt: skip
                done += 1
                if progress is not None:
                    progress(done, total)
    return out


def plot_ntk_limits(
    res: NTKLimits,
    depth: int,
    axes: Sequence[Any],
    keys: Sequence[str] = (
        "condition",
        "jacobian_constant",
        "kernel_movement",
        "linearisation_gap",
    ),
) -> None:
    """Log-log panels against width, one per key (default four), one line per set-up."""
    for ax, key in zip(axes, keys, strict=False):
        for name in res.setups:
            vals = res.series(name, depth, key)
            pts = [(w, v) for w, v in zip(res.widths, vals, strict=True) if v is not None and v > 0]
            if pts:
                ax.loglog(*zip(*pts, strict=True), "o-", label=name, ms=3)
        ax.set_xlabel("width")
        ax.set_title(f"{key} (depth {depth})", fontsize=9)
    axes[0].legend(fontsize=7)


@dataclass
class GPvsEnsemble:
    """NTK-GP posterior against an ensemble of trained NTK-parametrized networks."""

    width: int
    depth: int
    members: int
    steps: int
    noise: float
    #: per model: mean test log-likelihood per target, coverage of the 50/90 % intervals,
    #: test MSE and accuracy of the mean
    ntk_gp: dict[str, float] = field(default_factory=dict)
    ensemble: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def _scores(mean: Tensor, var: Tensor, yt: Tensor, labels: Tensor) -> dict[str, float]:
    """Gaussian log-likelihood per target and central-interval coverage."""
    z = (yt - mean) / var.sqrt()
    ll = -0.5 * (z.pow(2) + torch.log(2 * math.pi * var))
    return {
        "log_likelihood": float(ll.mean()),
        "coverage_50": float((z.abs() < 0.6744897501960817).double().mean()),
        "coverage_90": float((z.abs() < 1.6448536269514722).double().mean()),
        "mse": float((mean - yt).pow(2).mean()),
        "accuracy": float((mean.argmax(1) == labels).double().mean()),
    }


def ntk_gp_vs_ensemble(
    width: int = 512,
    depth: int = 1,
    members: int = 8,
    *,
    n_train: int = 128,
    n_test: int = 256,
    steps: int = 400,
    noise: float = 1e-2,
    seed: int = 0,
) -> GPvsEnsemble:
    """NTK-GP (``t = inf``) against ``members`` NTK-parametrized nets trained ``steps`` steps.

    Both predictive distributions are Gaussian per test target: the NTK-GP's mean and
    marginal variance (:func:`neural_kernels.predict.gradient_descent_mse_ensemble`), the
    ensemble's mean and sample variance over members; ``noise`` (an absolute variance) is
    added to both. The nets train at ``N / lambda_max`` of the analytic NTK.

    Raises:
        HyperparameterError: ``members < 2``, ``noise <= 0``, bad width, depth or steps.

    """
    import neural_kernels as nk

    where = "nk.feature_learning.ntk_gp_vs_ensemble"
    _check(where, (width,), (depth,), steps)
    if not isinstance(members, int) or members < 2:
        raise HyperparameterError(f"{where}: members={members!r}. Pass an integer >= 2.")
    if not (math.isfinite(noise) and noise > 0):
        raise HyperparameterError(f"{where}: noise={noise!r}. Pass a positive variance.")
    x, labels, xt, labels_t = digits(n_train, n_test)
    y, yt = _targets(labels), _targets(labels_t)
    net = mlp("relu", depth)
    k_train = net.kernel(x, get=("nngp", "ntk"))
    lr = y.numel() / float(torch.linalg.eigvalsh(k_train.ntk)[-1])
    ens = nk.predict.gradient_descent_mse_ensemble(net, x, y, diag_reg=1e-6)
    g: Any = ens(t=None, x_test=xt, get="ntk", compute_cov=True)  # one Gaussian (mean, cov)
    var_gp = torch.diagonal(g.cov).clamp_min(0.0)[:, None].expand_as(g.mean) + noise
    gen = torch.Generator().manual_seed(seed)
    outs = []
    for _ in range(members):
        model = net.module((x.shape[1],), width=width, generator=gen, dtype=torch.float64)
        train_gd(model, x, y, lr, steps, mup=False)
        with torch.no_grad():
            outs.append(model(xt))
    f = torch.stack(outs)
    res = GPvsEnsemble(width, depth, members, steps, noise)
    res.ntk_gp = _scores(g.mean, var_gp, yt, labels_t)
    res.ensemble = _scores(f.mean(0), f.var(0) + noise, yt, labels_t)
    return res
