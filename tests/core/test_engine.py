"""The kernel engine: blocking, symmetry, autograd, progress, dtypes, layer values."""

from __future__ import annotations

import itertools
import pickle

import torch

import neural_kernels as nk
from neural_kernels.core import Facts

NET = nk.Sequential(
    nk.Dense(16, w_std=1.4, b_std=0.1),
    nk.ReLU(),
    nk.Dense(16, w_std=1.4, b_std=0.1),
    nk.ReLU(),
    nk.Dense(1, w_std=1.0, b_std=0.1),
)


def test_gradients_wrt_inputs_are_finite_at_identical_inputs() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    x = torch.cat([x, x[:2]]).requires_grad_(True)  # rows 5, 6 repeat rows 0, 1
    k = NET.kernel(x)
    (gx,) = torch.autograd.grad(k.nngp.sum() + k.ntk.sum(), x)
    assert torch.isfinite(gx).all()
    diag = NET.kernel_diag(x)
    (gd,) = torch.autograd.grad(diag.ntk.sum(), x)
    assert torch.isfinite(gd).all()


def test_gradient_of_diagonal_matches_finite_differences() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: NET.kernel_diag(t).ntk, (x,))
    y = torch.randn(2, 4, dtype=torch.float64)
    torch.autograd.gradcheck(lambda t: NET.kernel(t, y).ntk, (x,))


def test_gradients_wrt_hyperparameters() -> None:
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(4, 3, dtype=torch.float64)
    x2 = torch.randn(3, 3, dtype=torch.float64)

    def kernel(w_std: torch.Tensor, b_std: torch.Tensor) -> torch.Tensor:
        net = nk.Sequential(
            nk.Dense(8, w_std=w_std, b_std=b_std), nk.ReLU(), nk.Dense(1, w_std=w_std, b_std=b_std)
        )
        k = net.kernel(x1, x2)
        return torch.stack([k.nngp, k.ntk])

    torch.autograd.gradcheck(kernel, (w, b))
    net = nk.Sequential(nk.Dense(8, w_std=w, b_std=b), nk.ReLU(), nk.Dense(1))
    (gw,) = torch.autograd.grad(net.kernel(x1).ntk.sum(), w)  # symmetric path, with grad
    assert torch.isfinite(gw)


def test_autograd_path_equals_fast_path() -> None:
    x1 = torch.randn(9, 3, dtype=torch.float64)
    w = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(nk.Dense(8, w_std=w, b_std=0.1), nk.ReLU(), nk.Dense(1))
    slow = net.kernel(x1, block_size=(2, 4))
    with torch.no_grad():
        fast = net.kernel(x1, block_size=(2, 4))
    assert slow.nngp.requires_grad and not fast.nngp.requires_grad
    torch.testing.assert_close(slow.ntk.detach(), fast.ntk, rtol=1e-12, atol=1e-14)


