"""Checks of the numpy reference itself (needs only numpy; torch where noted).

* forward conv against a naive 7-loop implementation with explicit index maps;
* every gradient against centred finite differences (float64, tiny shapes);
* everything against torch (semantic authority) when torch is importable,
  including max-pool tie / NaN / -inf rules and the avg-pool divisor.
"""

import itertools
import zlib

import numpy as np
import pytest

import torch_oracles as oracle
from pyconv import _reference as ref

MODES = ref.PADDING_MODES


def rng_for(tag):
    return np.random.default_rng(zlib.crc32(repr(tag).encode()))


# --------------------------------------------------------------------------
# naive conv: explicit loops and explicit padding index arithmetic
# --------------------------------------------------------------------------
def _src(i, n, mode):
    """Input index read by padded-coordinate index i (relative to input), or None."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    raise AssertionError(mode)


def naive_conv2d(x, w, b, stride, padding, dilation, groups, mode):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    sh, sw = ref.pair(stride)
    dh, dw = ref.pair(dilation)
    t, bo, l, r = ref.conv_padding(padding, (kh, kw), dilation)
    oh = (H + t + bo - dh * (kh - 1) - 1) // sh + 1
    ow = (W + l + r - dw * (kw - 1) - 1) // sw + 1
    Og = O // groups
    y = np.zeros((N, O, oh, ow))
    for n, o, i, j in itertools.product(range(N), range(O), range(oh), range(ow)):
        g = o // Og
        acc = 0.0 if b is None else b[o]
        for c, p, q in itertools.product(range(Cg), range(kh), range(kw)):
            hi = _src(i * sh - t + p * dh, H, mode)
            wi = _src(j * sw - l + q * dw, W, mode)
            if hi is None or wi is None:
                continue
            acc += x[n, g * Cg + c, hi, wi] * w[o, c, p, q]
        y[n, o, i, j] = acc
    return y


NAIVE_CASES = [
    # (N, C, H, W, O, kh, kw, stride, padding, dilation, groups)
    (1, 2, 5, 6, 3, 3, 3, 1, 1, 1, 1),
    (2, 4, 6, 5, 4, 2, 3, (2, 1), (1, 2), (1, 2), 2),
    (1, 3, 7, 7, 6, 3, 2, 1, "same", 2, 3),
    (2, 2, 5, 4, 2, 4, 3, 1, "same", 1, 1),
    (1, 2, 6, 7, 2, 3, 3, (1, 3), "valid", 1, 2),
    (1, 1, 4, 4, 1, 3, 3, 2, 3, 1, 1),          # pad of 3 == input size - 1
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", NAIVE_CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"_k{c[5]}{c[6]}_s{c[7]}_p{c[8]}_d{c[9]}_g{c[10]}")
def test_conv_forward_matches_naive(case, mode):
    N, C, H, W, O, kh, kw, s, p, d, g = case
    pads = ref.conv_padding(p, (kh, kw), d)
    if mode == "reflect" and (max(pads[:2]) >= H or max(pads[2:]) >= W):
        pytest.skip("reflect needs pad < size")
    rng = rng_for((case, mode))
    x = rng.uniform(-1, 1, (N, C, H, W))
    w = rng.uniform(-1, 1, (O, C // g, kh, kw))
    b = rng.uniform(-1, 1, O)
    got = ref.conv2d(x, w, b, s, p, d, g, mode)
    np.testing.assert_allclose(got, naive_conv2d(x, w, b, s, p, d, g, mode), rtol=1e-12, atol=1e-12)
    assert got.shape == ref.conv2d_output_shape(x.shape, w.shape, s, p, d)


def test_pad_index_map_matches_np_pad_semantics():
    # padded arange must equal the explicit formula used by the naive conv
    for mode, n, before, after in [("reflect", 4, 3, 2), ("replicate", 3, 5, 4),
                                   ("circular", 5, 5, 3), ("zeros", 3, 2, 2)]:
        got = ref.pad_index_map(n, before, after, mode)
        exp = [(-1 if _src(i, n, mode) is None else _src(i, n, mode))
               for i in range(-before, n + after)]
        assert got.tolist() == exp, mode


# --------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------
def fd_grad(loss, a, h=1e-6):
    """Centred finite-difference gradient of scalar loss(a) w.r.t. array a."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        lp = loss(a)
        a[i] = old - h
        lm = loss(a)
        a[i] = old
        g[i] = (lp - lm) / (2 * h)
    return g


FD_CONV_CASES = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 2, 5, 4), (3, 2, 3, 2), 1, 1, 1, 1),
    ((1, 4, 6, 5), (4, 2, 2, 3), (2, 1), (2, 1), (1, 2), 2),
    ((1, 3, 5, 6), (3, 1, 3, 3), 1, "same", (2, 1), 3),
    ((2, 2, 4, 5), (2, 2, 2, 2), 1, "same", 1, 1),
    ((1, 2, 7, 6), (2, 2, 3, 3), (3, 2), "valid", 1, 1),
    ((3, 5, 4), (2, 3, 2, 2), 2, (1, 0), 1, 1),          # 3-D unbatched
]


