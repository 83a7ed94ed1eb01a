"""The blocked-layout (NCHW16c) conv forward, _core.conv2d_fwd_nchwc, against the float64
reference for both input and output layouts, every ISA, thread counts and poisoned outputs; and
the inference graph that keeps activations blocked between its convs (Plan.blocked)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

import pyconv
from pyconv import _core
from pyconv import functional as F
from pyconv.inference import CompiledGraph
from pyconv.inference.graph import Graph, Node
from pyconv.inference.nchwc import blocked_shape, from_blocked, pack_bias, pack_weight, to_blocked

INF = float("inf")

# (n, c, k, h, w, kernel, stride, pad (t, b, l, r), dilation, depthwise)
GEOMS = [
    (1, 3, 32, 15, 17, 3, 2, (1, 1, 1, 1), 1, False),   # a first layer: NCHW input, 3 channels
    (2, 24, 144, 9, 9, 1, 1, (0, 0, 0, 0), 1, False),   # 1x1 expansion: the plane runs as one row
    (1, 40, 50, 7, 7, 3, 1, (1, 1, 1, 1), 1, False),    # partial blocks in and out
    (3, 17, 33, 5, 6, 3, 1, (0, 0, 0, 0), 1, False),
    (1, 64, 130, 14, 14, 1, 2, (0, 0, 0, 0), 1, False),  # strided 1x1 (ResNet's downsample)
    (1, 16, 48, 30, 31, 3, 2, (0, 2, 1, 0), 2, False),   # asymmetric pads, dilation
    (2, 16, 16, 61, 3, 1, 1, (0, 0, 0, 0), 1, False),    # a plane longer than one work chunk
    (1, 5, 20, 6, 40, 7, 1, (3, 3, 3, 3), 1, False),     # 7x7, rows of several tiles and edges
    (2, 96, 96, 13, 11, 3, 2, (1, 1, 1, 1), 1, True),
    (1, 20, 20, 7, 7, 5, 1, (2, 2, 2, 2), 1, True),
    (1, 36, 36, 60, 57, 3, 1, (1, 1, 1, 1), 1, True),    # rows of several tiles
    (1, 24, 24, 9, 9, 3, 1, (0, 1, 2, 0), 2, True),
    (1, 16, 16, 5, 1, 3, 1, (1, 1, 1, 1), 1, True),     # one-pixel rows: padding both sides
    (1, 16, 16, 4, 20, 3, 1, (0, 0, 9, 9), 1, True),    # padding wider than an edge tile
    (2, 32, 32, 9, 30, 5, 2, (2, 2, 2, 2), 1, True),    # stride 2, edge tiles reaching inward
]


def _gid(g):
    n, c, k, h, w, r, s, p, d, dw = g
    return f"{n}x{c}x{h}x{w}->{k} {r}x{r}/s{s} p{p} d{d}{' dw' if dw else ''}"


def _case(g, dt, seed=0):
    n, c, k, h, w, r, s, p, d, dw = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dt)
    wt = rng.standard_normal((k, 1 if dw else c, r, r)).astype(dt)
    b = rng.standard_normal(k).astype(dt)
    ref = F.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), stride=s,
                   padding=(p[0], p[2]) if p[0] == p[1] and p[2] == p[3] else 0, dilation=d, groups=c if dw else 1) \
        if p[0] == p[1] and p[2] == p[3] else \
        F.conv2d(np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[1]), (p[2], p[3]))), wt.astype(np.float64),
                 b.astype(np.float64), stride=s, dilation=d, groups=c if dw else 1)
    res = rng.standard_normal(ref.shape).astype(dt)
    return x, wt, b, ref, res


def _run(x, wt, b, g, x_blocked, y_blocked, res=None, lo=-INF, hi=INF, out=None):
    n, c, k, h, w, r, s, p, d, dw = g
    xin = to_blocked(x) if x_blocked else x
    rin = None if res is None else (to_blocked(res) if y_blocked else res)
    y = _core.conv2d_fwd_nchwc(xin, c, pack_weight(wt, dw), k, pack_bias(b, k, x.dtype), (s, s), p, (d, d),
                               y_blocked, rin, lo, hi, out=out)
    return from_blocked(y, k) if y_blocked else y


LAYOUTS = {"nchw-nchw": (False, False), "nchw-blocked": (False, True), "blocked-nchw": (True, False),
           "blocked-blocked": (True, True)}
# the depthwise kernel reads blocked input only
CASES = [pytest.param(g, LAYOUTS[lay], id=f"{_gid(g)} {lay}") for g in GEOMS for lay in LAYOUTS
         if LAYOUTS[lay][0] or not g[-1]]


@pytest.mark.parametrize("g,layouts", CASES)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_against_reference(g, dt, layouts, isa, poison):
    x, wt, b, ref, res = _case(g, dt)
    x0 = x.copy()
    y = _run(x, wt, b, g, *layouts, res=res, lo=-1.0, hi=2.5)
    want = np.clip(ref + res, -1.0, 2.5)
    tol = 2e-6 if dt == np.float32 else 1e-13
    assert y.shape == want.shape and y.dtype == dt
    assert np.abs(y - want).max() <= tol * max(1.0, np.abs(ref).max()), (_gid(g), isa)
    assert np.array_equal(x, x0)


@st.composite
def _geometry(draw):
    dw = draw(st.booleans())
    c = draw(st.integers(1, 40))
    k = c if dw else draw(st.integers(1, 40))
    r, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 70))
    assume(h + pad[0] + pad[1] >= d * (r - 1) + 1 and w + pad[2] + pad[3] >= d * (r - 1) + 1)
    return (draw(st.integers(1, 2)), c, k, h, w, r, s, pad, d, dw)


@settings(max_examples=examples(60))
@given(g=_geometry(), x_blocked=st.booleans(), y_blocked=st.booleans(), double=st.booleans())
def test_drawn_geometries_against_reference(g, x_blocked, y_blocked, double):
    """Row widths 1-70 reach every tiling of a row (edge tiles, interior tiles of each width, the
    3-wide kernels at strides 1 and 2, rows narrower than a tile), with asymmetric padding."""
    dt = np.float64 if double else np.float32
    x_blocked = x_blocked or g[-1]  # the depthwise kernel reads blocked input only
    x, wt, b, ref, res = _case(g, dt)
    y = _run(x, wt, b, g, x_blocked, y_blocked, res=res, lo=-1.0, hi=2.5)
    tol = 2e-6 if dt == np.float32 else 1e-13
    assert np.abs(y - np.clip(ref + res, -1.0, 2.5)).max() <= tol * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("g", [GEOMS[1], GEOMS[6], GEOMS[8]], ids=_gid)
def test_same_bits_at_every_thread_count_and_for_each_image(g):
    x, wt, b, _, res = _case(g, np.float32, seed=3)
    prev = pyconv.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            pyconv.set_num_threads(t)
            outs.append(_run(x, wt, b, g, True, True, res=res, lo=0.0))
    finally:
        pyconv.set_num_threads(prev)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    one = np.concatenate([_run(x[i:i + 1], wt, b, g, True, True, res=res[i:i + 1], lo=0.0) for i in range(len(x))])
    np.testing.assert_array_equal(one, outs[0])


def test_nan_stays_in_its_pixel_and_padded_lanes_are_never_read():
    g = GEOMS[2]  # 40 input channels: the last block has 8 padded lanes
    x, wt, b, _, _ = _case(g, np.float32)
    xb = to_blocked(x)
    xb[:, -1, :, :, 8:] = np.nan  # lanes past C: garbage must not reach a real channel
    n, c, k, h, w, r, s, p, d, dw = g
    y = _core.conv2d_fwd_nchwc(xb, c, pack_weight(wt), k, pack_bias(b, k), (s, s), p, (d, d), False)
    assert np.isfinite(y).all()
    xb[0, 0, 3, 3, 0] = np.nan
    y = _core.conv2d_fwd_nchwc(xb, c, pack_weight(wt), k, pack_bias(b, k), (s, s), p, (d, d), False, None, 0.0, 6.0)
    assert np.isnan(y[0, :, 2:5, 2:5]).all() and np.isnan(y).sum() == k * 9


def test_out_is_written_in_place():
    g = GEOMS[1]
    x, wt, b, ref, _ = _case(g, np.float32)
    n, c, k = g[:3]
    out = np.empty(blocked_shape(ref.shape), np.float32)
    y = _core.conv2d_fwd_nchwc(to_blocked(x), c, pack_weight(wt), k, pack_bias(b, k), (1, 1), (0, 0, 0, 0), (1, 1),
                               True, out=out)
    assert np.shares_memory(y, out)
    np.testing.assert_allclose(from_blocked(out, k), ref, rtol=1e-5, atol=1e-5)


def _bad_args():
    x = np.zeros((1, 20, 5, 5), np.float32)
    xb = to_blocked(x)
    w = pack_weight(np.zeros((24, 20, 3, 3), np.float32))
    wd = pack_weight(np.zeros((20, 1, 3, 3), np.float32), depthwise=True)
    b = pack_bias(None, 24)
    ok = dict(x=xb, channels=20, w=w, out_channels=24, b=b, stride=(1, 1), pad=(1, 1, 1, 1), dilation=(1, 1),
              y_blocked=True)
    return ok, [
        (dict(channels=40), "blocked input"),
        (dict(x=x, channels=21), "channels"),
        (dict(x=x.astype(np.float64)), "dtype"),
        (dict(w=w[:, :, :, :, :, :8]), "packed weight"),
        (dict(out_channels=40), "packed weight"),
        (dict(b=np.zeros(24, np.float32)), "bias"),
        (dict(w=wd, out_channels=20, x=x), "blocked input"),
        (dict(w=wd, out_channels=24), "depthwise"),
        (dict(stride=(0, 1)), "stride"),
        (dict(pad=(-1, 0, 0, 0)), "padding"),
        (dict(x=to_blocked(np.zeros((1, 20, 2, 2), np.float32)), pad=(0, 0, 0, 0)), "larger than"),
        (dict(residual=np.zeros((1, 24, 5, 5), np.float32)), "residual"),
        (dict(lo=1.0, hi=0.0), "lo <= hi"),
        (dict(out=np.zeros((1, 2, 5, 5, 16), np.float64)), "out"),
        (dict(out=xb), "out"),
        (dict(channels=0), "channels"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_args()[1])))
def test_bad_arguments_are_named(case):
    ok, cases = _bad_args()
    bad, match = cases[case]
    kw = ok | bad
    args = [kw.pop(k) for k in ("x", "channels", "w", "out_channels", "b", "stride", "pad", "dilation", "y_blocked")]
    with pytest.raises((ValueError, TypeError), match=match):
        _core.conv2d_fwd_nchwc(*args, **kw)


# (n, c, expanded, h, w, dw kernel, stride, pad, dilation, input blocked)
EXPAND = [(1, 24, 144, 16, 15, 3, 1, 1, 1, True), (2, 16, 96, 17, 18, 3, 2, 1, 1, True),
          (1, 3, 40, 23, 21, 5, 2, 4, 2, False), (2, 40, 24, 9, 14, 3, 1, 1, 1, False),
          (3, 20, 72, 33, 5, 3, 1, 0, 1, True), (1, 8, 48, 40, 16, 7, 1, 3, 1, True)]


def _expand_case(g, dt, seed=0):
    n, c, e, h, w, r, s, p, d, xb = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dt)
    we, be = (rng.standard_normal((e, c, 1, 1)) * 0.3).astype(dt), rng.standard_normal(e).astype(dt)
    wd, bd = rng.standard_normal((e, 1, r, r)).astype(dt), rng.standard_normal(e).astype(dt)
    f = np.float64
    mid = np.clip(F.conv2d(x.astype(f), we.astype(f), be.astype(f)), 0, 6)
    ref = F.conv2d(mid, wd.astype(f), bd.astype(f), stride=s, padding=p, dilation=d, groups=e)
    res = rng.standard_normal(ref.shape).astype(dt)
    args = (to_blocked(x) if xb else x, c, pack_weight(we), e, pack_bias(be, e, dt), 0.0, 6.0,
            pack_weight(wd, depthwise=True), pack_bias(bd, e, dt), (s, s), (p,) * 4, (d, d))
    return x, args, ref, res


@pytest.mark.parametrize("g", EXPAND, ids=lambda g: "x".join(map(str, g[:5])) + f" dw{g[5]}/s{g[6]} d{g[8]}")
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("y_blocked", [False, True])
def test_expansion_fused_into_depthwise(g, dt, y_blocked, isa, poison):
    x, args, ref, res = _expand_case(g, dt)
    x0 = x.copy()
    e = g[2]
    y = _core.conv2d_fwd_nchwc_expand_dw(*args, y_blocked, to_blocked(res) if y_blocked else res, -2.0, 4.0)
    y = from_blocked(y, e) if y_blocked else y
    want = np.clip(ref + res, -2.0, 4.0)
    tol = 4e-6 if dt == np.float32 else 1e-13
    assert np.abs(y - want).max() <= tol * max(1.0, np.abs(ref).max())
    assert np.array_equal(x, x0)


def test_expansion_fused_same_bits_at_every_thread_count():
    x, args, _, _ = _expand_case(EXPAND[1], np.float32, seed=2)
    prev = pyconv.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            pyconv.set_num_threads(t)
            outs.append(_core.conv2d_fwd_nchwc_expand_dw(*args, True))
    finally:
        pyconv.set_num_threads(prev)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    # and equal to the two convs run one after the other
    xin, c, pe, e, pbe, lo_e, hi_e, pd, pbd, st, pads, dil = args
    mid = _core.conv2d_fwd_nchwc(xin, c, pe, e, pbe, (1, 1), (0, 0, 0, 0), (1, 1), True, None, lo_e, hi_e)
    np.testing.assert_array_equal(_core.conv2d_fwd_nchwc(mid, e, pd, e, pbd, st, pads, dil, True), outs[0])


@pytest.mark.parametrize("bad,match", [
    (dict(w_expand=pack_weight(np.zeros((96, 16, 3, 3), np.float32))), "1x1"),
    (dict(w_dw=pack_weight(np.zeros((96, 96, 1, 1), np.float32))), "depthwise packed weight"),
    (dict(w_dw=pack_weight(np.zeros((64, 1, 3, 3), np.float32), depthwise=True)), "packed weight"),
    (dict(lo_expand=1.0, hi_expand=0.0), "lo <= hi"),
    (dict(channels=17), "channels"),
])
def test_expansion_fused_bad_arguments_are_named(bad, match):
    _, args, _, _ = _expand_case(EXPAND[1], np.float32)
    names = ["x", "channels", "w_expand", "expanded", "b_expand", "lo_expand", "hi_expand", "w_dw", "b_dw", "stride",
             "pad", "dilation"]
    kw = dict(zip(names, args)) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        _core.conv2d_fwd_nchwc_expand_dw(*[kw[k] for k in names], True)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("y_blocked", [False, True])
def test_global_average_pool_of_blocked_input(dt, y_blocked, isa, poison):
    x = np.random.default_rng(4).standard_normal((3, 40, 7, 9)).astype(dt)
    y = _core.global_avg_pool2d_nchwc(to_blocked(x), 40, y_blocked)
    y = from_blocked(y, 40) if y_blocked else y
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-6 if dt == np.float32 else 1e-13)
    with pytest.raises(ValueError, match="blocked input"):
        _core.global_avg_pool2d_nchwc(to_blocked(x), 60, y_blocked)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 1000, 13, 13), (3, 5, 7, 9), (1, 3, 1, 1), (2, 4, 8, 8), (1, 7, 1, 70)])
def test_global_average_pool_of_nchw_input(dt, shape, isa, poison):
    x = np.random.default_rng(5).standard_normal(shape).astype(dt)
    x0 = x.copy()
    y = _core.global_avg_pool2d_nchwc(x, shape[1], False)
    assert y.shape == (shape[0], shape[1], 1, 1) and y.dtype == dt and np.array_equal(x, x0)
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-6 if dt == np.float32 else 1e-13)
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(_core.global_avg_pool2d_nchwc(x, shape[1], False)[0, 0, 0, 0])
    with pytest.raises(ValueError, match="NCHW input needs channels"):
        _core.global_avg_pool2d_nchwc(x, shape[1] + 1, False)
    with pytest.raises(ValueError, match="NCHW output"):
        _core.global_avg_pool2d_nchwc(x, shape[1], True)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.global_avg_pool2d_nchwc(x[:, ::-1], shape[1], False)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 128, 28, 28), (1, 17, 5, 3), (3, 16, 1, 1), (1, 40, 13, 13), (2, 3, 0, 4)])
def test_nchw_to_blocked(dt, shape):
    """The executor's reorder in C++ equals the numpy definition (lanes past C zero) at every
    thread count; bad inputs are named."""
    x = np.random.default_rng(2).standard_normal(shape).astype(dt)
    x0 = x.copy()
    want = to_blocked(x)
    for t in (1, 2, 3):
        with pyconv.threads(t):
            y = _core.nchw_to_blocked(x)
        assert y.dtype == dt and np.array_equal(y, want)
    assert np.array_equal(x, x0)
    out = np.full(want.shape, np.nan, dt)
    assert _core.nchw_to_blocked(x, out=out) is out and np.array_equal(out, want)
    with pytest.raises(ValueError, match="4-D"):
        _core.nchw_to_blocked(want)
    if x.size:
        with pytest.raises(ValueError, match="C-contiguous"):
            _core.nchw_to_blocked(x[:, ::-1])
    with pytest.raises(ValueError, match="out"):
        _core.nchw_to_blocked(x, out=np.empty((1,) + want.shape, dt))


# --------------------------------------------------------------------------- the graph's layout


def _params(rng, **shapes):
    return {k: (rng.standard_normal(s) * (2.0 / np.prod(s[1:])) ** 0.5).astype(np.float32) if len(s) > 1
            else rng.standard_normal(s).astype(np.float32) * 0.1 for k, s in shapes.items()}


def _conv(x, w, b, out, group=1, stride=1, pad=1):
    return Node("Conv", [x, w, b], [out], dict(group=group, strides=[stride, stride], pads=[pad] * 4), name=out)


def _inputs(c, h, w):
    return {"x": ((None, c, h, w), np.float32)}


def _block_graph(rng):
    """An inverted residual block as exporters write it: stem, expand 1x1 + ReLU6, depthwise
    3x3 + ReLU6, project 1x1 + the block's input, then a pool reading the result; the expansion
    is also a graph output."""
    init = _params(rng, w0=(24, 3, 3, 3), b0=(24,), w1=(72, 24, 1, 1), b1=(72,), w2=(72, 1, 3, 3), b2=(72,),
                   w3=(24, 72, 1, 1), b3=(24,))
    init |= dict(zero=np.float32(0), six=np.float32(6))
    nodes = [_conv("x", "w0", "b0", "a0", stride=2), Node("Relu", ["a0"], ["a"], name="r0"),
             _conv("a", "w1", "b1", "e0", pad=0), Node("Clip", ["e0", "zero", "six"], ["e"], name="c1"),
             _conv("e", "w2", "b2", "d0", group=72), Node("Clip", ["d0", "zero", "six"], ["d"], name="c2"),
             _conv("d", "w3", "b3", "p0", pad=0), Node("Add", ["p0", "a"], ["pr"], name="add"),
             Node("GlobalAveragePool", ["pr"], ["y"], name="gap")]
    return Graph(nodes, _inputs(3, 20, 18), ["y", "e"], init)


def test_graph_keeps_convs_blocked_and_matches_reference():
    rng = np.random.default_rng(0)
    g = _block_graph(rng)
    cg = CompiledGraph(g, {"x": (2, 3, 20, 18)})
    plan = cg.plan
    # the expansion is a graph output: NCHW (so the depthwise conv reorders its input); the
    # stem's output (read by a conv and as the residual of the blocked projection), the
    # depthwise output and the projection (read by the pool) are blocked
    assert plan.blocked == {"a", "d", "pr"}
    assert plan.nchwc == {"a", "e", "d", "pr", "y"}
    x = rng.standard_normal((2, 3, 20, 18)).astype(np.float32)
    y, e = cg(x)
    i = {k: np.asarray(v, np.float64) for k, v in g.initializers.items()}
    a = np.maximum(F.conv2d(x.astype(np.float64), i["w0"], i["b0"], stride=2, padding=1), 0)
    e_ref = np.clip(F.conv2d(a, i["w1"], i["b1"]), 0, 6)
    d = np.clip(F.conv2d(e_ref, i["w2"], i["b2"], padding=1, groups=72), 0, 6)
    pr = F.conv2d(d, i["w3"], i["b3"]) + a
    np.testing.assert_allclose(e, e_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, pr.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-5)
    assert sum(r["algorithm"] == "nchwc" for r in plan.rows()) == 5


def test_graph_blocked_residual_chain_equals_the_nchw_plan(monkeypatch):
    """Residual blocks in a row: each block's output is the next one's input and residual, so
    the whole chain stays blocked; the result equals the NCHW plan's to float32 rounding, at
    every batch size and across calls (the arena is reused)."""
    rng = np.random.default_rng(1)
    init = _params(rng, w0=(32, 3, 3, 3), w1=(32, 32, 1, 1), w2=(32, 1, 3, 3), w3=(40, 32, 1, 1), w4=(40, 1, 5, 5))
    nodes = [_conv("x", "w0", "", "a", stride=2),
             _conv("a", "w1", "", "b0", pad=0), Node("Add", ["b0", "a"], ["b1"], name="add1"),
             Node("Relu", ["b1"], ["b"], name="relu1"),
             _conv("b", "w2", "", "c0", group=32), Node("Add", ["b", "c0"], ["c"], name="add2"),
             _conv("c", "w3", "", "d", pad=0),
             _conv("d", "w4", "", "y", group=40, pad=2)]
    g = Graph(nodes, _inputs(3, 30, 32), ["y"], init)
    x = rng.standard_normal((3, 3, 30, 32)).astype(np.float32)
    blocked = CompiledGraph(g, {"x": (3, 3, 30, 32)})
    assert blocked.plan.blocked == {"a", "b", "c", "d"}
    assert set(blocked.plan.expand) == {"y"}  # c3 (1x1) runs inside c4 (depthwise 5x5)
    assert [n.name for n in blocked.plan.graph.nodes if n.op == "Conv"] == ["a", "b0", "c0", "y"]
    from pyconv.inference import executor
    monkeypatch.setattr(executor, "blocked_values", lambda graph, infos, precision: (set(), set()))
    plain = CompiledGraph(g, {"x": (3, 3, 30, 32)})
    assert plain.plan.blocked == set()
    for n in (3, 1, 3, 2):
        xn = x[:n] + n
        np.testing.assert_allclose(blocked(xn), plain(xn), rtol=1e-5, atol=1e-5)


def _fire_graph(rng, k1, k3):
    """Two SqueezeNet fire modules on a 13x13 plane: squeeze 1x1, expand 1x1 (k1) and 3x3 (k3)
    joined by a channel Concat, the second module's Concat read by a 1x1 conv and a pool."""
    init = _params(rng, s0=(16, 32, 1, 1), e0=(k1, 16, 1, 1), f0=(k3, 16, 3, 3), s1=(16, k1 + k3, 1, 1),
                   e1=(k1, 16, 1, 1), f1=(k3, 16, 3, 3), c=(24, k1 + k3, 1, 1))
    nodes = [_conv("x", "s0", "", "q0", pad=0), _conv("q0", "e0", "", "a0", pad=0), _conv("q0", "f0", "", "b0"),
             Node("Concat", ["a0", "b0"], ["m0"], dict(axis=1), name="cat0"),
             _conv("m0", "s1", "", "q1", pad=0), _conv("q1", "e1", "", "a1", pad=0), _conv("q1", "f1", "", "b1"),
             Node("Concat", ["a1", "b1"], ["m1"], dict(axis=-3), name="cat1"),
             _conv("m1", "c", "", "z", pad=0), Node("GlobalAveragePool", ["z"], ["y"], name="gap")]
    return Graph(nodes, _inputs(32, 13, 13), ["y"], init)


