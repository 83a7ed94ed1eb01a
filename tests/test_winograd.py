"""algo="winograd": F(4x4, 3x3) for 3x3 stride-1 convolutions (forward, input gradient) and
F(3x3, 4x4) for their weight gradient.

Tile remainders (output sizes not a multiple of 4, runs of tiles crossing tile rows and images),
every padding amount and mode, channel counts around the GEMM tile, empty batches, views; the
float32 error bound, float64 near-exact, bits independent of the thread count and of the filter
chunking, the fallback to im2col where Winograd does not apply, and what PYCONV_VERBOSE reports.
"""
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from pyconv import _reference as ref
from conftest import check_close
from pyconv._reference import WINOGRAD_F32_ATOL_FACTOR

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DT_IDS = ["f32", "f64"]

# (n, c, h, w, k, padding, mode): odd and tiny planes, 1..33 channels (MR is 6 or 14)
SHAPES = [
    (1, 1, 3, 3, 1, 0, "zeros"),          # a single output pixel
    (1, 2, 4, 4, 3, 1, "zeros"),          # one tile
    (2, 3, 5, 7, 5, 1, "zeros"),
    (3, 4, 9, 11, 7, 0, "zeros"),
    (1, 5, 13, 6, 14, 2, "zeros"),        # K = MR (AVX-512)
    (2, 15, 8, 8, 15, (1, 2), "zeros"),   # asymmetric padding
    (1, 6, 17, 23, 6, "same", "zeros"),
    (3, 7, 6, 5, 9, 1, "reflect"),
    (2, 8, 7, 10, 4, 2, "circular"),
    (1, 9, 10, 9, 17, (2, 1), "replicate"),
    (2, 33, 15, 17, 29, 1, "zeros"),      # 2 full GEMM panels + remainder
    (0, 4, 8, 8, 4, 1, "zeros"),          # empty batch
    (5, 3, 2, 2, 4, 1, "zeros"),          # many images per unit of tiles
    (1, 4, 1, 1, 2, 1, "zeros"),          # 1x1 input padded
    (1, 2, 3, 4, 3, 3, "zeros"),          # padding 3: the input gradient reads inside dy
    (1, 200, 6, 7, 190, 1, "zeros"),      # transformed filters > 4 MiB, one unit: V once, U in chunks
]


def _id(s):
    return "n{}c{}h{}w{}k{}-p{}-{}".format(*s).replace(" ", "")


