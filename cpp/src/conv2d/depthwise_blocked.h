// Depthwise convolution (one input channel and one filter per group) on channel-blocked data:
// L channels (one vector) per block, pixels of a block interleaved, [n][cb][row][col][L]. Every
// vector lane is a channel, so narrow planes (7x7, 14x14) fill whole vectors, every tap is one
// aligned load and one FMA, and a work item is a channel block times a band of rows (not an
// image), which splits batch-1 layers over threads.
// The kernels gather NCHW input into blocked padded bands and scatter blocked results back (the
// reorder is part of the call); their compute cores (conv2d/depthwise_blocked_impl.h) read and
// write blocked rows only, so blocked tensors can be fed to them directly.
#pragma once
#include <cstdint>

#include "pyconv/conv2d.h"

namespace pyconv {

// fwd:        y[n][c][oh][ow]  = b[c] + sum_rs w[c][r][s] * xp[n][c][oh*sh + r*dh][ow*sw + s*dw]
// bwd_data:   dx[n][c][ih][iw] = sum over taps (r, s) and output pixels (oh, ow) with
//             oh*sh + r*dh == ih + pad_t and ow*sw + s*dw == iw + pad_l of w[c][r][s] * dy[n][c][oh][ow]
//             (zero padding only)
// bwd_weight: dw[c][r][s]      = sum_n sum_oh sum_ow dy[n][c][oh][ow] * xp[n][c][oh*sh + r*dh][ow*sw + s*dw]
// xp: x padded through row_map / col_map (every padding mode).
template <class T>
struct DwBlocked {
  const Conv2dParams* p;
  const int64_t* row_map;
  const int64_t* col_map;
  int64_t ncb;    // channel blocks of the kernel's lane count
  int64_t band;   // rows per work item: output rows (fwd, bwd_weight), input rows (bwd_data)
  int64_t nband;  // bands per plane
  const T* x;
  const T* dy;
  T* y;
  T* dx;
  T* dw;
  const T* wb;  // weights [cb][r*s][L], lanes past C zero
  const T* bb;  // bias [cb][L] or null
};

// Work items: fwd and bwd_data it = (n*ncb + cb)*nband + band; bwd_weight it = cb (every image
// and pixel reduced in order inside the item). ws: conv2d_dw_blocked_ws(...) elements.
template <class T>
using conv2d_dw_blocked_fwd_fn = void(const DwBlocked<T>&, int64_t i0, int64_t i1, T* ws);
template <class T>
using conv2d_dw_blocked_bwd_data_fn = void(const DwBlocked<T>&, int64_t i0, int64_t i1, T* ws);
template <class T>
using conv2d_dw_blocked_bwd_weight_fn = void(const DwBlocked<T>&, int64_t i0, int64_t i1, T* ws);

// Whether the blocked depthwise kernels take this layer (groups == C == K; bwd_data: zeros
// padding), and running them (false: nothing done, the caller takes another path).
bool conv2d_dw_blocked_applies(const Conv2dParams& p, ConvDir dir);
template <class T>
bool conv2d_dw_blocked(const Conv2dParams& p, const int64_t* row_map, const int64_t* col_map, ConvDir dir,
                       const T* x, const T* w, const T* b, const T* dy, T* y, T* dx, T* dw, int nt);

}  // namespace pyconv

namespace pyconv {

// Scratch elements per work item for lane count L (the layout the kernels carve out of ws).
struct DwBlockedSizes {
  int64_t in_rows, in_cols, in, out, acc;
};
inline DwBlockedSizes dw_blocked_sizes(const Conv2dParams& p, ConvDir dir, int64_t band, int64_t L) {
  const int64_t eh = (p.r - 1) * p.dil_h, ew = (p.s - 1) * p.dil_w;
  DwBlockedSizes z{};
  if (dir == ConvDir::bwd_data) {
    // dy rows of a band, with a zero frame around the plane: fc columns each side
    const int64_t fc = (ew + p.stride_w - 1) / p.stride_w + 1;
    z.in_rows = (band - 1 + eh) / p.stride_h + 2;
    z.in_cols = p.ow + 2 * fc;
    z.out = band * p.w * L;
  } else {
    z.in_rows = (band - 1) * p.stride_h + eh + 1;
    z.in_cols = p.w + p.pad_l + p.pad_r;
    z.out = band * p.ow * L;
  }
  z.in = z.in_rows * z.in_cols * L;
  z.acc = dir == ConvDir::bwd_weight ? p.r * p.s * L : 0;
  return z;
}
inline int64_t dw_blocked_ws(const Conv2dParams& p, ConvDir dir, int64_t band, int64_t L) {
  const DwBlockedSizes z = dw_blocked_sizes(p, dir, band, L);
  return z.in + z.out + z.acc + 3 * 64;
}

}  // namespace pyconv
