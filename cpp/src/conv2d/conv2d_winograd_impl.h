// conv2d_winograd_{filter,input,output}_<isa>: the transforms of Winograd F(4x4, 3x3)
// (Lavin & Gray 2016, interpolation points 0, 1, -1, 2, -2, infinity):
//   U = G g G^T (6x6 per filter),  V = B^T d B (6x6 per input tile),  y = A^T M A (4x4),
// M[xi] = sum_c U[xi][k][c] V[xi][c][tile] being the GEMMs the operator (winograd_units.cpp) runs.
// The input and output transforms are vectorised across tiles: lane t of a vector is tile t of a
// run of the unit. Within one tile row the inputs of consecutive tiles start 4 columns apart, so a
// row of 4L + 2 inputs is loaded as 5 vectors and de-interleaved by 4 with shuffles (and the
// outputs interleaved back); runs crossing a tile row or an image are assembled per segment.
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "pyconv/gemm.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

template <class T>
using vec_t = typename V<T>::vec;
template <class T>
using ivec_t = typename V<T>::ivec;

// 1-D transforms. bt: t = B^T d (6 -> 6); at: o = A^T m (6 -> 4); g: u = G g (3 -> 6).
template <class W>
inline void bt6(const W d[6], W t[6]) {
  const W s12 = d[1] + d[2], d12 = d[1] - d[2], s34 = d[4] + d[3], d34 = d[4] - d[3];
  const W e = d[4] - d[2], f = d[3] - d[1];
  t[0] = d[0] * 4 - d[2] * 5 + d[4];
  t[1] = s34 - s12 * 4;
  t[2] = d34 + d12 * 4;
  t[3] = e + f * 2;
  t[4] = e - f * 2;
  t[5] = d[1] * 4 - d[3] * 5 + d[5];
}

template <class W>
inline void at6(const W m[6], W o[4]) {
  const W s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + d34 * 2;
  o[2] = s12 + s34 * 4;
  o[3] = d12 + d34 * 8 + m[5];
}

template <class W, class S>
inline void g3(const W g[3], W u[6]) {
  const W a = g[0] + g[2], b = g[0] * S(1.0 / 24) + g[2] * S(1.0 / 6), c = g[1] * S(1.0 / 12);
  u[0] = g[0] * S(0.25);
  u[1] = (a + g[1]) * S(-1.0 / 6);
  u[2] = (a - g[1]) * S(-1.0 / 6);
  u[3] = b + c;
  u[4] = b - c;
  u[5] = g[2];
}

// p[j] lane t = s[4t + j], j = 0..5 (reads s[0 .. 5L)).
template <class T>
inline void deinterleave4(const T* s, vec_t<T> p[6]) {
  using vec = vec_t<T>;
  using ivec = ivec_t<T>;
  constexpr int L = V<T>::L;
  const vec a0 = loadu(s), a1 = loadu(s + L), a2 = loadu(s + 2 * L), a3 = loadu(s + 3 * L), a4 = loadu(s + 4 * L);
  ivec m2, m3, m4;
  for (int t = 0; t < L; ++t) {
    m2[t] = t < L / 2 ? t : L + t - L / 2;
    m3[t] = t < L - 1 ? t + 1 : L;
    m4[t] = t < L - 1 ? t + 1 : L + 1;
  }
  for (int j = 0; j < 4; ++j) {
    ivec m1;
    for (int t = 0; t < L; ++t) m1[t] = t < L / 2 ? 4 * t + j : 0;
    p[j] = __builtin_shuffle(__builtin_shuffle(a0, a1, m1), __builtin_shuffle(a2, a3, m1), m2);
  }
  p[4] = __builtin_shuffle(p[0], a4, m3);
  p[5] = __builtin_shuffle(p[1], a4, m4);
}

