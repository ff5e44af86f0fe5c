r"""The affine step shared by the convolution-like layers with weights.

After the unscaled linear map of the covariance (a sum over filter taps, ``conv`` below)
every such layer scales and shifts as ``Conv`` does:

.. math::
    K' = \frac{\sigma_w^2}{|F|}\,\mathrm{conv}(K) + \sigma_b^2 B, \qquad
    \Theta' = K' + \frac{\sigma_w^2}{|F|}\,\mathrm{conv}(\Theta) \ (\text{ntk}), \quad
    \Theta' = N_\text{in}\,\mathrm{conv}(K) + \frac{\sigma_w^2}{|F|}
        \mathrm{conv}(\Theta) + [\text{bias}]\, B \ (\text{standard}),

with :math:`B` the covariance pattern of the bias: ``1`` everywhere for a shared bias,
the identity over position pairs for a bias per position (``ConvLocal``).
"""

from __future__ import annotations

from torch import Tensor

from ..core.block import KernelBlock
from ._affine import Std, add_scaled, affine, sq

__all__ = ["affine_conv"]


def _shift(value: Std, pattern: Tensor | None) -> Std:
    return value if pattern is None else value * pattern


def affine_conv(
    k: KernelBlock,
    conv: KernelBlock,
    *,
    w_std: Std,
    b_std: Std | None,
    parametrization: str,
    scale: float,
    n_in: int,
    bias_pair: Tensor | None = None,
    bias_cov: tuple[Tensor | None, Tensor | None] = (None, None),
) -> dict[str, object]:
    r"""Fields of the output block: ``nngp``, ``ntk``, ``cov1``, ``cov2``.

    Args:
        k: the input block (its ``ntk`` says whether the NTK is computed).
        conv: the block after the unscaled tap sums (same fields, output geometry).
        w_std: weight standard deviation (number or 0-d tensor).
        b_std: bias standard deviation, ``None`` for no bias.
        parametrization: ``"ntk"`` or ``"standard"``.
        scale: ``1 / |F|``, the filter average.
        n_in: input channels (the standard NTK's :math:`N_\text{in}`).
        bias_pair: the bias pattern broadcast against ``nngp`` (``None``: shared).
        bias_cov: the bias patterns of ``cov1`` and ``cov2``.

    """
    w2 = sq(w_std) * scale
    b2: Std = 0.0 if b_std is None else sq(b_std)
    nngp = affine(conv.nngp, w2, _shift(b2, bias_pair))
    ntk = None
    if conv.ntk is not None and k.ntk is not None:
        if parametrization == "ntk":
            ntk = add_scaled(nngp, conv.ntk, w2)
        else:
            ntk = affine(conv.nngp, float(n_in), 0.0) + w2 * conv.ntk
            if b_std is not None:
                ntk = ntk + _shift(1.0, bias_pair)
    same = conv.cov2 is conv.cov1
    cov1 = affine(conv.cov1, w2, _shift(b2, bias_cov[0]))
    cov2 = cov1 if same else affine(conv.cov2, w2, _shift(b2, bias_cov[1]))
    return {"nngp": nngp, "ntk": ntk, "cov1": cov1, "cov2": cov2}
