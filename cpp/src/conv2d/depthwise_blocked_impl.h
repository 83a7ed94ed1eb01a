// conv2d_dw_blocked_{fwd,bwd_data,bwd_weight}_<isa>: depthwise convolution on channel blocks of
// one vector (conv2d/depthwise_blocked.h). A work item gathers the rows it reads from NCHW into
// blocked, padded rows ([row][col][L], the padding of every mode applied through the maps), runs
// a core that only sees blocked rows, and scatters its blocked rows back. Each output element is
// one fixed-order sum (taps in (r, s) order; the weight gradient adds one partial sum per output
// row, images and rows in order), so neither the bands nor the thread count change a result.
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels.h"
#include "sizes.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

// Pixels per register tile: tile accumulators, a weight vector and the loads in the registers.
constexpr int kTile = kIsa == Isa::avx512 ? 8 : 4;
// Taps per weight-gradient pass: that many partial sums, a gradient and an input vector.
constexpr int kTaps = kIsa == Isa::avx512 ? 13 : 12;

// f(std::integral_constant<int, n>) for the last 0 < n < kTile pixels of a row: one tile with n
// independent accumulators (a 7-pixel row is one 7-wide tile, not seven dependent chains).
template <class F>
inline void with_tile(int64_t n, F&& f) {
  switch (n) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: if constexpr (kTile > 4) f(std::integral_constant<int, 4>{}); break;
    case 5: if constexpr (kTile > 5) f(std::integral_constant<int, 5>{}); break;
    case 6: if constexpr (kTile > 6) f(std::integral_constant<int, 6>{}); break;
    case 7: if constexpr (kTile > 7) f(std::integral_constant<int, 7>{}); break;
    default: break;
  }
}

template <class T>
T* align64(T* p) {
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

// ---- NCHW <-> blocked -------------------------------------------------------------------------

// r[i][j] = r[j][i]: log2(L) stages of two-vector shuffles.
template <class T>
inline void transpose(typename V<T>::vec (&r)[V<T>::L]) {
  using vec = typename V<T>::vec;
  using ivec = typename V<T>::ivec;
  constexpr int L = V<T>::L;
  for (int d = L / 2; d >= 1; d /= 2) {
    ivec lo, hi;
    for (int j = 0; j < L; ++j) {
      lo[j] = (j & d) == 0 ? j : L + j - d;
      hi[j] = (j & d) == 0 ? j + d : L + j;
    }
    for (int i = 0; i < L; ++i)
      if ((i & d) == 0) {
        const vec a = r[i], b = r[i + d];
        r[i] = __builtin_shuffle(a, b, lo);
        r[i + d] = __builtin_shuffle(a, b, hi);
      }
  }
}

// put(j, r, m) for blocks of m pixel vectors from pixel j: r[v][l] = src[l*cs + j + v], channels
// l >= nc reading channel nc - 1 (those lanes are never written out). Whole L x L blocks through
// registers; with count >= L the last block overlaps the one before (the same values put twice).
template <class T, class Put>
inline void load_transposed(const T* src, int64_t cs, int64_t nc, int64_t count, Put&& put) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  vec r[L];
  if (count < L) {
    for (int64_t j = 0; j < count; ++j)
      for (int l = 0; l < L; ++l) r[j][l] = src[std::min<int64_t>(l, nc - 1) * cs + j];
    put(int64_t{0}, r, static_cast<int>(count));
    return;
  }
  for (int64_t j0 = 0; j0 < count; j0 += L) {
    const int64_t j = std::min(j0, count - L);
    const T* q = src + j;
    for (int l = 0; l < L; ++l, q += l < nc ? cs : 0) r[l] = loadu(q);
    transpose<T>(r);
    put(j, r, L);
  }
}

// put for load_transposed: pixel j of a run of rows `cols` wide goes to dst + (j / cols * pitch +
// j % cols) * L (one division per block).
template <class T>
struct PutRows {
  T* dst;
  int64_t cols, pitch;
  inline void operator()(int64_t j, const typename V<T>::vec* r, int m) const {
    constexpr int L = V<T>::L;
    int64_t row = j / cols, col = j % cols;
    for (int v = 0; v < m; ++v) {
      storeu(dst + (row * pitch + col) * L, r[v]);
      if (++col == cols) col = 0, ++row;
    }
  }
};

