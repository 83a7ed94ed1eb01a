// Winograd F(4x4, 3x3) plans: unit sizes within the workspace limit, the tile layout of a unit,
// the phase split of strided and dilated layers, and the implementation-list guards and fits.
#include <algorithm>

#include "conv2d/winograd_internal.h"
#include "sizes.h"

namespace pyconv {
namespace wino {

int64_t plane_bound(const Plan& pl, int64_t pw) {
  const int64_t tile_rows = cdiv(pl.ntile, pl.tiles_w) + 1, images = cdiv(pl.ntile, pl.tiles_h * pl.tiles_w) + 1;
  return 2 * (8 * pl.lanes + 16) + (4 * tile_rows + 2 * images) * pw;
}


bool make_plan(int64_t n, int64_t cin, int64_t kout, int64_t hout, int64_t wout, Isa isa, size_t elem, int nt,
               Plan& pl) {
  const GemmTile& t = elem == 8 ? gemm_tile<double>(isa) : gemm_tile<float>(isa);
  pl.lanes = lanes_of(isa, elem);
  pl.mr = t.mr;
  pl.nr = t.nr;
  pl.kc = static_cast<int>(t.kc);
  pl.tiles_h = cdiv(hout, 4);
  pl.tiles_w = cdiv(wout, 4);
  pl.total = n * pl.tiles_h * pl.tiles_w;
  const int64_t limit = static_cast<int64_t>(workspace_limit() / elem);
  const int64_t kp = cdiv(kout, pl.mr) * pl.mr;
  // Filters in chunks when U would take more than half the budget.
  pl.kchunk = std::min(kp, std::max<int64_t>(pl.mr, limit / 2 / (kTiles * cin) / pl.mr * pl.mr));
  const int64_t per_tile = kTiles * (cin + pl.kchunk);
  pl.ntile = std::max<int64_t>(pl.nr, kUnitBytes / static_cast<int64_t>(elem) / per_tile / pl.nr * pl.nr);
  // Small calls: units of down to NR tiles, 3 per thread, so that they run in parallel without a
  // fork and join per transform (a tile's sums do not depend on its unit: same bits).
  if (cdiv(pl.total, pl.ntile) < 3 * nt) pl.ntile = std::min(pl.ntile, std::max<int64_t>(pl.nr, pl.total / (3 * nt) / pl.nr * pl.nr));
  pl.ntile = std::max<int64_t>(1, std::min(pl.ntile, pl.total));
  pl.tp = cdiv(pl.ntile, pl.nr) * pl.nr;
  pl.units = cdiv(pl.total, pl.ntile);
  pl.u_elems = kTiles * pl.kchunk * cin;
  pl.plane_elems = plane_bound(pl, 4 * pl.tiles_w + 2);
  pl.unit_elems = kTiles * pl.tp * (cin + pl.kchunk) + pl.plane_elems;
  return pl.u_elems + pl.unit_elems <= limit;
}

void layout_unit(const Plan& pl, int64_t g0, int64_t g1, int64_t pw, UnitLayout& ul) {
  const int64_t tpi = pl.tiles_h * pl.tiles_w, L = pl.lanes;
  ul.segs.clear();
  ul.planes.clear();
  ul.n0 = g0 / tpi;
  int64_t off = 8 * L + 16;  // slack before the first plane: lanes left of a segment read there
  for (int64_t n = ul.n0; n <= (g1 - 1) / tpi; ++n) {
    const int64_t th0 = n == ul.n0 ? g0 % tpi / pl.tiles_w : 0;
    const int64_t th1 = n == (g1 - 1) / tpi ? (g1 - 1) % tpi / pl.tiles_w : pl.tiles_h - 1;
    const int64_t rows = 4 * (th1 - th0) + 6;
    ul.planes.insert(ul.planes.end(), {4 * th0, rows, off});
    off += rows * pw;
  }
  for (int64_t g = g0; g < g1;) {
    const int64_t n = g / tpi, th = g % tpi / pl.tiles_w, tw = g % pl.tiles_w, pos = g - g0;
    const int64_t lane0 = pos % L, count = std::min({L - lane0, pl.tiles_w - tw, g1 - g});
    const int64_t* pr = &ul.planes[static_cast<size_t>(3 * (n - ul.n0))];
    ul.segs.push_back({pos / L, lane0, count, n, th, tw, pr[2] + (4 * th - pr[0]) * pw + 4 * (tw - lane0)});
    g += count;
  }
}

// X + D of one weight-gradient unit.
constexpr int64_t kWgradUnitBytes = int64_t{3} << 19;

bool make_wgrad_plan(int64_t n, int64_t cin, int64_t kout, int64_t hout, int64_t wout, Isa isa, size_t elem,
                     WgradPlan& wp) {
  const GemmTile& gt = elem == 8 ? gemm_tile<double>(isa) : gemm_tile<float>(isa);
  const int64_t L = lanes_of(isa, elem), sz = static_cast<int64_t>(elem);
  Plan& pl = wp.pl;
  pl = Plan{};
  pl.lanes = static_cast<int>(L);
  pl.tiles_h = cdiv(hout, 4);
  pl.tiles_w = cdiv(wout, 4);
  pl.total = n * pl.tiles_h * pl.tiles_w;
  // M's rows are filters and its columns channels, or the other way round when that pads less
  // (the columns to the micro-kernel's NR, the rows to its MR: 48 channels take 64 columns).
  // M in NR-column panels of mp rows, the 36 positions of one row next to each other:
  // m[((panel * mp + i) * 36 + xi) * NR + j % NR]. Every micro-tile of the GEMM is whole, and
  // the output transform reads one contiguous run per (row, panel).
  const bool swap = cdiv(kout, gt.mr) * gt.mr * cdiv(cin, gt.nr) * gt.nr > cdiv(cin, gt.mr) * gt.mr * cdiv(kout, gt.nr) * gt.nr;
  const int64_t rows = swap ? cin : kout, cols = swap ? kout : cin;
  const int64_t mp = cdiv(rows, gt.mr) * gt.mr, np = cdiv(cols, gt.nr) * gt.nr;
  const int64_t per_tile = kTiles * (cin + kout), m_elems = kTiles * mp * np;
  // At least 64 tiles per GEMM (its reduction), more while M is too large to stay in cache.
  const int64_t want = std::max<int64_t>(kWgradUnitBytes / sz / per_tile, m_elems * sz > (int64_t{1} << 20) ? 256 : 64);
  const int64_t pw = 4 * pl.tiles_w + 2;
  wp.gt = &gt;
  wp.L = L, wp.cin = cin, wp.kout = kout, wp.rows = rows, wp.cols = cols, wp.mp = mp, wp.np = np;
  wp.per_tile = per_tile, wp.m_elems = m_elems, wp.pw = pw, wp.swap = swap;
  if (pl.total == 0) return true;
  // Within the budget: M, one unit's X and D, and one plane (the per-thread scratch aside, as in
  // the other kernels), independent of the thread count so that the units, hence the bits, are too.
  pl.ntile = std::min(pl.total, cdiv(want, L) * L + L);  // at least the unit size chosen below
  const int64_t room = static_cast<int64_t>(workspace_limit() / elem) - m_elems - plane_bound(pl, pw);
  const int64_t most = room / per_tile / L * L;
  if (most < L) return false;
  // Units of equal size (a multiple of L).
  const int64_t units = cdiv(pl.total, std::min(want, most));
  pl.ntile = pl.tp = std::min(most, cdiv(cdiv(pl.total, units), L) * L);
  pl.plane_elems = plane_bound(pl, pw);
  wp.room = room, wp.units = units;
  return true;
}

// Strided and dilated layers as a stride-1 3x3 layer q over phases of the padded input x_p:
// - stride (sh, sw), kernel spanning 3 strides each way (space-to-depth): channel (c, a, b) of x'
//   is x_p[c][sh*i + a][sw*j + b], tap (u, v) of channel (c, a, b) is w[c][sh*u + a][sw*v + b]
//   (zero past the kernel);
// - 3x3 dilated (dh, dw), stride 1: image (n, a, b) of x' is x_p[n][dh*i + a][dw*j + b], and
//   output (i, j) of that image is y[dh*i + a][dw*j + b] (phases stacked as images).
// False for other layers (and groups).
bool phase_split(const Conv2dParams& p, Conv2dParams& q) {
  if (p.groups != 1) return false;
  q = Conv2dParams{};
  q.c = p.c, q.k = p.k, q.r = 3, q.s = 3;
  if (p.dil_h * p.dil_w > 1) {
    if (p.r != 3 || p.s != 3 || p.stride_h * p.stride_w != 1) return false;
    q.n = p.n * p.dil_h * p.dil_w, q.oh = cdiv(p.oh, p.dil_h), q.ow = cdiv(p.ow, p.dil_w);
  } else {
    if (p.stride_h * p.stride_w == 1 || cdiv(p.r, p.stride_h) != 3 || cdiv(p.s, p.stride_w) != 3) return false;
    q.n = p.n, q.c = p.c * p.stride_h * p.stride_w, q.oh = p.oh, q.ow = p.ow;
  }
  q.h = q.oh + 2, q.w = q.ow + 2;
  return true;
}

}  // namespace wino

using wino::phase_split;

namespace {

// The problem sizes of a stride-1 3x3 call (no phases), as the runs of winograd_units.cpp set them.
bool fits_direct(const Conv2dParams& p, ConvDir dir, size_t elem, int nt) {
  const Isa isa = active_isa();
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  if (dir == ConvDir::bwd_weight) {
    wino::WgradPlan wp;
    return wino::make_wgrad_plan(p.n, cg, kg, p.oh, p.ow, isa, elem, wp);
  }
  wino::Plan pl{};
  if (dir == ConvDir::fwd) return wino::make_plan(p.n, cg, kg, p.oh, p.ow, isa, elem, nt, pl);
  return wino::make_plan(p.n, kg, cg, p.h, p.w, isa, elem, nt, pl);
}

}  // namespace

const char* winograd_guard(const Conv2dParams& p, ConvDir dir) {
  if (p.r != 3 || p.s != 3) return "needs a 3x3 kernel";
  if (p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return "needs stride 1 and dilation 1";
  if (dir == ConvDir::bwd_data && p.mode != PadMode::zeros) return "the input gradient needs zero padding";
  return nullptr;
}

const char* winograd_phases_guard(const Conv2dParams& p, ConvDir dir) {
  Conv2dParams q;
  if (!phase_split(p, q))
    return "needs groups 1 and a 3x3 dilated stride-1 kernel or a kernel spanning 3 strides each way";
  if (dir == ConvDir::bwd_data && p.mode != PadMode::zeros) return "the input gradient needs zero padding";
  return nullptr;
}

bool winograd_applies(const Conv2dParams& p, ConvDir dir) {
  return winograd_guard(p, dir) == nullptr || winograd_phases_guard(p, dir) == nullptr;
}

const char* winograd_fit(const Conv2dParams& p, ConvDir dir, size_t elem, int nt) {
  constexpr const char* kTooSmall = "the transformed filters and one unit of tiles exceed the workspace limit";
  Conv2dParams q;
  if (!phase_split(p, q)) return fits_direct(p, dir, elem, nt) ? nullptr : kTooSmall;
  // x' and, dilated, y' or dy' within half the workspace limit (phase_buffers), then q's run.
  const double x_elems = static_cast<double>(q.n * q.c) * static_cast<double>(q.h * q.w);
  const double y_elems = wino::dilated(p) ? static_cast<double>(q.n * q.k) * static_cast<double>(q.oh * q.ow) : 0;
  if ((x_elems + y_elems) * static_cast<double>(elem) > static_cast<double>(workspace_limit()) / 2)
    return "the phase planes exceed half the workspace limit";
  if (dir == ConvDir::bwd_data) {
    wino::Plan pl{};  // the phase layer's input gradient: q.k channels in, q.c out, q.h x q.w
    return wino::make_plan(q.n, q.k, q.c, q.h, q.w, active_isa(), elem, nt, pl) ? nullptr : kTooSmall;
  }
  if (dir == ConvDir::bwd_weight) {
    wino::WgradPlan wp;
    return wino::make_wgrad_plan(q.n, q.c, q.k, q.oh, q.ow, active_isa(), elem, wp) ? nullptr : kTooSmall;
  }
  wino::Plan pl{};
  return wino::make_plan(q.n, q.c, q.k, q.oh, q.ow, active_isa(), elem, nt, pl) ? nullptr : kTooSmall;
}

}  // namespace pyconv
