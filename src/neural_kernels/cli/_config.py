"""Options of a sub-command: one dataclass, flags, and an optional TOML file.

A command's options are the fields of a frozen dataclass (the defaults). Each is a flag
(``n_train`` is ``--n-train``) and a TOML key (``n_train`` or ``n-train``, at the top level
or in the command's ``[name]`` table). Flags given on the command line win over the file,
which wins over the defaults. A relative ``data`` path in the file is read relative to
the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

from ._command import UsageError

__all__ = ["flag", "option_types", "read_toml", "resolve_config"]

C = TypeVar("C")


def option_types(config: type) -> dict[str, type]:
    """The type of each field of a config dataclass, ``X | None`` read as ``X``."""
    types = {}
    for name, hint in typing.get_type_hints(config).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = args[0] if args else hint
    return types


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ModuleNotFoundError:
            raise UsageError(
                f"--config {path}: reading TOML needs Python 3.11+ or the 'tomli' package "
                "(pip install tomli)"
            ) from None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a folder, not a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config {path}: malformed TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: cannot read it: {err}") from None


def _config_values(
    path: Path, command: str, types: dict[str, type], commands: Collection[str]
) -> dict[str, Any]:
    """The options for ``command`` in a TOML file, type-checked, keys with underscores."""
    raw = read_toml(path)
    values: dict[str, Any] = {}
    table = raw.get(command, {})
    if not isinstance(table, dict):
        raise UsageError(f"--config {path}: '{command}' must be a table ([{command}])")
    items = [(k, v) for k, v in raw.items() if k not in commands]
    for key, value in [*items, *table.items()]:
        name = key.replace("-", "_")
        if name not in types:
            raise UsageError(
                f"--config {path}: unknown option '{key}' "
                f"(known: {', '.join(sorted(types))}, or a [{command}] table)"
            )
        want = types[name]
        if not _has_type(value, want):
            raise UsageError(
                f"--config {path}: option '{key}' must be of type {want.__name__}, got {value!r}"
            )
        values[name] = float(value) if want is float else value
    data = Path(values.get("data", "")).expanduser()
    if data.suffix.lower() in (".npz", ".csv") and not data.is_absolute():
        values["data"] = str(path.parent / data)
    return values


def _has_type(value: Any, want: type) -> bool:
    """TOML value check: booleans are not numbers, integers are floats."""
    if want is bool or isinstance(value, bool):
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def resolve_config(args: argparse.Namespace, defaults: C, command: str) -> C:
    """The defaults, updated by the TOML file of ``--config``, then by the flags given.

    Args:
        args: the parsed flags (those not given are absent; ``args.all_commands`` names
            every command, whose TOML tables are not options).
        defaults: the command's config dataclass with its defaults.
        command: the command's name (its TOML table).

    """
    commands: Collection[str] = getattr(args, "all_commands", (command,))
    types = option_types(type(defaults))
    given = {k: v for k, v in vars(args).items() if k in types}
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values.update(_config_values(Path(args.config).expanduser(), command, types, commands))
    values.update(given)
    return dataclasses.replace(defaults, **values)  # type: ignore[type-var]
