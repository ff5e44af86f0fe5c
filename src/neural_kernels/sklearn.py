r"""scikit-learn estimators and kernels from any architecture (needs the ``sklearn`` extra).

* :class:`NeuralKernelRegressor` and :class:`NeuralKernelClassifier`: the mean output of
  an infinite ensemble of infinitely wide networks trained by gradient descent on MSE for
  time ``t`` (``t=None``: to convergence, i.e. kernel ridge regression with the NNGP or NTK),

  .. math::
      \mu(x) = \Theta(x, X)\,\tilde\Theta^{-1}\big(I - e^{-\tilde\Theta \tau / N}\big)\,Y,
      \qquad \tilde\Theta = \Theta(X, X) + \mathrm{diag\_reg}\,\tfrac{\mathrm{tr}\,\Theta}{n} I,

  as :func:`neural_kernels.predict.gradient_descent_mse_ensemble` computes it. The
  classifier regresses one-hot targets and predicts the class of the largest output;
  ``predict_proba`` is the softmax of the outputs divided by ``temperature``.
* :class:`NeuralKernel`: a ``sklearn.gaussian_process.kernels.Kernel`` whose ``w_std`` and
  ``b_std`` are hyperparameters (log-scale, gradients by automatic differentiation), so
  ``GaussianProcessRegressor`` fits them by marginal likelihood.

Inputs are ``(n_samples, n_features)`` arrays, computed in float64; ``in_shape`` reshapes
each row for spatial networks (e.g. ``(1, 8, 8)``). The default network is
``Dense(1, 1.5, 0.05) -> ReLU -> Dense(1, 1.5, 0.05)``. All estimators pass scikit-learn's
``check_estimator`` (``tests/test_sklearn.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._stds import check_network, std_layers, with_stds
from .errors import HyperparameterError, NonFiniteError, ShapeError, describe
from .layers.activations import ReLU
from .layers.base import Layer
from .layers.combinators import Sequential
from .layers.dense import Dense

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.gaussian_process.kernels import Hyperparameter
    from sklearn.gaussian_process.kernels import Kernel as _SkKernel
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover (exercised without the extra)
    raise ImportError(
        "neural_kernels.sklearn needs scikit-learn: pip install 'neural-kernels[sklearn]'"
    ) from exc

__all__ = [
    "KernelClassifier",
    "KernelRegressor",
    "NeuralKernel",
    "NeuralKernelClassifier",
    "NeuralKernelRegressor",
    "default_network",
]

_GETS = ("nngp", "ntk")


def default_network() -> Layer:
    """The network of estimators built with ``net=None``: one hidden ReLU layer."""
    return Sequential(Dense(1, 1.5, 0.05), ReLU(), Dense(1, 1.5, 0.05))


def _tensor(x: Any) -> Tensor:
    """A float64 copy of an array (read-only and memory-mapped inputs are fine)."""
    return torch.from_numpy(np.array(x, dtype=np.float64, copy=True))


def _rows(x: Tensor, in_shape: Sequence[int] | None, where: str) -> Tensor:
    if in_shape is None:
        return x
    shape = tuple(int(s) for s in in_shape)
    if math.prod(shape) != x.shape[1]:
        raise ShapeError(
            describe(
                where,
                f"inputs have {x.shape[1]} features but in_shape={shape} holds {math.prod(shape)}",
                "Pass inputs of prod(in_shape) features or fix in_shape.",
            )
        )
    return x.reshape(x.shape[0], *shape)


def _validated(where: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` (scikit-learn's checks), its ``ValueError`` as ours.

    The message keeps scikit-learn's words (its estimator checks match them) and adds the
    fix: a :class:`ShapeError` or :class:`NonFiniteError`, both ``ValueError`` subclasses.
    """
    try:
        return call(*args, **kwargs)
    except ValueError as exc:
        text = str(exc)
        if "NaN" in text or "infinity" in text:
            raise NonFiniteError(
                describe(where, text, "Drop or impute the non-finite values.")
            ) from exc
        if any(w in text for w in ("feature", "sample", "dim", "shape", "1d array")):
            raise ShapeError(
                describe(
                    where,
                    text,
                    "Pass X (n, d) with the d features of fit and targets with one row "
                    "per row of X: y (n,) or, for the regressor, (n, k).",
                )
            ) from exc
        raise