def test_progress_reports_all_pairs() -> None:
    calls: list[tuple[int, int]] = []
    NET.kernel(torch.randn(10, 3), block_size=3, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (55, 55)  # symmetric: n (n + 1) / 2 pairs
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(calls))
    calls.clear()
    NET.kernel(
        torch.randn(10, 3),
        torch.randn(4, 3),
        block_size=3,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (40, 40)


def test_small_memory_budget_gives_same_kernel() -> None:
    x1 = torch.randn(30, 5, dtype=torch.float64)
    x2 = torch.randn(20, 5, dtype=torch.float64)
    full = NET.kernel(x1, x2)
    tiny = NET.kernel(x1, x2, memory_budget=2048)
    torch.testing.assert_close(tiny.ntk, full.ntk, rtol=1e-13, atol=0)


def test_dtypes_follow_inputs() -> None:
    x32 = torch.randn(4, 3)
    assert NET.kernel(x32).nngp.dtype == torch.float32
    mixed = NET.kernel(x32, torch.randn(2, 3, dtype=torch.float64))
    assert mixed.nngp.dtype == torch.float64
    assert NET.kernel([[1, 2, 3], [4, 5, 6]]).nngp.dtype == torch.float64


def test_kernel_fields_and_shapes() -> None:
    k = NET.kernel(torch.randn(4, 3), torch.randn(2, 3))
    assert k.nngp.shape == k.ntk.shape == (4, 2)
    assert k.cov1.shape == (4,) and k.cov2.shape == (2,)
    assert k.shape1 == (1,) and k.is_gaussian
    assert "Kernel(nngp=(4, 2)" in repr(k)
    only = NET.kernel(torch.randn(4, 3), get="ntk")
    assert only.ntk is not None


def test_layers_are_values() -> None:
    a = nk.Sequential(nk.Dense(3, w_std=1.5), nk.ReLU(), nk.Residual(nk.Dense(3)))
    b = nk.Sequential(nk.Dense(3, w_std=1.5), nk.ReLU(), nk.Residual(nk.Dense(3)))
    assert a == b and hash(a) == hash(b)
    assert a != nk.Sequential(nk.Dense(3, w_std=1.4), nk.ReLU())
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == (
        "Sequential(Dense(out_features=3, w_std=1.5, b_std=0.0, parametrization='ntk'), "
        "ReLU(), Residual(Dense(out_features=3, w_std=1.0, b_std=0.0, parametrization='ntk')))"
    )


def test_out_shape_and_static_facts() -> None:
    net = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Dense(3), nk.Dense(5)), nk.FanInConcat())
    assert net.out_shape((4,)) == (8,)
    # concatenated channels have one covariance per branch: not one Gaussian kernel
    assert net.infer(Facts((4,))) == Facts((8,), False, -1)
    assert nk.Sequential(nk.Dense(3), nk.ReLU()).infer(Facts((4,))).is_gaussian is False


def test_residual_equals_its_expansion() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    branch = (nk.ReLU(), nk.Dense(6, w_std=1.2, b_std=0.1))
    res = nk.Sequential(nk.Dense(6), nk.Residual(*branch))
    expanded = nk.Sequential(
        nk.Dense(6),
        nk.FanOut(2),
        nk.Parallel(nk.Sequential(*branch), nk.Identity()),
        nk.FanInSum(),
    )
    torch.testing.assert_close(res.kernel(x).ntk, expanded.kernel(x).ntk, rtol=0, atol=0)


def test_standard_ntk_scales_with_input_width() -> None:
    # T' = N_in K + w^2 T + 1 for a first standard layer: T = x.x' + 1 (K = x.x'/d).
    x = torch.randn(4, 6, dtype=torch.float64)
    k = nk.Dense(3, w_std=2.0, b_std=0.5, parametrization="standard").kernel(x)
    torch.testing.assert_close(k.ntk, x @ x.T + 1.0)
    torch.testing.assert_close(k.nngp, 4.0 * (x @ x.T) / 6 + 0.25)


def test_chunk_tasks_cover_the_kernel() -> None:
    from neural_kernels.core.tiling import chunk_tasks as _chunk_tasks

    for n1, n2, rows, cols in [(1, 1, 4, 4), (13, 13, 4, 4), (64, 64, 8, 8), (37, 37, 16, 5)]:
        for split in (True, False):
            seen = torch.zeros(n1, n2, dtype=torch.int64)
            for r0, r1, s0, s1 in _chunk_tasks(n1, n2, rows, cols, True, split):
                assert 0 <= r0 < r1 <= n1 and 0 <= s0 < s1 <= n2
                assert (r1 - r0) * (s1 - s0) <= rows * cols
                seen[r0:r1, s0:s1] += 1
            upper = torch.ones(n1, n2, dtype=torch.bool).triu()
            assert bool((seen[upper] == 1).all())  # every upper pair exactly once
            if split and n1 > rows:  # halving the diagonal squares skips most lower pairs
                assert int(seen[~upper].sum()) < n1 * rows // 2
    for n1, n2, rows, cols in [(5, 9, 2, 4), (16, 3, 16, 3)]:
        seen = torch.zeros(n1, n2, dtype=torch.int64)
        for r0, r1, s0, s1 in _chunk_tasks(n1, n2, rows, cols, False):
            seen[r0:r1, s0:s1] += 1
        assert bool((seen == 1).all())
