"""Obviously-correct float64 numpy reference implementations: what ``pyconv check`` and the tests
compare every kernel with.

Every function here mirrors one public function of ``pyconv.functional`` and
follows ``torch.nn.functional`` semantics.  Clarity comes first; speed only
matters enough for the test sweeps (tests/test_reference.py checks this module by finite
differences and against torch):

* convolutions pad explicitly with ``np.pad`` and loop over kernel taps
  ``(r, s)``, using strided slicing + einsum over everything else;
* convolution gradients accumulate into a *padded* gradient buffer and fold it
  back into the input through the same index map the padding uses;
* pooling loops over kernel taps (max) or over output positions (avg).

All results are float64.  3-D (unbatched CHW) inputs are accepted everywhere
and give 3-D results, like torch.
"""

import math
from dataclasses import dataclass

import numpy as np

from ._utils import DIRECTIONS, _pair, conv_out_size, same_pads

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# --------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------
def pair(v):
    """int or length-2 sequence -> tuple of two ints."""
    assert not isinstance(v, (tuple, list)) or len(v) == 2, v
    a, b = _pair(v)
    return int(a), int(b)


def conv_padding(padding, kernel_hw, dilation):
    """Resolve conv ``padding`` to (top, bottom, left, right).

    "valid" is no padding; "same" pads a total of dilation*(k-1) per dim, with
    total//2 on the top/left and the rest on the bottom/right (torch's rule).
    """
    kh, kw = kernel_hw
    dh, dw = pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        assert padding == "same", padding
        return same_pads(kh, dh) + same_pads(kw, dw)
    ph, pw = pair(padding)
    return ph, ph, pw, pw


def _batched(x):
    """Return (4-D float64 view of x, was_unbatched)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        return x[None], True
    assert x.ndim == 4, x.shape
    return x, False


def _unbatch(y, unbatched):
    return y[0] if unbatched else y


def pad2d(x, pads, mode):
    """Pad the last two dims of a 4-D array; pads = (top, bottom, left, right)."""
    t, b, l, r = pads
    width = ((0, 0), (0, 0), (t, b), (l, r))
    if mode == "zeros":
        return np.pad(x, width, mode="constant", constant_values=0.0)
    return np.pad(x, width, mode=_NP_PAD_MODE[mode])


def pad_index_map(size, before, after, mode):
    """For each padded position, the input position it reads (-1: zero pad).

    Built by padding ``arange(size)`` with the same np.pad mode the forward
    uses, so the backward fold is guaranteed to match the forward pad.
    """
    idx = np.arange(size)
    if mode == "zeros":
        return np.pad(idx, (before, after), mode="constant", constant_values=-1)
    return np.pad(idx, (before, after), mode=_NP_PAD_MODE[mode])


def unpad2d_fold(gxp, shape_hw, pads, mode):
    """Adjoint of pad2d: fold a padded gradient back onto the input grid."""
    H, W = shape_hw
    t, b, l, r = pads
    mh = pad_index_map(H, t, b, mode)
    mw = pad_index_map(W, l, r, mode)
    N, C = gxp.shape[:2]
    # fold rows
    tmp = np.zeros((N, C, H, gxp.shape[3]))
    keep = mh >= 0
    np.add.at(tmp, (slice(None), slice(None), mh[keep]), gxp[:, :, keep, :])
    # fold columns
    gx = np.zeros((N, C, H, W))
    keep = mw >= 0
    np.add.at(gx, (slice(None), slice(None), slice(None), mw[keep]), tmp[:, :, :, keep])
    return gx


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1):
    """Shape of conv2d's output (same ndim as input_shape)."""
    kh, kw = weight_shape[-2:]
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    t, b, l, r = conv_padding(padding, (kh, kw), dilation)
    H, W = input_shape[-2:]
    oh = conv_out_size(H, kh, sh, t, b, dh)
    ow = conv_out_size(W, kw, sw, l, r, dw)
    lead = tuple(input_shape[:-3])
    return lead + (weight_shape[0], oh, ow)


def _tap_slice(start, stride, count):
    return slice(start, start + stride * (count - 1) + 1, stride)


