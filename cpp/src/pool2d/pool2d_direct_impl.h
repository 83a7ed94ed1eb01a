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
#include <type_traits>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

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
      // Branchless: on random data the comparison is unpredictable.
      const bool take = (mi < 0) | (v > m) | (v != v);
      m = take ? v : m;
      mi = take ? ih * p.w + iw : mi;
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

// Vectors of B bytes (16 .. kVecBytes): narrow output rows (small planes) take narrower vectors
// instead of the scalar window loop. ivec: integer lanes of T's size (comparisons; int32 indices
// for float); lvec: the same lanes as int64.
template <class T, int B>
struct VW {
  static constexpr int L = B / static_cast<int>(sizeof(T));
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef T vec __attribute__((vector_size(B)));
  typedef I ivec __attribute__((vector_size(B)));
  typedef int64_t lvec __attribute__((vector_size(B / sizeof(T) * 8)));
};

// Lane t = p[t*S] for S = 1 or 2 (S = 2 reads exactly p[0 .. 2*L-2], two overlapping loads).
template <class T, int B, int S>
inline typename VW<T, B>::vec load_s(const T* p) {
  using W = VW<T, B>;
  typename W::vec a;
  __builtin_memcpy(&a, p, B);
  if constexpr (S == 1) {
    return a;
  } else {
    typename W::vec b;  // b[k] = p[L-1+k]
    __builtin_memcpy(&b, p + W::L - 1, B);
    typename W::ivec m;
    for (int t = 0; t < W::L; ++t) m[t] = t < W::L / 2 ? 2 * t : 2 * t + 1;  // index into a ++ b
    return __builtin_shuffle(a, b, m);
  }
}

// Maxima (and, with Idx, indices) of output columns [lo, hi) of row oh, hi - lo >= lanes; every
// window's rows start at ibeg and its columns lie inside the input. Written to y[ow - a], idx[ow - a].
template <class T, int S, int B, bool Idx>
void max_cols_vec(const Pool2dParams& p, const T* xp, int64_t h0, int64_t ibeg, int64_t lo, int64_t hi,
                  int64_t a, T* y, int64_t* idx) {
  using W = VW<T, B>;
  using vec = typename W::vec;
  using ivec = typename W::ivec;
  using I = typename W::I;
  constexpr int L = W::L;
  ivec iota;
  for (int t = 0; t < L; ++t) iota[t] = static_cast<I>(t * S);
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
        const vec v = load_s<T, B, S>(xp + ih * p.w + col);
        if (first) {
          m = v;
          if constexpr (Idx) mi = iota + static_cast<I>(ih * p.w + col);
          first = false;
        } else {
          const ivec take = (v > m) | (v != v);
          m = take ? v : m;
          if constexpr (Idx) mi = take ? iota + static_cast<I>(ih * p.w + col) : mi;
        }
      }
    }
    __builtin_memcpy(y + ow - a, &m, B);
    if constexpr (Idx) {
      const typename W::lvec wide = __builtin_convertvector(mi, typename W::lvec);
      __builtin_memcpy(idx + ow - a, &wide, sizeof(wide));
    }
  }
}

// The widest vector that fits hi - lo columns; false if none does.
template <class T, int S, bool Idx>
bool max_cols(const Pool2dParams& p, const T* xp, int64_t h0, int64_t ibeg, int64_t lo, int64_t hi, int64_t a,
              T* y, int64_t* idx) {
  constexpr int B1 = kVecBytes, B2 = kVecBytes > 32 ? 32 : 16;
  const int64_t n = hi - lo;
  if (n >= VW<T, B1>::L) {
    max_cols_vec<T, S, B1, Idx>(p, xp, h0, ibeg, lo, hi, a, y, idx);
  } else if (B2 < B1 && n >= VW<T, B2>::L) {
    max_cols_vec<T, S, B2, Idx>(p, xp, h0, ibeg, lo, hi, a, y, idx);
  } else if (16 < B2 && n >= VW<T, 16>::L) {
    max_cols_vec<T, S, 16, Idx>(p, xp, h0, ibeg, lo, hi, a, y, idx);
  } else {
    return false;
  }
  return true;
}

// Output columns [lo, hi) whose windows have every column tap inside the input (the same for
// every row), and whether the vector path may take them.
struct MaxCols {
  int64_t lo = 0, hi = 0;
  bool vec = false;
};

