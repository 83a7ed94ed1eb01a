// Public C++ API of the pooling operators.
//
//   input x[N][C][H][W] -> output y[N][C][OH][OW]; indices idx[N][C][OH][OW] = ih*W + iw.
//   OH = floor_or_ceil((H + 2*pad_h - dil_h*(KH-1) - 1) / stride_h) + 1, and with ceil_mode the
//   last window must start inside the input or the top padding (PyTorch's rule).
// Max pooling: ties keep the first maximum in row-major window order; NaN wins (the last NaN).
// Average pooling: PyTorch's divisor (count_include_pad counts padding but not the ceil overhang;
// divisor != 0 overrides it).
#pragma once
#include <cstdint>

namespace pyconv {

struct Pool2dParams {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg only
  int64_t divisor = 0;            // avg only; 0 = no override
  int64_t oh = 0, ow = 0;         // filled in by pool2d_validate
};

int64_t pool2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil, bool ceil_mode);
void pool2d_validate(Pool2dParams& p);

template <class T>
void max_pool2d_fwd(const Pool2dParams& p, const T* x, T* y, int64_t* idx);
// idx may be null: the argmax is then recomputed from x (same tie and NaN rules).
template <class T>
void max_pool2d_bwd(const Pool2dParams& p, const T* dy, const T* x, const int64_t* idx, T* dx);
template <class T>
void avg_pool2d_fwd(const Pool2dParams& p, const T* x, T* y);
template <class T>
void avg_pool2d_bwd(const Pool2dParams& p, const T* dy, T* dx);

}  // namespace pyconv
