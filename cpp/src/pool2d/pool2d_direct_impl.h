// max_pool2d_{fwd,bwd}_direct_<isa>, avg_pool2d_{fwd,bwd}_direct_<isa>
//   x[N][C][H][W] -> y[N][C][OH][OW], work range over planes n*C + c.
// PyTorch's window rules: a max window covers rows oh*sh - ph + i*dh that fall inside the input;
// an average window [oh*sh - ph, min(that + kh, H + ph)) is clipped to the input for the sum.
//
// Vectorised along the output row (GCC vector extensions, so the same code is SSE2, AVX2 or
// AVX-512 by the file's flags). Every lane does exactly the scalar operations of its own window
// in the scalar order, so the results are bitwise those of the scalar window loops:
//   - max forward: windows whose columns lie inside the input, strides 1 and 2 (stride 2 loads
//     two overlapping vectors and keeps the even elements); the row's first and last windows
//     (padding) and other strides run the scalar window loop. A final partial vector is
//     recomputed overlapping the previous one (same values), so there is no scalar tail.
//   - average forward: the same, summing taps in row-major order from 0 and dividing by the
//     window's divisor.
//   - average backward, gather form: dx[ih][iw] = 0 + sum over windows containing (ih, iw) in
//     ascending (oh, ow) order of dy/divisor. Per output row the scaled gradient is spread into
//     a zero-stuffed, zero-padded row u[] (u[ow*sw] = g[ow]), so tap j of lane iw is
//     u[iw + pw - j]: taps outside the window or the output read an exact +0, which cannot
//     change a sum that starts at +0 (it is never -0).
//   - max backward: dx = 0, then dy scattered to the argmax in output order (indices given, or
//     recomputed row by row with the vector forward).
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

template <class T>
inline typename V<T>::ivec lane_iota(int64_t step) {
  typename V<T>::ivec v;
  for (int t = 0; t < V<T>::L; ++t) v[t] = static_cast<decltype(v[0] + 0)>(t * step);
  return v;
}

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

// Output columns [lo, hi) whose windows have every column tap inside the input.
inline void interior_cols(const Pool2dParams& p, int64_t kw, int64_t dw, int64_t* lo, int64_t* hi) {
  const int64_t sw = p.stride_w, pw = p.pad_w;
  int64_t l = (pw + sw - 1) / sw;                             // ow*sw - pw >= 0
  const int64_t last = p.w - 1 + pw - (kw - 1) * dw;          // ow*sw <= last
  int64_t h = last < 0 ? 0 : last / sw + 1;
  if (h > p.ow) h = p.ow;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

// One output row's maxima for columns [a, b): y[ow - a], idx[ow - a].
template <class T, int S>
void max_row_vec(const Pool2dParams& p, const T* xp, int64_t oh, int64_t a, int64_t b, T* y,
                 int64_t* idx) {
  using vec = typename V<T>::vec;
  using ivec = typename V<T>::ivec;
  using lvec = typename V<T>::lvec;
  constexpr int L = V<T>::L;
  int64_t lo, hi;
  interior_cols(p, p.kw, p.dil_w, &lo, &hi);
  lo = lo < a ? a : lo;
  hi = hi > b ? b : hi;
  const int64_t h0 = oh * p.stride_h - p.pad_h;
  int64_t ibeg = 0;
  while (ibeg < p.kh && h0 + ibeg * p.dil_h < 0) ++ibeg;
  const bool vec_ok = hi - lo >= L && ibeg < p.kh && h0 + ibeg * p.dil_h < p.h;
  if (!vec_ok) lo = hi = b;
  for (int64_t ow = a; ow < lo; ++ow) idx[ow - a] = window_argmax(p, xp, oh, ow, &y[ow - a]);
  if (vec_ok) {
    const ivec iota = lane_iota<T>(S);
    for (int64_t o = lo; o < hi; o += L) {
      const int64_t ow = o + L <= hi ? o : hi - L;
      vec m{};
      ivec mi{};
      bool first = true;
      for (int64_t i = ibeg; i < p.kh; ++i) {
        const int64_t ih = h0 + i * p.dil_h;
        if (ih >= p.h) break;
        for (int64_t j = 0; j < p.kw; ++j) {
          const int64_t col = ow * S - p.pad_w + j * p.dil_w;
          const vec v = load_strided<T, S>(xp + ih * p.w + col);
          const ivec iv = iota + static_cast<decltype(iota[0] + 0)>(ih * p.w + col);
          if (first) {
            m = v;
            mi = iv;
            first = false;
          } else {
            const ivec take = (v > m) | (v != v);
            m = take ? v : m;
            mi = take ? iv : mi;
          }
        }
      }
      storeu(y + ow - a, m);
      const lvec wide = __builtin_convertvector(mi, lvec);
      __builtin_memcpy(idx + ow - a, &wide, sizeof(wide));
    }
  }
  for (int64_t ow = hi; ow < b; ++ow) idx[ow - a] = window_argmax(p, xp, oh, ow, &y[ow - a]);
}

template <class T>
void max_row(const Pool2dParams& p, const T* xp, int64_t oh, int64_t a, int64_t b, T* y, int64_t* idx) {
  // Indices are computed in the integer lane type: int32 for float needs H*W < 2^31.
  const bool fits = sizeof(T) == 8 || p.h * p.w < (int64_t{1} << 31);
  if (fits && p.stride_w == 1) return max_row_vec<T, 1>(p, xp, oh, a, b, y, idx);
  if (fits && p.stride_w == 2) return max_row_vec<T, 2>(p, xp, oh, a, b, y, idx);
  for (int64_t ow = a; ow < b; ++ow) idx[ow - a] = window_argmax(p, xp, oh, ow, &y[ow - a]);
}

constexpr int64_t kChunk = 256;  // output columns per stack-buffered chunk

template <class T>
void max_fwd(const Pool2dParams& p, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  alignas(64) int64_t ibuf[kChunk];
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      const int64_t o = plane * ohw + oh * p.ow;
      if (idx != nullptr) {
        max_row(p, xp, oh, 0, p.ow, y + o, idx + o);
        continue;
      }
      for (int64_t a = 0; a < p.ow; a += kChunk) {
        const int64_t b = a + kChunk < p.ow ? a + kChunk : p.ow;
        max_row(p, xp, oh, a, b, y + o + a, ibuf);
      }
    }
  }
}