template <class T>
MaxCols max_cols_setup(const Pool2dParams& p) {
  MaxCols c;
  interior_cols(p, p.kw, p.dil_w, &c.lo, &c.hi);
  // Indices are computed in the integer lane type: int32 for float needs H*W < 2^31.
  const bool fits = sizeof(T) == 8 || p.h * p.w < (int64_t{1} << 31);
  c.vec = fits && (p.stride_w == 1 || p.stride_w == 2);
  return c;
}

// The scalar window loop for windows entirely inside the input (no bounds checks; KH = KW = 0:
// the kernel size at run time), columns [c0, c1) of the row starting at input row h0.
template <class T, int KH, int KW, bool Idx>
void max_cols_in(const Pool2dParams& p, const T* xp, int64_t h0, int64_t c0, int64_t c1, int64_t a, T* y,
                 int64_t* idx) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, rs = p.dil_h * p.w, cs = p.dil_w;
  for (int64_t ow = c0; ow < c1; ++ow) {
    const int64_t base = h0 * p.w + ow * p.stride_w - p.pad_w;
    T m = xp[base];
    int64_t mi = base;
    for (int64_t i = 0; i < kh; ++i) {
      for (int64_t j = i == 0 ? 1 : 0; j < kw; ++j) {
        const int64_t pos = base + i * rs + j * cs;
        const T v = xp[pos];
        const bool take = (v > m) | (v != v);
        m = take ? v : m;
        mi = take ? pos : mi;
      }
    }
    y[ow - a] = m;
    if constexpr (Idx) idx[ow - a] = mi;
  }
}

// Columns [c0, c1) of a row without the vector path: the unchecked loop where the window is
// inside the input (in_row: all its rows are), the checked one elsewhere.
template <class T, bool Idx>
void max_cols_scalar(const Pool2dParams& p, const MaxCols& mc, const T* xp, int64_t oh, bool in_row, int64_t c0,
                     int64_t c1, int64_t a, T* y, int64_t* idx) {
  int64_t i0 = in_row ? (mc.lo > c0 ? mc.lo : c0) : c1;
  int64_t i1 = in_row ? (mc.hi < c1 ? mc.hi : c1) : c1;
  if (i0 >= i1) i0 = i1 = c1;
  for (int64_t ow = c0; ow < i0; ++ow) {
    const int64_t i = window_argmax(p, xp, oh, ow, &y[ow - a]);
    if constexpr (Idx) idx[ow - a] = i;
  }
  if (i0 < i1) {
    const int64_t h0 = oh * p.stride_h - p.pad_h;
    if (p.kh == 2 && p.kw == 2) {
      max_cols_in<T, 2, 2, Idx>(p, xp, h0, i0, i1, a, y, idx);
    } else if (p.kh == 3 && p.kw == 3) {
      max_cols_in<T, 3, 3, Idx>(p, xp, h0, i0, i1, a, y, idx);
    } else {
      max_cols_in<T, 0, 0, Idx>(p, xp, h0, i0, i1, a, y, idx);
    }
  }
  for (int64_t ow = i1; ow < c1; ++ow) {
    const int64_t i = window_argmax(p, xp, oh, ow, &y[ow - a]);
    if constexpr (Idx) idx[ow - a] = i;
  }
}

// One output row's maxima for columns [a, b): y[ow - a] and, with Idx, idx[ow - a].
template <class T, bool Idx>
void max_row(const Pool2dParams& p, const MaxCols& mc, const T* xp, int64_t oh, int64_t a, int64_t b, T* y,
             int64_t* idx) {
  const int64_t h0 = oh * p.stride_h - p.pad_h;
  const bool in_row = h0 >= 0 && h0 + (p.kh - 1) * p.dil_h < p.h;
  int64_t ibeg = 0;
  while (ibeg < p.kh && h0 + ibeg * p.dil_h < 0) ++ibeg;
  int64_t lo = b, hi = b;
  if (mc.vec && mc.lo < mc.hi && ibeg < p.kh && h0 + ibeg * p.dil_h < p.h) {
    lo = mc.lo < a ? a : mc.lo;
    hi = mc.hi > b ? b : mc.hi;
    const bool done = lo < hi && (p.stride_w == 1 ? max_cols<T, 1, Idx>(p, xp, h0, ibeg, lo, hi, a, y, idx)
                                                  : max_cols<T, 2, Idx>(p, xp, h0, ibeg, lo, hi, a, y, idx));
    if (!done) lo = hi = b;
  }
  max_cols_scalar<T, Idx>(p, mc, xp, oh, in_row, a, lo, a, y, idx);
  max_cols_scalar<T, Idx>(p, mc, xp, oh, in_row, hi, b, a, y, idx);
}

constexpr int64_t kChunk = 256;  // output columns per stack-buffered chunk (recomputed indices)