# --------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------
def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    N, C, H, W = x_shape
    O, Cg, kh, kw = w_shape
    assert C == Cg * groups and O % groups == 0, (x_shape, w_shape, groups)
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pads = conv_padding(padding, (kh, kw), dilation)
    t, b, l, r = pads
    oh = conv_out_size(H, kh, sh, t, b, dh)
    ow = conv_out_size(W, kw, sw, l, r, dw)
    assert oh >= 1 and ow >= 1, "kernel larger than padded input"
    return dict(N=N, C=C, H=H, W=W, O=O, Cg=Cg, Og=O // groups, G=groups,
                kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, pads=pads, oh=oh, ow=ow)


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    x, unb = _batched(x)
    w = np.asarray(w, dtype=np.float64)
    g = _conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    xp = pad2d(x, g["pads"], padding_mode)
    G, Cg, Og = g["G"], g["Cg"], g["Og"]
    wg = w.reshape(G, Og, Cg, g["kh"], g["kw"])
    out = np.zeros((g["N"], G, Og, g["oh"], g["ow"]))
    for r in range(g["kh"]):
        rows = _tap_slice(r * g["dh"], g["sh"], g["oh"])
        for s in range(g["kw"]):
            cols = _tap_slice(s * g["dw"], g["sw"], g["ow"])
            xs = xp[:, :, rows, cols].reshape(g["N"], G, Cg, g["oh"], g["ow"])
            out += np.einsum("ngchw,goc->ngohw", xs, wg[:, :, :, r, s])
    out = out.reshape(g["N"], g["O"], g["oh"], g["ow"])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return _unbatch(out, unb)


def conv2d_grad_input(gy, w, input_shape, stride=1, padding=0, dilation=1,
                      groups=1, padding_mode="zeros"):
    gy, unb = _batched(gy)
    w = np.asarray(w, dtype=np.float64)
    in4 = tuple(input_shape) if len(input_shape) == 4 else (1,) + tuple(input_shape)
    g = _conv_geometry(in4, w.shape, stride, padding, dilation, groups)
    assert gy.shape == (g["N"], g["O"], g["oh"], g["ow"]), gy.shape
    t, b, l, r_ = g["pads"]
    G, Cg, Og = g["G"], g["Cg"], g["Og"]
    wg = w.reshape(G, Og, Cg, g["kh"], g["kw"])
    gyg = gy.reshape(g["N"], G, Og, g["oh"], g["ow"])
    gxp = np.zeros((g["N"], G, Cg, g["H"] + t + b, g["W"] + l + r_))
    for r in range(g["kh"]):
        rows = _tap_slice(r * g["dh"], g["sh"], g["oh"])
        for s in range(g["kw"]):
            cols = _tap_slice(s * g["dw"], g["sw"], g["ow"])
            gxp[:, :, :, rows, cols] += np.einsum("ngohw,goc->ngchw", gyg, wg[:, :, :, r, s])
    gxp = gxp.reshape(g["N"], g["C"], gxp.shape[3], gxp.shape[4])
    gx = unpad2d_fold(gxp, (g["H"], g["W"]), g["pads"], padding_mode)
    return _unbatch(gx, unb)


def conv2d_grad_weight(x, gy, weight_shape, stride=1, padding=0, dilation=1,
                       groups=1, padding_mode="zeros"):
    x, unb = _batched(x)
    gy, _ = _batched(gy)
    g = _conv_geometry(x.shape, tuple(weight_shape), stride, padding, dilation, groups)
    assert gy.shape == (g["N"], g["O"], g["oh"], g["ow"]), gy.shape
    xp = pad2d(x, g["pads"], padding_mode)
    G, Cg, Og = g["G"], g["Cg"], g["Og"]
    gyg = gy.reshape(g["N"], G, Og, g["oh"], g["ow"])
    gw = np.zeros((G, Og, Cg, g["kh"], g["kw"]))
    for r in range(g["kh"]):
        rows = _tap_slice(r * g["dh"], g["sh"], g["oh"])
        for s in range(g["kw"]):
            cols = _tap_slice(s * g["dw"], g["sw"], g["ow"])
            xs = xp[:, :, rows, cols].reshape(g["N"], G, Cg, g["oh"], g["ow"])
            gw[:, :, :, r, s] = np.einsum("ngchw,ngohw->goc", xs, gyg)
    return gw.reshape(tuple(weight_shape))


