r"""Hyperparameter transfer across width: the best learning rate under SP and muP.

For each width ``n`` and each learning rate :math:`\eta` of a factor-2 grid, train the
twin ``net.module(in_shape, width=n, parametrization=p, base_width=n_0)`` with SGD or
Adam and the per-layer rates of :func:`neural_kernels.abc.param_groups` for a fixed
budget of steps, and record the training loss at the end (mean over seeds; a diverged
run counts as ``inf``). Under muP the trained function has a width-independent limit, so
the best :math:`\eta` should stay put (TP5: within a grid step or so); under the standard
parametrization the optimum drifts with the width (TP5, Figs. 1 and 3). The drift is
summarised by ``shift`` (grid steps between the extreme optima) and ``slope``, the
least-squares slope of :math:`\log_2 \eta^*` against :math:`\log_2 n` (0: transfer;
with Adam, SP's hidden-layer update :math:`\Delta W x = \Theta(\eta n)` predicts -1).
``best_log2_lr_fit`` refines each optimum below the grid's resolution: the vertex of the
parabola through the three points of :math:`\log L` against :math:`\log_2 \eta` around
the grid's best rate.

``store=FILE.jsonl`` keeps every finished run as one JSON line (the network's label, the
parametrization, optimizer, steps, batch size, a digest of the data, base width, width,
rate, seed; its final loss and seconds) and takes the runs already there instead of
training them again: a long sweep resumes after an interruption, and a report is rebuilt
from stored runs without training.

:func:`transfer_study` runs the protocol of TP5 (Adam, training loss after a fixed number
of steps, several seeds, a factor-2 grid) for an MLP and a small CNN on the digits, SP
against muP; :data:`PROTOCOL` holds its full sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._jsonl import append_line
from .._validation import as_tensor, check_positive_int
from ..abc.optim import check_lr, param_groups
from ..errors import HyperparameterError, describe

__all__ = ["PROTOCOL", "Transfer", "load_runs", "lr_transfer", "plot_transfers", "transfer_study"]

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


@dataclass(frozen=True)
class Transfer:
    """The result of :func:`lr_transfer`.

    Attributes:
        widths: the widths, increasing.
        lrs: the learning-rate grid, increasing.
        loss: final training loss, mean over seeds, shape ``(len(widths), len(lrs))``
            (``inf``: diverged).
        parametrization: its name.
        optimizer: ``"sgd"`` or ``"adam"``.
        seed_loss: per seed, shape ``(seeds, len(widths), len(lrs))``.
        steps: optimizer steps per run.

    """

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    loss: np.ndarray
    parametrization: str
    optimizer: str = "sgd"
    seed_loss: np.ndarray | None = None
    steps: int = 0

    @property
    def best_index(self) -> list[int]:
        """Grid index of the best learning rate, per width."""
        return [int(np.argmin(row)) for row in self.loss]

    @property
    def best_lr(self) -> list[float]:
        """The best learning rate, per width."""
        return [self.lrs[i] for i in self.best_index]

    @property
    def shift(self) -> int:
        """Largest move of the best learning rate across widths, in grid steps."""
        idx = self.best_index
        return max(idx) - min(idx)

    @property
    def slope(self) -> float:
        r"""Least-squares slope of :math:`\log_2` best rate against :math:`\log_2` width."""
        return _slope(self.widths, self.best_lr)

    @property
    def best_log2_lr_fit(self) -> list[float | None]:
        r"""Per width, :math:`\log_2` of a sub-grid optimum (``None``: none).

        The vertex of the parabola through :math:`(\log_2 \eta, \log L)` at the grid's
        best rate and its two neighbours; ``None`` where the best rate is at the grid's
        edge, a neighbour diverged, or the three points do not curve upwards.
        """
        return [
            _vertex(self.lrs, row, i) for row, i in zip(self.loss, self.best_index, strict=True)
        ]

    @property
    def fit_move(self) -> float | None:
        """Largest move of :attr:`best_log2_lr_fit` across widths, in octaves (``None``: a gap)."""
        fit = self.best_log2_lr_fit
        if any(v is None for v in fit):
            return None
        vals = [float(v) for v in fit if v is not None]
        return max(vals) - min(vals)

    @property
    def fit_slope(self) -> float | None:
        r"""Least-squares slope of :attr:`best_log2_lr_fit` against :math:`\log_2` width."""
        fit = self.best_log2_lr_fit
        if any(v is None for v in fit):
            return None
        return float(np.polyfit(np.log2(self.widths), [float(v or 0.0) for v in fit], 1)[0])

    @property
    def at_edge(self) -> list[bool]:
        """Per width: the optimum is the grid's first or last rate (the grid may be too short)."""
        return [i in (0, len(self.lrs) - 1) for i in self.best_index]

    @property
    def best_lr_per_seed(self) -> list[list[float]]:
        """``[seed][width]``: the best rate of each seed's own grid."""
        if self.seed_loss is None:
            return [self.best_lr]
        return [[self.lrs[int(np.argmin(row))] for row in s] for s in self.seed_loss]

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, for JSON (a diverged loss is ``None``)."""
        per_seed = self.best_lr_per_seed
        return {
            "parametrization": self.parametrization,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "widths": list(self.widths),
            "lrs": list(self.lrs),
            "loss": _plain(self.loss),
            "seed_loss": None if self.seed_loss is None else [_plain(s) for s in self.seed_loss],
            "best_lr": self.best_lr,
            "best_lr_per_seed": per_seed,
            "seed_shift": [_shift(self.lrs, b) for b in per_seed],
            "shift": self.shift,
            "slope": self.slope,
            "at_edge": self.at_edge,
            "best_log2_lr_fit": self.best_log2_lr_fit,
            "fit_move": self.fit_move,
            "fit_slope": self.fit_slope,
        }

    def plot(self, ax: Any = None) -> Any:
        """Final training loss against learning rate, one line per width (matplotlib)."""
        import matplotlib.pyplot as plt  # optional extra

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.4))
        for w, row in zip(self.widths, self.loss, strict=True):
            ok = np.isfinite(row)
            ax.plot(np.asarray(self.lrs)[ok], row[ok], marker="o", ms=3, label=f"n={w}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"learning-rate transfer: {self.parametrization}")
        ax.legend(fontsize=6)
        return ax


def _plain(a: np.ndarray) -> list[list[float | None]]:
    return [[float(v) if math.isfinite(v) else None for v in r] for r in a]


def _shift(lrs: Sequence[float], best: Sequence[float]) -> int:
    idx = [list(lrs).index(b) for b in best]
    return max(idx) - min(idx)


def _slope(widths: Sequence[int], best: Sequence[float]) -> float:
    return float(np.polyfit(np.log2(widths), np.log2(best), 1)[0])


def _vertex(lrs: Sequence[float], row: np.ndarray, i: int) -> float | None:
    """Vertex of the parabola through ``(log2 lr, log loss)`` at ``i - 1, i, i + 1``."""
    if i == 0 or i == len(lrs) - 1 or not np.all(np.isfinite(row[i - 1 : i + 2])):
        return None
    if np.any(row[i - 1 : i + 2] <= 0):
        return None
    a, b, _ = np.polyfit(np.log2(lrs[i - 1 : i + 2]), np.log(row[i - 1 : i + 2]), 2)
    return float(-b / (2 * a)) if a > 0 else None


def plot_transfers(results: Mapping[str, Transfer], ax: Any) -> Any:
    """Several parametrizations' sweeps on one axes (muP solid, others dashed); returns ``ax``."""
    for p, tr in results.items():
        for w, row in zip(tr.widths, tr.loss, strict=True):
            ax.plot(tr.lrs, row, "o-" if p == "mup" else "s--", ms=3, label=f"{p} n={w}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6)
    return ax


def lr_transfer(
    net: Any,
    x: Any,
    y: Any,
    widths: Sequence[int],
    lrs: Sequence[float],
    parametrization: Any = "mup",
    *,
    base_width: int | None = None,
    steps: int = 100,
    batch_size: int = 64,
    seeds: int = 1,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "sgd",
    progress: Any = None,
    store: str | os.PathLike[str] | None = None,
    label: str | None = None,
) -> Transfer:
    r"""Final training loss (softmax cross entropy) against learning rate, for each width.

    Args:
        net: a network of ``nk`` layers whose hidden widths follow ``width`` (e.g.
            ``nk.Sequential(nk.Dense(64), nk.ReLU(), nk.Dense(10))``).
        x: inputs ``(N, *in_shape)``.
        y: class indices ``(N,)``.
        widths: at least two widths.
        lrs: the learning-rate grid (a factor-2 grid: ``[2.0**k for k in range(-6, 3)]``).
        parametrization: ``"standard"``, ``"mup"``, ... or an ``nk.abc.ABC``.
        base_width: where every parametrization is the standard one (default: the
            smallest width).
        steps: SGD steps per run (batches without replacement, one order per seed).
        batch_size: examples per step.
        seeds: runs averaged per (width, rate); seed ``s`` fixes the init and the order.
        dtype: dtype of the twins.
        optimizer: ``"sgd"`` (``torch.optim.SGD``) or ``"adam"`` (``torch.optim.Adam``,
            default betas), each with :func:`~neural_kernels.abc.param_groups`' rates.
        progress: optional callable ``progress(done, total)`` after each run.
        store: optional JSON-lines file of finished runs: runs found there (same label,
            parametrization, sizes, data, width, rate and seed) are taken instead of
            trained; every new run is appended as soon as it ends (:func:`load_runs`).
        label: the network's name in ``store`` (default: ``repr(net)``).

    Returns:
        A :class:`Transfer`; the loss is over the whole training set after ``steps``.

    Raises:
        HyperparameterError: fewer than two widths, a rate that is not positive, bad
            ``steps``/``batch_size``/``seeds``, an unknown ``optimizer``.

    """
    where = "nk.feature_learning.lr_transfer"
    ws = sorted(int(w) for w in widths)
    if len(ws) < 2 or ws[0] < 1:
        raise HyperparameterError(describe(where, f"widths={list(widths)!r}",
                                           "Give at least two widths >= 1."))  # fmt: skip
    grid = sorted(check_lr(where, lr) for lr in lrs)
    if not grid:
        raise HyperparameterError(describe(where, "lrs=[]", "Give a grid of learning rates."))
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seeds", seeds)):
        check_positive_int(where, name, value)
    if optimizer not in OPTIMIZERS:
        raise HyperparameterError(describe(where, f"optimizer={optimizer!r}",
                                           "Use 'sgd' or 'adam'."))  # fmt: skip
    xt = as_tensor(x, "x", where).to(dtype)
    yt = (y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))).long()
    base = ws[0] if base_width is None else int(base_width)
    name = getattr(parametrization, "name", str(parametrization))
    common = {
        "label": repr(net) if label is None else str(label),
        "parametrization": name if isinstance(parametrization, str) else repr(parametrization),
        "optimizer": optimizer,
        "steps": int(steps),
        "batch_size": int(batch_size),
        "dtype": str(dtype).removeprefix("torch."),
        "data": _digest(xt, yt),
        "base_width": base,
    }
    stored = load_runs(store) if store is not None else {}
    runs = np.zeros((seeds, len(ws), len(grid)))
    total, done = runs.size, 0
    for i, width in enumerate(ws):
        for j, lr in enumerate(grid):
            for s in range(seeds):
                key = run_key({**common, "width": width, "lr": lr, "seed": s})
                if key in stored:
                    runs[s, i, j] = stored[key]
                else:
                    start = time.perf_counter()
                    runs[s, i, j] = _train(net, xt, yt, width, base, parametrization, lr, steps,
                                           batch_size, s, dtype, optimizer)  # fmt: skip
                    if store is not None:
                        append_line(store, {**json.loads(key), "loss": _finite(runs[s, i, j]),
                                        "seconds": time.perf_counter() - start})  # fmt: skip
                done += 1
                if progress is not None:
                    progress(done, total)
    return Transfer(tuple(ws), tuple(grid), runs.mean(0), name, optimizer, runs, steps)


