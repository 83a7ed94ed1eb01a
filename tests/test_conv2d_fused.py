"""The inference conv of pyconv.inference: _core.conv2d_fwd_fused = clamp(conv + bias + residual),
checked bitwise against the unfused conv followed by numpy's add and clip, for every algorithm."""
import numpy as np
import pytest

from pyconv import _core

ALGOS = {"auto": 0, "direct": 1, "im2col": 2, "winograd": 3}
INF = float("inf")


def _case(dt, n=2, c=6, k=5, h=9, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dt), rng.standard_normal((k, c, 3, 3)).astype(dt),
            rng.standard_normal(k).astype(dt), rng.standard_normal((n, k, h, w)).astype(dt))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("lo,hi,with_res", [(-INF, INF, True), (0.0, INF, False), (0.0, INF, True),
                                            (0.0, 6.0, True), (-0.5, 0.25, False)])
def test_fused_equals_conv_then_add_clip(dt, algo, lo, hi, with_res):
    x, w, b, r = _case(dt)
    x0, r0 = x.copy(), r.copy()
    a = ALGOS[algo]
    y = _core.conv2d_fwd_fused(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, a, r if with_res else None, lo, hi)
    ref = _core.conv2d_fwd(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, a)
    if with_res:
        ref = ref + r
    np.testing.assert_array_equal(y, np.clip(ref, lo, hi))
    assert y.dtype == dt and np.array_equal(x, x0) and np.array_equal(r, r0)


def test_fused_nan_propagates_through_clamp():
    x, w, b, r = _case(np.float32)
    r[0, 1, 2, 3] = np.nan
    y = _core.conv2d_fwd_fused(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, r, 0.0, 6.0)
    assert np.isnan(y[0, 1, 2, 3]) and np.isnan(y).sum() == 1


def test_fused_grouped_strided_without_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 13, 11)).astype(np.float32)
    w = rng.standard_normal((8, 1, 5, 5)).astype(np.float32)
    y = _core.conv2d_fwd_fused(x, w, None, (2, 2), (2, 2, 2, 2), (1, 1), 8, 0, None, 0.0, INF)
    ref = _core.conv2d_fwd(x, w, None, (2, 2), (2, 2, 2, 2), (1, 1), 8, 0, 0)
    np.testing.assert_array_equal(y, np.maximum(ref, 0))


@pytest.mark.parametrize("bad,match", [
    (dict(residual=np.zeros((2, 5, 9, 9), np.float32)), "residual"),
    (dict(residual=np.zeros((2, 5, 9, 10), np.float64)), "residual"),
    (dict(lo=1.0, hi=0.0), "lo <= hi"),
    (dict(lo=float("nan")), "lo <= hi"),
])
def test_fused_bad_arguments_are_named(bad, match):
    x, w, b, _ = _case(np.float32)
    kw = dict(residual=None, lo=-INF, hi=INF) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        _core.conv2d_fwd_fused(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, **kw)


# im2col applies bias, residual and clamp in the GEMM's stores (GemmEpilogue): the shapes below take
# its other paths, K split into several blocks (c*r*s > 256), full and edge column tiles, groups, 1x1.
GEMM_SHAPES = {  # x shape, w shape, stride, pad, groups
    "1x1_two_k_blocks": ((2, 300, 20, 20), (33, 300, 1, 1), 1, 0, 1),
    "3x3_groups_k_blocks": ((1, 80, 11, 13), (20, 40, 3, 3), 1, 1, 2),
    "5x5_stride2": ((3, 7, 17, 16), (9, 7, 5, 5), 2, 2, 1),
}


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", list(GEMM_SHAPES))
@pytest.mark.parametrize("lo,hi,with_res,with_bias", [(-INF, INF, False, True), (0.0, 6.0, True, True),
                                                       (0.0, INF, True, False), (-0.5, 0.25, False, False)])
def test_fused_in_gemm_stores(shape, dt, lo, hi, with_res, with_bias, isa, poison):
    import pyconv
    from pyconv import _reference as ref

    xs, ws, st, pd, g = GEMM_SHAPES[shape]
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(xs).astype(dt), rng.standard_normal(ws).astype(dt)
    b = rng.standard_normal(ws[0]).astype(dt) if with_bias else None
    y0 = _core.conv2d_fwd(x, w, b, (st, st), (pd,) * 4, (1, 1), g, 0, ALGOS["im2col"])
    r = rng.standard_normal(y0.shape).astype(dt) if with_res else None
    r0 = None if r is None else r.copy()
    outs = []
    for threads in (1, 2):
        pyconv.set_num_threads(threads)
        try:
            outs.append(_core.conv2d_fwd_fused(x, w, b, (st, st), (pd,) * 4, (1, 1), g, ALGOS["im2col"], r, lo, hi))
        finally:
            pyconv.set_num_threads(2)
    assert outs[0].tobytes() == outs[1].tobytes()
    np.testing.assert_array_equal(outs[0], np.clip(y0 if r is None else y0 + r, lo, hi))
    exact = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                       st, pd, 1, g, "zeros")
    exact = np.clip(exact if r is None else exact + r, lo, hi)
    tol = 1e-4 if dt == np.float32 else 1e-11
    np.testing.assert_allclose(outs[0], exact, rtol=tol, atol=tol * np.sqrt(ws[1] * ws[2] * ws[3]))
    if r is not None:
        np.testing.assert_array_equal(r, r0)


@pytest.mark.parametrize("shape", list(GEMM_SHAPES))
def test_packed_weights_give_the_same_bits(shape, isa):
    import pyconv

    xs, ws, st, pd, g = GEMM_SHAPES[shape]
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    packed = _core.Im2colWeights(w, g)
    assert packed.shape == ws and packed.groups == g and packed.isa == isa
    args = (x, w, b, (st, st), (pd,) * 4, (1, 1), g, ALGOS["im2col"], None, 0.0, 6.0)
    want = _core.conv2d_fwd_fused(*args)
    np.testing.assert_array_equal(_core.conv2d_fwd_fused(*args, packed=packed), want)
    for other in pyconv._runtime.FLOAT_ISAS:  # packed for another tile: ignored, packed per call
        prev = pyconv.set_max_isa(other)
        try:
            np.testing.assert_array_equal(_core.conv2d_fwd_fused(*args, packed=packed), _core.conv2d_fwd_fused(*args))
        finally:
            pyconv.set_max_isa(prev)


def test_packed_weights_bad_arguments():
    x, w, b, _ = _case(np.float32)
    packed = _core.Im2colWeights(w, 1)
    with pytest.raises(ValueError, match="another shape"):
        _core.conv2d_fwd_fused(x, w[:4], b[:4], (1, 1), (1, 1, 1, 1), (1, 1), 1, 2, packed=packed)
    with pytest.raises(TypeError, match="float32"):
        _core.conv2d_fwd_fused(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), (1,) * 4,
                               (1, 1), 1, 2, packed=packed)
    with pytest.raises(TypeError, match="Im2colWeights"):
        _core.conv2d_fwd_fused(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, 2, packed=w)
    with pytest.raises(ValueError, match="groups"):
        _core.Im2colWeights(w, 2)
