"""conv2d fwd / bwd_data / bwd_weight / bias gradient against the reference."""

import zlib

import numpy as np
import pytest

import cases
import torch_oracles as oracle
from pyconv import _reference as ref
from conftest import check_close, conv_algo_run

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DTYPES = cases.DTYPES
DT_IDS = ["f32", "f64"]


def _case_id(c):
    return c.id


# --------------------------------------------------------------------------
# data + cached float64 references (data is float32-representable, so the
# same reference serves float32 and float64 runs)
# --------------------------------------------------------------------------
_DATA = {}


def data(case):
    if case.id not in _DATA:
        rng = np.random.default_rng(zlib.crc32(case.id.encode()))
        x = rng.uniform(-1, 1, case.input_shape).astype(np.float32)
        w = rng.uniform(-1, 1, case.weight_shape).astype(np.float32)
        b = rng.uniform(-1, 1, case.k).astype(np.float32)
        gy = rng.uniform(-1, 1, case.output_shape).astype(np.float32)
        s, p, d, g = case.args
        refs = {
            "fwd": ref.conv2d(x, w, b, s, p, d, g, case.mode),
            "bwd_data": ref.conv2d_grad_input(gy, w, case.input_shape, s, p, d, g, case.mode),
            "bwd_weight": ref.conv2d_grad_weight(x, gy, case.weight_shape, s, p, d, g, case.mode),
        }
        _DATA[case.id] = (x, w, b, gy, refs)
    return _DATA[case.id]


def call(direction, case, x, w, b, gy, algo, mode=None):
    s, p, d, g = case.args
    kw = dict(stride=s, padding=p, dilation=d, groups=g,
              padding_mode=case.mode if mode is None else mode, algo=algo)
    if direction == "fwd":
        return F.conv2d(x, w, b, **kw)
    if direction == "bwd_data":
        return F.conv2d_grad_input(gy, w, tuple(x.shape), **kw)
    return F.conv2d_grad_weight(x, gy, tuple(w.shape), **kw)


def ran(algo, direction, case):
    return conv_algo_run(algo, direction, case.input_shape, case.weight_shape, *case.args, case.mode)


def cast(dtype, *arrays):
    return [None if a is None else a.astype(dtype) for a in arrays]


# --------------------------------------------------------------------------
# the sweep: every geometry x algo x direction x dtype x ISA
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("direction", cases.DIRECTIONS)
@pytest.mark.parametrize("algo", cases.ALGOS)
@pytest.mark.parametrize("case", cases.ALL_GEOMETRIES, ids=_case_id)
def test_conv_sweep(case, algo, direction, dtype, isa, poison):
    x, w, b, gy, refs = data(case)
    x, w, b, gy = cast(dtype, x, w, b, gy)
    before = [a.copy() for a in (x, w, b, gy)]
    got = call(direction, case, x, w, b, gy, algo)
    check_close(got, refs[direction], dtype=dtype, k=case.reduction_length(direction),
                case=f"{case.id} algo={algo} {direction} isa={isa}", algo=ran(algo, direction, case))
    for a, a0 in zip((x, w, b, gy), before):
        np.testing.assert_array_equal(a, a0, err_msg="input modified")


def test_covering_design_covers_all_feasible_pairs():
    rows = cases.PAIRWISE_ROWS
    names = list(cases.FACTORS)
    infeasible = set(cases.PAIRWISE_INFEASIBLE)
    for i, a in enumerate(names):
        for bname in names[i + 1:]:
            for va in cases.FACTORS[a]:
                for vb in cases.FACTORS[bname]:
                    hit = any(r[a] == va and r[bname] == vb for r in rows)
                    assert hit or (a, va, bname, vb) in infeasible, (a, va, bname, vb)
    assert all(c.valid() for c in cases.ALL_GEOMETRIES)
    # every infeasible pair really is infeasible for torch-valid geometries
    assert {(p[0], p[2]) for p in infeasible} <= {("stride", "padding"), ("groups", "channels")}


