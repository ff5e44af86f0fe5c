"""Gradient descent on the MSE in closed form (``neural_kernels.predict.mse``).

1. Limits and properties: t = 0 is the prior, PSD covariances, a vector of times equals
   separate calls, one eigendecomposition per kernel, input forms agree, the ensemble.
2. Real training: ensembles of finite twins trained by gradient descent follow the
   closed form (Lee et al. 2019), better as the width grows.
3. Bad inputs raise ``NeuralKernelsError`` subclasses with helpful messages; calling
   conventions (keywords after t, the transpose hint); ``max_learning_rate``.
"""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk
from neural_kernels.layers.dense import DenseModule

from .._support.predict import F64, NET, assert_psd, raises

P = nk.predict


def test_t0_is_the_prior(problem: dict) -> None:
    fn = P.gradient_descent_mse(problem["kdd"], problem["y"], diag_reg=1e-2)
    out = fn(0.0, k_test_train=problem["ktd"], k_test_test=problem["ktt"])
    for g in ("nngp", "ntk"):
        assert getattr(out, g).mean.abs().max() == 0
        torch.testing.assert_close(getattr(out, g).cov, problem["ktt"].nngp, rtol=1e-13, atol=1e-13)
    # fx_0 shifts the means: at t = 0 the outputs are the initial outputs.
    fx_t0 = torch.randn(6, 2, dtype=F64)
    out = fn(
        0.0,
        k_test_train=problem["ktd"],
        get="ntk",
        fx_train_0=torch.randn(12, 2, dtype=F64),
        fx_test_0=fx_t0,
    )
    torch.testing.assert_close(out.mean, fx_t0, rtol=0, atol=1e-14)
    # Training points without regulariser: prior mean 0 and covariance K_dd.
    fn0 = P.gradient_descent_mse(problem["kdd"], problem["y"])
    out = fn0(0.0, compute_cov=True)
    for g in ("nngp", "ntk"):
        assert getattr(out, g).mean.abs().max() < 1e-14
        torch.testing.assert_close(getattr(out, g).cov, problem["kdd"].nngp, rtol=1e-12, atol=1e-12)


def test_covariances_are_symmetric_psd(problem: dict) -> None:
    fn = P.gradient_descent_mse(problem["kdd"], problem["y"], diag_reg=1e-3)
    times = torch.tensor([0.0, 0.1, 1.0, 10.0, 1e3, math.inf], dtype=F64)
    for args in ({"k_test_train": problem["ktd"], "k_test_test": problem["ktt"]}, {}):
        out = fn(times, **args, compute_cov=True)
        for g in ("nngp", "ntk"):
            assert_psd(getattr(out, g).cov, f"gd {g} {len(args)}")
    post = P.gp_inference(problem["kdd"], problem["y"], diag_reg=1e-3)
    post_all = post(None, problem["ktd"], problem["ktt"])
    for g, gauss in zip(post_all._fields, post_all, strict=True):
        assert_psd(gauss.cov, f"gp {g}")


def test_vector_of_times_equals_separate_calls(problem: dict) -> None:
    fn = P.gradient_descent_mse(problem["kdd"], problem["y"], diag_reg=1e-3)
    times = torch.tensor([0.0, 0.3, 2.0, 40.0, math.inf], dtype=F64)
    fx0 = torch.randn(12, 2, dtype=F64)
    for args in ({"k_test_train": problem["ktd"], "k_test_test": problem["ktt"]}, {}):
        joint = fn(times, **args, compute_cov=True, fx_train_0=fx0)
        assert joint.ntk.mean.shape[0] == len(times)
        for i, t in enumerate(times.tolist()):
            one = fn(t, **args, compute_cov=True, fx_train_0=fx0)
            for g in ("nngp", "ntk"):
                torch.testing.assert_close(
                    getattr(joint, g).mean[i], getattr(one, g).mean, rtol=1e-12, atol=1e-13
                )
                torch.testing.assert_close(
                    getattr(joint, g).cov[i], getattr(one, g).cov, rtol=1e-12, atol=1e-13
                )
    grid = fn(times.reshape(5, 1), k_test_train=problem["ktd"], get="ntk")
    assert grid.mean.shape == (5, 1, 6, 2)


