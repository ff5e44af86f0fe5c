r"""Monte Carlo estimates of the NNGP and the NTK from random finite networks.

Every network description builds finite twins (:meth:`Layer.module`). Averaging the
empirical kernels of many independently initialised twins estimates the kernels of the
finite network; as the width grows they converge to the closed form of
:meth:`Layer.kernel` (the error shrinks like :math:`1/\sqrt{\text{width} \times
\text{samples}}` plus a bias of order :math:`1/\text{width}`).

For a twin :math:`f_\theta` with :math:`m` outputs per example (the readout units,
i.i.d. at initialisation) and inputs :math:`x_i` (``x1``) and :math:`x'_j` (``x2``), one
sample gives

.. math::
    \hat K_{ij} = \frac{1}{m} \sum_{o=1}^{m} f_{\theta,o}(x_i)\, f_{\theta,o}(x'_j),
    \qquad
    \hat\Theta_{ij} = \frac{1}{m} \sum_{o=1}^{m}
        \frac{\partial f_{\theta,o}(x_i)}{\partial \theta} \cdot
        \frac{\partial f_{\theta,o}(x'_j)}{\partial \theta},

the second being the trace over outputs of the empirical NTK :math:`J(x) J(x')^\top`
divided by :math:`m`, with :math:`J` the Jacobian with respect to every parameter.
The estimates are the means of :math:`\hat K` and :math:`\hat\Theta` over ``n_samples``
independent twins, and their standard errors the standard deviations over samples
divided by :math:`\sqrt{\text{n\_samples}}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

from ._functional import functional_call
from ._validation import (
    as_tensor,
    check_batch,
    check_float_dtype,
    check_generator,
    check_pair,
    check_parametrization,
    check_positive_int,
    given,
    parse_get,
)
from .errors import InputTypeError, describe
from .layers.base import Layer

__all__ = ["MonteCarloKernel", "monte_carlo_kernel"]

_WHERE = "monte_carlo_kernel"


@dataclass(frozen=True)
class MonteCarloKernel:
    """Monte Carlo estimates of a network's kernels, with their standard errors.

    Attributes:
        nngp: estimate of the NNGP kernel, shape ``(n1, n2)``.
        ntk: estimate of the NTK, shape ``(n1, n2)``, or ``None`` when not asked for.
        nngp_stderr: standard error of each entry of ``nngp``, shape ``(n1, n2)``
            (``inf`` when ``n_samples == 1``).
        ntk_stderr: standard error of each entry of ``ntk``, or ``None``.
        n_samples: the number of random twins averaged.
        width: the hidden width of the twins (``None``: the widths the layers declare).

    """

    nngp: Tensor
    ntk: Tensor | None
    nngp_stderr: Tensor
    ntk_stderr: Tensor | None
    n_samples: int
    width: int | None

    def __repr__(self) -> str:
        ntk = None if self.ntk is None else tuple(self.ntk.shape)
        return (
            f"MonteCarloKernel(nngp={tuple(self.nngp.shape)}, ntk={ntk}, "
            f"dtype={self.nngp.dtype}, n_samples={self.n_samples}, width={self.width})"
        )


class _Welford:
    """Running mean and sum of squared deviations of a stream of equal-shape tensors."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def add(self, x: Tensor) -> None:
        self.count += 1
        if self.mean is None:
            self.mean = x.clone()
            self.m2 = torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)  # type: ignore[operator]

    def stderr(self) -> Tensor:
        mean, m2 = given(self.mean, "the running mean"), given(self.m2, "the running m2")
        if self.count < 2:
            return torch.full_like(mean, math.inf)
        return torch.sqrt(m2 / (self.count - 1) / self.count)


