// Internal to the Winograd F(4x4, 3x3) operator (winograd_plan.cpp, winograd_units.cpp,
// winograd_phases.cpp): the problem one run sees, its plan, and the unit layout of its tiles.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv2d/winograd.h"
#include "gemm/gemm_driver.h"

namespace pyconv {
namespace wino {

constexpr int64_t kTiles = 36;  // 6x6 transform positions
// V + M of one unit (benchmarks/RESULTS.md, "Algorithm selection": best between 1 and 4 MiB).
constexpr int64_t kUnitBytes = int64_t{3} << 19;

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The convolution as the kernels see it: input planes -> output planes of one group.
template <class T>
struct Problem {
  int64_t n, cin, kout, hout, wout, hin, win;
  int64_t top, left;  // output (0, 0) reads padded input row/column 0 = input (-top, -left)
  const int64_t* row_map = nullptr;  // padded -> input, or null: offsets with zeros outside
  const int64_t* col_map = nullptr;
  int64_t hp = 0, wp = 0;            // padded sizes the maps cover
  const T* x;
  int64_t x_img, x_ch;
  T* y;
  int64_t y_img, y_ch;
  const T* bias;
  const T* w;
  int64_t so, si;
  bool flip;
};

struct Plan {
  int64_t tiles_h, tiles_w, total, kchunk, ntile, tp, units, u_elems, unit_elems, plane_elems;
  int lanes, mr, nr, kc;
};


inline int lanes_of(Isa isa, size_t elem) { return static_cast<int>(isa_vec_bytes(isa) / elem); }

// A unit's planes: ntile consecutive tiles span at most cdiv(ntile, tiles_w) + 1 tile rows
// (4 padded rows each) and cdiv(ntile, tiles per image) + 1 images (2 more rows each).
int64_t plane_bound(const Plan& pl, int64_t pw);

// False when U for MR filters and the smallest unit exceed the workspace limit.
bool make_plan(int64_t n, int64_t cin, int64_t kout, int64_t hout, int64_t wout, Isa isa, size_t elem, int nt,
               Plan& pl);

// The weight gradient's plan (see run_wgrad): false when M and the smallest unit exceed the
// workspace limit; with no tiles (pl.total == 0) true and nothing else set.
struct WgradPlan {
  Plan pl;
  const GemmTile* gt;
  int64_t L, cin, kout, rows, cols, mp, np, per_tile, m_elems, pw, room, units;
  bool swap;
};
bool make_wgrad_plan(int64_t n, int64_t cin, int64_t kout, int64_t hout, int64_t wout, Isa isa, size_t elem,
                     WgradPlan& wp);

// One unit's segments and planes (see WinoSeg), for tiles [g0, g1).
struct UnitLayout {
  std::vector<WinoSeg> segs;
  std::vector<int64_t> planes;  // first padded row, rows, offset per image
  int64_t n0 = 0;
};


void layout_unit(const Plan& pl, int64_t g0, int64_t g1, int64_t pw, UnitLayout& ul);

// Tiles [unit * ntile, ...) as t's segments and planes (ul keeps them).
template <class T>
void set_unit(const Plan& pl, int64_t unit, int64_t pw, UnitLayout& ul, WinoTiles<T>& t) {
  const int64_t g0 = unit * pl.ntile, g1 = std::min(pl.total, g0 + pl.ntile);
  layout_unit(pl, g0, g1, pw, ul);
  t.segs = ul.segs.data();
  t.nsegs = static_cast<int64_t>(ul.segs.size());
  t.ntiles = g1 - g0;
  t.plane_rows = ul.planes.data();
  t.n0 = ul.n0;
  t.nimg = static_cast<int64_t>(ul.planes.size() / 3);
}

// Padded row/column -> input row/column (or -1), over every row/column a tile reads.
struct TileMaps {
  std::vector<int64_t> rows, cols;
};

// The input side of the tiles: maps, plane geometry, channels.
template <class T>
WinoTiles<T> input_tiles(const Problem<T>& pr, const Plan& pl, TileMaps& maps) {
  const int64_t pw = 4 * pl.tiles_w + 2, prow = 4 * pl.tiles_h + 2;
  maps.rows.resize(static_cast<size_t>(prow));
  maps.cols.resize(static_cast<size_t>(pw));
  for (int64_t r = 0; r < prow; ++r) {
    const int64_t i = r - pr.top;
    maps.rows[static_cast<size_t>(r)] = pr.row_map ? (r < pr.hp ? pr.row_map[r] : -1) : (i >= 0 && i < pr.hin ? i : -1);
  }
  for (int64_t q = 0; q < pw; ++q) {
    const int64_t i = q - pr.left;
    maps.cols[static_cast<size_t>(q)] = pr.col_map ? (q < pr.wp ? pr.col_map[q] : -1) : (i >= 0 && i < pr.win ? i : -1);
  }
  WinoTiles<T> t{};
  t.cin = pr.cin;
  t.hout = pr.hout;
  t.wout = pr.wout;
  t.win = pr.win;
  t.rmap = maps.rows.data();
  t.cmap = maps.cols.data();
  t.pw = pw;
  t.coff = pr.left;
  t.clo = std::clamp<int64_t>(pr.left, 0, pw);
  t.chi = std::clamp<int64_t>(pr.left + pr.win, t.clo, pw);
  t.x = pr.x;
  t.x_img = pr.x_img;
  t.x_ch = pr.x_ch;
  return t;
}

inline bool dilated(const Conv2dParams& p) { return p.dil_h * p.dil_w > 1; }

// Group g of the forward's geometry: x in its padding, filters (and dW) as stored.
template <class T>
Problem<T> forward_problem(const ConvArgs<T>& a, int64_t g) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  Problem<T> pr{};
  pr.n = p.n, pr.cin = cg, pr.kout = kg, pr.hout = p.oh, pr.wout = p.ow, pr.hin = p.h, pr.win = p.w;
  pr.top = p.pad_t, pr.left = p.pad_l;
  pr.row_map = a.row_map, pr.col_map = a.col_map;
  pr.hp = p.h + p.pad_t + p.pad_b, pr.wp = p.w + p.pad_l + p.pad_r;
  pr.x = a.x + g * cg * p.h * p.w, pr.x_img = p.c * p.h * p.w, pr.x_ch = p.h * p.w;
  pr.so = cg * 9, pr.si = 9;
  return pr;
}

// f(sw) with sw a compile-time constant for 2-4 phases, so that the compiler vectorises the
// interleaved accesses of deal and interleave (shuffles instead of a scalar load and store per

// One stride-1 3x3 problem (winograd_units.cpp); false, having done nothing, when it does not fit.
template <class T>
bool run(const Problem<T>& pr, int nt);
template <class T>
bool run_wgrad(const Problem<T>& pr, const T* dy, int64_t dy_img, int64_t dy_ch, T* dw, int nt);

// The phase layers (winograd_phases.cpp).
template <class T>
bool fwd_phases(const ConvArgs<T>& a, const Conv2dParams& q, int nt);
template <class T>
bool bwd_weight_phases(const ConvArgs<T>& a, const Conv2dParams& q, const T* dy, T* dw, int nt);
template <class T>
bool bwd_data_phases(const Conv2dParams& p, const Conv2dParams& q, const T* dy, const T* w, T* dx, int nt);

}  // namespace wino
}  // namespace pyconv
