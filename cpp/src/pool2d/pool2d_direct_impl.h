// max_pool2d_{fwd,bwd}_direct_<isa>, avg_pool2d_{fwd,bwd}_direct_<isa>
//   x[N][C][H][W] -> y[N][C][OH][OW], work range over planes n*C + c.
// PyTorch's window rules: a max window covers rows oh*sh - ph + i*dh that fall inside the input;
// an average window [oh*sh - ph, min(that + kh, H + ph)) is clipped to the input for the sum.
#include <cstdint>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

// Argmax of one window: first maximum in row-major order, except that NaN always wins (the
// last NaN, as PyTorch's `val > max || isnan(val)`). -1 if the window has no input element.
template <class T>
inline int64_t window_argmax(const Pool2dParams& p, const T* xp, int64_t oh, int64_t ow, T* out) {
  const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  T m = T(0);
  int64_t mi = -1;
  for (int64_t i = 0; i < p.kh; ++i) {
    const int64_t ih = h0 + i * p.dil_h;
    if (ih < 0 || ih >= p.h) continue;
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t iw = w0 + j * p.dil_w;
      if (iw < 0 || iw >= p.w) continue;
      const T v = xp[ih * p.w + iw];
      if (mi < 0 || v > m || v != v) {
        m = v;
        mi = ih * p.w + iw;
      }
    }
  }
  *out = mi < 0 ? -__builtin_inf() : m;
  return mi;
}

template <class T>
void max_fwd(const Pool2dParams& p, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh)
      for (int64_t ow = 0; ow < p.ow; ++ow) {
        const int64_t o = plane * ohw + oh * p.ow + ow;
        const int64_t mi = window_argmax(p, xp, oh, ow, &y[o]);
        if (idx != nullptr) idx[o] = mi;
      }
  }
}

template <class T>
void max_bwd(const Pool2dParams& p, const T* dy, const T* x, const int64_t* idx, T* dx, int64_t p0,
             int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    T* dxp = dx + plane * hw;
    for (int64_t i = 0; i < hw; ++i) dxp[i] = T(0);
    const T* dyp = dy + plane * ohw;
    for (int64_t oh = 0; oh < p.oh; ++oh)
      for (int64_t ow = 0; ow < p.ow; ++ow) {
        int64_t mi;
        if (idx != nullptr) {
          mi = idx[plane * ohw + oh * p.ow + ow];
        } else {
          T unused;
          mi = window_argmax(p, x + plane * hw, oh, ow, &unused);
        }
        if (mi >= 0) dxp[mi] += dyp[oh * p.ow + ow];
      }
  }
}

// Calls fn(h0, h1, w0, w1, divisor) with the window clipped to the input.
template <class T, class F>
inline void avg_window(const Pool2dParams& p, int64_t oh, int64_t ow, F&& fn) {
  int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  int64_t h1 = h0 + p.kh < p.h + p.pad_h ? h0 + p.kh : p.h + p.pad_h;
  int64_t w1 = w0 + p.kw < p.w + p.pad_w ? w0 + p.kw : p.w + p.pad_w;
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = h0 < 0 ? 0 : h0;
  w0 = w0 < 0 ? 0 : w0;
  h1 = h1 > p.h ? p.h : h1;
  w1 = w1 > p.w ? p.w : w1;
  if (h0 >= h1 || w0 >= w1) {
    fn(h0, h0, w0, w0, T(1));
    return;
  }
  const int64_t d = p.divisor != 0 ? p.divisor : p.count_include_pad ? padded_size : (h1 - h0) * (w1 - w0);
  fn(h0, h1, w0, w1, static_cast<T>(d));
}

template <class T>
void avg_fwd(const Pool2dParams& p, const T* x, T* y, int64_t p0, int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh)
      for (int64_t ow = 0; ow < p.ow; ++ow)
        avg_window<T>(p, oh, ow, [&](int64_t h0, int64_t h1, int64_t w0, int64_t w1, T d) {
          T sum = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * p.w + iw];
          y[plane * ohw + oh * p.ow + ow] = sum / d;
        });
  }
}

template <class T>
void avg_bwd(const Pool2dParams& p, const T* dy, T* dx, int64_t p0, int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    T* dxp = dx + plane * hw;
    for (int64_t i = 0; i < hw; ++i) dxp[i] = T(0);
    for (int64_t oh = 0; oh < p.oh; ++oh)
      for (int64_t ow = 0; ow < p.ow; ++ow)
        avg_window<T>(p, oh, ow, [&](int64_t h0, int64_t h1, int64_t w0, int64_t w1, T d) {
          const T g = dy[plane * ohw + oh * p.ow + ow] / d;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * p.w + iw] += g;
        });
  }
}

}  // namespace

#define PYCONV_EXPORT_T(T)                                                                         \
  void PYCONV_CAT(max_pool2d_fwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* x, T* y,     \
                                                     int64_t* idx, int64_t p0, int64_t p1) {      \
    max_fwd<T>(p, x, y, idx, p0, p1);                                                              \
  }                                                                                                \
  void PYCONV_CAT(max_pool2d_bwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* dy,          \
                                                     const T* x, const int64_t* idx, T* dx,       \
                                                     int64_t p0, int64_t p1) {                    \
    max_bwd<T>(p, dy, x, idx, dx, p0, p1);                                                         \
  }                                                                                                \
  void PYCONV_CAT(avg_pool2d_fwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* x, T* y,     \
                                                     int64_t p0, int64_t p1) {                    \
    avg_fwd<T>(p, x, y, p0, p1);                                                                   \
  }                                                                                                \
  void PYCONV_CAT(avg_pool2d_bwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* dy, T* dx,   \
                                                     int64_t p0, int64_t p1) {                    \
    avg_bwd<T>(p, dy, dx, p0, p1);                                                                 \
  }
PYCONV_EXPORT_T(float)
PYCONV_EXPORT_T(double)
#undef PYCONV_EXPORT_T

}  // namespace PYCONV_ISA
}  // namespace pyconv
