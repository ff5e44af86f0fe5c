r"""Exact learning of permutations by ensembles of wide two-layer ReLU networks.

The task (Giapitzakis, Back de Luca, Fountoulakis 2025): a permutation matrix ``P`` of size
``k`` is learned from the ``k`` pairs :math:`(e_i, P e_i)` only; a test input is a nonzero
binary vector :math:`x \in \{0,1\}^k` with ``c`` ones, fed as :math:`x/\lVert x\rVert`, and
the answer is exact when rounding the (ensemble) output gives :math:`P x` in every
coordinate (coordinate ``j`` is 1 iff the output is > 0).

**Infinite ensembles.** A network :math:`f(x) = W_2\,\mathrm{ReLU}(W_1 x)` (NTK
parametrization, :math:`\sigma_w = 1`, :math:`\sigma_b = 0`) trained by gradient descent on
MSE to convergence is, at infinite width, a Gaussian process independent across the ``k``
output coordinates, with

.. math::
    \mu(x) = \Theta(x, X)\Theta^{-1} Y,\qquad
    \Sigma = K_{xx'} - \Theta_{xX}\Theta^{-1}K_{Xx'} - K_{xX}\Theta^{-1}\Theta_{Xx'}
             + \Theta_{xX}\Theta^{-1}K_{XX}\Theta^{-1}\Theta_{Xx'}

(``variant="ntk"``: both layers trained), or with :math:`\Theta` replaced by the NNGP ``K``
(``variant="nngp"``: only the readout trained, which is what a standard-parametrization
network approaches at large width). For unit inputs :math:`K = \kappa_1(\rho)/k` and
:math:`\Theta = (\kappa_1(\rho) + \rho\,\kappa_0(\rho))/k`. The mean is negative off the
support of ``Px`` and positive on it for every ``c >= 2`` (:func:`closed_form_mean`), so
the average of ``M`` independent networks, :math:`\bar f \sim \mathcal N(\mu, \Sigma/M)`,
rounds to ``Px`` once ``M`` is large enough.

**Models needed.** For one joint draw :math:`Z \sim \mathcal N(0, \Sigma)` per output
column, the ensemble of ``M`` models is wrong at an entry iff ``Z`` points against
:math:`\mu` and :math:`|Z|/\sqrt M \ge |\mu|`; so the draw is exact for every
:math:`M > M_Z = \max (Z/\mu)^2` over those entries, and the smallest ``M`` that makes
all test inputs exact with probability ``1 - delta`` is the ``1 - delta`` quantile of
:math:`M_Z` (:func:`models_needed`), with no search over ``M``.

Two closed forms need only the variances :math:`\sigma_i^2 = \Sigma_{ii}`. The ``k``
output columns are independent, so one input ``i`` is exact with probability
:math:`p_i(M) = \prod_j \Phi(|\mu_{ij}|\sqrt M/\sigma_i)` exactly;
:func:`models_needed_per_input` is the smallest ``M`` with :math:`p_i(M) \ge 1-\delta`
for each input (the paper's single-input ensemble complexity, ``O(k log k)``), and
:func:`models_needed_bound` the smallest ``M`` with
:math:`\sum_i (1 - p_i(M)) \le \delta` (the union bound over inputs: a guaranteed
sufficient ``M``, the route of the paper's ``O(k^2)`` bound). Because the failures are
dominated by the few least-separated entries (inputs with ``c = 2`` ones), the union bound
exceeds the joint Monte Carlo count by only a few models (about 2%).

**Reference counts.** The research brief's NNGP counts 48, 75, 118, 148, 185 at
``k = 4, 5, 8, 10, 12`` are consecutive points of a geometric grid of ratio 1.25
(48, 60, 75, 94, 118, 148, 185): the first grid size at which 90% of draws were exact. They
are upper bounds at that resolution, and the exact counts of this module (about 44, 60,
107, 138, 170) lie in the grid interval just below each of them (:data:`REFERENCE_GRID`).

**Finite ensembles.** :func:`train_ensemble` trains ``n_models`` networks of finite width
at once (batched matrix products) by full-batch gradient descent and returns their test
outputs; :func:`finite_recovery_rate` estimates the probability of exact recovery of
ensembles of ``M`` of them by random subsets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import HyperparameterError, ShapeError, describe
from ..layers.activations import ReLU
from ..layers.base import Layer
from ..layers.combinators import Sequential
from ..layers.dense import Dense

__all__ = [
    "REFERENCE_GRID",
    "VARIANTS",
    "PermutationTask",
    "closed_form_mean",
    "ensemble_gaussian",
    "exact_fraction",
    "finite_recovery_rate",
    "models_needed",
    "models_needed_bound",
    "models_needed_per_input",
    "network",
    "permutation_task",
    "recovery_curve",
    "recovery_probability",
    "train_ensemble",
]

#: ``"nngp"``: only the readout trained; ``"ntk"``: both layers trained.
VARIANTS = ("nngp", "ntk")
#: The research brief's NNGP counts for 90% exact recovery, ``{k: M}``: points of a
#: geometric grid of ratio 1.25, so the exact count lies in ``(M / 1.25, M]``.
REFERENCE_GRID = {4: 48, 5: 75, 8: 118, 10: 148, 12: 185}


@dataclass(frozen=True)
class PermutationTask:
    """The training pairs and the binary test inputs of one permutation.

    Attributes:
        perm: ``(k,)`` the permutation, ``(P x)_{perm[i]} = x_i``.
        x_train: ``(k, k)`` the identity (inputs :math:`e_i`).
        y_train: ``(k, k)`` rows :math:`P e_i`.
        x_test: ``(m, k)`` the nonzero binary inputs with ``c >= min_ones`` ones,
            normalised to unit length.
        y_test: ``(m, k)`` the binary targets :math:`P x`.
        ones: ``(m,)`` the number of ones ``c`` of each test input.

    """

    perm: Tensor
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    ones: Tensor

    @property
    def k(self) -> int:
        """Size of the permutation."""
        return int(self.perm.numel())


def _check_k(where: str, k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise HyperparameterError(
            describe(where, f"got k={k!r}", "Pass an integer permutation size k >= 2.")
        )
    return k


def _check_variant(where: str, variant: str) -> str:
    if variant not in VARIANTS:
        raise HyperparameterError(
            describe(where, f"got variant={variant!r}", "Use variant='nngp' or 'ntk'.")
        )
    return variant


def permutation_task(
    k: int,
    perm: Tensor | None = None,
    *,
    min_ones: int = 2,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> PermutationTask:
    """A permutation of size ``k`` (random unless given) and its train and test sets.

    Args:
        k: permutation size, at least 2 (there are ``2^k - 1`` nonzero binary inputs).
        perm: the permutation as ``(k,)`` indices; ``None`` draws one from ``generator``.
        min_ones: smallest number of ones of a test input (``1`` adds the training
            inputs; the default ``2`` keeps the inputs not seen in training).
        generator: random generator for the permutation.
        dtype: floating dtype of the tensors.

    """
    where = "applications.permutations.permutation_task"
    _check_k(where, k)
    if perm is None:
        perm = torch.randperm(k, generator=generator)
    perm = torch.as_tensor(perm, dtype=torch.long)
    if perm.shape != (k,) or not torch.equal(perm.sort().values, torch.arange(k)):
        raise ShapeError(
            describe(where, f"perm={perm.tolist()} is not a permutation of 0..{k - 1}", "Fix it.")
        )
    bits = torch.tensor(list(itertools.product((0, 1), repeat=k)), dtype=dtype)[1:]
    ones = bits.sum(1).long()
    bits = bits[ones >= min_ones]
    ones = ones[ones >= min_ones]
    eye = torch.eye(k, dtype=dtype)
    return PermutationTask(
        perm=perm,
        x_train=eye,
        y_train=_apply(perm, eye),
        x_test=bits / bits.norm(dim=1, keepdim=True),
        y_test=_apply(perm, bits),
        ones=ones,
    )


def _apply(perm: Tensor, x: Tensor) -> Tensor:
    """Rows ``P x``: coordinate ``perm[i]`` of the output is coordinate ``i`` of the input."""
    out = torch.empty_like(x)
    out[:, perm] = x
    return out


def network(width: int = 1) -> Layer:
    r"""The two-layer ReLU network of the task: :math:`\sigma_w = 1`, :math:`\sigma_b = 0`."""
    return Sequential(Dense(width, 1.0, 0.0), ReLU(), Dense(1, 1.0, 0.0))


def ensemble_gaussian(task: PermutationTask, variant: str = "nngp") -> tuple[Tensor, Tensor]:
    """Mean ``(m, k)`` and covariance ``(m, m)`` of one converged infinitely wide network.

    The covariance is shared by the ``k`` independent output columns.
    """
    from ..predict import gradient_descent_mse_ensemble

    _check_variant("applications.permutations.ensemble_gaussian", variant)
    predict = gradient_descent_mse_ensemble(network(), task.x_train, task.y_train)
    out = predict(t=None, x_test=task.x_test, get=variant, compute_cov=True)
    return out.mean, out.cov  # type: ignore[union-attr,return-value]


def closed_form_mean(k: int, c: int, variant: str = "ntk") -> tuple[float, float]:
    r"""``(mu_on, mu_off)``: the mean on and off the support of ``Px`` for ``c`` ones.

    With :math:`A(\rho)` the kernel of the variant (``Theta`` or ``K``) at cosine
    :math:`\rho`, :math:`a = A(1)`, :math:`b = A(0)`, :math:`\Delta = A(1/\sqrt c) - b`
    and :math:`D = (a - b)(a + (k-1)b)`:
    :math:`\mu_{on} = [b(a-b) + \Delta(a + (k-1-c)b)]/D`,
    :math:`\mu_{off} = b(a - b - c\Delta)/D`.
    """
    where = "applications.permutations.closed_form_mean"
    _check_k(where, k)
    _check_variant(where, variant)

    def kern(rho: float) -> float:
        theta = math.acos(max(-1.0, min(1.0, rho)))
        k1 = (math.sin(theta) + (math.pi - theta) * math.cos(theta)) / (2 * math.pi)
        k0 = (math.pi - theta) / (2 * math.pi)
        return (k1 + rho * k0) / k if variant == "ntk" else k1 / k

    a, b = kern(1.0), kern(0.0)
    delta = kern(1 / math.sqrt(c)) - b
    d = (a - b) * (a + (k - 1) * b)
    return (b * (a - b) + delta * (a + (k - 1 - c) * b)) / d, b * (a - b - c * delta) / d


def _roots(cov: Tensor) -> Tensor:
    """A square root ``R`` with ``R R^T = cov`` (eigenvalues below 0 from rounding cut)."""
    vals, vecs = torch.linalg.eigh(cov)
    return vecs * vals.clamp_min(0).sqrt()


def _pinned(mean: Tensor, var: Tensor, targets: Tensor) -> Tensor:
    """``(m,)`` rows fixed at their target (training inputs): no variance, mean = target.

    A converged network interpolates its training pairs, so there every model outputs the
    target itself (up to round-off, which must not be read as a sign).
    """
    top = float(var.max()) if var.numel() else 0.0
    scale = max(1.0, float(mean.abs().max())) if mean.numel() else 1.0
    quiet = var.abs() <= 1e-12 * top if top > 0 else torch.ones_like(var, dtype=torch.bool)
    return quiet & ((mean - targets).abs().amax(1) <= 1e-8 * scale)


def _threshold_draws(
    mean: Tensor, cov: Tensor, targets: Tensor, samples: int, generator: torch.Generator | None
) -> Tensor:
    """``M_Z`` of ``samples`` joint draws: the ensemble is exact for every ``M > M_Z``."""
    keep = ~_pinned(mean, cov.diagonal(), targets)
    mean, cov, targets = mean[keep], cov[keep][:, keep], targets[keep]
    if not len(mean):
        return torch.zeros(samples, dtype=mean.dtype)
    want = targets > 0.5
    if bool(((mean > 0) != want).any()):  # a sign error of the mean: never exact
        return torch.full((samples,), math.inf, dtype=mean.dtype)
    root = _roots(cov)
    m, k = mean.shape
    out = []
    chunk = max(1, 2**24 // max(1, m * k))
    for start in range(0, samples, chunk):
        s = min(chunk, samples - start)
        z = root @ torch.randn(m, s * k, generator=generator, dtype=mean.dtype)
        z = z.reshape(m, s, k).transpose(0, 1)  # (s, m, k): k independent columns
        against = (z > 0) != want
        ratio = torch.where(against, (z / mean) ** 2, torch.zeros_like(z))
        out.append(ratio.flatten(1).max(1).values)
    return torch.cat(out)


def models_needed(
    mean: Tensor,
    cov: Tensor,
    targets: Tensor,
    delta: float = 0.1,
    *,
    samples: int = 4000,
    generator: torch.Generator | None = None,
) -> float:
    """Fewest models ``M`` whose average rounds every test input to its target w.p. ``1-delta``.

    Args:
        mean: ``(m, k)`` mean of one model's outputs.
        cov: ``(m, m)`` covariance of one output column (shared by the ``k`` columns).
        targets: ``(m, k)`` binary targets.
        delta: allowed failure probability.
        samples: joint Monte Carlo draws.
        generator: random generator of the draws.

    Returns:
        The integer ``M`` (as a float), or ``inf`` when the mean itself rounds wrong.

    """
    _check_delta("applications.permutations.models_needed", delta)
    m_z = _threshold_draws(mean, cov, targets, samples, generator)
    q = torch.quantile(m_z, 1 - delta).item()
    return math.inf if math.isinf(q) else float(math.floor(q) + 1)


def recovery_probability(
    mean: Tensor,
    cov: Tensor,
    targets: Tensor,
    n_models: int,
    *,
    samples: int = 4000,
    generator: torch.Generator | None = None,
) -> float:
    """Probability that the average of ``n_models`` networks is exact on every test input."""
    m_z = _threshold_draws(mean, cov, targets, samples, generator)
    return float((m_z < n_models).double().mean())


def recovery_curve(
    mean: Tensor,
    cov: Tensor,
    targets: Tensor,
    n_models: Sequence[int],
    *,
    samples: int = 4000,
    generator: torch.Generator | None = None,
) -> list[float]:
    """:func:`recovery_probability` at each ensemble size, from the same joint draws."""
    m_z = _threshold_draws(mean, cov, targets, samples, generator)
    return [float((m_z < m).double().mean()) for m in n_models]


def _log_exact(mean: Tensor, var: Tensor, targets: Tensor, n_models: Tensor) -> Tensor:
    """``log p_i(M)`` ``(m,)`` for ensemble sizes ``n_models`` ``(m,)`` (``-inf``: sign error)."""
    want = targets > 0.5
    sd = var.clamp_min(0).sqrt()[:, None]
    wrong = (mean > 0) != want
    margin = torch.where(wrong, -mean.abs(), mean.abs())
    # z-score of the right side of 0 for the average of M models; a zero variance is sure
    z = torch.where(
        sd > 0,
        margin * n_models.to(mean.dtype).sqrt()[:, None] / sd.clamp_min(1e-300),
        torch.where(wrong | (mean == 0) & want, -math.inf, math.inf),
    )
    log_ok = torch.special.log_ndtr(z).sum(1)
    return torch.where(_pinned(mean, var, targets), torch.zeros_like(log_ok), log_ok)


def _smallest_m(ok: Callable[[Tensor], Tensor], groups: int, limit: int = 2**40) -> Tensor:
    """Smallest integer ``M >= 1`` per group with ``ok(M)`` (monotone), ``inf`` past ``limit``."""
    lo = torch.zeros(groups, dtype=torch.int64)  # ok(lo) false (M = 0 never counts)
    hi = torch.ones(groups, dtype=torch.int64)
    while True:
        bad = ~ok(hi)
        if not bool(bad.any()) or int(hi.max()) >= limit:
            break
        lo = torch.where(bad, hi, lo)
        hi = torch.where(bad, hi * 2, hi)
    never = ~ok(hi)
    while bool((hi - lo > 1).any()):
        mid = (lo + hi) // 2
        good = ok(mid)
        hi = torch.where(good, mid, hi)
        lo = torch.where(good, lo, mid)
    out = hi.to(torch.float64)
    out[never] = math.inf
    return out


def _check_delta(where: str, delta: float) -> None:
    if not 0 < delta < 1:
        raise HyperparameterError(describe(where, f"got delta={delta}", "Pass 0 < delta < 1."))


def models_needed_per_input(
    mean: Tensor, var: Tensor, targets: Tensor, delta: float = 0.1
) -> Tensor:
    r"""``(m,)``: for each input alone, the fewest models exact with probability ``1 - delta``.

    Exact (no sampling): input ``i`` is exact with probability
    :math:`\prod_j \Phi(|\mu_{ij}|\sqrt M/\sigma_i)` when every mean has the target's sign
    (else never: ``inf``).

    Args:
        mean: ``(m, k)`` mean of one model's outputs.
        var: ``(m,)`` variance of one output (the diagonal of the shared covariance).
        targets: ``(m, k)`` binary targets.
        delta: allowed failure probability.

    """
    _check_delta("applications.permutations.models_needed_per_input", delta)
    log_ok = math.log1p(-delta)
    return _smallest_m(lambda m: _log_exact(mean, var, targets, m) >= log_ok, len(mean))


def models_needed_bound(mean: Tensor, var: Tensor, targets: Tensor, delta: float = 0.1) -> float:
    r"""Fewest models whose average is exact on every input w.p. ``>= 1 - delta``, union bound.

    The smallest ``M`` with :math:`\sum_i \bigl(1 - \prod_j
    \Phi(|\mu_{ij}|\sqrt M/\sigma_i)\bigr) \le \delta`: sufficient whatever the
    correlations between inputs, and at least the joint count of :func:`models_needed`.
    Arguments as in :func:`models_needed_per_input`; ``inf`` when a mean has the wrong sign.
    """
    _check_delta("applications.permutations.models_needed_bound", delta)

    def ok(m: Tensor) -> Tensor:
        fail = -torch.expm1(_log_exact(mean, var, targets, m.expand(len(mean))))
        return (fail.sum() <= delta).reshape(1)

    return float(_smallest_m(ok, 1)[0])


def exact_fraction(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of inputs whose rounded output (``1`` iff ``> 0``) equals the target row."""
    return float(((outputs > 0) == (targets > 0.5)).all(-1).double().mean())


