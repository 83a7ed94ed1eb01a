"""1x1 convolutions on small planes computed as one GEMM over the whole batch (cpp/src/conv2d/im2col.cpp,
merge_images): the GEMM's column panels cross image boundaries, the result is scattered back into
the images' planes (with the fused epilogue's residual and clamp), and the weight gradient sums
over n * H * W pixels at once. Checked against the float64 reference on every ISA with poisoned
outputs, bitwise across thread counts, and against the per-image path for the fused epilogue.
"""
import numpy as np
import pytest

import cases
from cases import ConvCase
from conftest import check_close
from pyconv import _core

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DT_IDS = ["f32", "f64"]
INF = float("inf")

# (n, c, h, w, k, groups): planes whose last column panel is ragged (7x7, 14x14, 13x13, 3x5, 1x1),
# fewer and more filters than channels (both weight-gradient orientations), grouped 1x1 layers,
# batches at and past the merge threshold, and a batch of 2 that keeps the per-image path.
SHAPES = [(8, 16, 7, 7, 40, 1), (8, 40, 7, 7, 16, 1), (4, 24, 7, 7, 24, 1), (5, 12, 14, 14, 20, 1),
          (8, 20, 13, 13, 12, 1), (6, 9, 3, 5, 11, 1), (9, 7, 1, 1, 5, 1), (8, 16, 7, 7, 24, 4),
          (4, 12, 7, 7, 8, 2), (2, 16, 7, 7, 40, 1), (4, 300, 7, 7, 900, 1)]
CASES = [ConvCase(n, c, h, w, k, 1, 1, 1, 0, 1, g) for n, c, h, w, k, g in SHAPES]


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DT_IDS)
@pytest.mark.parametrize("algo", ("auto", "im2col"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pointwise_batch_matches_reference(case, algo, dtype, isa, poison):
    x, w, b, gy, refs = cases.conv_case_data(case)
    x, w, b, gy = (a.astype(dtype) for a in (x, w, b, gy))
    x0, gy0 = x.copy(), gy.copy()
    g = case.groups
    for direction, got in (("fwd", F.conv2d(x, w, b, groups=g, algo=algo)),
                           ("bwd_data", F.conv2d_grad_input(gy, w, x.shape, groups=g, algo=algo)),
                           ("bwd_weight", F.conv2d_grad_weight(x, gy, w.shape, groups=g, algo=algo))):
        check_close(got, refs[direction], dtype=dtype, k=case.reduction_length(direction),
                    case=f"{case.id} {direction} {algo} isa={isa}")
    assert np.array_equal(x, x0) and np.array_equal(gy, gy0)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DT_IDS)
def test_pointwise_batch_is_thread_independent(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 48, 7, 7)).astype(dtype)
    w = rng.standard_normal((80, 48, 1, 1)).astype(dtype)
    w2 = rng.standard_normal((24, 48, 1, 1)).astype(dtype)
    gy = rng.standard_normal((8, 80, 7, 7)).astype(dtype)
    gy2 = rng.standard_normal((8, 24, 7, 7)).astype(dtype)
    runs = []
    for nt in (1, 2, 3):
        with pyconv.threads(nt):
            runs.append((F.conv2d(x, w), F.conv2d_grad_input(gy, w, x.shape), F.conv2d_grad_weight(x, gy, w.shape),
                         F.conv2d_grad_weight(x, gy2, w2.shape)))
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DT_IDS)
@pytest.mark.parametrize("lo,hi,with_res", [(-INF, INF, True), (0.0, INF, False), (0.0, 6.0, True)])
def test_pointwise_batch_fused_epilogue(dtype, lo, hi, with_res):
    # clamp(conv + bias + residual) on the batch-wide GEMM (bias and a clamp without residual
    # in its stores, the residual and clamp in the scatter) equals the conv then numpy's add and clip
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 32, 7, 7)).astype(dtype)
    w = rng.standard_normal((56, 32, 1, 1)).astype(dtype)
    b = rng.standard_normal(56).astype(dtype)
    r = rng.standard_normal((8, 56, 7, 7)).astype(dtype)
    r[3, 5, 2, 1] = np.nan
    y = _core.conv2d_fwd_fused(x, w, b, (1, 1), (0, 0, 0, 0), (1, 1), 1, 2, r if with_res else None, lo, hi)
    ref = _core.conv2d_fwd(x, w, b, (1, 1), (0, 0, 0, 0), (1, 1), 1, 0, 2)
    if with_res:
        ref = ref + r
    np.testing.assert_array_equal(y, np.clip(ref, lo, hi))