// Returns the flat position of the first out-of-range index in [p0, p1) planes, or -1 (those
// are skipped; the operator then throws).
template <class T>
int64_t max_bwd(const Pool2dParams& p, const T* dy, const T* x, const int64_t* idx, T* dx, int64_t p0,
                int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  alignas(64) int64_t ibuf[kChunk];
  alignas(64) T ybuf[kChunk];
  int64_t bad = -1;
  for (int64_t plane = p0; plane < p1; ++plane) {
    T* __restrict dxp = dx + plane * hw;
    std::memset(dxp, 0, sizeof(T) * static_cast<size_t>(hw));
    const T* dyp = dy + plane * ohw;
    if (idx != nullptr) {
      const int64_t* ip = idx + plane * ohw;
      for (int64_t o = 0; o < ohw; ++o) {
        const int64_t mi = ip[o];
        if (static_cast<uint64_t>(mi) < static_cast<uint64_t>(hw)) {
          dxp[mi] += dyp[o];
        } else if (mi != -1 && bad < 0) {
          bad = plane * ohw + o;
        }
      }
      continue;
    }
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      const T* dyr = dyp + oh * p.ow;
      for (int64_t a = 0; a < p.ow; a += kChunk) {
        const int64_t b = a + kChunk < p.ow ? a + kChunk : p.ow;
        max_row(p, xp, oh, a, b, ybuf, ibuf);
        for (int64_t ow = a; ow < b; ++ow) {
          const int64_t mi = ibuf[ow - a];
          if (mi >= 0) dxp[mi] += dyr[ow];
        }
      }
    }
  }
  return bad;
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
inline T avg_divisor(const Pool2dParams& p, int64_t oh, int64_t ow) {
  T d = T(1);
  avg_window<T>(p, oh, ow, [&](int64_t, int64_t, int64_t, int64_t, T dd) { d = dd; });
  return d;
}

template <class T>
inline T avg_one(const Pool2dParams& p, const T* xp, int64_t oh, int64_t ow) {
  T out = T(0);
  avg_window<T>(p, oh, ow, [&](int64_t h0, int64_t h1, int64_t w0, int64_t w1, T d) {
    T sum = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * p.w + iw];
    out = sum / d;
  });
  return out;
}

template <class T, int S>
void avg_row_vec(const Pool2dParams& p, const T* xp, int64_t oh, T* yr) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  int64_t lo, hi;
  interior_cols(p, p.kw, 1, &lo, &hi);
  int64_t h0 = oh * p.stride_h - p.pad_h;
  int64_t h1 = h0 + p.kh < p.h + p.pad_h ? h0 + p.kh : p.h + p.pad_h;
  h0 = h0 < 0 ? 0 : h0;
  h1 = h1 > p.h ? p.h : h1;
  const bool vec_ok = hi - lo >= L && h0 < h1;
  if (!vec_ok) lo = hi = p.ow;
  for (int64_t ow = 0; ow < lo; ++ow) yr[ow] = avg_one(p, xp, oh, ow);
  if (vec_ok) {
    const T d = avg_divisor<T>(p, oh, lo);  // the same for every interior column
    for (int64_t o = lo; o < hi; o += L) {
      const int64_t ow = o + L <= hi ? o : hi - L;
      vec sum{};
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t j = 0; j < p.kw; ++j) sum += load_strided<T, S>(xp + ih * p.w + ow * S - p.pad_w + j);
      storeu(yr + ow, sum / d);
    }
  }
  for (int64_t ow = hi; ow < p.ow; ++ow) yr[ow] = avg_one(p, xp, oh, ow);
}

