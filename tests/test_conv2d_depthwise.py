"""The vectorised depthwise path of the direct kernels (one input channel per group) on rows
wide enough for full vectors, every padding mode, strides 1-3, dilation, channel multiplier,
against the float64 reference; NaN-poisoned outputs; 1 vs 2 threads bitwise."""

import itertools
import zlib

import numpy as np
import pytest

from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

# (n, c, h, w, kg, r, s, stride, padding, dilation)
GEOMS = [
    (2, 3, 9, 37, 1, 3, 3, 1, 1, 1),
    (1, 2, 11, 40, 2, 3, 3, 2, 1, 1),
    (2, 2, 7, 33, 1, 5, 3, 1, (2, 1), 2),
    (1, 3, 12, 50, 1, 3, 5, 3, 2, 1),
    (1, 1, 8, 19, 3, 2, 2, 2, 0, 1),
    (2, 2, 10, 70, 1, 3, 3, 2, (1, 2), (1, 2)),
]
MODES = ["zeros", "reflect", "replicate", "circular"]


def _gid(g):
    return "n{}c{}h{}w{}kg{}r{}s{}_st{}_p{}_d{}".format(*g).replace(" ", "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMS, ids=_gid)
def test_depthwise_direct(geom, mode, dtype, isa, poison):
    n, c, h, w, kg, r, s, st, pd, dl = geom
    rng = np.random.default_rng(zlib.crc32(repr((geom, mode)).encode()))
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    wt = rng.uniform(-1, 1, (c * kg, 1, r, s)).astype(np.float32)
    b = rng.uniform(-1, 1, c * kg).astype(np.float32)
    kw = dict(stride=st, padding=pd, dilation=dl, groups=c, padding_mode=mode)
    y_ref = ref.conv2d(x, wt, b, st, pd, dl, c, mode)
    gy = rng.uniform(-1, 1, y_ref.shape).astype(np.float32)
    gi_ref = ref.conv2d_grad_input(gy, wt, x.shape, st, pd, dl, c, mode)
    gw_ref = ref.conv2d_grad_weight(x, gy, wt.shape, st, pd, dl, c, mode)
    xd, wd, bd, gyd = (a.astype(dtype) for a in (x, wt, b, gy))
    outs = {}
    for threads in (1, 2):
        pyconv.set_num_threads(threads)
        try:
            outs[threads] = (
                F.conv2d(xd, wd, bd, algo="direct", **kw),
                F.conv2d_grad_input(gyd, wd, x.shape, algo="direct", **kw),
                F.conv2d_grad_weight(xd, gyd, wt.shape, algo="direct", **kw),
            )
        finally:
            pyconv.set_num_threads(2)
    msg = f"{_gid(geom)} {mode} {isa}"
    y, gi, gw = outs[1]
    check_close(y, y_ref, dtype=dtype, k=r * s, case=msg + " fwd")
    check_close(gi, gi_ref, dtype=dtype, k=r * s * kg, case=msg + " bwd_data")
    check_close(gw, gw_ref, dtype=dtype, k=n * y_ref.shape[2] * y_ref.shape[3], scale=4, case=msg + " bwd_weight")
    for a1, a2 in zip(outs[1], outs[2]):
        assert a1.tobytes() == a2.tobytes(), msg + " 1 vs 2 threads"


# First layers (groups == 1, C <= 4): the weight gradient's register-blocked path.
# (n, c, h, w, k, r, s, stride, padding, dilation)
SMALL_C = [
    (3, 3, 10, 37, 7, 3, 3, 1, 1, 1),
    (2, 1, 9, 40, 5, 5, 5, 2, 2, 1),
    (2, 4, 8, 33, 9, 3, 2, 1, (1, 0), (2, 1)),
    (1, 2, 12, 60, 4, 4, 4, 3, 1, 1),
    (2, 3, 7, 20, 3, 1, 3, 1, (0, 1), 1),
]


def _sid(g):
    return "n{}c{}h{}w{}k{}r{}s{}_st{}_p{}_d{}".format(*g).replace(" ", "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", SMALL_C, ids=_sid)
def test_small_c_bwd_weight_direct(geom, mode, dtype, isa, poison):
    n, c, h, w, k, r, s, st, pd, dl = geom
    rng = np.random.default_rng(zlib.crc32(repr((geom, mode, "small")).encode()))
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    wt = rng.uniform(-1, 1, (k, c, r, s)).astype(np.float32)
    kw = dict(stride=st, padding=pd, dilation=dl, padding_mode=mode)
    out_shape = ref.conv2d(x, wt, None, st, pd, dl, 1, mode).shape
    gy = rng.uniform(-1, 1, out_shape).astype(np.float32)
    gw_ref = ref.conv2d_grad_weight(x, gy, wt.shape, st, pd, dl, 1, mode)
    xd, gyd = x.astype(dtype), gy.astype(dtype)
    outs = []
    for threads in (1, 2, 3, 5):   # thread ranges that start and end inside a filter
        pyconv.set_num_threads(threads)
        try:
            outs.append(F.conv2d_grad_weight(xd, gyd, wt.shape, algo="direct", **kw))
        finally:
            pyconv.set_num_threads(2)
    msg = f"{_sid(geom)} {mode} {isa}"
    check_close(outs[0], gw_ref, dtype=dtype, k=n * out_shape[2] * out_shape[3], scale=4, case=msg)
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes(), msg + " thread count changed the result"
