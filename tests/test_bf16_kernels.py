"""The bfloat16 convolution kernels (AMX tiles, AVX512-BF16's vdpbf16ps, and the float32 path under
an ISA cap): against the bf16-rounded float64 reference, packed weights, the fused epilogue, the
process default."""
import contextlib
import threading

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

import pyconv
from pyconv import _core
from pyconv.functional import conv2d, conv2d_grad_input, conv2d_grad_weight
from pyconv.functional.conv import _round_bf16
from pyconv._reference import conv2d as conv2d_reference
from pyconv._reference import conv2d_grad_input as grad_input_reference
from pyconv._reference import conv2d_grad_weight as grad_weight_reference

_ORDER = _core.isas()
# The bfloat16 kernels this CPU and build run (vdpbf16ps, AMX tiles), and the levels to test: those
# and the float32 path (capped at avx512, or whatever float ISA the CPU tops out at).
NATIVE = [i for i in ("avx512_bf16", "amx") if i in _core.compiled_isas()
          and _ORDER.index(_core.cpu_isa()) >= _ORDER.index(i)]
LEVELS = NATIVE + ["float"]


@contextlib.contextmanager
def level(name):
    old = _core.get_max_isa()
    pyconv.set_max_isa(name if name in NATIVE else "avx512")
    try:
        assert _core.conv2d_bf16_kernel() == (name if name in NATIVE else "float32")
        yield
    finally:
        pyconv.set_max_isa(old)


def _f64(a):
    return a.astype(np.float64)


CASES = [  # (x shape, w shape, stride, padding, dilation, groups, padding_mode)
    ((1, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1, "zeros"),          # few channels: k = 18 of 32
    ((2, 16, 14, 14), (32, 16, 3, 3), 1, 1, 1, 1, "reflect"),
    ((2, 33, 9, 11), (45, 33, 3, 3), 2, 1, 1, 1, "zeros"),       # odd channels, ragged tiles
    ((1, 32, 7, 7), (48, 32, 1, 1), 1, 0, 1, 1, "zeros"),        # 1x1, 49 pixels
    ((3, 8, 10, 10), (24, 8, 5, 5), 2, 2, 2, 1, "replicate"),   # dilation with stride
    ((1, 32, 12, 12), (64, 8, 3, 3), 1, 1, 1, 4, "circular"),   # grouped
    ((2, 20, 15, 13), (40, 20, 3, 3), 3, 0, 1, 1, "zeros"),      # stride 3 (the gathered pack)
    ((1, 16, 9, 9), (17, 16, 2, 4), (1, 2), (1, 2), 1, 1, "zeros"),  # non-square everything
    ((1, 64, 20, 20), (64, 64, 3, 3), 1, 1, 1, 1, "zeros"),
    ((2, 3, 33, 33), (16, 3, 7, 7), 2, 3, 1, 1, "zeros"),        # a stem layer
    ((1, 24, 9, 9), (24, 1, 3, 3), 1, 1, 1, 24, "zeros"),        # depthwise: the float32 kernels
    ((1, 48, 1, 1), (16, 48, 1, 1), 1, 0, 1, 1, "zeros"),        # one pixel
    # B tiles read straight from the pair planes (stride-1 rows of 12+ pixels, whole k steps):
    ((1, 64, 16, 32), (40, 64, 3, 3), (2, 1), 1, 1, 1, "reflect"),  # rows of 32, stride 2 down
    ((2, 32, 13, 14), (33, 32, 3, 3), 1, 2, 2, 1, "zeros"),      # dilated, 14-pixel rows
    ((1, 16, 12, 12), (24, 16, 1, 1), 1, 0, 1, 1, "zeros"),      # 1x1, half a k step of channels
    ((1, 128, 15, 15), (64, 64, 3, 3), 1, 1, 1, 2, "replicate"),  # grouped
    ((3, 32, 9, 40), (48, 32, 1, 3), 1, (0, 1), 1, 1, "circular"),
]


def _check(y, x, w, b, st, pd, dl, g, mode):
    ref = conv2d_reference(_f64(_round_bf16(x)), _f64(_round_bf16(w)), None if b is None else _f64(b),
                           st, pd, dl, g, mode)
    scale = conv2d_reference(np.abs(_f64(x)), np.abs(_f64(w)), None, st, pd, dl, g, mode)
    # float32 accumulation of exact products: a few ulps of the sum of magnitudes
    k = w.shape[1] * w.shape[2] * w.shape[3]
    tol = 4 * k * 2.0**-24 * (scale + (0 if b is None else np.abs(_f64(b))[:, None, None])) + 1e-30
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= tol), float(np.max(np.abs(y - ref) / tol))


