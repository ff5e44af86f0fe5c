r"""Exact infinite-width limits of the one-hidden-layer linear network (TP4 Cor 6.2).

**muP limit** (:class:`LinearMuPLimit`). For ``d`` inputs and ``d_o`` outputs the muP
limit of :math:`f(\xi) = \alpha W_2 W_1 \xi` trained by SGD is a width-:math:`h` linear
network, :math:`h = d + d_o`, with diagonal initialisation (TP4, after Cor 6.2):

.. math::
    A_0 = [\sigma_1 I_d;\ 0] \in \mathbb{R}^{h \times d}, \quad
    B_0 = [0,\ \sigma_2 I_{d_o}] \in \mathbb{R}^{d_o \times h}, \quad
    f_t(\xi) = \alpha B_t A_t \tilde\xi \ (f_0 \equiv 0),

    A_{t+1} = A_t - \eta \alpha B_t^\top G_t^\top \tilde X_t, \qquad
    B_{t+1} = B_t - \eta \alpha G_t^\top \tilde X_t A_t^\top \quad (\text{simultaneously}),

with :math:`G_t = \partial L / \partial F` the batch-mean loss gradient at the logits
:math:`F = \alpha \tilde X A^\top B^\top`, and :math:`\tilde\xi = (\xi, 1)` when
``bias=True`` (a trainable bias is an input column whose weights start at 0). The
features are :math:`\phi_t(\xi) = A_t \tilde\xi` and the feature kernel
:math:`K_t(\xi, \zeta) = \tilde\xi^\top A_t^\top A_t \tilde\zeta` (:math:`\sigma_1^2\,
\xi \cdot \zeta` at :math:`t = 0`): it moves by :math:`\Theta(1)`.

A finite network of width ``n`` (:meth:`LinearMuPLimit.sample`) draws
:math:`\Omega \in \mathbb{R}^{n \times h}` with iid :math:`\mathcal{N}(0, 1)` entries and sets
:math:`W_1 = \Omega A / \sqrt{n}`, :math:`W_2 = B \Omega^\top / \sqrt{n}` (independent
:math:`\mathcal{N}(0, \sigma^2 / n)` entries at initialisation). Plain SGD on it keeps
:math:`W_1 = \Omega A_t / \sqrt n`, :math:`W_2 = B_t \Omega^\top / \sqrt n` exactly, with the
same recursion except that the forward pass uses :math:`\Omega^\top \Omega / n` in place of
:math:`I` (``gram=``): the gap to the limit is :math:`O(n^{-1/2})`. This scaling is muP
only because the network is linear (the hidden units are rescaled by :math:`\sqrt n`).

**NTK limit** (:class:`LinearNTKLimit`). The NTK-parametrized network
:math:`f = w_2 w_1 \tilde\xi / \sqrt{n d'}` (:math:`d' = d + 1` with a bias,
:math:`w_1 \sim \mathcal{N}(0, \sigma_1^2)`, :math:`w_2 \sim \mathcal{N}(0, \sigma_2^2)`)
has the kernel :math:`\Theta = (\sigma_1^2 + \sigma_2^2)(\tilde\xi \cdot \tilde\zeta / d') I`;
its limit is the linear model :math:`f = M \tilde\xi` with
:math:`M \leftarrow M - \eta (\sigma_1^2 + \sigma_2^2) G^\top \tilde X / d'` and the frozen
feature kernel :math:`\sigma_1^2\, \tilde\xi \cdot \tilde\zeta / d'`.

Losses: ``"cross_entropy"`` (softmax, labels are class indices) and ``"mse"``
(:math:`\frac{1}{2N} \sum_i \lVert f(x_i) - y_i \rVert^2`).
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import as_tensor, check_positive_int
from ..errors import HyperparameterError, ShapeError, describe

__all__ = [
    "LinearMuPLimit",
    "LinearMuPNetwork",
    "LinearNTKLimit",
    "LinearNTKNetwork",
    "loss_gradient",
    "loss_value",
]

LOSSES = ("cross_entropy", "mse")


def _check_real(where: str, name: str, value: Any, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or (positive and float(value) <= 0):
        need = "a positive finite number" if positive else "a finite number"
        raise HyperparameterError(describe(where, f"{name}={value!r}", f"Give {need}."))
    return float(value)


def _check_loss(where: str, loss: str) -> None:
    if loss not in LOSSES:
        raise HyperparameterError(
            describe(where, f"loss={loss!r}", "Use 'cross_entropy' or 'mse'.")
        )


def _targets(where: str, y: Any, n: int, d_out: int, loss: str, like: Tensor) -> Tensor:
    """Class indices ``(n,)`` for cross entropy, targets ``(n, d_out)`` for mse."""
    t = y if isinstance(y, Tensor) else torch.as_tensor(y)
    if loss == "cross_entropy":
        if t.shape != (n,) or t.is_floating_point() or t.is_complex():
            raise ShapeError(
                describe(
                    where,
                    f"labels of shape {tuple(t.shape)} and dtype {t.dtype}",
                    f"Give integer class indices of shape ({n},) for cross entropy.",
                )
            )
        if n and (int(t.min()) < 0 or int(t.max()) >= d_out):
            raise ShapeError(
                describe(where, "labels outside [0, d_out)", f"Use classes 0..{d_out - 1}.")
            )
        return t.to(like.device).long()
    if t.shape != (n, d_out):
        raise ShapeError(
            describe(where, f"targets of shape {tuple(t.shape)}", f"Give shape ({n}, {d_out}).")
        )
    return as_tensor(t, "y", where).to(like.dtype)


def loss_gradient(logits: Tensor, y: Tensor, loss: str) -> Tensor:
    """``dL/dF`` of the batch-mean loss at logits ``F`` of shape ``(N, d_out)``."""
    n = logits.shape[0]
    if loss == "cross_entropy":
        g = torch.softmax(logits, dim=1)
        g[torch.arange(n), y] -= 1.0
        return g / n
    return (logits - y) / n


def loss_value(logits: Tensor, y: Tensor, loss: str) -> Tensor:
    """The batch-mean loss (cross entropy, or half the mean squared norm for ``"mse"``)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(logits, y)
    return 0.5 * ((logits - y) ** 2).sum() / logits.shape[0]


