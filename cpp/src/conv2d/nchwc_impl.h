// conv2d_nchwc_fwd_<isa>: the blocked-layout conv forward (pyconv/nchwc.h). A tile is P output
// pixels of one row times NB 16-channel output blocks, P * NB * (16 / L) accumulators in
// registers. Dense: each (in block, tap, in channel) step loads NB weight rows (16 output
// channels each) and broadcasts P input elements, P * NB FMAs per NB loads. Depthwise: each tap
// loads one weight vector and P input vectors (3-wide kernels on AVX-512: each input vector once
// per row, for all its taps). Tiles whose taps stay inside the input run without bounds checks;
// edge tiles (padding, the last pixels of a row) check each pixel.
// Every output element is summed in one fixed order whatever the tiling and the thread count.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

constexpr int64_t B = kNchwcBlock;

template <class T>
struct Shape {
  static constexpr int L = V<T>::L;
  static constexpr int NVB = B / L;                       // vectors per 16-channel block
  static constexpr int NB = kVecBytes == 64 && NVB == 1 ? 2 : 1;  // blocks per dense tile
  static constexpr int ACC = kVecBytes == 64 ? 28 : 12;   // accumulator registers
  static constexpr int P = std::max(1, ACC / (NVB * NB));
  static constexpr int PD = std::max(1, ACC / NVB);      // depthwise pixels per tile
};

// Stores a tile: res, clamp, to the blocked or NCHW output. acc[p][j*NVB + v] is output pixel
// p of block kb0 + j, lanes v*L ...
template <class T, int P, int NV>
inline void store(const NchwcConv<T>& a, int64_t n, int64_t kb0, int64_t nb, int64_t oh, int64_t ow0, int np,
                  typename V<T>::vec (&acc)[P][NV]) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L, NVB = Shape<T>::NVB;
  const vec vlo = vec{} + a.lo, vhi = vec{} + a.hi;
  const int64_t plane = a.oh * a.ow, kb = (a.k + B - 1) / B;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t blk = kb0 + j;
    if (a.y_blocked) {
      const int64_t off = a.yring ? (((blk - a.yb0) * a.yring + oh % a.yring) * a.ow + ow0) * B
                                  : ((n * kb + blk) * plane + oh * a.ow + ow0) * B;
      T* y = a.y + off;
      const T* r = a.res ? a.res + off : nullptr;
      for (int p = 0; p < np; ++p)
        for (int v = 0; v < NVB; ++v) {
          vec t = acc[p][j * NVB + v];
          if (r) t += loadu(r + p * B + v * L);
          t = t < vlo ? vlo : t;
          t = t > vhi ? vhi : t;
          storeu(y + p * B + v * L, t);
        }
    } else {
      const int64_t kn = std::min<int64_t>(B, a.k - blk * B);
      for (int64_t ch = 0; ch < kn; ++ch) {
        const int64_t off = (n * a.k + blk * B + ch) * plane + oh * a.ow + ow0;
        T* y = a.y + off;
        const T* r = a.res ? a.res + off : nullptr;
        for (int p = 0; p < np; ++p) {
          T t = acc[p][j * NVB + ch / L][ch % L];
          if (r) t += r[p];
          t = t < a.lo ? a.lo : t;
          t = t > a.hi ? a.hi : t;
          y[p] = t;
        }
      }
    }
  }
}

// How a dense tile reads its P input pixels per tap: all inside the input (STRIDED), or, for
// tiles touching the padding or past the row's end (np < P pixels), through one pointer per
// pixel that points at a zero block where the pixel is outside (POINTERS: blocked input, whose
// 16 channels of a pixel are contiguous), or by skipping those pixels (CHECKED: NCHW input).
// FLAT: a tile of np consecutive pixels of the flattened output plane (from q0 = ow0), across
// rows, through pointers (planes narrower than a tile: 7x7 fills 14 lanes of pixels, not 7).
enum class Rd { STRIDED, POINTERS, CHECKED, FLAT };