def test_one_eigendecomposition_per_kernel(problem: dict, monkeypatch) -> None:
    calls = []
    eigh = torch.linalg.eigh

    def counting(a, *args, **kwargs):
        calls.append(a.shape)
        return eigh(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", counting)
    fn = P.gradient_descent_mse(problem["kdd"], problem["y"], diag_reg=1e-3)
    for t in (0.5, 1.0, torch.tensor([2.0, 3.0])):
        fn(t, k_test_train=problem["ktd"], k_test_test=problem["ktt"])
        fn(t, compute_cov=True)
    assert len(calls) == 2  # NNGP and NTK, each once


def test_input_forms_agree(problem: dict) -> None:
    kdd, ktd, ktt, y = problem["kdd"], problem["ktd"], problem["ktt"], problem["y"]
    fn = P.gradient_descent_mse(kdd, y, diag_reg=1e-3)
    # Kernel vs dict vs bare tensor (a bare kernel follows the NNGP formulas).
    as_dict = P.gradient_descent_mse({"nngp": kdd.nngp, "ntk": kdd.ntk}, y, diag_reg=1e-3)
    bare = P.gradient_descent_mse(kdd.nngp, y, diag_reg=1e-3)
    a = fn(1.5, k_test_train=ktd, k_test_test=ktt)
    b = as_dict(
        1.5, k_test_train={"nngp": ktd.nngp, "ntk": ktd.ntk}, k_test_test={"nngp": ktt.nngp}
    )
    c = bare(1.5, k_test_train=ktd.nngp, k_test_test=ktt.nngp)
    assert isinstance(c, P.Gaussian)
    for g in ("nngp", "ntk"):
        torch.testing.assert_close(getattr(a, g).mean, getattr(b, g).mean, rtol=0, atol=0)
    torch.testing.assert_close(a.nngp.cov, c.cov, rtol=0, atol=0)
    # A named kernel with a bare test kernel for a single name.
    d = fn(1.5, k_test_train=ktd.ntk, get="ntk")
    torch.testing.assert_close(d.mean, a.ntk.mean, rtol=1e-13, atol=1e-15)
    # 1-D targets give 1-D means.
    v = P.gradient_descent_mse(kdd, y[:, 0], diag_reg=1e-3)(1.5, k_test_train=ktd, get="ntk")
    w = P.gradient_descent_mse(kdd, y[:, :1], diag_reg=1e-3)(1.5, k_test_train=ktd, get="ntk")
    torch.testing.assert_close(v.mean, w.mean[:, 0], rtol=1e-14, atol=1e-14)
    # With N = n k, time with two outputs runs half as fast as with one.
    torch.testing.assert_close(
        P.gradient_descent_mse(kdd, y[:, :1], diag_reg=1e-3)(
            0.75, k_test_train=ktd, get="ntk"
        ).mean[:, 0],
        a.ntk.mean[:, 0],
        rtol=1e-12,
        atol=1e-14,
    )
    # Absolute regulariser: diag_reg * I.
    shift = 1e-3 * float(kdd.ntk.diagonal().mean())
    absolute = P.gradient_descent_mse(kdd, y, diag_reg=shift, diag_reg_absolute=True)
    torch.testing.assert_close(
        absolute(1.5, k_test_train=ktd, get="ntk").mean, a.ntk.mean, rtol=1e-12, atol=1e-14
    )
    # float32 runs and is close to float64.
    k32 = nk.Kernel(
        kdd.nngp.float(), kdd.ntk.float(), kdd.cov1.float(), kdd.cov2.float(), (5,), (5,)
    )
    f32 = P.gradient_descent_mse(k32, y.float(), diag_reg=1e-3)(
        1.5, k_test_train=ktd.ntk.float(), get="ntk"
    )
    assert f32.mean.dtype == torch.float32
    torch.testing.assert_close(f32.mean.double(), a.ntk.mean, rtol=1e-4, atol=1e-4)


def test_ensemble_matches_kernels_and_caches(problem: dict, monkeypatch) -> None:
    x, xt, y = problem["x"], problem["xt"], problem["y"]
    ens = P.gradient_descent_mse_ensemble(NET, x, y, learning_rate=2.0, diag_reg=1e-3)
    fn = P.gradient_descent_mse(problem["kdd"], y, learning_rate=2.0, diag_reg=1e-3)
    times = torch.tensor([0.5, 5.0])
    got = ens(times, xt, get="ntk", compute_cov=True)
    want = fn(times, k_test_train=problem["ktd"], k_test_test=problem["ktt"], get="ntk")
    torch.testing.assert_close(got.mean, want.mean, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(got.cov, want.cov, rtol=1e-12, atol=1e-13)
    calls = []
    kernel = type(NET).kernel

    def counting(self, x1, x2=None, *args, **kwargs):
        calls.append(x2 is None and x1 is x)
        return kernel(self, x1, x2, *args, **kwargs)

    monkeypatch.setattr(type(NET), "kernel", counting)
    ens(None, xt, get="ntk", compute_cov=True)
    ens(1.0, None, get="ntk")
    assert not any(calls)  # the train-train kernel is cached
    both = ens(None, xt)
    assert both._fields == ("nngp", "ntk") and both.ntk.cov is None


def train_ensemble(
    net: nk.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    width: int,
    members: int,
    steps: list[int],
    lr: float,
    seed: int,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Full-batch GD on ``1/(2N) sum (f - y)^2`` of ``members`` finite twins at once.

    The twins come from ``net.module(..., parametrization="ntk")``; their ``Dense``
    weights are stacked so that one batched forward pass (checked against the modules)
    trains all members together. Returns the outputs on every row of ``x`` at
    initialisation ``(members, len(x), k)`` and after each number of ``steps``; the first
    ``len(y)`` rows are the training points.
    """
    gen = torch.Generator().manual_seed(seed)
    mods = [
        net.module(x.shape[1:], width=width, parametrization="ntk", generator=gen, dtype=x.dtype)
        for _ in range(members)
    ]
    layers = []
    for i, child in enumerate(mods[0]):
        if isinstance(child, DenseModule):
            w = torch.stack([m[i].weight.detach() for m in mods]).requires_grad_()
            b = torch.stack([m[i].bias.detach() for m in mods]).requires_grad_()
            layers.append((child.w_scale, w, child.b_scale, b))
        else:
            layers.append(child)
    params = [p for layer in layers if isinstance(layer, tuple) for p in layer[1::2]]

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        h = None
        for layer in layers:
            if not isinstance(layer, tuple):
                h = layer(h)
                continue
            w_scale, w, b_scale, b = layer
            if h is None:  # the shared input: one matrix product for every member
                m, out, fan_in = w.shape
                h = (inputs @ w.reshape(m * out, fan_in).T).reshape(len(inputs), m, out)
                h = h.transpose(0, 1)
            else:
                h = h @ w.mT
            h = w_scale * h + b_scale * b[:, None, :]
        return h

    with torch.no_grad():
        f0 = forward(x)
        twins = torch.stack([m(x) for m in mods[:4]])
    torch.testing.assert_close(f0[:4], twins, rtol=1e-12, atol=1e-12)
    n = y.shape[0]
    outputs, done = {}, 0
    for target in sorted(steps):
        for _ in range(target - done):
            loss = 0.5 * ((forward(x[:n]) - y) ** 2).sum() / y.numel()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, grad in zip(params, grads, strict=True):
                    p -= lr * grad
        done = target
        with torch.no_grad():
            outputs[target] = forward(x)
    return f0, outputs


def training_problem(seed: int = 1, n: int = 8, m: int = 4, d: int = 3) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, d, generator=gen, dtype=F64)
    y = torch.cat([torch.sin(2 * x[:n, :1]), 0.5 * x[:n, 1:2] - x[:n, 2:3] ** 2], dim=1)
    net = nk.Sequential(
        nk.Dense(512, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(2, w_std=1.5, b_std=0.1)
    )
    return {"x": x, "y": y, "n": n, "net": net}


def compare_training(prob: dict, width: int, members: int, steps: list[int], lr: float) -> dict:
    """Trained twins vs the closed form: per-member gap, ensemble z-scores."""
    x, y, n, net = prob["x"], prob["y"], prob["n"], prob["net"]
    f0, outs = train_ensemble(net, x, y, width, members, steps, lr, seed=width)
    fn = P.gradient_descent_mse(net.kernel(x[:n]), y, learning_rate=lr)
    ktd, ktt = net.kernel(x[n:], x[:n]), net.kernel(x[n:])
    times = torch.tensor([float(s) for s in sorted(steps)], dtype=F64)
    ens = fn(times, k_test_train=ktd, k_test_test=ktt, get="ntk")
    result = {"gap": [], "mean_z": [], "cov_z": [], "gap_wrong_time": []}
    for i, s in enumerate(sorted(steps)):
        trained = outs[s][:, n:]  # (members, m, k)
        moved = (trained - f0[:, n:]).pow(2).mean().sqrt()
        # Each member linearised around its own initial outputs (mean-only fx_0 semantics).
        for label, t in (("gap", float(s)), ("gap_wrong_time", 2.0 * s)):
            lin = torch.stack(
                [
                    fn(
                        t, k_test_train=ktd, get="ntk", fx_train_0=f0[j, :n], fx_test_0=f0[j, n:]
                    ).mean
                    for j in range(members)
                ]
            )
            result[label].append(float((lin - trained).pow(2).mean().sqrt() / moved))
        # The ensemble over initialisations: mean 0 prior, the closed-form Gaussian.
        mean, cov = ens.mean[i], ens.cov[i]
        sd = cov.diagonal().sqrt()
        result["mean_z"].append(
            float(((trained.mean(0) - mean) / (sd[:, None] / math.sqrt(members))).abs().max())
        )
        for c in range(y.shape[1]):
            sample = torch.cov(trained[:, :, c].T)
            se = ((sd[:, None] * sd[None]) ** 2 + cov**2).div(members).sqrt()
            result["cov_z"].append(float(((sample - cov) / se).abs().max()))
    return result


def test_trained_finite_networks_follow_the_closed_form() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched products: threads only add overhead
    try:
        prob = training_problem()
        # lr * lambda_max / N ~ 0.07: the discrete steps follow the gradient flow.
        lr, steps = 0.025, [20, 80, 320]
        assert lr < 0.05 * P.max_learning_rate(prob["net"].kernel(prob["x"][:8]), 16)
        wide = compare_training(prob, 2048, 32, steps, lr)
        narrow = compare_training(prob, 128, 32, steps, lr)
    finally:
        torch.set_num_threads(threads)
    # Ensemble mean and covariance within Monte Carlo error of the closed form.
    assert max(wide["mean_z"]) < 4.0, wide
    assert max(wide["cov_z"]) < 4.5, wide
    # Each member follows its own linearised prediction, closer when wider ...
    assert max(wide["gap"]) < 0.1, wide
    for w, nw in zip(wide["gap"], narrow["gap"], strict=True):
        assert w < 0.5 * nw, (wide, narrow)
    # ... and the time convention matters (N = y.numel() with two outputs).
    for w, bad in zip(wide["gap"], wide["gap_wrong_time"], strict=True):
        assert bad > 4 * w, wide


def test_bad_inputs(problem: dict) -> None:
    kdd, ktd, ktt, y = problem["kdd"], problem["ktd"], problem["ktt"], problem["y"]
    gd, gp = P.gradient_descent_mse, P.gp_inference
    # Targets: wrong rows, NaN, wrong rank.
    msg = raises(nk.ShapeError, "y_train has 11 rows", gd(kdd, y[:11]), 1.0)
    assert "(12, 12)" in msg
    raises(nk.NonFiniteError, "NaN", gd, kdd, torch.full((12, 2), math.nan))
    raises(nk.NonFiniteError, "NaN", gp, kdd, torch.full((12, 2), math.nan))
    raises(nk.ShapeError, "y_train has shape", gd, kdd, y[:, :, None])
    # Test kernel with the wrong column count, and one passed train-test.
    fn = gd(kdd, y, diag_reg=1e-3)
    raises(nk.ShapeError, "12 training points", fn, 1.0, k_test_train=ktd.ntk[:, :5], get="ntk")
    msg = raises(nk.ShapeError, "transpose", fn, 1.0, k_test_train=ktd.ntk.T, get="ntk")
    assert "net.kernel(x_test, x_train)" in msg
    raises(
        nk.ShapeError,
        "k_test_test",
        fn,
        1.0,
        k_test_train=ktd,
        k_test_test=ktt.nngp[:3, :3],
        get="nngp",
    )
    raises(nk.HyperparameterError, "k_test_test", fn, 1.0, k_test_train=ktd, compute_cov=True)
    # Negative and NaN times.
    raises(nk.HyperparameterError, "negative", fn, -1.0)
    raises(nk.HyperparameterError, "negative", fn, torch.tensor([1.0, -2.0]))
    raises(nk.NonFiniteError, "NaN", fn, math.nan)
    # Unknown get.
    msg = raises(nk.HyperparameterError, "get='ntkgp'", fn, 1.0, get="ntkgp")
    assert "'nngp'" in msg
    raises(nk.HyperparameterError, "get=", gp(kdd, y), "nngpp", ktd)
    raises(nk.HyperparameterError, "get=", fn, 1.0, get=())
    # A kernel computed without the NTK.
    nngp_only = NET.kernel(problem["x"], get="nngp")
    msg = raises(nk.HyperparameterError, "no NTK", gd(nngp_only, y), 1.0, get="ntk")
    assert 'get=("nngp", "ntk")' in msg
    # Bad hyperparameters.
    raises(nk.HyperparameterError, "diag_reg", gd, kdd, y, diag_reg=-1.0)
    raises(nk.HyperparameterError, "learning_rate", gd, kdd, y, learning_rate=0.0)
    raises(nk.InputTypeError, "has type", gd, "kernel", y)


def test_max_learning_rate(problem: dict) -> None:
    ntk, y = problem["kdd"].ntk, problem["y"]
    top = float(torch.linalg.eigvalsh(ntk)[-1])
    assert P.max_learning_rate(ntk) == pytest.approx(2 * 12 / top, rel=1e-10)
    lr = P.max_learning_rate(problem["kdd"], y_train_size=y.numel(), momentum=0.5)
    assert lr == pytest.approx(2 * 1.5 * 24 / top, rel=1e-10)
    # Below it the discrete steps contract; above it they diverge.
    base = P.max_learning_rate(ntk, y.numel())
    for factor, grows in ((0.95, False), (1.05, True)):
        f = torch.zeros_like(y)
        for _ in range(400):
            f = f - factor * base * ntk @ (f - y) / y.numel()
        assert (float((f - y).norm()) > float(y.norm())) == grows


def test_positional_arguments_after_t_are_refused(problem: dict) -> None:
    kdd, ktd, y = problem["kdd"], problem["ktd"], problem["y"]
    fx0, ft0 = torch.randn(12, 2, dtype=F64), torch.randn(6, 2, dtype=F64)
    fn = P.gradient_descent_mse(kdd, y, diag_reg=1e-3)
    ode = P.gradient_descent("mse", kdd, y)
    for predict_fn in (fn, ode):
        # Neural Tangents' order (t, fx_train_0, fx_test_0, k_test_train) ...
        msg = raises(nk.InputTypeError, "positional", predict_fn, 1.0, fx0, ft0, ktd)
        assert "k_test_train=" in msg and "fx_train_0=" in msg and "transpose" not in msg
        # ... and this library's earlier order (t, k_test_train) alike.
        raises(nk.InputTypeError, "by keyword", predict_fn, 1.0, ktd)
    # By keyword, in any order, the same numbers.
    a = fn(1.0, k_test_train=ktd, get="ntk", fx_train_0=fx0, fx_test_0=ft0)
    b = fn(1.0, fx_test_0=ft0, fx_train_0=fx0, get="ntk", k_test_train=ktd)
    assert torch.equal(a.mean, b.mean)
    # The ensemble and the GP posterior take Neural Tangents' positional order.
    ens = P.gradient_descent_mse_ensemble(NET, problem["x"], y, diag_reg=1e-3)
    pos = ens(2.0, problem["xt"], "ntk", True)
    kw = ens(t=2.0, x_test=problem["xt"], get="ntk", compute_cov=True)
    assert torch.equal(pos.mean, kw.mean) and torch.equal(pos.cov, kw.cov)
    post = P.gp_inference(kdd, y, diag_reg=1e-3)
    pos = post("ntkgp", ktd, problem["ktt"])
    kw = post(get="ntkgp", k_test_train=ktd, k_test_test=problem["ktt"])
    assert torch.equal(pos.mean, kw.mean) and torch.equal(pos.cov, kw.cov)


def test_transpose_hint_only_for_a_transposed_kernel(problem: dict) -> None:
    x, xt, y = problem["x"], problem["xt"], problem["y"]
    fn = P.gradient_descent_mse(problem["kdd"], y, diag_reg=1e-3)
    ode = P.gradient_descent("mse", problem["kdd"], y)
    # A Kernel whose rows are the training points: it is the transpose.
    for predict_fn in (fn, ode):
        msg = raises(nk.ShapeError, "transpose", predict_fn, 1.0, k_test_train=NET.kernel(x, xt))
        assert "its rows are the training points" in msg
    # A Kernel of the right size whose rows are other points: no transpose hint.
    other = torch.randn(12, 5, dtype=F64)
    msg = raises(nk.ShapeError, "12 training points", fn, 1.0, k_test_train=NET.kernel(other, xt))
    assert "transpose" not in msg
    # Initial outputs (n, k) passed as the kernel: a hint about fx_train_0, not the transpose.
    fx0 = torch.randn(12, 2, dtype=F64)
    for predict_fn in (fn, ode):
        kwargs = {"get": "ntk"} if predict_fn is fn else {}
        msg = raises(nk.ShapeError, "fx_train_0", predict_fn, 1.0, k_test_train=fx0, **kwargs)
        assert "transpose" not in msg
