// bfloat16 convolution forward on AMX tiles: y = conv(bf16(x), bf16(w)) + b, fp32 accumulation.
//
// As a GEMM per image and group: C[co][p] = sum_k A[co][k] B[k][p], k = (r, s, c) with c fastest.
//   A: the weights, bf16, rows of Kp (K padded to 32), one tile = 16 rows x 32 k.
//   B: im2col of a bf16 copy of x padded in space (the padding mode applied once) and to an even
//      channel count, in AMX's pair layout: a tile row holds one channel pair (c, c+1) of one tap
//      for 16 output pixels, so 16 rows = 32 k. Packed per thread for a block of pixels.
//   C: 2 x 2 tiles of 16 x 16 fp32 (32 output channels x 32 pixels), started from the bias and
//      stored straight into NCHW y (an output row of 16 pixels is contiguous in y).
// Denormal operands and results are flushed to zero (the instructions' own behaviour).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d/bf16.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {
namespace amx {

namespace {

constexpr int kTile = 16;    // tile rows; fp32 columns of a C tile; pixels of a B tile
constexpr int kKStep = 32;   // bf16 k per A tile row
constexpr int kPairRow = 32; // uint16 per B tile row (16 pixels x 2 channels)

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0-3: C (fp32 16 x 16), 4-5: A (16 x 32 bf16), 6-7: B (16 pairs x 16 pixels).
void load_tile_config() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTile;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

inline uint16_t bf16_scalar(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  if ((u & 0x7F800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000);        // flush denormals as the hardware does
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Reflect / replicate / circular / zeros (-1) source index of padded coordinate i in [0, n).
inline int64_t source_index(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::reflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      int64_t j = ((i % period) + period) % period;
      return j < n ? j : period - j;
    }
    case PadMode::replicate: return i < 0 ? 0 : n - 1;
    case PadMode::circular: return ((i % n) + n) % n;
    default: return -1;
  }
}

struct Geometry {
  int64_t cg, mg, ce;          // channels per group (input, output), input channels rounded to even
  int64_t hp, wp, plane;       // padded input plane
  int64_t npix, kdim, kp;      // output pixels, k = r * s * ce, k padded to kKStep
  int64_t mp;                  // output channels per group padded to 32
};

Geometry geometry(const Conv2dParams& p) {
  Geometry g;
  const WeightLayout l = weight_layout(p.k, p.c / p.groups, p.r, p.s, p.groups);
  g.cg = p.c / p.groups;
  g.mg = l.mg;
  g.ce = l.ce;
  g.hp = p.h + p.pad_t + p.pad_b;
  g.wp = p.w + p.pad_l + p.pad_r;
  g.plane = g.hp * g.wp;
  g.npix = p.oh * p.ow;
  g.kdim = p.r * p.s * g.ce;
  g.kp = l.kp;
  g.mp = l.mp;
  return g;
}

}  // namespace

WeightLayout weight_layout(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups) {
  WeightLayout l;
  l.mg = k / groups;
  l.ce = (cg + 1) / 2 * 2;
  l.kp = (r * s * l.ce + kKStep - 1) / kKStep * kKStep;
  l.mp = (l.mg + 31) / 32 * 32;
  l.elems = groups * l.mp * l.kp;
  return l;
}

// A[g][co][k] for co < mp, k < kp; zeros outside the weights. One tap's channels at a time:
// w[co][c][r][s] with stride r * s between channels, a gather.
void pack_weights(const Conv2dParams& p, const float* w, uint16_t* a, int threads) {
  const Geometry g = geometry(p);
  const int64_t taps = p.r * p.s;
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(taps)));
  parallel_for(p.groups * g.mp, threads_for(p.groups * g.mp * g.kp, threads), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t grp = row / g.mp, co = row % g.mp;
      uint16_t* dst = a + row * g.kp;
      std::memset(dst, 0, static_cast<size_t>(g.kp) * 2);
      if (co >= g.mg) continue;
      const float* src = w + (grp * g.mg + co) * g.cg * taps;
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < g.cg; c += 16) {
          const int len = static_cast<int>(std::min<int64_t>(16, g.cg - c));
          const __mmask16 m = static_cast<__mmask16>((1u << len) - 1);
          const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + c * taps + t, 4);
          _mm256_mask_storeu_epi16(dst + t * g.ce + c, m, (__m256i)_mm512_cvtneps_pbh(v));
        }
    }
  });
}

