"""Access to the Neural Tangents reference kernels in ``tests/data/reference``.

``case(name)`` returns the case description and its arrays; ``network(layers)``
builds our network from the reference's layer list (Neural Tangents' names).
The files are part of the repository (see ``tests/data/reference/README.md``): a
missing one is an error that fails the tests, never a skip.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import neural_kernels as nk

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "data" / "reference"

#: Off-diagonal and diagonal tolerances of CONVENTIONS.md.
RTOL_OFF = 1e-9
RTOL_DIAG = 1e-7

_NUMERICAL_FNS = {
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
    "sigmoid": torch.sigmoid,
    "silu": torch.nn.functional.silu,
    "elu": torch.nn.functional.elu,
    "sin": torch.sin,
}


def reference_file(name: str) -> Path:
    """The path of one reference file; a clear error when it is missing."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"reference file {path} is missing: the reference kernels are part of the "
            "repository (tests/data/reference); restore it from version control"
        )
    return path


@cache
def cases() -> dict[str, dict[str, Any]]:
    text = reference_file("cases.json").read_text()
    return {c["name"]: c for c in json.loads(text)}


@cache
def manifest() -> dict[str, Any]:
    return json.loads(reference_file("manifest.json").read_text())["cases"]


def case_names(prefix: str = "", *, predict: bool | None = None) -> list[str]:
    """Names of the reference cases starting with ``prefix`` (only prediction cases
    with ``predict=True``)."""
    return [
        name
        for name, case in cases().items()
        if name.startswith(prefix) and (predict is None or bool(case.get("predict")) == predict)
    ]


def arrays(name: str) -> dict[str, np.ndarray]:
    if name not in cases():
        pytest.fail(f"{name!r} is not a case of {REFERENCE_DIR / 'cases.json'}")
    with np.load(reference_file(f"{name}.npz")) as data:
        return {k: data[k] for k in data.files}


def nonfinite(name: str) -> set[str]:
    """Arrays of the case that the reference itself got non-finite (to be skipped)."""
    entry = manifest().get(name, {})
    return set(entry.get("nonfinite_arrays", []))


def _dense(kw: dict[str, Any]) -> nk.Layer:
    return nk.Dense(
        kw["out_dim"],
        w_std=kw.get("W_std", 1.0),
        b_std=kw.get("b_std", 0.0),
        parametrization=kw.get("parameterization", "ntk"),
    )


def _nhwc_axis_to_nchw(axis: int, ndim: int) -> int:
    """A channels-last tensor axis as the matching channels-first axis (batch stays 0)."""
    axis %= ndim
    if axis == 0:
        return 0
    return 1 if axis == ndim - 1 else axis + 1


def _conv(kw: dict[str, Any]) -> nk.Layer:
    size = tuple(kw["filter_shape"])
    strides = kw.get("strides") or (1,) * len(size)
    return nk.Conv(
        kw["out_chan"],
        size,
        stride=tuple(strides),
        padding=kw.get("padding", "VALID").lower(),
        w_std=kw.get("W_std", 1.0),
        b_std=kw.get("b_std", 0.0),
        parametrization=kw.get("parameterization", "ntk"),
    )


