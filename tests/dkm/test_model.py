"""The full deep kernel machine (``nk.dkm.DKM`` with ``inducing=None``).

* ``nu -> inf`` is the NNGP: objective = the NNGP log marginal likelihood and predictions
  = ``nk.predict.gp_inference`` on ``net.kernel`` (rtol 1e-6), for every kind of dual
  (arc-cosine, closed forms, quadrature, linear);
* the objective starts at the NNGP and never decreases under L-BFGS;
* gradients agree with central finite differences; every Gram stays positive definite;
* two initialisations of a linear-kernel DKM reach the same optimum;
* a learned noise variance respects its lower bound (and collapses to it on linear data).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import neural_kernels as nk

from .conftest import S2, regression, relu_net

NOISE = 0.1


def _nets() -> dict[str, nk.Sequential]:
    """Networks whose activations use each kind of dual."""

    def chain(act: nk.Layer | None, w: float, b: float = 0.2) -> nk.Sequential:
        layers: list[nk.Layer] = [nk.Dense(8)]
        for _ in range(3):
            if act is not None:
                layers.append(act)
            layers.append(nk.Dense(8, w_std=w, b_std=b))
        return nk.Sequential(*layers)

    return {
        "relu": relu_net(),
        "erf": chain(nk.Erf(), 1.5),
        "gelu": chain(nk.GELU(), 1.4),
        "rbf": chain(nk.RBF(0.5), 1.2),
        "tanh_quadrature": chain(nk.Tanh(), 1.3),
        "linear": chain(None, 1.0),
    }


def _nngp_reference(
    net: nk.Sequential, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """NNGP log marginal likelihood, predictive mean and variance, from ``net.kernel``."""
    k = net.kernel(x, get="nngp")
    cov = k.nngp + NOISE * torch.eye(x.shape[0], dtype=x.dtype)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(x.shape[0], dtype=x.dtype), cov)
    log_marginal = float(mvn.log_prob(y.T).sum())
    post = nk.predict.gp_inference(k, y, diag_reg=NOISE, diag_reg_absolute=True)
    g = post(
        get="nngp",
        k_test_train=net.kernel(xt, x, get="nngp"),
        k_test_test=net.kernel(xt, get="nngp"),
    )
    assert g.cov is not None
    return log_marginal, g.mean, torch.diagonal(g.cov)


@pytest.mark.parametrize("name", list(_nets()))
def test_large_nu_is_the_nngp(name: str, x_test: torch.Tensor) -> None:
    net = _nets()[name]
    x, y = regression(n=9, d=10) if name == "linear" else regression()
    xt = x_test if name != "linear" else torch.randn(5, 10, dtype=torch.float64)
    ref_obj, ref_mean, ref_var = _nngp_reference(net, x, y, xt)
    dkm = nk.dkm.DKM(net, nu=1e8, noise_var=NOISE).fit(x, y, steps=3, optimizer="lbfgs")
    assert dkm.history[0] == pytest.approx(ref_obj, rel=1e-12)
    assert float(dkm.objective().detach()) == pytest.approx(ref_obj, rel=1e-6)
    pred = dkm.predict(xt)
    scale = ref_mean.abs().max()
    torch.testing.assert_close(pred.mean, ref_mean, rtol=1e-6, atol=1e-6 * float(scale))
    torch.testing.assert_close(pred.variance, ref_var, rtol=1e-6, atol=1e-9)


def test_infinite_nu_pins_the_grams_at_the_nngp(data, x_test) -> None:
    x, y = data
    ref_obj, ref_mean, _ = _nngp_reference(relu_net(), x, y, x_test)
    dkm = nk.dkm.DKM(relu_net(), nu=math.inf, noise_var=NOISE).fit(x, y, steps=5)
    assert list(dkm.parameters()) == []
    assert float(dkm.objective().detach()) == pytest.approx(ref_obj, rel=1e-12)
    torch.testing.assert_close(dkm.predict(x_test).mean, ref_mean, rtol=1e-10, atol=1e-12)


def test_one_nu_per_layer_and_a_pinned_layer(data) -> None:
    x, y = data
    mixed = nk.dkm.DKM(relu_net(), nu=[1.0, math.inf], noise_var=NOISE).initialize(x, y)
    assert len(mixed.kl_terms()) == 1 and len(mixed.grams()) == 2
    mixed.fit(x, y, steps=10, optimizer="lbfgs")
    grams = mixed.grams()
    prior = mixed.architecture.hidden[1].full(grams[0])
    torch.testing.assert_close(grams[1], prior)  # the pinned layer follows its prior


@pytest.mark.parametrize("nu", [0.3, 10.0])
def test_objective_rises_from_the_nngp_and_never_decreases(data, nu: float) -> None:
    x, y = data
    nngp = nk.dkm.DKM(relu_net(), nu=math.inf, noise_var=NOISE).initialize(x, y)
    dkm = nk.dkm.DKM(relu_net(), nu=nu, noise_var=NOISE).fit(x, y, steps=15, optimizer="lbfgs")
    history = torch.tensor(dkm.history)
    assert history[0] == pytest.approx(float(nngp.objective().detach()), rel=1e-10)
    assert bool((history[1:] >= history[:-1] - 1e-9 * history.abs().max()).all())
    assert history[-1] > history[0] + 1e-3
    kls = dkm.kl_terms()
    assert all(kl > 0 for kl in kls)  # the Grams left their priors


def test_adam_also_improves_on_the_nngp(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE).fit(x, y, steps=30, lr=3e-2)
    assert dkm.history[-1] > dkm.history[0]


def _directional_check(dkm: nk.dkm.DKM, seed: int = 0) -> None:
    params = [p for p in dkm.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    directions = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    dkm.zero_grad()
    dkm.objective().backward()
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, directions, strict=True))
    eps = 1e-5
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, d in zip(params, directions, strict=True):
                p.add_(sign * eps * d)
            values.append(float(dkm.objective().detach()))
            for p, d in zip(params, directions, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in params)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"nu": 2.0},
        {"nu": [0.5, 3.0], "learn_noise": True},
        {"nu": 2.0, "likelihood": "categorical", "mc_samples": 4},
    ],
    ids=["gaussian", "learned_noise", "categorical"],
)
def test_gradients_agree_with_finite_differences(data, options: dict) -> None:
    x, y = data
    net = relu_net(outputs=3)
    if options.get("likelihood") == "categorical":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    dkm = nk.dkm.DKM(net, noise_var=NOISE, **options).fit(x, y, steps=4, optimizer="lbfgs")
    _directional_check(dkm)


def test_every_gram_stays_positive_definite(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=0.05, noise_var=0.01).fit(x, y, steps=25, optimizer="lbfgs")
    for g in dkm.grams():
        torch.testing.assert_close(g, g.T, rtol=0, atol=0)
        assert float(torch.linalg.eigvalsh(g).min()) > 0
    with torch.no_grad():  # from a far-away point of parameter space, too
        for layer in dkm.gram_layers.values():
            layer.raw.add_(3.0 * torch.randn(layer.raw.shape, dtype=layer.raw.dtype))
    for layer in dkm.gram_layers.values():
        v = layer.factor().detach()
        assert bool((torch.diagonal(v) > 0).all()) and bool((torch.triu(v, 1) == 0).all())
        torch.testing.assert_close(layer.gram().detach(), v @ v.T / layer.size)
    assert math.isfinite(float(dkm.objective().detach()))


def test_linear_kernel_dkm_has_one_optimum() -> None:
    x, y = regression(n=8, d=10, seed=3)
    net = nk.Sequential(nk.Dense(4), nk.Dense(4, b_std=0.5), nk.Dense(4), nk.Dense(1))
    a = nk.dkm.DKM(net, nu=1.0, noise_var=NOISE)
    a.fit(x, y, steps=150, optimizer="lbfgs", ftol=0.0)
    b = nk.dkm.DKM(net, nu=1.0, noise_var=NOISE).initialize(x, y)
    with torch.no_grad():
        for layer in b.gram_layers.values():
            layer.raw.add_(0.5 * torch.randn(layer.raw.shape, dtype=layer.raw.dtype))
    start = float(b.objective().detach())
    b.fit(x, y, steps=150, optimizer="lbfgs", warm_start=True, ftol=0.0)
    assert start < a.history[-1] - 1e-3  # b started elsewhere
    assert b.history[-1] == pytest.approx(a.history[-1], rel=1e-8)
    for ga, gb in zip(a.grams(), b.grams(), strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


def test_learned_noise_is_bounded_and_collapses_on_linear_data() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.05 * torch.randn(
        20, generator=gen, dtype=torch.float64
    )
    net = nk.Sequential(nk.Dense(8, b_std=0.1), nk.ReLU(), nk.Dense(8, w_std=S2, b_std=0.1))
    net = nk.Sequential(net, nk.ReLU(), nk.Dense(1, w_std=S2, b_std=0.1))
    bound = 1e-3
    dkm = nk.dkm.DKM(net, nu=0.1, noise_var=0.5, learn_noise=True, min_noise_var=bound)
    dkm.fit(x, y, steps=200, optimizer="lbfgs")
    assert isinstance(dkm.likelihood, nk.dkm.Gaussian)
    s2 = float(dkm.likelihood.noise_var().detach())
    assert bound <= s2 < 2 * bound  # collapsed onto its lower bound
    assert dkm.history[-1] > dkm.history[0]


def test_float32_inputs_give_float32_results(data, x_test) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE)
    dkm.fit(x.float(), y.float(), steps=5, optimizer="lbfgs")
    pred = dkm.predict(x_test.float())
    assert pred.mean.dtype == torch.float32 and pred.variance.dtype == torch.float32
    ref = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE).fit(x, y, steps=5, optimizer="lbfgs")
    torch.testing.assert_close(pred.mean.double(), ref.predict(x_test).mean, rtol=0, atol=2e-2)


def test_vector_targets_give_vector_means(data, x_test) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE).fit(x, y[:, 0], steps=3)
    pred = dkm.predict(x_test)
    assert pred.mean.shape == (x_test.shape[0],) and pred.variance.shape == (x_test.shape[0],)
    assert bool((pred.variance >= 0).all())


def test_predictions_at_the_training_points_fit_the_targets(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=0.3, noise_var=0.01).fit(x, y, steps=30, optimizer="lbfgs")
    nngp = nk.dkm.DKM(relu_net(), nu=math.inf, noise_var=0.01).initialize(x, y)
    err = (dkm.predict(x).mean - y).square().mean()
    assert float(err) < float((nngp.predict(x).mean - y).square().mean())


def test_progress_callback_sees_every_step(data) -> None:
    x, y = data
    seen: list[tuple[int, int]] = []
    nk.dkm.DKM(relu_net(), nu=1.0).fit(
        x, y, steps=4, progress=lambda step, steps, value: seen.append((step, steps))
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("nu", [0.0, -1.0, math.nan, [1.0, -2.0], "big", True])
def test_bad_nu_is_refused(nu: object) -> None:
    with pytest.raises(nk.HyperparameterError, match="nu must be positive"):
        nk.dkm.DKM(relu_net(), nu=nu)  # type: ignore[arg-type]


def test_one_nu_per_layer_must_match_the_layers() -> None:
    with pytest.raises(nk.HyperparameterError, match="3 values for 2 learned Gram"):
        nk.dkm.DKM(relu_net(), nu=[1.0, 2.0, 3.0])


def test_bad_inducing_points_are_refused(data) -> None:
    x, y = data
    with pytest.raises(nk.ShapeError, match=r"inducing inputs of shape \(4, 3\).*5 features"):
        nk.dkm.DKM(relu_net(), inducing=torch.zeros(4, 3, dtype=x.dtype)).initialize(x, y)
    with pytest.raises(nk.HyperparameterError, match="at most 24 inducing points"):
        nk.dkm.DKM(relu_net(), inducing=torch.zeros(30, 5, dtype=x.dtype)).initialize(x, y)
    with pytest.raises(nk.HyperparameterError, match="at most 24 inducing points"):
        nk.dkm.DKM(relu_net(), inducing=25).initialize(x, y)
    with pytest.raises(nk.HyperparameterError, match="inducing=0"):
        nk.dkm.DKM(relu_net(), inducing=0)


def test_bad_fit_options_and_calls_are_refused(data, x_test) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net())
    with pytest.raises(nk.HyperparameterError, match=r"fit.*first"):
        dkm.predict(x_test)
    with pytest.raises(nk.HyperparameterError, match="ftol=-1"):
        dkm.fit(x, y, optimizer="lbfgs", ftol=-1.0)
    with pytest.raises(nk.HyperparameterError, match="optimizer='sgd'"):
        dkm.fit(x, y, optimizer="sgd")
    with pytest.raises(nk.HyperparameterError, match="minibatch for the full DKM"):
        dkm.fit(x, y, batch_size=4)
    with pytest.raises(nk.HyperparameterError, match="L-BFGS needs the full-batch"):
        nk.dkm.DKM(relu_net(), inducing=5).fit(x, y, optimizer="lbfgs", batch_size=4)
    with pytest.raises(nk.ShapeError, match="x_test has 3 features"):
        dkm.fit(x, y, steps=0).predict(x_test[:, :3])
    with pytest.raises(nk.ShapeError, match="flat inputs"):
        dkm.predict(x_test[:, :, None])
    with pytest.raises(nk.HyperparameterError, match="predict_proba"):
        dkm.predict_proba(x_test)


def test_lbfgs_stops_once_a_step_gains_nothing() -> None:
    x, y = regression(n=8, d=10, seed=3)
    net = nk.Sequential(nk.Dense(4), nk.Dense(4, b_std=0.5), nk.Dense(4), nk.Dense(1))
    full = nk.dkm.DKM(net, nu=1.0, noise_var=NOISE).fit(
        x, y, steps=150, optimizer="lbfgs", ftol=0.0
    )
    early = nk.dkm.DKM(net, nu=1.0, noise_var=NOISE)
    early.fit(x, y, steps=150, optimizer="lbfgs", ftol=1e-6)
    assert len(early.history) < len(full.history)
    assert early.history[-1] == pytest.approx(full.history[-1], rel=1e-4)
    assert all(b >= a - 1e-9 * abs(a) for a, b in itertools.pairwise(early.history))
