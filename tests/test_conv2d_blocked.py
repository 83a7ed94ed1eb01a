"""The register-blocked stride-1 direct kernels (cpp/src/conv2d/conv2d_blocked_impl.h).

algo="direct" runs them for stride-1 layers with at least two input channels per group: the
forward (every padding mode), grad-input (zero padding) and grad-weight (kernel width <= 7; not
first layers with C <= 4, which keep their own kernel).
Their tile borders are not those of the GEMM that test_simd_tails.py sweeps:

* output channels per register tile: up to 24 (AVX-512) or 12 with one vector of pixels, half
  that with two; the weight gradient holds (31 // (S + 1)) filters of S taps (AVX-512) or
  (15 // (S + 1)) otherwise, at most 8;
* pixel tiles of one or two vectors (4 to 32 lanes) along output rows, or along the padded
  rows flattened into one line for narrow outputs (columns between rows computed and dropped);
* the weight gradient's last vector per row, masked so that values past the row (even inf)
  never enter a sum, and the last row of the gradient array, which is read without over-reading;
* the 3x3 weight gradient with >= 32 filters, tiled by vectors of filters (2 on AVX-512, 1
  otherwise) over a transposed gradient zero-filled to whole vectors.
"""
import numpy as np
import pytest

from pyconv import _reference as ref
import cases
from cases import ConvCase
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DT_IDS = ["f32", "f64"]


def _cases():
    out = []
    # output channels across the register-tile borders, at widths that pick each tile shape
    for i, k in enumerate((1, 3, 5, 6, 7, 8, 11, 12, 13, 23, 24, 25, 49)):
        w = (1, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 64)[i]
        out.append(ConvCase(2, 6, 5, w, k, 3, 3, 1, 1))
        out.append(ConvCase(1, 5, 3, w + 2, k, 2, 5, 1, (0, 2)))
    # every kernel width the weight gradient templates (1..7) and one past them
    for s in range(1, 9):
        out.append(ConvCase(2, 5, 6, 3 * s + 5, 9, 2, s, 1, (1, s // 2), (1, 2 if s < 4 else 1)))
    # padding modes, dilation, groups, padding larger than the kernel extent
    for mode in ("zeros", "reflect", "replicate", "circular"):
        out.append(ConvCase(2, 6, 9, 13, 10, 3, 3, 1, (2, 1), (2, 1), 2, mode))
    out.append(ConvCase(1, 4, 5, 5, 7, 3, 3, 1, 4))
    # 3x3 weight gradient by filter (>= 32 filters): filter-vector tails, dilation, padding modes
    for k, mode in ((32, "zeros"), (33, "reflect"), (47, "circular"), (64, "zeros"), (97, "replicate")):
        out.append(ConvCase(2, 8, 6, 11, k, 3, 3, 1, (1, 2) if k % 2 else 1, (1, 2) if k % 2 else 1, 1, mode))
    out.append(ConvCase(3, 2, 1, 20, 30, 1, 7, 1, (0, 3)))
    return [c for c in out if c.valid()]


CASES = _cases()
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DT_IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_blocked_tile_borders(case, dtype, isa, poison):
    x, w, b, gy, refs = cases.conv_case_data(case)
    x, w, b, gy = (a.astype(dtype) for a in (x, w, b, gy))
    s, p, d, g = case.args
    kw = dict(padding_mode=case.mode, algo="direct")
    t, bt, lf, rt = case.pads
    fold = 1 if case.mode == "zeros" else (1 + t + bt) * (1 + lf + rt)
    for direction, got in (("fwd", F.conv2d(x, w, b, s, p, d, g, **kw)),
                           ("bwd_data", F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw)),
                           ("bwd_weight", F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw))):
        k = case.reduction_length(direction) * (fold if direction == "bwd_data" else 1)
        check_close(got, refs[direction], dtype=dtype, k=k, case=f"{case.id} {direction} isa={isa}")


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DT_IDS)
@pytest.mark.parametrize("width", (5, 16, 19))
def test_blocked_weight_gradient_ignores_values_past_the_row(dtype, width, isa):
    """inf and NaN in the input and gradient reach exactly the taps that read them."""
    rng = np.random.default_rng(width)
    x = rng.uniform(-1, 1, (2, 6, 6, width)).astype(dtype)
    gy = rng.uniform(-1, 1, (2, 4, 6, width)).astype(dtype)
    x[0, 1, 2, -1] = np.inf      # last column: lanes past it belong to the next row
    x[1, 2, 0, 0] = -np.inf
    gy[1, 3, -1, -1] = np.nan    # last element of the array
    got = F.conv2d_grad_weight(x, gy, (4, 6, 3, 3), padding=1, algo="direct")
    expected = ref.conv2d_grad_weight(x.astype(np.float64), gy.astype(np.float64), (4, 6, 3, 3), padding=1)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    check_close(got, expected, dtype=dtype, k=144)


@pytest.mark.parametrize("direction", ("fwd", "bwd_data", "bwd_weight"))
def test_blocked_without_workspace_falls_back(direction):
    """Padded planes larger than the workspace limit: the general direct path, same answer."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 8, 40, 40))
    w = rng.uniform(-1, 1, (6, 8, 3, 3))
    gy = rng.uniform(-1, 1, (2, 6, 40, 40))
    call = {"fwd": lambda: F.conv2d(x, w, padding=1, algo="direct"),
            "bwd_data": lambda: F.conv2d_grad_input(gy, w, x.shape, padding=1, algo="direct"),
            "bwd_weight": lambda: F.conv2d_grad_weight(x, gy, w.shape, padding=1, algo="direct")}[direction]
    full = call()
    prev = pyconv.get_workspace_limit()
    try:
        pyconv.set_workspace_limit(4096)
        small = call()
    finally:
        pyconv.set_workspace_limit(prev)
    np.testing.assert_allclose(small, full, rtol=1e-12, atol=1e-12)


def test_blocked_is_what_direct_and_auto_run(capfd):
    """PYCONV_VERBOSE names the path; auto takes it for small stride-1 layers (issue 4 table)."""
    import subprocess
    import sys
    code = ("import numpy as np, pyconv.functional as F\n"
            "x = np.ones((2, 16, 16, 16), np.float32); w = np.ones((20, 16, 5, 5), np.float32)\n"
            "y = F.conv2d(x, w, padding=2)\n"
            "F.conv2d_grad_input(y, w, x.shape, padding=2)\n"
            "F.conv2d_grad_weight(x, y, w.shape, padding=2)\n")
    env = dict(__import__("os").environ, PYCONV_VERBOSE="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    for d in ("fwd", "bwd_data", "bwd_weight"):
        assert f"conv2d_{d}_direct_" in res.stderr and "(register-blocked)" in res.stderr, res.stderr
