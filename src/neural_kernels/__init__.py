"""neural-kernels: infinitely wide neural networks in PyTorch.

Write an architecture once and get its NNGP and NTK kernels in closed form, its finite
``torch.nn.Module`` twin of any width, and Monte Carlo estimates from finite networks::

    import neural_kernels as nk

    net = nk.Sequential(nk.Dense(512, w_std=1.5, b_std=0.05), nk.ReLU(), nk.Dense(1))
    k = net.kernel(x1, x2)          # k.nngp, k.ntk: (n1, n2)
    model = net.module(in_shape=x1.shape[1:], parametrization="ntk")
"""

from . import abc as abc
from . import dkm as dkm
from . import feature_learning as feature_learning
from . import predict as predict
from . import theory as theory
from ._native import native_status as native_status
from ._native import set_native as set_native
from .empirical import KernelSnapshot as KernelSnapshot
from .empirical import KernelTracker as KernelTracker
from .empirical import TaylorExpansion as TaylorExpansion
from .empirical import WidthSweep as WidthSweep
from .empirical import WidthSweepRow as WidthSweepRow
from .empirical import centered_kernel_alignment as centered_kernel_alignment
from .empirical import empirical_nngp as empirical_nngp
from .empirical import empirical_ntk as empirical_ntk
from .empirical import kernel_cosine_distance as kernel_cosine_distance
from .empirical import kernel_distance as kernel_distance
from .empirical import linearize as linearize
from .empirical import taylor_expand as taylor_expand
from .empirical import width_sweep as width_sweep
from .errors import HyperparameterError as HyperparameterError
from .errors import InputTypeError as InputTypeError
from .errors import LayerCompatibilityError as LayerCompatibilityError
from .errors import ModelError as ModelError
from .errors import NeuralKernelsError as NeuralKernelsError
from .errors import NonFiniteError as NonFiniteError
from .errors import ParametrizationError as ParametrizationError
from .errors import RunError as RunError
from .errors import ShapeError as ShapeError
from .errors import SingularKernelError as SingularKernelError
from .errors import SolverError as SolverError
from .errors import StoreError as StoreError
from .errors import StoreMismatchError as StoreMismatchError
from .errors import UsageError as UsageError
from .kernel import Kernel as Kernel
from .layers import *  # noqa: F403
from .layers import __all__ as _layer_names
from .monte_carlo import MonteCarloKernel as MonteCarloKernel
from .monte_carlo import monte_carlo_kernel as monte_carlo_kernel

__version__ = "0.1.0"
__all__ = [
    "HyperparameterError",
    "InputTypeError",
    "Kernel",
    "KernelSnapshot",
    "KernelTracker",
    "LayerCompatibilityError",
    "ModelError",
    "MonteCarloKernel",
    "NeuralKernelsError",
    "NonFiniteError",
    "ParametrizationError",
    "ShapeError",
    "SingularKernelError",
    "SolverError",
    "RunError",
    "UsageError",
    "StoreError",
    "StoreMismatchError",
    "TaylorExpansion",
    "WidthSweep",
    "WidthSweepRow",
    "centered_kernel_alignment",
    "empirical_nngp",
    "empirical_ntk",
    "kernel_cosine_distance",
    "kernel_distance",
    "linearize",
    "taylor_expand",
    "width_sweep",
    "predict",
    "theory",
    "abc",
    "feature_learning",
    "dkm",
    "monte_carlo_kernel",
    "native_status",
    "set_native",
    *_layer_names,
]

#: Modules of optional extras, imported on first use (``nk.gpytorch``, ``nk.sklearn``, ...).
_LAZY_MODULES = ("gpytorch", "sklearn", "applications")


def __getattr__(name: str) -> object:
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in ("open_kernel", "StoredKernel"):  # the scale extra: zarr on first use
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
