"""The channel-blocked depthwise kernels (cpp/src/conv2d/depthwise_blocked_impl.h: groups == C
== K, channels in blocks of one vector; taken for outputs narrower than one vector, two for the
weight gradient, so the narrowest geometries reach them on every ISA): kernel sizes 3-7, strides 1-3, dilation, asymmetric
padding, every padding mode, channel counts around the block widths (ragged last blocks), narrow
planes, against the float64 reference and torch; float32 and float64 on every ISA; NaN-poisoned
outputs; results bitwise independent of the thread count."""

import zlib

import numpy as np
import pytest

import torch_oracles
from conftest import check_close
from pyconv import _reference as ref

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

# (n, c, h, w, r, s, stride, padding, dilation)
GEOMS = [
    (1, 16, 7, 7, 3, 3, 1, 1, 1),
    (2, 17, 14, 14, 3, 3, 2, 1, 1),
    (1, 33, 9, 11, 5, 5, 1, 2, 1),
    (3, 5, 7, 7, 5, 5, 2, 2, 1),
    (1, 24, 12, 10, 7, 7, 1, 3, 1),
    (2, 9, 15, 13, 7, 7, 2, 3, 1),
    (1, 8, 10, 12, 4, 6, 1, (1, 2), 1),
    (2, 3, 11, 9, 3, 5, (2, 1), (0, 2), (2, 1)),
    (1, 7, 8, 8, 3, 3, 3, 0, 1),
    (1, 1, 5, 30, 3, 3, 1, (2, 0), (1, 2)),
    (2, 20, 6, 6, 6, 6, 1, 0, 1),       # kernel == the padded input: one output pixel
    (1, 40, 1, 9, 1, 3, 1, (0, 1), 1),  # one row
    # outputs narrower than the smallest vectors (the kernels run on every ISA and dtype here)
    (2, 19, 9, 9, 3, 3, 3, 1, 1),
    (1, 10, 7, 7, 5, 5, 2, 2, 1),
    (2, 6, 8, 3, 3, 3, 1, 0, 1),
    (1, 5, 6, 6, 3, 3, 2, (1, 0), (2, 1)),
    (3, 4, 5, 5, 5, 5, 4, 2, 1),
]
MODES = ["zeros", "reflect", "replicate", "circular"]


def _gid(g):
    return "n{}c{}h{}w{}r{}s{}_st{}_p{}_d{}".format(*g).replace(" ", "")


def _valid(geom, mode):
    n, c, h, w, r, s, st, pd, dl = geom
    pads = pd if isinstance(pd, tuple) else (pd, pd)
    if mode == "reflect":
        return pads[0] < h and pads[1] < w
    return True


def _data(geom, mode):
    n, c, h, w, r, s, st, pd, dl = geom
    rng = np.random.default_rng(zlib.crc32(repr((geom, mode, "dwb")).encode()))
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    wt = rng.uniform(-1, 1, (c, 1, r, s)).astype(np.float32)
    b = rng.uniform(-1, 1, c).astype(np.float32)
    y_ref = ref.conv2d(x, wt, b, st, pd, dl, c, mode)
    gy = rng.uniform(-1, 1, y_ref.shape).astype(np.float32)
    return x, wt, b, gy, y_ref