// dst[4t + s] = q[s] lane t (writes dst[0 .. 4L)).
template <class T>
inline void interleave4(const vec_t<T> q[4], T* dst) {
  using vec = vec_t<T>;
  using ivec = ivec_t<T>;
  constexpr int L = V<T>::L;
  if constexpr (L < 4) {
    for (int t = 0; t < L; ++t)
      for (int s = 0; s < 4; ++s) dst[4 * t + s] = q[s][t];
  } else {
    ivec lo, hi;
    for (int e = 0; e < L; ++e) {
      lo[e] = (e % 2 ? L : 0) + e / 2;
      hi[e] = (e % 2 ? L : 0) + L / 2 + e / 2;
    }
    const vec r01[2] = {__builtin_shuffle(q[0], q[1], lo), __builtin_shuffle(q[0], q[1], hi)};
    const vec r23[2] = {__builtin_shuffle(q[2], q[3], lo), __builtin_shuffle(q[2], q[3], hi)};
    for (int m = 0; m < 4; ++m) {
      ivec idx;
      for (int e = 0; e < L; ++e) {
        const int s = e % 4, tile = (m % 2) * (L / 4) + e / 4;
        idx[e] = tile * 2 + s % 2 + (s >= 2 ? L : 0);
      }
      storeu(dst + m * L, __builtin_shuffle(r01[m / 2], r23[m / 2], idx));
    }
  }
}

// A chunk of CB input channels of one panel is transformed into a local buffer first, so that
// each of the 36 destinations receives one contiguous run instead of MR elements at a time.
template <class T>
void filter(const T* w, int64_t kout, int64_t cin, int64_t so, int64_t si, bool flip, int64_t kc, int64_t kp0,
            int64_t kp1, T* u) {
  using vec = vec_t<T>;
  constexpr int L = V<T>::L, MR = gemm_tile<T>(kIsa).mr, NV = (MR + L - 1) / L, CB = 16;
  constexpr int ROW = CB * MR + NV * L;  // the last channel's vectors may run NV * L - MR past
  const int64_t kp = (kout + MR - 1) / MR * MR;
  alignas(64) T buf[36][ROW];
  for (int64_t panel = kp0; panel < kp1; ++panel) {
    const int64_t o0 = panel * MR, lanes = kout - o0 < MR ? kout - o0 : MR;
    for (int64_t cc = 0; cc < cin;) {
      const int64_t c0 = cc / kc * kc, kb = cin - c0 < kc ? cin - c0 : kc;
      const int64_t ce = cc + CB < c0 + kb ? cc + CB : c0 + kb;
      for (int64_t c = cc; c < ce; ++c) {
        alignas(64) T g[9][NV * L] = {};
        for (int64_t i = 0; i < lanes; ++i)
          for (int tap = 0; tap < 9; ++tap) g[tap][i] = w[(o0 + i) * so + c * si + (flip ? 8 - tap : tap)];
        for (int nv = 0; nv < NV; ++nv) {
          vec col[3][6], row[3], out[6];
          for (int s = 0; s < 3; ++s) {
            const vec gs[3] = {loadu(&g[s][nv * L]), loadu(&g[3 + s][nv * L]), loadu(&g[6 + s][nv * L])};
            g3<vec, T>(gs, col[s]);  // G applied down each kernel column
          }
          for (int a = 0; a < 6; ++a) {
            for (int s = 0; s < 3; ++s) row[s] = col[s][a];
            g3<vec, T>(row, out);  // and along each row
            for (int b = 0; b < 6; ++b) storeu(&buf[a * 6 + b][(c - cc) * MR + nv * L], out[b]);
          }
        }
      }
      T* dst = u + c0 * kp + panel * MR * kb + (cc - c0) * MR;
      for (int xi = 0; xi < 36; ++xi) std::memcpy(dst + xi * kp * cin, buf[xi], sizeof(T) * (ce - cc) * MR);
      cc = ce;
    }
  }
}

// One row i of the 6x6 input tiles of a segment, transformed along the row: e[b] = (d B)[i][b].
template <class T>
inline void input_row(const T* src, vec_t<T> e[6]) {
  vec_t<T> d[6];
  deinterleave4(src, d);
  bt6(d, e);
}

