"""The CS231n convolutional-networks lecture's worked examples.

Each is checked through the *_output_shape helpers and through the real op
(values against the reference on all of them; they are small enough).
"""

import numpy as np
import pytest

from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional


def data(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def conv_both(x_shape, w_shape, expected, stride=1, padding=0, seed=0, dtype=np.float32):
    """Check the output shape via conv2d_output_shape and via conv2d itself."""
    assert tuple(F.conv2d_output_shape(x_shape, w_shape, stride, padding)) == expected
    assert tuple(F.conv2d_output_shape(x_shape[1:], w_shape, stride, padding)) == expected[1:]
    x, w = data(x_shape, seed), data(w_shape, seed + 1)
    b = data(w_shape[:1], seed + 2)
    y = F.conv2d(x.astype(dtype), w.astype(dtype), b.astype(dtype), stride, padding)
    assert y.shape == expected
    check_close(y, ref.conv2d(x, w, b, stride, padding), dtype=dtype,
                k=w_shape[1] * w_shape[2] * w_shape[3], case=f"{x_shape} {w_shape}")
    return w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_32x32x3_with_one_5x5x3_filter_gives_28x28(dtype):
    # "32x32x3 image, 5x5x3 filter: convolve -> 28x28x1 activation map"
    conv_both((1, 3, 32, 32), (1, 3, 5, 5), (1, 1, 28, 28), dtype=dtype)
    # "consider a second, green filter" / six filters -> 28x28x6
    conv_both((1, 3, 32, 32), (6, 3, 5, 5), (1, 6, 28, 28), seed=3, dtype=dtype)


def test_conv_layers_stack_32_28_24():
    # "ConvNet is a sequence of conv layers": 32x32x3 -(6 5x5x3)-> 28x28x6 -(10 5x5x6)-> 24x24x10
    x = data((1, 3, 32, 32), 10)
    w1, w2 = data((6, 3, 5, 5), 11), data((10, 6, 5, 5), 12)
    h = F.relu(F.conv2d(x, w1))
    assert h.shape == (1, 6, 28, 28)
    y = F.conv2d(h, w2)
    assert y.shape == (1, 10, 24, 24)
    check_close(y, ref.conv2d(ref.relu(ref.conv2d(x, w1)), w2), dtype=np.float32, k=150, scale=10)


@pytest.mark.parametrize("stride,expected", [(1, 5), (2, 3), (3, 2)])
def test_7x7_input_3x3_filter(stride, expected):
    # "7x7 input, 3x3 filter: stride 1 -> 5x5, stride 2 -> 3x3"; stride 3 "doesn't fit":
    # (7-3)/3+1 = 2.33, which torch floors to 2
    conv_both((1, 1, 7, 7), (1, 1, 3, 3), (1, 1, expected, expected), stride=stride, seed=stride)


def test_output_size_formula_n_minus_f_over_s_plus_1():
    # "Output size: (N - F) / stride + 1" with N=7, F=3
    for s in (1, 2, 3):
        n_out = (7 - 3) // s + 1
        assert tuple(F.conv2d_output_shape((1, 1, 7, 7), (1, 1, 3, 3), s)) == (1, 1, n_out, n_out)


@pytest.mark.parametrize("f", [3, 5, 7])
def test_zero_pad_f_minus_1_over_2_preserves_size(f):
    # "In practice: common to zero pad the border ... with (F-1)/2 ... will preserve size spatially"
    conv_both((1, 3, 7, 7), (2, 3, f, f), (1, 2, 7, 7), stride=1, padding=(f - 1) // 2, seed=f)
    assert tuple(F.conv2d_output_shape((1, 3, 32, 32), (2, 3, f, f), 1, (f - 1) // 2)) == (1, 2, 32, 32)


def test_ten_5x5_filters_stride1_pad2_on_32x32x3():
    # "Input volume 32x32x3, 10 5x5 filters with stride 1, pad 2 -> output 32x32x10;
    #  number of parameters: each filter has 5*5*3 + 1 = 76 params (+1 for bias) -> 76*10 = 760"
    w, b = conv_both((1, 3, 32, 32), (10, 3, 5, 5), (1, 10, 32, 32), stride=1, padding=2, seed=5)
    assert w.size + b.size == (5 * 5 * 3 + 1) * 10 == 760
    assert tuple(F.conv2d_output_shape((3, 32, 32), (10, 3, 5, 5), 1, 2)) == (10, 32, 32)


def test_1x1_conv_56x56x64_with_32_filters():
    # "1x1 CONV with 32 filters: 56x56x64 -> 56x56x32 (each filter has size 1x1x64, 64-d dot product)"
    x_shape, w_shape = (1, 64, 56, 56), (32, 64, 1, 1)
    assert tuple(F.conv2d_output_shape(x_shape, w_shape)) == (1, 32, 56, 56)
    x, w = data(x_shape, 7), data(w_shape, 8)
    y = F.conv2d(x, w)
    assert y.shape == (1, 32, 56, 56)
    # a 1x1 conv is a 64-d dot product at every position
    expected = np.einsum("kc,nchw->nkhw", w[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    check_close(y, expected, dtype=np.float32, k=64)
    check_close(y, ref.conv2d(x, w), dtype=np.float32, k=64)


def test_max_pool_2x2_stride2_224x224x64():
    # "Pooling layer: 224x224x64 -> pool (2x2 filters, stride 2) -> 112x112x64"
    x_shape = (1, 64, 224, 224)
    assert tuple(F.pool2d_output_shape(x_shape, 2, 2)) == (1, 64, 112, 112)
    assert tuple(F.pool2d_output_shape(x_shape[1:], 2, 2)) == (64, 112, 112)
    x = data(x_shape, 9)
    y, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    assert y.shape == idx.shape == (1, 64, 112, 112)
    y_ref, idx_ref = ref.max_pool2d(x, 2, 2, return_indices=True)
    check_close(y, y_ref, dtype=np.float32)
    np.testing.assert_array_equal(idx, idx_ref)
    # non-overlapping windows: each window's max is a reshape-max
    np.testing.assert_array_equal(y, x.reshape(1, 64, 112, 2, 112, 2).max(axis=(3, 5)))


def test_max_pool_single_depth_slice_example():
    # the lecture's 4x4 single depth slice, "max pool with 2x2 filters and stride 2"
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=np.float64)
    y, idx = F.max_pool2d(x[None, None], 2, 2, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(idx[0, 0], [[5, 7], [8, 15]])
    g = F.max_pool2d_grad(np.ones((1, 1, 2, 2)), x[None, None], 2, 2)
    expected = np.zeros((4, 4))
    expected[1, 1] = expected[1, 3] = expected[2, 0] = expected[3, 3] = 1
    np.testing.assert_array_equal(g[0, 0], expected)


def test_conv_layer_summary_formulas():
    # "Accepts W1 x H1 x D1, K filters, extent F, stride S, padding P:
    #  W2 = (W1 - F + 2P)/S + 1, H2 = (H1 - F + 2P)/S + 1, D2 = K; (F*F*D1 + 1)*K params"
    for (w1, h1, d1, k, f, s, p) in [(32, 32, 3, 10, 5, 1, 2), (227, 227, 3, 96, 11, 4, 0),
                                     (32, 32, 3, 16, 3, 1, 1), (32, 32, 3, 8, 1, 1, 0), (64, 64, 3, 4, 3, 2, 1)]:
        out = tuple(F.conv2d_output_shape((2, d1, h1, w1), (k, d1, f, f), s, p))
        assert out == (2, k, (h1 - f + 2 * p) // s + 1, (w1 - f + 2 * p) // s + 1)
    # AlexNet's first layer: 227x227x3, 96 11x11 filters stride 4 -> 55x55x96, 35K params
    assert tuple(F.conv2d_output_shape((3, 227, 227), (96, 3, 11, 11), 4, 0)) == (96, 55, 55)
    assert (11 * 11 * 3 + 1) * 96 == 34944