template <class T>
void avg_fwd(const Pool2dParams& p, const T* x, T* y, int64_t p0, int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      T* yr = y + plane * ohw + oh * p.ow;
      if (p.stride_w == 1) {
        avg_row_vec<T, 1>(p, xp, oh, yr);
      } else if (p.stride_w == 2) {
        avg_row_vec<T, 2>(p, xp, oh, yr);
      } else {
        for (int64_t ow = 0; ow < p.ow; ++ow) yr[ow] = avg_one(p, xp, oh, ow);
      }
    }
  }
}

// The scalar scatter (general fallback): dx = 0, dx[window] += dy/divisor in output order.
template <class T>
void avg_bwd_scatter(const Pool2dParams& p, const T* dy, T* dxp, int64_t plane) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t i = 0; i < hw; ++i) dxp[i] = T(0);
  for (int64_t oh = 0; oh < p.oh; ++oh)
    for (int64_t ow = 0; ow < p.ow; ++ow)
      avg_window<T>(p, oh, ow, [&](int64_t h0, int64_t h1, int64_t w0, int64_t w1, T d) {
        const T g = dy[plane * ohw + oh * p.ow + ow] / d;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * p.w + iw] += g;
      });
}

constexpr int64_t kRowBuf = 4096;  // elements of the zero-stuffed gradient row (stack)

template <class T>
void avg_bwd(const Pool2dParams& p, const T* dy, T* dx, int64_t p0, int64_t p1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  const int64_t sw = p.stride_w, pw = p.pad_w, kw = p.kw;
  // u[e + U0] holds the gradient of output column e/sw (e % sw == 0), zero elsewhere, for
  // e in [-kw - L, W + pw + L); lane iw of tap j reads u[iw + pw - j + U0].
  const int64_t U0 = kw + L, ulen = U0 + p.w + pw + 2 * L;
  if (ulen > kRowBuf || p.ow * sw > p.w + pw + L) {
    for (int64_t plane = p0; plane < p1; ++plane) avg_bwd_scatter(p, dy, dx + plane * hw, plane);
    return;
  }
  alignas(64) T u[kRowBuf];
  for (int64_t e = 0; e < ulen; ++e) u[e] = T(0);
  for (int64_t plane = p0; plane < p1; ++plane) {
    T* dxp = dx + plane * hw;
    const T* dyp = dy + plane * ohw;
    for (int64_t ih = 0; ih < p.h; ++ih) {
      T* dxr = dxp + ih * p.w;
      for (int64_t iw = 0; iw < p.w; ++iw) dxr[iw] = T(0);
      // Output rows whose window covers ih: h0 = oh*sh - ph <= ih < h0 + kh.
      int64_t oh0 = ih + p.pad_h - p.kh + 1;
      oh0 = oh0 <= 0 ? 0 : (oh0 + p.stride_h - 1) / p.stride_h;
      int64_t oh1 = (ih + p.pad_h) / p.stride_h + 1;
      oh1 = oh1 > p.oh ? p.oh : oh1;
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const T* dyr = dyp + oh * p.ow;
        // Scaled gradient row, zero-stuffed; the divisor varies only near the edges.
        int64_t lo, hi;
        interior_cols(p, kw, 1, &lo, &hi);
        if (lo >= hi) lo = hi = p.ow;
        for (int64_t ow = 0; ow < lo; ++ow) u[U0 + ow * sw] = dyr[ow] / avg_divisor<T>(p, oh, ow);
        if (lo < hi) {
          const T d = avg_divisor<T>(p, oh, lo);
          for (int64_t ow = lo; ow < hi; ++ow) u[U0 + ow * sw] = dyr[ow] / d;
        }
        for (int64_t ow = hi; ow < p.ow; ++ow) u[U0 + ow * sw] = dyr[ow] / avg_divisor<T>(p, oh, ow);
        int64_t iw = 0;
        for (; iw + L <= p.w; iw += L) {
          vec acc = loadu(dxr + iw);
          for (int64_t j = kw - 1; j >= 0; --j) acc += loadu(u + U0 + iw + pw - j);
          storeu(dxr + iw, acc);
        }
        for (; iw < p.w; ++iw) {
          T acc = dxr[iw];
          for (int64_t j = kw - 1; j >= 0; --j) acc += u[U0 + iw + pw - j];
          dxr[iw] = acc;
        }
      }
    }
  }
}

}  // namespace

#define PYCONV_EXPORT_T(T)                                                                         \
  void PYCONV_CAT(max_pool2d_fwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* x, T* y,     \
                                                     int64_t* idx, int64_t p0, int64_t p1) {      \
    max_fwd<T>(p, x, y, idx, p0, p1);                                                              \
  }                                                                                                \
  int64_t PYCONV_CAT(max_pool2d_bwd_direct, PYCONV_ISA)(const Pool2dParams& p, const T* dy,       \
                                                        const T* x, const int64_t* idx, T* dx,    \
                                                        int64_t p0, int64_t p1) {                 \
    return max_bwd<T>(p, dy, x, idx, dx, p0, p1);                                                  \
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
