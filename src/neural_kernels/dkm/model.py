r"""``DKM``: the deep kernel machine of a fully connected network, full or sparse.

The deep kernel machine (Yang, Robeyns, Milsom, Anson, Schoots and Aitchison, ICML 2023)
is the infinite-width limit of a deep Gaussian process whose likelihood is scaled with
the width. Every hidden layer's Gram matrix :math:`G_l` becomes a learned parameter and
the posterior concentrates at the maximum of

.. math::
    \mathcal L(G_1, \dots, G_L) = \log P(Y \mid G_L)
        - \sum_{l=1}^{L} \nu_l\,
          \mathrm{KL}\big(\mathcal N(0, G_l) \,\|\, \mathcal N(0, K(G_{l-1}))\big),

where :math:`K` maps a Gram matrix through the layer's activation dual and ``Dense``
(:mod:`~neural_kernels.dkm.architecture`). As :math:`\nu \to \infty` the Grams are pinned
to :math:`G_l = K(G_{l-1})`, which is the NNGP; finite :math:`\nu` learns
representations. The Grams start at the NNGP, so the objective starts at the NNGP's log
marginal likelihood and only rises during training.

**Full DKM** (``inducing=None``): the Grams of all ``P`` training points are learned
(``L P (P + 1) / 2`` parameters, :math:`O(L P^3)` per step); with a Gaussian likelihood
:math:`\log P(Y \mid G_L) = \sum_c \log \mathcal N(y_c; 0, K(G_L) + s^2 I)` in closed
form. **Sparse DKM** (``inducing=m`` or a tensor of inducing inputs): only the inducing
blocks are learned, the other blocks follow by the GP conditional
(:mod:`~neural_kernels.dkm.sparse`), the output is :math:`q(f_i) = \mathcal N(\mu, A)`
with its KL to :math:`\mathcal N(0, K_{ii})`, and the expected log-likelihood is a sum
over examples, so it trains in minibatches at cost linear in the data. A categorical
likelihood always uses the variational output (also in the full DKM, on the training
points).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._validation import as_tensor, check_batch
from ..errors import HyperparameterError, ShapeError, describe
from .architecture import Architecture, parse_network
from .gram import GramLayer, cholesky, gaussian_kl
from .likelihoods import Categorical, Gaussian, Likelihood, make_likelihood
from .sparse import Blocks, VariationalOutput, conditional, optimal_gaussian_output

__all__ = ["DKM", "DKMPrediction"]

WHERE = "nk.dkm.DKM"


class DKMPrediction(NamedTuple):
    """The predictive distribution of the outputs ``f`` (without observation noise).

    Attributes:
        mean: shape ``(n, c)`` (``(n,)`` when the targets were a vector).
        variance: shape ``(n,)``, shared by the ``c`` output columns.

    """

    mean: Tensor
    variance: Tensor


class _Chain(NamedTuple):
    """One pass through the layers: output kernel blocks and the KL of each learned Gram."""

    out_ii: Tensor
    out_t: Blocks | None
    kls: list[Tensor]
    grams: list[Tensor]


def _check_nu(nu: object, layers: int) -> tuple[float, ...]:
    values: list[Any] = list(nu) if isinstance(nu, (list, tuple)) else [nu]
    if isinstance(nu, Tensor):
        values = [float(v) for v in nu.reshape(-1)]
    if len(values) == 1:
        values = values * layers
    if len(values) != layers:
        raise HyperparameterError(
            describe(
                WHERE,
                f"nu has {len(values)} values for {layers} learned Gram layer(s)",
                "Pass one nu, or one per learned Gram layer (every Dense but the first and "
                "the last).",
            )
        )
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok or math.isnan(float(v)) or float(v) <= 0:
            raise HyperparameterError(
                describe(
                    WHERE,
                    f"nu={nu!r}",
                    "nu must be positive (small: flexible representations; large: close to "
                    "the NNGP; math.inf: pinned at the NNGP).",
                )
            )
    return tuple(float(v) for v in values)


class DKM(nn.Module):
    r"""Deep kernel machine of a fully connected network (see the module docstring).

    Args:
        net: ``nk.Sequential`` of ``Dense`` layers with an elementwise activation
            between two of them (any activation of ``nk``: its own dual is used). The Gram
            after the first ``Dense`` is the fixed input layer, every later ``Dense`` but
            the last gives a learned Gram, the last gives the output kernel.
        nu: the KL weight :math:`\nu`, one number or one per learned Gram; ``math.inf``
            pins a layer at the NNGP.
        likelihood: ``"gaussian"`` (float targets ``(n,)`` or ``(n, c)``) or
            ``"categorical"`` (integer labels ``(n,)`` in ``[0, classes)``, ``classes``
            the width of the last ``Dense``).
        noise_var: Gaussian noise variance (the starting value when learned).
        learn_noise: learn the noise variance, bounded below by ``min_noise_var``. On
            near-linear data a learned noise collapses to the bound (the DKM interpolates
            the targets): keep the bound at a noise level you believe in.
        min_noise_var: lower bound of a learned noise variance.
        inducing: ``None`` (full DKM), a number ``m`` of inducing points (``m`` training
            points drawn at random with ``seed``), or inducing inputs ``(m, d)``.
        jitter: relative jitter added to each prior before its Cholesky factorisation
            (``jitter * mean(diag K) * I``). It moves the NNGP limit by about as much,
            so keep it small (default ``0``; ``1e-6`` with duplicate points).
        mc_samples: Monte Carlo samples of a categorical expected log-likelihood.
        seed: seed of the inducing-point draw and of the Monte Carlo samples.

    Example::

        net = nk.Sequential(nk.Dense(1), nk.ReLU(), nk.Dense(1, w_std=2**0.5, b_std=0.3),
                            nk.ReLU(), nk.Dense(1, w_std=2**0.5, b_std=0.3))
        dkm = nk.dkm.DKM(net, nu=10.0, noise_var=0.1).fit(x, y, steps=100, optimizer="lbfgs")
        mean, var = dkm.predict(x_test)

    """

    def __init__(
        self,
        net: Any,
        nu: float | Sequence[float] = 1.0,
        *,
        likelihood: str = "gaussian",
        noise_var: float = 0.1,
        learn_noise: bool = False,
        min_noise_var: float = 1e-4,
        inducing: int | Tensor | None = None,
        jitter: float = 0.0,
        mc_samples: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.architecture: Architecture = parse_network(net)
        self.net = net
        self.nu = _check_nu(nu, len(self.architecture.hidden))
        self.likelihood: Likelihood = make_likelihood(
            likelihood,
            classes=self.architecture.n_outputs,
            noise_var=noise_var,
            learn_noise=learn_noise,
            min_noise_var=min_noise_var,
            mc_samples=mc_samples,
        )
        if not isinstance(jitter, (int, float)) or not 0.0 <= jitter < 1.0:
            raise HyperparameterError(
                describe(WHERE, f"jitter={jitter!r}", "Pass a relative jitter in [0, 1).")
            )
        self.jitter = float(jitter)
        self._inducing_arg = self._check_inducing(inducing)
        self.seed = int(seed)
        self.gram_layers = nn.ModuleDict()
        self.output: VariationalOutput | None = None
        self.history: list[float] = []
        self._x: Tensor | None = None
        self._y: Tensor | None = None
        self._z: Tensor | None = None
        self._vector = False

    # ----------------------------------------------------------------- set-up

    @staticmethod
    def _check_inducing(inducing: object) -> int | Tensor | None:
        if inducing is None or isinstance(inducing, Tensor):
            return inducing
        if isinstance(inducing, int) and not isinstance(inducing, bool) and inducing >= 1:
            return inducing
        raise HyperparameterError(
            describe(
                WHERE,
                f"inducing={inducing!r}",
                "Pass None (full DKM), a positive number of inducing points, or inducing "
                "inputs of shape (m, features).",
            )
        )

    @property
    def sparse(self) -> bool:
        """Whether the DKM is sparse (learned inducing blocks) rather than full."""
        return self._inducing_arg is not None

    @property
    def is_initialized(self) -> bool:
        """Whether :meth:`initialize` (or :meth:`fit`) has set the training data."""
        return self._x is not None

    def _inputs(self, x: Any, name: str) -> Tensor:
        t = as_tensor(x, name, WHERE)
        check_batch(t, name, WHERE)
        if t.ndim != 2:
            raise ShapeError(
                describe(
                    WHERE,
                    f"{name} has shape {tuple(t.shape)}",
                    "A DKM takes flat inputs (n, features): reshape with x.flatten(1).",
                )
            )
        return t

    def _inducing_inputs(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        arg = self._inducing_arg
        if arg is None:
            return x
        if isinstance(arg, int):
            if arg > n:
                raise HyperparameterError(
                    describe(
                        WHERE,
                        f"inducing={arg} points for {n} training points",
                        f"Use at most {n} inducing points (inducing=None is the full DKM).",
                    )
                )
            gen = torch.Generator().manual_seed(self.seed)
            index = torch.randperm(n, generator=gen)[:arg].sort().values
            return x[index.to(x.device)]
        z = self._inputs(arg, "inducing")
        if z.shape[1] != x.shape[1]:
            raise ShapeError(
                describe(
                    WHERE,
                    f"inducing inputs of shape {tuple(z.shape)} for inputs with "
                    f"{x.shape[1]} features",
                    f"Pass inducing inputs of shape (m, {x.shape[1]}).",
                )
            )
        if z.shape[0] > n:
            raise HyperparameterError(
                describe(
                    WHERE,
                    f"{z.shape[0]} inducing points for {n} training points",
                    f"Use at most {n} inducing points (inducing=None is the full DKM).",
                )
            )
        return z.to(dtype=x.dtype, device=x.device)

    def initialize(self, x: Any, y: Any) -> DKM:
        """Store the training data and put every Gram matrix at the NNGP.

        Args:
            x: training inputs ``(n, d)``.
            y: targets (see ``likelihood``).

        Returns:
            ``self``.

        """
        xt = self._inputs(x, "x")
        yt = self.likelihood.check_targets(y, xt.shape[0], xt.dtype)
        self._vector = isinstance(self.likelihood, Gaussian) and torch.as_tensor(y).ndim == 1
        z = self._inducing_inputs(xt)
        self._x, self._y, self._z = xt, yt.to(xt.device), z
        m, dtype, device = z.shape[0], xt.dtype, xt.device
        self.gram_layers = nn.ModuleDict()
        arch = self.architecture
        with torch.no_grad():
            g = arch.input_full(z)
            for index, (gmap, nu) in enumerate(zip(arch.hidden, self.nu, strict=True)):
                k = gmap.full(g)
                if math.isfinite(nu):
                    layer = GramLayer(m, dtype, device)
                    layer.initialize(cholesky(k, self.jitter, self._prior_name(index)))
                    self.gram_layers[str(index)] = layer
                    g = layer.gram()
                else:
                    g = k
            self.output = None
            if self.sparse or isinstance(self.likelihood, Categorical):
                columns = yt.shape[1] if yt.ndim == 2 else self.architecture.n_outputs
                self.output = VariationalOutput(m, columns, dtype, device)
                self.reset_output()
        self.history = []
        return self

    def _prior_name(self, index: int) -> str:
        return f"the prior K(G_{index}) of Gram layer {index + 1}"

    def reset_output(self) -> None:
        """Put the output layer ``q(f)`` at its best value (Gaussian) or at the prior (categorical).

        The best value is the Gaussian optimum for the current Grams; the prior is
        ``N(0, K_ii)``. Nothing to do for a full Gaussian DKM (no output layer).
        """
        x, y = self._data()
        if self.output is None:
            return
        with torch.no_grad():
            chain = self._chain(x if self.sparse else None)
            if isinstance(self.likelihood, Gaussian):
                k_ti = chain.out_ii if chain.out_t is None else chain.out_t.ti
                s2 = self.likelihood.noise_var(x.dtype)
                mean, cov_chol = optimal_gaussian_output(self._output_chol(chain), k_ti, y, s2)
                self.output.set(mean, cov_chol)
            else:
                self.output.set(torch.zeros_like(self.output.mean), self._output_chol(chain))

    @staticmethod
    def _not_initialized() -> HyperparameterError:
        return HyperparameterError(
            describe(
                WHERE, "no training data yet", "Call dkm.fit(x, y) or dkm.initialize(x, y) first."
            )
        )

    def _data(self) -> tuple[Tensor, Tensor]:
        if self._x is None or self._y is None:
            raise self._not_initialized()
        return self._x, self._y

    def _inducing_points(self) -> Tensor:
        if self._z is None:
            raise self._not_initialized()
        return self._z

    # ----------------------------------------------------------------- forward

    def _chain(self, x_t: Tensor | None) -> _Chain:
        """Push the inducing points (and ``x_t``, by the conditional) through the layers."""
        z = self._inducing_points()
        arch = self.architecture
        m = z.shape[0]
        g = arch.input_full(z)
        t = None if x_t is None else Blocks(arch.input_cross(x_t, z), arch.input_diag(x_t))
        kls: list[Tensor] = []
        grams: list[Tensor] = []
        for index, (gmap, nu) in enumerate(zip(arch.hidden, self.nu, strict=True)):
            k = gmap.full(g)
            kt = (
                None
                if t is None
                else Blocks(gmap.cross(t.ti, t.t, torch.diagonal(g)), gmap.diag(t.t))
            )
            if not math.isfinite(nu):
                g, t = k, kt
                grams.append(g)
                continue
            k_chol = cholesky(k, self.jitter, self._prior_name(index))
            layer = self.gram_layers[str(index)]
            if not isinstance(layer, GramLayer):  # pragma: no cover - built by initialize
                raise self._not_initialized()
            v = layer.factor()
            kls.append(gaussian_kl(v, k_chol, float(m)))
            if kt is not None:
                t = conditional(k_chol, kt, v, float(m))
            g = v @ v.transpose(0, 1) / m
            grams.append(g)
        out = arch.output
        k_out = out.full(g)
        out_t = None
        if t is not None:
            out_t = Blocks(out.cross(t.ti, t.t, torch.diagonal(g)), out.diag(t.t))
        return _Chain(k_out, out_t, kls, grams)

    def _output_chol(self, chain: _Chain) -> Tensor:
        return cholesky(chain.out_ii, self.jitter, "the output kernel K(G_L)")

    def _penalty(self, chain: _Chain) -> Tensor:
        total = torch.zeros((), dtype=chain.out_ii.dtype, device=chain.out_ii.device)
        learned = [nu for nu in self.nu if math.isfinite(nu)]
        for nu, kl in zip(learned, chain.kls, strict=True):
            total = total + nu * kl
        return total

    def objective(self, index: Tensor | None = None) -> Tensor:
        r"""The DKM objective :math:`\mathcal L` in nats (a 0-d tensor, differentiable).

        Args:
            index: training examples of a minibatch (a long tensor); the expected
                log-likelihood is then estimated by ``n / len(index)`` times its sum over
                the batch (unbiased). ``None``: every training point.

        Raises:
            HyperparameterError: a minibatch for the full Gaussian DKM, whose marginal
                likelihood couples every training point (use ``inducing=``), or no data.

        """
        x, y = self._data()
        n = x.shape[0]
        output = self.output
        if output is None:
            if index is not None:
                raise HyperparameterError(
                    describe(
                        WHERE,
                        "a minibatch for the full DKM with a Gaussian likelihood",
                        "Its marginal likelihood needs every point: train full-batch, or use "
                        "the sparse DKM (inducing=m) for minibatches.",
                    )
                )
            chain = self._chain(None)
            gaussian = self.likelihood
            if not isinstance(gaussian, Gaussian):  # pragma: no cover - set by initialize
                raise self._not_initialized()
            return gaussian.log_marginal(chain.out_ii, y) - self._penalty(chain)
        sel = slice(None) if index is None else index
        xb, yb = x[sel], y[sel]
        batch = xb.shape[0]
        chain = self._chain(xb if self.sparse else None)
        out_chol = self._output_chol(chain)
        if chain.out_t is None:
            mean, var = output.marginals()
            mean, var = mean[sel], var[sel]
        else:
            mean, var = output.predictive(out_chol, chain.out_t)
        ell = self.likelihood.expected_log_lik(mean, var, yb, self.seed) * (n / batch)
        return ell - output.kl(out_chol) - self._penalty(chain)

    def grams(self) -> list[Tensor]:
        """The Gram matrices ``G_1, ..., G_L`` (inducing blocks, ``(m, m)``), detached."""
        with torch.no_grad():
            return [g.detach() for g in self._chain(None).grams]

    def kl_terms(self) -> list[float]:
        """``KL(N(0, G_l) || N(0, K(G_{l-1})))`` of each learned Gram, in nats."""
        with torch.no_grad():
            return [float(kl) for kl in self._chain(None).kls]

    def predict(self, x_test: Any, batch_size: int = 4096) -> DKMPrediction:
        """Predictive mean and variance of the outputs at ``x_test`` ``(n, d)``.

        The full Gaussian DKM gives the GP posterior of the output kernel,
        ``mean = K_ti (K_ii + s^2 I)^-1 Y`` and ``var = k_t - diag(K_ti (K_ii + s^2 I)^-1
        K_it)``, with the test blocks of every Gram from the layer-wise conditional;
        otherwise the variational output's marginals (:mod:`.sparse`). The variance is
        that of ``f``, without the observation noise. Computed in batches of
        ``batch_size`` test points, without gradients.
        """
        x, y = self._data()
        xt = self._inputs(x_test, "x_test")
        if xt.shape[1] != x.shape[1]:
            raise ShapeError(
                describe(
                    WHERE,
                    f"x_test has {xt.shape[1]} features, the training inputs {x.shape[1]}",
                    "Pass test inputs with the training inputs' features.",
                )
            )
        xt = xt.to(dtype=x.dtype, device=x.device)
        means, variances = [], []
        with torch.no_grad():
            for start in range(0, xt.shape[0], batch_size):
                mean, var = self._predict_batch(xt[start : start + batch_size], y)
                means.append(mean)
                variances.append(var)
        mean, var = torch.cat(means), torch.cat(variances)
        return DKMPrediction(mean[:, 0] if self._vector else mean, var)

    def _predict_batch(self, xt: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        chain = self._chain(xt)
        out_t = chain.out_t
        if out_t is None:  # pragma: no cover - a test batch is always given
            raise self._not_initialized()
        if self.output is None:
            gaussian = self.likelihood
            if not isinstance(gaussian, Gaussian):  # pragma: no cover
                raise self._not_initialized()
            chol = gaussian.noisy_cholesky(chain.out_ii)
            w = torch.linalg.solve_triangular(chol, out_t.ti.transpose(0, 1), upper=False)
            white_y = torch.linalg.solve_triangular(chol, y, upper=False)
            return w.transpose(0, 1) @ white_y, (out_t.t - w.square().sum(0)).clamp_min(0.0)
        return self.output.predictive(self._output_chol(chain), out_t)

    def predict_proba(self, x_test: Any) -> Tensor:
        """Class probabilities ``(n, classes)`` of a categorical DKM (Monte Carlo softmax)."""
        if not isinstance(self.likelihood, Categorical):
            raise HyperparameterError(
                describe(
                    WHERE,
                    "predict_proba on a DKM with likelihood='gaussian'",
                    "Use predict(x_test) for the Gaussian outputs.",
                )
            )
        mean, var = self.predict(x_test)
        return self.likelihood.probabilities(mean, var, self.seed)

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        steps: int = 100,
        optimizer: str = "adam",
        lr: float | None = None,
        batch_size: int | None = None,
        warm_start: bool = False,
        progress: bool | Callable[[int, int, float], None] = False,
        ftol: float = 2.220446049250313e-09,
    ) -> DKM:
        """Maximise the objective from the NNGP (see :func:`.training.fit`); returns ``self``."""
        from .training import fit

        fit(
            self,
            x,
            y,
            steps=steps,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            warm_start=warm_start,
            progress=progress,
            ftol=ftol,
        )
        return self

    def extra_repr(self) -> str:
        kind = "full" if not self.sparse else "sparse"
        return f"{kind}, nu={self.nu}, layers={len(self.architecture.hidden)}"
