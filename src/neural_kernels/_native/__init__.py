r"""Fused CPU kernels for the hot spatial layers, compiled on first use.

The arc-cosine dual of the ReLU family and the full-layout convolution are the two
operations that dominate convolutional kernels (every position pair of every example
pair, every layer). In eager PyTorch each is a dozen passes over memory; the C
functions of ``kernels.c`` do each in one pass, with the arc-cosine vectorised through
glibc's vector math library where there is one. A network made only of such layers
(and pooling, ``Flatten``, ``Dense`` after them) runs its whole layer chain in one
compiled call per chunk of example pairs (:mod:`neural_kernels._native.chain`).

The source is compiled once per machine with the system C compiler (``$CC``, else
``cc``, ``gcc`` or ``clang``) into a cache folder (``$NEURAL_KERNELS_CACHE``, else
``$XDG_CACHE_HOME/neural_kernels`` or ``~/.cache/neural_kernels``), and loaded with
:mod:`ctypes`. Without a compiler, or with ``NEURAL_KERNELS_NATIVE=0``, every layer
uses its eager PyTorch path, which gives the same numbers (the tests compare both).
:func:`native_status` says which path is in use and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from .._allocator import tune_allocator
from .._numerics import snap_factor

__all__ = [
    "abrelu_dual",
    "conv_abrelu",
    "conv_pairs",
    "library_for",
    "native_status",
    "set_native",
]

_SOURCE = Path(__file__).with_name("kernels.c")
_LOCK = threading.Lock()
_STATE: dict[str, object] = {"lib": None, "tried": False, "reason": "not loaded yet", "path": None}
_ENABLED = [
    os.environ.get("NEURAL_KERNELS_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")
]
_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p
_D = ctypes.c_double


def _cache_dir() -> Path:
    env = os.environ.get("NEURAL_KERNELS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neural_kernels"


def _compiler() -> str | None:
    """``$CC`` when set (and only it), else the first of ``cc``, ``gcc``, ``clang``."""
    chosen = os.environ.get("CC", "").strip()
    names = [chosen.split()[0]] if chosen else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _has_libmvec() -> bool:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    lib, version = platform.libc_ver()
    try:
        major, minor = (int(v) for v in version.split(".")[:2])
    except ValueError:
        return False
    return lib == "glibc" and (major, minor) >= (2, 35)


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _attempts() -> list[tuple[list[str], list[str]]]:
    base = ["-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
    tries = []
    if _has_libmvec():
        tries.append(([*base, "-march=native", "-DNK_LIBMVEC"], ["-lmvec", "-lm"]))
    tries.append(([*base, "-march=native"], ["-lm"]))
    tries.append((base, ["-lm"]))
    return tries


def _build(cc: str) -> tuple[ctypes.CDLL | None, str, str | None]:
    try:
        source = _SOURCE.read_bytes()
    except OSError as exc:
        return None, f"source missing: {exc}", None
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        user = os.getuid() if hasattr(os, "getuid") else 0
        folder = Path(tempfile.gettempdir()) / f"neural_kernels-{user}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return None, f"no writable cache folder: {exc}", None
    errors = []
    for flags, libs in _attempts():
        key = hashlib.sha256(
            b"\0".join(
                [source, cc.encode(), " ".join(flags + libs).encode(), _cpu_signature().encode()]
            )
        ).hexdigest()[:20]
        target = folder / f"kernels-{key}.so"
        if not target.exists():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(fd)
            try:
                done = subprocess.run(
                    [cc, *flags, str(_SOURCE), "-o", tmp, *libs],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if done.returncode != 0:
                    errors.append(done.stderr.strip().splitlines()[-1:] or ["compiler failed"])
                    continue
                os.replace(tmp, target)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append([str(exc)])
                continue
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError as exc:
            errors.append([str(exc)])
            continue
        _declare(lib)
        if _self_check(lib):
            return lib, f"compiled with {' '.join(flags)}", str(target)
        errors.append(["self-check failed"])
    return None, "could not build: " + "; ".join(" ".join(e) for e in errors), None


def _declare(lib: ctypes.CDLL) -> None:
    for suffix in ("f64", "f32"):
        dual = getattr(lib, f"nk_abrelu_dual_{suffix}")
        dual.restype = None
        dual.argtypes = [_I64, _PTR, _PTR, _PTR, _PTR, _PTR, _D, _D, _D]
        conv = getattr(lib, f"nk_conv_pairs_{suffix}")
        conv.restype = None
        conv.argtypes = [_I64, *([_PTR] * 6), *([_PTR] * 5), *([_D] * 5)]
        fused = getattr(lib, f"nk_conv_abrelu_{suffix}")
        fused.restype = None
        fused.argtypes = [_I64, _I64, *([_PTR] * 6), *([_PTR] * 7), *([_D] * 8)]
        chain = getattr(lib, f"nk_chain_{suffix}")
        chain.restype = ctypes.c_int
        chain.argtypes = [_I64, _PTR, _PTR, _PTR, *([_I64] * 4), _PTR, _PTR, _I64, _PTR, _PTR]
        chain.argtypes += [_I64, _I64, _D, _I64, _PTR, _I64, _PTR, _PTR, _I64]
    lib.nk_conv_scratch.restype = _I64
    lib.nk_conv_scratch.argtypes = [_PTR] * 6


def _self_check(lib: ctypes.CDLL) -> bool:
    """A few arc-cosine duals against the formula in Python floats."""
    cs = [-1.0, -0.7, -0.1, 0.0, 0.3, 0.9, 0.999, 1.0]
    k = torch.tensor(cs, dtype=torch.float64) * 2.0
    norm = torch.full_like(k, 2.0)
    out = torch.empty_like(k)
    lib.nk_abrelu_dual_f64(
        len(cs), k.data_ptr(), norm.data_ptr(), None, out.data_ptr(), None, 0.0, 1.0, 1.0
    )
    for c, got in zip(cs, out.tolist(), strict=True):
        theta = math.acos(c)
        want = 2.0 * (math.sqrt(max(1 - c * c, 0.0)) + (math.pi - theta) * c) / (2 * math.pi)
        if not abs(got - want) <= 1e-13 * max(1.0, abs(want)):
            return False
    return True


def _library() -> ctypes.CDLL | None:
    if not _ENABLED[0]:
        return None
    if _STATE["tried"]:
        return _STATE["lib"]  # type: ignore[return-value]
    with _LOCK:
        if not _STATE["tried"]:
            cc = _compiler()
            if cc is None:
                lib, reason, path = None, "no C compiler found (install one or set $CC)", None
            else:
                lib, reason, path = _build(cc)
            if lib is not None:
                tune_allocator()
            _STATE.update(lib=lib, reason=reason, path=path, tried=True)
    return _STATE["lib"]  # type: ignore[return-value]


def native_status() -> dict[str, object]:
    """Whether the compiled kernels are in use: ``{"enabled", "available", "reason", "path"}``.

    Compiles them if that was not tried yet (once per machine; about a second).
    """
    lib = _library()
    return {
        "enabled": _ENABLED[0],
        "available": lib is not None,
        "reason": _STATE["reason"]
        if _ENABLED[0]
        else "disabled (set_native(False) or NEURAL_KERNELS_NATIVE=0)",
        "path": _STATE["path"],
    }


def set_native(enabled: bool) -> bool:
    """Use (``True``) or bypass (``False``) the compiled kernels; returns the previous setting.

    Results agree either way to rounding; the eager path is slower on convolutional
    networks but differentiable.
    """
    previous = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    return previous


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Bypass the compiled kernels inside a ``with`` block."""
    previous = set_native(False)
    try:
        yield
    finally:
        set_native(previous)


