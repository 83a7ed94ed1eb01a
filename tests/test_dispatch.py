"""The one-call fast entry points (_core.*_fast) that pyconv.functional tries first.

They must run exactly the operator the validating path runs (bitwise the same results, on every
ISA, with poisoned outputs), and return None, never raise, for every argument they do not take
as is, so that the validating path converts it or raises its error.
"""
import numpy as np
import pytest

from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional
C = pyconv._core

DTYPES = [np.float32, np.float64]
DT_IDS = ["f32", "f64"]

# (x shape, w shape, kwargs): lecture-sized layers, unbatched input, groups, dilation, padding
# strings and modes, tuples as the nn layers pass them.
CONV = [
    ((1, 1, 7, 7), (1, 1, 3, 3), dict(stride=1)),
    ((1, 1, 7, 7), (1, 1, 3, 3), dict(stride=2)),
    ((1, 3, 32, 32), (6, 3, 5, 5), dict()),
    ((1, 3, 32, 32), (10, 3, 5, 5), dict(padding=2)),
    ((3, 9, 9), (4, 3, 3, 3), dict(padding=(1, 0), stride=(1, 2))),
    ((2, 4, 8, 8), (6, 2, 3, 3), dict(groups=2, dilation=2, padding=2)),
    ((2, 4, 8, 8), (4, 1, 3, 3), dict(groups=4, padding="same", padding_mode="reflect")),
    ((1, 2, 6, 7), (3, 2, 2, 4), dict(padding="same", dilation=(2, 1))),
    ((2, 2, 6, 6), (3, 2, 3, 3), dict(padding="valid", padding_mode="circular", algo="im2col")),
    ((1, 2, 6, 6), (3, 2, 3, 3), dict(padding=1, algo="direct")),
    ((1, 16, 10, 10), (16, 16, 3, 3), dict(padding=1, algo="winograd")),
]


def _slow(kw):
    """The same arguments in a form the fast entry points refuse (lists, numpy ints): the validating path runs."""
    out = dict(kw)
    for k in ("stride", "dilation", "padding", "kernel_size"):
        v = out.get(k)
        if isinstance(v, int):
            out[k] = [v, v]
        elif isinstance(v, tuple):
            out[k] = list(v)
    if "kernel_size" not in out:  # convolution: groups as a numpy int (the strings stay as they are)
        out["groups"] = np.int64(out.get("groups", 1))
    return out


def _data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("xs,ws,kw", CONV)
def test_conv_fast_equals_validating_path(xs, ws, kw, dtype, isa, poison, rng):
    x, w, b = _data(rng, xs, dtype), _data(rng, ws, dtype), _data(rng, ws[0], dtype)
    ref_kw = {k: v for k, v in kw.items() if k != "algo"}
    y_ref = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **ref_kw)
    dy = _data(rng, y_ref.shape, dtype)
    copies = [a.copy() for a in (x, w, b, dy)]
    geo = {k: kw.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1),
                                          ("padding_mode", "zeros"), ("algo", "auto"))}
    args = (geo["stride"], geo["padding"], geo["dilation"], geo["groups"], geo["padding_mode"], geo["algo"])
    assert C.conv2d_fwd_fast(x, w, b, *args) is not None
    assert C.conv2d_bwd_data_fast(dy, w, x.shape, *args) is not None
    assert C.conv2d_bwd_weight_fast(x, dy, w.shape, *args) is not None

    y = F.conv2d(x, w, b, **kw)
    np.testing.assert_array_equal(y, F.conv2d(x, w, b, **_slow(kw)))
    check_close(y, y_ref, dtype=dtype, k=int(np.prod(ws[1:])), scale=3, algo=kw.get("algo"))
    gx = F.conv2d_grad_input(dy, w, x.shape, **kw)
    np.testing.assert_array_equal(gx, F.conv2d_grad_input(dy, w, list(x.shape), **_slow(kw)))
    gw = F.conv2d_grad_weight(x, dy, w.shape, **kw)
    np.testing.assert_array_equal(gw, F.conv2d_grad_weight(x, dy, list(w.shape), **_slow(kw)))
    assert y.shape == y_ref.shape and gx.shape == x.shape and gw.shape == w.shape
    assert all(r.flags.c_contiguous and r.dtype == dtype for r in (y, gx, gw))
    for a, a0 in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, a0)


