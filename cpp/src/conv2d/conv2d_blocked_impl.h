// conv2d_blocked_<isa>: stride-1 correlation register-blocked over output channels and pixels
// (see BlockedConv in kernels.h). The input planes of one image and group are first gathered
// into padded planes (through the maps, so every padding mode and the zero frame of bwd_data
// cost one copy), after which each tap is a plain unaligned vector load: a KB x NV*L tile of
// outputs lives in registers while the (channel, r, s) loop streams NV input vectors and KB
// broadcast weights per step, the structure of a GEMM micro-kernel with its B operand read
// straight from the image instead of packed.
// Pixel blocks run along output rows, or (narrow outputs) along the padded rows flattened into
// one line, computing the columns between rows too and discarding them, so that an 8-wide
// output still fills 16-lane vectors.
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

// Padded row u of a source plane through the maps: o[0, sw).
template <class T>
inline void gather_row(const BlockedConv<T>& c, const T* src, int64_t u, T* o) {
  const int64_t row = c.row_map[u];
  if (row < 0) {
    std::memset(o, 0, sizeof(T) * static_cast<size_t>(c.sw));
    return;
  }
  const T* sr = src + row * c.src_w;
  const int64_t l = c.col_lo, h = c.col_hi;  // [l, h): col_map[v] == v - col_off
  for (int64_t v = 0; v < l; ++v) o[v] = c.col_map[v] >= 0 ? sr[c.col_map[v]] : T(0);
  if (h > l) std::memcpy(o + l, sr + (l - c.col_off), sizeof(T) * static_cast<size_t>(h - l));
  for (int64_t v = h; v < c.sw; ++v) o[v] = c.col_map[v] >= 0 ? sr[c.col_map[v]] : T(0);
}

// Gathers one source plane into a padded plane of pitch sw (tail up to ps zeroed).
template <class T>
void gather_plane(const BlockedConv<T>& c, const T* src, T* o) {
  for (int64_t u = 0; u < c.sh; ++u) gather_row(c, src, u, o + u * c.sw);
  std::memset(o + c.sh * c.sw, 0, sizeof(T) * static_cast<size_t>(c.ps - c.sh * c.sw));
}

// The cin source planes of image n, group g.
template <class T>
void gather(const BlockedConv<T>& c, int64_t n, int64_t g, T* sp) {
  for (int64_t ci = 0; ci < c.cin; ++ci)
    gather_plane(c, c.src + ((n * c.groups + g) * c.cin + ci) * c.src_h * c.src_w, sp + ci * c.ps);
}

// One KB x NV*L tile: out pixels starting at padded offset `base` for block channels [0, KB),
// stored to dst[k*ld + p] (a full tile inside an output row) or else to res.
template <class T, int KB, int NV>
inline void tile(const BlockedConv<T>& c, const T* sp, const T* wk, const T* bias,
                 int64_t base, T (*res)[NV * V<T>::L], T* dst, int64_t ld) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  vec acc[KB][NV];  // fixed-trip loops fully unrolled so that acc lives in registers
#pragma GCC unroll 32
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[k][v] = bias ? splat<T>(bias[k]) : vec{};
  // One flat loop over (channel, tap) through the offset table: the kernel rows are too short
  // (3-5 taps) for loops of their own.
  const T* sb = sp + base;
  const int64_t steps = c.cin * c.r * c.s;
  for (int64_t t = 0; t < steps; ++t, wk += c.kb) {
    const T* sx = sb + c.taps[t];
    vec x[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = loadu(sx + v * L);
#pragma GCC unroll 32
    for (int k = 0; k < KB; ++k) {
      const T w = wk[k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[k][v] += w * x[v];
    }
  }
#pragma GCC unroll 32
  for (int k = 0; k < KB; ++k)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) storeu(dst ? dst + k * ld + v * L : res[k] + v * L, acc[k][v]);
}

