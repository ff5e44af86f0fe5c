"""The exception hierarchy of neural-kernels.

Every error the library raises on purpose is a :class:`NeuralKernelsError`. Each
subclass also derives from the builtin that fits (``ValueError`` or ``TypeError``),
so ``except ValueError`` keeps working for users who do not know our names.

A message says three things: *where* (the layer or function), *what it got*, and
*what to do instead*. Build messages with :func:`describe` so that they read alike.
"""

from __future__ import annotations


class NeuralKernelsError(Exception):
    """Root of every error raised on purpose by neural-kernels."""


class ShapeError(NeuralKernelsError, ValueError):
    """An input has the wrong rank or size, or two inputs disagree in shape."""


class NonFiniteError(NeuralKernelsError, ValueError):
    """An input holds NaN or infinity."""


class HyperparameterError(NeuralKernelsError, ValueError):
    """A hyperparameter is out of its domain (a negative std, a zero width, ...)."""


class ParametrizationError(NeuralKernelsError, ValueError):
    """An unknown or unsupported parametrization was asked for."""


class LayerCompatibilityError(NeuralKernelsError, ValueError):
    """Layers that cannot follow each other (an activation after an activation, ...)."""


class InputTypeError(NeuralKernelsError, TypeError):
    """An argument has the wrong type (not a tensor, an integer dtype, ...)."""


class SingularKernelError(NeuralKernelsError, ValueError):
    """A kernel matrix that must be factorised is singular, indefinite or not symmetric."""


class SolverError(NeuralKernelsError, RuntimeError):
    """A numerical solver failed on valid input (e.g. the ODE solver of a prediction)."""


class StoreError(NeuralKernelsError, RuntimeError):
    """A kernel store cannot be created, written, resumed or read."""


class StoreMismatchError(StoreError, ValueError):
    """A kernel store was made for another network, other inputs or another dtype."""


class ModelError(NeuralKernelsError, ValueError):
    """A ``torch.nn.Module`` cannot be used as asked.

    For example: it has no trainable parameters, it uses batch statistics or random masks
    in training mode, or its outputs have no batch axis.
    """


class UsageError(NeuralKernelsError, ValueError):
    """Bad input to the command line (flags, config file, data): exit status 2."""


class RunError(NeuralKernelsError, RuntimeError):
    """A command-line run failed on a valid configuration: exit status 1."""


def describe(where: object, got: str, fix: str) -> str:
    """Format an error message as ``'<where>: <got>. <fix>'``.

    Args:
        where: the layer (its ``repr``) or the function that refuses the input; any
            object whose ``str`` names it (formatted here, only when raising).
        got: what it received, with the offending shapes or values.
        fix: what the user should do instead.

    """
    got = got.rstrip(".")
    return f"{where}: {got}. {fix}"