namespace {

// xp[n][grp][ce][hp][wp]: x in bf16 with the padding applied (zero channel when cg is odd).
void pack_input(const Conv2dParams& p, const Geometry& g, const float* x, uint16_t* xp, int threads) {
  const int64_t planes = p.n * p.groups * g.ce;
  parallel_for(planes, threads, [&](int64_t b, int64_t e) {
    std::vector<int64_t> col(static_cast<size_t>(g.wp));
    for (int64_t i = 0; i < g.wp; ++i) col[i] = source_index(i - p.pad_l, p.w, p.mode);
    for (int64_t pl = b; pl < e; ++pl) {
      const int64_t c = pl % g.ce, ng = pl / g.ce;  // ng = n * groups + grp
      uint16_t* dst = xp + pl * g.plane;
      if (c >= g.cg) {
        std::memset(dst, 0, static_cast<size_t>(g.plane) * 2);
        continue;
      }
      const float* src = x + (ng * g.cg + c) * p.h * p.w;
      for (int64_t ih = 0; ih < g.hp; ++ih) {
        uint16_t* d = dst + ih * g.wp;
        const int64_t sh = source_index(ih - p.pad_t, p.h, p.mode);
        if (sh < 0) {
          std::memset(d, 0, static_cast<size_t>(g.wp) * 2);
          continue;
        }
        const float* s = src + sh * p.w;
        for (int64_t i = 0; i < p.pad_l; ++i) d[i] = col[i] < 0 ? 0 : bf16_scalar(s[col[i]]);
        uint16_t* di = d + p.pad_l;
        int64_t i = 0;
        for (; i + 16 <= p.w; i += 16)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(di + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i)));
        if (i < p.w) {
          const __mmask16 m = static_cast<__mmask16>((1u << (p.w - i)) - 1);
          _mm256_mask_storeu_epi16(di + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i)));
        }
        for (int64_t i2 = p.pad_l + p.w; i2 < g.wp; ++i2) d[i2] = col[i2] < 0 ? 0 : bf16_scalar(s[col[i2]]);
      }
    }
  });
}

// 16-bit elements v0[i], v1[i] -> 32-bit words (v1 << 16 | v0), the tile's pair layout.
inline __m512i interleave(__m256i v0, __m256i v1) {
  return _mm512_or_si512(_mm512_cvtepu16_epi32(v0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(v1), 16));
}

// len (<= 16) elements src[0], src[stride], ... as 16-bit lanes.
inline __m256i load_strided(const uint16_t* src, int len, int64_t stride) {
  if (stride == 1) return _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << len) - 1), src);
  if (stride == 2) {
    const __mmask32 m = static_cast<__mmask32>((1u << (2 * len - 1)) - 1);  // never past the last element
    return _mm512_cvtepi32_epi16(_mm512_maskz_loadu_epi16(m, src));  // the even elements
  }
  alignas(32) uint16_t tmp[16] = {};
  for (int i = 0; i < len; ++i) tmp[i] = src[i * stride];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp));
}