// Dense tile: NB blocks from kb0, np <= P pixels from (oh, ow0).
template <class T, int NB, int P, Rd MODE>
void dense_tile(const NchwcConv<T>& a, int64_t n, int64_t kb0, int64_t oh, int64_t ow0, int np) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L, NVB = Shape<T>::NVB, NV = NB * NVB;
  alignas(64) static constexpr T zeros[B] = {};
  vec acc[P][NV];
  for (int j = 0; j < NB; ++j)
    for (int v = 0; v < NVB; ++v) {
      const vec bv = a.b ? loadu(a.b + (kb0 + j) * B + v * L) : vec{};
#pragma GCC unroll 28
      for (int p = 0; p < P; ++p) acc[p][j * NVB + v] = bv;
    }
  const int64_t cb = (a.c + B - 1) / B, taps = a.r * a.s;
  const int64_t wblk = cb * taps * B * B;  // one output block's weights
  const T* w0 = a.wp + kb0 * wblk;
  const int64_t step = a.sw * a.xw;
  int64_t fh[P], fw[P];  // FLAT: each pixel's first input row and column
  if constexpr (MODE == Rd::FLAT)
    for (int p = 0; p < P; ++p) {
      const int64_t q = std::min<int64_t>(ow0 + p, a.oh * a.ow - 1);
      fh[p] = q / a.ow * a.sh - a.pt, fw[p] = q % a.ow * a.sw - a.pl;
    }
  for (int64_t ib = 0; ib < cb; ++ib) {
    const int64_t cn = std::min<int64_t>(B, a.c - ib * B);
    const T* xb = a.x + n * a.xn + ib * a.xcb;
    for (int64_t r = 0; r < a.r; ++r) {
      const int64_t ih = oh * a.sh - a.pt + r * a.dh;
      if (MODE != Rd::FLAT && (ih < 0 || ih >= a.h)) continue;
      const T* xr = xb + ih * a.xh;
      for (int64_t s = 0; s < a.s; ++s) {
        const int64_t iw0 = ow0 * a.sw - a.pl + s * a.dw;
        const T* wt = w0 + ((ib * a.r + r) * a.s + s) * B * B;
        bool ok[P];
        const T* px[P];
        if constexpr (MODE == Rd::FLAT) {
          for (int p = 0; p < P; ++p) {
            const int64_t h = fh[p] + r * a.dh, w = fw[p] + s * a.dw;
            px[p] = p < np && h >= 0 && h < a.h && w >= 0 && w < a.w ? xb + h * a.xh + w * a.xw : zeros;
          }
        } else if constexpr (MODE != Rd::STRIDED) {
          for (int p = 0; p < P; ++p) {
            const int64_t iw = iw0 + p * a.sw;
            ok[p] = p < np && iw >= 0 && iw < a.w;
            px[p] = ok[p] ? xr + iw * a.xw : zeros;
          }
        }
        const T* xc = xr + iw0 * a.xw;
        // the next input block's pixels and weights, a block ahead: at batch 1 they come cold
        // from L3 or the other core (2-3x the hot time without)
        if (a.xc == 1 && ib + 1 < cb) {
#pragma GCC unroll 28
          for (int p = 0; p < P; ++p) {
            if constexpr (MODE == Rd::STRIDED) __builtin_prefetch(xc + p * step + a.xcb);
            else if constexpr (MODE != Rd::CHECKED) if (px[p] != zeros) __builtin_prefetch(px[p] + a.xcb);
          }
        }
        for (int64_t ci = 0; ci < cn; ++ci) {
          vec wv[NV];
#pragma GCC unroll 4
          for (int j = 0; j < NB; ++j)
#pragma GCC unroll 4
            for (int v = 0; v < NVB; ++v) {
              wv[j * NVB + v] = loadu(wt + j * wblk + ci * B + v * L);
              __builtin_prefetch(wt + j * wblk + ci * B + v * L + taps * B * B);
            }
#pragma GCC unroll 28
          for (int p = 0; p < P; ++p) {
            T xv;
            if constexpr (MODE == Rd::STRIDED) {
              xv = xc[p * step + ci * a.xc];
            } else if constexpr (MODE == Rd::POINTERS || MODE == Rd::FLAT) {
              xv = px[p][ci];
            } else {
              if (!ok[p]) continue;
              xv = xc[p * step + ci * a.xc];
            }
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[p][v] += xv * wv[v];
          }
        }
      }
    }
  }
  store<T, P, NV>(a, n, kb0, NB, oh, ow0, np, acc);
}

