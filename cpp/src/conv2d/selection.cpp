// The "auto" rule: a table of rows, each a condition on the layer and the algorithm it picks; the
// first row whose condition holds wins, and auto then walks that algorithm's implementation-list
// entries (impl_list.cpp). The thresholds are the data below; the measurements behind each one are
// in benchmarks/RESULTS.md, "Algorithm selection", and tests/test_selection.py pins the choice
// over a sweep of several thousand layers.
#include <algorithm>

#include "conv2d/impl.h"
#include "conv2d/winograd.h"

namespace pyconv {

namespace {

struct Thresholds {
  // Winograd, forward and input gradient: >= min_tiles 4x4 output tiles per call, 8..512
  // channels reduced (its float32 error bound), >= 8 produced, and either >= 32 produced or at
  // least half as many as reduced (the GEMM's MR rows go unused otherwise).
  int64_t wino_min_tiles = 32, wino_max_cin = 512, wino_min_channels = 8, wino_full_cout = 32;
  // Winograd, weight gradient: >= 32 tiles and >= 8 filters, and input channels >= 64, or >= 32
  // with planes of >= 144 pixels or >= 64 tiles, or >= 16 with >= 192 tiles.
  int64_t wgrad_min_tiles = 32, wgrad_min_filters = 8;
  int64_t wgrad_cin_any = 64, wgrad_cin_mid = 32, wgrad_mid_pixels = 144, wgrad_mid_tiles = 64;
  int64_t wgrad_cin_low = 16, wgrad_low_tiles = 192;
  // Depthwise (one input channel per group): direct while filters per group <= 2, or <= 8 except
  // for the input gradient (it rebuilds a zero-stuffed dy plane per filter).
  int64_t dw_direct_any = 2, dw_direct_fwd_wgrad = 8;
  // First layers' weight gradient (C <= 4, strides <= 2): the direct first-layer kernel.
  int64_t first_layer_c = 4, first_layer_max_stride = 2;
  // Stride 1, blocked direct weight gradient: filters per group <= 16 (3x3) or <= 32 (width >= 5),
  // or its by-filter tiles at batch <= 16.
  int64_t wgrad_direct_kg = 16, wgrad_direct_kg_wide = 32, wgrad_wide_s = 5, wgrad_by_filter_max_n = 16;
  // Stride 1, blocked forward / input gradient: the channels read <= 64 or their padded planes
  // within 256 KiB (float32).
  int64_t blocked_max_cin = 64, blocked_max_plane_bytes = int64_t{256} << 10;
  // One image on a plane under 64 output pixels with > 64 channels in and out (ResNet's 512@7 at
  // batch 1): im2col, not the stride-1 direct rows ("Real-model layers").
  int64_t small_plane_pixels = 64, small_plane_channels = 64;
  // Otherwise im2col once a group has enough filters to fill the GEMM's rows.
  int64_t im2col_min_kg = 4;
};
constexpr Thresholds kT{};

// What the rows read, computed once per call.
struct Layer {
  const Conv2dParams& p;
  ConvDir dir;
  int64_t cg, kg;
};

bool winograd_preferred(const Conv2dParams& p, ConvDir dir) {
  if (!winograd_applies(p, dir)) return false;
  Conv2dParams q;
  if (wino::phase_split(p, q)) return winograd_preferred(q, dir);  // phase layers by the same rules
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  if (dir == ConvDir::bwd_weight) {
    const int64_t tiles = p.n * ceil_div(p.oh, 4) * ceil_div(p.ow, 4);
    return tiles >= kT.wgrad_min_tiles && kg >= kT.wgrad_min_filters &&
           (cg >= kT.wgrad_cin_any ||
            (cg >= kT.wgrad_cin_mid && (p.oh * p.ow >= kT.wgrad_mid_pixels || tiles >= kT.wgrad_mid_tiles)) ||
            (cg >= kT.wgrad_cin_low && tiles >= kT.wgrad_low_tiles));
  }
  const bool fwd = dir == ConvDir::fwd;
  const int64_t cin = fwd ? cg : kg, cout = fwd ? kg : cg;
  const int64_t tiles = p.n * ceil_div(fwd ? p.oh : p.h, 4) * ceil_div(fwd ? p.ow : p.w, 4);
  return cin <= kT.wino_max_cin && std::min(cin, cout) >= kT.wino_min_channels &&
         (cout >= kT.wino_full_cout || 2 * cout >= cin) && tiles >= kT.wino_min_tiles;
}

struct Row {
  ConvAlgo algo;
  bool (*when)(const Layer&);
};

// In order; the last row always holds.
const Row kRows[] = {
    {ConvAlgo::winograd, [](const Layer& l) { return winograd_preferred(l.p, l.dir); }},
    {ConvAlgo::im2col, [](const Layer& l) { return is_pointwise(l.p); }},  // 1x1: a plain GEMM
    {ConvAlgo::direct, [](const Layer& l) { return l.cg == 1 && l.kg <= kT.dw_direct_any; }},
    {ConvAlgo::direct,
     [](const Layer& l) { return l.cg == 1 && l.kg <= kT.dw_direct_fwd_wgrad && l.dir != ConvDir::bwd_data; }},
    {ConvAlgo::im2col, [](const Layer& l) { return l.cg == 1; }},
    {ConvAlgo::direct,
     [](const Layer& l) {
       return l.dir == ConvDir::bwd_weight && l.p.groups == 1 && l.p.c <= kT.first_layer_c &&
              l.p.stride_w <= kT.first_layer_max_stride;
     }},
    {ConvAlgo::im2col,
     [](const Layer& l) {
       return l.p.n == 1 && l.p.oh * l.p.ow < kT.small_plane_pixels && l.cg > kT.small_plane_channels &&
              l.kg > kT.small_plane_channels && l.kg >= kT.im2col_min_kg;
     }},
    {ConvAlgo::direct,
     [](const Layer& l) {
       const Conv2dParams& p = l.p;
       if (l.dir != ConvDir::bwd_weight || p.stride_h != 1 || p.stride_w != 1 || blocked_guard(p, l.dir)) return false;
       return (wgrad_by_filter(p) && p.n <= kT.wgrad_by_filter_max_n) ||
              l.kg <= (p.s >= kT.wgrad_wide_s ? kT.wgrad_direct_kg_wide : kT.wgrad_direct_kg);
     }},
    {ConvAlgo::direct,
     [](const Layer& l) {
       const Conv2dParams& p = l.p;
       if (l.dir == ConvDir::bwd_weight || blocked_guard(p, l.dir)) return false;
       const bool fwd = l.dir == ConvDir::fwd;
       const int64_t cin = fwd ? l.cg : l.kg;
       const int64_t sh = fwd ? p.h + p.pad_t + p.pad_b : p.h + (p.r - 1) * p.dil_h;
       const int64_t sw = fwd ? p.w + p.pad_l + p.pad_r : p.w + (p.s - 1) * p.dil_w;
       return cin <= kT.blocked_max_cin || cin * sh * sw * 4 <= kT.blocked_max_plane_bytes;
     }},
    {ConvAlgo::im2col, [](const Layer& l) { return l.kg >= kT.im2col_min_kg; }},
    {ConvAlgo::direct, [](const Layer&) { return true; }},
};

}  // namespace

ConvAlgo conv2d_choose_algo(const Conv2dParams& p, ConvDir dir) {
  const Layer l{p, dir, p.c / p.groups, p.k / p.groups};
  for (const Row& r : kRows)
    if (r.when(l)) return r.algo;
  return ConvAlgo::direct;
}

}  // namespace pyconv
