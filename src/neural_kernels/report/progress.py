"""Progress of long steps: a ``progress(done, total)`` callback for kernels and sections."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A ``progress(done, total)`` callback: a tqdm bar on a terminal, plain lines otherwise.

    Plain lines go to stderr at every quarter of the work. ``enabled=False`` prints nothing.
    Use it as a context manager so that a bar is closed at the end.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        from .writer import have

        self.label = label
        self.enabled = enabled
        self._bar: Any = None
        self._done = 0
        self._next_quarter = 1
        self._fancy = enabled and sys.stderr.isatty() and have("tqdm")

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._fancy:
            if self._bar is None:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self._bar = tqdm(
                    total=total, desc=self.label, unit="pair", unit_scale=True, file=sys.stderr
                )
            self._bar.update(done - self._done)
        else:
            while total and done * 4 >= self._next_quarter * total and self._next_quarter <= 4:
                print(f"  {self.label}: {25 * self._next_quarter}%", file=sys.stderr, flush=True)
                self._next_quarter += 1
        self._done = done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