// A depthwise tile's accumulators start at block kb's bias.
template <class T, int P>
inline void dw_start(const NchwcConv<T>& a, int64_t kb, typename V<T>::vec (&acc)[P][Shape<T>::NVB]) {
  using vec = typename V<T>::vec;
  for (int v = 0; v < Shape<T>::NVB; ++v) {
    const vec bv = a.b ? loadu(a.b + kb * B + v * V<T>::L) : vec{};
#pragma GCC unroll 28
    for (int p = 0; p < P; ++p) acc[p][v] = bv;
  }
}

// Depthwise tile: block kb, np <= P pixels from (oh, ow0) (np == P unless CHECK); x blocked.
// SW1: stride 1 known at compile time, so that each tap's P loads are at fixed offsets.
template <class T, int P, bool CHECK, bool SW1>
void dw_tile(const NchwcConv<T>& a, int64_t n, int64_t kb, int64_t oh, int64_t ow0, int np) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L, NVB = Shape<T>::NVB;
  alignas(64) static constexpr T zeros[B] = {};  // read for padding columns: no branches in the tap loop
  vec acc[P][NVB];
  dw_start<T, P>(a, kb, acc);
  const T* xb = a.x + n * a.xn + (kb - a.xb0) * a.xcb;
  const T* wb = a.wp + kb * a.r * a.s * B;
  const int64_t step = SW1 ? B : a.sw * B;
  for (int64_t r = 0; r < a.r; ++r) {
    const int64_t ih = oh * a.sh - a.pt + r * a.dh;
    if (ih < 0 || ih >= a.h) continue;
    const T* xr = xb + (a.xring ? ih % a.xring : ih) * a.xh;
    for (int64_t s = 0; s < a.s; ++s) {
      const int64_t iw0 = ow0 * a.sw - a.pl + s * a.dw;
      vec wv[NVB];
      for (int v = 0; v < NVB; ++v) wv[v] = loadu(wb + (r * a.s + s) * B + v * L);
      const T* xc = xr + iw0 * B;
#pragma GCC unroll 28
      for (int p = 0; p < P; ++p) {
        const T* src = xc + p * step;
        if constexpr (CHECK) src = iw0 + p * a.sw >= 0 && iw0 + p * a.sw < a.w ? src : zeros;
#pragma GCC unroll 8
        for (int v = 0; v < NVB; ++v) acc[p][v] += wv[v] * loadu(src + v * L);
      }
    }
  }
  store<T, P, NVB>(a, n, kb, 1, oh, ow0, np, acc);
}

// Depthwise tile of a 3-wide kernel at dilation 1 and stride SW: each input vector of a row is
// loaded once and used by every tap that reads it (1/3 load per FMA at stride 1, 2/3 at 2, not
// 1). Each pixel still sums its taps in the order r, s.
template <class T, int P, bool CHECK, int SW>
void dw_tile3(const NchwcConv<T>& a, int64_t n, int64_t kb, int64_t oh, int64_t ow0, int np) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L, NVB = Shape<T>::NVB, Q = SW * (P - 1) + 3;
  alignas(64) static constexpr T zeros[B] = {};
  vec acc[P][NVB];
  dw_start<T, P>(a, kb, acc);
  const T* xb = a.x + n * a.xn + (kb - a.xb0) * a.xcb;
  const T* wb = a.wp + kb * a.r * 3 * B;
  const int64_t iw0 = ow0 * SW - a.pl;
  for (int64_t r = 0; r < a.r; ++r) {
    const int64_t ih = oh * a.sh - a.pt + r * a.dh;
    if (ih < 0 || ih >= a.h) continue;
    const T* xc = xb + (a.xring ? ih % a.xring : ih) * a.xh + iw0 * B;
    vec wv[3][NVB];
    for (int s = 0; s < 3; ++s)
      for (int v = 0; v < NVB; ++v) wv[s][v] = loadu(wb + (r * 3 + s) * B + v * L);
#pragma GCC unroll 64
    for (int q = 0; q < Q; ++q) {
      const T* src = xc + q * B;
      if constexpr (CHECK) src = iw0 + q >= 0 && iw0 + q < a.w ? src : zeros;
#pragma GCC unroll 8
      for (int v = 0; v < NVB; ++v) {
        const vec xv = loadu(src + v * L);
#pragma GCC unroll 3
        for (int s = 0; s < 3; ++s)
          if (q >= s && (q - s) % SW == 0 && (q - s) / SW < P) acc[(q - s) / SW][v] += xv * wv[s][v];
      }
    }
  }
  store<T, P, NVB>(a, n, kb, 1, oh, ow0, np, acc);
}