@pytest.mark.parametrize("k1, k3, blocked", [
    (32, 48, True),    # whole blocks
    (32, 24, True),    # the last input's padding lanes end the Concat's last block
    (24, 32, False),   # a first input of 24 channels would split a block: NCHW
])
def test_graph_blocked_concat_equals_the_nchw_plan(monkeypatch, k1, k3, blocked):
    rng = np.random.default_rng(7)
    g = _fire_graph(rng, k1, k3)
    cg = CompiledGraph(g, {"x": (1, 32, 13, 13)})
    cats = {"m0", "m1"}
    assert (cats <= cg.plan.blocked) == blocked and (cats & cg.plan.blocked == set()) == (not blocked)
    if blocked:
        assert {"q0", "a0", "b0", "q1", "a1", "b1", "z"} <= cg.plan.blocked
        rows = {r["name"]: r["algorithm"] for r in cg.plan.rows() if r["op"] == "Concat"}
        assert rows == {"cat0": "nchwc", "cat1": "nchwc"}
        # one image: the four expand convs write their blocks of the Concats' outputs in place
        assert sorted(v[4] for v in cg.plan._arena_views if v[4] is not None) == \
            sorted([(0, k1 // 16), (k1 // 16, k1 // 16 + -(-k3 // 16))] * 2)
    from pyconv.inference import executor
    monkeypatch.setattr(executor, "blocked_values", lambda graph, infos, precision: (set(), set()))
    plain = CompiledGraph(g, {"x": (1, 32, 13, 13)})
    x = rng.standard_normal((3, 32, 13, 13)).astype(np.float32)
    for n in (1, 3, 1, 2):  # batch 1: the convs write into the Concat's blocks; else a copy
        xn = x[:n] + n
        np.testing.assert_allclose(cg(xn), plain(xn), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["three", "nested", "graph_input", "graph_output", "twice"])
def test_graph_concat_layouts(monkeypatch, case):
    """Which Concats stay blocked: three conv inputs, a Concat of a Concat (both blocked); one
    reading the graph's (NCHW) input, one that is a graph output, one reading a value twice
    (all NCHW). Every plan equals the NCHW one."""
    rng = np.random.default_rng(8)
    init = _params(rng, w0=(16, 16, 1, 1), w1=(32, 16, 3, 3), w2=(16, 16, 3, 3), w4=(16, 64, 1, 1))
    nodes = [_conv("x", "w0", "", "a", pad=0), _conv("a", "w1", "", "b"), _conv("a", "w2", "", "c")]
    cat_in = {"three": ["a", "b", "c"], "nested": ["b", "c"], "graph_input": ["x", "b", "c"],
              "graph_output": ["b", "c"], "twice": ["b", "c", "c"]}[case]
    nodes.append(Node("Concat", cat_in, ["m"], dict(axis=1), name="cat"))
    k = sum({"a": 16, "b": 32, "c": 16, "x": 16}[i] for i in cat_in)
    init["w5"] = _params(rng, w=(8, k, 1, 1))["w"]
    outputs = ["y"]
    if case == "nested":
        nodes += [Node("Concat", ["m", "a"], ["m2"], dict(axis=1), name="cat2"), _conv("m2", "w4", "", "z", pad=0),
                  _conv("z", "w0", "", "y", pad=0)]
    else:
        nodes.append(_conv("m", "w5", "", "y", pad=0))
        if case == "graph_output":
            outputs = ["y", "m"]
    g = Graph(nodes, _inputs(16, 12, 12), outputs, init)
    cg = CompiledGraph(g, {"x": (1, 16, 12, 12)})
    want = {"three": True, "nested": True, "graph_input": False, "graph_output": False, "twice": False}[case]
    assert ("m" in cg.plan.blocked) == want
    if case == "nested":
        assert "m2" in cg.plan.blocked
    from pyconv.inference import executor
    monkeypatch.setattr(executor, "blocked_values", lambda graph, infos, precision: (set(), set()))
    plain = CompiledGraph(g, {"x": (1, 16, 12, 12)})
    for n in (1, 2):
        xn = rng.standard_normal((n, 16, 12, 12)).astype(np.float32)
        for got, exp in zip(cg(xn) if len(outputs) > 1 else [cg(xn)], plain(xn) if len(outputs) > 1 else [plain(xn)]):
            np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["convs", "pool", "graph_output", "relu_reader", "grouped_reader", "wide_reader",
                                  "many_inputs"])
def test_concat_split_into_its_convs_at_batch_above_one(monkeypatch, case):
    """From two images on, a Concat read only by dense convs (one with a fused residual and ReLU)
    is gone: each conv runs per Concat input, adding up; one read by a max pool moves past it.
    Concats with other readers, or graph outputs, stay, and so do those whose split would move
    more bytes than the Concat (a reader writing more channels than half the Concat's, a
    DenseNet-like Concat of five inputs). Results equal the unsplit plan's."""
    rng = np.random.default_rng(9)
    init = _params(rng, w0=(16, 8, 1, 1), w1=(24, 8, 3, 3), wa=(8, 40, 1, 1), ba=(8,), wb=(8, 40, 3, 3),
                   wg=(40, 1, 3, 3), wr=(32, 8, 1, 1))
    if case == "wide_reader":  # readers of 24 channels: more than half the Concat's 40
        init |= _params(rng, wa=(24, 40, 1, 1), ba=(24,), wb=(24, 40, 3, 3), wr=(32, 24, 1, 1))
    nodes = [_conv("x", "w0", "", "a", pad=0), _conv("x", "w1", "", "b"),
             Node("Concat", ["a", "b"], ["m"], dict(axis=1), name="cat")]
    if case == "many_inputs":  # a, b and three more 8-channel convs of x, 64 channels in all
        init |= {f"wm{i}": _params(rng, w=(8, 8, 1, 1))["w"] for i in range(3)}
        init |= dict(wa=_params(rng, w=(8, 64, 1, 1))["w"], wb=_params(rng, w=(8, 64, 3, 3))["w"])
        nodes = nodes[:2] + [_conv("x", f"wm{i}", "", f"c{i}", pad=0) for i in range(3)] + \
            [Node("Concat", ["a", "b", "c0", "c1", "c2"], ["m"], dict(axis=1), name="cat")]
    src, outputs = "m", ["y"]
    if case == "pool":
        nodes.append(Node("MaxPool", ["m"], ["mp"], dict(kernel_shape=[2, 2], strides=[2, 2]), name="pool"))
        src = "mp"
    if case == "grouped_reader":
        nodes.append(_conv(src, "wg", "", "gq", group=40))
    if case == "relu_reader":
        nodes.append(Node("Relu", [src], ["rq"], name="relu_m"))
    nodes += [_conv(src, "wa", "ba", "p", pad=0), _conv(src, "wb", "", "q0"), Node("Add", ["q0", "p"], ["q1"], name="add"),
              Node("Relu", ["q1"], ["q"], name="relu"), _conv("q", "wr", "", "y", pad=0)]
    if case == "graph_output":
        outputs = ["y", "m"]
    if case in ("grouped_reader", "relu_reader"):
        outputs = ["y", "gq" if case == "grouped_reader" else "rq"]
    g = Graph(nodes, _inputs(8, 10, 12), outputs, init)
    cg = CompiledGraph(g, {"x": (1, 8, 10, 12)})
    from pyconv.inference import passes
    orig = passes.split_concats
    monkeypatch.setattr(passes, "split_concats", lambda graph, infos: graph)
    plain = CompiledGraph(g, {"x": (1, 8, 10, 12)})
    monkeypatch.setattr(passes, "split_concats", orig)
    split = case in ("convs", "pool")
    for n in (1, 3, 2):
        ops = [nd.op for nd in cg.plan_for(((n, 8, 10, 12),)).graph.nodes]
        assert ("Concat" not in ops) == (split and n > 1), (n, ops)
        if split and n > 1:
            assert ops.count("Conv") == 2 + 2 * 2 + 1 and ops.count("MaxPool") == (2 if case == "pool" else 0)
        xn = rng.standard_normal((n, 8, 10, 12)).astype(np.float32)
        got, want = cg(xn), plain(xn)
        for a, b in zip(got if len(outputs) > 1 else [got], want if len(outputs) > 1 else [want]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_stride1_3x3_runs_blocked_only_for_one_image_on_small_planes():
    """A stride-1 3x3 conv is eligible at batch 1 on planes up to 14x14 (where the graph would
    run im2col), not on larger planes or batches, where Winograd is faster."""
    rng = np.random.default_rng(2)
    init = _params(rng, w0=(32, 16, 1, 1), w1=(32, 32, 3, 3), w2=(48, 32, 3, 3), w3=(16, 48, 1, 1))
    nodes = [_conv("x", "w0", "", "a", pad=0), _conv("a", "w1", "", "b"), _conv("b", "w2", "", "c"),
             _conv("c", "w3", "", "y", pad=0)]
    for hw, n, want in [(12, 1, {"a", "b", "c"}), (12, 2, set()), (30, 1, set())]:
        g = Graph(nodes, _inputs(16, hw, hw), ["y"], init)
        cg = CompiledGraph(g, {"x": (n, 16, hw, hw)})
        assert cg.plan.blocked == want, (hw, n)
        x = rng.standard_normal((n, 16, hw, hw)).astype(np.float32)
        i = {k: np.asarray(v, np.float64) for k, v in init.items()}
        ref = F.conv2d(F.conv2d(F.conv2d(F.conv2d(x.astype(np.float64), i["w0"]), i["w1"], padding=1), i["w2"],
                                padding=1), i["w3"])
        assert np.abs(cg(x) - ref).max() <= 1e-4 * np.abs(ref).max()  # Winograd's float32 error on 30x30