// Rows 0..R-1 of the tiles of vector vi, each transformed along the row by `row`; lanes outside
// the unit's segments are zero. si is the vector's first segment, advanced past its last.
template <class T, int R, class Row>
inline void tile_rows(const WinoTiles<T>& u, const T* plane, int64_t vi, int64_t& si, Row row, vec_t<T> e[R][6]) {
  using vec = vec_t<T>;
  using ivec = ivec_t<T>;
  constexpr int L = V<T>::L;
  if (vi < (u.ntiles + L - 1) / L && u.segs[si].count == L) {  // one segment: every lane from one tile row
    for (int i = 0; i < R; ++i) row(plane + u.segs[si].poff + i * u.pw, e[i]);
    ++si;
    return;
  }
  for (int i = 0; i < R; ++i)
    for (int b = 0; b < 6; ++b) e[i][b] = vec{};
  for (; si < u.nsegs && u.segs[si].v == vi; ++si) {
    const WinoSeg& sg = u.segs[si];
    ivec lane;
    for (int t = 0; t < L; ++t) lane[t] = t;
    const ivec in = (lane >= static_cast<int>(sg.lane0)) & (lane < static_cast<int>(sg.lane0 + sg.count));
    for (int i = 0; i < R; ++i) {
      vec r[6];
      row(plane + sg.poff + i * u.pw, r);
      for (int b = 0; b < 6; ++b) e[i][b] = in ? r[b] : e[i][b];
    }
  }
}

template <class T>
void input(const WinoTiles<T>& u, int64_t c0, int64_t c1, T* plane, T* v) {
  using vec = vec_t<T>;
  constexpr int L = V<T>::L;
  static_assert(gemm_tile<T>(kIsa).nr % L == 0, "a GEMM panel holds whole vectors of tiles");
  const int64_t nr = u.vnr;  // a multiple of L
  const int64_t pw = u.pw, npan = u.tp / nr;
  const int64_t* pr = u.plane_rows;
  for (int64_t c = c0; c < c1; ++c) {
    // The padded input rows the unit's tiles read, one plane per image.
    for (int64_t im = 0; im < u.nimg; ++im) {
      const T* xc = u.x + (u.n0 + im) * u.x_img + c * u.x_ch;
      T* dst = plane + pr[3 * im + 2];
      for (int64_t r = pr[3 * im]; r < pr[3 * im] + pr[3 * im + 1]; ++r, dst += pw) {
        const int64_t ir = u.rmap[r];
        if (ir < 0) {
          for (int64_t q = 0; q < pw; ++q) dst[q] = T(0);
          continue;
        }
        const T* xr = xc + ir * u.win;
        for (int64_t q = 0; q < u.clo; ++q) dst[q] = u.cmap[q] < 0 ? T(0) : xr[u.cmap[q]];
        std::memcpy(dst + u.clo, xr + u.clo - u.coff, sizeof(T) * (u.chi - u.clo));
        for (int64_t q = u.chi; q < pw; ++q) dst[q] = u.cmap[q] < 0 ? T(0) : xr[u.cmap[q]];
      }
    }
    int64_t si = 0;
    for (int64_t vi = 0; vi < u.tp / L; ++vi) {
      vec e[6][6];
      tile_rows<T, 6>(u, plane, vi, si, input_row<T>, e);
      // Down the columns: V[a][b] = (B^T e)[a][b].
      T* dst = v + ((vi * L / nr) * u.cin + c) * nr + vi * L % nr;
      for (int b = 0; b < 6; ++b) {
        const vec col[6] = {e[0][b], e[1][b], e[2][b], e[3][b], e[4][b], e[5][b]};
        vec t[6];
        bt6(col, t);
        for (int a = 0; a < 6; ++a) storeu(dst + (a * 6 + b) * npan * u.cin * nr, t[a]);
      }
    }
  }
}

