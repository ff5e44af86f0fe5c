"""The command-line main job: ``neural-kernels COMMAND [options]``.

Also ``python -m neural_kernels``. Commands (one module each, listed in :data:`COMMANDS`):

``demo``
    Infinite-width kernel regression on a small data set and the report of
    :mod:`neural_kernels.report` (see :mod:`.demo`).
``bo``
    Bayesian optimisation with infinite-width surrogates against Matern (see :mod:`.bo`).
``permutations``
    Exact permutation learning by ensembles of wide networks (see :mod:`.permutations`).

``kernel``
    Compute a kernel block by block into a zarr store, resumable, optionally on Dask
    workers (see :mod:`.kernel`).

``predict``
    Kernel regression from stored kernels by conjugate gradients (see :mod:`.predict`).

``dkm``
    Deep kernel machines against the NNGP on the digits (see :mod:`.dkm`).
``theory``
    The results of :mod:`neural_kernels.theory` against experiments (see :mod:`.theory`).

Options come from the command line and, optionally, a TOML file (``--config``): a key
``n_train`` (or ``n-train``) is the flag ``--n-train``; keys may sit at the top level or
in the command's table (``[demo]``). Flags given on the command line win over the file,
which wins over the defaults (:mod:`._config`).

Exit status: ``0`` success; ``2`` bad input (flags, config file, data), reported as one
line on stderr before anything is written; ``1`` a failure while running (for example
a kernel matrix that is not positive definite at the chosen ``--diag-reg``).

**Adding a sub-command.** Write a module ``cli/<name>.py`` that defines
``COMMAND = Command(name, help, add_arguments, run)`` (:class:`~._command.Command`): its
options a frozen dataclass resolved by :func:`~._config.resolve_config`, its data read
with :mod:`._data`, its output a :class:`~neural_kernels.report.Report` written with
:func:`~neural_kernels.report.write_report`; then add ``<name>.COMMAND`` to
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import NeuralKernelsError, SolverError
from ..report import Plot, Report, Section
from . import bo, demo, permutations
from . import dkm as dkm_command
from . import feature_learning as feature_learning_command
from . import kernel as kernel_command
from . import predict as predict_command
from . import theory as theory_command
from ._command import Command, RunError, UsageError
from .demo import DemoConfig

__all__ = ["COMMANDS", "Command", "DemoConfig", "Plot", "Report", "Section", "main"]

PROG = "neural-kernels"

#: The sub-commands, by name, in the order of ``--help``.
COMMANDS: dict[str, Command] = {c.name: c for c in (demo.COMMAND, bo.COMMAND, permutations.COMMAND)}
COMMANDS[kernel_command.COMMAND.name] = kernel_command.COMMAND
COMMANDS[predict_command.COMMAND.name] = predict_command.COMMAND
COMMANDS[dkm_command.COMMAND.name] = dkm_command.COMMAND
COMMANDS[feature_learning_command.COMMAND.name] = feature_learning_command.COMMAND
COMMANDS[theory_command.COMMAND.name] = theory_command.COMMAND


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> _Parser:
    from .. import __version__

    parser = _Parser(
        prog=PROG,
        description="Infinitely wide neural networks: NNGP and NTK kernels, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            argument_default=argparse.SUPPRESS,
        )
        command.add_arguments(p)
        p.set_defaults(run=command.run, all_commands=tuple(COMMANDS))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``neural-kernels`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Bad input prints one line on stderr and returns ``2`` before anything is written;
    a failure while running prints one line and returns ``1``.
    """
    try:
        args = _parser().parse_args(argv)
        return int(args.run(args))
    except (RunError, SolverError, OSError) as err:  # before NeuralKernelsError, their base
        return _fail(err, 1)
    except (UsageError, NeuralKernelsError) as err:
        return _fail(err, 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _fail(err: BaseException, status: int) -> int:
    message = " ".join(str(err).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status