def conv2d_grad_bias(gy):
    gy = np.asarray(gy, dtype=np.float64)
    axes = tuple(i for i in range(gy.ndim) if i != gy.ndim - 3)
    return gy.sum(axis=axes)


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------
def pool_out_size(size, k, stride, pad, dilation, ceil_mode):
    """torch's pooling_output_shape (symmetric padding)."""
    num = size + 2 * pad - dilation * (k - 1) - 1
    if ceil_mode:
        out = -(-num // stride) + 1          # ceil division
        # the last window must start inside the input or the left padding
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = num // stride + 1
    return out


def _pool_params(kernel_size, stride, padding, dilation):
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None or (
        isinstance(stride, (tuple, list)) and len(stride) == 0) else stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    return kh, kw, sh, sw, ph, pw, dh, dw


def pool2d_output_shape(input_shape, kernel_size, stride=None, padding=0,
                        dilation=1, ceil_mode=False):
    kh, kw, sh, sw, ph, pw, dh, dw = _pool_params(kernel_size, stride, padding, dilation)
    H, W = input_shape[-2:]
    return tuple(input_shape[:-2]) + (pool_out_size(H, kh, sh, ph, dh, ceil_mode),
                                      pool_out_size(W, kw, sw, pw, dw, ceil_mode))


def _first_in_bounds(start, dilation):
    """First tap position >= 0 of a window starting at `start` (torch's ih0)."""
    while start < 0:
        start += dilation
    return start


def max_pool2d_has_empty_window(input_hw, kernel_size, stride=None, padding=0,
                                dilation=1, ceil_mode=False):
    """True if some pooling window contains no in-bounds element.

    (Possible only with dilation > 1; torch then returns an index outside the
    plane, so such configurations are left out of the index comparisons.)
    """
    kh, kw, sh, sw, ph, pw, dh, dw = _pool_params(kernel_size, stride, padding, dilation)
    H, W = input_hw
    oh = pool_out_size(H, kh, sh, ph, dh, ceil_mode)
    ow = pool_out_size(W, kw, sw, pw, dw, ceil_mode)
    for size, n, k, s, p, d in ((H, oh, kh, sh, ph, dh), (W, ow, kw, sw, pw, dw)):
        for o in range(n):
            if not any(0 <= o * s - p + t * d < size for t in range(k)):
                return True
    return False


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode=False, return_indices=False):
    """Max pool with torch's rules, written as torch's sequential scan.

    For each window the taps are visited in row-major order and the running
    (max, index) is replaced when ``val > max or isnan(val)``; it starts as
    (-inf, first in-bounds element).  Hence: ties -> first max, NaN -> last
    NaN, all -inf -> first in-bounds element.
    """
    x, unb = _batched(x)
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, dh, dw = _pool_params(kernel_size, stride, padding, dilation)
    oh = pool_out_size(H, kh, sh, ph, dh, ceil_mode)
    ow = pool_out_size(W, kw, sw, pw, dw, ceil_mode)
    # pad generously with -inf (covers the padding and any ceil overhang);
    # a padded element never wins: -inf > m is false for every m.
    big_h = (oh - 1) * sh + (kh - 1) * dh + 1
    big_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.full((N, C, max(big_h, ph + H), max(big_w, pw + W)), -np.inf)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    # plane index of every padded position (only in-bounds ones ever win)
    ih = np.arange(xp.shape[2]) - ph
    iw = np.arange(xp.shape[3]) - pw
    plane_idx = ih[:, None] * W + iw[None, :]

    # initial index: first in-bounds element of each window
    h0 = np.array([_first_in_bounds(o * sh - ph, dh) for o in range(oh)])
    w0 = np.array([_first_in_bounds(o * sw - pw, dw) for o in range(ow)])
    best = np.full((N, C, oh, ow), -np.inf)
    idx = np.broadcast_to(h0[:, None] * W + w0[None, :], (N, C, oh, ow)).astype(np.int64)
    for r in range(kh):
        rows = _tap_slice(r * dh, sh, oh)
        for s in range(kw):
            cols = _tap_slice(s * dw, sw, ow)
            val = xp[:, :, rows, cols]
            take = (val > best) | np.isnan(val)
            best = np.where(take, val, best)
            idx = np.where(take, plane_idx[rows, cols][None, None], idx)
    best = _unbatch(best, unb)
    idx = _unbatch(idx, unb)
    return (best, idx) if return_indices else best