// dst[l*cs + j] = get(j)[l] for j in [0, count), l < nc: the inverse of load_transposed.
template <class T, class Get>
inline void store_transposed(T* dst, int64_t cs, int64_t nc, int64_t count, Get&& get) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  if (count < L) {
    for (int64_t j = 0; j < count; ++j) {
      const vec v = get(j);
      for (int64_t l = 0; l < nc; ++l) dst[l * cs + j] = v[l];
    }
    return;
  }
  for (int64_t j0 = 0; j0 < count; j0 += L) {
    const int64_t j = std::min(j0, count - L);
    vec r[L];
    for (int v = 0; v < L; ++v) r[v] = get(j + v);
    transpose<T>(r);
    T* q = dst + j;
    for (int64_t l = 0; l < nc; ++l, q += cs) storeu(q, r[l]);
  }
}

// Padded rows [ph0, ph1) of channels [c0, c0 + nc) of image xn into xb[ph - ph0][q][l]
// (wp columns), through the maps. The interior rows are one flattened run of the planes (a
// 7x7 plane is 49 pixels, whole vectors); border columns copy the interior vectors they map to.
template <class T>
void gather_padded(const DwBlocked<T>& d, const T* xn, int64_t c0, int64_t nc, int64_t ph0, int64_t ph1, T* xb) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *d.p;
  const int64_t wp = p.w + p.pad_l + p.pad_r, hw = p.h * p.w;
  const T* xc = xn + c0 * hw;
  const int64_t ia = std::max(ph0, p.pad_t), ib = std::min(ph1, p.pad_t + p.h);
  for (int64_t ph = ph0; ph < ph1; ++ph) {
    if (ph >= ia && ph < ib) continue;
    T* o = xb + (ph - ph0) * wp * L;
    const int64_t ih = d.row_map[ph];
    if (ih < 0) {
      std::memset(o, 0, sizeof(T) * static_cast<size_t>(wp * L));
      continue;
    }
    load_transposed<T>(xc + ih * p.w, hw, nc, p.w, PutRows<T>{o + p.pad_l * L, p.w, p.w});
  }
  if (ia < ib) {
    T* o = xb + ((ia - ph0) * wp + p.pad_l) * L;
    load_transposed<T>(xc + (ia - p.pad_t) * p.w, hw, nc, (ib - ia) * p.w, PutRows<T>{o, p.w, wp});
  }
  if (p.pad_l + p.pad_r == 0) return;
  for (int64_t ph = ph0; ph < ph1; ++ph) {
    if (d.row_map[ph] < 0) continue;
    T* o = xb + (ph - ph0) * wp * L;
    for (int64_t q = 0; q < wp; ++q) {
      if (q == p.pad_l) q += p.w;
      if (q >= wp) break;
      const int64_t m = d.col_map[q];
      storeu(o + q * L, m >= 0 ? loadu(o + (p.pad_l + m) * L) : vec{});
    }
  }
}

// Blocked rows ob[i][j][l] (rows x cols) into planes yn[c0 + l][row0 + i][j] (pitch cols, plane
// size plane), lanes < nc: rows * cols consecutive elements of each plane.
template <class T>
void scatter_rows(const T* ob, int64_t rows, int64_t cols, T* yn, int64_t plane, int64_t row0, int64_t c0, int64_t nc) {
  constexpr int L = V<T>::L;
  store_transposed<T>(yn + c0 * plane + row0 * cols, plane, nc, rows * cols, [&](int64_t j) { return loadu(ob + j * L); });
}

// ---- cores on blocked rows --------------------------------------------------------------------

// NP output pixels from column ow of one row: x0 the padded input row of its first tap row,
// pitch xp elements per padded row; wk the r*s weight vectors.
template <class T, int NP>
inline void fwd_tile(const Conv2dParams& p, const T* x0, int64_t xp, const T* wk, typename V<T>::vec bias, T* orow,
                     int64_t ow) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const int64_t sw = p.stride_w * L;
  vec acc[NP];
  for (int v = 0; v < NP; ++v) acc[v] = bias;
  for (int64_t r = 0; r < p.r; ++r) {
    const T* xr = x0 + r * p.dil_h * xp + ow * sw;
    for (int64_t s = 0; s < p.s; ++s) {
      const vec wv = loadu(wk + (r * p.s + s) * L);
      const T* xs = xr + s * p.dil_w * L;
      for (int v = 0; v < NP; ++v) acc[v] += wv * loadu(xs + v * sw);
    }
  }
  for (int v = 0; v < NP; ++v) storeu(orow + (ow + v) * L, acc[v]);
}