# --------------------------------------------------------------------------
# against torch on a subset
# --------------------------------------------------------------------------
TORCH_SUBSET = cases.PAIRWISE + cases.EDGE_GEOM


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", TORCH_SUBSET, ids=_case_id)
def test_conv_against_torch(case, dtype):
    pytest.importorskip("torch")
    x, w, b, gy, _ = data(case)
    s, p, d, g = case.args
    ty, tgx, tgw, tgb = oracle.torch_conv2d(x, w, b, gy, s, p, d, g, case.mode)
    x, w, b, gy = cast(dtype, x, w, b, gy)
    for direction, expected in (("fwd", ty), ("bwd_data", tgx), ("bwd_weight", tgw)):
        got = call(direction, case, x, w, b, gy, "auto")
        check_close(got, expected, dtype=dtype, k=case.reduction_length(direction),
                    case=f"{case.id} {direction} vs torch")
    check_close(F.conv2d_grad_bias(gy), tgb, dtype=dtype, k=gy.size // case.k,
                case=f"{case.id} grad_bias vs torch")


# --------------------------------------------------------------------------
# smaller behaviours
# --------------------------------------------------------------------------
SMALL = [c for c in cases.EDGE if c.n * c.c * c.h * c.w < 2000][:6] + cases.PAIRWISE[:6]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", SMALL, ids=_case_id)
def test_conv_without_bias_and_grad_bias(case, dtype, poison):
    x, w, b, gy, refs = data(case)
    x, w, b, gy = cast(dtype, x, w, b, gy)
    s, p, d, g = case.args
    got = F.conv2d(x, w, None, s, p, d, g, padding_mode=case.mode)
    expected = refs["fwd"] - b.astype(np.float64)[None, :, None, None]
    check_close(got, expected, dtype=dtype, k=case.reduction_length("fwd"), scale=2, case=case.id)
    got = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g, padding_mode=case.mode)
    check_close(got, expected, dtype=dtype, k=case.reduction_length("fwd"), scale=2, case=case.id)
    check_close(F.conv2d_grad_bias(gy), ref.conv2d_grad_bias(gy), dtype=dtype,
                k=gy.size // case.k, case=case.id)


@pytest.mark.parametrize("case", SMALL[:4] + cases.PAIRWISE[6:10], ids=_case_id)
def test_auto_picks_one_of_the_algorithms(case):
    x, w, b, gy, _ = data(case)
    for direction in cases.DIRECTIONS:
        auto = call(direction, case, x, w, b, gy, "auto")
        picked = ran("auto", direction, case)
        assert picked in ("direct", "im2col", "winograd"), picked
        assert np.array_equal(auto, call(direction, case, x, w, b, gy, picked)), (case.id, direction, picked)
    assert tuple(pyconv.functional.CONV_ALGORITHMS) == ("auto", "direct", "im2col", "winograd")
    assert tuple(pyconv.functional.PADDING_MODES) == ("zeros", "reflect", "replicate", "circular")


def test_output_shape_function():
    for case in cases.ALL_GEOMETRIES:
        s, p, d, _ = case.args
        got = F.conv2d_output_shape(case.input_shape, case.weight_shape, s, p, d)
        assert tuple(got) == case.output_shape, case.id
        got3 = F.conv2d_output_shape(case.input_shape[1:], case.weight_shape, stride=s, padding=p, dilation=d)
        assert tuple(got3) == case.output_shape[1:], case.id
        assert all(type(v) is int for v in got), got


# --------------------------------------------------------------------------
# memory layouts: strided, negative strides, Fortran order, channels-last
# --------------------------------------------------------------------------
def layout(a, kind):
    if a is None:
        return None
    if kind == "strided":
        big = np.full(tuple(2 * n + 1 for n in a.shape), np.nan, dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "negative":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "channels_last" and a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if kind == "unaligned":
        buf = np.zeros(a.nbytes + 1, np.uint8)
        view = buf[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        assert not view.flags.aligned or a.size == 0
        return view
    if kind == "readonly":
        view = a.copy()
        view.flags.writeable = False
        return view
    return a[::-1].copy()[::-1] if a.ndim == 1 else a.T.copy().T


LAYOUT_CASES = [c for c in cases.ALL_GEOMETRIES
                if c.groups > 1 and c.mode != "zeros" and c.n > 1][:3] + [cases.EDGE[0]]


@pytest.mark.parametrize("kind", ["strided", "negative", "fortran", "channels_last", "unaligned", "readonly"])
@pytest.mark.parametrize("direction", cases.DIRECTIONS)
@pytest.mark.parametrize("algo", cases.ALGOS)
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=_case_id)
def test_noncontiguous_equals_contiguous(case, algo, direction, kind):
    x, w, b, gy, _ = data(case)
    x, w, b, gy = cast(np.float64, x, w, b, gy)
    expected = call(direction, case, x, w, b, gy, algo)
    args = [layout(a, kind) for a in (x, w, b, gy)]
    for a, a0 in zip(args, (x, w, b, gy)):
        np.testing.assert_array_equal(a, a0)   # same values, different memory
    got = call(direction, case, *args, algo)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected, err_msg=f"{case.id} {kind}")
    if kind == "strided":  # gaps of the big buffers are NaN and must stay unread
        assert not np.isnan(got).any()


# --------------------------------------------------------------------------
# unbatched 3-D, empty batch, NaN / Inf
# --------------------------------------------------------------------------
@pytest.mark.parametrize("algo", cases.ALGOS)
@pytest.mark.parametrize("case", SMALL[:3] + cases.PAIRWISE[:3], ids=_case_id)
def test_unbatched_3d(case, algo, poison):
    x, w, b, gy, _ = data(case)
    x, w, b, gy = cast(np.float64, x[:1], w, b, gy[:1])
    s, p, d, g = case.args
    kw = dict(padding_mode=case.mode, algo=algo)
    y = F.conv2d(x[0], w, b, s, p, d, g, **kw)
    check_close(y, ref.conv2d(x, w, b, s, p, d, g, case.mode)[0], dtype=np.float64,
                k=case.reduction_length("fwd"), case=case.id)
    gx = F.conv2d_grad_input(gy[0], w, x.shape[1:], s, p, d, g, **kw)
    check_close(gx, ref.conv2d_grad_input(gy, w, x.shape, s, p, d, g, case.mode)[0],
                dtype=np.float64, k=case.reduction_length("bwd_data"), case=case.id)
    gw = F.conv2d_grad_weight(x[0], gy[0], w.shape, s, p, d, g, **kw)
    check_close(gw, ref.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, case.mode),
                dtype=np.float64, k=gy[0].size, case=case.id)
    gb = F.conv2d_grad_bias(gy[0])
    check_close(gb, ref.conv2d_grad_bias(gy[0]), dtype=np.float64, k=gy[0].size, case=case.id)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("algo", cases.ALGOS)