// Depthwise output columns [c0, c1) of one row: the columns whose taps all stay inside the input
// in unchecked tiles of PW, then 8 pixels; the padding columns and the rest in checked tiles of
// up to 8 (never 1-pixel tiles: one pixel's taps are a chain of dependent FMAs). SW: the stride
// if known at compile time (else 0); K3: the 3-wide tile.
template <class T, int SW, bool K3>
inline void dw_row(const NchwcConv<T>& a, int64_t n, int64_t kb, int64_t oh, int64_t c0, int64_t c1) {
  constexpr int PD = Shape<T>::PD, PE = PD < 8 ? PD : 8, PW = K3 ? (Shape<T>::NVB == 1 ? 24 : 10) : PD;
  const auto tile = [&](auto P, auto check, int64_t ow, int64_t np) {
    if constexpr (K3)
      dw_tile3<T, decltype(P)::value, decltype(check)::value, SW>(a, n, kb, oh, ow, static_cast<int>(np));
    else
      dw_tile<T, decltype(P)::value, decltype(check)::value, SW == 1>(a, n, kb, oh, ow, static_cast<int>(np));
  };
  using Edge = std::integral_constant<int, PE>;
  const int64_t lo = std::clamp<int64_t>((a.pl + a.sw - 1) / a.sw, c0, c1);
  const int64_t last = a.w - 1 + a.pl - (a.s - 1) * a.dw;  // the input column of the last tap, shifted
  const int64_t hi = std::clamp<int64_t>(last < 0 ? 0 : last / a.sw + 1, lo, c1);
  int64_t ow = c0;
  for (; ow < lo; ow += PE) tile(Edge{}, std::true_type{}, ow, std::min<int64_t>(PE, c1 - ow));
  for (; ow + PW <= hi; ow += PW) tile(std::integral_constant<int, PW>{}, std::false_type{}, ow, PW);
  for (; ow + PE <= hi; ow += PE) tile(Edge{}, std::false_type{}, ow, PE);
  for (; ow < c1; ow += PE) tile(Edge{}, std::true_type{}, ow, std::min<int64_t>(PE, c1 - ow));
}

template <class T>
inline void dw_row(const NchwcConv<T>& a, int64_t n, int64_t kb, int64_t oh, int64_t c0, int64_t c1) {
  if (kVecBytes == 64 && a.s == 3 && a.dw == 1 && a.sw <= 2)  // AVX-512: registers for 24 pixels and 3 taps
    a.sw == 1 ? dw_row<T, 1, true>(a, n, kb, oh, c0, c1) : dw_row<T, 2, true>(a, n, kb, oh, c0, c1);
  else
    a.sw == 1 ? dw_row<T, 1, false>(a, n, kb, oh, c0, c1) : dw_row<T, 0, false>(a, n, kb, oh, c0, c1);
}

// Whether a tile of np pixels from ow0 reads only columns inside the input.
template <class T>
inline bool inside(const NchwcConv<T>& a, int64_t ow0, int np) {
  return ow0 * a.sw - a.pl >= 0 && (ow0 + np - 1) * a.sw - a.pl + (a.s - 1) * a.dw < a.w;
}

