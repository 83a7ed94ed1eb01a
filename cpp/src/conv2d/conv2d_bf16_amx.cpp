// bfloat16 convolution forward on AMX tiles or with AVX512-BF16's vdpbf16ps:
// y = conv(bf16(x), bf16(w)) + b, fp32 accumulation.
//
// As a GEMM per image and group: C[co][p] = sum_k A[co][k] B[k][p], k = (r, s, c) with c fastest.
//   A: the weights, bf16, rows of Kp (K padded to 32), one tile = 16 rows x 32 k.
//   B: AMX's pair layout: a tile row holds one channel pair (c, c+1) of one tap for 16 output
//      pixels, so 16 rows = 32 k. x is first copied to bf16 pair planes xq[c / 2][hp][wp] (32-bit
//      words, the padding mode applied once). Where output rows are wide, the stride is 1 and
//      a tap's channels fill whole tiles, a B tile is read straight from xq (rows one plane
//      apart: an implicit GEMM, nothing packed); otherwise a thread packs the im2col panel of
//      its pixels (tiles may then span output rows).
//   C: 2 x 2 tiles of 16 x 16 fp32 (32 output channels x 32 pixels), started from the bias and
//      stored straight into NCHW y (16 pixels of an output row are contiguous in y).
// Without tiles (level avx512_bf16) the same A, B and C blocks go through vdpbf16ps: a B tile row
// (one channel pair of 16 pixels) is one vector, an A pair one broadcast, and the 32 x 32 C block
// is computed 8 output channels at a time in 16 vector accumulators.
// Denormal operands and results are flushed to zero (both instruction sets' own behaviour).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
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
  int64_t hp, wp, plane;       // padded input plane (32-bit words: channel pairs)
  int64_t npix, kdim, kp;      // output pixels, k = r * s * ce, k padded to kKStep
  int64_t mp;                  // output channels per group padded to 32
  bool implicit;               // B tiles straight from xq
  int64_t cpairs;              // pair planes per image and group in xq
  int64_t tiles_per_row;       // implicit: 16-pixel tiles per output row
};

Geometry geometry(const Conv2dParams& p) {
  const WeightLayout l = weight_layout(p.k, p.c / p.groups, p.r, p.s, p.groups);
  Geometry g;
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
  // The weights' k runs tap by tap in steps of 32 channels only when the channels fill them (or
  // there is one tap); rows narrower than 12 pixels would leave most of a tile empty.
  const bool whole_steps = g.ce % kKStep == 0 || p.r * p.s == 1;
  g.implicit = p.stride_w == 1 && whole_steps && (p.ow >= 12 || p.ow % kTile == 0);
  g.cpairs = g.implicit ? g.kp / (p.r * p.s) / 2 : g.ce / 2;
  g.tiles_per_row = (p.ow + kTile - 1) / kTile;
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
  const WeightLayout g = weight_layout(p.k, p.c / p.groups, p.r, p.s, p.groups);
  const int64_t taps = p.r * p.s, cg = p.c / p.groups;
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(taps)));
  parallel_for(p.groups * g.mp, threads_for(p.groups * g.mp * g.kp, threads), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t grp = row / g.mp, co = row % g.mp;
      uint16_t* dst = a + row * g.kp;
      std::memset(dst, 0, static_cast<size_t>(g.kp) * 2);
      if (co >= g.mg) continue;
      const float* src = w + (grp * g.mg + co) * cg * taps;
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < cg; c += 16) {
          const int len = static_cast<int>(std::min<int64_t>(16, cg - c));
          const __mmask16 m = static_cast<__mmask16>((1u << len) - 1);
          const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + c * taps + t, 4);
          _mm256_mask_storeu_epi16(dst + t * g.ce + c, m, (__m256i)_mm512_cvtneps_pbh(v));
        }
    }
  });
}