def _fd_id(c):
    return f"x{'x'.join(map(str, c[0]))}_w{'x'.join(map(str, c[1]))}_s{c[2]}_p{c[3]}_d{c[4]}_g{c[5]}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FD_CONV_CASES, ids=_fd_id)
def test_conv_gradients_by_finite_differences(case, mode):
    xs, ws, s, p, d, g = case
    pads = ref.conv_padding(p, ws[2:], d)
    if mode == "reflect" and (max(pads[:2]) >= xs[-2] or max(pads[2:]) >= xs[-1]):
        pytest.skip("reflect needs pad < size")
    rng = rng_for((case, mode))
    x = rng.uniform(-1, 1, xs)
    w = rng.uniform(-1, 1, ws)
    b = rng.uniform(-1, 1, ws[0])
    y = ref.conv2d(x, w, b, s, p, d, g, mode)
    gy = rng.uniform(-1, 1, y.shape)

    def loss_x(a):
        return float((ref.conv2d(a, w, b, s, p, d, g, mode) * gy).sum())

    def loss_w(a):
        return float((ref.conv2d(x, a, b, s, p, d, g, mode) * gy).sum())

    def loss_b(a):
        return float((ref.conv2d(x, w, a, s, p, d, g, mode) * gy).sum())

    np.testing.assert_allclose(ref.conv2d_grad_input(gy, w, xs, s, p, d, g, mode),
                               fd_grad(loss_x, x.copy()), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(ref.conv2d_grad_weight(x, gy, ws, s, p, d, g, mode),
                               fd_grad(loss_w, w.copy()), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(ref.conv2d_grad_bias(gy), fd_grad(loss_b, b.copy()),
                               rtol=1e-7, atol=1e-8)


POOL_FD_CASES = [
    # (x shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 2, 5, 6), 2, None, 0, 1, False),
    ((1, 2, 5, 7), (3, 2), (2, 1), (1, 1), 1, True),
    ((1, 1, 6, 6), 3, 2, 1, 2, True),
    ((2, 5, 4), (2, 3), 3, (1, 0), 1, True),      # unbatched
]


@pytest.mark.parametrize("case", POOL_FD_CASES, ids=str)
def test_max_pool_grad_by_finite_differences(case):
    xs, k, s, p, d, cm = case
    x = rng_for(case).permutation(np.prod(xs)).reshape(xs) / 7.0  # distinct: no ties
    y = ref.max_pool2d(x, k, s, p, d, cm)
    gy = rng_for(("gy", case)).uniform(-1, 1, y.shape)

    def loss(a):
        return float((ref.max_pool2d(a, k, s, p, d, cm) * gy).sum())

    fd = fd_grad(loss, x.copy(), h=1e-4)
    np.testing.assert_allclose(ref.max_pool2d_grad(gy, x, k, s, p, d, cm), fd, atol=1e-9)
    _, idx = ref.max_pool2d(x, k, s, p, d, cm, return_indices=True)
    np.testing.assert_allclose(ref.max_pool2d_grad(gy, x, k, s, p, d, cm, indices=idx), fd, atol=1e-9)


@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5), (False, -3)])
@pytest.mark.parametrize("case", POOL_FD_CASES, ids=str)
def test_avg_pool_grad_by_finite_differences(case, cip, div):
    xs, k, s, p, d, cm = case
    rng = rng_for((case, cip, div))
    x = rng.uniform(-1, 1, xs)
    y = ref.avg_pool2d(x, k, s, p, cm, cip, div)
    gy = rng.uniform(-1, 1, y.shape)

    def loss(a):
        return float((ref.avg_pool2d(a, k, s, p, cm, cip, div) * gy).sum())

    np.testing.assert_allclose(ref.avg_pool2d_grad(gy, xs, k, s, p, cm, cip, div),
                               fd_grad(loss, x.copy()), rtol=1e-7, atol=1e-8)