def monte_carlo_kernel(
    net: Layer,
    x1: Any,
    x2: Any = None,
    n_samples: int = 64,
    width: int | None = None,
    parametrization: str | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    batch_size: int | None = None,
) -> MonteCarloKernel:
    r"""Estimate the NNGP and the NTK of ``net`` by averaging over random finite twins.

    Each of the ``n_samples`` twins is a fresh ``net.module(in_shape=x1.shape[1:],
    width=width, parametrization=parametrization, generator=generator, dtype=dtype)``.
    With :math:`m` outputs per example, a twin contributes

    .. math::
        \hat K = \frac{1}{m} F_1 F_2^\top, \qquad
        \hat\Theta_{ij} = \frac{1}{m} \sum_{o} J_{1,io} \cdot J_{2,jo},

    where :math:`F_1` (shape ``(n1, m)``) are the outputs on ``x1`` and :math:`J_{1,io}`
    the gradient of output :math:`o` at :math:`x_{1,i}` with respect to all parameters
    (outputs with several feature axes are flattened: :math:`m` counts all of them).
    The results are the means over twins; the standard errors are the standard
    deviations over twins divided by :math:`\sqrt{\text{n\_samples}}`.

    Compare with ``net.kernel(x1, x2)`` built with the same parametrization. In the
    standard parametrization the NTK depends on the finite widths (and ``FanInConcat``
    weights its branches by their widths): keep ``width=None`` so that the twins have
    the widths the closed form uses.

    Args:
        net: the network description (any :class:`~neural_kernels.Layer`).
        x1: inputs of shape ``(n1, *features)``.
        x2: inputs of shape ``(n2, *features)``; ``None`` means ``x1`` (the estimates
            are then exactly symmetric).
        n_samples: number of independent random twins to average (``>= 1``).
        width: overrides every hidden width of the twins (the readout keeps its own);
            ``None`` keeps the layers' widths.
        parametrization: ``"ntk"`` or ``"standard"`` for every layer of the twins;
            ``None`` keeps each layer's own.
        get: ``"nngp"``, ``"ntk"`` or both. The NNGP is always estimated (it costs one
            forward pass); the NTK only when asked for.
        generator: random generator for the initialisations (reproducible estimates);
            ``None`` uses torch's global generator.
        dtype: dtype of the twins and of the computation; default the inputs' dtype
            (integer inputs become float64).
        batch_size: examples per forward pass and per Jacobian block. Working memory
            of the NTK is about ``2 * batch_size * m * n_params`` numbers (default:
            all examples at once).

    Returns:
        A :class:`MonteCarloKernel` whose ``nngp``, ``ntk`` and standard errors have
        shape ``(n1, n2)`` and the computation's dtype. The estimates are not
        differentiable (inputs are detached).

    Raises:
        InputTypeError: ``net`` is not a layer, or the inputs or options have the
            wrong type.
        ShapeError: the inputs are not batches or disagree in feature shape.
        NonFiniteError: the inputs hold NaN or infinity.
        HyperparameterError: ``n_samples``, ``width`` or ``batch_size`` is not a
            positive integer, or ``get`` names an unknown kernel.
        ParametrizationError: ``parametrization`` is unknown.
        LayerCompatibilityError: the network cannot take these inputs (e.g. it ends
            with several branches).

    Example:
        >>> import torch, neural_kernels as nk
        >>> net = nk.Sequential(nk.Dense(256), nk.ReLU(), nk.Dense(4))
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> mc = nk.monte_carlo_kernel(net, x, n_samples=8)
        >>> mc.nngp.shape, mc.ntk.shape
        (torch.Size([5, 5]), torch.Size([5, 5]))

    """
    if not isinstance(net, Layer):
        raise InputTypeError(
            describe(
                _WHERE,
                f"net has type {type(net).__name__}",
                "Pass a network description such as nk.Sequential(nk.Dense(512), nk.ReLU(), "
                "nk.Dense(1)); for the kernels of any nn.Module use the empirical kernels.",
            )
        )
    names = parse_get(get, _WHERE)
    want_ntk = "ntk" in names
    check_positive_int(_WHERE, "n_samples", n_samples)
    if width is not None:
        check_positive_int(_WHERE, "width", width)
    if batch_size is not None:
        check_positive_int(_WHERE, "batch_size", batch_size)
    if parametrization is not None:
        check_parametrization(_WHERE, parametrization)
    check_generator(_WHERE, generator)
    check_float_dtype(_WHERE, dtype)

    a = as_tensor(x1, "x1", _WHERE)
    check_batch(a, "x1", _WHERE)
    symmetric = x2 is None
    b = a
    if not symmetric:
        b = as_tensor(x2, "x2", _WHERE)
        check_batch(b, "x2", _WHERE)
        a, b = check_pair(a, b, _WHERE)
    dtype = a.dtype if dtype is None else dtype
    a = a.detach().to(dtype)
    b = a if symmetric else b.detach().to(dtype)
    in_shape = tuple(a.shape[1:])
    net.out_shape(in_shape)  # refuses a network that cannot take these inputs

    step1 = a.shape[0] if batch_size is None else int(batch_size)
    step2 = b.shape[0] if batch_size is None else int(batch_size)
    nngp_acc, ntk_acc = _Welford(), _Welford()
    for _ in range(int(n_samples)):
        model = net.module(
            in_shape,
            width=width,
            parametrization=parametrization,
            generator=generator,
            dtype=dtype,
            device=a.device,
        )
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        f1 = _outputs(model, a, step1)
        f2 = f1 if symmetric else _outputs(model, b, step2)
        nngp = f1 @ f2.T / f1.shape[1]
        nngp_acc.add(0.5 * (nngp + nngp.T) if symmetric else nngp)
        if want_ntk:
            ntk_acc.add(_empirical_ntk(model, params, buffers, a, b, symmetric, step1, step2))

    return MonteCarloKernel(
        nngp=given(nngp_acc.mean, "the NNGP mean"),
        ntk=ntk_acc.mean if want_ntk else None,
        nngp_stderr=nngp_acc.stderr(),
        ntk_stderr=ntk_acc.stderr() if want_ntk else None,
        n_samples=int(n_samples),
        width=width,
    )


