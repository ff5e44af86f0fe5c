"""Empirical kernels of any nn.Module (``neural_kernels.empirical.ntk``).

Every strategy of ``nk.empirical_ntk`` is checked against a naive reference
(``tests/_support/empirical.py``: a loop over examples and outputs with
``torch.autograd.grad``), in float64 to 1e-10, for an MLP, a CNN, a residual block with
LayerNorm, a model with several outputs, convolutions with stride/dilation/padding modes,
shared weights, sequence inputs and our own finite twins (whose biases are scaled inside
the module).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

import neural_kernels as nk
from neural_kernels import empirical

from .._support.empirical import F64, naive_ntk, rel_err, traced

STRATEGIES = ("jacobian", "ntvp", "structured", "auto")


TRACES = ("mean", "sum", "full")


class ResBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(torch.tanh(h + self.fc2(torch.relu(self.fc1(self.norm(h))))))


class Shared(nn.Module):
    """One Linear used twice (weight sharing), plus a parameter used elementwise."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 4))
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.fc(torch.tanh(self.fc(x)))) * self.gain)


class Sequence(nn.Module):
    """A Linear on (n, L, d) inputs (weights seen at several positions) and Conv1d/Conv3d."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.conv = nn.Conv1d(4, 3, 3, dilation=2, padding="same")
        self.conv3 = nn.Conv3d(1, 2, (2, 1, 2), stride=(1, 2, 1), padding=(1, 0, 0))
        self.head = nn.Linear(3 * 5 + 2 * 6 * 1 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 5, 3)
        h = torch.relu(self.fc(x))  # (n, 5, 4)
        c = torch.tanh(self.conv(h.transpose(1, 2)))  # (n, 3, 5)
        v = torch.relu(self.conv3(x[:, None, :, :2, None].expand(-1, 1, 5, 2, 3)[..., :3]))
        return self.head(torch.cat([c.flatten(1), v.flatten(1)], dim=1))


class AddedBiases(nn.Module):
    """Biases added by hand: scaled, reshaped for channels, a sliced positional embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))
        self.b = nn.Parameter(torch.randn(4))
        self.conv = nn.Conv1d(4, 2, 2, bias=False)
        self.cb = nn.Parameter(torch.randn(2))
        self.pos = nn.Parameter(torch.randn(8, 4))
        self.head = nn.Linear(2 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 5, 3)
        h = torch.tanh(F.linear(x, self.w) * 0.7 + 0.3 * self.b)  # (n, 5, 4)
        h = h + self.pos[: h.shape[1]]
        c = self.conv(h.transpose(1, 2))  # (n, 2, 4)
        c = torch.relu(c + self.cb.reshape(1, -1, 1) * 2.0)
        return self.head(c.flatten(1))


