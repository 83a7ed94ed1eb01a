"""SIMD tails and tile borders that tests/cases.py does not already sweep.

Already covered elsewhere (test_conv2d.py x cases.py, every algorithm/direction/ISA): output
widths 1..34 (direct kernels vectorise along the output row), in/out channel counts 1..17,
EDGE_VALUES 1, 7, 8, 9, 15, 16, 17, 33, and a few "kernel == padded input" / 1x1-output shapes.
Pooling (test_pool2d.py): widths 1..9 for every small geometry, and EDGE_VALUES widths for three.

Added here, for every algorithm x direction x dtype x ISA:

* GEMM tile borders of the im2col path: the micro-kernels are MR x NR = 6x8 / 6x4 (scalar
  float/double), 6x16 / 6x8 (AVX2), 14x32 / 14x16 (AVX-512); the GEMM dimensions are out
  channels per group (M), output pixels (N) and in_channels/groups * kH * kW (K), in the roles
  that fwd / bwd_data / bwd_weight give them. Each of N, K is swept over 1, W-1, W, W+1 for
  W in {4, 6, 8, 14, 16, 32}, and M over 1..15 and 27..29 (the last panel of M runs a micro-kernel
  for its row count, one per count; Winograd's 36 GEMMs too), pointwise (GEMM on the input
  directly) and not;
* kernel equal to the padded input (output 1x1) at widths W-1, W, W+1 for W in {4, 8, 16}, in
  every padding mode;
* pooling: every input width 1..40 (so every interior-vector count and tail for lane counts
  2, 4, 8, 16, float64 and float32) for strides 1 and 2 (the vectorised ones) and 3, kernels
  1..3, every legal padding, floor/ceil, dilation 1/2; pooling windows equal to the padded
  input (output 1x1).
"""
import zlib

import numpy as np
import pytest

import cases
from pyconv import _reference as ref
from cases import ConvCase
from conftest import check_close, conv_algo_run

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DT_IDS = ["f32", "f64"]
EDGE_N = (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33)         # W-1, W, W+1 for W = 4, 8, 16, 32
EDGE_M = tuple(range(1, 16)) + (27, 28, 29)                     # every row count of an MR = 6 or 14 panel
EDGE_K = (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33)


