r"""Gradient-descent MSE dynamics in closed form: one network's mean, an ensemble's Gaussian."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validation import as_tensor, check_batch, parse_get
from ..errors import HyperparameterError, InputTypeError, ShapeError, describe
from ._closed_form import Predictor, sym
from ._inputs import (
    GD_NAMES,
    MSE_KEYWORDS,
    Get,
    KernelLike,
    Kernels,
    compute_cov_flag,
    no_positional,
    ntk_of,
    real,
    targets,
    times_of,
)
from ._results import Gaussian, Predictions, format_predictions

__all__ = ["gradient_descent_mse", "gradient_descent_mse_ensemble", "max_learning_rate"]


def gradient_descent_mse(
    k_train_train: KernelLike,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
    solver: str = "cholesky",
    solver_options: dict[str, Any] | None = None,
) -> Callable[..., Gaussian | Predictions]:
    r"""Outputs of infinitely wide networks trained by gradient flow on MSE, in closed form.

    The dynamics is full-batch gradient flow on :math:`L = \frac{1}{2N}\sum (f - y)^2`
    with :math:`N` = ``y_train.numel()``, in absolute time
    :math:`\tau = \mathrm{learning\_rate} \cdot t`:
    :math:`df/d\tau = -\frac{1}{N} \tilde T (f - y)` on the training points. With
    :math:`\tilde A = A + \mathrm{diag\_reg} \cdot \mathrm{tr}(A)/n \cdot I` (or
    :math:`+\mathrm{diag\_reg}\, I`) :math:`= V \operatorname{diag}(\lambda) V^\top` and
    :math:`M = V \operatorname{diag}((1 - e^{-\lambda\tau/N})/\lambda) V^\top`:

    * test mean: :math:`f_{t,0} + A_{td} M (y - f_{d,0})` (``A = T`` for ``"ntk"``,
      ``K`` for ``"nngp"``); train mean: :math:`f_{d,0} + V \operatorname{diag}(1 -
      e^{-\lambda\tau/N}) V^\top (y - f_{d,0})`;
    * NTK test covariance: :math:`K_{tt} + T_{td} M K_{dd} M T_{dt} - (T_{td} M K_{dt}
      + \mathrm{transpose})`; NNGP: :math:`K_{tt} - K_{td} V \operatorname{diag}((1 -
      e^{-2\lambda\tau/N})/\lambda) V^\top K_{dt}`;
    * NTK train covariance: :math:`E K_{dd} E`, :math:`E = V \operatorname{diag}(
      e^{-\lambda\tau/N}) V^\top`; NNGP: :math:`V \operatorname{diag}(\lambda
      e^{-2\lambda\tau/N}) V^\top`;
    * ``t = None`` or ``inf``: the limits by a Cholesky solve (:func:`gp_inference`;
      train outputs ``y`` with zero covariance).

    The covariances are those of an infinite ensemble (initial outputs
    :math:`\mathcal{N}(0, K)`). ``fx_train_0``/``fx_test_0`` shift the means only, as in
    Neural Tangents: they give the outputs of one network linearised around
    initial outputs ``fx_0``. One eigendecomposition per kernel (``torch.linalg.eigh``)
    serves every finite time and every call.

    Args:
        k_train_train: a :class:`~neural_kernels.Kernel` (``net.kernel(x_train)``), a dict
            with ``"nngp"``/``"ntk"`` tensors, or one bare ``(n, n)`` tensor (then
            ``get`` stays ``None``; it is its own prior covariance).
        y_train: targets, shape ``(n, k)`` or ``(n,)``; must be finite.
        learning_rate: step size; only ``learning_rate * t`` matters.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.
        solver: ``"cholesky"`` or ``"cg"`` (conjugate gradients, streaming a stored
            kernel; ``t = inf`` only), as in :func:`~neural_kernels.predict.gp_inference`.
        solver_options: for ``"cg"``: ``tol``, ``max_iter``, ``rank``, ``preconditioner``,
            ``progress`` (as in :func:`gp_inference`).

    Returns:
        ``predict_fn(t=None, *, k_test_train=None, k_test_test=None, get=None,
        compute_cov=None, fx_train_0=0.0, fx_test_0=0.0)``, everything after ``t``
        keyword-only (Neural Tangents' positional order ``(t, fx_train_0, fx_test_0,
        k_test_train)`` differs from this one's, so a positional call is refused rather
        than read in either order). ``t``: a time, a tensor of times (leading axes of the
        outputs), ``None`` or ``inf``. ``k_test_train``: ``(m, n)`` test-train kernel;
        ``None`` predicts the training points. ``k_test_test``: ``(m, m)``, needed for
        test covariances. ``get``: ``"nngp"``, ``"ntk"`` or a tuple (``None``: both, as
        available). ``compute_cov=None``: covariances when ``k_test_test`` is given (on
        training points: not). Returns a :class:`Gaussian` for a single name (or a bare
        kernel), else :class:`Predictions` (fields in the order asked).

    Raises:
        ShapeError: kernels and targets disagree in size.
        NonFiniteError: NaN or infinite targets, kernels or times.
        SingularKernelError: a kernel that is not PSD (finite times) or singular
            (``t = inf``) without ``diag_reg``.
        HyperparameterError: negative time, unknown ``get``, a missing kernel, bad
            ``learning_rate``/``diag_reg``.

    """
    where = "predict.gradient_descent_mse"
    learning_rate = real(learning_rate, "learning_rate", where, positive=True)
    diag_reg = real(diag_reg, "diag_reg", where)
    y, vector = targets(y_train, where)
    core = Predictor(
        Kernels(k_train_train, "k_train_train", where),
        y,
        vector,
        diag_reg,
        bool(diag_reg_absolute),
        where,
        learning_rate,
        solver=solver,
        solver_options=solver_options,
    )

    def predict_fn(
        t: Any = None,
        *positional: Any,
        k_test_train: KernelLike | None = None,
        k_test_test: KernelLike | None = None,
        get: Get = None,
        compute_cov: bool | None = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = 0.0,
    ) -> Gaussian | Predictions:
        """Outputs at time(s) ``t`` (see :func:`gradient_descent_mse`)."""
        no_positional(positional, where, MSE_KEYWORDS)
        names, single = core.names(get, GD_NAMES)
        cov = compute_cov_flag(compute_cov, k_test_test, where)
        times: Tensor | None = times_of(t, where, core.dtype, core.device)
        if times is not None and times.ndim == 0 and bool(torch.isinf(times)):
            times = None
        return format_predictions(
            core.predict(names, times, k_test_train, k_test_test, cov, fx_train_0, fx_test_0),
            single,
        )

    predict_fn.solves = core.solves  # type: ignore[attr-defined]
    return predict_fn


def gradient_descent_mse_ensemble(
    net: Any,
    x_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
    memory_budget: int | None = None,
) -> Callable[..., Gaussian | Predictions]:
    r"""Outputs of an infinite ensemble of infinitely wide ``net`` trained on MSE.

    :func:`gradient_descent_mse` with the kernels of ``net`` (same formulas and
    conventions: relative ``diag_reg``, time ``learning_rate * t`` with the loss
    normalised by ``N = y_train.numel()``). The train-train kernels are computed once,
    on first need, and cached with their factorisations; test kernels are computed on
    each call.

    Example::

        predict_fn = nk.predict.gradient_descent_mse_ensemble(net, x_train, y_train,
                                                              diag_reg=1e-3)
        g = predict_fn(t=None, x_test=x_test, get="ntk", compute_cov=True)

    Args:
        net: a layer or network (``nk.Sequential(...)``) whose ``kernel`` is used.
        x_train: training inputs, shape ``(n, *features)``.
        y_train: targets, shape ``(n, k)`` or ``(n,)``.
        learning_rate: step size; only ``learning_rate * t`` matters.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.
        memory_budget: passed to ``net.kernel`` (bytes of working memory).

    Returns:
        ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)`` (Neural
        Tangents' positional order): a :class:`Gaussian` for ``get="nngp"`` or ``"ntk"``,
        :class:`Predictions` (fields in the order asked) for a tuple or ``None`` (both).
        ``x_test=None`` predicts the training points.

    """
    from ..layers import Layer

    where = "predict.gradient_descent_mse_ensemble"
    if not isinstance(net, Layer):
        raise InputTypeError(
            describe(
                where,
                f"net has type {type(net).__name__}",
                "Pass a network built from neural_kernels layers, e.g. nk.Sequential(...).",
            )
        )
    learning_rate = real(learning_rate, "learning_rate", where, positive=True)
    diag_reg = real(diag_reg, "diag_reg", where)
    x = as_tensor(x_train, "x_train", where)
    check_batch(x, "x_train", where)
    y, vector = targets(y_train, where)
    if y.shape[0] != x.shape[0]:
        raise ShapeError(
            describe(
                where,
                f"x_train has {x.shape[0]} rows but y_train has {y.shape[0]}",
                "Pass one target row per training input.",
            )
        )
    kernels = Kernels({}, "k_train_train", where)
    core = Predictor(
        kernels, y, vector, diag_reg, bool(diag_reg_absolute), where, learning_rate, like=x
    )

    def predict_fn(
        t: Any = None, x_test: Any = None, get: Get = None, compute_cov: bool = False
    ) -> Gaussian | Predictions:
        """Outputs on ``x_test`` at time(s) ``t`` (see :func:`gradient_descent_mse_ensemble`)."""
        names = parse_get(get, where, GD_NAMES, GD_NAMES)
        cov = compute_cov_flag(compute_cov, None, where)
        times: Tensor | None = times_of(t, where, core.dtype, core.device)
        if times is not None and times.ndim == 0 and bool(torch.isinf(times)):
            times = None
        need = tuple(dict.fromkeys([*names, *(["nngp"] if cov and "ntk" in names else [])]))
        need = tuple(n for n in GD_NAMES if n in need)
        missing = tuple(n for n in need if n not in kernels.names)
        if missing:
            k = net.kernel(x, None, get=missing, memory_budget=memory_budget)
            for name in missing:
                kernels.add(name, getattr(k, name))
        k_td = k_tt = None
        if x_test is not None:
            xt = as_tensor(x_test, "x_test", where)
            check_batch(xt, "x_test", where)
            k_td = net.kernel(xt, x, get=need, memory_budget=memory_budget)
            if cov:
                k_tt = net.kernel(xt, None, get="nngp", memory_budget=memory_budget)
        out = core.predict(names, times, k_td, k_tt, cov)
        return format_predictions(out, isinstance(get, str))

    return predict_fn


# ----------------------------------------------------------------------------------------


def max_learning_rate(
    ntk_train_train: KernelLike,
    y_train_size: int | None = None,
    momentum: float = 0.0,
    eps: float = 1e-12,
) -> float:
    r"""Largest stable learning rate of full-batch gradient descent on MSE (Neural Tangents).

    With the loss :math:`\frac{1}{2N}\sum (f - y)^2` one step maps the residual by
    :math:`I - \frac{\eta}{N} T`, a contraction iff :math:`\eta < 2N / \lambda_{max}(T)`;
    with momentum the bound is :math:`2 (1 + \mathrm{momentum}) N / \lambda_{max}`
    ("Why Momentum Really Works"). Returns
    :math:`2 (1 + \mathrm{momentum})\, N / (\lambda_{max} + \mathrm{eps})`.

    Args:
        ntk_train_train: the ``(n, n)`` NTK (a Kernel, a dict with ``"ntk"``, or a tensor).
        y_train_size: ``N = y_train.numel()`` (``n k`` for ``k`` outputs sharing the
            kernel); ``None`` means ``n`` (one output).
        momentum: the momentum of the optimiser.
        eps: guards against a zero kernel.

    Returns:
        The learning rate, a float.

    """
    where = "predict.max_learning_rate"
    ntk, _ = ntk_of(ntk_train_train, "ntk_train_train", where)
    n = ntk.shape[0]
    if ntk.shape[1] != n:
        raise ShapeError(
            describe(where, f"ntk_train_train has shape {tuple(ntk.shape)}", "Pass a square NTK.")
        )
    if y_train_size is None:
        factor = n
    elif (
        isinstance(y_train_size, bool)
        or not isinstance(y_train_size, numbers.Integral)
        or (y_train_size < 1)
    ):
        raise HyperparameterError(
            describe(where, f"y_train_size={y_train_size!r}", "Pass y_train.numel(), an int.")
        )
    else:
        factor = int(y_train_size)
    momentum = real(momentum, "momentum", where)
    a = sym(ntk.detach())
    if a.device.type == "cpu":
        import scipy.linalg

        top = float(scipy.linalg.eigvalsh(a.numpy(), subset_by_index=[n - 1, n - 1])[-1])
    else:
        top = float(torch.linalg.eigvalsh(a)[-1])
    return 2 * (1 + momentum) * factor / (top + eps)