namespace {

inline uint32_t pair_scalar(const float* s0, const float* s1, int64_t i) {
  return static_cast<uint32_t>(s0 ? bf16_scalar(s0[i]) : 0) | static_cast<uint32_t>(s1 ? bf16_scalar(s1[i]) : 0) << 16;
}

// xq[n][grp][cpairs][hp][wp]: channel pairs (2j, 2j + 1) of x as bf16 words with the padding
// applied; channels past cg are zero.
void pack_input(const Conv2dParams& p, const Geometry& g, const float* x, uint32_t* xq, int threads) {
  const int64_t planes = p.n * p.groups * g.cpairs;
  parallel_for(planes, threads_for(planes * g.plane, threads), [&](int64_t b, int64_t e) {
    std::vector<int64_t> col(static_cast<size_t>(g.wp));
    for (int64_t i = 0; i < g.wp; ++i) col[i] = source_index(i - p.pad_l, p.w, p.mode);
    for (int64_t pl = b; pl < e; ++pl) {
      const int64_t j = pl % g.cpairs, ng = pl / g.cpairs;  // ng = n * groups + grp
      uint32_t* dst = xq + pl * g.plane;
      if (2 * j >= g.cg) {
        std::memset(dst, 0, static_cast<size_t>(g.plane) * 4);
        continue;
      }
      const float* src0 = x + (ng * g.cg + 2 * j) * p.h * p.w;
      const float* src1 = 2 * j + 1 < g.cg ? src0 + p.h * p.w : nullptr;
      for (int64_t ih = 0; ih < g.hp; ++ih) {
        uint32_t* d = dst + ih * g.wp;
        const int64_t sh = source_index(ih - p.pad_t, p.h, p.mode);
        if (sh < 0) {
          std::memset(d, 0, static_cast<size_t>(g.wp) * 4);
          continue;
        }
        const float* s0 = src0 + sh * p.w;
        const float* s1 = src1 ? src1 + sh * p.w : nullptr;
        for (int64_t i = 0; i < p.pad_l; ++i) d[i] = col[i] < 0 ? 0 : pair_scalar(s0, s1, col[i]);
        uint32_t* di = d + p.pad_l;
        for (int64_t i = 0; i < p.w; i += 16) {
          const __mmask16 m = static_cast<__mmask16>(p.w - i >= 16 ? 0xFFFF : (1u << (p.w - i)) - 1);
          const __m256i v0 = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s0 + i));
          const __m256i v1 = s1 ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s1 + i)) : _mm256_setzero_si256();
          _mm512_mask_storeu_epi32(di + i, m,
                                   _mm512_or_si512(_mm512_cvtepu16_epi32(v0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(v1), 16)));
        }
        for (int64_t i = p.pad_l + p.w; i < g.wp; ++i) d[i] = col[i] < 0 ? 0 : pair_scalar(s0, s1, col[i]);
      }
    }
  });
}

