"""The channel-blocked layout (NCHW16c) the inference graph keeps between its convolutions.

A tensor (N, C, H, W) is stored as (N, ceil(C/16), H, W, 16); the lanes past C hold anything
(no kernel reads them into a real channel). ``_core.conv2d_fwd_nchwc`` reads NCHW or blocked
input and writes either layout, with the fused epilogue (bias, residual, clamp).
"""
import numpy as np

B = 16

__all__ = ["B", "blocks", "blocked_shape", "pack_weight", "pack_bias", "to_blocked", "from_blocked"]


def blocks(c):
    return -(-int(c) // B)


def blocked_shape(shape):
    n, c, h, w = shape
    return (n, blocks(c), h, w, B)


def pack_weight(w, depthwise=False):
    """(K, C, R, S) -> dense (K/16, C/16, R, S, 16 in, 16 out); depthwise (C, 1, R, S) -> (C/16, R, S, 16)."""
    w = np.asarray(w)
    k, c, r, s = w.shape
    if depthwise:
        p = np.zeros((blocks(k) * B, r, s), w.dtype)
        p[:k] = w[:, 0]
        return np.ascontiguousarray(p.reshape(blocks(k), B, r, s).transpose(0, 2, 3, 1))
    p = np.zeros((blocks(k) * B, blocks(c) * B, r, s), w.dtype)
    p[:k, :c] = w
    p = p.reshape(blocks(k), B, blocks(c), B, r, s)  # kb, ko, cb, ci, r, s
    return np.ascontiguousarray(p.transpose(0, 2, 4, 5, 3, 1))


def pack_bias(b, k, dtype=np.float32):
    p = np.zeros(blocks(k) * B, dtype)
    if b is not None:
        p[:k] = b
    return p


def to_blocked(x):
    n, c, h, w = x.shape
    p = x
    if c % B:
        p = np.zeros((n, blocks(c) * B, h, w), x.dtype)
        p[:, :c] = x
    return np.ascontiguousarray(p.reshape(n, blocks(c), B, h, w).transpose(0, 1, 3, 4, 2))


def from_blocked(xb, c):
    n, cb, h, w, _ = xb.shape
    return np.ascontiguousarray(xb.transpose(0, 1, 4, 2, 3).reshape(n, cb * B, h, w)[:, :c])