// out[k*ld + j] = res[k][j] for the kb channels, m pixels: short runs, so no memcpy calls.
template <class T, int P>
inline void copy_out(const T (*res)[P], int64_t kb, int64_t from, int64_t m, T* out, int64_t ld) {
  for (int64_t k = 0; k < kb; ++k)
    for (int64_t j = 0; j < m; ++j) out[k * ld + j] = res[k][from + j];
}

// Output channels [o0, o0 + KB) of image n, group g, every pixel.
template <class T, int KB, int NV>
void block(const BlockedConv<T>& c, const T* sp, int64_t n, int64_t g, int64_t kbi, int64_t kb) {
  constexpr int P = NV * V<T>::L;
  const int64_t o0 = kbi * c.kb;
  const T* wk = c.wpk + (g * c.nkb + kbi) * c.cin * c.r * c.s * c.kb;
  const T* bias = c.bias ? c.bias + g * c.cout + o0 : nullptr;
  T* out = c.out + ((n * c.groups + g) * c.cout + o0) * c.out_h * c.out_w;
  const int64_t ohw = c.out_h * c.out_w;
  alignas(64) T res[KB][P];
  if (!c.flat) {
    for (int64_t i = 0; i < c.out_h; ++i)
      for (int64_t j0 = 0; j0 < c.out_w; j0 += P) {
        const int64_t m = std::min<int64_t>(P, c.out_w - j0);
        T* dst = out + i * c.out_w + j0;
        if (m == P && kb == KB) {
          tile<T, KB, NV>(c, sp, wk, bias, i * c.sw + j0, res, dst, ohw);
        } else {
          tile<T, KB, NV>(c, sp, wk, bias, i * c.sw + j0, res, nullptr, 0);
          copy_out<T, P>(res, kb, 0, m, dst, ohw);
        }
      }
    return;
  }
  const int64_t total = c.out_h * c.sw;  // flattened padded rows; columns >= out_w are discarded
  for (int64_t q0 = 0; q0 < total; q0 += P) {
    tile<T, KB, NV>(c, sp, wk, bias, q0, res, nullptr, 0);
    for (int64_t q = q0; q < std::min(total, q0 + P);) {
      const int64_t i = q / c.sw, j = q % c.sw;
      const int64_t row_end = std::min(q0 + P, (i + 1) * c.sw);
      if (j < c.out_w) {
        const int64_t m = std::min(row_end - q, c.out_w - j);
        copy_out<T, P>(res, kb, q - q0, m, out + i * c.out_w + j, ohw);
      }
      q = row_end;
    }
  }
}

template <class T, int NV, int KB>
void block_dispatch(const BlockedConv<T>& c, const T* sp, int64_t n, int64_t g, int64_t kbi, int64_t kb) {
  if constexpr (KB > 1) {
    if (kb < KB) return block_dispatch<T, NV, KB - 1>(c, sp, n, g, kbi, kb);
  }
  block<T, KB, NV>(c, sp, n, g, kbi, kb);
}

template <class T>
void run(const BlockedConv<T>& c, int64_t i0, int64_t i1, T* ws) {
  int64_t cur = -1;  // (n, g) whose planes are in ws
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t ng = it / c.nkb, kbi = it % c.nkb, n = ng / c.groups, g = ng % c.groups;
    if (ng != cur) {
      gather(c, n, g, ws);
      cur = ng;
    }
    const int64_t kb = std::min(c.kb, c.cout - kbi * c.kb);
    switch (c.nv) {
      case 1: block_dispatch<T, 1, kBlockedMaxKb<T>(kIsa)>(c, ws, n, g, kbi, kb); break;
      case 2: block_dispatch<T, 2, kBlockedMaxKb<T>(kIsa) / 2>(c, ws, n, g, kbi, kb); break;
      case 3: block_dispatch<T, 3, kBlockedMaxKb<T>(kIsa) / 3>(c, ws, n, g, kbi, kb); break;
      default: block_dispatch<T, 4, kBlockedMaxKb<T>(kIsa) / 4>(c, ws, n, g, kbi, kb); break;
    }
  }
}