// B panel for output pixels [p0, p0 + 16 * tiles) of one image and group, from its pair planes
// xg: tile t at panel + t * (kp / 2) * 16 words; pixels past npix and k rows past kdim are zero.
void pack_panel(const Conv2dParams& p, const Geometry& g, const uint32_t* xg, int64_t p0, int tiles, uint32_t* panel) {
  const int64_t rows = g.kp / 2, real_rows = g.kdim / 2, tile_words = rows * kTile;
  const int64_t cpairs = g.ce / 2;
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i even = _mm512_slli_epi32(lanes, 1);
  const __m512i gather = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(static_cast<int>(p.stride_w)));
  for (int t = 0; t < tiles; ++t) {
    uint32_t* tile = panel + t * tile_words;
    const int64_t tp0 = p0 + int64_t{t} * kTile;
    const int valid = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kTile, g.npix - tp0)));
    if (valid < kTile) std::memset(tile, 0, static_cast<size_t>(real_rows * kTile) * 4);
    if (rows > real_rows) std::memset(tile + real_rows * kTile, 0, static_cast<size_t>((rows - real_rows) * kTile) * 4);
    for (int q = 0; q < valid;) {  // runs of pixels within one output row
      const int64_t pix = tp0 + q, oh = pix / p.ow, ow = pix % p.ow;
      const int len = static_cast<int>(std::min<int64_t>(valid - q, p.ow - ow));
      const int64_t base = oh * p.stride_h * g.wp + ow * p.stride_w;
      const __mmask16 m = static_cast<__mmask16>((1u << len) - 1);
      // stride 2: words 0 .. 2 len - 2 in two loads, the even ones kept
      const int span = 2 * len - 1;
      const __mmask16 m_lo = static_cast<__mmask16>(span >= 16 ? 0xFFFF : (1u << span) - 1);
      const __mmask16 m_hi = static_cast<__mmask16>(span > 16 ? (1u << (span - 16)) - 1 : 0);
      for (int64_t r = 0; r < p.r; ++r)
        for (int64_t s = 0; s < p.s; ++s) {
          const uint32_t* src = xg + base + r * p.dil_h * g.wp + s * p.dil_w;
          uint32_t* dst = tile + (r * p.s + s) * cpairs * kTile + q;
          for (int64_t j = 0; j < cpairs; ++j, src += g.plane, dst += kTile) {
            __m512i v;
            if (p.stride_w == 1) {
              v = _mm512_maskz_loadu_epi32(m, src);
            } else if (p.stride_w == 2) {
              v = _mm512_permutex2var_epi32(_mm512_maskz_loadu_epi32(m_lo, src), even,
                                            _mm512_maskz_loadu_epi32(m_hi, src + 16));
            } else {
              v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, gather, src, 4);
            }
            _mm512_mask_storeu_epi32(dst, m, v);
          }
        }
      q += len;
    }
  }
}

// B rows for the dot-product path: tile i's pair row j of tap t at b[i] + off[t] + j * ld, and
// A's pair t * pairs + j in each weight row.
struct BRows {
  const uint32_t* b[2];
  const int64_t* off;
  int64_t taps, pairs, ld;
};

// C rows [co0, co0 + ROWS) x two pixel tiles with vdpbf16ps, then bias, residual, clamp and the
// store of `rows` rows and cols[i] pixels of tile i (y[i], res[i]: the tile's first pixel of row co0).
template <int ROWS>
void dot_rows(const uint16_t* a, int64_t kp, const BRows& br, const float* bias, int rows, float* const y[2],
              const float* const res[2], int64_t ld, const int64_t cols[2], const Epilogue& ep) {
  __m512 acc[ROWS][2];
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = bias && i < rows ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
  const int64_t a_ld = kp / 2;
  const uint32_t* aw = reinterpret_cast<const uint32_t*>(a);
  for (int64_t t = 0; t < br.taps; ++t) {
    const uint32_t* b0 = br.b[0] + br.off[t];
    const uint32_t* b1 = br.b[1] + br.off[t];
    const uint32_t* at = aw + t * br.pairs;
    for (int64_t j = 0; j < br.pairs; ++j) {
      const __m512bh v0 = (__m512bh)_mm512_loadu_si512(b0 + j * br.ld);
      const __m512bh v1 = (__m512bh)_mm512_loadu_si512(b1 + j * br.ld);
      for (int i = 0; i < ROWS; ++i) {
        uint32_t pair;
        std::memcpy(&pair, at + i * a_ld + j, 4);
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
        acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, v0);
        acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, v1);
      }
    }
  }
  const bool clamp = ep.lo > -std::numeric_limits<float>::infinity() || ep.hi < std::numeric_limits<float>::infinity();
  const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
  for (int t = 0; t < 2; ++t) {
    if (cols[t] <= 0) continue;
    const __mmask16 m = static_cast<__mmask16>(cols[t] >= kTile ? 0xFFFF : (1u << cols[t]) - 1);
    for (int i = 0; i < ROWS && i < rows; ++i) {
      __m512 v = acc[i][t];
      if (res[t]) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res[t] + i * ld));
      if (clamp) v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));  // the second operand when either is NaN
      _mm512_mask_storeu_ps(y[t] + i * ld, m, v);
    }
  }
}