class _Linear:
    """Shared input handling of the limits: ``d_in`` features, an optional bias column."""

    d_in: int
    d_out: int
    bias: bool
    dtype: torch.dtype

    def _setup(
        self,
        where: str,
        d_in: int,
        d_out: int,
        sigma_in: float,
        sigma_out: float,
        bias: bool,
        dtype: torch.dtype,
    ) -> None:
        """Check and store the sizes and scales both limits share."""
        check_positive_int(where, "d_in", d_in)
        check_positive_int(where, "d_out", d_out)
        self.sigma_in = _check_real(where, "sigma_in", sigma_in)
        self.sigma_out = _check_real(where, "sigma_out", sigma_out)
        self.d_in, self.d_out, self.bias, self.dtype = int(d_in), int(d_out), bool(bias), dtype

    def _inputs(self, x: Any, where: str) -> Tensor:
        t = as_tensor(x, "x", where).to(self.dtype)
        if t.ndim != 2 or t.shape[1] != self.d_in:
            raise ShapeError(
                describe(
                    where,
                    f"x has shape {tuple(t.shape)}",
                    f"Give inputs of shape (N, {self.d_in}).",
                )
            )
        if self.bias:
            t = torch.cat([t, torch.ones(t.shape[0], 1, dtype=t.dtype)], dim=1)
        return t