@pytest.mark.parametrize("mode", cases.MODES)
def test_empty_batch(mode, algo, dtype, poison):
    case = cases.ConvCase(3, 4, 6, 7, 6, 3, 3, 1, 1, 1, 2, mode)
    _, c, h, wd = case.input_shape
    _, k, oh, ow = case.output_shape
    x = np.zeros((0, c, h, wd), dtype)
    w = np.ones(case.weight_shape, dtype)
    b = np.ones(k, dtype)
    gy = np.zeros((0, k, oh, ow), dtype)
    s, p, d, g = case.args
    kw = dict(padding_mode=mode, algo=algo)
    y = F.conv2d(x, w, b, s, p, d, g, **kw)
    assert y.shape == (0, k, oh, ow) and y.dtype == dtype
    gx = F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw)
    assert gx.shape == x.shape and gx.dtype == dtype
    gw = F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw)
    assert gw.shape == w.shape and gw.dtype == dtype
    np.testing.assert_array_equal(gw, np.zeros(w.shape))
    gb = F.conv2d_grad_bias(gy)
    assert gb.shape == (k,) and gb.dtype == dtype
    np.testing.assert_array_equal(gb, np.zeros(k))
    assert tuple(F.conv2d_output_shape(x.shape, w.shape, s, p, d)) == (0, k, oh, ow)