// The same sums for stride 1, no column dilation and SS taps per row: the NP + SS - 1 input
// vectors of a tap row are loaded once and slide under the SS weights.
template <class T, int NP, int SS>
inline void fwd_tile_s1(const Conv2dParams& p, const T* x0, int64_t xp, const T* wk, typename V<T>::vec bias,
                        T* orow, int64_t ow) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  vec acc[NP];
  for (int v = 0; v < NP; ++v) acc[v] = bias;
  for (int64_t r = 0; r < p.r; ++r) {
    const T* xr = x0 + r * p.dil_h * xp + ow * L;
    vec xv[NP + SS - 1];
    for (int i = 0; i < NP + SS - 1; ++i) xv[i] = loadu(xr + i * L);
    for (int s = 0; s < SS; ++s) {
      const vec wv = loadu(wk + (r * SS + s) * L);
      for (int v = 0; v < NP; ++v) acc[v] += wv * xv[v + s];
    }
  }
  for (int v = 0; v < NP; ++v) storeu(orow + (ow + v) * L, acc[v]);
}

template <class T, int SS>
void fwd_rows_s1(const Conv2dParams& p, const T* xb, int64_t xp, const T* wk, typename V<T>::vec b, int64_t rows,
                 T* ob, int64_t op) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* x0 = xb + i * p.stride_h * xp;
    T* orow = ob + i * op;
    int64_t ow = 0;
    for (; ow + kTile <= p.ow; ow += kTile) fwd_tile_s1<T, kTile, SS>(p, x0, xp, wk, b, orow, ow);
    with_tile(p.ow - ow, [&](auto np) { fwd_tile_s1<T, decltype(np)::value, SS>(p, x0, xp, wk, b, orow, ow); });
  }
}

// Output rows [0, rows) of a band: output row i reads padded rows i*sh + r*dh of xb (pitch xp);
// writes ob[i][ow][L] (pitch op elements per row). This is the blocked-layout forward.
template <class T>
void fwd_rows(const Conv2dParams& p, const T* xb, int64_t xp, const T* wk, const T* bias, int64_t rows, T* ob,
              int64_t op) {
  using vec = typename V<T>::vec;
  const vec b = bias ? loadu(bias) : vec{};
  if (p.stride_w == 1 && p.dil_w == 1) {
    switch (p.s) {
      case 3: return fwd_rows_s1<T, 3>(p, xb, xp, wk, b, rows, ob, op);
      case 5: return fwd_rows_s1<T, 5>(p, xb, xp, wk, b, rows, ob, op);
      case 7: return fwd_rows_s1<T, 7>(p, xb, xp, wk, b, rows, ob, op);
      default: break;
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    const T* x0 = xb + i * p.stride_h * xp;
    T* orow = ob + i * op;
    int64_t ow = 0;
    for (; ow + kTile <= p.ow; ow += kTile) fwd_tile<T, kTile>(p, x0, xp, wk, b, orow, ow);
    with_tile(p.ow - ow, [&](auto np) { fwd_tile<T, decltype(np)::value>(p, x0, xp, wk, b, orow, ow); });
  }
}

// NP input-gradient pixels iw = cls + (j + v)*sw of input row a - pad_t: u the dy band (rows
// from output row olo, pitch up elements, fc zero columns on the left).
template <class T, int NP>
inline void bwd_tile(const Conv2dParams& p, int64_t a, int64_t olo, const T* u, int64_t up, int64_t fc, const T* wk,
                     int64_t cls, int64_t j, T* orow) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const int64_t sh = p.stride_h, sw = p.stride_w;
  vec acc[NP] = {};
  for (int64_t r = 0; r < p.r; ++r) {
    const int64_t t = a - r * p.dil_h, oh = floor_div(t, sh);
    if (oh * sh != t) continue;
    const T* ur = u + (oh - olo) * up;
    for (int64_t s = 0; s < p.s; ++s) {
      const int64_t q = cls + p.pad_l - s * p.dil_w, ow = floor_div(q, sw);
      if (ow * sw != q) continue;
      const vec wv = loadu(wk + (r * p.s + s) * L);
      const T* us = ur + (ow + fc + j) * L;
      for (int v = 0; v < NP; ++v) acc[v] += wv * loadu(us + v * L);
    }
  }
  for (int v = 0; v < NP; ++v) storeu(orow + (cls + (j + v) * sw) * L, acc[v]);
}