@pytest.mark.parametrize("lv", LEVELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-g{c[5]}-{c[6]}")
def test_against_the_rounded_reference(lv, case):
    xs, ws, st, pd, dl, g, mode = case
    rng = np.random.default_rng(abs(hash(str(case))) % 2**32)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    x0, w0 = x.copy(), w.copy()
    with level(lv):
        y = conv2d(x, w, b, st, pd, dl, g, padding_mode=mode, precision="bfloat16")
        y_nobias = conv2d(x, w, None, st, pd, dl, g, padding_mode=mode, precision="bfloat16")
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
    _check(y, x, w, b, st, pd, dl, g, mode)
    _check(y_nobias, x, w, None, st, pd, dl, g, mode)


@st.composite
def _bf16_case(draw):
    g = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 40)), draw(st.integers(16, 72))
    r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    st_h, st_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d_h, d_w = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    p_h, p_w = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    assume(h + 2 * p_h >= d_h * (r - 1) + 1 and w + 2 * p_w >= d_w * (s - 1) + 1)
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    if mode != "zeros":
        assume(p_h < h and p_w < w)
    n = draw(st.integers(1, 3))
    return (n, cg * g, h, w), (kg * g, cg, r, s), (st_h, st_w), (p_h, p_w), (d_h, d_w), g, mode


@pytest.mark.skipif(not NATIVE, reason="no bfloat16 kernel on this CPU")
@settings(max_examples=examples(40))
@given(case=_bf16_case(), seed=st.integers(0, 2**31 - 1))
def test_native_kernels_on_drawn_shapes(case, seed):
    """Every bfloat16 kernel this CPU runs, on drawn shapes, strides, dilations, paddings, padding
    modes and groups, against the float64 convolution of the rounded operands."""
    xs, ws, stride, pad, dil, g, mode = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    for lv in NATIVE:
        with level(lv):
            y = conv2d(x, w, b, stride, pad, dil, g, padding_mode=mode, precision="bfloat16")
        _check(y, x, w, b, stride, pad, dil, g, mode)


@pytest.mark.skipif(not NATIVE, reason="no bfloat16 kernel on this CPU")
@pytest.mark.parametrize("lv", NATIVE)
@pytest.mark.parametrize("shape", [((2, 40, 17, 17), 1), ((2, 64, 9, 30), 1), ((3, 37, 11, 8), 2)])
def test_native_and_float_path_agree_and_threads_do_not_matter(lv, shape):
    (xs, stride), rng = shape, np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((70, xs[1], 3, 3)).astype(np.float32)
    with level(lv):
        with pyconv.threads(1):
            y1 = conv2d(x, w, padding=1, stride=stride, precision="bfloat16")
        with pyconv.threads(2):
            y2 = conv2d(x, w, padding=1, stride=stride, precision="bfloat16")
    with level("float"):
        yf = conv2d(x, w, padding=1, stride=stride, precision="bfloat16")
    assert np.array_equal(y1, y2)
    scale = float(np.max(np.abs(yf)))
    assert np.max(np.abs(y1 - yf)) <= 1e-5 * scale
    assert not np.array_equal(y1, conv2d(x, w, padding=1, stride=stride))  # not the float32 result