// t = A d (4 -> 6): d as a cubic evaluated at 0, 1, -1, 2, -2 and its leading coefficient.
template <class W>
inline void a4(const W d[4], W t[6]) {
  const W s02 = d[0] + d[2], s13 = d[1] + d[3], e = d[0] + d[2] * 4, f = d[1] * 2 + d[3] * 8;
  t[0] = d[0];
  t[1] = s02 + s13;
  t[2] = s02 - s13;
  t[3] = e + f;
  t[4] = e - f;
  t[5] = d[3];
}

template <class T>
inline void dy_row(const T* src, vec_t<T> e[6]) {
  vec_t<T> d[6];
  deinterleave4(src, d);
  a4(d, e);
}

// The unit's dy tiles sit in the same plane geometry as its input tiles (tile (th, tw) at row
// 4 th, column 4 tw; zeros past hout x wout), so the input's segments address them.
template <class T>
void dy_transform(const WinoTiles<T>& u, int64_t k0, int64_t k1, T* plane, T* d) {
  using vec = vec_t<T>;
  constexpr int L = V<T>::L;
  const int64_t pw = u.pw, xs = u.kout * u.tp;
  const int64_t* pr = u.plane_rows;
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t im = 0; im < u.nimg; ++im) {
      const T* gk = u.dy + (u.n0 + im) * u.dy_img + k * u.dy_ch;
      T* dst = plane + pr[3 * im + 2];
      for (int64_t r = pr[3 * im]; r < pr[3 * im] + pr[3 * im + 1]; ++r, dst += pw) {
        int64_t q = 0;
        if (r < u.hout) {
          std::memcpy(dst, gk + r * u.wout, sizeof(T) * u.wout);
          q = u.wout;
        }
        for (; q < pw; ++q) dst[q] = T(0);
      }
    }
    int64_t si = 0;
    for (int64_t vi = 0; vi < u.tp / L; ++vi) {
      vec e[4][6];
      tile_rows<T, 4>(u, plane, vi, si, dy_row<T>, e);
      T* dst = d + k * u.tp + vi * L;
      for (int b = 0; b < 6; ++b) {
        const vec col[4] = {e[0][b], e[1][b], e[2][b], e[3][b]};
        vec t[6];
        a4(col, t);
        for (int a = 0; a < 6; ++a) storeu(dst + (a * 6 + b) * xs, t[a]);
      }
    }
  }
}

// o = G^T m (6 -> 3), G being g3's matrix.
template <class W, class S>
inline void gt3(const W m[6], W o[3]) {
  const W s12 = m[1] + m[2], d21 = m[2] - m[1], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] * S(0.25) - s12 * S(1.0 / 6) + s34 * S(1.0 / 24);
  o[1] = d21 * S(1.0 / 6) + d34 * S(1.0 / 12);
  o[2] = (s34 - s12) * S(1.0 / 6) + m[5];
}

template <class T>
void wgrad_out(const T* m, int64_t mp, int64_t cols, int64_t i0, int64_t i1, T* dw, int64_t rs, int64_t cs) {
  using vec = vec_t<T>;
  constexpr int L = V<T>::L, NR = gemm_tile<T>(kIsa).nr;
  for (int64_t j0 = 0; j0 < cols; j0 += NR) {
    const int64_t nc = cols - j0 < NR ? cols - j0 : NR;
    for (int64_t i = i0; i < i1; ++i) {
      const T* src = m + (j0 / NR * mp + i) * 36 * NR;
      alignas(64) T out[9][NR];
      for (int v = 0; v < NR / L; ++v) {
        vec h[6][3];
        for (int a = 0; a < 6; ++a) {
          vec row[6];
          for (int b = 0; b < 6; ++b) row[b] = loadu(src + (a * 6 + b) * NR + v * L);
          gt3<vec, T>(row, h[a]);
        }
        for (int j = 0; j < 3; ++j) {
          const vec col[6] = {h[0][j], h[1][j], h[2][j], h[3][j], h[4][j], h[5][j]};
          vec o[3];
          gt3<vec, T>(col, o);
          for (int r = 0; r < 3; ++r) storeu(&out[r * 3 + j][v * L], o[r]);
        }
      }
      T* dst = dw + i * rs + j0 * cs;
      for (int64_t j = 0; j < nc; ++j)
        for (int tap = 0; tap < 9; ++tap) dst[j * cs + tap] = out[tap][j];
    }
  }
}