def train_ensemble(
    task: PermutationTask,
    n_models: int,
    width: int = 1024,
    *,
    parametrization: str = "ntk",
    steps: int = 400,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Test outputs ``(n_models, m, k)`` of finite networks trained by gradient descent.

    Each network is :math:`f(x) = W_2\,\mathrm{ReLU}(W_1 x)` without biases
    (:math:`\sigma_b = 0`), initialised with :math:`\sigma_w = 1` in the given
    parametrization (``"ntk"``: :math:`W \sim \mathcal N(0, 1)` scaled by
    :math:`1/\sqrt{\text{fan\_in}}` in the forward pass; ``"standard"``:
    :math:`W \sim \mathcal N(0, 1/\text{fan\_in})`), and trained on
    :math:`\frac12 \sum (f - y)^2` by full-batch gradient descent with step size
    :math:`1/\lambda_{max}` of the infinite-width NTK (``steps`` steps). The ``"ntk"``
    ensemble approaches the ``ntk`` variant, the ``"standard"`` one the ``nngp`` variant.
    """
    where = "applications.permutations.train_ensemble"
    if parametrization not in ("ntk", "standard"):
        raise HyperparameterError(
            describe(where, f"got parametrization={parametrization!r}", "Use 'ntk' or 'standard'.")
        )
    k, dt = task.k, task.x_train.dtype
    gen = {"generator": generator, "dtype": dt}
    w1 = torch.randn(n_models, width, k, **gen)  # type: ignore[arg-type]
    w2 = torch.randn(n_models, k, width, **gen)  # type: ignore[arg-type]
    s1, s2 = 1 / math.sqrt(k), 1 / math.sqrt(width)
    if parametrization == "standard":
        w1, w2, s1, s2 = w1 * s1, w2 * s2, 1.0, 1.0
    w1.requires_grad_(True)
    w2.requires_grad_(True)
    net = network()
    if parametrization == "standard":  # the NTK of standard training grows with the width
        net = Sequential(
            Dense(width, 1.0, None, "standard"), ReLU(), Dense(1, 1.0, None, "standard")
        )
    ntk = net.kernel(task.x_train, None, "ntk").ntk
    lr = 1.0 / float(torch.linalg.eigvalsh(ntk)[-1])

    def forward(x: Tensor) -> Tensor:
        h = torch.relu(torch.matmul(x, w1.transpose(1, 2)) * s1)  # (models, n, width)
        return torch.bmm(h, w2.transpose(1, 2)) * s2  # (models, n, k)

    for _ in range(steps):
        loss = 0.5 * ((forward(task.x_train) - task.y_train) ** 2).sum()
        g1, g2 = torch.autograd.grad(loss, (w1, w2))
        with torch.no_grad():
            w1 -= lr * g1
            w2 -= lr * g2
    with torch.no_grad():
        return forward(task.x_test)


def finite_recovery_rate(
    outputs: Tensor,
    targets: Tensor,
    n_models: int,
    *,
    draws: int = 200,
    generator: torch.Generator | None = None,
) -> float:
    """Fraction of random ``n_models``-subsets of a pool whose average is exact on all inputs.

    Args:
        outputs: ``(pool, m, k)`` test outputs of independently trained networks.
        targets: ``(m, k)`` binary targets.
        n_models: ensemble size, at most ``pool``.
        draws: random subsets (drawn without replacement within a subset).
        generator: random generator of the subsets.

    """
    pool = outputs.shape[0]
    if not 1 <= n_models <= pool:
        raise HyperparameterError(
            describe(
                "applications.permutations.finite_recovery_rate",
                f"got n_models={n_models} for a pool of {pool}",
                "Train a larger pool or ask for fewer models.",
            )
        )
    idx = torch.rand(draws, pool, generator=generator).argsort(1)[:, :n_models]
    means = outputs[idx].mean(1)  # (draws, m, k)
    exact = ((means > 0) == (targets > 0.5)).flatten(1).all(1)
    return float(exact.double().mean())