def _run(x, wt, b, gy, kw, algo="direct"):
    return (F.conv2d(x, wt, b, algo=algo, **kw),
            F.conv2d_grad_input(gy, wt, x.shape, algo=algo, **kw),
            F.conv2d_grad_weight(x, gy, wt.shape, algo=algo, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMS, ids=_gid)
def test_blocked_depthwise(geom, mode, dtype, isa, poison):
    if not _valid(geom, mode):
        pytest.skip("padding too wide for reflect")
    n, c, h, w, r, s, st, pd, dl = geom
    x, wt, b, gy, y_ref = _data(geom, mode)
    kw = dict(stride=st, padding=pd, dilation=dl, groups=c, padding_mode=mode)
    gi_ref = ref.conv2d_grad_input(gy, wt, x.shape, st, pd, dl, c, mode)
    gw_ref = ref.conv2d_grad_weight(x, gy, wt.shape, st, pd, dl, c, mode)
    xd, wd, bd, gyd = (a.astype(dtype) for a in (x, wt, b, gy))
    outs = {}
    for threads in (1, 2, 3):
        pyconv.set_num_threads(threads)
        try:
            outs[threads] = _run(xd, wd, bd, gyd, kw)
        finally:
            pyconv.set_num_threads(2)
    msg = f"{_gid(geom)} {mode} {isa}"
    y, gi, gw = outs[1]
    check_close(y, y_ref, dtype=dtype, k=r * s, case=msg + " fwd")
    check_close(gi, gi_ref, dtype=dtype, k=r * s, case=msg + " bwd_data")
    check_close(gw, gw_ref, dtype=dtype, k=n * y_ref.shape[2] * y_ref.shape[3], scale=4, case=msg + " bwd_weight")
    for t in (2, 3):
        for a1, a2, what in zip(outs[1], outs[t], ("fwd", "bwd_data", "bwd_weight")):
            assert a1.tobytes() == a2.tobytes(), f"{msg} {what}: 1 vs {t} threads"


# Real-model layers (MobileNetV2, EfficientNet-B0), shrunk in batch where the plane is large.
MODEL_LAYERS = [
    (1, 96, 28, 28, 3, 3, 2, 1, 1),
    (2, 144, 14, 14, 3, 3, 1, 1, 1),
    (2, 1152, 7, 7, 5, 5, 1, 2, 1),
    (1, 240, 28, 28, 5, 5, 2, 2, 1),
    (1, 672, 14, 14, 5, 5, 1, 2, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("geom", MODEL_LAYERS, ids=_gid)
def test_model_layers_against_torch(geom, dtype):
    pytest.importorskip("torch")
    n, c, h, w, r, s, st, pd, dl = geom
    x, wt, b, gy, _ = _data(geom, "zeros")
    ty, tgx, tgw, _ = torch_oracles.torch_conv2d(x, wt, b, gy, st, pd, dl, c)
    kw = dict(stride=st, padding=pd, dilation=dl, groups=c)
    got = _run(*(a.astype(dtype) for a in (x, wt, b, gy)), kw, algo="auto")
    for g, e, k, what in zip(got, (ty, tgx, tgw), (r * s, r * s, n * ty.shape[2] * ty.shape[3]),
                             ("fwd", "bwd_data", "bwd_weight")):
        check_close(g, e, dtype=dtype, k=k, scale=4 if what == "bwd_weight" else 1, case=f"{_gid(geom)} {what}")


@pytest.mark.parametrize("geom", MODEL_LAYERS[:3], ids=_gid)
def test_auto_runs_the_direct_kernels(geom):
    from conftest import conv_algo_run
    n, c, h, w, r, s, st, pd, dl = geom
    for direction in ("fwd", "bwd_data", "bwd_weight"):
        assert conv_algo_run("auto", direction, (n, c, h, w), (c, 1, r, s), st, pd, dl, c) == "direct"


def test_nan_and_inf_stay_in_their_channel(isa):
    # one NaN and one inf in channel 3 of a 20-channel layer: only channel 3 (outputs) and its
    # weight gradient may be non-finite, every other lane of its vector block stays finite
    x = np.ones((1, 20, 7, 7), np.float32)
    x[0, 3, 2, 2] = np.nan
    x[0, 3, 5, 5] = np.inf
    wt = np.full((20, 1, 3, 3), 0.5, np.float32)
    y = F.conv2d(x, wt, None, padding=1, groups=20, algo="direct")
    assert np.isnan(y[0, 3]).any()
    assert np.isfinite(np.delete(y, 3, axis=1)).all()
    gw = F.conv2d_grad_weight(x, np.ones_like(y), wt.shape, padding=1, groups=20, algo="direct")
    assert not np.isfinite(gw[3]).all() and np.isfinite(np.delete(gw, 3, axis=0)).all()