def _outputs(model: nn.Module, x: Tensor, step: int) -> Tensor:
    """The twin's outputs on ``x``, flattened to ``(n, m)``, ``step`` examples at a time."""
    with torch.no_grad():
        parts = [model(x[i : i + step]) for i in range(0, x.shape[0], step)]
    return torch.cat([p.reshape(p.shape[0], -1) for p in parts])


def _jacobian_fn(
    model: nn.Module, buffers: dict[str, Tensor]
) -> Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]:
    """Per-example Jacobians: ``(params, x (b, *features)) -> {name: (b, m, n_param)}``."""

    def single(params: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return out.reshape(-1)

    per_example = vmap(jacrev(single), in_dims=(None, 0), randomness="different")

    def jac(params: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        j = per_example(params, x)
        return {k: v.reshape(v.shape[0], v.shape[1], -1) for k, v in j.items()}

    return jac


def _contract(j1: dict[str, Tensor], j2: dict[str, Tensor]) -> Tensor:
    """``sum_o J1[i, o] . J2[j, o] / m`` summed over every parameter tensor."""
    out: Tensor | None = None
    for name, a in j1.items():
        term = torch.einsum("iop,jop->ij", a, j2[name])
        out = term if out is None else out + term
    m = next(iter(j1.values())).shape[1]
    return given(out, "the contraction") / m


def _empirical_ntk(
    model: nn.Module,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    a: Tensor,
    b: Tensor,
    symmetric: bool,
    step1: int,
    step2: int,
) -> Tensor:
    """Empirical NTK of one twin averaged over its outputs, in blocks of examples."""
    n1, n2 = a.shape[0], b.shape[0]
    out = a.new_zeros((n1, n2))
    if not params:  # a network without parameters has a zero NTK
        return out
    jac = _jacobian_fn(model, buffers)
    if not symmetric and step1 >= n1 and step2 >= n2:  # one Jacobian call for both inputs
        j = jac(params, torch.cat([a, b]))
        return _contract({k: v[:n1] for k, v in j.items()}, {k: v[n1:] for k, v in j.items()})
    for i0 in range(0, n1, step1):
        i1 = min(n1, i0 + step1)
        j_a = jac(params, a[i0:i1])
        for j0 in range(i0 if symmetric else 0, n2, step2):
            j1 = min(n2, j0 + step2)
            if symmetric and j0 == i0:
                out[i0:i1, j0:j1] = _contract(j_a, j_a)
                continue
            block = _contract(j_a, jac(params, b[j0:j1]))
            out[i0:i1, j0:j1] = block
            if symmetric:
                out[j0:j1, i0:i1] = block.T
    if symmetric:
        out = 0.5 * (out + out.T)
    return out
