"""The training step's elementwise kernels (relu, relu_grad, conv2d_grad_bias) and max pooling
without indices: against numpy, on every ISA, for odd layouts, and independent of threads."""

import numpy as np
import pytest

import cases
from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DTYPES = cases.DTYPES
DT_IDS = ["f32", "f64"]
SPECIALS = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf, 1e-30, -1e-30, 3.5, -np.nan])
# Around every vector width and unroll (4..64 lanes), plus sizes that wake a second thread.
SIZES = [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 70001, 300003]


def data(n, seed, dtype):
    x = np.random.default_rng(seed).standard_normal(n)
    x[: min(n, SPECIALS.size)] = SPECIALS[: min(n, SPECIALS.size)]
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n", SIZES)
def test_relu_and_grad_match_numpy(n, dtype, isa, poison):
    x, g = data(n, n, dtype), data(n, n + 1, dtype)[::-1].copy()
    x0, g0 = x.copy(), g.copy()
    y = F.relu(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, ref.relu(x).astype(dtype))
    assert not np.signbit(y[~np.isnan(y)]).any()  # -0 gives +0
    dx = F.relu_grad(g, x)
    np.testing.assert_array_equal(dx, ref.relu_grad(g, x).astype(dtype))
    np.testing.assert_array_equal(F.relu_grad(g, y), dx)  # the output gives the same mask (autograd)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_relu_layouts_and_read_only(dtype):
    x = data(2 * 3 * 40, 5, dtype).reshape(2, 3, 40)
    g = data(x.size, 6, dtype).reshape(x.shape)
    expected_y, expected_dx = F.relu(x), F.relu_grad(g, x)
    for lay in (lambda a: a[:, :, ::2], lambda a: np.asfortranarray(a), lambda a: a.transpose(2, 0, 1)):
        xs, gs = lay(x), lay(g)
        np.testing.assert_array_equal(F.relu(xs), lay(expected_y))
        np.testing.assert_array_equal(F.relu_grad(gs, xs), lay(expected_dx))
    ro, gro = x.copy(), g.copy()
    ro.flags.writeable = gro.flags.writeable = False
    np.testing.assert_array_equal(F.relu(ro), expected_y)
    np.testing.assert_array_equal(F.relu_grad(gro, ro), expected_dx)
    np.testing.assert_array_equal(F.relu(x[0, 0, 0]), expected_y[0, 0, 0])  # 0-d


def test_relu_kernels_do_not_depend_on_threads():
    x = data(300003, 1, np.float32)
    g = data(300003, 2, np.float32)
    prev = pyconv.get_num_threads()
    try:
        out = []
        for t in (1, 2, 3):
            pyconv.set_num_threads(t)
            out.append((F.relu(x), F.relu_grad(g, x), F.conv2d_grad_bias(g[:300000].reshape(10, 30, 25, 40))))
    finally:
        pyconv.set_num_threads(prev)
    for o in out[1:]:
        for a, b in zip(o, out[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (1, 1, 1, 1), (2, 3, 5, 7), (3, 2, 8, 8), (4, 5, 16, 16),
                                   (2, 7, 1, 67), (64, 16, 32, 32), (3, 4, 5)], ids=str)
def test_conv2d_grad_bias_matches_reference(shape, dtype, isa, poison):
    g = data(int(np.prod(shape)), 9, dtype).reshape(shape)
    g[np.isnan(g) | np.isinf(g)] = 0.5
    g0 = g.copy()
    db = F.conv2d_grad_bias(g)
    check_close(db, ref.conv2d_grad_bias(g.astype(np.float64)), dtype=dtype, k=max(1, g.size // shape[-3]))
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(F.conv2d_grad_bias(np.asfortranarray(g)), db)


def test_conv2d_grad_bias_propagates_nan_and_inf():
    g = np.zeros((2, 3, 4, 4), np.float32)
    g[1, 0, 2, 3] = np.nan
    g[0, 2, 0, 0] = np.inf
    db = F.conv2d_grad_bias(g)
    assert np.isnan(db[0]) and db[1] == 0 and db[2] == np.inf


def _pool_geometries():
    """(k, s, p, d) x (h, w) pairs whose window fits the padded input."""
    out = []
    for geo in [(2, 2, 0, 1), (3, 2, 1, 1), (2, 1, 0, 1), (3, 3, 0, 1), (3, 2, 0, 2), (4, 4, 2, 1), (5, 1, 2, 1)]:
        k, s, p, d = geo
        for hw in [(2, 2), (4, 4), (5, 9), (8, 8), (9, 17), (16, 16), (12, 40), (33, 70)]:
            if min(hw) + 2 * p - d * (k - 1) - 1 >= 0:
                out.append(pytest.param(geo, hw, id="k{}s{}p{}d{}-{}x{}".format(*geo, *hw)))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("geo,hw", _pool_geometries())
def test_max_pool2d_without_indices_equals_with(geo, hw, dtype, isa, poison):
    k, s, p, d = geo
    x = data(3 * 5 * hw[0] * hw[1], hw[0] * 100 + hw[1], dtype).reshape(3, 5, *hw)
    x0 = x.copy()
    y, idx = F.max_pool2d(x, k, s, p, d, return_indices=True)
    y_only = F.max_pool2d(x, k, s, p, d)
    np.testing.assert_array_equal(y_only, y)
    flat = x.reshape(3, 5, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.reshape(3, 5, -1), -1).reshape(y.shape), y)
    np.testing.assert_array_equal(x, x0)
