"""Bad input gets a clear error: a NeuralKernelsError subclass naming the layer and the fix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import neural_kernels as nk

X = torch.randn(4, 3, dtype=torch.float64)
MLP = nk.Sequential(nk.Dense(8), nk.ReLU(), nk.Dense(1))


def _nan_input() -> None:
    x = X.clone()
    x[0, 0] = float("nan")
    MLP.kernel(x)


def _inf_x2() -> None:
    x = X.clone()
    x[1, 2] = float("inf")
    MLP.kernel(X, x)


CASES: dict[str, tuple[Callable[[], object], type[Exception], tuple[str, ...]]] = {
    "1-d input": (lambda: MLP.kernel(torch.randn(5)), nk.ShapeError, ("Sequential", "x[None]")),
    "empty batch": (lambda: MLP.kernel(torch.randn(0, 3)), nk.ShapeError, ("Sequential",)),
    "nan input": (_nan_input, nk.NonFiniteError, ("x1", "NaN")),
    "inf in x2": (_inf_x2, nk.NonFiniteError, ("x2", "impute")),
    "feature mismatch": (
        lambda: MLP.kernel(X, torch.randn(2, 4)),
        nk.ShapeError,
        ("(3,)", "(4,)", "same shape"),
    ),
    "string input": (lambda: MLP.kernel("abc"), nk.InputTypeError, ("str", "torch.Tensor")),
    "complex input": (
        lambda: MLP.kernel(torch.randn(3, 2, dtype=torch.complex64)),
        nk.InputTypeError,
        ("complex", "real"),
    ),
    "negative w_std": (lambda: nk.Dense(4, w_std=-1.0), nk.HyperparameterError, ("Dense", "w_std")),
    "nan b_std": (lambda: nk.Dense(4, b_std=float("nan")), nk.HyperparameterError, ("b_std",)),
    "zero width": (lambda: nk.Dense(0), nk.HyperparameterError, ("out_features", ">= 1")),
    "string width": (lambda: nk.Dense("8"), nk.HyperparameterError, ("out_features",)),
    "unknown parametrization": (
        lambda: nk.Dense(4, parametrization="ntk2"),
        nk.ParametrizationError,
        ("Dense", "'standard'"),
    ),
    "activation after activation": (
        lambda: nk.Sequential(nk.Dense(4), nk.ReLU(), nk.ReLU()).kernel(X),
        nk.LayerCompatibilityError,
        ("ReLU()", "Put a Dense"),
    ),
    "activation on raw inputs": (
        lambda: nk.Sequential(nk.ReLU(), nk.Dense(1)).out_shape((3,)),
        nk.LayerCompatibilityError,
        ("ReLU()", "not Gaussian"),
    ),
    "fan-in width mismatch": (
        lambda: nk.Sequential(
            nk.FanOut(2), nk.Parallel(nk.Dense(4), nk.Dense(5)), nk.FanInSum()
        ).kernel(X),
        nk.ShapeError,
        ("FanInSum", "(4,)", "(5,)"),
    ),
    "parallel branch count": (
        lambda: nk.Sequential(nk.FanOut(3), nk.Parallel(nk.Dense(4), nk.Dense(4))).kernel(X),
        nk.LayerCompatibilityError,
        ("Parallel", "FanOut(2)"),
    ),
    "network ends in branches": (
        lambda: nk.Sequential(nk.FanOut(2)).kernel(X),
        nk.LayerCompatibilityError,
        ("branches", "FanInSum"),
    ),
    "dense after fan-out": (
        lambda: nk.Sequential(nk.FanOut(2), nk.Dense(3)).kernel(X),
        nk.LayerCompatibilityError,
        ("Dense", "Parallel"),
    ),
    "fan-in without branches": (
        lambda: nk.Sequential(nk.Dense(3), nk.FanInSum()).kernel(X),
        nk.LayerCompatibilityError,
        ("FanInSum", "FanOut"),
    ),
    "fan-out of zero": (lambda: nk.FanOut(0), nk.HyperparameterError, ("FanOut", "num")),
    "concat along batch": (
        lambda: nk.Sequential(
            nk.FanOut(2), nk.Parallel(nk.Dense(2), nk.Dense(2)), nk.FanInConcat(axis=0)
        ).kernel(X),
        nk.LayerCompatibilityError,
        ("FanInConcat", "axis=-1"),
    ),
    "not a layer": (
        lambda: nk.Sequential(nk.Dense(2), torch.nn.ReLU()),
        nk.LayerCompatibilityError,
        ("Sequential", "ReLU", "nk.Dense"),
    ),
    "unknown get": (lambda: MLP.kernel(X, get="ntkgp"), nk.HyperparameterError, ("get",)),
    "bad block size": (
        lambda: MLP.kernel(X, block_size=0),
        nk.HyperparameterError,
        ("block_size", "positive"),
    ),
    "bad memory budget": (
        lambda: MLP.kernel(X, memory_budget=-5),
        nk.HyperparameterError,
        ("memory_budget",),
    ),
    "negative layer-norm eps": (lambda: nk.LayerNorm(eps=-1.0), nk.HyperparameterError, ("eps",)),
    "module width zero": (
        lambda: MLP.module((3,), width=0),
        nk.HyperparameterError,
        ("width", ">= 1"),
    ),
    "module unknown parametrization": (
        lambda: MLP.module((3,), parametrization="bogus"),
        nk.ParametrizationError,
        ("bogus", "'ntk'"),
    ),
    "module bad generator": (
        lambda: MLP.module((3,), generator=0),
        nk.InputTypeError,
        ("generator", "torch.Generator"),
    ),
    "module integer dtype": (
        lambda: MLP.module((3,), dtype=torch.int64),
        nk.InputTypeError,
        ("dtype", "float64"),
    ),
    "monte carlo bad generator": (
        lambda: nk.monte_carlo_kernel(MLP, X, n_samples=2, width=4, generator=0),
        nk.InputTypeError,
        ("monte_carlo_kernel", "generator has type int", "torch.Generator"),
    ),
    "monte carlo integer dtype": (
        lambda: nk.monte_carlo_kernel(MLP, X, n_samples=2, width=4, dtype=torch.int64),
        nk.InputTypeError,
        ("monte_carlo_kernel", "dtype=torch.int64", "float64"),
    ),
    "empirical ntk integer dtype": (
        lambda: nk.empirical_ntk(torch.nn.Linear(3, 1), X, dtype=torch.int64),
        nk.InputTypeError,
        ("empirical_ntk", "dtype=torch.int64", "float64"),
    ),
    "w_std tensor not scalar": (
        lambda: nk.Dense(3, w_std=torch.ones(2)),
        nk.HyperparameterError,
        ("w_std", "scalar"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_clear_error(case: str) -> None:
    call, kind, fragments = CASES[case]
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, nk.NeuralKernelsError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    # one sentence for what went wrong, one for what to do
    assert ": " in message and ". " in message, message


def test_errors_are_also_builtin_errors() -> None:
    with pytest.raises(ValueError):
        nk.Dense(4, w_std=-1.0)
    with pytest.raises(TypeError):
        MLP.kernel("abc")


def test_numpy_and_integer_inputs_are_accepted() -> None:
    k = MLP.kernel(np.arange(12).reshape(4, 3))
    assert k.nngp.dtype == torch.float64
    assert torch.isfinite(k.ntk).all()


def test_every_error_class_is_exported() -> None:
    import inspect

    from neural_kernels import errors

    classes = [
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, nk.NeuralKernelsError)
    ]
    assert {"SingularKernelError", "SolverError"} <= set(classes)
    for name in classes:
        assert getattr(nk, name) is getattr(errors, name) and name in nk.__all__, name


def test_get_given_a_tensor_is_named_briefly() -> None:
    with pytest.raises(nk.HyperparameterError) as info:
        MLP.kernel(X, get=torch.zeros(50, 50))
    message = str(info.value)
    assert "Tensor of shape (50, 50)" in message and len(message) < 300, message


def test_every_exception_class_in_the_package_is_a_neural_kernels_error() -> None:
    # The CLI's usage and run errors included: one hierarchy, all exported.
    import importlib
    import inspect
    import pkgutil

    found = []
    for info in pkgutil.walk_packages(nk.__path__, "neural_kernels."):
        if info.name.rsplit(".", 1)[-1] in {"gpytorch", "sklearn"}:
            continue  # optional extras, checked by their own tests
        module = importlib.import_module(info.name)
        found += [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, BaseException)
            and obj.__module__ == info.name
        ]
    assert nk.UsageError in found and nk.RunError in found
    for cls in found:
        assert issubclass(cls, nk.NeuralKernelsError), cls
        assert getattr(nk, cls.__name__) is cls, cls


def test_messages_are_built_only_when_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # A valid call never formats the network: its repr is paid for only by an error.
    calls: list[str] = []
    net = nk.Sequential(nk.Conv(4, (3, 3)), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))
    for cls in {type(layer) for layer in (net, *net.layers)}:
        original = cls.__repr__

        def counting(self: object, original: Callable[[object], str] = original) -> str:
            calls.append(type(self).__name__)
            return original(self)

        monkeypatch.setattr(cls, "__repr__", counting)
    img = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    net.kernel(img)
    net.kernel(img, img[:1], get="nngp")
    net.kernel_diag(img)
    model = net.module((3, 5, 5), width=4)
    model(img.float())
    nk.monte_carlo_kernel(net, img, n_samples=2, width=4, get="nngp")
    assert calls == []
    with pytest.raises(nk.ShapeError):
        net.kernel(torch.randn(2, 5, dtype=torch.float64))
    assert calls  # the error names the network