// One dense tile of np <= P pixels from (row, ow): inside the input unchecked, else (padding,
// the row's last pixels) through per-pixel pointers or checks; row < 0: the flattened plane.
template <class T, int NB, int P>
inline void dense_one(const NchwcConv<T>& a, int64_t n, int64_t b0, int64_t row, int64_t ow, int np) {
  if (row < 0)
    dense_tile<T, NB, P, Rd::FLAT>(a, n, b0, 0, ow, np);
  else if (np == P && inside(a, ow, np))
    dense_tile<T, NB, P, Rd::STRIDED>(a, n, b0, row, ow, np);
  else if (a.xc == 1)
    dense_tile<T, NB, P, Rd::POINTERS>(a, n, b0, row, ow, np);
  else
    dense_tile<T, NB, P, Rd::CHECKED>(a, n, b0, row, ow, np);
}

// Output columns [c0, c1) of one row (row < 0: of the flattened plane) in tiles of P pixels; a
// last tile of at most P/2 pixels runs as a half tile (a 7x7 plane is 14 + 14 + 14 + 7 pixels:
// a whole tile for the last 7 would compute 56).
template <class T, int NB>
void dense_row(const NchwcConv<T>& a, int64_t n, int64_t b0, int64_t row, int64_t c0, int64_t c1) {
  constexpr int P = Shape<T>::P, PH = P / 2 > 0 ? P / 2 : 1;
  for (int64_t ow = c0; ow < c1; ow += P) {
    const int np = static_cast<int>(std::min<int64_t>(P, c1 - ow));
    if (np <= PH)
      dense_one<T, NB, PH>(a, n, b0, row, ow, np);
    else
      dense_one<T, NB, P>(a, n, b0, row, ow, np);
  }
}

template <class T>
void nchwc_fwd(const NchwcConv<T>& a, const NchwcWork& wk, int64_t i0, int64_t i1) {
  const int64_t kb = (a.k + B - 1) / B;
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t chunk = it % wk.chunks, row = it / wk.chunks % wk.rows;
    const int64_t t = it / (wk.chunks * wk.rows) % wk.tiles, n = it / (wk.chunks * wk.rows * wk.tiles);
    const int64_t c0 = chunk * wk.chunk, c1 = std::min(wk.cols, c0 + wk.chunk);
    if (a.depthwise) {
      dw_row(a, n, t, row, c0, c1);
      continue;
    }
    // a tile pair t covers blocks [2t, 2t + 2): one two-block tile, or one-block tiles in turn
    const bool two = Shape<T>::NB == 2 && 2 * t + 2 <= kb;
    const int64_t r = wk.flat ? -1 : row;
    for (int64_t b0 = 2 * t; b0 < std::min(kb, 2 * t + 2); b0 += two ? 2 : 1)
      two ? dense_row<T, Shape<T>::NB>(a, n, b0, r, c0, c1) : dense_row<T, 1>(a, n, b0, r, c0, c1);
  }
}

// Items it = (n*tiles + t)*bands + band: expansion blocks [2t, 2t + 2) for the depthwise
// output rows of one band; scratch: 2 * ring * e.w * 16 elements, ring = (d.r - 1)*d.dh + 1.
template <class T>
void expand_dw(const NchwcConv<T>& e, const NchwcConv<T>& d, const NchwcWork& wk, int64_t i0, int64_t i1, T* ws) {
  const int64_t kb = (e.k + B - 1) / B, ring = (d.r - 1) * d.dh + 1;
  const int64_t band = (d.oh + wk.rows - 1) / wk.rows;  // wk.rows: bands per image
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t b = it % wk.rows, t = it / wk.rows % wk.tiles, n = it / (wk.rows * wk.tiles);
    const int64_t oh0 = b * band, oh1 = std::min(d.oh, oh0 + band);
    const int64_t nb = std::min<int64_t>(2, kb - 2 * t);
    NchwcConv<T> er = e, dr = d;
    er.y = ws, er.y_blocked = true, er.yring = ring, er.yb0 = 2 * t, er.lo = e.lo, er.hi = e.hi;
    dr.x = ws, dr.xn = 0, dr.xc = 1, dr.xw = B, dr.xh = e.w * B, dr.xcb = ring * e.w * B, dr.xring = ring;
    dr.xb0 = 2 * t;
    const bool two = Shape<T>::NB == 2 && nb == 2;
    int64_t next = 0;  // the first expansion row not computed yet
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t lo = oh * d.sh - d.pt, hi = std::min(d.h, lo + ring);
      for (int64_t j = std::max({next, lo, int64_t{0}}); j < hi; ++j) {
        for (int64_t b0 = 2 * t; b0 < 2 * t + nb; b0 += two ? 2 : 1)
          two ? dense_row<T, Shape<T>::NB>(er, n, b0, j, 0, e.w) : dense_row<T, 1>(er, n, b0, j, 0, e.w);
      }
      next = std::max(next, hi);
      for (int64_t blk = 2 * t; blk < 2 * t + nb; ++blk)
        dw_row(dr, n, blk, oh, 0, d.ow);
    }
  }
}

