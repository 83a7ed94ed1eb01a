"""precision="bfloat16" of conv2d: bf16-rounded operands, float32 accumulation."""
import numpy as np
import pytest

from pyconv.functional import conv2d
from pyconv.functional.conv import _round_bf16
from pyconv._reference import conv2d as conv2d_reference


def _bf16_f64(a):
    return _round_bf16(a).astype(np.float64)


def test_round_bf16_ties_to_even_and_specials():
    a = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, np.inf, -np.inf, 3.4e38],
                 dtype=np.float32)
    r = _round_bf16(a)
    assert list(r[:5]) == [1.0, 1.0, 1 + 4 * 2**-8, 1 + 2 * 2**-8, -2.5]
    assert r[5] == np.inf and r[6] == -np.inf and r[7] == np.inf
    nan = np.array([0x7F800001], dtype=np.uint32).view(np.float32)
    assert np.isnan(_round_bf16(nan)).all()


SHAPES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 3, 11, 9), (5, 3, 3, 3), 1, 1, 1, 1),
    ((1, 37, 8, 7), (1, 37, 1, 1), 1, 0, 1, 1),   # K ragged, N=1
    ((2, 6, 13, 13), (4, 3, 3, 3), 2, 1, 1, 2),   # groups, stride 2
    ((1, 5, 12, 12), (7, 5, 3, 3), 1, 2, 2, 1),   # dilation
    ((1, 64, 9, 9), (33, 64, 3, 3), 1, 1, 1, 1),
]


@pytest.mark.parametrize("xs,ws,st,pd,dl,g", SHAPES)
@pytest.mark.parametrize("algo", ["auto", "im2col", "direct", "winograd"])
def test_bf16_against_reference(xs, ws, st, pd, dl, g, algo):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    x0, w0 = x.copy(), w.copy()
    y = conv2d(x, w, b, st, pd, dl, g, algo=algo, precision="bfloat16")
    assert y.dtype == np.float32
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
    scale = conv2d_reference(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), None, st, pd, dl, g)
    scale = np.maximum(scale, 1e-30)
    rounded = conv2d_reference(_bf16_f64(x), _bf16_f64(w), b.astype(np.float64), st, pd, dl, g)
    exact = conv2d_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), st, pd, dl, g)
    tol = 1e-4 if algo == "winograd" else 1e-5
    assert np.max(np.abs(y - rounded) / scale) < tol
    assert np.max(np.abs(y - exact) / scale) < 2 * 2**-8
    # Not the float32 result: the operands really were rounded.
    assert not np.array_equal(y, conv2d(x, w, b, st, pd, dl, g, algo=algo))


def test_bf16_bad_precision_and_float64():
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="precision"):
        conv2d(x, w, precision="half")
    with pytest.raises(ValueError, match="precision='bfloat16'"):
        conv2d(x.astype(np.float64), w.astype(np.float64), precision="bfloat16")


def test_float32_default_unchanged():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 7, 7)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    assert np.array_equal(conv2d(x, w), conv2d(x, w, precision="float32"))
