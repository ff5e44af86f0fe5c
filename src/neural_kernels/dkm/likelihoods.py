r"""Likelihoods of a deep kernel machine's outputs: Gaussian and categorical.

Both give the expected log-likelihood under the marginals of the output posterior,
:math:`f_{tc} \sim \mathcal N(\mu_{tc}, v_t)` (one variance shared by the ``c`` output
columns):

* Gaussian with noise variance :math:`s^2`, in closed form,

  .. math::
      \mathbb E \log \mathcal N(y; f, s^2)
        = -\tfrac12 \log(2\pi s^2) - \frac{(y - \mu)^2 + v}{2 s^2},

  and, for the full DKM, the exact marginal likelihood
  :math:`\sum_c \log \mathcal N(y_c; 0, K + s^2 I)`;
* categorical (softmax over the ``c`` outputs), by Monte Carlo over reparametrised
  samples :math:`f = \mu + \sqrt v\, \epsilon` with fixed seeds, so that the objective is
  a deterministic function of the parameters (common random numbers).

**Learned noise.** With ``learn_noise=True`` the noise variance is
``min_noise_var + exp(raw)``. The bound matters: on near-linear data the DKM can reshape
its Gram matrices to interpolate the targets, and a learned noise variance then
collapses towards zero (the model overfits, its test likelihood drops). Keep the noise
fixed, or bound it below by the noise level you believe in.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import HyperparameterError, InputTypeError, NonFiniteError, ShapeError, describe
from .gram import cholesky

__all__ = ["Categorical", "Gaussian", "Likelihood", "make_likelihood"]

WHERE = "nk.dkm.DKM"
LIKELIHOODS = ("gaussian", "categorical")


class Likelihood(nn.Module):
    """A likelihood ``p(y | f)`` of the outputs; see the module docstring."""

    name: str = ""

    def check_targets(self, y: object, n: int, dtype: torch.dtype) -> Tensor:
        """Validated targets for ``n`` examples, in the form :meth:`expected_log_lik` takes."""
        raise NotImplementedError

    def expected_log_lik(self, mean: Tensor, var: Tensor, y: Tensor, seed: int) -> Tensor:
        """``sum_t E log p(y_t | f_t)`` for ``f_t ~ N(mean_t, var_t)``; a 0-d tensor.

        ``mean``: ``(b, c)``; ``var``: ``(b,)``; ``y``: checked targets of ``b`` examples.
        """
        raise NotImplementedError


def _as_tensor(y: object, what: str) -> Tensor:
    if isinstance(y, Tensor):
        return y
    try:
        return torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise InputTypeError(
            describe(WHERE, f"{what} has type {type(y).__name__}", "Pass a torch.Tensor.")
        ) from None


class Gaussian(Likelihood):
    """Gaussian likelihood ``N(y; f, s^2)`` with a fixed or learned noise variance ``s^2``.

    Args:
        noise_var: the noise variance (the initial value when learned); positive.
        learn_noise: learn it by maximising the objective, kept above ``min_noise_var``.
        min_noise_var: the lower bound of a learned noise variance; positive.

    """

    name = "gaussian"

    def __init__(self, noise_var: float, learn_noise: bool, min_noise_var: float) -> None:
        super().__init__()
        for label, value in (("noise_var", noise_var), ("min_noise_var", min_noise_var)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise HyperparameterError(
                    describe(
                        WHERE,
                        f"{label}={value!r}",
                        f"Pass a positive finite {label} (e.g. 0.1 and 1e-4): the Gaussian "
                        "likelihood needs a positive noise variance.",
                    )
                )
        if learn_noise and noise_var <= min_noise_var:
            raise HyperparameterError(
                describe(
                    WHERE,
                    f"noise_var={noise_var!r} is not above min_noise_var={min_noise_var!r}",
                    "Start a learned noise variance above its lower bound.",
                )
            )
        self.learn_noise = bool(learn_noise)
        self.min_noise_var = float(min_noise_var)
        self.fixed_noise_var = float(noise_var)
        self.raw_noise: nn.Parameter | None = None
        if self.learn_noise:
            start = torch.tensor(math.log(noise_var - min_noise_var), dtype=torch.float64)
            self.raw_noise = nn.Parameter(start)

    def noise_var(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The current noise variance, a 0-d tensor of ``dtype``."""
        if self.raw_noise is None:
            return torch.tensor(self.fixed_noise_var, dtype=dtype)
        return (self.min_noise_var + torch.exp(self.raw_noise)).to(dtype)

    def check_targets(self, y: object, n: int, dtype: torch.dtype) -> Tensor:
        t = _as_tensor(y, "y")
        if not t.is_floating_point():
            raise InputTypeError(
                describe(
                    WHERE,
                    f"likelihood='gaussian' got targets of dtype {t.dtype} (class labels?)",
                    "Pass float targets of shape (n,) or (n, outputs) (e.g. one-hot), or use "
                    "likelihood='categorical' for integer class labels.",
                )
            )
        if t.ndim not in (1, 2) or t.shape[0] != n:
            raise ShapeError(
                describe(
                    WHERE,
                    f"targets of shape {tuple(t.shape)} for {n} inputs",
                    f"Pass targets of shape ({n},) or ({n}, outputs).",
                )
            )
        if not bool(torch.isfinite(t).all()):
            raise NonFiniteError(
                describe(WHERE, "the targets hold NaN or infinity", "Remove or impute them.")
            )
        return (t[:, None] if t.ndim == 1 else t).to(dtype)

    def expected_log_lik(self, mean: Tensor, var: Tensor, y: Tensor, seed: int) -> Tensor:
        s2 = self.noise_var(mean.dtype)
        c = y.shape[1]
        sq = (y - mean).square().sum() + c * var.sum()
        return -0.5 * y.numel() * torch.log(2.0 * math.pi * s2) - 0.5 * sq / s2

    def noisy_cholesky(self, k: Tensor) -> Tensor:
        """Lower Cholesky factor of ``K + s^2 I`` for ``k`` ``(n, n)``."""
        s2 = self.noise_var(k.dtype)
        eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
        return cholesky(k + s2 * eye, 0.0, "the output kernel plus the noise variance")

    def log_marginal(self, k: Tensor, y: Tensor) -> Tensor:
        r"""``sum_c log N(y_c; 0, K + s^2 I)`` for ``k`` ``(n, n)`` and ``y`` ``(n, c)``."""
        n, c = y.shape
        chol = self.noisy_cholesky(k)
        white = torch.linalg.solve_triangular(chol, y, upper=False)
        logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (white.square().sum() + c * logdet + n * c * math.log(2.0 * math.pi))

    def extra_repr(self) -> str:
        if self.learn_noise:
            return f"learned noise_var >= {self.min_noise_var:g}"
        return f"noise_var={self.fixed_noise_var:g}"


