r"""The structured strategy: NTK terms of linear maps from activations and cotangents.

For a weight used as ``z = x W^T`` (``F.linear``) the per-example gradient of output
:math:`o` is :math:`g_{o} x^\top` with :math:`g_o = \partial f_o / \partial z`, so its NTK
term is

.. math:: \Theta^W_{ij,op} = (x_i \cdot x_j)\,(g_{i,o} \cdot g_{j,p}),

a product of two Gram matrices: a few GEMMs, no Jacobian. Convolutions are the same
with the input patches as ``x`` and a sum over positions (or, when that is dearer, the
per-example gradient ``sum_s g_s p_s^T`` formed by one batched product). Biases have
per-example gradients that are sums of cotangents: those of ``F.linear``,
``F.conv*d`` and ``F.layer_norm`` (whose weight is a bias-like gain too), and any tensor
made from one parameter alone and added to a batch (``z = y + q(b)``: the
vector-Jacobian product of ``q`` with the cotangent of ``z`` summed over the broadcast
axes), whichever module makes the call. The uses are recorded by
:class:`~._capture.Capture` during one forward pass; the cotangents come from ``k``
backward passes over the batch (one per output), which needs the examples to be
independent (checked once on two examples). A parameter used any other way (or also
elsewhere) falls back to per-example Jacobians.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ModelError, describe
from ._capture import Capture, Use, patches
from ._features import Dot, Feature, Kron, Pos, jacobian_features
from ._model import Prepared

# ----------------------------------------------------------------------------------------
# Plan: which parameter is computed how
# ----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """How each trainable parameter enters the structured NTK.

    Attributes:
        weights: name -> ``"linear"``, ``"conv"`` or ``"norm"`` (a weight of such calls).
        biases: names of parameters used only as biases.
        fallback: names computed by per-example Jacobians.
        positions: name -> positions per example ``S`` (linear and conv weights).
        dims: name -> ``(Din, Dout)`` (linear and conv weights).
        as_dot: weights with ``S > 1`` whose per-example gradient is formed explicitly.
        independent: whether the probe found the examples independent.
        flops_per_example: multiply-adds of the recorded calls per example.
        bias_dims: name -> numbers per example of a bias-like parameter's gradient.
        added: biases used as ``y + q(bias)`` (their gradients pull back through ``q``).
        uses: ``(kind, weight, bias)`` of every recorded use of a planned parameter.

    """

    weights: dict[str, str] = field(default_factory=dict)
    biases: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    dims: dict[str, tuple[int, int]] = field(default_factory=dict)
    as_dot: set[str] = field(default_factory=set)
    independent: bool = True
    flops_per_example: float = 0.0
    bias_dims: dict[str, int] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    uses: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def cost(self, n1: int, n2: int, k: int, full: bool, fallback_params: int) -> float:
        """Multiply-adds of the contraction (a cost estimate), given the Pos/Dot choices."""
        total = 0.0
        kk = k * k if full else k
        for name in self.weights:
            if name not in self.dims:
                continue
            din, dout = self.dims[name]
            s = self.positions[name]
            if s == 1:
                total += n1 * n2 * (din + kk * dout)
            elif name in self.as_dot:
                total += (n1 + n2) * k * s * din * dout + n1 * n2 * kk * din * dout
            else:
                total += n1 * n2 * s * s * (din + kk * dout)
        total += n1 * n2 * kk * (sum(self.bias_dims.values()) + fallback_params)
        return total

    def choose(self, b1: int, b2: int, k: int, full: bool, budget_floats: float) -> None:
        """For each weight at several positions: pairwise Gram (``Pos``) or gradient (``Dot``)."""
        kk = k * k if full else k
        self.as_dot = set()
        for name, (din, dout) in self.dims.items():
            s = self.positions[name]
            if s == 1:
                continue
            pos = b1 * b2 * s * s * (din + kk * dout)
            dot = (b1 + b2) * k * s * din * dout + b1 * b2 * kk * din * dout
            pos_memory = b1 * b2 * s * s * (kk + 1)
            if dot <= pos or pos_memory > budget_floats:
                self.as_dot.add(name)

    def per_example_floats(self, k: int) -> float:
        """Numbers per example held by the features (for block sizes)."""
        total = 0.0
        for name, (din, dout) in self.dims.items():
            s = self.positions[name]
            total += s * din + k * s * dout
            if name in self.as_dot:
                total += k * din * dout
        return total + k * sum(self.bias_dims.values())


def _capture(
    prep: Prepared, x: Tensor, watched: tuple[str, ...], with_grad: frozenset[str] | None = None
) -> tuple[Capture, Tensor, dict[str, Tensor]]:
    """One forward pass on ``x`` watching the parameters ``watched``.

    The parameters in ``with_grad`` (``None``: all watched ones) require grad, so that the
    tensors made from them keep their graph (for the ``"add"`` uses); no other gradient
    of a parameter is ever computed.
    """
    grad = set(watched) if with_grad is None else with_grad
    params = {
        n: v.detach().requires_grad_(n in grad) if n in watched else v.detach()
        for n, v in prep.params.items()
    }
    constants = {n: v for n, v in params.items() if n not in watched}
    constants.update(prep.constants)
    cap = Capture({n: params[n] for n in watched}, constants, x)
    with torch.enable_grad(), cap:
        out = prep.call(params, x).reshape(x.shape[0], -1)
    return cap, out, params


def make_plan(prep: Prepared, x: Tensor) -> Plan:
    """Classify the parameters from one forward pass on ``x`` (two examples)."""
    cap, out, _ = _capture(prep, x, prep.names)
    roles: dict[str, set[str]] = {}
    for u in cap.uses:
        if u.weight is not None:
            roles.setdefault(u.weight, set()).add(u.kind)
        if u.bias is not None:
            roles.setdefault(u.bias, set()).add("bias")
    plan = Plan()
    for name in prep.names:
        role = roles.get(name, set())
        if name in cap.other or len(role) > 1:
            plan.fallback.append(name)
        elif role == {"bias"}:
            plan.biases.append(name)
        elif role:
            plan.weights[name] = next(iter(role))
    for u in cap.uses:  # shapes of the weights and biases, and the work per example
        if u.kind in ("linear", "conv") and u.x is not None:
            if u.kind == "linear":
                din, dout = u.x.shape[-1], u.z.shape[-1]
                s = u.x[0].numel() // din
            else:
                din = u.x.shape[1] * math.prod(u.geometry[0])  # type: ignore[index]
                dout = u.z.shape[1]
                s = u.z[0].numel() // dout
            plan.flops_per_example += s * din * dout
            if u.weight in plan.weights:
                plan.dims[u.weight] = (din, dout)
                plan.positions[u.weight] = plan.positions.get(u.weight, 0) + s
        if u.bias in plan.biases:
            plan.bias_dims[u.bias] = prep.params[u.bias].numel()
            if u.kind == "add":
                plan.added.add(u.bias)
        if u.kind == "norm" and u.weight in plan.weights:
            plan.bias_dims[u.weight] = u.width
    plan.uses = _roles(cap.uses, plan)
    plan.independent = _independent(cap, out)
    return plan


def _roles(uses: list[Use], plan: Plan) -> list[tuple[str, str | None, str | None]]:
    """``(kind, weight, bias)`` of the uses of the parameters the plan computes, sorted."""
    roles = set()
    for u in uses:
        weight = u.weight if u.weight in plan.weights else None
        bias = u.bias if u.bias in plan.biases else None
        if weight is not None or bias is not None:
            roles.add((u.kind, weight, bias))
    return sorted(roles, key=str)


def _independent(cap: Capture, out: Tensor) -> bool:
    """Whether the outputs of the first example depend only on the first rows of every use."""
    targets = [u.z for u in cap.uses if u.z.requires_grad]
    if not targets or out.shape[0] < 2 or not out.requires_grad:
        return True
    weights = torch.arange(1, out.shape[1] + 1, dtype=out.dtype, device=out.device)
    grads = torch.autograd.grad(
        (out[0] * weights).sum(), targets, allow_unused=True, retain_graph=True
    )
    return all(g is None or g.shape[0] < 2 or not bool(g[1:].any()) for g in grads)


def structured_features(prep: Prepared, plan: Plan, x: Tensor) -> list[Feature]:
    """The features of ``x`` (one block of examples), in the plan's order."""
    b = x.shape[0]
    tracked = (*plan.weights, *plan.biases)
    feats: list[Feature] = []
    if tracked:
        cap, out, params = _capture(prep, x, tracked, frozenset(plan.added))
        uses = [u for u in cap.uses if u.weight in plan.weights or u.bias in plan.biases]
        seen = _roles(cap.uses, plan)
        bad = sorted(cap.other & set(tracked))
        if bad or seen != plan.uses:
            raise ModelError(
                describe(
                    prep.where,
                    "the parameters were used differently on these examples than on the first "
                    f"ones{' (' + ', '.join(bad) + ')' if bad else ''} (data-dependent control "
                    "flow?)",
                    'Use strategy="jacobian".',
                )
            )
        grads = _cotangents(out, [u.z for u in uses])
        feats.extend(_weight_features(plan, uses, grads, b))
        feats.extend(_bias_features(plan, uses, grads, b, params))
    if plan.fallback:
        feats.extend(jacobian_features(prep, plan.fallback, x))
    return feats


