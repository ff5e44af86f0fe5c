"""What a sub-command is, and the two ways it fails."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RunError, UsageError

__all__ = ["Command", "RunError", "UsageError"]


@dataclass(frozen=True)
class Command:
    """A sub-command of ``neural-kernels``.

    Attributes:
        name: the word on the command line (``neural-kernels NAME``) and its table name
            in a TOML config file (``[NAME]``).
        help: one line for ``--help``.
        add_arguments: adds the command's flags to its parser (every flag defaults to
            "not given", ``argparse.SUPPRESS``, so that a config file can fill it).
        run: runs the command on the parsed arguments and returns the exit status;
            raises :class:`UsageError` (exit 2) or :class:`RunError` (exit 1).

    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