@pytest.mark.parametrize("lv", LEVELS)
def test_packed_weights_and_the_fused_epilogue(lv):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 24, 10, 10)).astype(np.float32)
    w = rng.standard_normal((40, 24, 3, 3)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    res = rng.standard_normal((2, 40, 10, 10)).astype(np.float32)
    res[0, 3, 2, 2] = np.nan
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1, 0)
    with level(lv):
        packed = _core.Bf16ConvWeights(w, 1)
        assert packed.shape == (40, 24, 3, 3) and packed.groups == 1
        y = _core.conv2d_fwd_bf16(x, w, b, *args)
        assert np.array_equal(y, _core.conv2d_fwd_bf16(x, packed, b, *args))
        fused = _core.conv2d_fwd_bf16(x, packed, b, *args, residual=res, lo=0.0, hi=6.0)
        assert np.array_equal(fused, np.minimum(np.maximum(y + res, 0.0), 6.0), equal_nan=True)
        assert np.isnan(fused[0, 3, 2, 2])
        only_res = _core.conv2d_fwd_bf16(x, packed, None, *args, residual=res)
        assert np.array_equal(only_res, _core.conv2d_fwd_bf16(x, packed, None, *args) + res, equal_nan=True)
        with pytest.raises(ValueError, match="channels"):
            _core.conv2d_fwd_bf16(np.ascontiguousarray(x[:, :12]), packed, b, *args)
        with pytest.raises(ValueError, match="residual has shape"):
            _core.conv2d_fwd_bf16(x, packed, b, *args, residual=res[:1])
        with pytest.raises(ValueError, match="lo <= hi"):
            _core.conv2d_fwd_bf16(x, packed, b, *args, lo=1.0, hi=0.0)
    with pytest.raises(ValueError, match="groups"):
        _core.Bf16ConvWeights(w, 3)
    with pytest.raises(ValueError, match="dtype"):
        _core.Bf16ConvWeights(w.astype(np.float64), 1)


@pytest.mark.parametrize("lv", LEVELS)
def test_nan_and_inf_propagate_and_every_output_is_written(lv):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 32, 9, 9)).astype(np.float32)
    w = rng.standard_normal((33, 32, 3, 3)).astype(np.float32)
    x[0, 5, 4, 4] = np.nan
    x[0, 6, 0, 0] = np.inf
    _core.set_poison(True)
    try:
        with level(lv):
            y = conv2d(x, w, padding=1, precision="bfloat16")
    finally:
        _core.set_poison(False)
    assert np.isnan(y[:, :, 3:6, 3:6]).all()
    touched = np.zeros((9, 9), bool)
    touched[3:6, 3:6] = True
    touched[0:2, 0:2] = True  # the infinity (NaN where +inf meets -inf weights)
    assert np.isfinite(y[:, :, ~touched]).all()