def _outputs_per_pass(k: int) -> int:
    """Outputs whose cotangents one backward pass computes: 1 for few outputs, ``k // 8`` else.

    One pass per output keeps the least in flight; with many outputs the passes' fixed cost
    adds up, so groups of ``k // 8`` (eight to fifteen passes) share one batched pass, whose
    intermediates (a few times the group's cotangents) stay under half the storage.
    """
    return 1 if k < 16 else k // 8


def _cotangents(out: Tensor, targets: list[Tensor]) -> list[Tensor]:
    """``d out[:, o] / d target`` for every output ``o``: ``(k, b, *target.shape[1:])``.

    Backward passes over the whole batch (the examples are independent, so each example's
    rows are its own cotangents), written into storage laid out examples-first, ``(b, k,
    ...)`` in memory, so that a traced Gram matrix is one GEMM. With few outputs (the usual
    case) one pass per output, of the scalar ``sum_i out[i, o]``: only one output's
    cotangents are in flight, and no explicit output cotangents (with them,
    ``torch.autograd.grad`` imports torch's symbolic-shape module, about 40 MB). With many
    outputs, groups of outputs per batched pass (:func:`_outputs_per_pass`). The graph is
    kept: the ``"add"`` uses differentiate their tensors afterwards.
    """
    b, k = out.shape
    live = [i for i, t in enumerate(targets) if t.requires_grad and out.requires_grad]
    grads = [t.new_empty((b, k, *t.shape[1:])) if i in live else t.new_zeros((b, k, *t.shape[1:]))
             for i, t in enumerate(targets)]  # fmt: skip
    step = _outputs_per_pass(k)
    for o0 in range(0, k if live else 0, step):
        o1 = min(k, o0 + step)
        found = _pass(out, [targets[i] for i in live], o0, o1)
        for i, g in zip(live, found, strict=True):
            if g is None:
                grads[i][:, o0:o1] = 0.0
            else:  # (c, b, ...) -> the storage's (b, c, ...) slice
                grads[i][:, o0:o1] = g.transpose(0, 1)
    return [g.transpose(0, 1) for g in grads]