// Input-gradient rows [ih0, ih0 + rows) into ob[i][iw][L] (pitch op): the blocked-layout
// transposed convolution, each input column class modulo the stride with its own taps.
template <class T>
void bwd_rows(const Conv2dParams& p, int64_t ih0, int64_t rows, int64_t olo, const T* u, int64_t up, int64_t fc,
              const T* wk, T* ob, int64_t op) {
  const int64_t sw = p.stride_w;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t a = ih0 + i + p.pad_t;
    T* orow = ob + i * op;
    for (int64_t cls = 0; cls < sw && cls < p.w; ++cls) {
      const int64_t cnt = (p.w - cls + sw - 1) / sw;
      int64_t j = 0;
      for (; j + kTile <= cnt; j += kTile) bwd_tile<T, kTile>(p, a, olo, u, up, fc, wk, cls, j, orow);
      with_tile(cnt - j, [&](auto np) { bwd_tile<T, decltype(np)::value>(p, a, olo, u, up, fc, wk, cls, j, orow); });
    }
  }
}

// acc[t0 + t] += per output row, the sum over the row of dy * x at tap t0 + t (NT taps).
template <class T, int NT>
void wgrad_taps(const Conv2dParams& p, const T* xb, int64_t xp, const T* g, int64_t gp, int64_t rows, int64_t t0,
                T* acc) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const int64_t sw = p.stride_w * L;
  int64_t off[NT];
  for (int t = 0; t < NT; ++t) off[t] = ((t0 + t) / p.s * p.dil_h * xp) + ((t0 + t) % p.s) * p.dil_w * L;
  for (int64_t i = 0; i < rows; ++i) {
    const T* xr = xb + i * p.stride_h * xp;
    const T* gr = g + i * gp;
    vec part[NT] = {};
    for (int64_t ow = 0; ow < p.ow; ++ow) {
      const vec gv = loadu(gr + ow * L);
      const T* xo = xr + ow * sw;
      for (int t = 0; t < NT; ++t) part[t] += gv * loadu(xo + off[t]);
    }
    for (int t = 0; t < NT; ++t) storeu(acc + (t0 + t) * L, loadu(acc + (t0 + t) * L) + part[t]);
  }
}

// The weight gradient of a band: acc[t][L] += sum over its rows (blocked-layout core).
template <class T>
void wgrad_rows(const Conv2dParams& p, const T* xb, int64_t xp, const T* g, int64_t gp, int64_t rows, T* acc) {
  const int64_t rs = p.r * p.s;
  const int64_t passes = (rs + kTaps - 1) / kTaps, per = (rs + passes - 1) / passes;
  for (int64_t t0 = 0; t0 < rs; t0 += per) {
    switch (std::min(per, rs - t0)) {
#define PYCONV_DWB_CASE(n) \
  case n: wgrad_taps<T, n>(p, xb, xp, g, gp, rows, t0, acc); break;
      PYCONV_DWB_CASE(1) PYCONV_DWB_CASE(2) PYCONV_DWB_CASE(3) PYCONV_DWB_CASE(4) PYCONV_DWB_CASE(5)
      PYCONV_DWB_CASE(6) PYCONV_DWB_CASE(7) PYCONV_DWB_CASE(8) PYCONV_DWB_CASE(9) PYCONV_DWB_CASE(10)
      PYCONV_DWB_CASE(11) PYCONV_DWB_CASE(12) PYCONV_DWB_CASE(13)
#undef PYCONV_DWB_CASE
      default: break;
    }
  }
}

// ---- work items -------------------------------------------------------------------------------

template <class T>
void fwd(const DwBlocked<T>& d, int64_t i0, int64_t i1, T* ws) {
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *d.p;
  const int64_t rs = p.r * p.s, wp = p.w + p.pad_l + p.pad_r, eh = (p.r - 1) * p.dil_h;
  const DwBlockedSizes z = dw_blocked_sizes(p, ConvDir::fwd, d.band, L);
  T* xb = align64(ws);
  T* ob = align64(xb + z.in);
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t bi = it % d.nband, cb = it / d.nband % d.ncb, n = it / d.nband / d.ncb;
    const int64_t oh0 = bi * d.band, rows = std::min(d.band, p.oh - oh0);
    const int64_t c0 = cb * L, nc = std::min<int64_t>(L, p.c - c0);
    const int64_t ph0 = oh0 * p.stride_h;
    gather_padded(d, d.x + n * p.c * p.h * p.w, c0, nc, ph0, (oh0 + rows - 1) * p.stride_h + eh + 1, xb);
    fwd_rows(p, xb, wp * L, d.wb + cb * rs * L, d.bb ? d.bb + cb * L : nullptr, rows, ob, p.ow * L);
    scatter_rows(ob, rows, p.ow, d.y + n * p.c * p.oh * p.ow, p.oh * p.ow, oh0, c0, nc);
  }
}