def max_pool2d_grad(gy, x, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode=False, indices=None):
    """Scatter-add grad_output into the argmax positions."""
    x64, unb = _batched(x)
    gy, _ = _batched(gy)
    if indices is None:
        _, indices = max_pool2d(x64, kernel_size, stride, padding, dilation,
                                ceil_mode, return_indices=True)
    ind = np.asarray(indices)
    if ind.ndim == 3:
        ind = ind[None]
    N, C, H, W = x64.shape
    gx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(gx[n, c], ind[n, c].ravel(), gy[n, c].ravel())
    return _unbatch(gx.reshape(N, C, H, W), unb)


def _avg_windows(H, W, kernel_size, stride, padding, ceil_mode,
                 count_include_pad, divisor_override):
    """Yield (i, j, in-bounds row slice, col slice, divisor) per output (torch's rule)."""
    kh, kw, sh, sw, ph, pw, _, _ = _pool_params(kernel_size, stride, padding, 1)
    oh = pool_out_size(H, kh, sh, ph, 1, ceil_mode)
    ow = pool_out_size(W, kw, sw, pw, 1, ceil_mode)
    for i in range(oh):
        h0 = i * sh - ph
        h1 = min(h0 + kh, H + ph)          # window clipped to the padded input
        for j in range(ow):
            w0 = j * sw - pw
            w1 = min(w0 + kw, W + pw)
            pool_size = (h1 - h0) * (w1 - w0)   # includes padding, not overhang
            a0, a1 = max(h0, 0), min(h1, H)
            b0, b1 = max(w0, 0), min(w1, W)
            if divisor_override is not None:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = (a1 - a0) * (b1 - b0)
            yield i, j, slice(a0, a1), slice(b0, b1), div


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    x, unb = _batched(x)
    N, C, H, W = x.shape
    oh, ow = pool2d_output_shape((H, W), kernel_size, stride, padding, 1, ceil_mode)
    out = np.zeros((N, C, oh, ow))
    for i, j, rs, cs, div in _avg_windows(H, W, kernel_size, stride, padding,
                                             ceil_mode, count_include_pad,
                                             divisor_override):
        out[:, :, i, j] = x[:, :, rs, cs].sum(axis=(2, 3)) / div
    return _unbatch(out, unb)


def avg_pool2d_grad(gy, input_shape, kernel_size, stride=None, padding=0,
                    ceil_mode=False, count_include_pad=True, divisor_override=None):
    gy, unb = _batched(gy)
    shape4 = tuple(input_shape) if len(input_shape) == 4 else (1,) + tuple(input_shape)
    N, C, H, W = shape4
    gx = np.zeros(shape4)
    for i, j, rs, cs, div in _avg_windows(H, W, kernel_size, stride, padding,
                                             ceil_mode, count_include_pad,
                                             divisor_override):
        gx[:, :, rs, cs] += (gy[:, :, i, j] / div)[:, :, None, None]
    return _unbatch(gx, unb)