def _gemm_cases():
    out = []
    for i, n in enumerate(EDGE_N):
        m = EDGE_M[i % len(EDGE_M)]
        k = EDGE_K[(i * 5 + 3) % len(EDGE_K)]
        # pointwise: 1x1, stride 1, no padding -> GEMM on the input (M=m, N=n, K=k)
        out.append(ConvCase(2, k, 1, n, m, 1, 1))
        # im2col: stride 2 makes it non-pointwise with the same N (output width n) and K
        out.append(ConvCase(1, k, 1, 2 * n - 1, m, 1, 1, (1, 2), 0))
        # im2col with a 1x3 kernel: K = 3 * channels, N = n, and a second group
        c3 = max(1, k // 3)
        out.append(ConvCase(1, 2 * c3, 2, n + 2, 2 * m, 1, 3, 1, 0, 1, 2, "zeros"))
    # M and K at the borders together with a fixed N = 2 full tiles + 1
    for m in EDGE_M:
        out.append(ConvCase(1, 3, 3, 11, m, 3, 3, 1, (1, 0), 1, 1, "replicate"))   # N = 33, K = 27
    return [c for c in out if c.valid()]


def _kernel_is_padded_input():
    out = []
    modes = cases.MODES
    for i, w in enumerate((3, 4, 5, 7, 8, 9, 15, 16, 17)):
        mode = modes[i % 4]
        p = 0 if w == 1 else 1
        h = 2 + i % 3
        out.append(ConvCase(1 + i % 2, 2 + i % 3, h, w, 3 + i % 2, h + 2 * p, w + 2 * p, 1, p, 1, 1, mode))
        # channels at the edge too, depthwise, no padding
        out.append(ConvCase(1, w, 2, w, w, 2, w, 1, 0, 1, w))
    return [c for c in out if c.valid()]


def _strided_rows():
    # Implicit im2col gathers output rows with stride 2 and 4 from whole vectors (2 or 4 vectors
    # of input per vector of output) while they fit in the input row, then element by element:
    # output widths around 1..3 vectors of 4..16 lanes, with padding, dilation and wrap modes.
    out = []
    for i, ow in enumerate((3, 4, 5, 8, 9, 16, 17, 31, 33, 47, 49)):
        for sw in (2, 3, 4):
            mode = cases.MODES[(i + sw) % 4]
            pad, s = (i + sw) % 3, 1 + (i + sw) % 4
            dil = 1 + (i % 2) * (s > 1)
            w = (ow - 1) * sw + dil * (s - 1) + 1 - 2 * pad + i % sw
            out.append(ConvCase(1 + i % 2, 2 + i % 3, 3 + i % 2, w, 5 + i % 3, 1 + i % 3, s, (1 + i % 2, sw), pad,
                                dil, 1, mode))
    return [c for c in out if c.valid()]


GEMM_CASES = _gemm_cases()
FULL_KERNEL_CASES = _kernel_is_padded_input()
STRIDED_CASES = _strided_rows()
CONV_CASES = GEMM_CASES + FULL_KERNEL_CASES + STRIDED_CASES


def test_edge_tables_hit_the_borders():
    n_vals = {c.output_shape[2] * c.output_shape[3] for c in GEMM_CASES}
    m_vals = {c.k // c.groups for c in GEMM_CASES}
    k_vals = {c.c // c.groups * c.r * c.s for c in GEMM_CASES}
    assert set(EDGE_N) <= n_vals, sorted(set(EDGE_N) - n_vals)
    assert set(EDGE_M) <= m_vals, sorted(set(EDGE_M) - m_vals)
    assert {1, 3, 4, 5, 7, 8, 9, 15, 16, 17} <= k_vals, sorted(k_vals)
    for c in FULL_KERNEL_CASES:
        assert c.output_shape[2:] == (1, 1), c.id


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("algo", F.CONV_ALGORITHMS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv_gemm_and_full_kernel_edges(case, algo, dtype, isa, poison):
    x, w, b, gy, refs = cases.conv_case_data(case)
    x, w, b, gy = (a.astype(dtype) for a in (x, w, b, gy))
    s, p, d, g = case.args
    kw = dict(padding_mode=case.mode, algo=algo)
    t, bt, lf, rt = case.pads
    fold = 1 if case.mode == "zeros" else (1 + t + bt) * (1 + lf + rt)
    for direction, got in (("fwd", F.conv2d(x, w, b, s, p, d, g, **kw)),
                           ("bwd_data", F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw)),
                           ("bwd_weight", F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw))):
        k = case.reduction_length(direction) * (fold if direction == "bwd_data" else 1)
        check_close(got, refs[direction], dtype=dtype, k=k, case=f"{case.id} {algo} {direction} isa={isa}",
                    algo=conv_algo_run(algo, direction, case.input_shape, case.weight_shape, s, p, d, g, case.mode))


# --------------------------------------------------------------------------
# pooling: every width 1..40 for the vectorised strides
# --------------------------------------------------------------------------
POOL_WIDTHS = range(1, 41)
POOL_GEOMS = [(k, s, p, d, cm) for s in (1, 2, 3) for k in (1, 2, 3) for p in range(k // 2 + 1)
              for d in (1, 2) for cm in (False, True) if not (k == 1 and d == 2)]
_POOL = {}


def pool_refs(geom, width):
    key = (geom, width)
    if key not in _POOL:
        k, s, p, d, cm = geom
        h = 3
        if min(ref.pool2d_output_shape((h, width), k, s, p, d, cm)) < 1:
            _POOL[key] = None
            return None
        rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
        n = 2 * h * width
        x = (rng.permutation(n).reshape(1, 2, h, width) - n / 2) / 8.0   # distinct, float32-exact
        y, idx = ref.max_pool2d(x, k, s, p, d, cm, return_indices=True)
        gy = rng.uniform(-1, 1, y.shape).astype(np.float32).astype(np.float64)
        r = dict(x=x, y=y, idx=idx, gy=gy, empty=ref.max_pool2d_has_empty_window((h, width), k, s, p, d, cm))
        r["gx"] = None if r["empty"] else ref.max_pool2d_grad(gy, x, k, s, p, d, cm)
        if d == 1:
            cip = bool(width % 2)
            r["avg"] = ref.avg_pool2d(x, k, s, p, cm, cip)
            r["avg_grad"] = ref.avg_pool2d_grad(gy, x.shape, k, s, p, cm, cip)
            r["cip"] = cip
        _POOL[key] = r
    return _POOL[key]


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("geom", POOL_GEOMS,
                         ids=lambda g: "k{}s{}p{}d{}-{}".format(*g[:4], "ceil" if g[4] else "floor"))
def test_pool_every_width(geom, dtype, isa, poison):
    k, s, p, d, cm = geom
    for width in POOL_WIDTHS:
        r = pool_refs(geom, width)
        if r is None:
            continue
        msg = f"k={k} s={s} p={p} d={d} ceil={cm} width={width} isa={isa}"
        x, gy = r["x"].astype(dtype), r["gy"].astype(dtype)
        y, idx = F.max_pool2d(x, k, s, p, d, cm, return_indices=True)
        check_close(y, r["y"], dtype=dtype, case=msg)
        if r["empty"]:
            continue
        np.testing.assert_array_equal(idx, r["idx"], err_msg=msg)
        check_close(F.max_pool2d_grad(gy, x, k, s, p, d, cm), r["gx"], dtype=dtype, k=k * k, case=msg)
        check_close(F.max_pool2d_grad(gy, x, k, s, p, d, cm, indices=idx), r["gx"], dtype=dtype, k=k * k,
                    case=msg)
        if d == 1:
            check_close(F.avg_pool2d(x, k, s, p, cm, r["cip"]), r["avg"], dtype=dtype, k=k * k, case=msg)
            check_close(F.avg_pool2d_grad(gy, x.shape, k, s, p, cm, r["cip"]), r["avg_grad"], dtype=dtype,
                        k=k * k, case=msg)


FULL_WINDOW = [(h, w, p) for h, w in ((1, 1), (2, 3), (3, 4), (1, 5), (2, 7), (3, 8), (1, 9), (2, 15), (3, 16),
                                      (1, 17), (2, 31), (1, 32), (3, 33))
               for p in (0, 1)]


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=DT_IDS)
def test_pool_window_equal_to_padded_input(dtype, isa, poison):
    for h, w, p in FULL_WINDOW:
        kern = (h + 2 * p, w + 2 * p)
        rng = np.random.default_rng(h * 100 + w * 10 + p)
        n = 2 * 3 * h * w
        x64 = (rng.permutation(n).reshape(2, 3, h, w) - n / 2) / 8.0
        x = x64.astype(dtype)
        for cm in (False, True):
            msg = f"h={h} w={w} p={p} ceil={cm} isa={isa}"
            y_ref, idx_ref = ref.max_pool2d(x64, kern, 1, p, 1, cm, return_indices=True)
            assert y_ref.shape[2:] == (1, 1), msg
            y, idx = F.max_pool2d(x, kern, 1, p, 1, cm, return_indices=True)
            check_close(y, y_ref, dtype=dtype, case=msg)
            np.testing.assert_array_equal(idx, idx_ref, err_msg=msg)
            gy64 = rng.uniform(-1, 1, y_ref.shape)
            gy = gy64.astype(dtype)
            g_ref = ref.max_pool2d_grad(gy.astype(np.float64), x64, kern, 1, p, 1, cm)
            check_close(F.max_pool2d_grad(gy, x, kern, 1, p, 1, cm), g_ref, dtype=dtype, case=msg)
            for cip in (True, False):
                check_close(F.avg_pool2d(x, kern, 1, p, cm, cip), ref.avg_pool2d(x64, kern, 1, p, cm, cip),
                            dtype=dtype, k=h * w, case=msg)
                check_close(F.avg_pool2d_grad(gy, x.shape, kern, 1, p, cm, cip),
                            ref.avg_pool2d_grad(gy.astype(np.float64), x.shape, kern, 1, p, cm, cip),
                            dtype=dtype, k=1, case=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ow", [20, 21, 28, 31, 33])
def test_first_layer_weight_gradient_tail_vector(ow, dtype):
    """The last, overlapping vector of an output row (width not a multiple of the lanes) zeroes the
    lanes already summed in x as well as dy: an inf there stays inf, it does not become NaN."""
    rng = np.random.default_rng(ow)
    x = rng.standard_normal((2, 3, ow + 4, ow + 4))
    dy = rng.standard_normal((2, 4, ow, ow))
    for col in range(10, 18):
        xx = x.copy()
        xx[0, 1, 3, col] = np.inf
        got = F.conv2d_grad_weight(xx.astype(dtype), dy.astype(dtype), (4, 3, 5, 5), algo="direct")
        exp = ref.conv2d_grad_weight(xx, dy, (4, 3, 5, 5))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp), err_msg=f"col {col}")
        np.testing.assert_array_equal(got[np.isinf(exp)], exp[np.isinf(exp)], err_msg=f"col {col}")
        finite = np.isfinite(exp)
        np.testing.assert_allclose(got[finite], exp[finite], rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-3)