def test_relu_and_linear_by_finite_differences():
    rng = rng_for("relu-linear")
    x = rng.uniform(-1, 1, (3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5                      # keep away from the kink
    gy = rng.uniform(-1, 1, x.shape)
    np.testing.assert_allclose(
        ref.relu_grad(gy, x), fd_grad(lambda a: float((ref.relu(a) * gy).sum()), x.copy()),
        atol=1e-8)
    xl = rng.uniform(-1, 1, (2, 3, 5))
    w = rng.uniform(-1, 1, (4, 5))
    b = rng.uniform(-1, 1, 4)
    gl = rng.uniform(-1, 1, (2, 3, 4))
    f = lambda xx, ww, bb: float((ref.linear(xx, ww, bb) * gl).sum())  # noqa: E731
    np.testing.assert_allclose(ref.linear_grad_input(gl, w), fd_grad(lambda a: f(a, w, b), xl.copy()), atol=1e-8)
    np.testing.assert_allclose(ref.linear_grad_weight(xl, gl), fd_grad(lambda a: f(xl, a, b), w.copy()), atol=1e-8)
    np.testing.assert_allclose(ref.linear_grad_bias(gl), fd_grad(lambda a: f(xl, w, a), b.copy()), atol=1e-8)


def test_relu_special_values():
    x = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf])
    y = ref.relu(x)
    assert np.isnan(y[0]) and y[1:].tolist() == [0, 0, 0, 2, np.inf, 0]
    g = ref.relu_grad(np.array([1.0, np.nan, np.nan, 1.0, 3.0, 4.0, 5.0]), x)
    assert g.tolist() == [1.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0]


# --------------------------------------------------------------------------
# against torch
# --------------------------------------------------------------------------
TORCH_CONV_CASES = FD_CONV_CASES + [
    ((2, 4, 9, 8), (6, 2, 3, 3), 2, (1, 2), (2, 1), 2),
    ((1, 3, 8, 9), (4, 3, 4, 2), 1, "same", (1, 3), 1),      # even kernel, asym same
    ((2, 4, 7, 7), (8, 1, 5, 5), 1, 2, 1, 4),                 # depthwise x2
    ((1, 2, 6, 7), (3, 2, 1, 1), 3, 0, 1, 1),
    ((1, 2, 5, 5), (2, 2, 5, 5), 1, 0, 1, 1),                 # kernel == input
    ((1, 1, 4, 6), (1, 1, 3, 3), 1, (3, 4), 1, 1),            # pad == size - 1 / size
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TORCH_CONV_CASES, ids=_fd_id)
def test_conv_against_torch(case, mode):
    pytest.importorskip("torch")
    xs, ws, s, p, d, g = case
    pads = ref.conv_padding(p, ws[2:], d)
    if mode == "reflect" and (max(pads[:2]) >= xs[-2] or max(pads[2:]) >= xs[-1]):
        pytest.skip("reflect needs pad < size")
    if mode == "circular" and (max(pads[:2]) > xs[-2] or max(pads[2:]) > xs[-1]):
        pytest.skip("circular needs pad <= size")
    rng = rng_for(("torch", case, mode))
    x = rng.uniform(-1, 1, xs)
    w = rng.uniform(-1, 1, ws)
    b = rng.uniform(-1, 1, ws[0])
    y = ref.conv2d(x, w, b, s, p, d, g, mode)
    gy = rng.uniform(-1, 1, y.shape)
    ty, tgx, tgw, tgb = oracle.torch_conv2d(x, w, b, gy, s, p, d, g, mode)
    assert y.shape == ty.shape == ref.conv2d_output_shape(xs, ws, s, p, d)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.conv2d_grad_input(gy, w, xs, s, p, d, g, mode), tgx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.conv2d_grad_weight(x, gy, ws, s, p, d, g, mode), tgw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.conv2d_grad_bias(gy), tgb, rtol=1e-12, atol=1e-12)