# --------------------------------------------------------------------------
# relu / linear
# --------------------------------------------------------------------------
def relu(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_grad(gy, x):
    """torch's threshold_backward: 0 where x <= 0, else grad (NaN x passes grad)."""
    gy = np.asarray(gy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0, 0.0, gy)


def linear(x, w, bias=None):
    y = np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def linear_grad_input(gy, w):
    return np.asarray(gy, dtype=np.float64) @ np.asarray(w, dtype=np.float64)


def linear_grad_weight(x, gy):
    x = np.asarray(x, dtype=np.float64)
    gy = np.asarray(gy, dtype=np.float64)
    return gy.reshape(-1, gy.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def linear_grad_bias(gy):
    gy = np.asarray(gy, dtype=np.float64)
    return gy.reshape(-1, gy.shape[-1]).sum(axis=0)


# --------------------------------------------------------------------------
# cases and tolerances
# --------------------------------------------------------------------------
def _fmt(v):
    if isinstance(v, (tuple, list)):
        return "x".join(str(int(t)) for t in v)
    return str(v)


@dataclass(frozen=True)
class ConvCase:
    """One convolution geometry, as ``pyconv check``, ``pyconv bench`` and the test sweeps name it.

    ``name`` labels a benchmark layer (``bench``); without it the id spells the geometry, e.g.
    ``n2c3h7w9_k4r3s3_s2p1d1g1-zeros`` (N, C, H, W, K = out channels, R x S kernel, stride,
    padding, dilation, groups, padding mode).
    """
    n: int
    c: int
    h: int
    w: int
    k: int          # out channels
    r: int          # kernel height
    s: int          # kernel width
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    mode: str = "zeros"
    name: str = None

    @property
    def input_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_shape(self):
        return (self.k, self.c // self.groups, self.r, self.s)

    @property
    def args(self):
        """(stride, padding, dilation, groups) as passed to the API."""
        return self.stride, self.padding, self.dilation, self.groups

    @property
    def pads(self):
        return conv_padding(self.padding, (self.r, self.s), self.dilation)

    @property
    def output_shape(self):
        return conv2d_output_shape(self.input_shape, self.weight_shape, self.stride, self.padding, self.dilation)

    @property
    def id(self):
        if self.name is not None:
            return self.name
        return (f"n{self.n}c{self.c}h{self.h}w{self.w}_k{self.k}r{self.r}s{self.s}"
                f"_s{_fmt(self.stride)}p{_fmt(self.padding)}d{_fmt(self.dilation)}"
                f"g{self.groups}-{self.mode}")

    def valid(self):
        """True if torch accepts this geometry."""
        if self.c % self.groups or self.k % self.groups:
            return False
        if self.padding == "same" and pair(self.stride) != (1, 1):
            return False
        t, b, l, r = self.pads
        if self.mode == "reflect" and (max(t, b) >= self.h or max(l, r) >= self.w):
            return False
        if self.mode == "circular" and (max(t, b) > self.h or max(l, r) > self.w):
            return False
        _, _, oh, ow = self.output_shape
        return oh >= 1 and ow >= 1

    def reduction_length(self, direction):
        """Length of the sum behind each element of `direction`'s result (for float32 tolerances);
        bwd_data counts each input pixel's contributions before any padding fold."""
        _, _, oh, ow = self.output_shape
        if direction == "fwd":
            return (self.c // self.groups) * self.r * self.s
        if direction == "bwd_data":
            return (self.k // self.groups) * self.r * self.s
        if direction == "bwd_weight":
            return self.n * oh * ow
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")

    def flops(self):
        n, k, oh, ow = self.output_shape
        return 2 * n * k * oh * ow * (self.c // self.groups) * self.r * self.s


# Winograd F(4x4, 3x3) in float32: its transforms (constants up to 8) amplify rounding to about
# 1e-5 * max|y| (20-40x im2col; benchmarks/winograd_error.py), so its absolute tolerance is wider.
WINOGRAD_F32_ATOL_FACTOR = 20


def tolerances(dtype, k=1, scale=1.0, algo=None):
    """(rtol, atol) for a result that is a sum of k terms of magnitude ~scale, computed by `algo`."""
    root = math.sqrt(max(int(k), 1))
    if np.dtype(dtype) == np.float32:
        return 1e-4, 1e-5 * root * scale * (WINOGRAD_F32_ATOL_FACTOR if algo == "winograd" else 1)
    return 1e-10, 1e-11 * root * scale