def layer(name: str, kw: dict[str, Any], channels_first: bool = False, ndim: int = 2) -> nk.Layer:
    """Our layer for one ``[name, kwargs]`` entry of a reference case.

    ``channels_first``: the network takes transposed (PyTorch-layout) inputs of rank
    ``ndim`` (batch included), so axis arguments are mapped.
    """
    if name == "Dense":
        return _dense(kw)
    if name == "Conv":
        return _conv(kw)
    if name == "Flatten":
        return nk.Flatten()
    if name == "GlobalAvgPool":
        return nk.GlobalAvgPool()
    if name == "GlobalSumPool":
        return nk.GlobalSumPool()
    if name in ("AvgPool", "SumPool"):
        cls = nk.AvgPool if name == "AvgPool" else nk.SumPool
        strides = kw.get("strides")
        return cls(
            tuple(kw["window_shape"]),
            None if strides is None else tuple(strides),
            padding=kw.get("padding", "VALID").lower(),
            normalize_edges=kw.get("normalize_edges", False),
        )
    if name == "Relu":
        return nk.ReLU()
    if name == "LeakyRelu":
        return nk.LeakyReLU(kw["alpha"])
    if name == "ABRelu":
        return nk.ABReLU(kw["a"], kw["b"])
    if name == "Abs":
        return nk.Abs()
    if name == "Sign":
        return nk.Sign()
    if name == "Identity":
        return nk.Identity()
    if name == "Erf":
        return nk.Erf(kw.get("a", 1.0), kw.get("b", 1.0), kw.get("c", 0.0))
    if name == "Sigmoid_like":
        return nk.Erf(0.5, 1.0 / 2.4020563531719796, 0.5)
    if name == "Gelu":
        return nk.GELU(approximate="tanh" if kw.get("approximate") else "none")
    if name == "Sin":
        return nk.Sin(kw.get("a", 1.0), kw.get("b", 1.0), kw.get("c", 0.0))
    if name == "Cos":
        return nk.Cos(kw.get("a", 1.0), kw.get("b", 1.0), kw.get("c", 0.0))
    if name == "Rbf":
        return nk.RBF(kw.get("gamma", 1.0))
    if name == "Exp":
        return nk.Exp(kw.get("a", 1.0), kw.get("b", 1.0))
    if name == "Gaussian":
        return nk.Gaussian(kw.get("a", 1.0), kw.get("b", -1.0))
    if name == "Monomial":
        return nk.Monomial(kw["degree"])
    if name == "RectifiedMonomial":
        return nk.RectifiedMonomial(kw["degree"])
    if name == "Polynomial":
        return nk.Polynomial(tuple(kw["coef"]))
    if name == "ElementwiseNumerical":
        return nk.Activation(_NUMERICAL_FNS[kw["fn"]], degree=kw["deg"])
    if name == "LayerNorm":
        axes = kw.get("axis", -1)
        axes = [axes] if isinstance(axes, int) else list(axes)
        if channels_first:
            axes = [_nhwc_axis_to_nchw(a, ndim) for a in axes]
        axis = axes[0] if len(axes) == 1 else tuple(sorted(axes))
        return nk.LayerNorm(axis=axis, eps=kw.get("eps", 1e-12))
    if name == "Aggregate":
        if kw.get("implementation", "DENSE").upper() != "DENSE" or kw.get("batch_axis", 0) != 0:
            raise KeyError(f"no mapping for reference layer {name!r} with {kw!r}")
        axes = kw.get("aggregate_axis")
        if axes is not None and channels_first:
            axes = [axes] if isinstance(axes, int) else list(axes)
            axes = tuple(_nhwc_axis_to_nchw(a, ndim) for a in axes)
        elif axes is not None and not isinstance(axes, int):
            axes = tuple(axes)
        return nk.Aggregate(aggregate_axis=axes, channel_axis=1 if channels_first else -1)
    if name == "GlobalSelfAttention":
        return nk.GlobalSelfAttention(
            kw["n_chan_out"],
            kw["n_chan_key"],
            kw["n_chan_val"],
            kw["n_heads"],
            linear_scaling=kw.get("linear_scaling", True),
            w_key_std=kw.get("W_key_std", 1.0),
            w_value_std=kw.get("W_value_std", 1.0),
            w_query_std=kw.get("W_query_std", 1.0),
            w_out_std=kw.get("W_out_std", 1.0),
            b_std=kw.get("b_std"),
            attention_mechanism=kw.get("attention_mechanism", "SOFTMAX").lower(),
            pos_emb_type=kw.get("pos_emb_type", "NONE").lower(),
            pos_emb_p_norm=kw.get("pos_emb_p_norm", 2),
            n_chan_pos_emb=kw.get("n_chan_pos_emb"),
            w_pos_emb_std=kw.get("W_pos_emb_std", 1.0),
            val_pos_emb=kw.get("val_pos_emb", False),
        )
    if name == "Residual":
        return nk.Residual(*[layer(n, k, channels_first, ndim) for n, k in kw["layers"]])
    raise KeyError(f"no mapping for reference layer {name!r}")


def channels_first(layers: list[list[Any]]) -> bool:
    """Networks that start with ``Conv`` take PyTorch-layout (channels-first) inputs."""
    return bool(layers) and layers[0][0] == "Conv"


