r"""GPyTorch kernels from any architecture: :class:`NeuralKernel` (needs the ``gpytorch`` extra).

``NeuralKernel(net, get="nngp")`` is a ``gpytorch.kernels.Kernel`` whose covariance is the
NNGP (or NTK) of the infinitely wide network ``net``, so every architecture of the library
plugs into GPyTorch and BoTorch models::

    import neural_kernels as nk
    from botorch.models import SingleTaskGP

    net = nk.Sequential(nk.Dense(1), nk.ReLU(), nk.Dense(1), nk.ReLU(), nk.Dense(1))
    model = SingleTaskGP(train_x, train_y, covar_module=nk.gpytorch.NeuralKernel(net))

The weight and bias standard deviations :math:`\sigma_w, \sigma_b` of the network's
``Dense``/``Conv`` layers are positive-constrained raw parameters (``raw_w_std``,
``raw_b_std``, softplus by default), one pair for the whole network (``tie="shared"``) or
one per layer (``tie="per_layer"``), initialised from the network's own values, so the
marginal likelihood fits them. A ``b_std`` of exactly 0 starts at ``1e-3`` (a softplus never
reaches 0); ``b_std=None`` means no bias and no parameter. For
``Dense -> (ReLU -> Dense) x depth`` the NNGP is

.. math::
    K^0 = \sigma_w^2\,\frac{x\cdot x'}{d} + \sigma_b^2, \qquad
    K^{l+1} = \frac{\sigma_w^2}{2\pi}\sqrt{K^l_{11}K^l_{22}}\,
    (\sin\theta + (\pi-\theta)\cos\theta) + \sigma_b^2,

the kernel of BoTorch's ``InfiniteWidthBNNKernel`` with ``weight_var = \sigma_w^2``,
``bias_var = \sigma_b^2`` (without its arccos clamp).

Shapes: ``x1 (*batch, n1, d)``, ``x2 (*batch, n2, d)`` give ``(*batch, n1, n2)``;
``diag=True`` gives ``(*batch, n1)``. With ``in_shape`` (e.g. ``(1, 8, 8)`` for a
convolutional net) each row of ``d = prod(in_shape)`` features is reshaped to it.
Kernel batch shapes (``batch_shape=(m,)``) give each batch its own stds. The kernel is
computed in the inputs' dtype (use float64 for Gaussian processes); its parameters
are float64 from the start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._stds import check_network, check_tie, initial_stds, std_layers, with_stds
from .errors import HyperparameterError, ShapeError, describe
from .layers.base import Layer

try:
    from gpytorch.constraints import Interval, Positive
    from gpytorch.kernels import Kernel as _GpyKernel
except ImportError as exc:  # pragma: no cover (exercised without the extra)
    raise ImportError(
        "neural_kernels.gpytorch needs GPyTorch: pip install 'neural-kernels[gpytorch]'"
    ) from exc

__all__ = ["NeuralKernel"]

_GETS = ("nngp", "ntk")
#: Largest number of example pairs of a flattened batch computed in one kernel call.
_FLAT_PAIRS = 2**22


class NeuralKernel(_GpyKernel):
    """The NNGP or NTK of an infinitely wide network as a GPyTorch kernel.

    Args:
        net: a network of neural_kernels layers, e.g.
            ``nk.Sequential(nk.Dense(1), nk.ReLU(), nk.Dense(1))``.
        get: ``"nngp"`` (the prior of the Bayesian network) or ``"ntk"`` (the
            neural tangent kernel).
        tie: ``"shared"`` (one ``w_std``/``b_std`` for all layers) or ``"per_layer"``.
        in_shape: feature shape of one input of the network (default ``(d,)``); inputs
            ``(..., d)`` are reshaped to ``(N, *in_shape)``.
        batch_shape: kernel batch shape (independent stds per batch entry).
        w_std_constraint: constraint of ``w_std`` (default ``Positive()``).
        b_std_constraint: constraint of ``b_std`` (default ``Positive()``).
        **kwargs: passed to ``gpytorch.kernels.Kernel`` (e.g. ``active_dims``).

    Attributes:
        w_std: ``(*batch_shape, n_w)`` weight stds (``n_w`` is 1 when shared).
        b_std: ``(*batch_shape, n_b)`` bias stds of the layers with a bias.

    """

    has_lengthscale = False

    def __init__(
        self,
        net: Layer,
        get: str = "nngp",
        *,
        tie: str = "shared",
        in_shape: Sequence[int] | None = None,
        batch_shape: torch.Size | Sequence[int] | None = None,
        w_std_constraint: Interval | None = None,
        b_std_constraint: Interval | None = None,
        **kwargs: Any,
    ) -> None:
        where = "nk.gpytorch.NeuralKernel"
        check_network(where, net)
        if get not in _GETS:
            raise HyperparameterError(
                describe(where, f"got get={get!r}", "Use get='nngp' or get='ntk'.")
            )
        check_tie(where, tie)
        if not std_layers(net):
            raise HyperparameterError(
                describe(
                    where,
                    f"the network {net!r} has no layer with a w_std",
                    "Give it at least one Dense or Conv layer.",
                )
            )
        super().__init__(batch_shape=torch.Size(batch_shape or ()), **kwargs)
        self.net = net
        self.get = get
        self.tie = tie
        self.in_shape = None if in_shape is None else tuple(int(s) for s in in_shape)
        ws, bs = initial_stds(net, tie)
        self._bias_slots = [i for i, b in enumerate(bs) if b is not None]
        n_w, n_b = len(ws), len(self._bias_slots)
        self.register_parameter(
            "raw_w_std",
            torch.nn.Parameter(torch.zeros(*self.batch_shape, n_w, dtype=torch.float64)),
        )
        self.register_constraint("raw_w_std", w_std_constraint or Positive())
        self.initialize(w_std=torch.tensor(ws, dtype=torch.float64).expand(*self.batch_shape, n_w))
        if n_b:
            self.register_parameter(
                "raw_b_std",
                torch.nn.Parameter(torch.zeros(*self.batch_shape, n_b, dtype=torch.float64)),
            )
            self.register_constraint("raw_b_std", b_std_constraint or Positive())
            b0 = torch.tensor([bs[i] for i in self._bias_slots], dtype=torch.float64)
            self.initialize(b_std=_away_from_zero(b0).expand(*self.batch_shape, n_b))

    # -- constrained parameters -------------------------------------------------------

    @property
    def w_std(self) -> Tensor:
        return self.raw_w_std_constraint.transform(self.raw_w_std)

    @w_std.setter
    def w_std(self, value: Any) -> None:
        self._set("raw_w_std", value)

    @property
    def b_std(self) -> Tensor | None:
        if not self._bias_slots:
            return None
        return self.raw_b_std_constraint.transform(self.raw_b_std)

    @b_std.setter
    def b_std(self, value: Any) -> None:
        if not self._bias_slots:
            raise HyperparameterError(
                describe(
                    "nk.gpytorch.NeuralKernel",
                    "b_std was set but the network has no bias (b_std=None everywhere)",
                    "Give a layer b_std=0.0 or more to fit a bias.",
                )
            )
        self._set("raw_b_std", value)

    def _set(self, name: str, value: Any) -> None:
        raw = getattr(self, name)
        value = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
        constraint = getattr(self, f"{name}_constraint")
        self.initialize(**{name: constraint.inverse_transform(value.expand_as(raw))})

    # -- the kernel -------------------------------------------------------------------

    def network(self, index: tuple[int, ...] = ()) -> Layer:
        """The network with this kernel's current stds (of batch entry ``index``)."""
        ws = list(self.w_std[index].unbind(-1))
        bs: list[Any] = [None] * (len(ws) if self.tie == "per_layer" else 1)
        if self._bias_slots:
            for slot, b in zip(self._bias_slots, self.b_std[index].unbind(-1), strict=True):  # type: ignore[index]
                bs[slot] = b
        return with_stds(self.net, ws, bs)

    def __call__(self, x1: Any, x2: Any = None, *args: Any, **kwargs: Any) -> Any:
        """GPyTorch's call, after checking that ``x1`` and ``x2`` have equal feature sizes."""
        if (
            self.active_dims is None
            and isinstance(x1, Tensor)
            and isinstance(x2, Tensor)
            and min(x1.dim(), x2.dim()) >= 2
            and x1.shape[-1] != x2.shape[-1]
        ):
            raise ShapeError(
                describe(
                    "nk.gpytorch.NeuralKernel",
                    f"x1 has {x1.shape[-1]} features and x2 {x2.shape[-1]}",
                    "Pass inputs with the same number of features (the network's input size).",
                )
            )
        return super().__call__(x1, x2, *args, **kwargs)

    def forward(
        self,
        x1: Tensor,
        x2: Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params: Any,
    ) -> Tensor:
        where = "nk.gpytorch.NeuralKernel"
        if last_dim_is_batch:
            raise ShapeError(
                describe(
                    where,
                    "got last_dim_is_batch=True",
                    "Wrap the kernel in an additive structure instead; each network sees "
                    "all features of an input.",
                )
            )
        d = x1.shape[-1]
        if x2.shape[-1] != d:
            raise ShapeError(
                describe(where, f"x1 has {d} features and x2 {x2.shape[-1]}", "Pass equal sizes.")
            )
        if self.in_shape is not None and math.prod(self.in_shape) != d:
            raise ShapeError(
                describe(
                    where,
                    f"inputs have {d} features but in_shape={self.in_shape} holds "
                    f"{math.prod(self.in_shape)}",
                    "Pass inputs of prod(in_shape) features or fix in_shape.",
                )
            )
        same = x1 is x2 or (x1.shape == x2.shape and torch.equal(x1, x2))
        batch = torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2], self.batch_shape)
        n1, n2 = x1.shape[-2], x2.shape[-2]
        b = math.prod(batch)
        X1 = x1.expand(*batch, n1, d).reshape(b, n1, d)
        X2 = X1 if same else x2.expand(*batch, n2, d).reshape(b, n2, d)
        if len(self.batch_shape) == 0:
            out = self._batched(self.network(), X1, X2, same, diag)
        else:
            index = torch.arange(math.prod(self.batch_shape)).reshape(self.batch_shape)
            index = index.expand(*batch).reshape(b)
            nets: dict[int, Layer] = {}
            parts = []
            for i in range(b):
                j = int(index[i])
                if j not in nets:
                    nets[j] = self.network(tuple(int(t) for t in _unravel(j, self.batch_shape)))
                parts.append(self._batched(nets[j], X1[i : i + 1], X2[i : i + 1], same, diag))
            out = torch.cat(parts)
        return out.reshape(*batch, n1) if diag else out.reshape(*batch, n1, n2)

    def _rows(self, x: Tensor) -> Tensor:
        """``(N, d)`` inputs reshaped to the network's ``(N, *in_shape)``."""
        return x if self.in_shape is None else x.reshape(x.shape[0], *self.in_shape)

    def _k(self, net: Layer, x1: Tensor, x2: Tensor | None) -> Tensor:
        out = getattr(
            net.kernel(self._rows(x1), None if x2 is None else self._rows(x2), self.get), self.get
        )
        return _as_matrix(out, self.get, 2)

    def _kdiag(self, net: Layer, x: Tensor) -> Tensor:
        return _as_matrix(getattr(net.kernel_diag(self._rows(x), self.get), self.get), self.get, 1)

    def _batched(self, net: Layer, X1: Tensor, X2: Tensor, same: bool, diag: bool) -> Tensor:
        """Kernel of ``(B, n1, d)`` and ``(B, n2, d)`` batches: ``(B, n1, n2)`` or ``(B, n1)``."""
        b, n1, d = X1.shape
        n2 = X2.shape[1]
        if diag:
            if same:
                return self._kdiag(net, X1.reshape(b * n1, d)).reshape(b, n1)
            if n1 != n2:
                raise ShapeError(
                    describe(
                        "nk.gpytorch.NeuralKernel",
                        f"diag=True with {n1} and {n2} rows",
                        "Pass inputs with as many rows for the diagonal.",
                    )
                )
            return torch.stack([self._k(net, X1[i], X2[i]).diagonal() for i in range(b)])
        if b == 1:
            return self._k(net, X1[0], None if same else X2[0]).unsqueeze(0)
        if torch.equal(X2, X2[:1].expand_as(X2)):  # shared second argument (training inputs)
            return self._k(net, X1.reshape(b * n1, d), X2[0]).reshape(b, n1, n2)
        if not same and torch.equal(X1, X1[:1].expand_as(X1)):
            return self._k(net, X1[0], X2.reshape(b * n2, d)).reshape(n1, b, n2).transpose(0, 1)
        if b * b * n1 * n2 <= _FLAT_PAIRS:  # small batches: one call, then the diagonal blocks
            full = self._k(net, X1.reshape(b * n1, d), None if same else X2.reshape(b * n2, d))
            full = full.reshape(b, n1, b, n2)
            return full.diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        return torch.stack([self._k(net, X1[i], None if same else X2[i]) for i in range(b)])


def _as_matrix(k: Tensor | None, get: str, ndim: int) -> Tensor:
    """The network's kernel, which must be one number per example pair (``ndim`` axes)."""
    if k is None or k.ndim != ndim:
        got = "nothing" if k is None else f"a kernel of shape {tuple(k.shape)}"
        raise ShapeError(
            describe(
                "nk.gpytorch.NeuralKernel",
                f"the network gives {got} for {get}, not one number per pair of inputs",
                "End the network with a readout (e.g. Flatten() or GlobalAvgPool() and "
                "Dense(1)) so its output has no spatial axes.",
            )
        )
    return k


def _away_from_zero(x: Tensor) -> Tensor:
    """Initial values for a softplus parameter: exact zeros become a small positive number."""
    return torch.where(x > 0, x, torch.full_like(x, 1e-3))


def _unravel(index: int, shape: torch.Size) -> list[int]:
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return out[::-1]
