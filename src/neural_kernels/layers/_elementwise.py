r"""The base of every activation: an elementwise function known through its dual.

For :math:`(u, v) \sim \mathcal N\!\left(0, \begin{pmatrix} q_1 & k \\ k & q_2
\end{pmatrix}\right)` the dual of :math:`\phi` is the pair

.. math::
    \hat\phi(k; q_1, q_2) = \mathbb E[\phi(u)\phi(v)], \qquad
    \hat{\dot\phi}(k; q_1, q_2) = \mathbb E[\phi'(u)\phi'(v)],

and an activation layer maps :math:`K \mapsto \hat\phi(K)` and
:math:`\Theta \mapsto \Theta\, \hat{\dot\phi}(K)`. A subclass writes ``fn`` (the
torch function, used by the finite twin and by quadrature) and ``dual``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._validation import given
from ..core.block import KernelBlock
from ..core.protocol import FactsFlow, Flow, ModuleContext, Requirements, Variances
from ._safe import safe_sqrt
from .base import Layer, one_block, one_facts

__all__ = ["Elementwise", "ElementwiseModule"]


@dataclass(frozen=True)
class Elementwise(Layer):
    """An elementwise nonlinearity ``phi``, defined by ``fn`` and its ``dual``."""

    requirements: ClassVar[Requirements] = Requirements(
        gaussian_input=True, variances=Variances.EXACT
    )
    #: Whether :meth:`dual` works on the correlation clamped to ``[-1, 1]`` itself (the
    #: arc-cosine duals, quadrature); otherwise covariances are clamped before the dual.
    clamps_correlation: ClassVar[bool] = False

    def fn(self, x: Tensor) -> Tensor:
        """The activation applied elementwise to a tensor of any shape."""
        raise NotImplementedError

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        """``(E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` for the covariance ``[[q1, k], [k, q2]]``.

        Args:
            k: covariances, any shape.
            q1: variances of ``u``, broadcastable against ``k``.
            q2: variances of ``v``, broadcastable against ``k``.
            want_dot: whether the derivative dual is needed (``None`` may be returned
                otherwise).

        Returns:
            Two tensors of the shape of ``k``.

        """
        raise NotImplementedError

    def dual_var(self, q: Tensor) -> Tensor:
        """``E[phi(u)^2]`` for ``u ~ N(0, q)``; shape of ``q``."""
        return self.dual(q, q, q, False)[0]

    def arccos_slopes(self) -> tuple[float, float] | None:
        """``(a, b)`` if ``phi(x) = a min(x, 0) + b max(x, 0)`` (its dual is an arc-cosine)."""
        return None

    def dual_kernels(
        self, k: Tensor, q1: Tensor, q2: Tensor, ntk: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """``(E[phi(u) phi(v)], ntk E[phi'(u) phi'(v)])``: the layer's map of both kernels.

        Subclasses with a fused implementation override this; the default calls
        :meth:`dual`.
        """
        nngp, dot = self.dual(k, q1, q2, ntk is not None)
        if ntk is None:
            return nngp, None
        return nngp, ntk * given(dot, "the derivative dual")

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        return dataclasses.replace(facts, is_gaussian=False)

    def _bounded_kernels(
        self, k: Tensor, q1: Tensor, q2: Tensor, ntk: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        r""":meth:`dual_kernels` on covariances clamped to :math:`|K| \le \sqrt{q_1 q_2}`.

        Rounding can push a covariance past the geometric mean of its variances, where
        a dual that is not written in terms of the correlation (``exp``, ``arcsin`` of a
        ratio, polynomials) leaves its domain; a layer map of slope above one (the
        chaotic phase) would then amplify the excess without bound.
        """
        if not self.clamps_correlation:
            bound = safe_sqrt(q1 * q2)
            k = torch.minimum(torch.maximum(k, -bound), bound)
        return self.dual_kernels(k, q1, q2, ntk)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        q1, q2 = k.marginals()
        nngp, ntk = self._bounded_kernels(k.nngp, q1, q2, k.ntk)
        if k.self_pairs:
            cov1 = cov2 = nngp
        else:
            cov1 = self._self_dual(k, k.cov1)
            cov2 = cov1 if k.cov2 is k.cov1 else self._self_dual(k, k.cov2)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    def _self_dual(self, k: KernelBlock, cov: Tensor) -> Tensor:
        """The dual applied to a same-example covariance (variances, or a full layout)."""
        if k.cov_is_variance:
            return self.dual_var(cov)
        qa, qb = k.self_marginals(cov)
        return self._bounded_kernels(cov, qa, qb, None)[0]

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return ElementwiseModule(self)


class ElementwiseModule(nn.Module):
    """Finite twin of an activation: applies ``layer.fn`` elementwise."""

    def __init__(self, layer: Elementwise) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation to ``x`` of any shape."""
        return self.layer.fn(x)

    def extra_repr(self) -> str:
        return repr(self.layer)