class CutBiases(nn.Module):
    """A bias through .detach() (no gradient), and one made from two parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4, bias=False)
        self.b = nn.Parameter(torch.randn(4))
        self.s = nn.Parameter(torch.randn(4))
        self.t = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x) + self.b.detach() + self.b * 0.5)
        return h + self.s * self.t


def _twin() -> nn.Module:
    net = nk.Sequential(
        nk.Conv(3, (3, 3), b_std=0.3, padding="same"),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(6, w_std=1.3, b_std=0.2),
        nk.Erf(),
        nk.Dense(2, b_std=0.1),
    )
    return net.module((2, 5, 5), generator=torch.Generator().manual_seed(1), dtype=F64)


MODELS = {
    "mlp": (
        lambda: nn.Sequential(
            nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 1)
        ),
        (5,),
    ),
    "cnn": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(3, 4, 2, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 2),
        ),
        (2, 6, 6),
    ),
    "resnet_layernorm": (ResBlock, (5,)),
    "several_outputs": (lambda: nn.Sequential(nn.Linear(5, 9), nn.GELU(), nn.Linear(9, 4)), (5,)),
    "shared_weights": (Shared, (4,)),
    "sequence_conv1d_conv3d": (Sequence, (5, 3)),
    "twin": (_twin, (2, 5, 5)),
    "added_biases": (AddedBiases, (5, 3)),
    "cut_biases": (CutBiases, (3,)),
}


@pytest.fixture(scope="module")
def cases():
    """Each model with inputs and its naive NTKs (x1, x1) and (x1, x2), computed once."""
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, (make, shape) in MODELS.items():
        torch.manual_seed(3)
        model = make().to(F64)
        x1 = torch.randn(5, *shape, generator=gen, dtype=F64)
        x2 = torch.randn(3, *shape, generator=gen, dtype=F64)
        out[name] = (model, x1, x2, naive_ntk(model, x1), naive_ntk(model, x1, x2))
    return out


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_naive_jacobians(cases, name, strategy):
    model, x1, x2, ref11, ref12 = cases[name]
    for trace in TRACES:
        k11 = nk.empirical_ntk(model, x1, strategy=strategy, trace_outputs=trace)
        k12 = nk.empirical_ntk(model, x1, x2, strategy=strategy, trace_outputs=trace)
        assert k11.dtype == F64 and k11.shape == traced(ref11, trace).shape
        assert rel_err(k11, traced(ref11, trace)) < 1e-10, (trace, "x2=None")
        assert rel_err(k12, traced(ref12, trace)) < 1e-10, (trace, "x2")
        if trace == "full":
            assert torch.equal(k11, k11.permute(1, 0, 3, 2))
        else:
            assert torch.equal(k11, k11.T)


def test_structured_handles_every_parameter_of_known_layers(cases):
    """The structured plan computes weights and biases without per-example Jacobians."""
    from neural_kernels.empirical._model import prepare, probe_batch
    from neural_kernels.empirical._structured import make_plan

    for name in ("mlp", "cnn", "resnet_layernorm", "twin", "added_biases"):
        model, x1, *_ = cases[name]
        prep = prepare(model, None, None, "test")
        plan = make_plan(prep, probe_batch(x1, None))
        assert plan.fallback == [] and plan.independent, name
    prep = prepare(cases["shared_weights"][0], None, None, "test")
    plan = make_plan(prep, cases["shared_weights"][1][:2])
    assert plan.fallback == ["gain"] and plan.positions["fc.weight"] == 2
    # Biases added by hand are found whatever the module (our twins are not special).
    prep = prepare(cases["added_biases"][0], None, None, "test")
    plan = make_plan(prep, cases["added_biases"][1][:2])
    assert set(plan.added) == {"b", "cb", "pos"}, plan
    # A bias cut from its graph, or made from two parameters, is left to Jacobians.
    prep = prepare(cases["cut_biases"][0], None, None, "test")
    plan = make_plan(prep, cases["cut_biases"][1][:2])
    assert sorted(plan.fallback) == ["b", "s", "t"] and plan.weights == {"fc.weight": "linear"}


@pytest.mark.parametrize("name", ("cnn", "mlp"))
@pytest.mark.parametrize("strategy", ("jacobian", "ntvp", "structured"))
def test_blocks_under_a_small_memory_budget(cases, strategy, name):
    """Several blocks of examples (cnn: features kept; mlp: column blocks recomputed)."""
    model, x1, x2, *_ = cases[name]
    x = torch.cat([x1, x2, x1[:3] + 0.1])  # 11 examples
    budget = 1_000_000 if name == "cnn" else 5_000
    for trace in ("sum", "full"):
        whole = nk.empirical_ntk(model, x, strategy=strategy, trace_outputs=trace)
        small = nk.empirical_ntk(
            model, x, strategy=strategy, trace_outputs=trace, memory_budget=budget
        )
        cross = nk.empirical_ntk(
            model, x, x2, strategy=strategy, trace_outputs=trace, memory_budget=budget
        )
        assert rel_err(small, whole) < 1e-12
        ref = nk.empirical_ntk(model, x, x2, strategy="jacobian", trace_outputs=trace)
        assert rel_err(cross, ref) < 1e-10


@pytest.mark.parametrize("budget", (20_000, 8_000))
def test_jacobian_strategy_splits_large_tensors(cases, budget):
    """By outputs (20 kB: one output of every example fits) or by examples (8 kB)."""
    model, x1, x2, ref11, ref12 = cases["several_outputs"]
    for trace in TRACES:
        k11 = nk.empirical_ntk(
            model, x1, strategy="jacobian", trace_outputs=trace, memory_budget=budget
        )
        k12 = nk.empirical_ntk(
            model, x1, x2, strategy="jacobian", trace_outputs=trace, memory_budget=budget
        )
        assert rel_err(k11, traced(ref11, trace)) < 1e-10
        assert rel_err(k12, traced(ref12, trace)) < 1e-10
        assert torch.equal(k11, k11.permute(1, 0, 3, 2) if trace == "full" else k11.T)


def test_float32_close_to_float64(cases):
    model, x1, _, ref11, _ = cases["resnet_layernorm"]
    for strategy in ("jacobian", "ntvp", "structured"):
        k32 = nk.empirical_ntk(model, x1.float(), strategy=strategy, dtype=torch.float32)
        assert k32.dtype == torch.float32
        assert rel_err(k32.double(), traced(ref11, "mean")) < 1e-5
    # a float32 model with float64 inputs computes in the model's dtype
    k = nk.empirical_ntk(model.float(), x1)
    model.double()
    assert k.dtype == torch.float32


def test_x2_none_equals_x2_x1(cases):
    model, x1, *_ = cases["several_outputs"]
    for strategy in ("jacobian", "ntvp", "structured"):
        a = nk.empirical_ntk(model, x1, strategy=strategy, trace_outputs="full")
        b = nk.empirical_ntk(model, x1, x1, strategy=strategy, trace_outputs="full")
        assert rel_err(a, b) < 1e-12


def test_params_override_and_integer_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Flatten(), nn.Linear(12, 2)).double()
    tokens = torch.tensor([[1, 2, 3], [3, 4, 6], [0, 0, 5]])
    ref = naive_ntk(model, tokens)
    for strategy in ("jacobian", "ntvp", "structured"):
        assert (
            rel_err(nk.empirical_ntk(model, tokens, strategy=strategy), traced(ref, "mean")) < 1e-10
        )
    doubled = {"2.weight": 2 * model[2].weight.detach()}
    k = nk.empirical_ntk(model, tokens, params=doubled, strategy="structured")
    with torch.no_grad():
        model[2].weight.mul_(2)
    assert rel_err(k, traced(naive_ntk(model, tokens), "mean")) < 1e-10


def test_batch_mixing_model_uses_per_example_jacobians():
    class Mixing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            h = self.fc(x)
            return h + h.mean(0, keepdim=True)

    model = Mixing().double()
    x = torch.randn(4, 3, dtype=F64)
    with pytest.raises(nk.ModelError, match="jacobian"):
        nk.empirical_ntk(model, x, strategy="structured")
    assert empirical.ntk_strategy(model, x) == "jacobian"
    auto = nk.empirical_ntk(model, x)
    assert rel_err(auto, traced(naive_ntk(model, x), "mean")) < 1e-10  # one example at a time


def test_default_is_the_per_output_kernel_everywhere(cases):
    """One convention: the mean over outputs, by default, in every function that reduces them."""
    model, x1, x2, ref11, ref12 = cases["several_outputs"]
    default = nk.empirical_ntk(model, x1, x2)
    assert rel_err(default, traced(ref12, "mean")) < 1e-10
    # the older spellings keep their meaning: True is the sum, False the full blocks
    for old, new in ((True, "sum"), (False, "full")):
        a = nk.empirical_ntk(model, x1, x2, trace_outputs=old)
        assert torch.equal(a, nk.empirical_ntk(model, x1, x2, trace_outputs=new))
    assert rel_err(nk.empirical_ntk(model, x1, x2, trace_outputs=True), 4 * default) < 1e-12
    tracker = nk.KernelTracker(model, x1)
    assert rel_err(tracker.initial_kernel, traced(ref11, "mean")) < 1e-10


def test_default_empirical_ntk_drives_the_predictor_like_training():
    """The library's own empirical NTK, fed to its own predictor, tracks the trained network.

    Ten outputs: with their sum (the former default) the predicted training runs ten times
    too fast (relative gap 1.15 here), with the per-output kernel the gap is 0.06.
    """
    gen = torch.Generator().manual_seed(0)
    n, m, d, k = 16, 8, 4, 10
    x = torch.randn(n + m, d, generator=gen, dtype=F64)
    y = torch.sin(x[:n] @ torch.randn(d, k, generator=gen, dtype=F64))
    net = nk.Sequential(
        nk.Dense(512, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(k, w_std=1.5, b_std=0.1)
    )
    model = net.module((d,), generator=gen, dtype=F64)
    x_train, x_test = x[:n], x[n:]
    with torch.no_grad():
        f0, f0_test = model(x_train), model(x_test)
    k_dd, k_td = nk.empirical_ntk(model, x_train), nk.empirical_ntk(model, x_test, x_train)
    summed = [nk.empirical_ntk(model, a, b, trace_outputs="sum") for a, b in
              ((x_train, None), (x_test, x_train))]  # fmt: skip
    lr, steps = 0.05 * nk.predict.max_learning_rate(k_dd, y.numel()), 10
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(steps):  # full-batch gradient descent on 1/(2N) sum (f - y)^2
        grads = torch.autograd.grad(0.5 * ((model(x_train) - y) ** 2).mean(), params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
    with torch.no_grad():
        trained = model(x_test)
    moved = (trained - f0_test).pow(2).mean().sqrt()

    def gap(kdd: torch.Tensor, ktd: torch.Tensor) -> float:
        predict_fn = nk.predict.gradient_descent_mse(kdd, y, learning_rate=lr)
        pred = predict_fn(steps, k_test_train=ktd, fx_train_0=f0, fx_test_0=f0_test).mean
        return float((pred - trained).pow(2).mean().sqrt() / moved)

    assert gap(k_dd, k_td) < 0.1
    assert gap(*summed) > 0.5


def test_empirical_nngp(cases):
    model, x1, x2, *_ = cases["several_outputs"]
    with torch.no_grad():
        f1, f2 = model(x1), model(x2)
    full = nk.empirical_nngp(model, x1, x2, trace_outputs="full")
    assert torch.allclose(full, torch.einsum("io,jp->ijop", f1, f2), rtol=1e-12, atol=0)
    summed = nk.empirical_nngp(model, x1, x2, trace_outputs="sum")
    assert torch.allclose(summed, f1 @ f2.T, rtol=1e-12, atol=0)
    mean = nk.empirical_nngp(model, x1)  # the default: the mean over the 4 outputs
    assert torch.allclose(mean, f1 @ f1.T / 4, rtol=1e-12, atol=0) and torch.equal(mean, mean.T)
    # the older spellings keep their meaning: True is the sum, False the full blocks
    assert torch.equal(nk.empirical_nngp(model, x1, x2, trace_outputs=True), summed)
    assert torch.equal(nk.empirical_nngp(model, x1, x2, trace_outputs=False), full)
    # no parameters needed for the output covariance
    assert nk.empirical_nngp(nn.Tanh(), x1).shape == (5, 5)


def test_twins_converge_to_the_analytic_ntk():
    net_of = lambda w: nk.Sequential(  # noqa: E731
        nk.Dense(w, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(w, w_std=1.5, b_std=0.1), nk.ReLU(),
        nk.Dense(3, b_std=0.1),
    )  # fmt: skip
    x = torch.randn(6, 4, dtype=F64)
    exact = net_of(1).kernel(x, get="ntk").ntk
    errors = []
    for width in (8, 64, 512):
        gen = torch.Generator().manual_seed(width)
        ks = [
            nk.empirical_ntk(net_of(width).module((4,), generator=gen, dtype=F64), x)
            for _ in range(6)
        ]
        errors.append(nk.kernel_distance(exact, torch.stack(ks).mean(0)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1)).double()


def test_bad_inputs():
    model = _mlp()
    x = torch.randn(4, 3, dtype=F64)
    with pytest.raises(nk.ModelError, match="no trainable parameters"):
        nk.empirical_ntk(nn.Tanh(), x)
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(nk.ModelError, match="no trainable parameters"):
        nk.empirical_ntk(frozen, x)
    with pytest.raises(nk.ShapeError, match="feature shape"):
        nk.empirical_ntk(model, x, torch.randn(4, 2, dtype=F64))
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(nk.NonFiniteError):
        nk.empirical_ntk(model, bad)
    with pytest.raises(nk.NonFiniteError):
        nk.empirical_nngp(model, x, bad)
    with pytest.raises(nk.InputTypeError):
        nk.empirical_ntk(lambda t: t, x)
    with pytest.raises(nk.HyperparameterError, match="strategy"):
        nk.empirical_ntk(model, x, strategy="fastest")
    with pytest.raises(nk.HyperparameterError, match="trace_outputs"):
        nk.empirical_ntk(model, x, trace_outputs="max")
    with pytest.raises(nk.HyperparameterError, match="memory_budget"):
        nk.empirical_ntk(model, x, memory_budget=0)
    with pytest.raises(nk.InputTypeError, match="not a parameter"):
        nk.empirical_ntk(model, x, params={"nope": torch.zeros(1)})
    with pytest.raises(nk.ShapeError):
        nk.empirical_ntk(model, x, params={"0.weight": torch.zeros(2, 2)})
    with pytest.raises(nk.ShapeError):
        nk.empirical_ntk(model, torch.zeros(0, 3))
    with pytest.raises(nk.HyperparameterError):
        nk.taylor_expand(model, -1)


def test_models_whose_examples_are_not_independent_are_refused():
    x = torch.randn(4, 3, dtype=F64)
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    for strategy in STRATEGIES:
        with pytest.raises(nk.ModelError, match=r"model\.eval\(\)"):
            nk.empirical_ntk(bn, x, strategy=strategy)
    bn.eval()
    ref = traced(naive_ntk(bn, x), "mean")
    for strategy in STRATEGIES:
        assert rel_err(nk.empirical_ntk(bn, x, strategy=strategy), ref) < 1e-10
    with pytest.raises(nk.ModelError, match=r"dropout|random"):
        nk.empirical_ntk(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)).double(), x)

    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, t):
            self.calls += 1
            return self.fc(t)

    with pytest.raises(nk.ModelError, match="buffer"):
        nk.empirical_ntk(Counter().double(), x)

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, t):
            return self.fc(t) + torch.randn(t.shape[0], 1, dtype=t.dtype)

    with pytest.raises(nk.ModelError, match="random"):
        nk.empirical_ntk(Noisy().double(), x)

    class Scalar(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, t):
            return self.fc(t).sum()

    with pytest.raises(nk.ModelError, match="batch"):
        nk.empirical_ntk(Scalar().double(), x)


def test_nan_outputs_are_not_returned_silently():
    class Log(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, t):
            return torch.sqrt(self.fc(t) - 1e3)  # NaN outputs and gradients

    x = torch.randn(3, 3, dtype=F64)
    with pytest.raises(nk.NonFiniteError):
        nk.empirical_ntk(Log().double(), x)
    with pytest.raises(nk.NonFiniteError):
        nk.empirical_nngp(Log().double(), x)


def test_benchmark_tiny_case(tmp_path):
    from benchmarks import bench_empirical

    loop = bench_empirical.run_loop(4, tmp_path, width=8, d=6)
    assert set(loop["loop_seconds"]) == {"traced", "full"}
    for strategy in ("structured", "auto"):
        record = bench_empirical.run_case(
            strategy, "full", 4, tmp_path / "k.pt", width=8, d=6, repeats=1
        )
        json.dumps(record, allow_nan=False)
        assert record["chosen"] == "structured" and record["nt_seconds"] is None
        kernel, reference = torch.load(tmp_path / "k.pt"), torch.load(tmp_path / "loop_full.pt")
        assert rel_err(kernel, reference) < 1e-5