// B panel for output pixels [p0, p0 + 16 * tiles) of one image and group: tile t at
// panel + t * (kp / 2) * kPairRow; pixels past npix and k rows past kdim are zero.
void pack_panel(const Conv2dParams& p, const Geometry& g, const uint16_t* xg, int64_t p0, int tiles, uint16_t* panel) {
  const int64_t rows = g.kp / 2, real_rows = g.kdim / 2, tile_elems = rows * kPairRow;
  const int64_t cpairs = g.ce / 2;
  for (int t = 0; t < tiles; ++t) {
    uint16_t* tile = panel + t * tile_elems;
    const int64_t tp0 = p0 + int64_t{t} * kTile;
    const int valid = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kTile, g.npix - tp0)));
    if (valid < kTile) std::memset(tile, 0, static_cast<size_t>(real_rows * kPairRow) * 2);
    if (rows > real_rows) std::memset(tile + real_rows * kPairRow, 0, static_cast<size_t>((rows - real_rows) * kPairRow) * 2);
    // Runs of pixels within one output row.
    for (int q = 0; q < valid;) {
      const int64_t pix = tp0 + q, oh = pix / p.ow, ow = pix % p.ow;
      const int len = static_cast<int>(std::min<int64_t>(valid - q, p.ow - ow));
      const int64_t base = oh * p.stride_h * g.wp + ow * p.stride_w;
      const __mmask16 store_mask = static_cast<__mmask16>((1u << len) - 1);
      for (int64_t r = 0; r < p.r; ++r)
        for (int64_t s = 0; s < p.s; ++s) {
          const uint16_t* src = xg + base + r * p.dil_h * g.wp + s * p.dil_w;
          uint16_t* dst = tile + (r * p.s + s) * cpairs * kPairRow + 2 * q;
          for (int64_t j = 0; j < cpairs; ++j, src += 2 * g.plane, dst += kPairRow) {
            const __m512i words = interleave(load_strided(src, len, p.stride_w), load_strided(src + g.plane, len, p.stride_w));
            _mm512_mask_storeu_epi32(dst, store_mask, words);
          }
        }
      q += len;
    }
  }
}

// One C tile of 16 output channels x 16 pixels to y (rows past mg / columns past npix dropped).
// A macro: the tile intrinsics take the tile number as a literal.
#define PYCONV_STORE_TILE(kC, y, npix, rows, cols, tmp)                                          \
  do {                                                                                           \
    if ((rows) > 0 && (cols) > 0) {                                                              \
      if ((rows) == kTile && (cols) == kTile) {                                                  \
        _tile_stored(kC, (y), (npix) * 4);                                                       \
      } else {                                                                                   \
        _tile_stored(kC, (tmp), 64);                                                             \
        for (int64_t i_ = 0; i_ < (rows); ++i_)                                                  \
          std::memcpy((y) + i_ * (npix), (tmp) + i_ * kTile, static_cast<size_t>(cols) * 4);     \
      }                                                                                          \
    }                                                                                            \
  } while (0)

// y = min(max(y + res, lo), hi) over rows x cols of y (row stride npix); NaN propagates.
void epilogue(float* y, const float* res, int64_t npix, int64_t rows, int64_t cols, const Epilogue& ep) {
  const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
  for (int64_t i = 0; i < rows; ++i) {
    float* yr = y + i * npix;
    const float* rr = res ? res + i * npix : nullptr;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = static_cast<__mmask16>(cols - j >= 16 ? 0xFFFF : (1u << (cols - j)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(m, yr + j);
      if (rr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, rr + j));
      v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));  // the second operand when either is NaN
      _mm512_mask_storeu_ps(yr + j, m, v);
    }
  }
}