def network(layers: list[list[Any]], ndim: int = 2) -> nk.Sequential:
    first = channels_first(layers)
    return nk.Sequential(*[layer(name, kw, first, ndim) for name, kw in layers])


def inputs(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x1``, ``x2`` of a case in our layout (channels-first for conv networks)."""
    data = arrays(name)
    x1, x2 = torch.from_numpy(data["x1"]), torch.from_numpy(data["x2"])
    if channels_first(cases()[name]["layers"]):
        x1, x2 = x1.movedim(-1, 1), x2.movedim(-1, 1)
    return x1, x2


def assert_matches(
    ours: torch.Tensor,
    ref: np.ndarray,
    *,
    square: bool,
    what: str,
    rtol_off: float = RTOL_OFF,
    rtol_diag: float = RTOL_DIAG,
) -> None:
    """Compare with the reference: ``rtol_off`` off the diagonal, ``rtol_diag`` on it.

    The tolerance is relative to each entry, with an absolute floor of ``rtol`` times
    the largest entry (kernels cross zero).
    """
    got = ours.detach().double().cpu().numpy()
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    scale = np.abs(ref).max()
    finite = np.isfinite(ref)
    off = np.ones(ref.shape, bool)
    if square:
        off &= ~np.eye(ref.shape[0], dtype=bool)
    for mask, rtol, label in (
        (off & finite, rtol_off, "off-diagonal"),
        (~off & finite, rtol_diag, "diagonal"),
    ):
        if not mask.any():
            continue
        err = np.abs(got - ref)[mask]
        tol = rtol * np.maximum(np.abs(ref[mask]), scale * 1e-3) + 1e-300
        worst = float(np.max(err / tol))
        assert worst <= 1.0, (
            f"{what} {label}: worst error {float(np.max(err)):.3e} is {worst:.2f}x the "
            f"tolerance rtol={rtol}"
        )
    assert np.isfinite(got).all(), f"{what}: our kernel has non-finite entries"


def our_kernels(
    net: nk.Layer,
    x1: torch.Tensor,
    x2: torch.Tensor,
    pattern1: torch.Tensor | None = None,
    pattern2: torch.Tensor | None = None,
) -> dict[str, tuple[torch.Tensor, bool]]:
    """Our values for every array of a reference case: ``key -> (tensor, square)``.

    ``square``: a ``k(x, x)`` matrix, whose diagonal is compared at ``RTOL_DIAG``.
    """
    graph = pattern1 is not None

    def kw(p: Any) -> dict[str, Any]:
        return {"pattern": p} if graph else {}

    k11 = net.kernel(x1, **kw(pattern1))
    k12 = net.kernel(x1, x2, **kw((pattern1, pattern2)))
    k22 = net.kernel(x2, None, **kw(pattern2))
    diag1 = net.kernel_diag(x1, **kw(pattern1))
    return {
        "nngp_11": (k11.nngp, True),
        "ntk_11": (k11.ntk, True),
        "nngp_12": (k12.nngp, False),
        "ntk_12": (k12.ntk, False),
        "nngp_22": (k22.nngp, True),
        "ntk_22": (k22.ntk, True),
        "nngp_diag1": (diag1.nngp, False),
        "ntk_diag1_persample": (diag1.ntk, False),
        "nngp_diag2": (k12.cov2, False),
    }


def assert_case(
    name: str,
    values: dict[str, tuple[torch.Tensor, bool]],
    *,
    rtol_off: float = RTOL_OFF,
    rtol_diag: float = RTOL_DIAG,
) -> None:
    """Every value finite and equal to the reference case's array (its own NaNs skipped).

    Per-example diagonals (``*_diag*``) are compared at ``rtol_diag`` throughout.
    """
    data = arrays(name)
    bad = nonfinite(name)
    for key, (value, square) in values.items():
        assert torch.isfinite(value).all(), f"{name}: our {key} is not finite"
        if key in bad:
            continue
        diag_like = key.startswith(("nngp_diag", "ntk_diag"))
        assert_matches(
            value,
            data[key],
            square=square,
            what=f"{name} {key}",
            rtol_off=rtol_diag if diag_like else rtol_off,
            rtol_diag=rtol_diag,
        )
