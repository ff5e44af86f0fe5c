"""Shared fixtures: reference data location, deterministic seeds."""

from __future__ import annotations

import pytest
import torch

try:  # property-based tests (tests/test_properties_hypothesis.py): reproducible and quick
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover (hypothesis is in the test extra)
    pass
else:
    settings.register_profile(
        "neural_kernels",
        deadline=None,
        derandomize=True,
        database=None,
        max_examples=30,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.load_profile("neural_kernels")


# The tests run many tiny tensor operations. On a shared machine intra-op threads stall on
# their barriers whenever another process holds a core (one Monte Carlo check: 26 s with two
# threads at load 12 on two cores, 0.7 s with one). Tests of threaded paths set threads
# themselves (tests/core/test_tiling.py).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