def run_key(fields: Mapping[str, Any]) -> str:
    """The identity of one run in a store: its fields as canonical JSON."""
    keys = ("label", "parametrization", "optimizer", "steps", "batch_size", "dtype", "data",
            "base_width", "width", "lr", "seed")  # fmt: skip
    return json.dumps({k: fields[k] for k in keys}, sort_keys=True)


def load_runs(store: str | os.PathLike[str]) -> dict[str, float]:
    """The final loss of every run in a JSON-lines store, by :func:`run_key`.

    A missing file holds no runs; a torn or foreign line is skipped; a diverged run
    (``"loss": null``) is ``inf``; a later line for the same run wins.
    """
    path = Path(store).expanduser()
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            loss = rec["loss"]
            out[run_key(rec)] = math.inf if loss is None else float(loss)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _digest(x: Tensor, y: Tensor) -> str:
    """A short digest of the training data (a stored run belongs to its data)."""
    h = hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _train(
    net: Any, x: Tensor, y: Tensor, width: int, base: int, parametrization: Any, lr: float,
    steps: int, batch_size: int, seed: int, dtype: torch.dtype, optimizer: str,
) -> float:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    model: nn.Module = net.module(tuple(x.shape[1:]), width=width, parametrization=parametrization,
                                  base_width=base, generator=gen, dtype=dtype)  # fmt: skip
    opt = OPTIMIZERS[optimizer](param_groups(model, lr, optimizer))
    n, bs = x.shape[0], min(batch_size, x.shape[0])
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(steps * bs // n + 1)])
    for t in range(steps):
        idx = order[t * bs : (t + 1) * bs]
        opt.zero_grad()
        value = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(value):
            return math.inf
        value.backward()
        opt.step()
    with torch.no_grad():
        final = float(nn.functional.cross_entropy(model(x), y))
    return final if math.isfinite(final) else math.inf


#: TP5's protocol on the digits, full sizes: Adam, final training loss (softmax cross
#: entropy on all ``n_train`` points) after ``steps`` minibatch steps, mean over ``seeds``
#: (per architecture), a factor-2 grid of base rates; the optimum is the argmin of the
#: seed-averaged loss. Widths: the MLP over a factor 64 (64 to 4096); the CNN over a
#: factor 8 from 32 channels, with 5 seeds: near its optimum the CNN's loss has a flat
#: floor two or three grid steps wide, where 3 seeds' noise picks the argmin (at 8 to 64
#: channels, base 8, muP's optimum moved 2 steps with 3 seeds and 0 with 5:
#: ``docs/results/transfer_cnn_narrow_runs.jsonl``). Results: ``docs/results/transfer.json``.
PROTOCOL: dict[str, Any] = {
    "optimizer": "adam",
    "steps": 100,
    "batch_size": 64,
    "n_train": 1200,
    "seeds": {"mlp": 3, "cnn": 5},
    "lrs": {"adam": [2.0**k for k in range(-14, -1)], "sgd": [2.0**k for k in range(-8, 3)]},
    "widths": {"mlp": (64, 128, 256, 512, 1024, 2048, 4096), "cnn": (32, 64, 128, 256)},
}


def architecture(arch: str) -> Any:
    """The network of :func:`transfer_study` named ``arch`` (hidden sizes follow the width).

    ``"mlp"``: two hidden ReLU layers, a 10-way readout; ``"cnn"``: two 3x3 valid
    convolutions on the 8x8 image (64 then 16 positions), ReLU, flatten, a dense readout.
    """
    import neural_kernels as nk

    if arch == "mlp":
        return nk.Sequential(nk.Dense(64), nk.ReLU(), nk.Dense(64), nk.ReLU(), nk.Dense(10))
    if arch == "cnn":
        return nk.Sequential(nk.Conv(8, (3, 3)), nk.ReLU(), nk.Conv(8, (3, 3)), nk.ReLU(),
                             nk.Flatten(), nk.Dense(10))  # fmt: skip
    raise HyperparameterError(describe("nk.feature_learning.transfer_study", f"arch={arch!r}",
                                       "Use 'mlp' or 'cnn'."))  # fmt: skip


def transfer_study(
    archs: Sequence[str] = ("mlp", "cnn"),
    widths: Mapping[str, Sequence[int]] | None = None,
    *,
    optimizer: str = PROTOCOL["optimizer"],
    steps: int = PROTOCOL["steps"],
    batch_size: int = PROTOCOL["batch_size"],
    n_train: int = PROTOCOL["n_train"],
    seeds: int | Mapping[str, int] | None = None,
    lrs: Sequence[float] | None = None,
    parametrizations: Sequence[str] = ("standard", "mup"),
    progress: Any = None,
    store: str | os.PathLike[str] | None = None,
) -> dict[str, dict[str, Transfer]]:
    """:func:`lr_transfer` on the digits for each architecture and parametrization.

    Args:
        archs: names of :func:`architecture`.
        widths: per architecture (default: :data:`PROTOCOL`'s); the smallest is the base.
        optimizer: ``"adam"`` (TP5) or ``"sgd"``.
        steps: optimizer steps per run.
        batch_size: examples per step.
        n_train: digits used (the training loss is over all of them).
        seeds: runs per (width, rate), averaged: one number, or per architecture
            (default: :data:`PROTOCOL`'s).
        lrs: the grid (default: :data:`PROTOCOL`'s grid for ``optimizer``).
        parametrizations: compared on the same grid.
        progress: optional ``progress(label, done, total)``.
        store: JSON-lines file of finished runs, read and appended (see
            :func:`lr_transfer`); the architecture's name labels its runs.

    Returns:
        ``{arch: {parametrization: Transfer}}`` (float32 twins).

    Raises:
        HyperparameterError: an unknown architecture or optimizer, bad sizes.

    """
    from ._digits import digits

    xtr, ytr, _, _ = digits(n_train, 0)
    grid = list(PROTOCOL["lrs"].get(optimizer, [])) if lrs is None else list(lrs)
    out: dict[str, dict[str, Transfer]] = {}
    for arch in archs:
        net = architecture(arch)
        x = xtr.float() if arch == "mlp" else xtr.float().reshape(-1, 1, 8, 8)
        ws = PROTOCOL["widths"][arch] if widths is None else widths[arch]
        if seeds is None:
            n_seeds = int(PROTOCOL["seeds"][arch])
        else:
            n_seeds = int(seeds) if isinstance(seeds, int) else int(seeds[arch])
        out[arch] = {}
        for p in parametrizations:

            def tick(done: int, total: int, label: str = f"{arch} {p}") -> None:
                if progress is not None:
                    progress(label, done, total)

            out[arch][p] = lr_transfer(net, x, ytr, ws, grid, p, steps=steps,
                                       batch_size=batch_size, seeds=n_seeds,
                                       optimizer=optimizer, progress=tick, store=store,
                                       label=arch)  # fmt: skip
    return out
