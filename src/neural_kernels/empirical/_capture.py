r"""How a forward pass uses its parameters, recorded for the structured strategy.

A :class:`Capture` (a :class:`~torch.overrides.TorchFunctionMode`) sees every torch call of
one forward pass and records the *structured uses* of the trainable parameters, whatever
module makes them (``nn.Linear``, ``nn.Conv*d``, ``nn.LayerNorm``, a hand-written module,
this library's finite twins alike):

* ``"linear"``, ``"conv"``, ``"norm"``: a parameter passed directly as the weight or
  bias of ``F.linear``, ``F.conv1d/2d/3d`` or ``F.layer_norm``;
* ``"add"``: a tensor ``q`` computed from one parameter alone (no example enters it, e.g.
  ``b_std * bias.reshape(1, -1, 1, 1)``) added to a batch of activations ``y``
  (``z = y + q``, broadcast over the batch): its per-example gradient is the
  vector-Jacobian product of ``q(theta)`` with the cotangent of ``z`` summed over the
  broadcast axes.

To tell the two kinds of tensors apart, every call's outputs are classified: a tensor is
*static* when it does not depend on the examples (the parameters, the buffers, tensors made
before the forward pass, and anything computed from those alone; each static tensor
remembers which trainable parameters it came from), and *data* otherwise (the input, and
everything computed from it). A trainable parameter that reaches data in any other way is
marked ``other``: the structured strategy computes it by per-example Jacobians instead.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor
from torch.overrides import TorchFunctionMode

_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_ARGS = {
    "linear": ("input", "weight", "bias"),
    "conv": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "norm": ("input", "normalized_shape", "weight", "bias", "eps"),
}
#: Out-of-place additions, the calls ``y + q`` that can add a bias.
_ADD = frozenset({torch.add, Tensor.add, Tensor.__add__, Tensor.__radd__})
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
_NO_SOURCE: frozenset[str] = frozenset()


@dataclass
class Use:
    """One structured use of parameters during the forward pass."""

    kind: str  # "linear", "conv", "norm" or "add"
    weight: str | None
    bias: str | None
    z: Tensor  # the output whose cotangents are needed
    x: Tensor | None = None  # linear/conv input, layer-norm normalised input
    geometry: tuple[Any, ...] | None = None  # conv: (kernel, stride, pads, dilation)
    channel_axis: int = -1  # the axis of z holding the channels (1: conv layouts)
    width: int = 0  # channels (layer norm: numbers in the normalised shape)
    q: Tensor | None = None  # "add": the static tensor added, a function of the bias


class Capture(TorchFunctionMode):
    """Record structured uses of the trainable parameters; flag any other use.

    Args:
        params: the trainable parameters to watch, by name (the very tensors the forward
            pass receives).
        constants: the other parameters and buffers (static, from no trainable parameter).
        x: the input batch (data).

    """

    def __init__(self, params: Mapping[str, Tensor], constants: Mapping[str, Tensor], x: Tensor):
        super().__init__()
        self.params = dict(params)
        self.ids = {id(t): n for n, t in params.items()}
        self.batch = x.shape[0]
        self.uses: list[Use] = []
        self.other: set[str] = set()
        self.static: dict[int, tuple[Tensor, frozenset[str]]] = {
            id(t): (t, _NO_SOURCE) for t in constants.values()
        }
        self.static.update({id(t): (t, frozenset((n,))) for n, t in params.items()})
        self.data: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
        self.data[id(x)] = x

    def name(self, t: Any) -> str | None:
        """The name of ``t`` if it is one of the watched parameters itself."""
        return self.ids.get(id(t)) if isinstance(t, Tensor) else None

    def sources(self, t: Tensor) -> frozenset[str] | None:
        """The trainable parameters a static tensor comes from; ``None`` for data."""
        entry = self.static.get(id(t))
        if entry is not None and entry[0] is t:
            return entry[1]
        if self.data.get(id(t)) is t:
            return None
        # Made outside the calls seen (before the forward pass, as a module attribute):
        # static, unless it has the batch's size (then, conservatively, data).
        return None if t.ndim >= 1 and t.shape[0] == self.batch else _NO_SOURCE

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = "linear" if func is F.linear else "norm" if func is F.layer_norm else None
        if kind is None and func in _CONV:
            kind = "conv"
        if kind is not None:
            out = self._structured(kind, func, args, kwargs)
            if out is not None:
                return out
        srcs = [self.sources(t) for t in _leaves(args, kwargs) if isinstance(t, Tensor)]
        tracked = frozenset().union(*(s for s in srcs if s))
        if tracked and func in _ADD:
            out = self._add(func, args, kwargs)
            if out is not None:
                return out
        out = func(*args, **kwargs)
        if all(s is not None for s in srcs):
            for t in _tensors(out):
                self.static[id(t)] = (t, tracked)
        else:
            for t in _tensors(out):
                self.static.pop(id(t), None)
                self.data[id(t)] = t
            if tracked and getattr(func, "__name__", "") not in _BENIGN:
                self.other |= tracked
        return out

    def _structured(self, kind: str, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        bound = dict(zip(_ARGS[kind], args, strict=False))
        bound.update(kwargs)
        x, w, b = bound.get("input"), bound.get("weight"), bound.get("bias")
        wn, bn = self.name(w), self.name(b)
        if wn is None and bn is None:
            return None
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] != self.batch:
            return None
        for t, n in ((w, wn), (b, bn)):  # a tensor made from parameters, not one itself
            if isinstance(t, Tensor) and n is None and self.sources(t):
                return None
        rest = [v for key, v in bound.items() if key not in ("weight", "bias")]
        if any(self.sources(t) for t in _leaves(rest, {}) if isinstance(t, Tensor)):
            return None
        if kind == "linear":
            if not isinstance(w, Tensor) or w.ndim != 2:
                return None
            z = self._output(func(*args, **kwargs))
            self.uses.append(Use("linear", wn, bn, z, x.detach(), width=z.shape[-1]))
            return z
        if kind == "norm":
            shape = tuple(bound["normalized_shape"])
            eps = float(bound.get("eps", 1e-5))
            z = self._output(func(*args, **kwargs))
            xhat = F.layer_norm(x.detach(), shape, None, None, eps) if wn is not None else None
            self.uses.append(Use("norm", wn, bn, z, xhat, width=math.prod(shape)))
            return z
        nd = _CONV[func]
        geometry = _geometry(bound, nd)
        if geometry is None or x.ndim != nd + 2 or not isinstance(w, Tensor) or w.ndim != nd + 2:
            return None
        z = self._output(func(*args, **kwargs))
        geometry = (tuple(w.shape[2:]), *geometry)
        use = Use("conv", wn, bn, z, x.detach(), _pads(geometry), channel_axis=1, width=z.shape[1])
        self.uses.append(use)
        return z

    def _add(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Tensor | None:
        """``z = y + q``: data ``y`` plus a static ``q`` of one parameter, over the batch."""
        if len(args) != 2 or kwargs.get("alpha", 1) != 1 or set(kwargs) - {"alpha"}:
            return None
        a, b = args
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return None
        sa, sb = self.sources(a), self.sources(b)
        if sa is None and sb is not None:
            y, q, names = a, b, sb
        elif sb is None and sa is not None:
            y, q, names = b, a, sa
        else:
            return None
        if len(names) != 1 or y.ndim < 1 or y.shape[0] != self.batch:
            return None
        name = next(iter(names))
        if self.params[name].requires_grad and not q.requires_grad:
            return None  # q was cut from the parameter (detach, .data): not a function of it
        if q.ndim > y.ndim or (q.ndim == y.ndim and q.shape[0] != 1):
            return None  # q must broadcast over the batch, not carry one
        if torch.broadcast_shapes(q.shape, y.shape) != y.shape:
            return None
        z = self._output(func(*args, **kwargs))
        self.uses.append(Use("add", None, name, z, q=q))
        return z

    def _output(self, z: Tensor) -> Tensor:
        """A recorded output, made a leaf that requires grad if it does not already.

        Only the parameters that feed an ``"add"`` may require grad here (no weight
        gradient is ever computed), so most recorded outputs become leaves.
        """
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        self.data[id(z)] = z
        return z


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


def _tensors(out: Any) -> Iterator[Tensor]:
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for o in out:
            yield from _tensors(o)


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
