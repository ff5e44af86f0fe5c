r"""``GlobalSelfAttention``: multi-head dot-product self-attention over all positions.

The layer follows Neural Tangents' ``stax.GlobalSelfAttention`` (Hron et al., "Infinite
attention: NNGP and NTK for deep attention networks", 2020). For inputs :math:`x` with
:math:`C` channels at positions :math:`a, c` and head :math:`h`,

.. math::
    G^h_{ac} = \frac{\sigma_Q \sigma_K}{C\, d_k^{\,s}}\, q^h_a \cdot k^h_c, \qquad
    f_a = \frac{\sigma_O \sigma_V}{\sqrt{H d_v C_v}}
        \Big[\textstyle\sum_c \phi(G^h)_{ac}\, v^h_c\Big]_{h} W_O + \sigma_b b,

with :math:`k = x W_K`, :math:`v = x W_V`, every weight :math:`N(0, 1)`, :math:`\phi` the
attention mechanism (softmax over :math:`c`, identity, abs or relu) and ``linear_scaling``
choosing :math:`s = 1` with tied queries and keys (:math:`q = k`) or :math:`s = 1/2` with
independent ones. Positional embeddings (trainable, :math:`N(0, \sigma_{pe}^2)` with
covariance :math:`R` between positions) are added to or concatenated with the inputs of
the keys and queries (and of the values with ``val_pos_emb``).

Infinite width (:math:`d_k, d_v, H \to \infty`). Write :math:`\tilde K = w_x K + w_{pe} R`
for the covariance of the embedded inputs (:math:`w_x = 1, w_{pe} = \sigma_{pe}^2` for
``"sum"``; weighted by the channel shares for ``"concat"``; :math:`\tilde K = K` without
embeddings), and :math:`K_v, \Theta_v` the kernels seen by the values (:math:`\tilde K,
\tilde\Theta` with ``val_pos_emb``, else :math:`K, \Theta`).

* ``linear_scaling=True``: queries and keys converge to constants and the attention
  weights of an input become deterministic, :math:`G = \phi(\sigma_Q\sigma_K \tilde K(x,
  x))` (softmax over the second position). For inputs :math:`x, x'`

  .. math::
      K' = \sigma_O^2\sigma_V^2\, G\, K_v\, G'^\top + \sigma_b^2, \qquad
      \Theta' = \sigma_O^2\sigma_V^2\, G\, \Theta_v\, G'^\top + \sigma_b^2
          + 2 (K' - \sigma_b^2).

* ``linear_scaling=False`` with the identity mechanism, with
  :math:`\sigma^2 = \sigma_Q^2\sigma_K^2\sigma_O^2\sigma_V^2` and
  :math:`\langle A, B\rangle = \sum_{cd} A_{cd} B_{cd}` over position pairs:

  .. math::
      K'_{ab} = \sigma^2 \langle \tilde K, K_v\rangle\, \tilde K_{ab} + \sigma_b^2,

  and :math:`\Theta' = \sigma^2 (D\, \tilde K + \langle \tilde K, K_v\rangle (\tilde\Theta
  + 4 \tilde K)) + \sigma_b^2` with :math:`D = 2\langle\tilde K, \tilde\Theta\rangle`
  (``val_pos_emb`` or no embeddings) or :math:`\langle \tilde K, \Theta\rangle + \langle
  K, \tilde \Theta\rangle`. Other mechanisms have no closed form in this scaling.

These are Neural Tangents' formulas, including the NTK's treatment of the trainable
positional embeddings (:math:`\tilde\Theta = w_x \Theta + w_{pe} R`). The output is
Gaussian at infinite width.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._validation import check_positive_int, check_std, given
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Spatial
from ..errors import (
    HyperparameterError,
    LayerCompatibilityError,
    ParametrizationError,
    ShapeError,
    describe,
)
from ._affine import Std, affine, sq
from .base import Layer, one_block, one_facts

__all__ = ["GlobalSelfAttention", "GlobalSelfAttentionModule"]


MECHANISMS = ("softmax", "identity", "abs", "relu")
POS_EMB_TYPES = ("none", "sum", "concat")


def _mechanism(name: str, g: Tensor) -> Tensor:
    """The attention nonlinearity; softmax normalises over the last (attended) axis."""
    if name == "softmax":
        return torch.softmax(g, dim=-1)
    if name == "abs":
        return g.abs()
    if name == "relu":
        return torch.relu(g)
    return g


def _flat(t: Tensor, lead: int, ndim: int) -> Tensor:
    """Interleaved pair axes ``(*lead, S1, S1', S2, S2', ...)`` to ``(*lead, P, P')``."""
    if ndim == 1:
        return t
    perm = [
        *range(lead),
        *(lead + 2 * i for i in range(ndim)),
        *(lead + 2 * i + 1 for i in range(ndim)),
    ]
    t = t.permute(perm)
    p = math.prod(t.shape[lead : lead + ndim])
    return t.reshape(*t.shape[:lead], p, p)


def _unflat(t: Tensor, lead: int, spatial: tuple[int, ...]) -> Tensor:
    """``(*lead, P, P')`` back to the interleaved pair layout."""
    s = len(spatial)
    if s == 1:
        return t
    t = t.reshape(*t.shape[:lead], *spatial, *spatial)
    perm = [*range(lead), *(lead + i + j * s for i in range(s) for j in (0, 1))]
    return t.permute(perm)


def _pos_emb_cov(
    spatial: tuple[int, ...],
    p_norm: float,
    decay_fn: Callable[[Tensor], Tensor] | None,
    dtype: torch.dtype,
    device: Any,
) -> Tensor:
    """Covariance ``R`` ``(P, P)`` of the positional embeddings between positions.

    Identity without ``decay_fn``; else ``decay_fn(sum_axis |i_axis - j_axis| ** p_norm)``.
    """
    size = math.prod(spatial)
    if decay_fn is None:
        return torch.eye(size, dtype=dtype, device=device)
    grids = torch.meshgrid(
        *[torch.arange(n, dtype=dtype, device=device) for n in spatial], indexing="ij"
    )
    coords = torch.stack([g.reshape(-1) for g in grids], -1)  # (P, ndim)
    dist = (coords[:, None, :] - coords[None, :, :]).abs().pow(p_norm).sum(-1)
    r = torch.as_tensor(decay_fn(dist), dtype=dtype, device=device)
    if r.shape != (size, size) or not bool(torch.isfinite(r).all()):
        raise HyperparameterError(
            describe(
                "GlobalSelfAttention",
                f"pos_emb_decay_fn maps the {size} x {size} distances between positions to "
                f"{'non-finite values' if r.shape == (size, size) else f'shape {tuple(r.shape)}'}",
                "Give an elementwise function with finite values, e.g. lambda d: torch.exp(-d).",
            )
        )
    return r


def _pair_dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_{cd} a_{..cd} b_{..cd}`` over the two position axes, kept as size-1 axes."""
    return (a * b).sum(dim=(-2, -1), keepdim=True)


@dataclass(frozen=True)
class GlobalSelfAttention(Layer):
    r"""Multi-head self-attention over every position, as Neural Tangents' layer.

    Args:
        n_chan_out: output channels (a hidden width of the finite twin).
        n_chan_key: channels of the keys and queries of each head.
        n_chan_val: channels of the values of each head.
        n_heads: number of heads (``n_chan_key`` and ``n_chan_val`` are per head, so
            nothing has to divide).
        linear_scaling: ``True``: dot products divided by ``n_chan_key`` and the query
            weights tied to the key weights (the kernel has a closed form for every
            mechanism); ``False``: divided by ``sqrt(n_chan_key)`` with independent
            queries (closed form only for the identity mechanism).
        w_key_std, w_query_std: key and query weight scales; only their product matters.
        w_value_std, w_out_std: value and output weight scales; only their product
            matters.
        b_std: bias scale of the output; ``None`` means no bias.
        attention_mechanism: ``"softmax"``, ``"identity"``, ``"abs"`` or ``"relu"``.
        pos_emb_type: ``"none"``, ``"sum"`` (added to the inputs) or ``"concat"``
            (concatenated along the channels) trainable positional embeddings.
        pos_emb_p_norm: ``p`` of the distance ``sum_axis |i - j| ** p`` between positions
            given to ``pos_emb_decay_fn``.
        pos_emb_decay_fn: maps that distance (a tensor) to the covariance of the
            embeddings between positions; ``None``: independent embeddings per position
            (the identity covariance).
        n_chan_pos_emb: channels of the embeddings (``None``: the input channels; only
            ``"concat"`` may change it).
        w_pos_emb_std: scale of the positional embeddings.
        val_pos_emb: also feed the embedded inputs to the values (by default only the
            keys and queries see the embeddings).
        parametrization: ``"ntk"``, the only one of Neural Tangents' attention: every
            weight is ``N(0, 1)`` and the forward pass scales it.

    Shapes: channels-last ``(n, *spatial, C)`` (as ``nn.MultiheadAttention`` with
    ``batch_first=True``) to ``(n, *spatial, n_chan_out)``. ``module(width=w)`` sets
    ``n_chan_out``, ``n_chan_key`` and ``n_chan_val`` to ``w`` (``n_heads`` stays): with
    ``linear_scaling=True`` the twin converges as ``w`` grows; with ``False`` its NNGP is
    right on average but its outputs become Gaussian only as ``n_heads`` grows too.

    The kernel needs the full covariance between positions.

    """

    n_chan_out: int
    n_chan_key: int
    n_chan_val: int
    n_heads: int
    linear_scaling: bool = True
    w_key_std: Std = 1.0
    w_value_std: Std = 1.0
    w_query_std: Std = 1.0
    w_out_std: Std = 1.0
    b_std: Std | None = 0.0
    attention_mechanism: str = "softmax"
    pos_emb_type: str = "none"
    pos_emb_p_norm: float = 2
    pos_emb_decay_fn: Callable[[Tensor], Tensor] | None = None
    n_chan_pos_emb: int | None = None
    w_pos_emb_std: Std = 1.0
    val_pos_emb: bool = False
    parametrization: str = "ntk"
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=-1, spatial=Spatial.MIXING, has_width=True
    )

    def __post_init__(self) -> None:
        for name in ("n_chan_out", "n_chan_key", "n_chan_val", "n_heads"):
            check_positive_int(self, name, getattr(self, name))
        for name in ("w_key_std", "w_value_std", "w_query_std", "w_out_std", "w_pos_emb_std"):
            check_std(self, name, getattr(self, name))
        check_std(self, "b_std", self.b_std, allow_none=True)
        for name in ("linear_scaling", "val_pos_emb"):
            if not isinstance(getattr(self, name), bool):
                raise HyperparameterError(
                    describe(repr(self), f"{name}={getattr(self, name)!r}", "Pass True or False.")
                )
        for name, allowed in (
            ("attention_mechanism", MECHANISMS),
            ("pos_emb_type", POS_EMB_TYPES),
        ):
            value = getattr(self, name)
            if isinstance(value, str) and value.lower() in allowed:
                object.__setattr__(self, name, value.lower())
                continue
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"{name}={value!r}",
                    f"Use one of {', '.join(repr(a) for a in allowed)}.",
                )
            )
        p = self.pos_emb_p_norm
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0 < p < math.inf):
            raise HyperparameterError(
                describe(repr(self), f"pos_emb_p_norm={p!r}", "Use a finite number > 0, e.g. 2.")
            )
        if self.pos_emb_decay_fn is not None and not callable(self.pos_emb_decay_fn):
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"pos_emb_decay_fn of type {type(self.pos_emb_decay_fn).__name__}",
                    "Pass a function of the distance tensor, e.g. lambda d: torch.exp(-d), "
                    "or None.",
                )
            )
        if self.n_chan_pos_emb is not None:
            check_positive_int(self, "n_chan_pos_emb", self.n_chan_pos_emb)
        if self.parametrization != "ntk":
            raise ParametrizationError(_parametrization_message(repr(self), self.parametrization))

    # -- static checks ---------------------------------------------------------------

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if len(facts.shape) < 2:
            raise ShapeError(
                describe(
                    repr(self),
                    f"attention on a flat input of feature shape {facts.shape}, with no "
                    "positions to attend over",
                    "Pass sequences of shape (n, L, C) (or images (n, H, W, C)), and put the "
                    "attention before Flatten or global pooling.",
                )
            )
        if facts.channel_axis == 0:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"its input has channels first, feature shape {facts.shape} (after a Conv)",
                    "Attention takes channels-last inputs (n, L, C), as nn.MultiheadAttention "
                    "with batch_first=True: put nk.ChannelsLast() before it, or start the "
                    "network with Dense or attention.",
                )
            )
        channels = facts.shape[-1]
        if (
            self.pos_emb_type == "sum"
            and self.n_chan_pos_emb is not None
            and self.n_chan_pos_emb != channels
        ):
            raise ShapeError(
                describe(
                    repr(self),
                    f"n_chan_pos_emb={self.n_chan_pos_emb} summed with inputs of {channels} "
                    "channels",
                    "Summed embeddings have the input's channels: leave n_chan_pos_emb=None, "
                    "or use pos_emb_type='concat'.",
                )
            )
        return Facts((*facts.shape[:-1], self.n_chan_out), True, -1)

    # -- infinite width --------------------------------------------------------------

    def _weights(self, channels: int) -> tuple[float, Std]:
        """Weights of the inputs' and the embeddings' covariances in the embedded inputs."""
        pe = sq(self.w_pos_emb_std)
        if self.pos_emb_type != "concat":
            return 1.0, pe
        n_pe = channels if self.n_chan_pos_emb is None else self.n_chan_pos_emb
        total = channels + n_pe
        return channels / total, pe * (n_pe / total)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        spatial = k.spatial_shape
        if not spatial or k.layout != "full":
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"a kernel with layout={k.layout!r} and spatial shape {spatial}",
                    "Attention needs the full covariance between positions: compute the "
                    "network's kernel with Layer.kernel, which selects it.",
                )
            )
        if not self.linear_scaling and self.attention_mechanism != "identity":
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"linear_scaling=False with attention_mechanism="
                    f"{self.attention_mechanism!r}, whose kernel has no closed form",
                    "Use linear_scaling=True, or attention_mechanism='identity'; the finite "
                    "module works for every combination.",
                )
            )
        s = len(spatial)
        channels = k.shape1[-1]
        lead = 1 if k.self_pairs else 2
        same = k.cov2 is k.cov1
        nngp = _flat(k.nngp, lead, s)
        ntk = None if k.ntk is None else _flat(k.ntk, lead, s)
        cov1 = _flat(k.cov1, 1, s)
        cov2 = cov1 if same else _flat(k.cov2, 1, s)

        r = None
        if self.pos_emb_type != "none":
            r = _pos_emb_cov(
                spatial, self.pos_emb_p_norm, self.pos_emb_decay_fn, nngp.dtype, nngp.device
            )
        w_x, w_pe = self._weights(channels)

        def interp(t: Tensor | None) -> Tensor | None:
            if t is None or r is None:
                return t
            return w_x * t + w_pe * r

        if self.linear_scaling:
            from .masking import attention_mask

            positions = nngp.shape[-1]
            keys1 = attention_mask(self, k.mask1, positions)
            keys2 = keys1 if k.mask2 is k.mask1 else attention_mask(self, k.mask2, positions)
            out = self._linear(k.self_pairs, nngp, ntk, cov1, cov2, same, interp, (keys1, keys2))
        else:
            out = self._identity(k.self_pairs, nngp, ntk, cov1, cov2, same, interp, r is None)
        nngp2, ntk2, c1, c2 = out
        cov1_out = _unflat(c1, 1, spatial)
        return k.replace(
            nngp=_unflat(nngp2, lead, spatial),
            ntk=None if ntk2 is None else _unflat(ntk2, lead, spatial),
            cov1=cov1_out,
            cov2=cov1_out if same else _unflat(c2, 1, spatial),
            shape1=(*k.shape1[:-1], self.n_chan_out),
            shape2=(*k.shape2[:-1], self.n_chan_out),
            is_gaussian=True,
        )

    def _linear(
        self,
        self_pairs: bool,
        nngp: Tensor,
        ntk: Tensor | None,
        cov1: Tensor,
        cov2: Tensor,
        same: bool,
        interp: Callable[[Tensor | None], Tensor | None],
        masked_keys: tuple[Tensor | None, Tensor | None] = (None, None),
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        qk = self.w_query_std * self.w_key_std
        ov2 = sq(self.w_out_std * self.w_value_std)
        b2 = None if self.b_std is None else sq(self.b_std)
        val = self.val_pos_emb

        def weights(cov: Tensor, keys: Tensor | None) -> Tensor:
            mixed = given(interp(cov), "the interpolated covariance")
            logits = torch.as_tensor(qk * mixed)
            if keys is not None:  # masked keys: never attended to
                fill = -math.inf if self.attention_mechanism == "softmax" else 0.0
                logits = logits.masked_fill(keys, fill)
            return _mechanism(self.attention_mechanism, logits)

        g1 = weights(cov1, masked_keys[0])
        g2 = g1 if same else weights(cov2, masked_keys[1])

        def weigh(t: Tensor, a: Tensor, b: Tensor) -> Tensor:
            # a: (n1, P, P), b: (n2, P, P); t: (n1, n2, P, P) or self pairs (n, P, P)
            return affine(a @ t @ b.transpose(-1, -2), ov2, b2)

        if self_pairs:
            ga, gb = g1, g1
        else:
            ga, gb = g1.unsqueeze(1), g2.unsqueeze(0)
        nngp_v = interp(nngp) if val else nngp
        out = weigh(nngp_v, ga, gb)  # type: ignore[arg-type]
        ntk_out = None
        if ntk is not None:
            ntk_v = interp(ntk) if val else ntk
            ntk_out = weigh(ntk_v, ga, gb) + 2 * (out if b2 is None else out - b2)  # type: ignore[arg-type]
        c1 = weigh(interp(cov1) if val else cov1, g1, g1)  # type: ignore[arg-type]
        c2 = c1 if same else weigh(interp(cov2) if val else cov2, g2, g2)  # type: ignore[arg-type]
        return out, ntk_out, c1, c2

    def _identity(
        self,
        self_pairs: bool,
        nngp: Tensor,
        ntk: Tensor | None,
        cov1: Tensor,
        cov2: Tensor,
        same: bool,
        interp: Callable[[Tensor | None], Tensor | None],
        no_pos_emb: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        std2 = sq(self.w_query_std * self.w_key_std * self.w_out_std * self.w_value_std)
        b2 = None if self.b_std is None else sq(self.b_std)
        val = self.val_pos_emb
        nngp_i = given(interp(nngp), "the interpolated NNGP")
        cov1_i = given(interp(cov1), "the interpolated covariance")
        cov2_i = cov1_i if same else given(interp(cov2), "the interpolated covariance")
        dot12 = _pair_dot(nngp_i, nngp_i if val else nngp)
        out = affine(dot12 * nngp_i, std2, b2)
        c1 = affine(_pair_dot(cov1_i, cov1_i if val else cov1) * cov1_i, std2, b2)
        c2 = c1 if same else affine(_pair_dot(cov2_i, cov2_i if val else cov2) * cov2_i, std2, b2)
        ntk_out = None
        if ntk is not None:
            ntk_i = given(interp(ntk), "the interpolated NTK")
            if val or no_pos_emb:
                d = 2 * _pair_dot(nngp_i, ntk_i)
            else:
                d = _pair_dot(nngp_i, ntk) + _pair_dot(nngp, ntk_i)
            ntk_out = affine(d * nngp_i + dot12 * (ntk_i + 4 * nngp_i), std2, b2)
        return out, ntk_out, c1, c2

    # -- finite width ----------------------------------------------------------------

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        shape = tuple(in_shape)
        width = self.n_chan_out if ctx.width is None else ctx.width
        return (*shape[:-1], width)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        if ctx.parametrization not in (None, "ntk"):
            raise ParametrizationError(
                _parametrization_message(f"{self!r}.module", ctx.parametrization)
            )
        shape = tuple(int(s) for s in in_shape)
        if len(shape) < 2:
            raise ShapeError(
                describe(
                    repr(self),
                    f"attention on a flat input of feature shape {shape}",
                    "Pass sequences of shape (n, L, C).",
                )
            )
        width = ctx.width
        return GlobalSelfAttentionModule(
            in_channels=shape[-1],
            spatial=shape[:-1],
            n_chan_out=self.n_chan_out if width is None else width,
            n_chan_key=self.n_chan_key if width is None else width,
            n_chan_val=self.n_chan_val if width is None else width,
            n_heads=self.n_heads,
            linear_scaling=self.linear_scaling,
            qk_std=float(self.w_query_std) * float(self.w_key_std),
            ov_std=float(self.w_out_std) * float(self.w_value_std),
            b_std=None if self.b_std is None else float(self.b_std),
            attention_mechanism=self.attention_mechanism,
            pos_emb_type=self.pos_emb_type,
            pos_emb_cov=self._twin_pos_emb_cov(shape[:-1], ctx),
            n_chan_pos_emb=self.n_chan_pos_emb,
            w_pos_emb_std=float(self.w_pos_emb_std),
            val_pos_emb=self.val_pos_emb,
            generator=ctx.generator,
            dtype=ctx.dtype,
            device=ctx.device,
        )

    def _twin_pos_emb_cov(self, spatial: tuple[int, ...], ctx: ModuleContext) -> Tensor | None:
        if self.pos_emb_type == "none" or self.pos_emb_decay_fn is None:
            return None
        dtype = ctx.dtype or torch.get_default_dtype()
        return _pos_emb_cov(spatial, self.pos_emb_p_norm, self.pos_emb_decay_fn, dtype, ctx.device)


def _parametrization_message(where: str, value: Any) -> str:
    return describe(
        where,
        f"parametrization={value!r}",
        "Neural Tangents' GlobalSelfAttention exists in the NTK parametrization only (every "
        "weight N(0, 1), scaled in the forward pass): use parametrization='ntk' or None; "
        "the NNGP is the same in every parametrization.",
    )


class GlobalSelfAttentionModule(nn.Module):
    """Finite twin of :class:`GlobalSelfAttention` (Neural Tangents' ``apply_fn``).

    Parameters, all ``N(0, 1)``: ``w_key`` (and ``w_query`` without linear scaling) of
    shape ``(heads, C_k, n_chan_key)``, ``w_value`` ``(heads, C_v, n_chan_val)``,
    ``w_out`` ``(n_chan_val * heads, n_chan_out)`` (rows: value channel major, head
    minor), ``bias`` ``(n_chan_out,)`` and the positional embeddings ``pos_emb``
    ``(P, n_chan_pos_emb)``; ``C_k``/``C_v`` are the channels of the (embedded) inputs of
    the keys and of the values.
    """

    pos_emb_chol: Tensor | None

    def __init__(
        self,
        in_channels: int,
        spatial: tuple[int, ...],
        n_chan_out: int,
        n_chan_key: int,
        n_chan_val: int,
        n_heads: int,
        linear_scaling: bool,
        qk_std: float,
        ov_std: float,
        b_std: float | None,
        attention_mechanism: str,
        pos_emb_type: str,
        pos_emb_cov: Tensor | None,
        n_chan_pos_emb: int | None,
        w_pos_emb_std: float,
        val_pos_emb: bool,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        opts: dict[str, Any] = {"generator": generator, "dtype": dtype, "device": device}
        self.spatial = tuple(spatial)
        self.n_heads = n_heads
        self.n_chan_key = n_chan_key
        self.n_chan_val = n_chan_val
        self.n_chan_out = n_chan_out
        self.linear_scaling = linear_scaling
        self.qk_std = qk_std
        self.ov_std = ov_std
        self.b_std = b_std
        self.attention_mechanism = attention_mechanism
        self.pos_emb_type = pos_emb_type
        self.w_pos_emb_std = w_pos_emb_std
        self.val_pos_emb = val_pos_emb
        positions = math.prod(self.spatial)
        c_keys = c_vals = in_channels
        self.pos_emb: nn.Parameter | None = None
        if pos_emb_type != "none":
            n_pe = in_channels if n_chan_pos_emb is None else n_chan_pos_emb
            self.pos_emb = nn.Parameter(torch.randn(positions, n_pe, **opts))
            if pos_emb_type == "concat":
                c_keys += n_pe
                if val_pos_emb:
                    c_vals += n_pe
        chol = None
        if pos_emb_cov is not None:
            try:
                chol = torch.linalg.cholesky(pos_emb_cov.to(dtype=dtype, device=device))
            except RuntimeError:  # torch.linalg.LinAlgError derives from RuntimeError
                raise HyperparameterError(
                    describe(
                        "GlobalSelfAttention.module",
                        "pos_emb_decay_fn gives a positional covariance that is not "
                        "positive definite",
                        "Use a positive definite decay (e.g. lambda d: torch.exp(-d)) to "
                        "sample embeddings for the finite module.",
                    )
                ) from None
        self.register_buffer("pos_emb_chol", chol)
        self.w_key = nn.Parameter(torch.randn(n_heads, c_keys, n_chan_key, **opts))
        self.w_query = (
            None
            if linear_scaling
            else nn.Parameter(torch.randn(n_heads, c_keys, n_chan_key, **opts))
        )
        self.w_value = nn.Parameter(torch.randn(n_heads, c_vals, n_chan_val, **opts))
        self.w_out = nn.Parameter(torch.randn(n_heads * n_chan_val, n_chan_out, **opts))
        self.bias = None if b_std is None else nn.Parameter(torch.randn(n_chan_out, **opts))

    def forward(self, x: Tensor) -> Tensor:
        """Attend over all positions of ``(n, *spatial, C)``."""
        n = x.shape[0]
        spatial = tuple(x.shape[1:-1])
        x = x.reshape(n, -1, x.shape[-1])  # (n, P, C)
        keys_in, vals_in = x, x
        if self.pos_emb is not None:
            pe: Tensor = self.pos_emb
            if self.pos_emb_chol is not None:
                pe = self.pos_emb_chol @ pe
            pe = pe * self.w_pos_emb_std
            if self.pos_emb_type == "sum":
                keys_in = x + pe
            else:
                keys_in = torch.cat([x, pe.expand(n, *pe.shape)], dim=-1)
            if self.val_pos_emb:
                vals_in = keys_in
        keys = torch.einsum("npc,hck->hnpk", keys_in, self.w_key)
        queries = (
            keys if self.w_query is None else torch.einsum("npc,hck->hnpk", keys_in, self.w_query)
        )
        scale = keys_in.shape[-1] * self.n_chan_key ** (1.0 if self.linear_scaling else 0.5)
        g = queries @ keys.transpose(-1, -2) * (self.qk_std / scale)  # (H, n, P, P)
        g = _mechanism(self.attention_mechanism, g)
        values = torch.einsum("npc,hcv->hnpv", vals_in, self.w_value)
        # (n, P, dv * H) with the head index fastest, as Neural Tangents lays them out
        heads = (g @ values).permute(1, 2, 3, 0).reshape(n, x.shape[1], -1)
        norm = math.sqrt(self.n_chan_val * self.n_heads * vals_in.shape[-1])
        out = heads @ self.w_out * (self.ov_std / norm)
        if self.bias is not None and self.b_std is not None:
            out = out + self.b_std * self.bias
        return out.reshape(n, *spatial, self.n_chan_out)

    def extra_repr(self) -> str:
        return (
            f"n_heads={self.n_heads}, n_chan_key={self.n_chan_key}, "
            f"n_chan_val={self.n_chan_val}, n_chan_out={self.n_chan_out}, "
            f"mechanism={self.attention_mechanism!r}, linear_scaling={self.linear_scaling}, "
            f"pos_emb={self.pos_emb_type!r}"
        )