// The forward's main path: rows whose window rows all lie inside the input, interior columns
// [mc.lo, mc.hi), with the kernel size (KH = KW = 0: at run time), stride and vector width fixed
// at compile time, so a narrow row costs little more than its vectors. Same operations per lane
// as max_cols_vec.
template <class T, int S, int B, int KH, int KW, bool Idx>
void max_cols_vec_in(const Pool2dParams& p, const T* xp, int64_t h0, int64_t lo, int64_t hi, T* y, int64_t* idx) {
  using W = VW<T, B>;
  using vec = typename W::vec;
  using ivec = typename W::ivec;
  using I = typename W::I;
  constexpr int L = W::L;
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, rs = p.dil_h * p.w, cs = p.dil_w;
  ivec iota;
  for (int t = 0; t < L; ++t) iota[t] = static_cast<I>(t * S);
  for (int64_t o = lo; o < hi; o += L) {
    const int64_t ow = o + L <= hi ? o : hi - L;
    const int64_t base = h0 * p.w + ow * S - p.pad_w;
    vec m = load_s<T, B, S>(xp + base);
    ivec mi = iota + static_cast<I>(base);
    for (int64_t i = 0; i < kh; ++i) {
      for (int64_t j = i == 0 ? 1 : 0; j < kw; ++j) {
        const int64_t off = base + i * rs + j * cs;
        const vec v = load_s<T, B, S>(xp + off);
        const ivec take = (v > m) | (v != v);
        m = take ? v : m;
        if constexpr (Idx) mi = take ? iota + static_cast<I>(off) : mi;
      }
    }
    __builtin_memcpy(y + ow, &m, B);
    if constexpr (Idx) {
      const typename W::lvec wide = __builtin_convertvector(mi, typename W::lvec);
      __builtin_memcpy(idx + ow, &wide, sizeof(wide));
    }
  }
}

template <class T, int S, int B, int KH, int KW, bool Idx>
void max_fwd_planes(const Pool2dParams& p, const MaxCols& mc, const T* x, T* y, int64_t* idx, int64_t p0,
                    int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * hw;
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      T* yr = y + plane * ohw + oh * p.ow;
      int64_t* ir = Idx ? idx + plane * ohw + oh * p.ow : nullptr;
      const int64_t h0 = oh * p.stride_h - p.pad_h;
      if (h0 < 0 || h0 + (p.kh - 1) * p.dil_h >= p.h) {
        max_row<T, Idx>(p, mc, xp, oh, 0, p.ow, yr, ir);
        continue;
      }
      if (mc.lo > 0) max_cols_scalar<T, Idx>(p, mc, xp, oh, true, 0, mc.lo, 0, yr, ir);
      if constexpr (B > 0) {
        max_cols_vec_in<T, S, B, KH, KW, Idx>(p, xp, h0, mc.lo, mc.hi, yr, ir);
      } else {
        max_cols_in<T, KH, KW, Idx>(p, xp, h0, mc.lo, mc.hi, 0, yr, ir);
      }
      if (mc.hi < p.ow) max_cols_scalar<T, Idx>(p, mc, xp, oh, true, mc.hi, p.ow, 0, yr, ir);
    }
  }
}

template <class T, int S, int B, bool Idx>
void max_fwd_k(const Pool2dParams& p, const MaxCols& mc, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  if (p.kh == 2 && p.kw == 2) return max_fwd_planes<T, S, B, 2, 2, Idx>(p, mc, x, y, idx, p0, p1);
  if (p.kh == 3 && p.kw == 3) return max_fwd_planes<T, S, B, 3, 3, Idx>(p, mc, x, y, idx, p0, p1);
  max_fwd_planes<T, S, B, 0, 0, Idx>(p, mc, x, y, idx, p0, p1);
}

// The widest vector the interior columns fill; rows without one take max_row.
template <class T, int S, bool Idx>
void max_fwd_s(const Pool2dParams& p, const MaxCols& mc, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  constexpr int B1 = kVecBytes, B2 = kVecBytes > 32 ? 32 : 16;
  const int64_t n = mc.hi - mc.lo;
  if (n >= VW<T, B1>::L) return max_fwd_k<T, S, B1, Idx>(p, mc, x, y, idx, p0, p1);
  if (B2 < B1 && n >= VW<T, B2>::L) return max_fwd_k<T, S, B2, Idx>(p, mc, x, y, idx, p0, p1);
  if (16 < B2 && n >= VW<T, 16>::L) return max_fwd_k<T, S, 16, Idx>(p, mc, x, y, idx, p0, p1);
  max_fwd_k<T, S, 0, Idx>(p, mc, x, y, idx, p0, p1);  // narrow rows: the scalar window loop
}

