r"""GP inference: the posteriors of the NNGP, the NTK ensemble and the NTK-GP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._closed_form import Predictor
from ._inputs import GP_NAMES, Get, KernelLike, Kernels, compute_cov_flag, real, targets
from ._results import Gaussian, Predictions, format_predictions

__all__ = ["gp_inference"]


def gp_inference(
    k_train_train: KernelLike,
    y_train: Any,
    diag_reg: float = 0.0,
    *,
    diag_reg_absolute: bool = False,
    solver: str = "cholesky",
    solver_options: dict[str, Any] | None = None,
) -> Callable[..., Gaussian | Predictions]:
    r"""Posterior of the NNGP, the NTK ensemble, or the NTK-GP, given training data.

    ``"nngp"`` is the exact posterior of an infinitely wide Bayesian network; ``"ntk"``
    the distribution of an infinite ensemble of infinitely wide networks trained by
    gradient flow on MSE for infinite time; ``"ntkgp"`` the posterior of a GP with the
    NTK as covariance (He et al. 2020). With :math:`\tilde A = A + \mathrm{diag\_reg}
    \cdot \mathrm{tr}(A)/n \cdot I` (or :math:`+ \mathrm{diag\_reg}\, I` when
    ``diag_reg_absolute``):

    * nngp: :math:`\mu = K_{td} \tilde K^{-1} y`,
      :math:`\Sigma = K_{tt} - K_{td} \tilde K^{-1} K_{dt}`;
    * ntk: :math:`\mu = T_{td} \tilde T^{-1} y`, :math:`\Sigma = K_{tt} + T_{td}
      \tilde T^{-1} K_{dd} \tilde T^{-1} T_{dt} - (T_{td} \tilde T^{-1} K_{dt} +
      \mathrm{transpose})`;
    * ntkgp: :math:`\mu = T_{td} \tilde T^{-1} y`,
      :math:`\Sigma = T_{tt} - T_{td} \tilde T^{-1} T_{dt}`.

    One Cholesky factorisation per kernel is made on first use and cached.

    Args:
        k_train_train: the train-train kernel: a :class:`~neural_kernels.Kernel` from
            ``net.kernel(x_train)`` (or a dict with ``"nngp"``/``"ntk"`` tensors), or one
            bare ``(n, n)`` tensor (then ``get`` must be ``None`` and the NNGP formulas
            apply to it).
        y_train: targets, shape ``(n, k)`` or ``(n,)``; must be finite.
        diag_reg: regulariser, relative to the mean diagonal unless
            ``diag_reg_absolute``.
        diag_reg_absolute: add ``diag_reg * I`` instead.
        solver: ``"cholesky"`` (factor the kernel in memory) or ``"cg"`` (preconditioned
            conjugate gradients from matrix products: a stored kernel,
            ``net.kernel(x, store=...)``, is streamed block by block and never held
            whole; see :mod:`neural_kernels.predict._cg`).
        solver_options: for ``"cg"``: ``tol`` (relative residual, default ``1e-10``),
            ``max_iter`` (1000), ``preconditioner`` (``"nystrom"``, default, one
            streamed product; ``"pivoted_cholesky"``; ``None``) and its ``rank`` (100);
            ``progress``, called as ``progress(kernel, iteration, residual)`` per iteration.

    Returns:
        ``post(get=None, k_test_train=None, k_test_test=None, compute_cov=None)``.
        ``get`` is ``"nngp"``, ``"ntk"``, ``"ntkgp"`` or a tuple (``None``: every one the
        kernel allows). ``k_test_train`` is the test-train kernel (``(m, n)``, e.g.
        ``net.kernel(x_test, x_train)``); ``None`` gives the training points
        (``N(y, 0)``). ``k_test_test`` (``(m, m)``) is needed for covariances;
        ``compute_cov=None`` computes them when it is given. The positional order is
        Neural Tangents' (``get, k_test_train, k_test_test``). Returns a
        :class:`Gaussian` for a single name (or a bare kernel), else :class:`Predictions`
        (a named tuple of Gaussians, fields in the order asked). ``post.solves`` lists
        the conjugate-gradient solves made (kernel, iterations, relative residual).

    Raises:
        ShapeError: kernels and targets disagree in size.
        NonFiniteError: NaN or infinite targets or kernels.
        SingularKernelError: the regularised kernel is singular or not positive definite.
        HyperparameterError: unknown ``get``, negative ``diag_reg``, a missing kernel.

    """
    where = "predict.gp_inference"
    diag_reg = real(diag_reg, "diag_reg", where)
    y, vector = targets(y_train, where)
    core = Predictor(
        Kernels(k_train_train, "k_train_train", where),
        y,
        vector,
        diag_reg,
        bool(diag_reg_absolute),
        where,
        solver=solver,
        solver_options=solver_options,
    )

    def post(
        get: Get = None,
        k_test_train: KernelLike | None = None,
        k_test_test: KernelLike | None = None,
        compute_cov: bool | None = None,
    ) -> Gaussian | Predictions:
        """Posterior on the test points (see :func:`gp_inference`)."""
        names, single = core.names(get, GP_NAMES)
        cov = compute_cov_flag(compute_cov, k_test_test, where)
        return format_predictions(core.predict(names, None, k_test_train, k_test_test, cov), single)

    post.solves = core.solves  # type: ignore[attr-defined]
    return post