POOL_GEOMS = [(k, s, p, d) for k in (1, 2, 3, 4) for s in (1, 2, 3)
              for p in range(k // 2 + 1) for d in (1, 2)]


@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
@pytest.mark.parametrize("geom", POOL_GEOMS, ids=lambda g: "k{}s{}p{}d{}".format(*g))
def test_pool_sweep_against_torch(geom, ceil_mode):
    torch = pytest.importorskip("torch")
    k, s, p, d = geom
    for H in range(1, 10):
        W = (H * 4) % 9 + 1
        x = rng_for((geom, H)).permutation(2 * 3 * H * W).reshape(2, 3, H, W) / 4.0 - 3.0
        oh, ow = ref.pool2d_output_shape((H, W), k, s, p, d, ceil_mode)
        if oh < 1 or ow < 1:
            with pytest.raises(RuntimeError):
                torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode)
            continue
        msg = f"H={H} W={W}"
        y, idx = ref.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        gy = rng_for(("gy", geom, H)).uniform(-1, 1, y.shape)
        # a window with no in-bounds element (dilation only) makes torch return
        # an out-of-plane index and abort in backward: compare values only
        empty = ref.max_pool2d_has_empty_window((H, W), k, s, p, d, ceil_mode)
        ty, tidx, tgx = oracle.torch_max_pool2d(x, None if empty else gy, k, s, p, d, ceil_mode)
        assert y.shape == ty.shape, msg
        np.testing.assert_array_equal(y, ty, err_msg=msg)
        if not empty:
            np.testing.assert_array_equal(idx, tidx, err_msg=msg)
            np.testing.assert_allclose(ref.max_pool2d_grad(gy, x, k, s, p, d, ceil_mode), tgx,
                                       atol=1e-14, err_msg=msg)
        if d != 1:
            continue
        for cip, div in [(True, None), (False, None), (True, 3), (False, -2)]:
            a = ref.avg_pool2d(x, k, s, p, ceil_mode, cip, div)
            ta, tga = oracle.torch_avg_pool2d(x, gy, k, s, p, ceil_mode, cip, div)
            m2 = f"{msg} cip={cip} div={div}"
            np.testing.assert_allclose(a, ta, rtol=1e-13, atol=1e-13, err_msg=m2)
            np.testing.assert_allclose(ref.avg_pool2d_grad(gy, x.shape, k, s, p, ceil_mode, cip, div),
                                       tga, rtol=1e-13, atol=1e-13, err_msg=m2)


SPECIAL_POOL_INPUTS = {
    "ties": np.array([[3.0, 3.0, 1.0, 3.0], [3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]]),
    "nan": np.array([[1.0, np.nan, 2.0, np.nan], [np.nan, 5.0, 1.0, 1.0], [9.0, 9.0, np.nan, 1.0]]),
    "neginf": np.full((3, 4), -np.inf),
    "neginf_and_nan": np.array([[-np.inf, -np.inf, np.nan, -np.inf], [-np.inf] * 4, [np.inf, np.nan, -np.inf, np.inf]]),
    "inf_ties": np.array([[np.inf, 1.0, np.inf, np.inf], [-1.0, np.inf, -np.inf, 0.0], [0.0, -0.0, 0.0, -0.0]]),
}


@pytest.mark.parametrize("geom", [(2, 1, 1, 1, True), (3, 1, 1, 1, False), (2, 2, 0, 1, True),
                                  ((3, 4), 1, (1, 2), 1, False), (2, 1, 1, 2, True)],
                         ids=str)
@pytest.mark.parametrize("name", list(SPECIAL_POOL_INPUTS))
def test_max_pool_special_values_against_torch(name, geom):
    pytest.importorskip("torch")
    k, s, p, d, cm = geom
    x = SPECIAL_POOL_INPUTS[name][None, None]
    y, idx = ref.max_pool2d(x, k, s, p, d, cm, return_indices=True)
    gy = np.arange(1.0, y.size + 1).reshape(y.shape)
    ty, tidx, tgx = oracle.torch_max_pool2d(x, gy, k, s, p, d, cm)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, tidx)
    np.testing.assert_array_equal(ref.max_pool2d_grad(gy, x, k, s, p, d, cm), tgx)


def test_max_pool_rules_explicit():
    # ties -> first, NaN -> last NaN, all -inf -> first in-bounds element
    x = np.array([[[[3.0, 3.0, np.nan, 1.0, np.nan, 2.0, -np.inf, -np.inf]]]])
    y, idx = ref.max_pool2d(x, (1, 2), return_indices=True)
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0].tolist() == [0, 2, 4, 6]
    y, idx = ref.max_pool2d(x, (1, 5), stride=1, return_indices=True)
    assert idx[0, 0, 0].tolist() == [4, 4, 4, 4]
    y, idx = ref.max_pool2d(x[..., 6:], (1, 2), stride=1, padding=(0, 1), return_indices=True)
    assert y.tolist() == [[[[-np.inf, -np.inf, -np.inf]]]] and idx[0, 0, 0].tolist() == [0, 0, 1]


@pytest.mark.parametrize("dims", [(8,), (2, 8), (2, 3, 8)], ids=str)
def test_relu_linear_against_torch(dims):
    torch = pytest.importorskip("torch")
    rng = rng_for(dims)
    x = rng.uniform(-1, 1, dims)
    x.flat[0], x.flat[1] = np.nan, 0.0
    w = rng.uniform(-1, 1, (5, 8))
    b = rng.uniform(-1, 1, 5)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    gy = rng.uniform(-1, 1, dims)
    gy.flat[2] = np.nan
    yt.backward(torch.tensor(gy))
    np.testing.assert_array_equal(ref.relu(x), yt.detach().numpy())
    np.testing.assert_array_equal(ref.relu_grad(gy, x), xt.grad.numpy())
    x[np.isnan(x)] = 0.25
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    lt = torch.nn.functional.linear(xt, wt, bt)
    gl = rng.uniform(-1, 1, lt.shape)
    lt.backward(torch.tensor(gl))
    np.testing.assert_allclose(ref.linear(x, w, b), lt.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(ref.linear_grad_input(gl, w), xt.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(ref.linear_grad_weight(x, gl), wt.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(ref.linear_grad_bias(gl), bt.grad.numpy(), rtol=1e-13)