template <class T>
void output(const WinoTiles<T>& u, int64_t k0, int64_t k1, const T* m) {
  using vec = vec_t<T>;
  constexpr int L = V<T>::L;
  const int64_t nvec = (u.ntiles + L - 1) / L, xs = u.kp * u.tp;
  for (int64_t k = k0; k < k1; ++k) {
    const T bias = u.bias ? u.bias[k] : T(0);
    int64_t si = 0;
    for (int64_t vi = 0; vi < nvec; ++vi) {
      const T* src = m + k * u.tp + vi * L;
      vec o[4][6];
      for (int b = 0; b < 6; ++b) {
        const vec col[6] = {loadu(src + b * xs), loadu(src + (6 + b) * xs), loadu(src + (12 + b) * xs),
                            loadu(src + (18 + b) * xs), loadu(src + (24 + b) * xs), loadu(src + (30 + b) * xs)};
        vec t[4];
        at6(col, t);
        for (int a = 0; a < 4; ++a) o[a][b] = t[a];
      }
      alignas(64) T rows[4][4 * L];
      for (int a = 0; a < 4; ++a) {
        vec q[4];
        at6(o[a], q);
        for (int s = 0; s < 4; ++s) q[s] += bias;
        interleave4<T>(q, rows[a]);
      }
      for (; si < u.nsegs && u.segs[si].v == vi; ++si) {
        const WinoSeg& sg = u.segs[si];
        const int64_t col0 = 4 * sg.tw, ncol = 4 * sg.count < u.wout - col0 ? 4 * sg.count : u.wout - col0;
        T* yk = u.y + sg.n * u.y_img + k * u.y_ch + col0;
        for (int64_t a = 0; a < 4 && 4 * sg.th + a < u.hout; ++a)
          std::memcpy(yk + (4 * sg.th + a) * u.wout, &rows[a][4 * sg.lane0], sizeof(T) * ncol);
      }
    }
  }
}

}  // namespace

#define PYCONV_WINO_INSTANTIATE(T)                                                                          \
  void PYCONV_CAT(conv2d_winograd_filter, PYCONV_ISA)(const T* w, int64_t kout, int64_t cin, int64_t so,    \
                                                      int64_t si, bool flip, int64_t kc, int64_t kp0,        \
                                                      int64_t kp1, T* u) {                                   \
    filter(w, kout, cin, so, si, flip, kc, kp0, kp1, u);                                                     \
  }                                                                                                          \
  void PYCONV_CAT(conv2d_winograd_input, PYCONV_ISA)(const WinoTiles<T>& u, int64_t c0, int64_t c1, T* plane, \
                                                     T* v) {                                                 \
    input(u, c0, c1, plane, v);                                                                              \
  }                                                                                                          \
  void PYCONV_CAT(conv2d_winograd_dy, PYCONV_ISA)(const WinoTiles<T>& u, int64_t k0, int64_t k1, T* plane, T* d) { \
    dy_transform(u, k0, k1, plane, d);                                                                       \
  }                                                                                                          \
  void PYCONV_CAT(conv2d_winograd_wout, PYCONV_ISA)(const T* m, int64_t mp, int64_t cols, int64_t i0, int64_t i1, \
                                                    T* dw, int64_t rs, int64_t cs) {                         \
    wgrad_out(m, mp, cols, i0, i1, dw, rs, cs);                                                              \
  }                                                                                                          \
  void PYCONV_CAT(conv2d_winograd_output, PYCONV_ISA)(const WinoTiles<T>& u, int64_t k0, int64_t k1, const T* m) { \
    output(u, k0, k1, m);                                                                                    \
  }
PYCONV_WINO_INSTANTIATE(float)
PYCONV_WINO_INSTANTIATE(double)
#undef PYCONV_WINO_INSTANTIATE

}  // namespace PYCONV_ISA
}  // namespace pyconv