// Small planes (LeNet's 4x4 -> 2x2): output rows narrower than the narrowest vector give the row
// kernels nothing to vectorise, so a vector holds whole planes instead. Lane t computes output
// t % ohw of the t / ohw-th plane of the vector, loading its taps through a table of window
// offsets; every window lies inside the input. Same operations per lane as max_cols_vec.
template <class T, int B, bool Idx>
void max_fwd_planes_vec(const Pool2dParams& p, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  using W = VW<T, B>;
  using vec = typename W::vec;
  using ivec = typename W::ivec;
  using I = typename W::I;
  constexpr int L = W::L;
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  const int64_t per = L / ohw < p1 - p0 ? L / ohw : p1 - p0;  // planes per vector
  ivec pos;       // window origin within its plane
  int64_t at[L];  // and within the vector's planes
  for (int t = 0; t < L; ++t) {
    const int64_t q = t < per * ohw ? t : 0;  // spare lanes repeat lane 0
    const int64_t o = q % ohw;
    pos[t] = static_cast<I>((o / p.ow) * p.stride_h * p.w + (o % p.ow) * p.stride_w);
    at[t] = (q / ohw) * hw + pos[t];
  }
  const int64_t n = per * ohw;
  for (int64_t b = p0; b < p1; b += per) {
    const int64_t pl = b + per <= p1 ? b : p1 - per;  // the last vector overlaps the previous one
    const T* xp = x + pl * hw;
    vec m{};
    ivec mi{};
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t off = i * p.dil_h * p.w + j * p.dil_w;
        vec v;
        for (int t = 0; t < L; ++t) v[t] = xp[at[t] + off];
        if (i == 0 && j == 0) {
          m = v;
          if constexpr (Idx) mi = pos;
        } else {
          const ivec take = (v > m) | (v != v);
          m = take ? v : m;
          if constexpr (Idx) mi = take ? pos + static_cast<I>(off) : mi;
        }
      }
    }
    __builtin_memcpy(y + pl * ohw, &m, static_cast<size_t>(n) * sizeof(T));
    if constexpr (Idx) {
      const typename W::lvec wide = __builtin_convertvector(mi, typename W::lvec);
      __builtin_memcpy(idx + pl * ohw, &wide, static_cast<size_t>(n) * sizeof(int64_t));
    }
  }
}

// Whether max_fwd_planes_vec takes these planes (the widest vector holds one at least, and no
// row is wide enough for the row kernels).
template <class T>
bool planes_vec_applies(const Pool2dParams& p, const MaxCols& mc) {
  const bool inside = p.pad_h == 0 && (p.oh - 1) * p.stride_h + (p.kh - 1) * p.dil_h < p.h && mc.lo == 0 &&
                      mc.hi == p.ow;
  return inside && p.ow < VW<T, 16>::L && p.oh * p.ow <= VW<T, kVecBytes>::L && p.h * p.w < (int64_t{1} << 31);
}

template <class T, bool Idx>
void max_fwd_t(const Pool2dParams& p, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  const MaxCols mc = max_cols_setup<T>(p);
  if (planes_vec_applies<T>(p, mc)) return max_fwd_planes_vec<T, kVecBytes, Idx>(p, x, y, idx, p0, p1);
  if (!mc.vec) return max_fwd_k<T, 0, 0, Idx>(p, mc, x, y, idx, p0, p1);
  if (p.stride_w == 1) return max_fwd_s<T, 1, Idx>(p, mc, x, y, idx, p0, p1);
  max_fwd_s<T, 2, Idx>(p, mc, x, y, idx, p0, p1);
}

template <class T>
void max_fwd(const Pool2dParams& p, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  if (idx != nullptr) return max_fwd_t<T, true>(p, x, y, idx, p0, p1);
  max_fwd_t<T, false>(p, x, y, idx, p0, p1);
}

// Returns the flat position of the first out-of-range index in [p0, p1) planes, or -1 (those
// are skipped; the operator then throws).
template <class T>
int64_t max_bwd(const Pool2dParams& p, const T* dy, const T* x, const int64_t* idx, T* dx, int64_t p0,
                int64_t p1) {
  const int64_t hw = p.h * p.w, ohw = p.oh * p.ow;
  alignas(64) int64_t ibuf[kChunk];
  alignas(64) T ybuf[kChunk];
  const MaxCols mc = max_cols_setup<T>(p);
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
        max_row<T, true>(p, mc, xp, oh, a, b, ybuf, ibuf);
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