@pytest.mark.skipif(not NATIVE, reason="no bfloat16 kernel on this CPU")
def test_calls_from_several_threads():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 32, 16, 16)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    want = conv2d(x, w, padding=1, precision="bfloat16")
    got, errors = [], []

    def work():
        try:
            for _ in range(20):
                got.append(conv2d(x, w, padding=1, precision="bfloat16"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(got) == 60
    assert all(np.array_equal(g, want) for g in got)


def test_process_default_precision():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    f32 = conv2d(x, w, padding=1)
    bf = conv2d(x, w, padding=1, precision="bfloat16")
    assert pyconv.get_float32_precision() == "float32"
    with pyconv.float32_precision("bfloat16"):
        assert pyconv.get_float32_precision() == "bfloat16"
        assert np.array_equal(conv2d(x, w, padding=1), bf)
        assert np.array_equal(conv2d(x, w, padding=1, precision="float32"), f32)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        assert np.array_equal(conv2d(x64, w64, padding=1), conv2d(x64, w64, padding=1, precision="float32"))
        # recorded tensors (training) keep float32
        t = pyconv.tensor(x, requires_grad=True)
        assert np.array_equal(conv2d(t, pyconv.tensor(w), padding=1).numpy(), f32)
    assert pyconv.get_float32_precision() == "float32"
    with pytest.raises(RuntimeError):
        with pyconv.float32_precision("bfloat16"):
            raise RuntimeError("boom")
    assert pyconv.get_float32_precision() == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        pyconv.set_float32_precision("fp16")
    with pytest.raises(TypeError, match="precision must be a str"):
        pyconv.set_float32_precision(16)
    assert pyconv.set_float32_precision("float32") == "float32"


def test_bf16_argument_errors():
    x = np.ones((1, 4, 6, 6), np.float32)
    w = np.ones((8, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="bias must have shape"):
        conv2d(x, w, np.ones(3, np.float32), precision="bfloat16")
    with pytest.raises(TypeError, match="bias has dtype float64"):
        conv2d(x, w, np.ones(8, np.float64), precision="bfloat16")
    with pytest.raises(ValueError, match="channels"):
        conv2d(x[:, :3], w, precision="bfloat16")
    with pytest.raises(ValueError, match="algo"):
        conv2d(x, w, precision="bfloat16", algo="fft")
    assert conv2d(x[0], w, precision="bfloat16").shape == (8, 4, 4)  # unbatched


GRAD_CASES = [  # (x shape, w shape, stride, padding, dilation, groups, padding_mode)
    ((2, 32, 14, 14), (48, 32, 3, 3), 1, 1, 1, 1, "zeros"),     # the input gradient on the tiles
    ((1, 16, 9, 11), (40, 16, 5, 3), 1, (2, 0), 1, 1, "zeros"),  # flipped pads differ per side
    ((1, 32, 12, 12), (64, 32, 1, 1), 1, 0, 1, 1, "zeros"),
    ((2, 8, 11, 11), (16, 8, 3, 3), 2, 1, 1, 1, "zeros"),       # strided: the float32 kernels
    ((1, 16, 10, 10), (32, 8, 3, 3), 1, 1, 1, 2, "reflect"),    # grouped, mirrored border
    ((1, 32, 9, 9), (32, 32, 3, 3), 1, 2, 2, 1, "zeros"),       # dilated
]


def _bound(a, b, reference, k, *args):
    mag = reference(np.abs(_f64(a)), np.abs(_f64(b)), *args)
    return 4 * k * 2.0**-24 * mag + 1e-30


@pytest.mark.parametrize("lv", LEVELS)
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: f"{c[0]}-{c[1]}-s{c[2]}-g{c[5]}-{c[6]}")
def test_gradients_against_the_rounded_reference(lv, case):
    xs, ws, st, pd, dl, g, mode = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    gy = rng.standard_normal(conv2d(x, w, None, st, pd, dl, g, padding_mode=mode).shape).astype(np.float32)
    gy0 = gy.copy()
    with level(lv):
        dx = conv2d_grad_input(gy, w, xs, st, pd, dl, g, padding_mode=mode, precision="bfloat16")
        dw = conv2d_grad_weight(x, gy, ws, st, pd, dl, g, padding_mode=mode, precision="bfloat16")
    assert np.array_equal(gy, gy0)
    rgy, rw, rx = _round_bf16(gy), _round_bf16(w), _round_bf16(x)
    want_dx = grad_input_reference(_f64(rgy), _f64(rw), xs, st, pd, dl, g, mode)
    want_dw = grad_weight_reference(_f64(rx), _f64(rgy), ws, st, pd, dl, g, mode)
    tol_dx = _bound(gy, w, lambda a, b, *r: grad_input_reference(a, b, xs, st, pd, dl, g, mode), ws[0] // g * ws[2] * ws[3])
    tol_dw = _bound(x, gy, lambda a, b, *r: grad_weight_reference(a, b, ws, st, pd, dl, g, mode), gy[0, 0].size * xs[0])
    assert dx.dtype == np.float32 and np.all(np.abs(dx - want_dx) <= tol_dx)
    assert dw.dtype == np.float32 and np.all(np.abs(dw - want_dw) <= tol_dw)


def test_gradient_precision_errors():
    x = np.ones((1, 4, 6, 6), np.float32)
    w = np.ones((8, 4, 3, 3), np.float32)
    gy = np.ones((1, 8, 4, 4), np.float32)
    with pytest.raises(ValueError, match="precision"):
        conv2d_grad_input(gy, w, x.shape, precision="half")
    with pytest.raises(ValueError, match="float32 weight"):
        conv2d_grad_input(gy.astype(np.float64), w.astype(np.float64), x.shape, precision="bfloat16")
    with pytest.raises(ValueError, match="float32 input"):
        conv2d_grad_weight(x.astype(np.float64), gy.astype(np.float64), w.shape, precision="bfloat16")
    with pytest.raises(ValueError, match="grad_output must have the output shape"):
        conv2d_grad_weight(x, gy[:, :, :3], w.shape, precision="bfloat16")
    # the process default leaves the gradients (and so training) in float32
    with pyconv.float32_precision("bfloat16"):
        assert np.array_equal(conv2d_grad_input(gy, w, x.shape), conv2d_grad_input(gy, w, x.shape, precision="float32"))


def _small_torch_model():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
            self.a = nn.Conv2d(32, 32, 3, padding=1)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)  # stays float32
            self.b = nn.Conv2d(32, 64, 1)
            self.fc = nn.Linear(64, 24)  # on the tiles too (24 outputs fill them)

        def forward(self, x):
            y = self.stem(x)
            y = torch.relu(self.a(y) + y)
            y = torch.clamp(self.b(self.dw(y)), 0, 6)
            return self.fc(y.mean((2, 3)))
    torch.manual_seed(0)
    return torch, Net().eval()


def test_graph_gives_big_spatial_convs_to_the_bfloat16_kernel():
    """A residual block over 64 channels on a 14x14 plane, one image: float32 runs its 3x3 convs on
    the blocked layout, bfloat16 on its own kernel (NCHW); both match the float64 model."""
    torch = pytest.importorskip("torch")
    import pyconv.torch as pt
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(64, 64, 3, padding=1)
            self.c2 = nn.Conv2d(64, 96, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(96, 96, 3, padding=1, groups=96)
            self.pw = nn.Conv2d(96, 32, 1)

        def forward(self, x):
            y = torch.relu(self.c1(x) + x)
            return self.pw(self.dw(torch.relu(self.c2(y))))
    torch.manual_seed(1)
    model = Block().eval()
    x = torch.randn(1, 64, 14, 14)
    with torch.no_grad():
        want = model.double()(x.double()).float()
    model.float()
    algos = {}
    for precision in ("float32", "bfloat16"):
        opt = pt.optimize(model, precision=precision)
        algos[precision] = {r["name"]: r["algorithm"] for r in opt.summary(x) if r["op"] == "Conv"}
        err = float((opt(x) - want).abs().max()) / float(want.abs().max())
        assert err <= (1e-4 if precision == "float32" else 3e-2), (precision, err)
    # c1 adds the NCHW input: NCHW itself
    assert list(algos["float32"].values()) == ["im2col", "nchwc", "nchwc", "nchwc"]
    kind = f"bfloat16 {_core.conv2d_bf16_kernel()}"
    assert list(algos["bfloat16"].values()) == ([kind, kind, "nchwc", "nchwc"] if NATIVE else
                                                 ["im2col", "nchwc", "nchwc", "nchwc"])


def test_torch_optimize_and_onnx_load_at_bfloat16(tmp_path):
    torch, model = _small_torch_model()
    import pyconv.torch as pt

    x = torch.randn(2, 3, 20, 20)
    f32 = pt.optimize(model)
    bf = pt.optimize(model, precision="bfloat16")
    assert "precision=bfloat16" in repr(bf)
    with torch.no_grad():
        want = model(x)
    y32, y16 = f32(x), bf(x)
    scale = float(want.abs().max())
    assert float((y32 - want).abs().max()) <= 1e-4 * scale
    assert 0 < float((y16 - want).abs().max()) <= 3e-2 * scale
    rows = [r for r in bf.summary(x) if r["op"] == "Conv"]
    native = [r["name"] for r in rows if r["algorithm"] == f"bfloat16 {_core.conv2d_bf16_kernel()}"]
    # the stem (3 channels: direct); never the depthwise one, nor `a` (float32 Winograd is faster)
    assert len(native) == (1 if NATIVE else 0)
    assert all(r["algorithm"] == "nchwc" for r in rows if r["groups"] > 1)
    with pytest.raises(ValueError, match="precision must be one of"):
        pt.optimize(model, precision="int8")

    pytest.importorskip("onnx")
    import pyconv.onnx as pox

    path = tmp_path / "net.onnx"
    torch.onnx.export(model, x, str(path), opset_version=17, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    m16 = pox.load(path, precision="bfloat16")
    got = m16(x.numpy())
    assert 0 < np.max(np.abs(got - want.numpy())) <= 3e-2 * scale
    with pytest.raises(ValueError, match="precision must be one of"):
        pox.load(path, precision="fp8")