// The 32-channel block at co0 (rows of it real) for two pixel tiles, 8 rows at a time: 16
// accumulators keep vdpbf16ps busy (12 or 4 rows measured no faster, RESULTS.md section 9).
void dot_block(const uint16_t* a, int64_t kp, const BRows& br, const float* bias, int64_t rows, float* const y[2],
               const float* const res[2], int64_t ld, const int64_t cols[2], const Epilogue& ep) {
  constexpr int kRows = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    float* const yr[2] = {y[0] + r0 * ld, y[1] + r0 * ld};
    const float* const rr[2] = {res[0] ? res[0] + r0 * ld : nullptr, res[1] ? res[1] + r0 * ld : nullptr};
    dot_rows<kRows>(a + r0 * kp, kp, br, bias ? bias + r0 : nullptr, static_cast<int>(std::min<int64_t>(kRows, rows - r0)),
                    yr, rr, ld, cols, ep);
  }
}

// One C tile of 16 output channels x 16 pixels to y (rows past mg / columns past npix dropped).
// A macro: the tile intrinsics take the tile number as a literal.
#define PYCONV_STORE_TILE(kC, y, ld, rows, cols, tmp)                                            \
  do {                                                                                           \
    if ((rows) > 0 && (cols) > 0) {                                                              \
      if ((rows) == kTile && (cols) == kTile) {                                                  \
        _tile_stored(kC, (y), (ld) * 4);                                                         \
      } else {                                                                                   \
        _tile_stored(kC, (tmp), 64);                                                             \
        for (int64_t i_ = 0; i_ < (rows); ++i_)                                                  \
          std::memcpy((y) + i_ * (ld), (tmp) + i_ * kTile, static_cast<size_t>(cols) * 4);       \
      }                                                                                          \
    }                                                                                            \
  } while (0)

// y = min(max(y + res, lo), hi) over rows x cols of y (row stride ld); NaN propagates.
void epilogue(float* y, const float* res, int64_t ld, int64_t rows, int64_t cols, const Epilogue& ep) {
  const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
  for (int64_t i = 0; i < rows; ++i) {
    float* yr = y + i * ld;
    const float* rr = res ? res + i * ld : nullptr;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = static_cast<__mmask16>(cols - j >= 16 ? 0xFFFF : (1u << (cols - j)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(m, yr + j);
      if (rr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, rr + j));
      v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));  // the second operand when either is NaN
      _mm512_mask_storeu_ps(yr + j, m, v);
    }
  }
}

inline void init_accumulators(const float* bias_tiles) {
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
}

// The 4 accumulators += A (2 tiles at a, a1) x B (2 tiles at b0, b1, rows b_ld bytes apart).
#define PYCONV_STEP(a, a1, a_ld, b0, b1, b_ld) \
  do {                                         \
    _tile_loadd(4, (a), (a_ld));               \
    _tile_loadd(5, (a1), (a_ld));              \
    _tile_loadd(6, (b0), (b_ld));              \
    _tile_loadd(7, (b1), (b_ld));              \
    _tile_dpbf16ps(0, 4, 6);                   \
    _tile_dpbf16ps(1, 4, 7);                   \
    _tile_dpbf16ps(2, 5, 6);                   \
    _tile_dpbf16ps(3, 5, 7);                   \
  } while (0)

// C[co0 .. co0 + 32][two packed pixel tiles] over the whole k.
void kernel_packed(const uint16_t* a, int64_t kp, const uint32_t* b0, const uint32_t* b1, const float* bias_tiles) {
  init_accumulators(bias_tiles);
  const uint16_t* a1 = a + kTile * kp;
  for (int64_t k = 0; k < kp; k += kKStep) PYCONV_STEP(a + k, a1 + k, kp * 2, b0 + k / 2 * kTile, b1 + k / 2 * kTile, 64);
}