// C[co0 .. co0 + 32][pixel tiles t0, t0 + 1] over the whole k.
void micro_kernel(const uint16_t* a, int64_t kp, const uint16_t* b0, const uint16_t* b1, const float* bias_tiles) {
  if (bias_tiles) {
    _tile_loadd(0, bias_tiles, 64);
    _tile_loadd(1, bias_tiles, 64);
    _tile_loadd(2, bias_tiles + kTile * kTile, 64);
    _tile_loadd(3, bias_tiles + kTile * kTile, 64);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const uint16_t* a1 = a + kTile * kp;
  for (int64_t k = 0; k < kp; k += kKStep) {
    _tile_loadd(4, a + k, kp * 2);
    _tile_loadd(5, a1 + k, kp * 2);
    _tile_loadd(6, b0 + k * kTile, 64);
    _tile_loadd(7, b1 + k * kTile, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
}

}  // namespace

void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const uint16_t* a, const float* b, float* y, int threads,
                     const Epilogue& ep) {
  const Geometry g = geometry(p);
  Buffer<uint16_t> xp(static_cast<size_t>(p.n * p.groups * g.ce * g.plane));
  pack_input(p, g, x, xp.get(), threads);

  // Pixel blocks: up to 8 tiles (128 pixels) while the panel stays within ~1 MiB of L2, fewer
  // when that leaves a thread without work; output channels split too when pixels run out.
  const int64_t tile_bytes = g.kp / 2 * kPairRow * 2;
  const int64_t ptiles = (g.npix + kTile - 1) / kTile;
  int block_tiles = static_cast<int>(std::clamp<int64_t>((int64_t{1} << 20) / tile_bytes / 2 * 2, 2, 8));
  while (block_tiles > 2 && p.n * p.groups * ((ptiles + block_tiles - 1) / block_tiles) < 2 * threads) block_tiles -= 2;
  const int64_t pblocks = (ptiles + block_tiles - 1) / block_tiles;
  const int64_t mblocks_all = g.mp / 32;
  int64_t msplit = 1;
  while (msplit < mblocks_all && p.n * p.groups * pblocks * msplit < 2 * threads) msplit *= 2;
  msplit = std::min(msplit, mblocks_all);
  const int64_t mper = (mblocks_all + msplit - 1) / msplit;
  const int64_t items = p.n * p.groups * pblocks * msplit;

  parallel_for(items, threads, [&](int64_t ib, int64_t ie) {
    Buffer<uint16_t> panel(static_cast<size_t>(block_tiles) * (g.kp / 2) * kPairRow);
    alignas(64) float bias_tiles[2 * kTile * kTile];
    alignas(64) float tmp[kTile * kTile];
    load_tile_config();
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t ms = it % msplit, pb = (it / msplit) % pblocks, ng = it / msplit / pblocks;
      const int64_t grp = ng % p.groups, n = ng / p.groups;
      const int64_t p0 = pb * block_tiles * kTile;
      const int tiles = static_cast<int>(std::min<int64_t>(block_tiles, ptiles - pb * block_tiles));
      const int tiles_even = (tiles + 1) / 2 * 2;
      pack_panel(p, g, xp.get() + ng * g.ce * g.plane, p0, tiles_even, panel.get());
      const uint16_t* ag = a + grp * g.mp * g.kp;
      float* yg = y + (n * p.k + grp * g.mg) * g.npix;
      const float* rg = ep.residual ? ep.residual + (n * p.k + grp * g.mg) * g.npix : nullptr;
      const int64_t mb_end = std::min(mblocks_all, (ms + 1) * mper);
      for (int64_t mb = ms * mper; mb < mb_end; ++mb) {
        const int64_t co0 = mb * 32;
        if (b) {
          for (int i = 0; i < 32; ++i) {
            const int64_t co = co0 + i;
            const float v = co < g.mg ? b[grp * g.mg + co] : 0.0f;
            _mm512_store_ps(bias_tiles + i * kTile, _mm512_set1_ps(v));
          }
        }
        for (int t = 0; t < tiles_even; t += 2) {
          const uint16_t* b0 = panel.get() + int64_t{t} * (g.kp / 2) * kPairRow;
          micro_kernel(ag + co0 * g.kp, g.kp, b0, b0 + (g.kp / 2) * kPairRow, b ? bias_tiles : nullptr);
          const int64_t px = p0 + int64_t{t} * kTile;
          float* yt = yg + co0 * g.npix + px;
          const int64_t rows0 = std::min<int64_t>(kTile, g.mg - co0), rows1 = std::min<int64_t>(kTile, g.mg - co0 - kTile);
          const int64_t cols0 = std::min<int64_t>(kTile, g.npix - px), cols1 = std::min<int64_t>(kTile, g.npix - px - kTile);
          PYCONV_STORE_TILE(0, yt, g.npix, rows0, cols0, tmp);
          PYCONV_STORE_TILE(1, yt + kTile, g.npix, rows0, cols1, tmp);
          PYCONV_STORE_TILE(2, yt + kTile * g.npix, g.npix, rows1, cols0, tmp);
          PYCONV_STORE_TILE(3, yt + kTile * g.npix + kTile, g.npix, rows1, cols1, tmp);
          if (ep.active())  // while the block is in L1
            epilogue(yt, rg ? rg + co0 * g.npix + px : nullptr, g.npix, std::min<int64_t>(32, g.mg - co0),
                     std::min<int64_t>(32, g.npix - px), ep);
        }
      }
    }
    _tile_release();
  });
}

#undef PYCONV_STORE_TILE

}  // namespace amx
}  // namespace pyconv