// Weight gradient: dw[g*cout + o][ci][r][s] += sum over images and output pixels q = i*ow + j of
// dy[n][g*cout + o][q] * X[n][g*cin + ci][s][q + r*dh*ow], where X[.][s] holds the padded
// input shifted left by s*dw and cropped to ow columns: every tap is then a contiguous dot
// product over the whole output plane, vectorised with no lanes lost between rows. A KB x S
// tile of (o, s) accumulates in registers over every pixel of every image of the chunk and is
// reduced once; the plane's last vector masks both operands, so nothing past the plane (even
// inf) enters a sum.
template <class T, int KB, int S>
void wgrad_tile(const BlockedWgrad<T>& c, int64_t g, int64_t o0, int64_t ci, typename V<T>::vec* part) {
  using vec = typename V<T>::vec;
  using ivec = typename V<T>::ivec;
  constexpr int L = V<T>::L;
  constexpr int64_t kBlock = 32 * L;  // pixels per block: its KB + S planes stay in L1 over every r
  const int64_t ohw = c.oh * c.ow, full = ohw / L * L, rem = ohw - full;
  ivec lanes;
  for (int l = 0; l < L; ++l) lanes[l] = l;
  const ivec keep = lanes < static_cast<decltype(lanes[0] + 0)>(rem);
  alignas(64) T tmp[KB][L];
  for (int64_t i = 0; i < c.r * KB * S; ++i) part[i] = vec{};
  // Accumulates kernel row r, images [na, nb), pixels [q0, q1) (plus the planes' tails) into
  // part[r].
  auto pixels = [&](int64_t r, int64_t na, int64_t nb, int64_t q0, int64_t q1, bool tail) {
    vec* pr = part + r * KB * S;
    vec acc[KB][S];
#pragma GCC unroll 16
    for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) acc[k][s] = pr[k * S + s];
    const T* dyn = nullptr;
    const T* xr = nullptr;
    auto step = [&](int64_t q, bool masked) {
      vec d[KB];
#pragma GCC unroll 16
      for (int k = 0; k < KB; ++k) {
        const T* src = dyn + k * ohw + q;
        if (masked && src + L > c.dy_end) {  // the end of the array: no over-read
          for (int l = 0; l < L; ++l) tmp[k][l] = l < rem ? src[l] : T(0);
          src = tmp[k];
        }
        d[k] = loadu(src);
        if (masked) d[k] = keep ? d[k] : vec{};
      }
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) {
        vec x = loadu(xr + s * c.pss + q);
        if (masked) x = keep ? x : vec{};
#pragma GCC unroll 16
        for (int k = 0; k < KB; ++k) acc[k][s] += d[k] * x;
      }
    };
    for (int64_t n = na; n < nb; ++n) {
      dyn = c.dy + (n * c.groups * c.cout + g * c.cout + o0) * ohw;
      xr = c.planes + ((n - c.n0) * c.groups * c.cin + g * c.cin + ci) * c.ps + r * c.dh * c.ow;
      for (int64_t q = q0; q < q1; q += L) step(q, false);
      if (tail) step(full, true);
    }
#pragma GCC unroll 16
    for (int k = 0; k < KB; ++k)
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) pr[k * S + s] = acc[k][s];
  };
  if (ohw <= kBlock / 4) {  // small planes: whole images between partial-sum reloads
    for (int64_t r = 0; r < c.r; ++r) pixels(r, c.n0, c.n1, 0, full, rem != 0);
  } else {  // large planes: blocks whose data stays in L1 across the kernel rows
    for (int64_t n = c.n0; n < c.n1; ++n)
      for (int64_t q0 = 0; q0 < ohw; q0 += kBlock)
        for (int64_t r = 0; r < c.r; ++r)
          pixels(r, n, n + 1, q0, std::min(q0 + kBlock, full), rem != 0 && q0 + kBlock >= ohw);
  }
  for (int64_t r = 0; r < c.r; ++r)
    for (int k = 0; k < KB; ++k)
      for (int s = 0; s < S; ++s) {
        T sum = T(0);
        for (int l = 0; l < L; ++l) sum += part[(r * KB + k) * S + s][l];
        c.dwt[(((g * c.cout + o0 + k) * c.cin + ci) * c.r + r) * S + s] += sum;
      }
}

