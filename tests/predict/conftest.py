"""The shared prediction problem, computed once per module."""

from __future__ import annotations

from typing import Any

import pytest

from .._support.predict import make_problem


@pytest.fixture(scope="module")
def problem() -> dict[str, Any]:
    return make_problem()