// The same with B read from the pair planes: tap t's 16 pairs of a k step are 16 planes apart.
void kernel_implicit(const uint16_t* a, const Conv2dParams& p, const Geometry& g, const uint32_t* b0,
                     const uint32_t* b1, const float* bias_tiles) {
  init_accumulators(bias_tiles);
  const uint16_t* a1 = a + kTile * g.kp;
  const int64_t steps_per_tap = g.cpairs / kTile, b_ld = g.plane * 4, a_ld = g.kp * 2;
  const uint16_t* ak = a;
  const uint16_t* ak1 = a1;
  for (int64_t r = 0; r < p.r; ++r)
    for (int64_t s = 0; s < p.s; ++s) {
      const int64_t off = r * p.dil_h * g.wp + s * p.dil_w;
      for (int64_t j = 0; j < steps_per_tap; ++j, ak += kKStep, ak1 += kKStep) {
        const int64_t o = off + j * kTile * g.plane;
        PYCONV_STEP(ak, ak1, a_ld, b0 + o, b1 + o, b_ld);
      }
    }
}

#undef PYCONV_STEP

void fill_bias(const float* b, int64_t grp, int64_t mg, int64_t co0, float* bias_tiles) {
  for (int i = 0; i < 32; ++i) {
    const int64_t co = co0 + i;
    _mm512_store_ps(bias_tiles + i * kTile, _mm512_set1_ps(co < mg ? b[grp * mg + co] : 0.0f));
  }
}

// Output channel blocks of 32 split into msplit chunks and pixel tiles into blocks of `block`
// tiles (even): enough items for every thread.
struct Split {
  int64_t block, blocks, msplit, mper, items;
  struct Item {
    int64_t ms, pb, ng, grp, n;  // channel chunk, pixel block, image * groups + group, group, image
  };
  Item item(int64_t it, int64_t groups) const {
    Item i;
    i.ms = it % msplit, i.pb = (it / msplit) % blocks, i.ng = it / msplit / blocks;
    i.grp = i.ng % groups, i.n = i.ng / groups;
    return i;
  }
};

Split split(int64_t images, int64_t tiles, int64_t mblocks, int64_t block, int threads) {
  Split s;
  s.block = block;
  while (s.block > 2 && images * ((tiles + s.block - 1) / s.block) < 2 * threads) s.block -= 2;
  s.blocks = (tiles + s.block - 1) / s.block;
  s.msplit = 1;
  while (s.msplit < mblocks && images * s.blocks * s.msplit < 2 * threads) s.msplit *= 2;
  s.msplit = std::min(s.msplit, mblocks);
  s.mper = (mblocks + s.msplit - 1) / s.msplit;
  s.items = images * s.blocks * s.msplit;
  return s;
}