template <class T, int S, int KB>
void wgrad_dispatch(const BlockedWgrad<T>& c, int64_t g, int64_t o0, int64_t kb, int64_t ci, typename V<T>::vec* part) {
  if constexpr (KB > 1) {
    if (kb < KB) return wgrad_dispatch<T, S, KB - 1>(c, g, o0, kb, ci, part);
  }
  wgrad_tile<T, KB, S>(c, g, o0, ci, part);
}

// Items channel-major (all filter blocks of a channel together), as the planes were gathered:
// a thread reads the planes it wrote (the other order read half of them from the other core).
template <class T, int S>
void wgrad_run(const BlockedWgrad<T>& c, int64_t i0, int64_t i1, T* ws) {
  auto* part = reinterpret_cast<typename V<T>::vec*>(ws);
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t ci = it / (c.groups * c.nkb), gk = it % (c.groups * c.nkb), g = gk / c.nkb, kbi = gk % c.nkb;
    const int64_t o0 = kbi * c.kb, kb = std::min(c.kb, c.cout - o0);
    wgrad_dispatch<T, S, kWgradMaxKb(kIsa, S)>(c, g, o0, kb, ci, part);
  }
}

// By filter: dw[k][ci][t] for a tile of NVK*L filters (vectors over k, from the transposed
// gradient) x the 9 taps t = r*3 + s of channel ci (broadcast from the shifted planes), an outer
// product per output pixel accumulated in registers over every pixel of the chunk: each
// gradient vector serves 9 FMAs and each input value NVK, against KB and S above.
template <class T, int NVK>
void wgradk_tile(const BlockedWgrad<T>& c, int64_t k0, int64_t ci) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  vec acc[NVK][9];
#pragma GCC unroll 4
  for (int v = 0; v < NVK; ++v)
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) acc[v][t] = vec{};
  const int64_t ohw = c.oh * c.ow, ro = c.dh * c.ow;
  for (int64_t n = c.n0; n < c.n1; ++n) {
    const T* d = c.dyt + (n - c.n0) * ohw * c.kp + k0;
    const T* x0 = c.planes + ((n - c.n0) * c.cin + ci) * c.ps;
    const T* x1 = x0 + c.pss;
    const T* x2 = x1 + c.pss;
    for (int64_t q = 0; q < ohw; ++q, d += c.kp) {
      vec dv[NVK];
#pragma GCC unroll 4
      for (int v = 0; v < NVK; ++v) dv[v] = loadu(d + v * L);
      const T xv[9] = {x0[q],          x1[q],          x2[q],          x0[q + ro],    x1[q + ro],
                       x2[q + ro],     x0[q + 2 * ro], x1[q + 2 * ro], x2[q + 2 * ro]};
#pragma GCC unroll 9
      for (int t = 0; t < 9; ++t)
#pragma GCC unroll 4
        for (int v = 0; v < NVK; ++v) acc[v][t] += dv[v] * xv[t];
    }
  }
  alignas(64) T lanes[L];
  for (int v = 0; v < NVK; ++v)
    for (int t = 0; t < 9; ++t) {
      storeu(lanes, acc[v][t]);
      for (int l = 0; l < L; ++l) {
        const int64_t k = k0 + v * L + l;
        if (k < c.cout) c.dwt[(k * c.cin + ci) * 9 + t] += lanes[l];
      }
    }
}