class Categorical(Likelihood):
    """Softmax likelihood over ``classes`` outputs; labels are integers in ``[0, classes)``.

    Args:
        classes: the number of classes (the width of the network's last ``Dense``).
        mc_samples: Monte Carlo samples of the expected log-likelihood (fixed seeds).

    """

    name = "categorical"

    def __init__(self, classes: int, mc_samples: int) -> None:
        super().__init__()
        if classes < 2:
            raise HyperparameterError(
                describe(
                    WHERE,
                    f"likelihood='categorical' with a last Dense of {classes} output(s)",
                    "Give the last Dense one output per class (at least 2).",
                )
            )
        if not isinstance(mc_samples, int) or mc_samples < 1:
            raise HyperparameterError(
                describe(WHERE, f"mc_samples={mc_samples!r}", "Pass a positive integer.")
            )
        self.classes = classes
        self.mc_samples = mc_samples

    def check_targets(self, y: object, n: int, dtype: torch.dtype) -> Tensor:
        t = _as_tensor(y, "y")
        if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
            raise InputTypeError(
                describe(
                    WHERE,
                    f"likelihood='categorical' got labels of dtype {t.dtype}",
                    "Pass integer class labels of shape (n,) (torch.long), or use "
                    "likelihood='gaussian' for real-valued targets.",
                )
            )
        if t.ndim != 1 or t.shape[0] != n:
            raise ShapeError(
                describe(
                    WHERE,
                    f"labels of shape {tuple(t.shape)} for {n} inputs",
                    f"Pass one integer label per input, shape ({n},).",
                )
            )
        if n and (int(t.min()) < 0 or int(t.max()) >= self.classes):
            raise HyperparameterError(
                describe(
                    WHERE,
                    f"labels range over [{int(t.min())}, {int(t.max())}] but the last Dense has "
                    f"{self.classes} outputs",
                    f"Use labels in [0, {self.classes}) or give the last Dense one output per "
                    "class.",
                )
            )
        return t.long()

    def samples(self, mean: Tensor, var: Tensor, seed: int) -> Tensor:
        """Reparametrised samples ``(mc_samples, b, c)`` of ``f ~ N(mean, var)``."""
        gen = torch.Generator(device=mean.device).manual_seed(seed)
        eps = torch.randn(
            (self.mc_samples, *mean.shape), generator=gen, dtype=mean.dtype, device=mean.device
        )
        return mean + var.clamp_min(0.0).sqrt()[:, None] * eps

    def expected_log_lik(self, mean: Tensor, var: Tensor, y: Tensor, seed: int) -> Tensor:
        logp = torch.log_softmax(self.samples(mean, var, seed), dim=-1)
        picked = logp.gather(-1, y[None, :, None].expand(logp.shape[0], -1, 1))
        return picked.sum() / self.mc_samples

    def probabilities(self, mean: Tensor, var: Tensor, seed: int) -> Tensor:
        """Predictive class probabilities ``(b, c)``: the Monte Carlo mean of the softmax."""
        return torch.softmax(self.samples(mean, var, seed), dim=-1).mean(0)

    def extra_repr(self) -> str:
        return f"classes={self.classes}, mc_samples={self.mc_samples}"


def make_likelihood(
    name: object,
    *,
    classes: int,
    noise_var: float,
    learn_noise: bool,
    min_noise_var: float,
    mc_samples: int,
) -> Likelihood:
    """The likelihood called ``name`` (``"gaussian"`` or ``"categorical"``)."""
    if name == "gaussian":
        return Gaussian(noise_var, learn_noise, min_noise_var)
    if name == "categorical":
        return Categorical(classes, mc_samples)
    raise HyperparameterError(
        describe(WHERE, f"likelihood={name!r}", f"Pass one of {', '.join(map(repr, LIKELIHOODS))}.")
    )