class _KernelEstimator(BaseEstimator):
    """Shared fitting and prediction of the two estimators."""

    def __init__(
        self,
        net: Layer | None = None,
        get: str = "ntk",
        t: float | None = None,
        diag_reg: float = 1e-4,
        in_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.net = net
        self.get = get
        self.t = t
        self.diag_reg = diag_reg
        self.in_shape = in_shape

    def _network(self) -> Layer:
        where = f"nk.sklearn.{type(self).__name__}"
        if self.get not in _GETS:
            raise HyperparameterError(
                describe(where, f"got get={self.get!r}", "Use get='nngp' or get='ntk'.")
            )
        if self.t is not None and not (isinstance(self.t, (int, float)) and self.t >= 0):
            raise HyperparameterError(
                describe(where, f"got t={self.t!r}", "Use t=None (convergence) or a time >= 0.")
            )
        if not (isinstance(self.diag_reg, (int, float)) and self.diag_reg >= 0):
            raise HyperparameterError(
                describe(where, f"got diag_reg={self.diag_reg!r}", "Use a number >= 0.")
            )
        return default_network() if self.net is None else check_network(where, self.net)

    def _fit_targets(self, X: Any, Y: Tensor) -> None:
        from .predict import gradient_descent_mse_ensemble

        where = f"nk.sklearn.{type(self).__name__}"
        net = self._network()
        self.X_fit_ = np.array(X, dtype=np.float64)
        self.y_fit_ = Y.numpy()
        x = _rows(_tensor(X), self.in_shape, where)
        self._predict_fn = gradient_descent_mse_ensemble(net, x, Y, diag_reg=float(self.diag_reg))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[misc]
        state.pop("_predict_fn", None)  # a closure over cached factorisations: rebuilt on load
        return state  # type: ignore[no-any-return]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        if "X_fit_" in state:
            self._fit_targets(state["X_fit_"], torch.from_numpy(state["y_fit_"]))

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        where = f"nk.sklearn.{type(self).__name__}"
        X = _validated(where, validate_data, self, X, reset=False, dtype=np.float64)
        x = _rows(_tensor(X), self.in_shape, f"nk.sklearn.{type(self).__name__}")
        t = None if self.t is None else float(self.t)
        mean = self._predict_fn(t=t, x_test=x, get=self.get).mean  # type: ignore[union-attr]
        return mean.detach().numpy()


class NeuralKernelRegressor(RegressorMixin, _KernelEstimator):
    """Kernel regression with the NNGP or NTK of ``net`` (an infinite trained ensemble).

    Args:
        net: a network of neural_kernels layers; ``None`` uses :func:`default_network`.
        get: ``"ntk"`` (gradient-descent training of every layer) or ``"nngp"`` (only
            the readout trained, the Bayesian posterior mean at ``t=None``).
        t: training time ``learning_rate * steps`` with learning rate 1; ``None`` is
            convergence.
        diag_reg: ridge, relative to the mean diagonal of the train kernel.
        in_shape: feature shape of one input of the network (rows are reshaped to it).

    Attributes:
        n_features_in_: number of features seen in ``fit``.
        X_fit_, y_fit_: the training inputs and targets.

    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> NeuralKernelRegressor:
        """Store the training data ``X (n, d)``, ``y (n,)`` or ``(n, k)``; return ``self``."""
        X, y = _validated(
            "nk.sklearn.NeuralKernelRegressor.fit",
            validate_data,
            self,
            X,
            y,
            dtype=np.float64,
            y_numeric=True,
            multi_output=True,
        )
        self._fit_targets(X, _tensor(y))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Mean outputs at ``X``: ``(m,)`` or ``(m, k)`` like the targets."""
        return self._outputs(X)


class NeuralKernelClassifier(ClassifierMixin, _KernelEstimator):
    """Classification by kernel regression of one-hot targets with the NNGP or NTK of ``net``.

    Args:
        net, get, t, diag_reg, in_shape: as :class:`NeuralKernelRegressor`.
        temperature: ``predict_proba = softmax(outputs / temperature)``.

    Attributes:
        classes_: the class labels, in the order of the output columns.
        n_features_in_: number of features seen in ``fit``.

    """

    def __init__(
        self,
        net: Layer | None = None,
        get: str = "ntk",
        t: float | None = None,
        diag_reg: float = 1e-4,
        in_shape: tuple[int, ...] | None = None,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(net=net, get=get, t=t, diag_reg=diag_reg, in_shape=in_shape)
        self.temperature = temperature

    def fit(self, X: Any, y: Any) -> NeuralKernelClassifier:
        """Regress the one-hot codes of the labels ``y (n,)``; return ``self``."""
        where = "nk.sklearn.NeuralKernelClassifier.fit"
        X, y = _validated(where, validate_data, self, X, y, dtype=np.float64)
        y = _validated(where, column_or_1d, y, warn=True)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = torch.from_numpy(encoder.transform(y))
        onehot = torch.nn.functional.one_hot(codes, len(self.classes_)).to(torch.float64)
        self._fit_targets(X, onehot)
        return self

    def decision_scores(self, X: Any) -> np.ndarray:
        """The ``(m, n_classes)`` regression outputs, one column per class."""
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest output for each row of ``X``."""
        scores = self._outputs(X)  # checks that the estimator is fitted first
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """``softmax(outputs / temperature)``: ``(m, n_classes)`` rows summing to 1."""
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise HyperparameterError(
                describe(
                    "nk.sklearn.NeuralKernelClassifier",
                    f"got temperature={self.temperature!r}",
                    "Use a number > 0.",
                )
            )
        z = self._outputs(X) / float(self.temperature)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


#: Shorter names of the two estimators.
KernelRegressor = NeuralKernelRegressor
KernelClassifier = NeuralKernelClassifier


class NeuralKernel(_SkKernel):
    """The NNGP or NTK of ``net`` as a scikit-learn kernel with ``w_std``/``b_std`` to fit.

    Args:
        net: a network of neural_kernels layers (``None``: :func:`default_network`).
        get: ``"nngp"`` or ``"ntk"``.
        w_std: weight std of the ``Dense``/``Conv`` layers, replacing the network's own:
            a float (shared by all) or one value per layer.
        b_std: bias std, likewise (layers without a bias, ``b_std=None``, keep none).
        w_std_bounds, b_std_bounds: bounds of the hyperparameters (log-scale search),
            or ``"fixed"``.
        in_shape: feature shape of one input of the network.

    ``k(X, Y)`` has shape ``(n_X, n_Y)``; with ``eval_gradient=True`` it also returns the
    gradient ``(n_X, n_X, n_theta)`` with respect to ``theta = log([b_std..., w_std...])``
    (scikit-learn orders hyperparameters by name).

    """

    def __init__(
        self,
        net: Layer | None = None,
        get: str = "nngp",
        w_std: float | Sequence[float] = 1.0,
        b_std: float | Sequence[float] = 0.1,
        w_std_bounds: Any = (1e-2, 1e2),
        b_std_bounds: Any = (1e-5, 1e2),
        in_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.net = net
        self.get = get
        self.w_std = w_std
        self.b_std = b_std
        self.w_std_bounds = w_std_bounds
        self.b_std_bounds = b_std_bounds
        self.in_shape = in_shape

    # -- hyperparameters --------------------------------------------------------------

    def _net(self) -> Layer:
        where = "nk.sklearn.NeuralKernel"
        if self.get not in _GETS:
            raise HyperparameterError(
                describe(where, f"got get={self.get!r}", "Use get='nngp' or get='ntk'.")
            )
        net = default_network() if self.net is None else check_network(where, self.net)
        if not std_layers(net):
            raise HyperparameterError(
                describe(where, f"the network {net!r} has no layer with a w_std", "Add a Dense.")
            )
        return net

    def _values(self) -> tuple[np.ndarray, np.ndarray]:
        """The current ``w_std`` and ``b_std`` values (arrays of 1 or one per layer)."""
        w = np.atleast_1d(np.asarray(self.w_std, dtype=float))
        b = np.atleast_1d(np.asarray(self.b_std, dtype=float))
        return w, b

    @property
    def hyperparameter_w_std(self) -> Hyperparameter:
        n = self._values()[0].size
        return Hyperparameter("w_std", "numeric", self.w_std_bounds, n)

    @property
    def hyperparameter_b_std(self) -> Hyperparameter:
        n = self._values()[1].size
        return Hyperparameter("b_std", "numeric", self.b_std_bounds, n)

    # -- the kernel -------------------------------------------------------------------

    def _kernel(self, X: Any, Y: Any, grad: bool) -> tuple[Tensor, list[Tensor]]:
        net = self._net()
        w, b = self._values()
        w_t = torch.tensor(w, dtype=torch.float64, requires_grad=grad)
        b_t = torch.tensor(b, dtype=torch.float64, requires_grad=grad)
        n = len(std_layers(net))
        ws = list(w_t.unbind()) if w.size > 1 else [w_t[0]]
        bs = list(b_t.unbind()) if b.size > 1 else [b_t[0]]
        if w.size not in (1, n) or b.size not in (1, n):
            raise HyperparameterError(
                describe(
                    "nk.sklearn.NeuralKernel",
                    f"got {w.size} w_std and {b.size} b_std values for {n} layers",
                    f"Pass one value or {n}.",
                )
            )
        where = "nk.sklearn.NeuralKernel"
        x = _rows(_tensor(np.atleast_2d(X)), self.in_shape, where)
        y = None if Y is None else _rows(_tensor(np.atleast_2d(Y)), self.in_shape, where)
        k = getattr(with_stds(net, ws, bs).kernel(x, y, self.get), self.get)
        return k, [w_t, b_t]

    def __call__(self, X: Any, Y: Any = None, eval_gradient: bool = False) -> Any:
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        k, params = self._kernel(X, Y, eval_gradient)
        if not eval_gradient:
            return k.detach().numpy()
        # d K / d log(theta_j) = theta_j dK/dtheta_j: one forward-over-reverse product each.
        u = torch.zeros_like(k, requires_grad=True)
        grads = torch.autograd.grad(k, params, u, create_graph=True, allow_unused=True)
        columns = []
        by_name = {"w_std": (params[0], grads[0]), "b_std": (params[1], grads[1])}
        for hp in self.hyperparameters:  # theta's order (sklearn sorts them by name)
            if hp.fixed:
                continue
            p, g = by_name[hp.name]
            for j in range(p.numel()):
                if g is None or not g.requires_grad:
                    columns.append(torch.zeros_like(k))
                    continue
                dj = torch.autograd.grad(g[j], u, retain_graph=True)[0]
                columns.append(p[j].detach() * dj)
        grad = torch.stack(columns, -1) if columns else k.new_zeros(*k.shape, 0)
        return k.detach().numpy(), grad.detach().numpy()

    def diag(self, X: Any) -> np.ndarray:
        net = self._net()
        w, b = self._values()
        ws = [float(v) for v in w]
        bs = [float(v) for v in b]
        x = _rows(_tensor(np.atleast_2d(X)), self.in_shape, "nk.sklearn.NeuralKernel")
        k = getattr(with_stds(net, ws, bs).kernel_diag(x, self.get), self.get)
        return k.detach().numpy()

    def is_stationary(self) -> bool:
        return False

    def __repr__(self) -> str:
        w, b = self._values()
        return f"NeuralKernel(get={self.get!r}, w_std={w.tolist()}, b_std={b.tolist()})"
