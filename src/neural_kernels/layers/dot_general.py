r"""``DotGeneral``: a constant linear map of the positions, as ``lax.dot_general``.

The inputs ``x`` of shape ``(n, *features)`` are contracted with a constant tensor
``other`` (on the left, ``lhs``, or on the right, ``rhs``) along the axes named by
``dimension_numbers = ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))``,
as :func:`jax.lax.dot_general` does. The batch axis (``0``) and the channel axis may not be
named: the map acts on the spatial axes only, so it is a linear map
:math:`M: \mathbb R^{S_\text{in}} \to \mathbb R^{S_\text{out}}` of the flattened
positions, the same for every channel. At infinite width

.. math::
    K' = M K M^\top, \qquad \Theta' = M \Theta M^\top

on each pair of examples (``K`` the covariance between every two positions), the same
for the self-covariances. Weighted sums, differences and permutations of positions,
cropping, striding, reflections and fixed filters are all of this form.

Output axes: the batch axis first and the channel axis where the input layout keeps it
(``(n, C, *spatial)`` channels first, ``(n, *spatial, C)`` channels last); the spatial
axes in ``dot_general``'s order: batch dimensions, then the free axes of the left
factor, then those of the right one. This is Neural Tangents' ``DotGeneral``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.protocol import FactsFlow, Flow, ModuleContext, Requirements, Spatial, Variances
from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from ._spatial import pair_axes, prod
from .base import Layer, one_block, one_facts

__all__ = ["DotGeneral", "DotGeneralModule", "dot_general"]

Dims = tuple[tuple[tuple[int, ...], tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]


def _int_tuple(v: Any) -> tuple[int, ...] | None:
    if isinstance(v, (tuple, list)) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in v
    ):
        return tuple(int(i) for i in v)
    return None


def _parse_dims(layer: object, dims: Any) -> Dims:
    """``((lc, rc), (lb, rb))`` as tuples of ints, or :class:`HyperparameterError`."""
    try:
        (lc, rc), (lb, rb) = dims
        parts = [_int_tuple(p) for p in (lc, rc, lb, rb)]
    except (TypeError, ValueError):
        parts = [None]
    if any(p is None for p in parts) or len(parts[0] or ()) != len(parts[1] or ()):
        bad = True
    else:
        bad = len(parts[2] or ()) != len(parts[3] or ())
    if bad:
        raise HyperparameterError(
            describe(
                layer,
                f"dimension_numbers={dims!r}",
                "Give ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch)), each a "
                "tuple of axis numbers, paired one to one, as lax.dot_general.",
            )
        )
    p = [tuple(q or ()) for q in parts]
    return ((p[0], p[1]), (p[2], p[3]))


def _letters(
    x_ndim: int, other_ndim: int, is_lhs: bool, dims: Dims, channel_dim: int | None
) -> tuple[list[str], list[str], list[str]]:
    """Einsum letters of ``x``, of the constant and of the output (batch axis first)."""
    (lc, rc), (lb, rb) = dims
    if is_lhs:
        other_c, x_c, other_b, x_b = lc, rc, lb, rb
    else:
        x_c, other_c, x_b, other_b = lc, rc, lb, rb
    x_c = tuple(a % x_ndim for a in x_c)
    x_b = tuple(a % x_ndim for a in x_b)
    other_c = tuple(a % max(other_ndim, 1) for a in other_c)
    other_b = tuple(a % max(other_ndim, 1) for a in other_b)
    letters = iter(string.ascii_letters)
    x_l = [next(letters) for _ in range(x_ndim)]
    o_l = [next(letters) for _ in range(other_ndim)]
    for xa, oa in zip(x_c + x_b, other_c + other_b, strict=True):
        o_l[oa] = x_l[xa]
    batch = [x_l[a] for a in x_b]
    x_free = [x_l[a] for a in range(x_ndim) if a not in x_c + x_b]
    o_free = [o_l[a] for a in range(other_ndim) if a not in other_c + other_b]
    out = batch + (o_free + x_free if is_lhs else x_free + o_free)
    rest = [c for c in out if c != x_l[0]]
    if channel_dim is not None:
        ch = x_l[channel_dim % x_ndim]
        rest.remove(ch)
        rest = [ch, *rest] if channel_dim % x_ndim == 1 and x_ndim > 2 else [*rest, ch]
    return x_l, o_l, [x_l[0], *rest]


def dot_general(
    x: Tensor, other: Tensor, is_lhs: bool, dims: Dims, channel_dim: int | None
) -> Tensor:
    """``lax.dot_general(other, x)`` (``is_lhs``) or ``(x, other)``, batch axis kept first.

    ``channel_dim``: the channel axis of ``x`` (``1`` or ``-1``), put back in its place in
    the output (``None``: no channel axis). Axis numbers in ``dims`` count ``x``'s axes,
    negative ones from the end.
    """
    x_l, o_l, out = _letters(x.ndim, other.ndim, is_lhs, dims, channel_dim)
    eq = "".join(x_l) + "," + "".join(o_l) + "->" + "".join(out)
    return torch.einsum(eq, x, other.to(dtype=x.dtype, device=x.device))


def kernel_equation(
    shape: tuple[int, ...], other_ndim: int, is_lhs: bool, dims: Dims, channel_dim: int, lead: int
) -> str:
    """The einsum of ``K' = M K M^T`` on a full-layout kernel with ``lead`` example axes.

    Operands: the kernel ``(*lead, P1, P1', P2, P2', ...)``, the constant on the first
    position of each pair, the constant on the second.
    """
    x_l, o_l, out = _letters(1 + len(shape), other_ndim, is_lhs, dims, channel_dim)
    skip = {x_l[0], x_l[channel_dim]}
    pool = iter(string.ascii_letters)
    head = "".join(next(pool) for _ in range(lead))
    first = {c: next(pool) for c in dict.fromkeys(x_l + o_l) if c not in skip}
    second = {c: next(pool) for c in first}

    def pairs(ls: list[str]) -> str:
        return "".join(first[c] + second[c] for c in ls if c not in skip)

    o1 = "".join(first[c] for c in o_l)
    o2 = "".join(second[c] for c in o_l)
    return f"{head}{pairs(x_l)},{o1},{o2}->{head}{pairs(out)}"


@dataclass(frozen=True, init=False, repr=False)
class DotGeneral(Layer):
    r"""Contract the positions with a constant tensor: ``lax.dot_general`` on spatial axes.

    Args:
        lhs: a constant (float or tensor) multiplying the inputs from the left, or ``None``.
        rhs: a constant multiplying them from the right, or ``None``. At most one of the
            two; with neither the layer is the identity.
        dimension_numbers: ``((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))``
            as :func:`jax.lax.dot_general`. The inputs' axes are numbered in
            ``(n, *features)`` as this layer receives them: ``(n, C, H, W)`` after a
            ``Conv`` (so H is axis 2), ``(n, L, C)`` after a ``Dense`` on sequences.
            Neither the batch axis ``0`` nor the channel axis may be named.

    The output keeps the batch axis first and the channel axis in place; its spatial axes
    come in ``dot_general``'s order (batch dimensions, free axes of ``lhs``, free axes of
    ``rhs``). Raw inputs are read channels first, as ``Conv`` does.

    Example::

        # difference of two rows of an image, then a 1-D convolution along the width
        net = nk.Sequential(nk.Conv(64, 3, padding="same"), nk.ReLU(),
                            nk.DotGeneral(rhs=torch.tensor([1.0, -1.0]),
                                          dimension_numbers=(((2,), (0,)), ((), ()))),
                            nk.Conv(64, 3), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))

    """

    other: Tensor | None = field(compare=False)
    is_lhs: bool = False
    dimension_numbers: Dims = (((), ()), ((), ()))
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=0, spatial=Spatial.MIXING, variances=Variances.CARRY
    )

    def __init__(
        self,
        *,
        lhs: float | Tensor | None = None,
        rhs: float | Tensor | None = None,
        dimension_numbers: Any = (((), ()), ((), ())),
    ) -> None:
        if lhs is not None and rhs is not None:
            raise HyperparameterError(
                describe(
                    "DotGeneral",
                    "both lhs and rhs",
                    "Give one constant: the other factor is the layer's inputs.",
                )
            )
        given = lhs if rhs is None else rhs
        other = None
        if given is not None:
            if isinstance(given, (int, float)) and not isinstance(given, bool):
                other = torch.tensor(float(given), dtype=torch.float64)
            elif isinstance(given, Tensor) and given.is_floating_point():
                other = given.detach()
            else:
                raise HyperparameterError(
                    describe(
                        "DotGeneral",
                        f"a constant of type {type(given).__name__}",
                        "Give lhs or rhs as a float or a floating-point tensor.",
                    )
                )
            if not bool(torch.isfinite(other).all()):
                raise HyperparameterError(
                    describe(
                        "DotGeneral",
                        "a constant with NaN or infinite entries",
                        "Give finite values.",
                    )
                )
        object.__setattr__(self, "other", other)
        object.__setattr__(self, "is_lhs", lhs is not None)
        object.__setattr__(self, "dimension_numbers", _parse_dims("DotGeneral", dimension_numbers))

    def __repr__(self) -> str:
        if self.other is None:
            return "DotGeneral()"
        side = "lhs" if self.is_lhs else "rhs"
        shape = tuple(self.other.shape)
        return f"DotGeneral({side}=<tensor {shape}>, dimension_numbers={self.dimension_numbers})"

    def tensors(self) -> Any:
        return iter(())  # a constant, never a hyperparameter to differentiate

    # -- geometry -----------------------------------------------------------------------
    @staticmethod
    def _channel(shape: tuple[int, ...], channel_axis: int | None) -> int:
        """Feature axis holding the channels."""
        return len(shape) - 1 if channel_axis == -1 or len(shape) == 1 else 0

    def _check(self, shape: tuple[int, ...], channel_axis: int | None) -> int:
        """Check the axes against inputs of feature shape ``shape``; the channel dim of x."""
        assert self.other is not None
        (lc, rc), (lb, rb) = self.dimension_numbers
        x_c, o_c, x_b, o_b = (rc, lc, rb, lb) if self.is_lhs else (lc, rc, lb, rb)
        ndim = 1 + len(shape)
        channel = 1 + self._channel(shape, channel_axis)
        named = list(x_c + x_b)
        for a in named:
            if not -ndim <= a < ndim:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"axis {a} for inputs of shape (n, *{shape}) ({ndim} axes)",
                        "Number the inputs' axes from 0 (the batch axis) in (n, *features).",
                    )
                )
        named = [a % ndim for a in named]
        if 0 in named or channel in named:
            which = "batch axis 0" if 0 in named else f"channel axis {channel}"
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"dimension_numbers name the {which} of inputs (n, *{shape})",
                    "Contract or batch spatial axes only: the channel axis has infinite "
                    "width and examples are never mixed. After a Conv the inputs are "
                    "(n, C, *spatial), so the first spatial axis is 2.",
                )
            )
        o_nd = self.other.ndim
        o_named = [a % max(o_nd, 1) for a in o_c + o_b if -o_nd <= a < o_nd]
        if len(o_named) != len(o_c + o_b) or len(set(o_named)) != len(o_named):
            raise ShapeError(
                describe(
                    repr(self),
                    f"axes {o_c + o_b} of a constant of shape {tuple(self.other.shape)}",
                    "Name each axis of the constant at most once, within its rank.",
                )
            )
        if len(set(named)) != len(named):
            raise ShapeError(
                describe(
                    repr(self), f"an input axis named twice in {named}", "Name each axis once."
                )
            )
        for xa, oa in zip(named, o_named, strict=True):
            if shape[xa - 1] != self.other.shape[oa]:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"input axis {xa} of size {shape[xa - 1]} paired with axis {oa} of "
                        f"the constant, of size {self.other.shape[oa]}",
                        "Paired axes must have the same size.",
                    )
                )
        return channel if len(shape) > 1 else -1

    def _out_shape(self, shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
        assert self.other is not None
        cdim = self._check(shape, channel_axis)
        x_l, o_l, out = _letters(
            1 + len(shape), self.other.ndim, self.is_lhs, self.dimension_numbers, cdim
        )
        sizes = dict(zip(x_l, (1, *shape), strict=True))
        sizes.update(zip(o_l, self.other.shape, strict=True))
        return tuple(int(sizes[c]) for c in out[1:])

    def _out_channel_axis(self, out: tuple[int, ...], channel_axis: int | None) -> int:
        if len(out) <= 1:
            return -1
        return 0 if self._channel((0, 0), channel_axis) == 0 else -1

    # -- layer protocol ---------------------------------------------------------------
    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if self.other is None:
            return facts
        out = self._out_shape(facts.shape, facts.channel_axis)
        if prod(out) == 0:
            raise ShapeError(
                describe(repr(self), f"an output of shape {out}", "Keep every axis non-empty.")
            )
        return facts.replace(
            shape=out, channel_axis=self._out_channel_axis(out, facts.channel_axis)
        )

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        if self.other is None:
            return k
        other = self.other.to(dtype=k.dtype, device=k.device)
        cdim = self._check(k.shape1, k.channel_axis)
        out1 = self._out_shape(k.shape1, k.channel_axis)
        out2 = self._out_shape(k.shape2, k.channel_axis)
        full = k.layout == "full" or k.spatial_ndim == 0

        def run(t: Tensor, which: str) -> Tensor:
            groups = pair_axes(k, which)
            if groups and len(groups[0]) == 1:
                raise LayerCompatibilityError(  # pragma: no cover - the plan gives full
                    describe(repr(self), "a same-position kernel", "Use layout='full'.")
                )
            if other.ndim == 0:
                return t * (other * other)
            lead = t.ndim - sum(len(g) for g in groups)
            eq = kernel_equation(
                k.shape1,
                other.ndim,
                self.is_lhs,
                self.dimension_numbers,
                cdim % (1 + len(k.shape1)),
                lead,
            )
            return torch.einsum(eq, t, other, other)

        cov1 = run(k.cov1, "cov")
        return k.replace(
            nngp=run(k.nngp, "pair"),
            ntk=None if k.ntk is None else run(k.ntk, "pair"),
            cov1=cov1,
            cov2=cov1 if k.same_inputs else run(k.cov2, "cov"),
            shape1=out1,
            shape2=out2,
            channel_axis=self._out_channel_axis(out1, k.channel_axis),
            layout="full" if full else k.layout,  # a flat input may gain positions
            cov_variance=False,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        shape = tuple(int(s) for s in in_shape)
        if self.other is None:
            return nn.Identity()
        cdim = self._check(shape, ctx.channel_axis)
        return DotGeneralModule(self.other, self.is_lhs, self.dimension_numbers, cdim)


class DotGeneralModule(nn.Module):
    """Finite twin of :class:`DotGeneral`: the contraction with the constant (a buffer)."""

    def __init__(self, other: Tensor, is_lhs: bool, dims: Dims, channel_dim: int | None) -> None:
        super().__init__()
        self.other: Tensor
        self.register_buffer("other", other.clone())
        self.is_lhs = is_lhs
        self.dims = dims
        self.channel_dim = channel_dim

    def forward(self, x: Tensor) -> Tensor:
        """Contract ``x`` of shape ``(n, *features)``."""
        return dot_general(x, self.other, self.is_lhs, self.dims, self.channel_dim)

    def extra_repr(self) -> str:
        side = "lhs" if self.is_lhs else "rhs"
        return f"{side}={tuple(self.other.shape)}, dimension_numbers={self.dims}"
