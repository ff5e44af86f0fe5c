r"""The structured strategy: NTK terms of linear maps from activations and cotangents.

For a weight used as ``z = x W^T`` (``F.linear``) the per-example gradient of output
:math:`o` is :math:`g_{o} x^\top` with :math:`g_o = \partial f_o / \partial z`, so its NTK
term is

.. math:: \Theta^W_{ij,op} = (x_i \cdot x_j)\,(g_{i,o} \cdot g_{j,p}),

a product of two Gram matrices: a few GEMMs, no Jacobian. Convolutions are the same
with the input patches as ``x`` and a sum over positions (or, when that is dearer, the
per-example gradient ``sum_s g_s p_s^T`` formed by one batched product); biases and the
affine parameters of ``F.layer_norm`` have per-example gradients that are sums of
cotangents. The calls are seen by a :class:`~torch.overrides.TorchFunctionMode` during
one forward pass; the cotangents come from ``k`` backward passes over the batch (one per
output), which needs the examples to be independent (checked once on two examples).
A parameter used any other way (or also elsewhere) falls back to per-example Jacobians.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ._empirical_core import Dot, Feature, Kron, Pos, Prepared, jacobian_features
from .errors import ModelError, describe

_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_ARGS = {
    "linear": ("input", "weight", "bias"),
    "conv": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "norm": ("input", "normalized_shape", "weight", "bias", "eps"),
}
#: Functions that only read a tensor's metadata: not a use of a parameter.
_BENIGN = frozenset(
    {
        "size",
        "dim",
        "ndimension",
        "numel",
        "nelement",
        "__len__",
        "__get__",
        "is_floating_point",
        "is_complex",
        "is_contiguous",
        "stride",
        "element_size",
        "get_device",
        "data_ptr",
        "__format__",
        "__hash__",
    }
)


@dataclass
class _Use:
    """One structured use of parameters during the forward pass."""

    kind: str  # "linear", "conv", "norm" or "module_bias"
    weight: str | None
    bias: str | None
    z: Tensor  # the output whose cotangents are needed
    x: Tensor | None = None  # linear/conv input, layer-norm normalised input
    geometry: tuple[Any, ...] | None = None  # conv: (kernel, stride, pads, dilation)
    scale: float = 1.0  # module bias: y = ... + scale * bias
    channel_axis: int = -1  # the axis of z holding the channels (1: conv layouts)
    width: int = 0  # channels (layer norm: numbers in the normalised shape)


class _Capture(TorchFunctionMode):
    """Record linear, convolution and layer-norm calls on parameters; flag any other use."""

    def __init__(self, ids: Mapping[int, str], batch: int) -> None:
        super().__init__()
        self.ids = ids
        self.batch = batch
        self.uses: list[_Use] = []
        self.other: set[str] = set()
        self.hidden: Counter[int] = Counter()

    def name(self, t: Any) -> str | None:
        if not isinstance(t, Tensor) or self.hidden[id(t)] > 0:
            return None
        return self.ids.get(id(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = "linear" if func is F.linear else "norm" if func is F.layer_norm else None
        if kind is None and func in _CONV:
            kind = "conv"
        if kind is not None:
            out = self._structured(kind, func, args, kwargs)
            if out is not None:
                return out
        if getattr(func, "__name__", "") not in _BENIGN:
            for t in _leaves(args, kwargs):
                n = self.name(t)
                if n is not None:
                    self.other.add(n)
        return func(*args, **kwargs)

    def _structured(self, kind: str, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        bound = dict(zip(_ARGS[kind], args, strict=False))
        bound.update(kwargs)
        x, w, b = bound.get("input"), bound.get("weight"), bound.get("bias")
        wn, bn = self.name(w), self.name(b)
        if wn is None and bn is None:
            return None
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] != self.batch:
            return None
        rest = [v for key, v in bound.items() if key not in ("weight", "bias")]
        if any(self.name(t) is not None for t in _leaves(rest, {})):
            return None
        if kind == "linear":
            if not isinstance(w, Tensor) or w.ndim != 2:
                return None
            z = _leaf(func(*args, **kwargs))
            self.uses.append(_Use("linear", wn, bn, z, x.detach(), width=z.shape[-1]))
            return z
        if kind == "norm":
            shape = tuple(bound["normalized_shape"])
            eps = float(bound.get("eps", 1e-5))
            z = _leaf(func(*args, **kwargs))
            xhat = F.layer_norm(x.detach(), shape, None, None, eps) if wn is not None else None
            self.uses.append(_Use("norm", wn, bn, z, xhat, width=math.prod(shape)))
            return z
        nd = _CONV[func]
        geometry = _geometry(bound, nd)
        if geometry is None or x.ndim != nd + 2 or not isinstance(w, Tensor) or w.ndim != nd + 2:
            return None
        z = _leaf(func(*args, **kwargs))
        geometry = (tuple(w.shape[2:]), *geometry)
        use = _Use("conv", wn, bn, z, x.detach(), _pads(geometry), channel_axis=1, width=z.shape[1])
        self.uses.append(use)
        return z


def _leaf(z: Tensor) -> Tensor:
    """``z``, made a leaf that requires grad if it does not already.

    Parameters never require grad here (no weight gradient is ever computed), so the first
    recorded outputs become leaves; later ones depend on them.
    """
    return z if z.requires_grad else z.detach().requires_grad_(True)


def _leaves(args: Any, kwargs: Mapping[str, Any]) -> Iterator[Any]:
    stack = [*args, *kwargs.values()]
    while stack:
        a = stack.pop()
        if isinstance(a, (list, tuple)):
            stack.extend(a)
        elif isinstance(a, dict):
            stack.extend(a.values())
        else:
            yield a


def _tuple(v: Any, nd: int) -> tuple[int, ...] | None:
    if isinstance(v, int):
        return (v,) * nd
    if isinstance(v, (tuple, list)) and len(v) == nd and all(isinstance(a, int) for a in v):
        return tuple(v)
    if isinstance(v, (tuple, list)) and len(v) == 1 and isinstance(v[0], int):
        return (v[0],) * nd
    return None


def _geometry(bound: Mapping[str, Any], nd: int) -> tuple[Any, ...] | None:
    """``(stride, padding, dilation)`` of a convolution call, or ``None`` if unsupported."""
    if bound.get("groups", 1) != 1:
        return None
    stride = _tuple(bound.get("stride", 1), nd)
    dilation = _tuple(bound.get("dilation", 1), nd)
    padding = bound.get("padding", 0)
    if not isinstance(padding, str):
        padding = _tuple(padding, nd)
    elif padding not in ("same", "valid"):
        return None
    if stride is None or dilation is None or padding is None:
        return None
    return stride, padding, dilation


def _pads(geometry: tuple[Any, ...]) -> tuple[Any, ...]:
    """Replace the padding by explicit ``(low, high)`` pairs (PyTorch's ``"same"`` rule)."""
    kernel, stride, padding, dilation = geometry
    if padding == "valid":
        pads = tuple((0, 0) for _ in kernel)
    elif padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        pads = tuple((t // 2, t - t // 2) for t in total)
    else:
        pads = tuple((p, p) for p in padding)
    return kernel, stride, pads, dilation


def patches(x: Tensor, geometry: tuple[Any, ...]) -> Tensor:
    """Input patches of a convolution: ``(b, C, *spatial) -> (b, S, C * prod(kernel))``."""
    kernel, stride, pads, dilation = geometry
    nd = len(kernel)
    flat = [p for pair in reversed(pads) for p in pair]
    if any(flat):
        x = F.pad(x, flat)
    for d in range(nd):
        span = (kernel[d] - 1) * dilation[d] + 1
        x = x.unfold(2 + d, span, stride[d])
        if dilation[d] > 1:
            x = x[..., :: dilation[d]]
    b, c = x.shape[:2]
    out_spatial = x.shape[2 : 2 + nd]
    order = (0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd))
    return x.permute(order).reshape(b, math.prod(out_spatial), c * math.prod(kernel))


@contextmanager
def _module_biases(model: nn.Module, cap: _Capture) -> Iterator[None]:
    """Account for the biases of our Dense/Conv twins (``y = ... + b_scale * bias``)."""
    from .layers.conv import ConvModule
    from .layers.dense import DenseModule

    kinds = {DenseModule: -1, ConvModule: 1}
    handles = []

    def pre(m: nn.Module, inputs: Any) -> None:
        if isinstance(m.bias, Tensor) and id(m.bias) in cap.ids:
            cap.hidden[id(m.bias)] += 1

    def post(m: nn.Module, inputs: Any, output: Any) -> Any:
        bias = m.bias
        if not isinstance(bias, Tensor) or id(bias) not in cap.ids:
            return None
        cap.hidden[id(bias)] -= 1
        name = cap.ids[id(bias)]
        if isinstance(output, Tensor) and output.ndim >= 2 and output.shape[0] == cap.batch:
            axis = kinds[type(m)]
            output = _leaf(output)
            use = _Use("module_bias", None, name, output, scale=float(cast(Any, m).b_scale))
            use.channel_axis, use.width = axis, output.shape[axis]
            cap.uses.append(use)
            return output
        cap.other.add(name)
        return None

    for m in model.modules():
        if type(m) in kinds:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------------------
# Plan: which parameter is computed how
# ----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """How each trainable parameter enters the structured NTK.

    Attributes:
        weights: name -> ``"linear"``, ``"conv"`` or ``"norm"`` (a weight of such calls).
        biases: names of parameters used only as biases.
        fallback: names computed by per-example Jacobians.
        positions: name -> positions per example ``S`` (linear and conv weights).
        dims: name -> ``(Din, Dout)`` (linear and conv weights).
        as_dot: weights with ``S > 1`` whose per-example gradient is formed explicitly.
        independent: whether the probe found the examples independent.
        flops_per_example: multiply-adds of the recorded calls per example.

    """

    weights: dict[str, str] = field(default_factory=dict)
    biases: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    dims: dict[str, tuple[int, int]] = field(default_factory=dict)
    as_dot: set[str] = field(default_factory=set)
    independent: bool = True
    flops_per_example: float = 0.0
    bias_dims: dict[str, int] = field(default_factory=dict)

    def cost(self, n1: int, n2: int, k: int, full: bool, fallback_params: int) -> float:
        """Multiply-adds of the contraction (a cost estimate), given the Pos/Dot choices."""
        total = 0.0
        kk = k * k if full else k
        for name in self.weights:
            if name not in self.dims:
                continue
            din, dout = self.dims[name]
            s = self.positions[name]
            if s == 1:
                total += n1 * n2 * (din + kk * dout)
            elif name in self.as_dot:
                total += (n1 + n2) * k * s * din * dout + n1 * n2 * kk * din * dout
            else:
                total += n1 * n2 * s * s * (din + kk * dout)
        total += n1 * n2 * kk * (sum(self.bias_dims.values()) + fallback_params)
        return total

    def choose(self, b1: int, b2: int, k: int, full: bool, budget_floats: float) -> None:
        """For each weight at several positions: pairwise Gram (``Pos``) or gradient (``Dot``)."""
        kk = k * k if full else k
        self.as_dot = set()
        for name, (din, dout) in self.dims.items():
            s = self.positions[name]
            if s == 1:
                continue
            pos = b1 * b2 * s * s * (din + kk * dout)
            dot = (b1 + b2) * k * s * din * dout + b1 * b2 * kk * din * dout
            pos_memory = b1 * b2 * s * s * (kk + 1)
            if dot <= pos or pos_memory > budget_floats:
                self.as_dot.add(name)

    def per_example_floats(self, k: int) -> float:
        """Numbers per example held by the features (for block sizes)."""
        total = 0.0
        for name, (din, dout) in self.dims.items():
            s = self.positions[name]
            total += s * din + k * s * dout
            if name in self.as_dot:
                total += k * din * dout
        return total + k * sum(self.bias_dims.values())


def _capture(
    prep: Prepared, x: Tensor, ids_for: tuple[str, ...]
) -> tuple[_Capture, Tensor, dict[str, Tensor]]:
    params = {n: v.detach() for n, v in prep.params.items()}
    cap = _Capture({id(params[n]): n for n in ids_for}, x.shape[0])
    with torch.enable_grad(), _module_biases(prep.model, cap), cap:
        out = prep.call(params, x).reshape(x.shape[0], -1)
    return cap, out, params


def make_plan(prep: Prepared, x: Tensor) -> Plan:
    """Classify the parameters from one forward pass on ``x`` (two examples)."""
    cap, out, _ = _capture(prep, x, prep.names)
    roles: dict[str, set[str]] = {}
    for u in cap.uses:
        if u.weight is not None:
            roles.setdefault(u.weight, set()).add(u.kind)
        if u.bias is not None:
            roles.setdefault(u.bias, set()).add("bias")
    plan = Plan()
    for name in prep.names:
        role = roles.get(name, set())
        if name in cap.other or len(role) > 1:
            plan.fallback.append(name)
        elif role == {"bias"}:
            plan.biases.append(name)
        elif role:
            plan.weights[name] = next(iter(role))
    for u in cap.uses:  # shapes of the weights and biases, and the work per example
        if u.kind in ("linear", "conv") and u.x is not None:
            if u.kind == "linear":
                din, dout = u.x.shape[-1], u.z.shape[-1]
                s = u.x[0].numel() // din
            else:
                din = u.x.shape[1] * math.prod(u.geometry[0])  # type: ignore[index]
                dout = u.z.shape[1]
                s = u.z[0].numel() // dout
            plan.flops_per_example += s * din * dout
            if u.weight in plan.weights:
                plan.dims[u.weight] = (din, dout)
                plan.positions[u.weight] = plan.positions.get(u.weight, 0) + s
        if u.bias in plan.biases:
            plan.bias_dims[u.bias] = u.width
        if u.kind == "norm" and u.weight in plan.weights:
            plan.bias_dims[u.weight] = u.width
    plan.independent = _independent(cap, out)
    return plan


def _independent(cap: _Capture, out: Tensor) -> bool:
    """Whether the outputs of the first example depend only on the first rows of every use."""
    targets = [u.z for u in cap.uses if u.z.requires_grad]
    if not targets or out.shape[0] < 2 or not out.requires_grad:
        return True
    weights = torch.arange(1, out.shape[1] + 1, dtype=out.dtype, device=out.device)
    grads = torch.autograd.grad((out[0] * weights).sum(), targets, allow_unused=True)
    return all(g is None or g.shape[0] < 2 or not bool(g[1:].any()) for g in grads)


def structured_features(prep: Prepared, plan: Plan, x: Tensor) -> list[Feature]:
    """The features of ``x`` (one block of examples), in the plan's order."""
    b = x.shape[0]
    tracked = (*plan.weights, *plan.biases)
    feats: list[Feature] = []
    if tracked:
        cap, out, _ = _capture(prep, x, tracked)
        bad = sorted(cap.other & set(tracked))
        if bad:
            raise ModelError(
                describe(
                    prep.where,
                    f"parameter(s) {', '.join(bad)} were used differently on these examples "
                    "than on the first ones (data-dependent control flow?)",
                    'Use strategy="jacobian".',
                )
            )
        uses = [u for u in cap.uses if u.weight in plan.weights or u.bias in plan.biases]
        grads = _cotangents(out, [u.z for u in uses])
        feats.extend(_weight_features(plan, uses, grads, b))
        feats.extend(_bias_features(plan, uses, grads, b))
    if plan.fallback:
        feats.extend(jacobian_features(prep, plan.fallback, x))
    return feats


def _cotangents(out: Tensor, targets: list[Tensor]) -> list[Tensor]:
    """``d out[:, o] / d target`` for every output ``o``: ``(k, b, *target.shape[1:])``.

    One backward pass over the batch per output (the examples are independent).
    """
    b, k = out.shape
    live = [i for i, t in enumerate(targets) if t.requires_grad and out.requires_grad]
    # stored examples-first, (b, k, ...): one GEMM per Gram matrix later
    grads = [t.new_empty((b, k, *t.shape[1:])) if i in live else t.new_zeros((b, k, *t.shape[1:]))
             for i, t in enumerate(targets)]  # fmt: skip
    for o in range(k if live else 0):
        onehot = out.new_zeros(b, k)
        onehot[:, o] = 1.0
        gs = torch.autograd.grad(
            out, [targets[i] for i in live], onehot, retain_graph=o < k - 1, allow_unused=True
        )
        for i, g in zip(live, gs, strict=True):
            if g is None:
                grads[i][:, o] = 0.0
            else:
                grads[i][:, o] = g
    return [g.transpose(0, 1) for g in grads]


def _kb(g: Tensor, *shape: int) -> Tensor:
    """Reshape ``g`` of logical shape ``(k, b, ...)`` to ``(k, b, *shape)`` keeping its layout."""
    return g.transpose(0, 1).reshape(g.shape[1], g.shape[0], *shape).transpose(0, 1)


def _summed(u: _Use, g: Tensor, b: int) -> Tensor:
    """Cotangents ``(k, b, ...)`` summed over the positions of a use: ``(k, b, channels)``."""
    if u.channel_axis == 1:
        return _kb(g, u.width, -1).sum(dim=3)
    return _kb(g, -1, u.width).sum(dim=2)


def _weight_features(
    plan: Plan, uses: list[_Use], grads: list[Tensor], b: int
) -> Iterator[Feature]:
    for name, kind in plan.weights.items():
        mine = [(u, g) for u, g in zip(uses, grads, strict=True) if u.weight == name]
        if not mine:
            continue
        k = mine[0][1].shape[0]
        if kind == "norm":  # y = xhat * w + b: gradient sum_positions g * xhat
            terms = [_summed(u, g * u.x, b) for u, g in mine]  # type: ignore[operator]
            yield Dot(terms[0] if len(terms) == 1 else torch.stack(terms).sum(0))
            continue
        ps, gs = [], []
        for u, g in mine:
            assert u.x is not None
            if kind == "linear":
                ps.append(u.x.reshape(b, -1, u.x.shape[-1]))
                gs.append(_kb(g, -1, u.width))
            else:
                ps.append(patches(u.x, u.geometry))  # type: ignore[arg-type]
                gs.append(_kb(g, u.width, -1).transpose(2, 3))
        p = ps[0] if len(ps) == 1 else torch.cat(ps, dim=1)
        g = gs[0] if len(gs) == 1 else torch.cat(gs, dim=2)
        if p.shape[1] == 1:
            yield Kron(p[:, 0], g[:, :, 0])
        elif name in plan.as_dot:
            yield Dot(torch.einsum("kbsd,bse->bkde", g, p).reshape(b, k, -1).transpose(0, 1))
        else:
            yield Pos(p, g.contiguous())


def _bias_features(plan: Plan, uses: list[_Use], grads: list[Tensor], b: int) -> Iterator[Feature]:
    for name in plan.biases:
        terms = [
            u.scale * _summed(u, g, b) for u, g in zip(uses, grads, strict=True) if u.bias == name
        ]
        if terms:
            yield Dot(terms[0] if len(terms) == 1 else torch.stack(terms).sum(0))
