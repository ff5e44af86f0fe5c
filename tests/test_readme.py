"""The README's Python blocks run, in order, in one namespace (as a reader would)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_blocks_run() -> None:
    blocks = _blocks()
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    torch.manual_seed(0)
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    k = namespace["k"]
    assert k.nngp.shape == (100, 20)  # type: ignore[attr-defined]
    theta = namespace["theta"]
    assert isinstance(theta, torch.Tensor) and theta.shape == (10, 20)
    fx_nngp, fx_ntk = namespace["fx_nngp"], namespace["fx_ntk"]
    assert fx_nngp.mean.shape == fx_ntk.mean.shape == (2, 20, 1)  # type: ignore[attr-defined]