NAN_CASES = [cases.ConvCase(2, 3, 7, 8, 4, 3, 3, 1, 1, 1, 1, m) for m in cases.MODES] + [
    cases.ConvCase(1, 4, 9, 9, 4, 3, 2, 2, (1, 0), (2, 1), 2, "reflect"),
    cases.ConvCase(1, 17, 6, 9, 9, 1, 1, 1, 0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("direction", cases.DIRECTIONS)
@pytest.mark.parametrize("algo", cases.ALGOS)
@pytest.mark.parametrize("case", NAN_CASES, ids=_case_id)
def test_nan_inf_propagate(case, algo, direction, dtype, poison):
    x, w, b, gy, _ = data(case)
    x, w, b, gy = x.copy(), w.copy(), b.copy(), gy.copy()
    # specials go where they are not multiplied by implicit zero padding
    target = gy if direction == "bwd_data" else x
    target[0, 0, 1, 1] = np.nan          # odd rows: read even with stride 2
    target[-1, 1, 3, 2] = np.inf
    target[0, -1, 1, 3] = -np.inf
    s, p, d, g = case.args
    m = case.mode
    expected = {
        "fwd": lambda: ref.conv2d(x, w, b, s, p, d, g, m),
        "bwd_data": lambda: ref.conv2d_grad_input(gy, w, x.shape, s, p, d, g, m),
        "bwd_weight": lambda: ref.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, m),
    }[direction]()
    assert not np.isfinite(expected).all()          # the specials reach the output
    x, w, b, gy = cast(dtype, x, w, b, gy)
    got = call(direction, case, x, w, b, gy, algo)
    check_close(got, expected, dtype=dtype, k=case.reduction_length(direction),
                case=f"{case.id} {direction}", algo=ran(algo, direction, case))


@pytest.mark.parametrize("algo", cases.ALGOS)
def test_zero_stride_broadcast_inputs(algo):
    """np.broadcast_to views (zero strides, read-only) equal contiguous copies."""
    case = cases.ConvCase(2, 4, 7, 9, 6, 3, 3, 1, 1, 1, 2, "replicate")
    x, w, b, gy, _ = data(case)
    xb = np.broadcast_to(x[:1].astype(np.float64), x.shape)
    wb = np.broadcast_to(w[:, :, :1, :].astype(np.float64), w.shape)
    bb = np.broadcast_to(np.float64(0.5), b.shape)
    gyb = np.broadcast_to(gy[:, :1].astype(np.float64), gy.shape)
    c = [np.ascontiguousarray(a) for a in (xb, wb, bb, gyb)]
    for direction in cases.DIRECTIONS:
        np.testing.assert_array_equal(call(direction, case, xb, wb, bb, gyb, algo),
                                      call(direction, case, *c, algo), err_msg=direction)
    np.testing.assert_array_equal(F.conv2d_grad_bias(gyb), F.conv2d_grad_bias(c[3]))


@pytest.mark.parametrize("algo", cases.ALGOS)
def test_list_and_tuple_arguments_agree(algo):
    case = cases.EDGE_GEOM[-3]          # stride (2,1), padding (2,1), dilation (1,2), groups 4
    x, w, b, gy, refs = data(case)
    s, p, d, g = case.args
    kw = dict(padding_mode=case.mode, algo=algo)
    a = F.conv2d(x, w, b, tuple(s), tuple(p), tuple(d), g, **kw)
    bl = F.conv2d(x, w, b, list(s), list(p), list(d), g, **kw)
    np.testing.assert_array_equal(a, bl)
    gl = F.conv2d_grad_input(gy, w, list(x.shape), list(s), list(p), list(d), g, **kw)
    np.testing.assert_array_equal(gl, F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw))
    gw = F.conv2d_grad_weight(x, gy, list(w.shape), list(s), list(p), list(d), g, **kw)
    np.testing.assert_array_equal(gw, F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw))
    # square int == (int, int)
    np.testing.assert_array_equal(F.conv2d(x, w, b, 2, 1, 2, g, **kw),
                                  F.conv2d(x, w, b, (2, 2), [1, 1], (2, 2), g, **kw))
