"""``python -m neural_kernels``: the same as the ``neural-kernels`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