def _pass(out: Tensor, targets: list[Tensor], o0: int, o1: int) -> list[Tensor | None]:
    """The cotangents ``(o1 - o0, b, ...)`` of the outputs ``o0 <= o < o1`` (``None``: unused)."""
    if o1 - o0 == 1:
        with torch.enable_grad():  # the scalar joins the graph (the callers run in no_grad)
            scalar = out[:, o0].sum()
        found = torch.autograd.grad(scalar, targets, retain_graph=True, allow_unused=True)
        return [None if g is None else g.unsqueeze(0) for g in found]
    c, (b, k) = o1 - o0, out.shape
    onehot = out.new_zeros(c, b, k)
    onehot[torch.arange(c), :, torch.arange(o0, o1)] = 1.0
    try:
        batched = torch.autograd.grad(
            out, targets, onehot, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        return list(batched)
    except RuntimeError:  # an operation without a batched backward: one pass per output
        rows = [_pass(out, targets, o, o + 1) for o in range(o0, o1)]
        stacked: list[Tensor | None] = []
        for i, t in enumerate(targets):
            parts = [r[i] for r in rows]
            zero = torch.zeros_like(t)[None]
            used = [zero if g is None else g for g in parts]
            stacked.append(None if all(g is None for g in parts) else torch.cat(used))
        return stacked


def _kb(g: Tensor, *shape: int) -> Tensor:
    """Reshape ``g`` of logical shape ``(k, b, ...)`` to ``(k, b, *shape)`` keeping its layout."""
    return g.transpose(0, 1).reshape(g.shape[1], g.shape[0], *shape).transpose(0, 1)


def _summed(u: Use, g: Tensor) -> Tensor:
    """Cotangents ``(k, b, ...)`` summed over the positions of a use: ``(k, b, channels)``."""
    if u.channel_axis == 1:
        return _kb(g, u.width, -1).sum(dim=3)
    return _kb(g, -1, u.width).sum(dim=2)


def _input(u: Use) -> Tensor:
    """The recorded input of a linear, convolution or layer-norm use."""
    if u.x is None:
        raise RuntimeError(f"a {u.kind} use was recorded without its input")
    return u.x


def _weight_features(plan: Plan, uses: list[Use], grads: list[Tensor], b: int) -> Iterator[Feature]:
    for name, kind in plan.weights.items():
        mine = [(u, g) for u, g in zip(uses, grads, strict=True) if u.weight == name]
        if not mine:
            continue
        k = mine[0][1].shape[0]
        if kind == "norm":  # y = xhat * w + b: gradient sum_positions g * xhat
            terms = [_summed(u, g * _input(u)) for u, g in mine]
            yield Dot(terms[0] if len(terms) == 1 else torch.stack(terms).sum(0))
            continue
        ps, gs = [], []
        for u, g in mine:
            x = _input(u)
            if kind == "linear":
                ps.append(x.reshape(b, -1, x.shape[-1]))
                gs.append(_kb(g, -1, u.width))
            else:
                ps.append(patches(x, u.geometry))  # type: ignore[arg-type]
                gs.append(_kb(g, u.width, -1).transpose(2, 3))
        p = ps[0] if len(ps) == 1 else torch.cat(ps, dim=1)
        g = gs[0] if len(gs) == 1 else torch.cat(gs, dim=2)
        if p.shape[1] == 1:
            yield Kron(p[:, 0], g[:, :, 0])
        elif name in plan.as_dot:
            yield Dot(torch.einsum("kbsd,bse->bkde", g, p).reshape(b, k, -1).transpose(0, 1))
        else:
            yield Pos(p, g.contiguous())


def _bias_features(
    plan: Plan, uses: list[Use], grads: list[Tensor], b: int, params: dict[str, Tensor]
) -> Iterator[Feature]:
    for name in plan.biases:
        mine = [(u, g) for u, g in zip(uses, grads, strict=True) if u.bias == name]
        if not mine:
            continue
        k = mine[0][1].shape[0]
        terms = [_summed(u, g) for u, g in mine if u.kind != "add"]
        added = [(u, g) for u, g in mine if u.kind == "add"]
        if added:
            terms.append(_added(params[name], added, k, b))
        yield Dot(terms[0] if len(terms) == 1 else torch.stack(terms).sum(0))


def _added(leaf: Tensor, added: list[tuple[Use, Tensor]], k: int, b: int) -> Tensor:
    r"""Per-example gradients ``(k, b, numel)`` of a parameter added as ``z = y + q(leaf)``.

    :math:`\partial f_o(x_i) / \partial \theta = J_q^\top \sum_{\text{broadcast}}
    \partial f_o(x_i) / \partial z`: the cotangents of every ``z``, summed over the axes
    along which ``q`` was broadcast, pulled back through ``q`` for all ``k b`` rows at once.
    """
    outs = [u.q for u, _ in added if u.q is not None]
    rows = [_reduce_to(g, u.q.shape, u.z.ndim) for u, g in added if u.q is not None]
    try:
        (grad,) = torch.autograd.grad(outs, [leaf], rows, retain_graph=True, is_grads_batched=True)
    except RuntimeError:  # an operation without a batched backward: one row at a time
        grad = torch.stack(
            [
                torch.autograd.grad(outs, [leaf], [r[i] for r in rows], retain_graph=True)[0]
                for i in range(k * b)
            ]
        )
    return grad.reshape(k, b, -1)


def _reduce_to(g: Tensor, shape: torch.Size, ndim: int) -> Tensor:
    """Cotangents ``(k, b, *z[0].shape)`` summed over the axes ``q`` broadcast along."""
    k, b = g.shape[:2]
    aligned = (1,) * (ndim - len(shape)) + tuple(shape)
    axes = [d + 1 for d in range(1, ndim) if aligned[d] == 1 and g.shape[d + 1] != 1]
    summed = g.sum(dim=axes, keepdim=True) if axes else g
    return summed.reshape(k * b, *shape)