template <class T>
void global_avg(const NchwcPool<T>& a, int64_t i0, int64_t i1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L, NVB = Shape<T>::NVB;
  const int64_t cb = (a.c + B - 1) / B, plane = a.h * a.w;
  if (!a.x_blocked) {  // item = one plane; 4 vector sums, then the tail
    for (int64_t it = i0; it < i1; ++it) {
      const T* x = a.x + it * plane;
      vec s4[4] = {};
      int64_t q = 0;
      for (; q + 4 * L <= plane; q += 4 * L)
        for (int v = 0; v < 4; ++v) s4[v] += loadu(x + q + v * L);
      for (; q + L <= plane; q += L) s4[0] += loadu(x + q);
      const vec s = (s4[0] + s4[1]) + (s4[2] + s4[3]);
      T sum = T(0);
      for (int l = 0; l < L; ++l) sum += s[l];
      for (; q < plane; ++q) sum += x[q];
      a.y[it] = sum / static_cast<T>(plane);
    }
    return;
  }
  for (int64_t it = i0; it < i1; ++it) {
    const T* x = a.x + it * plane * B;
    vec sum[NVB];
    for (int v = 0; v < NVB; ++v) sum[v] = vec{};
    for (int64_t q = 0; q < plane; ++q)
      for (int v = 0; v < NVB; ++v) sum[v] += loadu(x + q * B + v * L);
    for (int v = 0; v < NVB; ++v) sum[v] *= T(1) / static_cast<T>(plane);
    const int64_t n = it / cb, blk = it % cb;
    if (a.y_blocked) {
      for (int v = 0; v < NVB; ++v) storeu(a.y + it * B + v * L, sum[v]);
    } else {
      for (int64_t ch = 0; ch < std::min<int64_t>(B, a.c - blk * B); ++ch) a.y[n * a.c + blk * B + ch] = sum[ch / L][ch % L];
    }
  }
}

}  // namespace

#define PYCONV_EXPORT_T(T)                                                                                   \
  void PYCONV_CAT(conv2d_nchwc_fwd, PYCONV_ISA)(const NchwcConv<T>& a, const NchwcWork& w, int64_t i0,       \
                                                int64_t i1) {                                                \
    nchwc_fwd<T>(a, w, i0, i1);                                                                              \
  }                                                                                                          \
  void PYCONV_CAT(conv2d_nchwc_expand_dw, PYCONV_ISA)(const NchwcConv<T>& e, const NchwcConv<T>& d,          \
                                                      const NchwcWork& w, int64_t i0, int64_t i1, T* ws) {   \
    expand_dw<T>(e, d, w, i0, i1, ws);                                                                       \
  }                                                                                                          \
  void PYCONV_CAT(global_avg_pool2d_nchwc, PYCONV_ISA)(const NchwcPool<T>& a, int64_t i0, int64_t i1) {      \
    global_avg<T>(a, i0, i1);                                                                                \
  }
PYCONV_EXPORT_T(float)
PYCONV_EXPORT_T(double)
#undef PYCONV_EXPORT_T

}  // namespace PYCONV_ISA
}  // namespace pyconv
