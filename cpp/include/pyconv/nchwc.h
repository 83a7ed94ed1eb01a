// Convolution forward on the channel-blocked layout the inference graph keeps between its convs:
// NCHW16c, a tensor (N, C, H, W) stored as [n][C/16][h][w][16] with the channels past C (the
// last block's padding) holding anything: no kernel reads them into a real channel.
// Output channels run along the vector lanes, so a 7-pixel row or a 49-pixel plane wastes no
// lane, and each input element is one broadcast: a 1x1 conv is a GEMM with no packing of its
// input, a strided conv reads its input in place, a depthwise conv is one aligned load per tap.
#pragma once
#include <cstdint>

namespace pyconv {

constexpr int64_t kNchwcBlock = 16;

// y[n][k][oh][ow] = clamp(b[k] + sum_{c,r,s} w[k][c][r][s] * x[n][c][oh*sh - pt + r*dh][ow*sw - pl + s*dw]
//                         + res[n][k][oh][ow], lo, hi), zero padding. Depthwise: c == k only.
template <class T>
struct NchwcConv {
  int64_t n, c, h, w;         // input
  int64_t k, r, s, oh, ow;    // filters and output
  int64_t sh, sw, pt, pl, dh, dw;
  bool depthwise;
  // x element (n, c, h, w) at x[n*xn + (c/16)*xcb + (c%16)*xc + h*xh + w*xw]: blocked or NCHW
  // (depthwise: blocked only).
  const T* x;
  int64_t xn, xcb, xc, xh, xw;
  // dense [K/16][C/16][r][s][16 in][16 out]; depthwise [C/16][r][s][16], zero past K and C
  const T* wp;
  const T* b;    // [16 * ceil(K/16)] or null
  const T* res;  // in y's layout, or null
  T* y;
  bool y_blocked;  // y blocked, else NCHW
  T lo, hi;
  // A ring of rows in a scratch buffer (0: none), for a fused expansion's rows: x row ih of block
  // cb at x + n*xn + (cb - xb0)*xcb + (ih % xring)*xh; y (blocked) row oh of block kb at
  // y + (((kb - yb0)*yring + oh % yring)*ow + ow)*16.
  int64_t xring, xb0, yring, yb0;
};

template <class T>
void conv2d_nchwc_fwd(const NchwcConv<T>& a);

// The mean of each channel's plane of x (n, c, h, w), blocked or NCHW: y (n, c, 1, 1), blocked
// (blocked x only) or NCHW. (A blocked max pool lost to the NCHW one: stride-2 windows over
// 16-channel pixels read at half its bandwidth, RESULTS.md section 11.)
template <class T>
struct NchwcPool {
  int64_t n, c, h, w;
  const T* x;
  T* y;
  bool y_blocked;
  bool x_blocked = true;
};

template <class T>
void global_avg_pool2d_nchwc(const NchwcPool<T>& a);

// NCHW x (n, c, h, w) to the blocked layout y (n, ceil(c/16), h, w, 16), the lanes past c zero.
template <class T>
void nchw_to_nchwc(const T* x, int64_t n, int64_t c, int64_t h, int64_t w, T* y);

// A 1x1 stride-1 expansion e (input x, output k channels) followed by a depthwise conv d of its
// output, without the expansion's output in memory: each work item computes the rows of two
// expansion blocks that d's next output row needs into a ring of rows, then that output row.
// e.y and d.x are unused; d.c == d.k == e.k.
template <class T>
void conv2d_nchwc_expand_dw(const NchwcConv<T>& e, const NchwcConv<T>& d);

}  // namespace pyconv