template <class T>
void bwd_data(const DwBlocked<T>& d, int64_t i0, int64_t i1, T* ws) {
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *d.p;
  const int64_t rs = p.r * p.s, eh = (p.r - 1) * p.dil_h, ohw = p.oh * p.ow;
  const DwBlockedSizes z = dw_blocked_sizes(p, ConvDir::bwd_data, d.band, L);
  const int64_t fc = (z.in_cols - p.ow) / 2, up = z.in_cols * L;
  T* u = align64(ws);
  T* ob = align64(u + z.in);
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t bi = it % d.nband, cb = it / d.nband % d.ncb, n = it / d.nband / d.ncb;
    const int64_t ih0 = bi * d.band, rows = std::min(d.band, p.h - ih0);
    const int64_t c0 = cb * L, nc = std::min<int64_t>(L, p.c - c0);
    // dy rows [olo, ohi] (zero outside the plane), columns from -fc, blocked.
    const int64_t olo = floor_div(ih0 + p.pad_t - eh, p.stride_h);
    const int64_t ohi = floor_div(ih0 + rows - 1 + p.pad_t, p.stride_h);
    const T* dyn = d.dy + n * p.c * ohw;
    std::memset(u, 0, sizeof(T) * static_cast<size_t>((ohi - olo + 1) * up));
    const int64_t oa = std::max<int64_t>(olo, 0), ob1 = std::min<int64_t>(ohi + 1, p.oh);
    if (oa < ob1) {
      T* o = u + (oa - olo) * up + fc * L;
      load_transposed<T>(dyn + c0 * ohw + oa * p.ow, ohw, nc, (ob1 - oa) * p.ow, PutRows<T>{o, p.ow, up / L});
    }
    bwd_rows(p, ih0, rows, olo, u, up, fc, d.wb + cb * rs * L, ob, p.w * L);
    scatter_rows(ob, rows, p.w, d.dx + n * p.c * p.h * p.w, p.h * p.w, ih0, c0, nc);
  }
}

template <class T>
void bwd_weight(const DwBlocked<T>& d, int64_t i0, int64_t i1, T* ws) {
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *d.p;
  const int64_t rs = p.r * p.s, wp = p.w + p.pad_l + p.pad_r, eh = (p.r - 1) * p.dil_h, ohw = p.oh * p.ow;
  const DwBlockedSizes z = dw_blocked_sizes(p, ConvDir::bwd_weight, d.band, L);
  T* xb = align64(ws);
  T* g = align64(xb + z.in);
  T* acc = align64(g + z.out);
  for (int64_t cb = i0; cb < i1; ++cb) {
    const int64_t c0 = cb * L, nc = std::min<int64_t>(L, p.c - c0);
    std::memset(acc, 0, sizeof(T) * static_cast<size_t>(rs * L));
    for (int64_t n = 0; n < p.n; ++n) {
      for (int64_t bi = 0; bi < d.nband; ++bi) {
        const int64_t oh0 = bi * d.band, rows = std::min(d.band, p.oh - oh0);
        gather_padded(d, d.x + n * p.c * p.h * p.w, c0, nc, oh0 * p.stride_h, (oh0 + rows - 1) * p.stride_h + eh + 1, xb);
        load_transposed<T>(d.dy + (n * p.c + c0) * ohw + oh0 * p.ow, ohw, nc, rows * p.ow,
                           PutRows<T>{g, rows * p.ow, 0});
        wgrad_rows(p, xb, wp * L, g, p.ow * L, rows, acc);
      }
    }
    for (int64_t l = 0; l < nc; ++l)
      for (int64_t t = 0; t < rs; ++t) d.dw[(c0 + l) * rs + t] = acc[t * L + l];
  }
}

}  // namespace

#define PYCONV_EXPORT(fam, impl)                                                                  \
  void PYCONV_CAT(fam, PYCONV_ISA)(const DwBlocked<float>& d, int64_t i0, int64_t i1, float* ws) { \
    impl<float>(d, i0, i1, ws);                                                                   \
  }                                                                                               \
  void PYCONV_CAT(fam, PYCONV_ISA)(const DwBlocked<double>& d, int64_t i0, int64_t i1, double* ws) { \
    impl<double>(d, i0, i1, ws);                                                                  \
  }
PYCONV_EXPORT(conv2d_dw_blocked_fwd, fwd)
PYCONV_EXPORT(conv2d_dw_blocked_bwd_data, bwd_data)
PYCONV_EXPORT(conv2d_dw_blocked_bwd_weight, bwd_weight)
#undef PYCONV_EXPORT

}  // namespace PYCONV_ISA
}  // namespace pyconv