class LinearMuPLimit(_Linear):
    r"""The exact infinite-width muP limit of a one-hidden-layer linear network.

    Args:
        d_in: input dimension ``d``.
        d_out: output dimension ``d_o``.
        sigma_in: :math:`\sigma_1`, the input weights' scale (``W_1 ~ N(0, sigma_in^2/n)``).
        sigma_out: :math:`\sigma_2`, the readout's scale.
        alpha: output multiplier :math:`\alpha`.
        bias: a trainable bias on the hidden units (zero at initialisation).
        dtype: dtype of the state (float64 by default).
        gram: an ``(h, h)`` matrix used in place of the identity in the forward pass:
            ``gram = Omega^T Omega / n`` gives the exact recursion of a sampled network.

    State: ``A`` of shape ``(h, d + bias)`` and ``B`` of shape ``(d_out, h)``,
    ``h = d_in + d_out``. Each step costs ``O(N h (d + d_o))``. See the module docstring.

    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        sigma_in: float = 1.0,
        sigma_out: float = 1.0,
        alpha: float = 1.0,
        bias: bool = True,
        *,
        dtype: torch.dtype = torch.float64,
        gram: Tensor | None = None,
    ) -> None:
        where = "LinearMuPLimit"
        self._setup(where, d_in, d_out, sigma_in, sigma_out, bias, dtype)
        self.alpha = _check_real(where, "alpha", alpha)
        h = self.hidden
        self.A = torch.zeros(h, self.d_in + self.bias, dtype=dtype)
        self.A[: self.d_in, : self.d_in] = self.sigma_in * torch.eye(self.d_in, dtype=dtype)
        self.B = torch.zeros(self.d_out, h, dtype=dtype)
        self.B[:, self.d_in :] = self.sigma_out * torch.eye(self.d_out, dtype=dtype)
        self.gram: Tensor | None = None
        if gram is not None:
            if tuple(gram.shape) != (h, h):
                raise ShapeError(
                    describe(where, f"gram has shape {tuple(gram.shape)}", f"Give ({h}, {h}).")
                )
            self.gram = gram.to(dtype)
        self.steps = 0

    @property
    def hidden(self) -> int:
        """``h = d_in + d_out``, the width of the limit."""
        return self.d_in + self.d_out

    def __repr__(self) -> str:
        return (
            f"LinearMuPLimit(d_in={self.d_in}, d_out={self.d_out}, sigma_in={self.sigma_in}, "
            f"sigma_out={self.sigma_out}, alpha={self.alpha}, bias={self.bias}, "
            f"steps={self.steps})"
        )

    def _mid(self, h: Tensor) -> Tensor:
        return h if self.gram is None else h @ self.gram

    def __call__(self, x: Any) -> Tensor:
        """Logits ``alpha B A x~`` of shape ``(N, d_out)``; exactly 0 before any step."""
        xt = self._inputs(x, "LinearMuPLimit.__call__")
        return self.alpha * self._mid(xt @ self.A.T) @ self.B.T

    def features(self, x: Any) -> Tensor:
        """Features ``A x~``, shape ``(N, h)``."""
        return self._inputs(x, "LinearMuPLimit.features") @ self.A.T

    def feature_kernel(self, x1: Any, x2: Any = None) -> Tensor:
        """``x1~^T A^T A x2~`` (with ``gram`` between the factors), shape ``(N1, N2)``."""
        f1 = self.features(x1)
        f2 = f1 if x2 is None else self.features(x2)
        return self._mid(f1) @ f2.T

    def step(self, x: Any, y: Any, lr: float, loss: str = "cross_entropy") -> float:
        r"""One SGD step on a batch; returns the batch loss before the step.

        Args:
            x: inputs ``(N, d_in)``.
            y: class indices ``(N,)`` (cross entropy) or targets ``(N, d_out)`` (mse).
            lr: learning rate :math:`\eta` (the same as the finite networks').
            loss: ``"cross_entropy"`` or ``"mse"``.

        """
        where = "LinearMuPLimit.step"
        eta = _check_real(where, "lr", lr, positive=True)
        _check_loss(where, loss)
        xt = self._inputs(x, where)
        yt = _targets(where, y, xt.shape[0], self.d_out, loss, xt)
        logits = self.alpha * self._mid(xt @ self.A.T) @ self.B.T
        g = loss_gradient(logits, yt, loss)
        new_a = self.A - eta * self.alpha * self.B.T @ g.T @ xt
        self.B = self.B - eta * self.alpha * g.T @ xt @ self.A.T
        self.A = new_a
        self.steps += 1
        return float(loss_value(logits, yt, loss))

    def with_gram(self, gram: Tensor) -> LinearMuPLimit:
        """A copy whose forward pass uses ``gram`` (the finite recursion of a sample)."""
        out = copy.copy(self)
        out.gram = gram.to(self.dtype)
        return out

    def sample(self, width: int, generator: torch.Generator | None = None) -> LinearMuPNetwork:
        """Width-``n`` network: ``W1 = Omega A / sqrt(n)``, ``W2 = B Omega^T / sqrt(n)``.

        Sampled from the current state (the initial one before any step); plain SGD at
        the limit's learning rate follows the limit with a gap of order ``n^{-1/2}``.
        """
        check_positive_int("LinearMuPLimit.sample", "width", width)
        omega = torch.randn(width, self.hidden, generator=generator, dtype=self.dtype)
        return LinearMuPNetwork(self, omega)


class LinearMuPNetwork(nn.Module):
    r"""A finite width-``n`` linear network sampled from :class:`LinearMuPLimit`.

    ``forward(x) = alpha * W2 (W1 x + b)`` with ``fc1 = nn.Linear(d_in, n)`` and
    ``fc2 = nn.Linear(n, d_out, bias=False)``; the buffer ``omega`` keeps the sample.
    Train it with plain ``torch.optim.SGD(net.parameters(), lr)`` (no multipliers) or
    :meth:`step`.
    """

    def __init__(self, limit: LinearMuPLimit, omega: Tensor) -> None:
        super().__init__()
        n = omega.shape[0]
        self.alpha = limit.alpha
        self.fc1 = nn.Linear(limit.d_in, n, bias=limit.bias, dtype=limit.dtype)
        self.fc2 = nn.Linear(n, limit.d_out, bias=False, dtype=limit.dtype)
        w1 = omega @ limit.A / math.sqrt(n)
        with torch.no_grad():
            self.fc1.weight.copy_(w1[:, : limit.d_in])
            if limit.bias:
                self.fc1.bias.copy_(w1[:, limit.d_in])
            self.fc2.weight.copy_(limit.B @ omega.T / math.sqrt(n))
        self.register_buffer("omega", omega)

    @property
    def width(self) -> int:
        """The hidden width ``n``."""
        return int(self.fc1.out_features)

    def gram(self) -> Tensor:
        """``Omega^T Omega / n``: what the finite recursion uses in place of the identity."""
        omega: Tensor = self.omega  # type: ignore[assignment]
        return omega.T @ omega / omega.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, d_out)`` for inputs ``(N, d_in)``."""
        return self.alpha * self.fc2(self.fc1(x))

    def features(self, x: Tensor) -> Tensor:
        """Hidden features ``W1 x + b``, shape ``(N, n)``."""
        return self.fc1(x)

    def feature_kernel(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """``phi(x1) . phi(x2)`` (no normalisation: ``W1`` has variance ``1/n``)."""
        f1 = self.features(x1)
        return f1 @ (f1 if x2 is None else self.features(x2)).T

    def step(self, x: Tensor, y: Tensor, lr: float, loss: str = "cross_entropy") -> float:
        """One plain SGD step (autograd) on a batch; returns the loss before the step."""
        _check_loss("LinearMuPNetwork.step", loss)
        return _sgd_step(self, x, y, lr, loss)


def _sgd_step(model: nn.Module, x: Tensor, y: Tensor, lr: float, loss: str) -> float:
    eta = _check_real(f"{type(model).__name__}.step", "lr", lr, positive=True)
    value = loss_value(model(x), y, loss)
    grads = torch.autograd.grad(value, list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p.sub_(eta * g)
    return float(value.detach())


class LinearNTKLimit(_Linear):
    r"""The NTK limit of the one-hidden-layer linear network: a linear model, frozen features.

    Args:
        d_in, d_out, sigma_in, sigma_out, bias, dtype: as :class:`LinearMuPLimit`.
        m0: the initial map ``(d_out, d_in + bias)``; ``None`` is 0 (the ensemble mean).
            :meth:`of` takes a finite network's own ``w2 w1 / sqrt(n d')``.

    ``f(x) = M x~``; a step is ``M <- M - eta (sigma_in^2 + sigma_out^2) G^T X~ / d'``.

    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        sigma_in: float = 1.0,
        sigma_out: float = 1.0,
        bias: bool = True,
        *,
        dtype: torch.dtype = torch.float64,
        m0: Tensor | None = None,
    ) -> None:
        where = "LinearNTKLimit"
        self._setup(where, d_in, d_out, sigma_in, sigma_out, bias, dtype)
        shape = (self.d_out, self.d_in + self.bias)
        if m0 is not None and tuple(m0.shape) != shape:
            raise ShapeError(describe(where, f"m0 has shape {tuple(m0.shape)}", f"Give {shape}."))
        self.M = torch.zeros(shape, dtype=dtype) if m0 is None else m0.detach().to(dtype).clone()
        self.steps = 0

    @classmethod
    def of(cls, network: LinearNTKNetwork) -> LinearNTKLimit:
        """The limit started from ``network``'s initial function (``w2 w1 / sqrt(n d')``)."""
        return cls(
            network.d_in,
            network.d_out,
            network.sigma_in,
            network.sigma_out,
            network.has_bias,
            dtype=network.w1.dtype,
            m0=network.linear_map().detach(),
        )

    @property
    def fan_in(self) -> int:
        """``d' = d_in + bias``."""
        return self.d_in + self.bias

    def __repr__(self) -> str:
        return (
            f"LinearNTKLimit(d_in={self.d_in}, d_out={self.d_out}, sigma_in={self.sigma_in}, "
            f"sigma_out={self.sigma_out}, bias={self.bias}, steps={self.steps})"
        )

    def __call__(self, x: Any) -> Tensor:
        """Logits ``M x~``, shape ``(N, d_out)``."""
        return self._inputs(x, "LinearNTKLimit.__call__") @ self.M.T

    def features(self, x: Any) -> Tensor:
        """``sigma_in x~ / sqrt(d')``: a factor of the (frozen) feature kernel, ``(N, d')``."""
        return self._inputs(x, "LinearNTKLimit.features") * (self.sigma_in / math.sqrt(self.fan_in))

    def feature_kernel(self, x1: Any, x2: Any = None) -> Tensor:
        """``sigma_in^2 x1~ . x2~ / d'``, shape ``(N1, N2)``: the same at every step."""
        f1 = self.features(x1)
        return f1 @ (f1 if x2 is None else self.features(x2)).T

    def ntk(self, x1: Any, x2: Any = None) -> Tensor:
        """The scalar NTK ``(sigma_in^2 + sigma_out^2) x1~ . x2~ / d'`` (times ``I``)."""
        scale = (self.sigma_in**2 + self.sigma_out**2) / self.sigma_in**2 if self.sigma_in else 0
        return self.feature_kernel(x1, x2) * scale

    def step(self, x: Any, y: Any, lr: float, loss: str = "cross_entropy") -> float:
        """One gradient step of the linear model; returns the loss before the step."""
        where = "LinearNTKLimit.step"
        eta = _check_real(where, "lr", lr, positive=True)
        _check_loss(where, loss)
        xt = self._inputs(x, where)
        yt = _targets(where, y, xt.shape[0], self.d_out, loss, xt)
        logits = xt @ self.M.T
        g = loss_gradient(logits, yt, loss)
        self.M = self.M - eta * (self.sigma_in**2 + self.sigma_out**2) / self.fan_in * g.T @ xt
        self.steps += 1
        return float(loss_value(logits, yt, loss))

    def sample(self, width: int, generator: torch.Generator | None = None) -> LinearNTKNetwork:
        """A finite NTK-parametrized network of width ``n`` (fresh Gaussian weights)."""
        check_positive_int("LinearNTKLimit.sample", "width", width)
        return LinearNTKNetwork(
            self.d_in, self.d_out, width, self.sigma_in, self.sigma_out, self.bias,
            generator=generator, dtype=self.dtype,
        )  # fmt: skip


class LinearNTKNetwork(nn.Module):
    r"""A finite NTK-parametrized linear network ``f = w2 (w1 x~) / sqrt(n d')``.

    ``w1 ~ N(0, sigma_in^2)`` of shape ``(n, d')`` (its last column is the bias when
    ``bias``), ``w2 ~ N(0, sigma_out^2)`` of shape ``(d_out, n)``; plain SGD.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int,
        sigma_in: float = 1.0,
        sigma_out: float = 1.0,
        bias: bool = True,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.d_in, self.d_out, self.has_bias = d_in, d_out, bias
        self.sigma_in, self.sigma_out = sigma_in, sigma_out
        fan = d_in + bias
        opts: dict[str, Any] = {"generator": generator, "dtype": dtype}
        self.w1 = nn.Parameter(sigma_in * torch.randn(width, fan, **opts))
        self.w2 = nn.Parameter(sigma_out * torch.randn(d_out, width, **opts))

    def _tilde(self, x: Tensor) -> Tensor:
        if not self.has_bias:
            return x
        return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)

    def features(self, x: Tensor) -> Tensor:
        """Hidden features ``w1 x~ / sqrt(d')``, shape ``(N, n)``."""
        return self._tilde(x) @ self.w1.T / math.sqrt(self.w1.shape[1])

    def feature_kernel(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """``phi(x1) . phi(x2) / n``, shape ``(N1, N2)``."""
        f1 = self.features(x1)
        return f1 @ (f1 if x2 is None else self.features(x2)).T / self.w1.shape[0]

    def linear_map(self) -> Tensor:
        """``w2 w1 / sqrt(n d')``: the network as a linear map of ``x~``."""
        n, fan = self.w1.shape
        return self.w2 @ self.w1 / math.sqrt(n * fan)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(N, d_out)``."""
        return self.features(x) @ self.w2.T / math.sqrt(self.w1.shape[0])

    def step(self, x: Tensor, y: Tensor, lr: float, loss: str = "cross_entropy") -> float:
        """One plain SGD step (autograd) on a batch; returns the loss before the step."""
        _check_loss("LinearNTKNetwork.step", loss)
        return _sgd_step(self, x, y, lr, loss)