template <bool kTiles>
void run_packed(const Conv2dParams& p, const Geometry& g, const uint32_t* xq, const uint16_t* a, const float* b,
                float* y, int threads, const Epilogue& ep) {
  // Panels of up to 8 tiles (128 pixels) while they stay within ~1 MiB of L2.
  const int64_t tile_words = g.kp / 2 * kTile;
  const int64_t ptiles = (g.npix + kTile - 1) / kTile;
  const int64_t block = std::clamp<int64_t>((int64_t{1} << 18) / tile_words / 2 * 2, 2, 8);
  const Split sp = split(p.n * p.groups, ptiles, g.mp / 32, block, threads);
  parallel_for(sp.items, threads, [&](int64_t ib, int64_t ie) {
    uint32_t* panel = scratch<uint32_t>(3, static_cast<size_t>(sp.block * tile_words));
    alignas(64) float bias_tiles[2 * kTile * kTile];
    alignas(64) float tmp[kTile * kTile];
    const int64_t zero = 0;
    if (kTiles) load_tile_config();
    for (int64_t it = ib; it < ie; ++it) {
      const Split::Item w = sp.item(it, p.groups);
      const int64_t ms = w.ms, pb = w.pb, ng = w.ng, grp = w.grp, n = w.n;
      const int64_t p0 = pb * sp.block * kTile;
      const int tiles = static_cast<int>(std::min<int64_t>(sp.block, ptiles - pb * sp.block));
      const int tiles_even = (tiles + 1) / 2 * 2;
      pack_panel(p, g, xq + ng * g.cpairs * g.plane, p0, tiles_even, panel);
      const uint16_t* ag = a + grp * g.mp * g.kp;
      float* yg = y + (n * p.k + grp * g.mg) * g.npix;
      const float* rg = ep.residual ? ep.residual + (n * p.k + grp * g.mg) * g.npix : nullptr;
      const int64_t mb_end = std::min(g.mp / 32, (ms + 1) * sp.mper);
      for (int64_t mb = ms * sp.mper; mb < mb_end; ++mb) {
        const int64_t co0 = mb * 32;
        if (!kTiles) {
          for (int t = 0; t < tiles_even; t += 2) {
            const int64_t px = p0 + int64_t{t} * kTile;
            const BRows br{{panel + int64_t{t} * tile_words, panel + int64_t{t + 1} * tile_words}, &zero, 1, g.kp / 2, kTile};
            float* const yt[2] = {yg + co0 * g.npix + px, yg + co0 * g.npix + px + kTile};
            const float* const rt[2] = {rg ? rg + co0 * g.npix + px : nullptr, rg ? rg + co0 * g.npix + px + kTile : nullptr};
            const int64_t cols[2] = {std::min<int64_t>(kTile, g.npix - px), std::min<int64_t>(kTile, g.npix - px - kTile)};
            dot_block(ag + co0 * g.kp, g.kp, br, b ? b + grp * g.mg + co0 : nullptr, std::min<int64_t>(32, g.mg - co0),
                      yt, rt, g.npix, cols, ep);
          }
          continue;
        }
        if (b) fill_bias(b, grp, g.mg, co0, bias_tiles);
        const int64_t rows0 = std::min<int64_t>(kTile, g.mg - co0), rows1 = std::min<int64_t>(kTile, g.mg - co0 - kTile);
        for (int t = 0; t < tiles_even; t += 2) {
          const uint32_t* b0 = panel + int64_t{t} * tile_words;
          kernel_packed(ag + co0 * g.kp, g.kp, b0, b0 + tile_words, b ? bias_tiles : nullptr);
          const int64_t px = p0 + int64_t{t} * kTile;
          float* yt = yg + co0 * g.npix + px;
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
    if (kTiles) _tile_release();
  });
}

template <bool kTiles>
void run_implicit(const Conv2dParams& p, const Geometry& g, const uint32_t* xq, const uint16_t* a, const float* b,
                  float* y, int threads, const Epilogue& ep) {
  std::vector<int64_t> tap_off(static_cast<size_t>(p.r * p.s));
  for (int64_t r = 0; r < p.r; ++r)
    for (int64_t s = 0; s < p.s; ++s) tap_off[static_cast<size_t>(r * p.s + s)] = r * p.dil_h * g.wp + s * p.dil_w;
  const int64_t tiles = p.oh * g.tiles_per_row;
  const Split sp = split(p.n * p.groups, tiles, g.mp / 32, 8, threads);
  parallel_for(sp.items, threads, [&](int64_t ib, int64_t ie) {
    alignas(64) float bias_tiles[2 * kTile * kTile];
    alignas(64) float tmp[kTile * kTile];
    if (kTiles) load_tile_config();
    for (int64_t it = ib; it < ie; ++it) {
      const Split::Item w = sp.item(it, p.groups);
      const int64_t ms = w.ms, pb = w.pb, ng = w.ng, grp = w.grp, n = w.n;
      const uint32_t* xg = xq + ng * g.cpairs * g.plane;
      const uint16_t* ag = a + grp * g.mp * g.kp;
      float* yg = y + (n * p.k + grp * g.mg) * g.npix;
      const float* rg = ep.residual ? ep.residual + (n * p.k + grp * g.mg) * g.npix : nullptr;
      const int64_t t_begin = pb * sp.block, t_end = std::min(tiles, t_begin + sp.block);
      const int64_t mb_end = std::min(g.mp / 32, (ms + 1) * sp.mper);
      for (int64_t mb = ms * sp.mper; mb < mb_end; ++mb) {
        const int64_t co0 = mb * 32;
        if (kTiles && b) fill_bias(b, grp, g.mg, co0, bias_tiles);
        const int64_t rows0 = std::min<int64_t>(kTile, g.mg - co0), rows1 = std::min<int64_t>(kTile, g.mg - co0 - kTile);
        for (int64_t t = t_begin; t < t_end; t += 2) {
          // Tiles t and t + 1 (a missing second tile computes tile t again and is not stored).
          int64_t out[2], cols[2];
          const uint32_t* src[2];
          for (int i = 0; i < 2; ++i) {
            const int64_t ti = t + i < t_end ? t + i : t;
            const int64_t oh = ti / g.tiles_per_row, ow0 = ti % g.tiles_per_row * kTile;
            out[i] = oh * p.ow + ow0;
            cols[i] = t + i < t_end ? std::min<int64_t>(kTile, p.ow - ow0) : 0;
            src[i] = xg + oh * p.stride_h * g.wp + ow0;
          }
          if (!kTiles) {
            const BRows br{{src[0], src[1]}, tap_off.data(), p.r * p.s, g.cpairs, g.plane};
            float* const yt[2] = {yg + co0 * g.npix + out[0], yg + co0 * g.npix + out[1]};
            const float* const rt[2] = {rg ? rg + co0 * g.npix + out[0] : nullptr, rg ? rg + co0 * g.npix + out[1] : nullptr};
            dot_block(ag + co0 * g.kp, g.kp, br, b ? b + grp * g.mg + co0 : nullptr, std::min<int64_t>(32, g.mg - co0),
                      yt, rt, g.npix, cols, ep);
            continue;
          }
          kernel_implicit(ag + co0 * g.kp, p, g, src[0], src[1], b ? bias_tiles : nullptr);
          float* y0 = yg + co0 * g.npix + out[0];
          float* y1 = yg + co0 * g.npix + out[1];
          PYCONV_STORE_TILE(0, y0, g.npix, rows0, cols[0], tmp);
          PYCONV_STORE_TILE(1, y1, g.npix, rows0, cols[1], tmp);
          PYCONV_STORE_TILE(2, y0 + kTile * g.npix, g.npix, rows1, cols[0], tmp);
          PYCONV_STORE_TILE(3, y1 + kTile * g.npix, g.npix, rows1, cols[1], tmp);
          if (ep.active()) {
            const int64_t rows = std::min<int64_t>(32, g.mg - co0);
            for (int i = 0; i < 2; ++i)
              if (cols[i] > 0)
                epilogue(yg + co0 * g.npix + out[i], rg ? rg + co0 * g.npix + out[i] : nullptr, g.npix, rows, cols[i], ep);
          }
        }
      }
    }
    if (kTiles) _tile_release();
  });
}

#undef PYCONV_STORE_TILE

}  // namespace

void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const uint16_t* a, const float* b, float* y, int threads,
                     const Epilogue& ep, bool tiles) {
  const Geometry g = geometry(p);
  // Implicit tiles read up to 15 words past a plane's last row: slack after the last plane.
  // Kept for the next call (a fresh allocation this size faults in every page).
  const int64_t words = p.n * p.groups * g.cpairs * g.plane;
  uint32_t* xq = call_buffer<uint32_t>(6, static_cast<size_t>(words + 2 * kTile));
  std::memset(xq + words, 0, 2 * kTile * 4);
  pack_input(p, g, x, xq, threads);
  if (g.implicit)
    (tiles ? run_implicit<true> : run_implicit<false>)(p, g, xq, a, b, y, threads, ep);
  else
    (tiles ? run_packed<true> : run_packed<false>)(p, g, xq, a, b, y, threads, ep);
}

}  // namespace amx
}  // namespace pyconv