# (x shape, kwargs): the benchmark's windows, LeNet's 4x4 -> 2x2, ceil mode, dilation, unbatched.
POOL = [
    ((2, 3, 8, 8), dict(kernel_size=2, stride=2)),
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 4, 4, 4), dict(kernel_size=2)),
    ((3, 7, 7), dict(kernel_size=(2, 3), stride=(1, 2), ceil_mode=True)),
    ((2, 2, 10, 9), dict(kernel_size=3, stride=2, ceil_mode=True, padding=1)),
    ((1, 2, 34, 40), dict(kernel_size=2, stride=2)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("xs,kw", POOL)
def test_max_pool_fast_equals_validating_path(xs, kw, dtype, isa, poison, rng):
    for dil in (1, 2):
        kwd = dict(kw, dilation=dil)
        x = _data(rng, xs, dtype)
        try:
            y_ref, i_ref = ref.max_pool2d(x, return_indices=True, **kwd)
        except ValueError:  # the dilated window does not fit this input
            continue
        dy = _data(rng, y_ref.shape, dtype)
        x0, dy0 = x.copy(), dy.copy()
        k = kwd["kernel_size"]
        assert C.max_pool2d_fast(x, k, kwd.get("stride"), kwd.get("padding", 0), dil, kwd.get("ceil_mode", False),
                                 True) is not None
        y, idx = F.max_pool2d(x, return_indices=True, **kwd)
        y2, idx2 = F.max_pool2d(x, return_indices=True, **_slow(kwd))
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, i_ref)
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(idx, idx2)
        np.testing.assert_array_equal(F.max_pool2d(x, **kwd), y)
        g_ref = ref.max_pool2d_grad(dy, x, **kwd)
        for ind in (None, idx):
            g = F.max_pool2d_grad(dy, x, indices=ind, **kwd)
            check_close(g, g_ref, dtype=dtype, k=9)
            np.testing.assert_array_equal(g, F.max_pool2d_grad(dy, x, indices=ind, **_slow(kwd)))
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(dy, dy0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("xs,kw", POOL)
def test_avg_pool_fast_equals_validating_path(xs, kw, dtype, isa, poison, rng):
    for opts in (dict(), dict(count_include_pad=False), dict(divisor_override=3)):
        kwd = dict(kw, **opts)
        x = _data(rng, xs, dtype)
        y_ref = ref.avg_pool2d(x, **kwd)
        dy = _data(rng, y_ref.shape, dtype)
        x0, dy0 = x.copy(), dy.copy()
        y = F.avg_pool2d(x, **kwd)
        check_close(y, y_ref, dtype=dtype, k=9)
        np.testing.assert_array_equal(y, F.avg_pool2d(x, **_slow(kwd)))
        g = F.avg_pool2d_grad(dy, x.shape, **kwd)
        check_close(g, ref.avg_pool2d_grad(dy, x.shape, **kwd), dtype=dtype, k=9)
        np.testing.assert_array_equal(g, F.avg_pool2d_grad(dy, list(x.shape), **_slow(kwd)))
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(dy, dy0)


def _conv_calls():
    x, w, b = np.zeros((1, 2, 6, 6), "f4"), np.zeros((3, 2, 3, 3), "f4"), np.zeros(3, "f4")
    dy = np.zeros((1, 3, 4, 4), "f4")
    geo = (1, 0, 1, 1, "zeros", "auto")

    def fwd(x=x, w=w, b=b, geo=geo):
        return C.conv2d_fwd_fast(x, w, b, *geo)

    def bwd_data(dy=dy, w=w, shape=x.shape, geo=geo):
        return C.conv2d_bwd_data_fast(dy, w, shape, *geo)

    def bwd_weight(x=x, dy=dy, shape=w.shape, geo=geo):
        return C.conv2d_bwd_weight_fast(x, dy, shape, *geo)

    def g(i, v):
        return geo[:i] + (v,) + geo[i + 1:]

    bad_geo = [g(0, True), g(0, 1.0), g(0, np.int64(1)), g(0, [1, 1]), g(0, (1,)), g(0, (1, True)), g(0, 0),
               g(0, 2**70), g(1, -1), g(1, "full"), g(1, False), g(2, 0), g(3, 2), g(3, True), g(4, "zero"),
               g(4, None), g(5, "fast"), g(5, 0), (2, "same") + geo[2:]]
    calls = [lambda gg=gg: f(geo=gg) for gg in bad_geo for f in (fwd, bwd_data, bwd_weight)]
    f2, i4 = x.astype("f8"), x.astype("i4")
    calls += [
        lambda: fwd(x=f2), lambda: fwd(w=w.astype("f8")), lambda: fwd(b=b.astype("f8")), lambda: fwd(x=i4),
        lambda: fwd(x=x.astype("f2")), lambda: fwd(x=x.astype(">f4")), lambda: fwd(x=np.asfortranarray(x)),
        lambda: fwd(x=x[..., ::2]), lambda: fwd(x=x.tolist()), lambda: fwd(x=pyconv.Tensor(x)),
        lambda: fwd(x=np.zeros((0, 2, 6, 6), "f4")), lambda: fwd(x=x[0, 0]), lambda: fwd(x=x[None]),
        lambda: fwd(w=w[0]), lambda: fwd(b=np.zeros(4, "f4")), lambda: fwd(b=np.zeros((1, 3), "f4")),
        lambda: fwd(b=[0.0, 0.0, 0.0]), lambda: fwd(x=np.zeros((1, 3, 6, 6), "f4")),
        lambda: fwd(x=np.zeros((1, 2, 2, 2), "f4")), lambda: fwd(x=x.view(type("Sub", (np.ndarray,), {}))),
        lambda: bwd_data(dy=np.zeros((1, 3, 4, 5), "f4")), lambda: bwd_data(dy=dy[0]), lambda: bwd_data(shape=[1, 2, 6, 6]),
        lambda: bwd_data(shape=(1, 2, 6, True)), lambda: bwd_data(shape=(1, 2, 6)), lambda: bwd_data(shape=(0, 2, 6, 6)),
        lambda: bwd_data(shape=(1, 2, 6, 6, 1)), lambda: bwd_data(dy=dy.astype("f8")), lambda: bwd_data(shape=(1, 2, 2**40, 2**40)),
        lambda: bwd_weight(shape=(3, 2, 3)), lambda: bwd_weight(shape=(3, 1, 3, 3)), lambda: bwd_weight(shape=(3, 2, 3, 3.0)),
        lambda: bwd_weight(dy=np.zeros((1, 3, 4, 4), "f8")), lambda: bwd_weight(x=x[0]),
    ]
    return calls


def _pool_calls():
    x = np.zeros((1, 2, 6, 6), "f4")
    dy = np.zeros((1, 2, 3, 3), "f4")
    idx = np.zeros((1, 2, 3, 3), np.int64)

    def mx(x=x, k=2, s=None, p=0, d=1, c=False, r=False):
        return C.max_pool2d_fast(x, k, s, p, d, c, r)

    def mxg(dy=dy, x=x, k=2, s=None, p=0, d=1, c=False, i=None):
        return C.max_pool2d_grad_fast(dy, x, k, s, p, d, c, i)

    def av(x=x, k=2, s=None, p=0, c=False, cip=True, div=None):
        return C.avg_pool2d_fast(x, k, s, p, c, cip, div)

    def avg(dy=dy, shape=x.shape, k=2, s=None, p=0, c=False, cip=True, div=None):
        return C.avg_pool2d_grad_fast(dy, shape, k, s, p, c, cip, div)

    calls = []
    for f in (mx, mxg, av, avg):
        calls += [lambda f=f: f(k=True), lambda f=f: f(k=2.0), lambda f=f: f(k=[2, 2]), lambda f=f: f(k=0),
                  lambda f=f: f(s=0), lambda f=f: f(s=[]), lambda f=f: f(s=np.int64(2)), lambda f=f: f(p=2),
                  lambda f=f: f(p=-1), lambda f=f: f(c=1), lambda f=f: f(c=np.bool_(False)), lambda f=f: f(k=7)]
    calls += [lambda: mx(d=True), lambda: mx(d=0), lambda: mx(r=1), lambda: mx(r=None), lambda: mx(x=x.astype("i8")),
              lambda: mx(x=x[..., ::2]), lambda: mx(x=x[0, 0]), lambda: mx(x=np.zeros((0, 2, 6, 6), "f4")),
              lambda: mxg(dy=dy.astype("f8")), lambda: mxg(dy=dy[0]), lambda: mxg(i=idx.astype(np.int32)),
              lambda: mxg(i=idx[..., :2]), lambda: mxg(i=idx.tolist()), lambda: mxg(i=idx.astype(np.uint64)),
              lambda: av(cip=1), lambda: av(cip=None), lambda: av(div=0), lambda: av(div=2.0), lambda: av(div=True),
              lambda: av(div=2**63), lambda: av(x=x.astype(">f4")), lambda: avg(shape=list(x.shape)),
              lambda: avg(shape=(1, 2, 6, 8)), lambda: avg(div=0), lambda: avg(dy=dy.astype("f8").T)]
    return calls


@pytest.mark.parametrize("call", _conv_calls() + _pool_calls())
def test_fast_entry_points_decline_what_they_do_not_take(call):
    assert call() is None


def test_errors_still_raised_through_the_validating_path():
    x, w = np.zeros((1, 2, 6, 6), "f4"), np.zeros((3, 2, 3, 3), "f4")
    with pytest.raises(TypeError, match="stride"):
        F.conv2d(x, w, stride=True)
    with pytest.raises(ValueError, match="same"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="grad_output"):
        F.conv2d_grad_input(np.zeros((1, 3, 4, 5), "f4"), w, x.shape)
    with pytest.raises(TypeError, match="ceil_mode"):
        F.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="indices"):
        F.max_pool2d_grad(np.zeros((1, 2, 3, 3), "f4"), x, 2, indices=np.full((1, 2, 3, 3), 99))


def test_unbatched_fast_results_are_3d_and_non_contiguous_inputs_take_the_copying_path(rng):
    x = _data(rng, (2, 7, 7), np.float32)
    w = _data(rng, (3, 2, 3, 3), np.float32)
    y = F.conv2d(x, w)
    assert y.shape == (3, 5, 5)
    np.testing.assert_array_equal(y, F.conv2d(x[None], w)[0])
    xt = np.ascontiguousarray(np.swapaxes(x, 1, 2)).swapaxes(1, 2)  # equal values, not C-contiguous
    assert C.conv2d_fwd_fast(xt, w, None, 1, 0, 1, 1, "zeros", "auto") is None
    np.testing.assert_array_equal(F.conv2d(xt, w), y)
    p = F.max_pool2d(x, 2)
    assert p.shape == (2, 3, 3)
    np.testing.assert_array_equal(p, F.max_pool2d(x[None], 2)[0])