def _known_zero(t: Tensor | None) -> bool:
    """Whether ``t`` is a broadcast zero (the engine's input NTK): read as absent."""
    return (
        t is not None
        and t.numel() > 0
        and all(s == 0 for s in t.stride())
        and not bool(t.reshape(-1)[0])
    )


def library_for(first: Tensor, *others: Tensor | None) -> ctypes.CDLL | None:
    """The compiled library, if it is on and takes these tensors (else ``None``).

    They must be CPU float32 or float64 of one dtype, none requiring grad (those take
    the differentiable eager path).
    """
    if first.dtype not in (torch.float64, torch.float32) or first.device.type != "cpu":
        return None
    for t in (first, *others):
        if t is None:
            continue
        if t.dtype != first.dtype or t.device != first.device or t.requires_grad:
            return None
    return _library()


@functools.lru_cache(maxsize=256)
def _geometry(lib: ctypes.CDLL, *axes: tuple[int, ...]) -> tuple[tuple[ctypes.Array, ...], int]:
    """The C geometry arrays of a convolution (absent axes of size one first) and its scratch.

    ``axes``: input sizes, output sizes, taps, strides, dilations, padding before. Cached:
    every chunk of a layer has the same geometry, and the C side only reads the arrays.
    """
    pad = 3 - len(axes[0])
    fill = (1, 1, 1, 1, 1, 0)
    geometry = tuple(
        (ctypes.c_int64 * 3)(*([f] * pad + list(a))) for f, a in zip(fill, axes, strict=True)
    )
    return geometry, int(lib.nk_conv_scratch(*geometry))


