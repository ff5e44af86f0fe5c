r"""Any loss, with or without momentum: function-space gradient flow by an ODE solver."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import (
    HyperparameterError,
    InputTypeError,
    NonFiniteError,
    ShapeError,
    SolverError,
    describe,
)
from ._closed_form import sym
from ._inputs import (
    ODE_KEYWORDS,
    KernelLike,
    check_test,
    no_positional,
    ntk_of,
    offset,
    real,
    targets,
    times_of,
)
from ._results import Outputs

__all__ = ["gradient_descent"]


def _mse(fx: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((fx - y) ** 2).mean()


def _cross_entropy(fx: Tensor, y: Tensor) -> Tensor:
    return -(y * torch.log_softmax(fx, dim=-1)).sum(-1).mean()


_LOSSES = {"mse": _mse, "cross_entropy": _cross_entropy}


def gradient_descent(
    loss: Callable[[Tensor, Tensor], Tensor] | str,
    k_train_train: KernelLike,
    y_train: Any,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    *,
    method: str = "DOP853",
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> Callable[..., Outputs]:
    r"""Mean outputs of infinitely wide networks trained on any loss, by an ODE solver.

    In function space, gradient flow on ``loss(f(x_train), y_train)`` is

    .. math:: \frac{df_x}{d\tau} = -T(x, x_{train})\, \nabla_{f_{train}} L,
              \qquad \tau = \mathrm{learning\_rate} \cdot t,

    for training and test points alike (``T`` the NTK). The loss's own normalisation
    sets the time scale: ``"mse"`` is :math:`\frac{1}{2N}\sum (f - y)^2`
    (``N = y.numel()``), which reproduces :func:`gradient_descent_mse` exactly;
    ``"cross_entropy"`` is :math:`-\frac{1}{n}\sum_i \sum_c y_{ic} \log
    \mathrm{softmax}(f_i)_c` (mean over examples of the per-example cross-entropy, as
    ``torch.nn.functional.cross_entropy`` with probability targets; Neural Tangents'
    example divides by ``n k`` instead). A callable ``loss(fx, y) -> scalar`` is
    differentiated by autograd.

    With ``momentum`` (heavy ball, ``v <- momentum v - lr grad``, ``theta <- theta + v``)
    the continuous limit is second order, as in Neural Tangents: in time
    :math:`\tau = \sqrt{\mathrm{lr}}\, t`,

    .. math:: \ddot f = -T \nabla L - \frac{1 - \mathrm{momentum}}{\sqrt{\mathrm{lr}}}
              \dot f, \qquad \dot f(0) = 0.

    Since test outputs do not feed back, the solver integrates only
    :math:`h(\tau) = -\int_0^\tau \nabla L\, d\tau'` (``n k`` values; ``2 n k`` with
    momentum) with ``scipy.integrate.solve_ivp``; then
    :math:`f_x(\tau) = f_x(0) + T(x, x_{train}) h(\tau)` for any test set.

    Args:
        loss: ``"mse"``, ``"cross_entropy"``, or ``loss(fx, y)`` returning a scalar
            tensor (``fx`` and ``y`` of the shape of ``y_train``).
        k_train_train: the train-train NTK: a Kernel (its ``ntk``), a dict with ``"ntk"``
            or a bare ``(n, n)`` tensor.
        y_train: targets, shape ``(n, k)`` or ``(n,)``.
        learning_rate: step size.
        momentum: ``None`` (plain gradient descent) or a number in ``[0, 1)``.
        method: ``solve_ivp`` method (``"DOP853"``, ``"RK45"``, ``"LSODA"``, ...; an
            explicit Runge-Kutta pair by default, like Neural Tangents' ``odeint``).
        rtol: relative tolerance of the solver.
        atol: absolute tolerance of the solver.

    Returns:
        ``predict_fn(t, *, k_test_train=None, fx_train_0=0.0, fx_test_0=0.0)`` (everything
        after ``t`` keyword-only: Neural Tangents' positional order differs) returning
        :class:`Outputs` ``(train, test)`` at the finite time(s) ``t`` (a number or a
        tensor of times: leading axes), ``test`` ``None`` without ``k_test_train``
        (``(m, n)``).

    """
    where = "predict.gradient_descent"
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise HyperparameterError(
                describe(where, f"loss={loss!r}", f"Use one of {sorted(_LOSSES)} or a callable.")
            )
        loss_fn: Callable[[Tensor, Tensor], Tensor] = _LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise InputTypeError(
            describe(where, f"loss has type {type(loss).__name__}", "Pass a callable or a name.")
        )
    learning_rate = real(learning_rate, "learning_rate", where, positive=True)
    if momentum is not None:
        momentum = real(momentum, "momentum", where)
        if momentum >= 1:
            raise HyperparameterError(
                describe(where, f"momentum={momentum}", "momentum must be in [0, 1).")
            )
    y, vector = targets(y_train, where)
    ntk, train_kernels = ntk_of(k_train_train, "k_train_train", where)
    dtype = torch.promote_types(ntk.dtype, y.dtype)
    ntk, y = sym(ntk.to(dtype)), y.to(dtype=dtype, device=ntk.device)
    n, k = y.shape
    if tuple(ntk.shape) != (n, n):
        raise ShapeError(
            describe(
                where,
                f"k_train_train has shape {tuple(ntk.shape)} but y_train has {n} rows",
                f"Pass the ({n}, {n}) NTK of the training points.",
            )
        )
    scale = math.sqrt(learning_rate) if momentum is not None else learning_rate
    damping = None if momentum is None else (1 - momentum) / math.sqrt(learning_rate)

    def grad_loss(f: Tensor) -> Tensor:
        with torch.enable_grad():
            f = f.detach().requires_grad_(True)
            value = loss_fn(f[:, 0] if vector else f, y[:, 0] if vector else y)
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise InputTypeError(
                    describe(
                        where,
                        "loss(fx, y) did not return a scalar tensor",
                        "Reduce the loss to a scalar (sum or mean).",
                    )
                )
            (grad,) = torch.autograd.grad(value.reshape(()), f)
        if not bool(torch.isfinite(grad).all()):
            raise NonFiniteError(
                describe(
                    where,
                    "the loss gradient became NaN or infinite",
                    "Use a smaller learning rate or time, or a stable loss.",
                )
            )
        return grad

    def predict_fn(
        t: Any,
        *positional: Any,
        k_test_train: KernelLike | None = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = 0.0,
    ) -> Outputs:
        """Mean outputs at the finite time(s) ``t`` (see :func:`gradient_descent`)."""
        from scipy.integrate import solve_ivp

        no_positional(positional, where, ODE_KEYWORDS)

        times = times_of(t, where, torch.float64, torch.device("cpu"))
        if bool(torch.isinf(times).any()):
            raise HyperparameterError(
                describe(
                    where,
                    "t is None or infinite",
                    "An ODE is integrated to finite times only: pass finite t (for MSE, "
                    "gradient_descent_mse has t = inf in closed form).",
                )
            )
        f0 = offset(fx_train_0, (n, k), vector, "fx_train_0", where, y)
        f0 = torch.zeros_like(y) if f0 is None else f0
        ktd = None
        if k_test_train is not None:
            ktd, given = ntk_of(k_test_train, "k_test_train", where)
            ktd = ktd.to(dtype=dtype, device=y.device)
            check_test(ktd, n, "k_test_train", where, given, train_kernels, k)
        flat = (times.reshape(-1) * scale).numpy()
        order = np.unique(flat)

        def rhs(_: float, z: np.ndarray) -> np.ndarray:
            zt = torch.from_numpy(z).to(dtype=dtype, device=y.device)
            h = zt[: n * k].reshape(n, k)
            g = -grad_loss(f0 + ntk @ h).reshape(-1)
            if damping is None:
                return g.cpu().numpy().astype(np.float64)
            u = zt[n * k :]
            return torch.cat([u, g - damping * u]).cpu().numpy().astype(np.float64)

        size = n * k * (1 if damping is None else 2)
        z0 = np.zeros(size)
        if order[-1] > 0:
            sol = solve_ivp(
                rhs, (0.0, float(order[-1])), z0, method=method, t_eval=order, rtol=rtol, atol=atol
            )
            if not sol.success:
                raise SolverError(
                    describe(
                        where,
                        f"the ODE solver failed ({sol.message})",
                        "Try another method (e.g. 'LSODA'), looser tolerances, or shorter times.",
                    )
                )
            zs = sol.y.T
        else:
            zs = z0[None]
        hs = torch.as_tensor(zs[:, : n * k], dtype=dtype, device=y.device).reshape(-1, n, k)
        index = torch.as_tensor(np.searchsorted(order, flat))
        hs = hs[index]
        train = f0 + ntk @ hs
        test = None
        if ktd is not None:
            ft0 = offset(fx_test_0, (ktd.shape[0], k), vector, "fx_test_0", where, y)
            test = ktd @ hs
            if ft0 is not None:
                test = test + ft0
        shape = tuple(times.shape)

        def finish(a: Tensor) -> Tensor:
            a = a.reshape(*shape, *a.shape[1:])
            return a[..., 0] if vector else a

        return Outputs(finish(train), None if test is None else finish(test))

    return predict_fn