template <class T>
void wgradk_run(const BlockedWgrad<T>& c, int64_t i0, int64_t i1) {
  constexpr int L = V<T>::L;
  constexpr int kMax = kIsa == Isa::avx512 ? 2 : 1;  // 9 * NVK accumulators in the registers
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t ci = it / c.nkb, k0 = it % c.nkb * c.nvk * L, k1 = std::min(c.kp, k0 + c.nvk * L);
    if (k1 - k0 == kMax * L) {
      wgradk_tile<T, kMax>(c, k0, ci);
    } else {
      for (int64_t k = k0; k < k1; k += L) wgradk_tile<T, 1>(c, k, ci);
    }
  }
}

template <class T>
void wgrad(const BlockedWgrad<T>& c, int64_t i0, int64_t i1, T* ws) {
  if (c.by_filter) return wgradk_run<T>(c, i0, i1);
  switch (c.s) {
    case 1: return wgrad_run<T, 1>(c, i0, i1, ws);
    case 2: return wgrad_run<T, 2>(c, i0, i1, ws);
    case 3: return wgrad_run<T, 3>(c, i0, i1, ws);
    case 4: return wgrad_run<T, 4>(c, i0, i1, ws);
    case 5: return wgrad_run<T, 5>(c, i0, i1, ws);
    case 6: return wgrad_run<T, 6>(c, i0, i1, ws);
    default: return wgrad_run<T, 7>(c, i0, i1, ws);
  }
}

// The shifted planes X of input planes [p0, p1) (see wgrad_tile): each padded row is built once
// through the maps, then cropped s*dw columns in for every tap s.
template <class T>
void gather_shifted(const BlockedConv<T>& c, const BlockedWgrad<T>& g, int64_t p0, int64_t p1, T* planes, T* row) {
  for (int64_t q = p0; q < p1; ++q) {
    const T* src = c.src + q * c.src_h * c.src_w;
    T* out = planes + (q - p0) * g.ps;
    for (int64_t u = 0; u < c.sh; ++u) {
      gather_row(c, src, u, row);
      for (int64_t s = 0; s < g.s; ++s) {  // rows are short: a plain loop beats a memcpy call
        T* __restrict o = out + s * g.pss + u * g.ow;
        const T* __restrict in = row + s * g.dw;
        for (int64_t j = 0; j < g.ow; ++j) o[j] = in[j];
      }
    }
    for (int64_t s = 0; s < g.s; ++s)
      std::memset(out + s * g.pss + c.sh * g.ow, 0, sizeof(T) * static_cast<size_t>(g.pss - c.sh * g.ow));
  }
}
}  // namespace

void PYCONV_CAT(conv2d_blocked, PYCONV_ISA)(const BlockedConv<float>& c, int64_t i0, int64_t i1, float* ws) {
  run<float>(c, i0, i1, ws);
}
void PYCONV_CAT(conv2d_blocked, PYCONV_ISA)(const BlockedConv<double>& c, int64_t i0, int64_t i1, double* ws) {
  run<double>(c, i0, i1, ws);
}

void PYCONV_CAT(conv2d_blocked_gather, PYCONV_ISA)(const BlockedConv<float>& c, const BlockedWgrad<float>& g,
                                                   int64_t p0, int64_t p1, float* planes, float* row) {
  gather_shifted<float>(c, g, p0, p1, planes, row);
}
void PYCONV_CAT(conv2d_blocked_gather, PYCONV_ISA)(const BlockedConv<double>& c, const BlockedWgrad<double>& g,
                                                   int64_t p0, int64_t p1, double* planes, double* row) {
  gather_shifted<double>(c, g, p0, p1, planes, row);
}
void PYCONV_CAT(conv2d_blocked_wgrad, PYCONV_ISA)(const BlockedWgrad<float>& c, int64_t i0, int64_t i1, float* ws) {
  wgrad<float>(c, i0, i1, ws);
}
void PYCONV_CAT(conv2d_blocked_wgrad, PYCONV_ISA)(const BlockedWgrad<double>& c, int64_t i0, int64_t i1, double* ws) {
  wgrad<double>(c, i0, i1, ws);
}
}  // namespace PYCONV_ISA
}  // namespace pyconv