def _conv_buffers(
    lib: ctypes.CDLL,
    nngp: Tensor,
    ntk: Tensor | None,
    lead: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    before: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> tuple[tuple[ctypes.Array, ...], Tensor, Tensor | None, Tensor, Tensor | None, Tensor]:
    """The C geometry arrays (absent axes of size one first), inputs, outputs and scratch."""
    spatial = tuple(nngp.shape[lead + 2 * i] for i in range(len(size)))
    geometry, scratch_numel = _geometry(lib, spatial, out_shape, size, stride, dilation, before)
    kn = nngp.contiguous()
    kt = None if ntk is None or _known_zero(ntk) else ntk.contiguous()
    shape = (*nngp.shape[:lead], *[s for o in out_shape for s in (o, o)])
    on = kn.new_empty(shape)
    ot = None if ntk is None else kn.new_empty(shape)
    scratch = kn.new_empty(scratch_numel)
    return geometry, kn, kt, on, ot, scratch


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def abrelu_dual(
    k: Tensor, norm: Tensor, ntk: Tensor | None, a: float, b: float
) -> tuple[Tensor, Tensor | None] | None:
    """The dual of ``a min(x, 0) + b max(x, 0)`` (see ``kernels.c``), or ``None`` if unavailable.

    Args:
        k: covariances, any shape.
        norm: ``sqrt(q1 q2)`` broadcastable to ``k``.
        ntk: the incoming NTK (shape of ``k``) or ``None``.
        a: slope for negative inputs.
        b: slope for positive inputs.

    Returns:
        ``(nngp, ntk)`` of the shape of ``k`` (``ntk`` is ``None`` when not given).

    """
    lib = library_for(k, norm, ntk)
    if lib is None:
        return None
    k = k.contiguous()
    norm = norm.expand(k.shape).contiguous()
    t = None if ntk is None else ntk.contiguous()
    out_n = torch.empty_like(k)
    out_t = None if t is None else torch.empty_like(t)
    fn = lib.nk_abrelu_dual_f64 if k.dtype == torch.float64 else lib.nk_abrelu_dual_f32
    fn(
        k.numel(),
        _ptr(k),
        _ptr(norm),
        _ptr(t),
        _ptr(out_n),
        _ptr(out_t),
        a,
        b,
        snap_factor(k.dtype),
    )
    return out_n, out_t


def conv_pairs(
    nngp: Tensor,
    ntk: Tensor | None,
    lead: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    before: tuple[int, ...],
    out_shape: tuple[int, ...],
    coef: tuple[float, float, float, float, float],
) -> tuple[Tensor, Tensor | None] | None:
    """Zero-padded convolution of a full-layout covariance (see ``kernels.c``), or ``None``.

    Args:
        nngp: ``(*lead_axes, S1, S1', ..., Sd, Sd')`` with ``lead`` leading axes.
        ntk: the same shape, or ``None``.
        lead: number of leading (example) axes.
        size: filter taps per spatial axis.
        stride: stride per spatial axis.
        dilation: dilation per spatial axis.
        before: zero padding before the first position, per spatial axis.
        out_shape: output spatial sizes.
        coef: ``(a_nn, b_nn, a_tn, a_tt, c_t)``: ``nngp' = a_nn S(nngp) + b_nn``,
            ``ntk' = a_tt S(ntk) + a_tn S(nngp) + c_t``.

    Returns:
        ``(nngp', ntk')`` with shape ``(*lead_axes, O1, O1', ..., Od, Od')``.

    """
    lib = library_for(nngp, ntk)
    if lib is None:
        return None
    geometry, kn, kt, on, ot, scratch = _conv_buffers(
        lib, nngp, ntk, lead, size, stride, dilation, before, out_shape
    )
    fn = lib.nk_conv_pairs_f64 if kn.dtype == torch.float64 else lib.nk_conv_pairs_f32
    batch = math.prod(nngp.shape[:lead])
    fn(batch, *geometry, _ptr(kn), _ptr(kt), _ptr(on), _ptr(ot), _ptr(scratch), *coef)
    return on, ot


def conv_abrelu(
    nngp: Tensor,
    ntk: Tensor | None,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    before: tuple[int, ...],
    out_shape: tuple[int, ...],
    coef: tuple[float, float, float, float, float],
    var1: Tensor,
    var2: Tensor,
    a: float,
    b: float,
) -> tuple[Tensor, Tensor | None] | None:
    """A convolution (as :func:`conv_pairs`) then the dual of ``a min(x, 0) + b max(x, 0)``.

    Args:
        nngp: a block of example pairs ``(n1, n2, S1, S1', ..., Sd, Sd')``.
        ntk: the same shape, or ``None``.
        size: filter taps per spatial axis.
        stride: stride per spatial axis.
        dilation: dilation per spatial axis.
        before: zero padding before the first position, per spatial axis.
        out_shape: output spatial sizes.
        coef: the convolution's affine coefficients (see :func:`conv_pairs`).
        var1: variances after the convolution of the first inputs ``(n1, *out_shape)``.
        var2: the same for the second inputs ``(n2, *out_shape)``.
        a: slope for negative inputs.
        b: slope for positive inputs.

    Returns:
        ``(nngp', ntk')`` of shape ``(n1, n2, O1, O1', ..., Od, Od')``, or ``None``.

    """
    lib = library_for(nngp, ntk, var1, var2)
    if lib is None:
        return None
    geometry, kn, kt, on, ot, scratch = _conv_buffers(
        lib, nngp, ntk, 2, size, stride, dilation, before, out_shape
    )
    sq1 = var1.clamp_min(0.0).sqrt().contiguous()
    sq2 = var2.clamp_min(0.0).sqrt().contiguous()
    fn = lib.nk_conv_abrelu_f64 if kn.dtype == torch.float64 else lib.nk_conv_abrelu_f32
    fn(
        nngp.shape[0],
        nngp.shape[1],
        *geometry,
        _ptr(kn),
        _ptr(kt),
        _ptr(sq1),
        _ptr(sq2),
        _ptr(on),
        _ptr(ot),
        _ptr(scratch),
        *coef,
        a,
        b,
        snap_factor(kn.dtype),
    )
    return on, ot