def data(shape, dtype, seed=0):
    n, c, h, w, k, padding, mode = shape
    rng = np.random.default_rng(zlib.crc32(_id(shape).encode()) + seed)
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    wt = rng.uniform(-1, 1, (k, c, 3, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, k).astype(np.float32)
    oh, ow = F.conv2d_output_shape((n, c, h, w), wt.shape, padding=padding)[2:]
    gy = rng.uniform(-1, 1, (n, k, oh, ow)).astype(np.float32)
    return x, wt, b, gy


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_matches_reference(shape, dtype, isa, poison):
    n, c, h, w, k, padding, mode = shape
    x, wt, b, gy = data(shape, dtype)
    y = F.conv2d(x.astype(dtype), wt.astype(dtype), b.astype(dtype), padding=padding, padding_mode=mode,
                 algo="winograd")
    check_close(y, ref.conv2d(x, wt, b, 1, padding, 1, 1, mode), dtype=dtype, k=c * 9, algo="winograd",
                case=f"fwd isa={isa}")
    if mode == "zeros":
        dx = F.conv2d_grad_input(gy.astype(dtype), wt.astype(dtype), x.shape, padding=padding, algo="winograd")
        check_close(dx, ref.conv2d_grad_input(gy, wt, x.shape, 1, padding, 1, 1), dtype=dtype, k=k * 9,
                    algo="winograd", case=f"bwd_data isa={isa}")
    dw = F.conv2d_grad_weight(x.astype(dtype), gy.astype(dtype), wt.shape, padding=padding, padding_mode=mode,
                              algo="winograd")
    check_close(dw, ref.conv2d_grad_weight(x, gy, wt.shape, 1, padding, 1, 1, mode), dtype=dtype,
                k=max(1, gy.size // k), algo="winograd", case=f"bwd_weight isa={isa}")


@pytest.mark.parametrize("groups", [2, 4])
def test_groups(groups, poison):
    x, wt, b, gy = (a.astype(np.float64) for a in data((2, 8, 11, 9, 12, 1, "zeros"), np.float64))
    wt = wt[:, : 8 // groups].copy()
    y = F.conv2d(x, wt, b, padding=1, groups=groups, algo="winograd")
    check_close(y, ref.conv2d(x, wt, b, 1, 1, 1, groups), dtype=np.float64, k=8 // groups * 9)
    dx = F.conv2d_grad_input(gy, wt, x.shape, padding=1, groups=groups, algo="winograd")
    check_close(dx, ref.conv2d_grad_input(gy, wt, x.shape, 1, 1, 1, groups), dtype=np.float64, k=12 // groups * 9)
    dw = F.conv2d_grad_weight(x, gy, wt.shape, padding=1, groups=groups, algo="winograd")
    check_close(dw, ref.conv2d_grad_weight(x, gy, wt.shape, 1, 1, 1, groups), dtype=np.float64, k=2 * 11 * 9)


def test_float32_error_bound_on_a_layer():
    """N(0, 1) data, 64 channels: within 2e-5 * max|y| (the bound "auto" is documented with)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64, 20, 20)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    exact = F.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, algo="im2col")
    y = F.conv2d(x, w, padding=1, algo="winograd")
    assert np.abs(y - exact).max() <= 2e-5 * np.abs(exact).max()
    dx_exact = F.conv2d_grad_input(x.astype(np.float64), w.astype(np.float64), x.shape, padding=1, algo="im2col")
    dx = F.conv2d_grad_input(x, w, x.shape, padding=1, algo="winograd")
    assert np.abs(dx - dx_exact).max() <= 2e-5 * np.abs(dx_exact).max()
    dw_exact = F.conv2d_grad_weight(x.astype(np.float64), x.astype(np.float64), w.shape, padding=1, algo="im2col")
    dw = F.conv2d_grad_weight(x, x, w.shape, padding=1, algo="winograd")
    assert np.abs(dw - dw_exact).max() <= 2e-5 * np.abs(dw_exact).max()
    # float64: near-exact
    y64 = F.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, algo="winograd")
    assert np.abs(y64 - exact).max() <= 1e-13 * np.abs(exact).max()
    assert WINOGRAD_F32_ATOL_FACTOR <= 20


@pytest.mark.parametrize("kind", ["sliced", "transposed", "negative"])
def test_views_equal_contiguous(kind):
    x, wt, b, gy = data((2, 6, 12, 14, 5, 1, "zeros"), np.float32)
    base = F.conv2d(x, wt, b, padding=1, algo="winograd")
    gbase = F.conv2d_grad_input(gy, wt, x.shape, padding=1, algo="winograd")
    wbase = F.conv2d_grad_weight(x, gy, wt.shape, padding=1, algo="winograd")
    if kind == "sliced":
        xv = np.zeros((2, 6, 12, 28), np.float32)[..., ::2]
        xv[...] = x
        gv = np.repeat(gy, 2, axis=3)[..., ::2]
    elif kind == "transposed":
        xv = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        gv = np.asfortranarray(gy)
    else:
        xv = x[..., ::-1].copy()[..., ::-1]
        gv = gy[:, ::-1].copy()[:, ::-1]
    np.testing.assert_array_equal(F.conv2d(xv, wt, b, padding=1, algo="winograd"), base)
    np.testing.assert_array_equal(F.conv2d_grad_input(gv, wt, x.shape, padding=1, algo="winograd"), gbase)
    np.testing.assert_array_equal(F.conv2d_grad_weight(xv, gv, wt.shape, padding=1, algo="winograd"), wbase)


@pytest.fixture
def restore_runtime():
    threads, limit = pyconv.get_num_threads(), pyconv.get_workspace_limit()
    yield
    pyconv.set_num_threads(threads)
    pyconv.set_workspace_limit(limit)


# Many units of tiles (run in parallel) and a single unit (threads split its channels / positions).
@pytest.mark.parametrize("shape", [(6, 16, 30, 30, 24, 1, "zeros"), (1, 40, 9, 9, 48, 1, "zeros"),
                                   (2, 200, 6, 7, 190, 1, "zeros"),
                                   (40, 64, 16, 15, 64, 1, "zeros")],  # weight gradient: 8 chunks of units
                         ids=_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DT_IDS)
def test_bits_do_not_depend_on_threads(shape, dtype, restore_runtime):
    x, wt, b, gy = (a.astype(dtype) for a in data(shape, dtype))
    out = []
    for nt in (1, 2, 3):
        pyconv.set_num_threads(nt)
        out.append((F.conv2d(x, wt, b, padding=1, algo="winograd"),
                    F.conv2d_grad_input(gy, wt, x.shape, padding=1, algo="winograd"),
                    F.conv2d_grad_weight(x, gy, wt.shape, padding=1, algo="winograd")))
    for res in out[1:]:
        for got, first in zip(res, out[0]):
            np.testing.assert_array_equal(got, first)


def test_filter_chunks_and_workspace_fallback(restore_runtime):
    """A small workspace limit splits the filters into chunks (same bits); a tiny one falls back to im2col."""
    x, wt, b, gy = data((2, 64, 12, 12, 64, 1, "zeros"), np.float32)
    full = F.conv2d(x, wt, b, padding=1, algo="winograd")
    pyconv.set_workspace_limit(1200 << 10)   # room for 56 of the 64 transformed filters
    chunked = F.conv2d(x, wt, b, padding=1, algo="winograd")
    np.testing.assert_array_equal(chunked, full)
    assert not np.array_equal(chunked, F.conv2d(x, wt, b, padding=1, algo="im2col"))  # still Winograd
    pyconv.set_workspace_limit(4 << 10)
    np.testing.assert_array_equal(F.conv2d(x, wt, b, padding=1, algo="winograd"),
                                  F.conv2d(x, wt, b, padding=1, algo="im2col"))
    np.testing.assert_array_equal(F.conv2d_grad_weight(x, gy, wt.shape, padding=1, algo="winograd"),
                                  F.conv2d_grad_weight(x, gy, wt.shape, padding=1, algo="im2col"))


def test_weight_gradient_units_within_the_workspace(restore_runtime):
    """The weight gradient's tiles run in units that fit the workspace limit: smaller units, same
    result within rounding; the transformed sums M alone over the limit fall back to im2col."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 28, 28)).astype(np.float32)
    gy = rng.standard_normal((4, 64, 28, 28)).astype(np.float32)
    exact = F.conv2d_grad_weight(x.astype(np.float64), gy.astype(np.float64), (64, 64, 3, 3), padding=1)
    runs = []
    for limit in (64 << 20, 1600 << 10, 1000 << 10):  # 196 tiles in units of 80, 48 and 16
        pyconv.set_workspace_limit(limit)
        runs.append(F.conv2d_grad_weight(x, gy, (64, 64, 3, 3), padding=1, algo="winograd"))
        assert np.abs(runs[-1] - exact).max() <= 2e-5 * np.abs(exact).max()
    assert not np.array_equal(runs[0], runs[2])  # other units: other sums
    assert not np.array_equal(runs[2], F.conv2d_grad_weight(x, gy, (64, 64, 3, 3), padding=1, algo="im2col"))
    pyconv.set_workspace_limit(600 << 10)  # M (36 x 70 x 64 floats) alone exceeds it
    np.testing.assert_array_equal(F.conv2d_grad_weight(x, gy, (64, 64, 3, 3), padding=1, algo="winograd"),
                                  F.conv2d_grad_weight(x, gy, (64, 64, 3, 3), padding=1, algo="im2col"))


# Strided layers whose kernel spans 3 strides each way (phases as channels) and dilated 3x3
# layers (phases as images): a stride-1 3x3 layer over the input's phases, for the forward and the
# weight gradient in every padding mode, for the input gradient with zero padding.
PHASED = [  # n, c, h, w, k, kernel, stride, padding, dilation, mode
    (1, 3, 35, 33, 8, (11, 11), 4, 2, 1, "zeros"),      # AlexNet conv1's geometry, small
    (2, 4, 17, 19, 6, (5, 5), 2, 2, 1, "zeros"),
    (1, 2, 15, 16, 5, (6, 6), 2, 1, 1, "reflect"),
    (2, 3, 20, 21, 7, (9, 7), 3, (1, 2), 1, "replicate"),
    (1, 2, 13, 30, 4, (3, 11), (1, 4), 1, 1, "circular"),
    (3, 3, 12, 12, 4, (5, 5), 2, 0, 1, "zeros"),
    (1, 2, 5, 5, 3, (5, 5), 2, 0, 1, "zeros"),          # a single output pixel
    (0, 3, 12, 12, 4, (5, 5), 2, 0, 1, "zeros"),        # empty batch
    (1, 4, 20, 20, 5, (3, 3), 1, 2, 2, "zeros"),        # phases of equal size
    (2, 3, 21, 19, 4, (3, 3), 1, 2, 2, "zeros"),        # odd sizes: phases one row/column short
    (1, 3, 17, 23, 6, (3, 3), 1, (1, 3), (2, 3), "reflect"),
    (2, 2, 13, 14, 3, (3, 3), 1, 1, 3, "replicate"),
    (1, 2, 9, 9, 3, (3, 3), 1, 0, 2, "circular"),
    (1, 2, 5, 6, 3, (3, 3), 1, 1, (1, 2), "zeros"),
    (3, 5, 7, 7, 4, (3, 3), 1, 4, 4, "zeros"),          # more phases than some outputs
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DT_IDS)
@pytest.mark.parametrize("shape", PHASED,
                         ids=lambda s: "n{}c{}h{}w{}k{}-{}-s{}p{}d{}-{}".format(*s).replace(" ", ""))
def test_layers_over_their_phases(shape, dtype, isa, poison):
    n, c, h, w, k, kernel, stride, padding, dilation, mode = shape
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (n, c, h, w))
    wt = rng.uniform(-1, 1, (k, c) + kernel)
    b = rng.uniform(-1, 1, k)
    kw = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode)
    expected = ref.conv2d(x, wt, b, stride, padding, dilation, 1, mode)
    gy = rng.uniform(-1, 1, expected.shape)
    y = F.conv2d(x.astype(dtype), wt.astype(dtype), b.astype(dtype), **kw, algo="winograd")
    check_close(y, expected, dtype=dtype, k=c * kernel[0] * kernel[1], algo="winograd", case=f"fwd isa={isa}")
    dw = F.conv2d_grad_weight(x.astype(dtype), gy.astype(dtype), wt.shape, **kw, algo="winograd")
    check_close(dw, ref.conv2d_grad_weight(x, gy, wt.shape, stride, padding, dilation, 1, mode), dtype=dtype,
                k=max(1, gy.size // k), algo="winograd", case=f"bwd_weight isa={isa}")
    if mode == "zeros":
        dx = F.conv2d_grad_input(gy.astype(dtype), wt.astype(dtype), x.shape, stride=stride, padding=padding,
                                 dilation=dilation, algo="winograd")
        check_close(dx, ref.conv2d_grad_input(gy, wt, x.shape, stride, padding, dilation, 1), dtype=dtype,
                    k=k * 9, algo="winograd", case=f"bwd_data isa={isa}")
    if n and dtype == np.float32:  # Winograd's rounding, not im2col's
        assert not np.array_equal(y, F.conv2d(x.astype(dtype), wt.astype(dtype), b.astype(dtype), **kw, algo="im2col"))


def test_phases_auto_and_verbose():
    core = pyconv._core
    for direction in (0, 2):  # dilated 3x3 64 -> 64 at 56x56: four 28x28 phases per image
        assert core.conv2d_choose_algo((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, 0,
                                       direction) == "winograd"
    # AlexNet conv1: 48 phase channels, 55x55 outputs
    for direction in (0, 1, 2):
        assert core.conv2d_choose_algo((8, 3, 224, 224), (64, 3, 11, 11), (4, 4), (2, 2, 2, 2), (1, 1), 1, 0,
                                       direction) == "winograd"
    # the input gradient over phases needs zero padding
    assert core.conv2d_choose_algo((8, 3, 224, 224), (64, 3, 11, 11), (4, 4), (2, 2, 2, 2), (1, 1), 1, 1, 1) != \
        "winograd"
    code = ("import numpy as np, pyconv.functional as F\n"
            "x = np.ones((1, 3, 35, 35), 'f4'); w = np.ones((4, 3, 11, 11), 'f4')\n"
            "y = F.conv2d(x, w, stride=4, algo='winograd')\n"
            "F.conv2d_grad_input(y, w, x.shape, stride=4, algo='winograd')\n"
            "F.conv2d(x, w, stride=4, padding=1, padding_mode='reflect', algo='winograd')\n"
            "F.conv2d_grad_input(y, w, x.shape, stride=4, padding=1, padding_mode='reflect', algo='winograd')\n")
    env = dict(os.environ, PYCONV_VERBOSE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "conv2d_fwd_winograd_f4x4" in proc.stderr and "(phases)" in proc.stderr
    assert "(winograd not applicable)" in proc.stderr


INELIGIBLE = [
    ("fwd", dict(stride=2, padding=1), (3, 3)),        # 2x2 per phase
    ("fwd", dict(stride=2, padding=1), (7, 7)),        # 4x4 per phase
    ("fwd", dict(dilation=2, padding=2, stride=2), (3, 3)),
    ("fwd", dict(dilation=2, padding=2, groups=2), (3, 3)),
    ("bwd_data", dict(dilation=2, padding=2, padding_mode="reflect"), (3, 3)),
    ("fwd", dict(padding=2), (5, 5)),
    ("fwd", dict(padding=(0, 1)), (1, 3)),
    ("bwd_data", dict(padding=1, padding_mode="reflect"), (3, 3)),
    ("bwd_weight", dict(stride=2, padding=1), (3, 3)),
    ("bwd_weight", dict(dilation=2, padding=2, groups=2), (3, 3)),
]


@pytest.mark.parametrize("direction,kw,kernel", INELIGIBLE, ids=lambda v: str(v))
def test_falls_back_to_im2col(direction, kw, kernel):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 4, 11, 10)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 4 // kw.get("groups", 1)) + kernel).astype(np.float32)
    gy = rng.uniform(-1, 1, F.conv2d_output_shape(x.shape, w.shape, kw.get("stride", 1), kw["padding"],
                                                  kw.get("dilation", 1))).astype(np.float32)
    run = {"fwd": lambda a: F.conv2d(x, w, **kw, algo=a),
           "bwd_data": lambda a: F.conv2d_grad_input(gy, w, x.shape, **kw, algo=a),
           "bwd_weight": lambda a: F.conv2d_grad_weight(x, gy, w.shape, **kw, algo=a)}[direction]
    np.testing.assert_array_equal(run("winograd"), run("im2col"))


def test_verbose_names_what_ran():
    code = ("import numpy as np, pyconv.functional as F\n"
            "x = np.ones((1, 4, 9, 9), 'f4'); w = np.ones((4, 4, 3, 3), 'f4')\n"
            "y = F.conv2d(x, w, padding=1, algo='winograd')\n"
            "F.conv2d_grad_input(y, w, x.shape, padding=1, algo='winograd')\n"
            "F.conv2d_grad_weight(x, y, w.shape, padding=1, algo='winograd')\n"
            "F.conv2d(x, w, stride=2, algo='winograd')\n")
    env = dict(os.environ, PYCONV_VERBOSE="1", PYCONV_MAX_ISA="scalar")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "conv2d -> conv2d_fwd_winograd_f4x4_scalar" in err
    assert "conv2d -> conv2d_bwd_data_winograd_f4x4_scalar" in err
    assert "conv2d -> conv2d_bwd_weight_winograd_f4x4_scalar" in err
    assert err.count("(winograd not applicable)") == 1, err


def test_kernels_listed():
    names = set(pyconv.kernels())
    for isa in [i for i in pyconv.compiled_isas() if i in pyconv._runtime.FLOAT_ISAS]:
        for fam in ("filter", "input", "dy", "output", "wout"):
            assert f"conv2d_winograd_{fam}_{isa}" in names


def test_auto_uses_winograd_only_where_it_applies():
    core = pyconv._core
    for direction in (0, 1, 2):
        for stride, dil, kernel in [(2, 1, 3), (2, 2, 3), (1, 1, 5)]:
            got = core.conv2d_choose_algo((8, 256, 56, 56), (256, 256, kernel, kernel), (stride, stride),
                                          (1, 1, 1, 1), (dil, dil), 1, 0, direction)
            assert got != "winograd"
    for direction in (0, 1, 2):
        assert core.conv2d_choose_algo((8, 256, 56, 56), (256, 256, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0,
                                       direction) == "winograd"
    # the weight gradient's GEMM columns are input channels: few of them stay off Winograd
    assert core.conv2d_choose_algo((8, 8, 32, 32), (64, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, 2) != "winograd"
    # ... 32 of them from 64 tiles (small planes too), 16 from 192 tiles (benchmarks/RESULTS.md, "Algorithm selection")
    wgrad = lambda x, w: core.conv2d_choose_algo(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, 2)  # noqa: E731
    assert wgrad((64, 32, 8, 8), (32, 32, 3, 3)) == "winograd"
    assert wgrad((8, 32, 7, 7), (32, 32, 3, 3)) != "winograd"      # 32 tiles
    assert wgrad((1, 16, 56, 56), (64, 16, 3, 3)) == "winograd"    # 196 tiles
    assert wgrad((8, 16, 14, 14), (32, 16, 3, 3)) != "winograd"    # 128 tiles


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="page faults are meaningless under AddressSanitizer's allocator")
def test_large_buffers_are_reused_across_calls():
    """The transformed data (here 36 x 512 x 512 sums, 38 MB, above glibc's largest mmap threshold)
    is kept by the calling thread: repeated calls do not fault their pages in again."""
    code = ("import resource, numpy as np, pyconv.functional as F\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.standard_normal((1, 512, 12, 12)).astype('f4')\n"
            "dy = rng.standard_normal((1, 512, 12, 12)).astype('f4')\n"
            "run = lambda: F.conv2d_grad_weight(x, dy, (512, 512, 3, 3), padding=1, algo='winograd')\n"
            "run()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(3): run()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) < 1000  # 3 x 9400 pages when allocated per call


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DT_IDS)
def test_weight_gradient_in_chunks_of_units(dtype):
    """Many units of tiles and a small M: 8 chunks summed separately, then in order."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((48, 64, 16, 15)).astype(dtype)   # 768 tiles in 8 units
    gy = rng.standard_normal((48, 48, 16, 15)).astype(dtype)
    exact = F.conv2d_grad_weight(x.astype(np.float64), gy.astype(np.float64), (48, 64, 3, 3), padding=1,
                                 algo="im2col")
    dw = F.conv2d_grad_weight(x, gy, (48, 64, 3, 3), padding=1, algo="winograd")
    assert np.abs(dw - exact).max() <= (2e-5 if dtype == np.float32 else 1e-13) * np.abs(exact).max()
