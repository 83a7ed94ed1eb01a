// Winograd F(4x4, 3x3) operator: plan, transformed filters, units of tiles, batched GEMMs, threads.
//
// Per call and group: U[xi] = G g G^T for the 36 positions xi (packed once as the GEMM's A
// panels). The output is cut into 4x4 tiles, numbered across images, and the tiles into units of
// `ntile` (a multiple of the GEMM's NR); per unit: V[xi] = B^T d B (the input transform writes the
// GEMM's packed B panels), M[xi] = U[xi] V[xi] by the GEMM micro-kernel for each xi, then
// y = A^T M A. A unit's V and M stay near L2 size. Units run in parallel when there are enough of
// them, otherwise the threads split one unit's channels / positions / filters; the unit size and
// every summation order depend on the shape only, so the bits do not depend on the thread count.
// The weight gradient (run_wgrad) reuses the input transform and tile layout; see there.
#include "conv2d/winograd.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm/gemm_driver.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "sizes.h"
#include "workspace.h"

namespace pyconv {

namespace {

constexpr int64_t kTiles = 36;  // 6x6 transform positions
// V + M of one unit; measured (vgg/cifar layers, AVX-512, 2 threads) best between 1 and 4 MiB.
constexpr int64_t kUnitBytes = int64_t{3} << 19;

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

int lanes_of(Isa isa, size_t elem) {
  return static_cast<int>((isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16) / elem);
}

// A unit's planes: ntile consecutive tiles span at most cdiv(ntile, tiles_w) + 1 tile rows
// (4 padded rows each) and cdiv(ntile, tiles per image) + 1 images (2 more rows each).
int64_t plane_bound(const Plan& pl, int64_t pw) {
  const int64_t tile_rows = cdiv(pl.ntile, pl.tiles_w) + 1, images = cdiv(pl.ntile, pl.tiles_h * pl.tiles_w) + 1;
  return 2 * (8 * pl.lanes + 16) + (4 * tile_rows + 2 * images) * pw;
}

// False when U for MR filters and the smallest unit exceed the workspace limit.
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

// One unit's segments and planes (see WinoSeg), for tiles [g0, g1).
struct UnitLayout {
  std::vector<WinoSeg> segs;
  std::vector<int64_t> planes;  // first padded row, rows, offset per image
  int64_t n0 = 0;
};

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

template <class T>
bool run(const Problem<T>& pr, int nt) {
  const Isa isa = active_isa();
  Plan pl{};
  if (!make_plan(pr.n, pr.cin, pr.kout, pr.hout, pr.wout, isa, sizeof(T), nt, pl)) return false;
  if (pl.total == 0) return true;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int ii = static_cast<int>(isa);
  auto* filter = tbl.conv2d_winograd_filter[ii];
  auto* input = tbl.conv2d_winograd_input[ii];
  auto* output = tbl.conv2d_winograd_output[ii];
  auto* uk = tbl.gemm_ukernel[ii];
  const int64_t pw = 4 * pl.tiles_w + 2;
  TileMaps maps;
  WinoTiles<T> base = input_tiles(pr, pl, maps);
  base.y_img = pr.y_img;
  base.y_ch = pr.y_ch;
  base.tp = pl.tp;
  base.vnr = pl.nr;
  const size_t v_elems = static_cast<size_t>(kTiles * pl.tp * pr.cin);

  // Few units (batch 1, deep layers) whose transformed filters U far exceed L2 would stream U from
  // memory once per unit, and that costs more than the GEMMs: instead every unit's V once, then
  // the filters in chunks whose U stays in the two L2s (same sums, same bits).
  const int64_t elem = static_cast<int64_t>(sizeof(T)), u_full = kTiles * cdiv(pr.kout, pl.mr) * pl.mr * pr.cin;
  bool resident = false;
  if (pl.units <= 16 && u_full * elem > (int64_t{4} << 20)) {
    const int64_t kc = std::min(pl.kchunk, std::max<int64_t>(pl.mr, (int64_t{2} << 20) / elem / (kTiles * pr.cin) / pl.mr * pl.mr));
    const int64_t need = pl.units * static_cast<int64_t>(v_elems) + kTiles * kc * (pr.cin + pl.tp) + nt * pl.plane_elems;
    if (need <= static_cast<int64_t>(workspace_limit()) / elem) {
      resident = true;
      pl.kchunk = kc;
      pl.u_elems = kTiles * kc * pr.cin;
    }
  }
  // Call-level buffers 0-3 (the phase split holds 4 and 5).
  T* vall = resident ? call_buffer<T>(0, static_cast<size_t>(pl.units) * v_elems) : nullptr;
  if (resident) {
    UnitLayout ul;
    WinoTiles<T> t = base;
    for (int64_t unit = 0; unit < pl.units; ++unit) {
      set_unit(pl, unit, pw, ul, t);
      parallel_for(pr.cin, nt, [&](int64_t c0, int64_t c1) {
        input(t, c0, c1, scratch<T>(0, static_cast<size_t>(pl.plane_elems)), vall + unit * v_elems);
      });
    }
  }

  T* u = call_buffer<T>(1, static_cast<size_t>(pl.u_elems));
  for (int64_t k0 = 0; k0 < pr.kout; k0 += pl.kchunk) {
    const int64_t kout = std::min(pl.kchunk, pr.kout - k0), kp = cdiv(kout, pl.mr) * pl.mr;
    parallel_for(kp / pl.mr, nt, [&](int64_t p0, int64_t p1) {
      filter(pr.w + k0 * pr.so, kout, pr.cin, pr.so, pr.si, pr.flip, pl.kc, p0, p1, u);
    });
    WinoTiles<T> wt = base;
    wt.kout = kout;
    wt.kp = kp;
    wt.y = pr.y + k0 * pr.y_ch;
    wt.bias = pr.bias ? pr.bias + k0 : nullptr;
    const int64_t npan = pl.tp / pl.nr, xs_v = npan * pr.cin * pl.nr, xs_m = kp * pl.tp;
    // M[xi] = U[xi] V[xi] for positions [x0, x1): C in kc blocks (fixed order), each B panel
    // held in L1 while every A panel passes over it.
    auto gemms = [&](const T* v, T* m, int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        for (int64_t c0 = 0; c0 < pr.cin; c0 += pl.kc) {
          const int64_t kb = std::min<int64_t>(pl.kc, pr.cin - c0);
          const T* ux = u + xi * kp * pr.cin + c0 * kp;
          for (int64_t j = 0; j < npan; ++j) {
            const T* b = v + xi * xs_v + (j * pr.cin + c0) * pl.nr;
            T* c = m + xi * xs_m + j * pl.nr;
            for (int64_t i = 0; i < kp / pl.mr; ++i) {  // rows of M past kout are never read
              const int rows = static_cast<int>(std::min<int64_t>(pl.mr, kout - i * pl.mr));
              uk(rows, kb, ux + i * pl.mr * kb, b, c + i * pl.mr * pl.tp, pl.tp, c0 > 0);
            }
          }
        }
    };
    auto setup = [&](int64_t unit, UnitLayout& ul, WinoTiles<T>& t) {
      t = wt;
      set_unit(pl, unit, pw, ul, t);
    };
    const size_t m_elems = static_cast<size_t>(kTiles * kp * pl.tp);
    const int64_t room = static_cast<int64_t>(workspace_limit() / sizeof(T)) - pl.u_elems;
    const int unit_threads = static_cast<int>(std::min<int64_t>(nt, std::max<int64_t>(1, room / pl.unit_elems)));
    // Whole rounds of units in parallel, one per thread; the rest (fewer units than threads) one at
    // a time with the threads splitting each unit (7 units on 2 threads would run 4 + 3).
    int64_t first = 0;
    if (!resident && pl.units >= 3 * static_cast<int64_t>(unit_threads) && unit_threads > 1) {
      first = pl.units / unit_threads * unit_threads;
      parallel_for(first, unit_threads, [&](int64_t a, int64_t b) {
        T* v = scratch<T>(0, v_elems);  // this thread's: no GEMM packing runs here
        T* m = scratch<T>(1, m_elems);
        T* plane = scratch<T>(2, static_cast<size_t>(pl.plane_elems));
        UnitLayout ul;
        WinoTiles<T> t;
        for (int64_t unit = a; unit < b; ++unit) {
          setup(unit, ul, t);
          input(t, 0, pr.cin, plane, v);
          gemms(v, m, 0, kTiles);
          output(t, 0, kout, m);
        }
      });
    }
    T* v = resident || first == pl.units ? nullptr : call_buffer<T>(2, v_elems);
    T* m = first == pl.units ? nullptr : call_buffer<T>(3, m_elems);
    UnitLayout ul;
    WinoTiles<T> t;
    for (int64_t unit = first; unit < pl.units; ++unit) {
      setup(unit, ul, t);
      T* vu = resident ? vall + unit * v_elems : v;
      if (!resident)
        parallel_for(pr.cin, nt, [&](int64_t c0, int64_t c1) {
          input(t, c0, c1, scratch<T>(0, static_cast<size_t>(pl.plane_elems)), vu);
        });
      parallel_for(kTiles, nt, [&](int64_t x0, int64_t x1) { gemms(vu, m, x0, x1); });
      parallel_for(kout, nt, [&](int64_t a, int64_t b) { output(t, a, b, m); });
    }
  }
  return true;
}

// Weight gradient, F(3x3, 4x4) read off the forward's transforms (Lavin & Gray, section 4):
// with dy cut into 4x4 tiles and x into the 6x6 tiles under them,
//   dW = G^T [ sum over tiles (A dy A^T) . (B^T x B) ] G,
// the sum over tiles being, per transform position xi, the GEMM M[xi] (K x C) += D[xi] (K x tiles)
// X[xi]^T (tiles x C). Units of tp tiles: both transforms into one buffer (threads over channels
// and filters), then the 36 GEMMs (threads over xi, each M[xi] owned by one thread and summed
// over units in order), so the bits do not depend on the thread count.
constexpr int64_t kWgradUnitBytes = int64_t{3} << 19;  // X + D of one unit
constexpr int64_t kWgradChunks = 8;

template <class T>
bool run_wgrad(const Problem<T>& pr, const T* dy, int64_t dy_img, int64_t dy_ch, T* dw, int nt) {
  const Isa isa = active_isa();
  const GemmTile& gt = gemm_tile<T>(isa);
  const int64_t L = lanes_of(isa, sizeof(T)), cin = pr.cin, kout = pr.kout;
  Plan pl{};
  pl.lanes = static_cast<int>(L);
  pl.tiles_h = cdiv(pr.hout, 4);
  pl.tiles_w = cdiv(pr.wout, 4);
  pl.total = pr.n * pl.tiles_h * pl.tiles_w;
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
  const int64_t want = std::max<int64_t>(kWgradUnitBytes / static_cast<int64_t>(sizeof(T)) / per_tile,
                                         m_elems * static_cast<int64_t>(sizeof(T)) > (int64_t{1} << 20) ? 256 : 64);
  const int64_t pw = 4 * pl.tiles_w + 2;
  if (pl.total == 0) {
    std::fill(dw, dw + kout * pr.so, T(0));
    return true;
  }
  // Within the budget: M, one unit's X and D, and one plane (the per-thread scratch aside, as in
  // the other kernels), independent of the thread count so that the units, hence the bits, are too.
  pl.ntile = std::min(pl.total, cdiv(want, L) * L + L);  // at least the unit size chosen below
  const int64_t room = static_cast<int64_t>(workspace_limit() / sizeof(T)) - m_elems - plane_bound(pl, pw);
  const int64_t most = room / per_tile / L * L;
  if (most < L) return false;
  // Units of equal size (a multiple of L).
  const int64_t units = cdiv(pl.total, std::min(want, most));
  pl.ntile = pl.tp = std::min(most, cdiv(cdiv(pl.total, units), L) * L);
  pl.plane_elems = plane_bound(pl, pw);
  const KernelTable<T>& tbl = kernel_table<T>();
  const int ii = static_cast<int>(isa);
  auto* input = tbl.conv2d_winograd_input[ii];
  auto* dyt = tbl.conv2d_winograd_dy[ii];
  auto* uk = tbl.gemm_ukernel[ii];
  gemm_pack_t_fn<T>* pack_tr = gemm_pack_t_kernel<T>(isa);
  TileMaps maps;
  WinoTiles<T> t = input_tiles(pr, pl, maps);
  t.kout = kout;
  t.dy = dy;
  t.dy_img = dy_img;
  t.dy_ch = dy_ch;
  t.tp = pl.tp;
  t.vnr = pl.tp;
  // mm[xi] (+)= the sums over a unit's kdim tiles for positions [x0, x1), from X = xh, D = dh.
  auto gemms = [&](const T* xh, const T* dh, T* mm, bool acc, int64_t kdim, int64_t x0, int64_t x1) {
    T* ap = scratch<T>(0, static_cast<size_t>(gt.mc * gt.kc));
    T* bp = scratch<T>(1, static_cast<size_t>(gt.kc * np));
    for (int64_t xi = x0; xi < x1; ++xi) {
      const T* as = swap ? xh + xi * cin * pl.tp : dh + xi * kout * pl.tp;  // M's rows, then columns
      const T* bs = swap ? dh + xi * kout * pl.tp : xh + xi * cin * pl.tp;
      T* mx = mm + xi * gt.nr;
      for (int64_t pc = 0; pc < kdim; pc += gt.kc) {
        const int64_t kb = std::min(gt.kc, kdim - pc);
        for (int64_t j = 0; j < np; j += gt.nr)
          pack_tr(bs + j * pl.tp + pc, pl.tp, std::min<int64_t>(gt.nr, cols - j), kb, gt.nr, bp + j * kb);
        for (int64_t ic = 0; ic < mp; ic += gt.mc) {
          const int64_t mb = std::min(gt.mc, mp - ic);
          for (int64_t i = 0; i < mb; i += gt.mr) {
            const int64_t live = std::clamp<int64_t>(rows - ic - i, 0, gt.mr);  // the rest: zeros
            pack_tr(as + (live > 0 ? (ic + i) * pl.tp + pc : 0), pl.tp, live, kb, gt.mr, ap + i * kb);
          }
          for (int64_t j = 0; j < np; j += gt.nr)
            for (int64_t i = 0; i < mb; i += gt.mr)
              uk(static_cast<int>(std::clamp<int64_t>(rows - ic - i, 1, gt.mr)), kb, ap + i * kb, bp + j * kb,
                 mx + (j * mp + (ic + i) * gt.nr) * kTiles, kTiles * gt.nr, acc || pc > 0);
        }
      }
    }
  };
  T* m = call_buffer<T>(0, static_cast<size_t>(m_elems));
  // Many units and a small M: a fixed number of unit chunks (from the shape, never the thread
  // count), each summed into its own M by one thread without a fork and join per unit, the
  // partial sums added in chunk order after. Their partial Ms stay within the workspace limit.
  const int64_t chunks = std::min<int64_t>(units, kWgradChunks);
  if (units >= kWgradChunks && chunks * m_elems * static_cast<int64_t>(sizeof(T)) <= (int64_t{16} << 20) &&
      (chunks - 1) * m_elems <= room - per_tile * pl.tp) {
    T* part = call_buffer<T>(1, static_cast<size_t>((chunks - 1) * m_elems));
    parallel_for(chunks, nt, [&](int64_t c0, int64_t c1) {
      T* xh = scratch<T>(3, static_cast<size_t>(per_tile * pl.tp));
      T* dh = xh + kTiles * cin * pl.tp;
      T* plane = scratch<T>(2, static_cast<size_t>(pl.plane_elems));
      UnitLayout ul;
      WinoTiles<T> tu = t;
      for (int64_t c = c0; c < c1; ++c) {
        T* mc = c == 0 ? m : part + (c - 1) * m_elems;
        for (int64_t unit = units * c / chunks; unit < units * (c + 1) / chunks; ++unit) {
          set_unit(pl, unit, pw, ul, tu);
          input(tu, 0, cin, plane, xh);
          dyt(tu, 0, kout, plane, dh);
          gemms(xh, dh, mc, unit > units * c / chunks, tu.ntiles, 0, kTiles);
        }
      }
    });
    // M's rows past `rows` (the last panel's padding) are never written nor read.
    const int64_t row_elems = kTiles * gt.nr, panel_elems = mp * row_elems;
    parallel_for((np / gt.nr) * rows, nt, [&](int64_t r0, int64_t r1) {
      for (int64_t c = 1; c < chunks; ++c) {
        const T* src = part + (c - 1) * m_elems;
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t off = r / rows * panel_elems + r % rows * row_elems;
          for (int64_t i = off; i < off + row_elems; ++i) m[i] += src[i];
        }
      }
    });
  } else {
    T* xh = call_buffer<T>(1, static_cast<size_t>(per_tile * pl.tp));  // X[xi][c][t]
    T* dh = xh + kTiles * cin * pl.tp;                                 // D[xi][k][t]
    UnitLayout ul;
    for (int64_t unit = 0; unit < units; ++unit) {
      set_unit(pl, unit, pw, ul, t);
      parallel_for(cin + kout, nt, [&](int64_t a, int64_t b) {
        T* plane = scratch<T>(2, static_cast<size_t>(pl.plane_elems));
        if (a < cin) input(t, a, std::min(b, cin), plane, xh);
        if (b > cin) dyt(t, std::max(a, cin) - cin, b - cin, plane, dh);
      });
      parallel_for(kTiles, nt, [&](int64_t x0, int64_t x1) { gemms(xh, dh, m, unit > 0, t.ntiles, x0, x1); });
    }
  }
  auto* wout = tbl.conv2d_winograd_wout[ii];
  const int64_t rs = swap ? pr.si : pr.so, cs = swap ? pr.so : pr.si;
  parallel_for(rows, nt, [&](int64_t i0, int64_t i1) { wout(m, mp, cols, i0, i1, dw, rs, cs); });
  return true;
}

}  // namespace

namespace {

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

bool dilated(const Conv2dParams& p) { return p.dil_h * p.dil_w > 1; }

}  // namespace

bool winograd_applies(const Conv2dParams& p, ConvDir dir) {
  Conv2dParams q;
  if (phase_split(p, q)) return dir != ConvDir::bwd_data || p.mode == PadMode::zeros;
  if (p.r != 3 || p.s != 3 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  return dir != ConvDir::bwd_data || p.mode == PadMode::zeros;
}

// "auto". Error: float32 max |y - exact| / max |y| on N(0, 1) data (benchmarks/winograd_error.py;
// im2col 2e-7..6e-7 throughout):
//   channels reduced   8       16      32      64        128       256         512
//   winograd          3.7e-6  4.7e-6  5.7e-6  7-9e-6    8.0-8.7e-6  1.2-1.7e-5  0.9-1.0e-5
// so auto keeps to <= 512 reduced channels, where it stays within the stated 2e-5 * max|y|.
// Speed, 2 threads AVX-512 float32, time im2col / time winograd, fwd | bwd_data (cin -> cout):
//   n8  8->8   7x7 .. 56x56     1.1-1.6 | 1.1-1.2     n8  3->32 any size        0.5-0.7 | 0.8-0.9
//   n8  16->64 any size         1.0-1.8 | 0.9-1.0     n8  32..512 7x7 .. 56x56  1.4-3.0 | 1.2-2.3
//   n1  32..256 14x14 (16 tiles) 1.1-1.2 | 0.7-1.0    n1  32..256 28x28, 56x56  1.3-2.5 | 1.1-1.7
//   n1  any 4x4 / 7x7 (<= 4 tiles per image)        0.1-0.8: the filter transform is not amortised
// i.e. it wins from ~32 output tiles per call with >= 8 channels on both sides, unless a few
// outputs per group are reduced from many (the GEMM's MR rows then go mostly unused).
// Weight gradient: error 3e-6..9e-6 of max |dW| for 64..512 channels and 196..8192 tiles summed
// (it does not grow with the tiles). Speed, 2 threads, GFLOP/s im2col / blocked direct / winograd:
//   n8   64->64  14x14   182 / 206 / 286     n8  128->128 7x7    148 / 223 / 275
//   n8  256->256 7x7     162 / 219 / 367     n8  512->512 7x7    242 / 182 / 328
//   n1   64->16  56x56   100 / 112 / 214     n8   64->8   32x32   72 /  87 / 155
//   n128 64->128 16x16   251 / 198 / 370     n1   64->64 224x224 205 / 140 / 399
//   n1  512->512 28x28   313 / 119 / 386     n8  512->512 28x28  315 / 115 / 645
//   n64  32->32  8x8     112 / 170 / 173     n32  16->16  16x16   84 /  95 / 113
// against, or even: n1 512->512 14x14 (16 tiles) 266 / 215 / 250 and 4 tiles 0.4-0.5x (sums too
// short for M's traffic); n8 32->32 7x7 78 / 125 / 112; n8 16->32 14x14 102 / 149 / 130;
// n8 8->64 32x32 175 / 126 / 158; n8 8->8 28x28 56 / 79 / 57.
// Fewer channels, more tiles (2 threads, after the blocked kernel's channel-major split), ms
// im2col / direct / winograd: n64 32->32 8x8 (256 tiles) 0.57 / 0.43 / 0.38; n16 32->32 8x8 (64)
// 0.16 / 0.11 / 0.10; n128 32->64 8x8 1.47 / 1.40 / 1.16; n1 16->64 56x56 (196) 0.35 / 0.29 / 0.23;
// n8 16->16 28x28 (392) 0.25 / 0.24 / 0.20; n64 16->32 16x16 (1024) 0.94 / 0.96 / 0.80;
// n128 16->32 16x16 1.87 / 1.97 / 1.31; but n8 16->32 14x14 (128) 0.12 / 0.10 / 0.10 and
// n8 32->32 7x7 (32) 0.08 / 0.05 / 0.06.
// Phase layers (phase_split) by the same rules, measured (2 threads, GFLOP/s of the original
// layer, im2col / direct / winograd, fwd | bwd_weight): AlexNet conv1 (11x11/4 -> 48 phase
// channels) n1 220 / 16 / 256 | 171 / 40 / 197, n8 225 / 16 / 299 | 203 / 42 / 218;
// 64->64 3x3 dilation 2 at 56x56 n1 261 / 314 / 321 | 216 / 287 / 295, n8 265 / 329 / 404 | 244 / 262 / 285.
bool winograd_preferred(const Conv2dParams& p, ConvDir dir) {
  if (!winograd_applies(p, dir)) return false;
  Conv2dParams q;
  if (phase_split(p, q)) return winograd_preferred(q, dir);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  if (dir == ConvDir::bwd_weight) {
    const int64_t tiles = p.n * cdiv(p.oh, 4) * cdiv(p.ow, 4);
    return tiles >= 32 && kg >= 8 &&
           (cg >= 64 || (cg >= 32 && (p.oh * p.ow >= 144 || tiles >= 64)) || (cg >= 16 && tiles >= 192));
  }
  const bool fwd = dir == ConvDir::fwd;
  const int64_t cin = fwd ? cg : kg, cout = fwd ? kg : cg;
  const int64_t tiles = p.n * cdiv(fwd ? p.oh : p.h, 4) * cdiv(fwd ? p.ow : p.w, 4);
  return cin <= 512 && std::min(cin, cout) >= 8 && (cout >= 32 || 2 * cout >= cin) && tiles >= 32;
}

namespace {

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
// element); other widths run with the runtime value.
template <class F>
void with_phases(int64_t sw, F&& f) {
  switch (sw) {
    case 2: return f(std::integral_constant<int64_t, 2>{});
    case 3: return f(std::integral_constant<int64_t, 3>{});
    case 4: return f(std::integral_constant<int64_t, 4>{});
    default: return f(sw);
  }
}

// dst[b * pstride + col] = row[sw * col + b]: one padded row dealt to its sw phase planes.
template <class T>
void deal(const T* __restrict row, int64_t sw, int64_t n, T* __restrict dst, int64_t pstride) {
  with_phases(sw, [&](auto w) {
    for (int64_t col = 0; col < n; ++col)
      for (int64_t b = 0; b < w; ++b) dst[b * pstride + col] = row[w * col + b];
  });
}

// row[sw * col + b] = src[b * pstride + col]: the inverse of deal.
template <class T>
void interleave(const T* __restrict src, int64_t pstride, int64_t sw, int64_t n, T* __restrict row) {
  with_phases(sw, [&](auto w) {
    for (int64_t col = 0; col < n; ++col)
      for (int64_t b = 0; b < w; ++b) row[w * col + b] = src[b * pstride + col];
  });
}

// x' of phase_split (rows/columns past the padded input are zero; they meet only zero taps or
// produce outputs that are dropped).
template <class T>
void phase_input(const Conv2dParams& p, const Conv2dParams& q, const ConvArgs<T>& a, T* xq, int nt) {
  const bool dil = dilated(p);
  const int64_t sh = dil ? p.dil_h : p.stride_h, sw = dil ? p.dil_w : p.stride_w;
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r, span = sw * q.w;
  // The sw phase planes (a, 0..sw) of one channel are one plane apart (strided) or one image apart
  // (dilated): each padded row is built once and dealt out to them.
  const int64_t pstride = (dil ? q.c : 1) * q.h * q.w;
  parallel_for(p.n * p.c * sh, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(span));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / (p.c * sh), c = i / sh % p.c, ph = i % sh;
      const T* xc = a.x + (n * p.c + c) * p.h * p.w;
      T* dst = xq + (dil ? ((n * sh + ph) * sw * q.c + c) : (n * q.c + (c * sh + ph) * sw)) * q.h * q.w;
      const int64_t lo = std::min(p.pad_l, span), hi = std::clamp<int64_t>(p.pad_l + p.w, lo, span);
      for (int64_t r = 0; r < q.h; ++r, dst += q.w) {
        const int64_t pr = sh * r + ph, ir = pr < hp ? a.row_map[pr] : -1;
        if (ir < 0) {
          for (int64_t b = 0; b < sw; ++b) std::fill(dst + b * pstride, dst + b * pstride + q.w, T(0));
          continue;
        }
        const T* xr = xc + ir * p.w;
        for (int64_t pc = 0; pc < lo; ++pc) row[static_cast<size_t>(pc)] = a.col_map[pc] < 0 ? T(0) : xr[a.col_map[pc]];
        std::memcpy(row.data() + lo, xr + lo - p.pad_l, sizeof(T) * static_cast<size_t>(hi - lo));
        for (int64_t pc = hi; pc < span; ++pc) {
          const int64_t ic = pc < wp ? a.col_map[pc] : -1;
          row[static_cast<size_t>(pc)] = ic < 0 ? T(0) : xr[ic];
        }
        deal(row.data(), sw, q.w, dst, pstride);
      }
    }
  });
}

// Tap (r, s) of channel c sits at channel c * sh * sw + (r % sh) * sw + s % sw, tap (r / sh, s / sw):
// offsets (c * sh * sw * 9 +) tap[r * S + s] in one filter of q.
std::vector<int64_t> phase_taps(const Conv2dParams& p) {
  std::vector<int64_t> tap(static_cast<size_t>(p.r * p.s));
  for (int64_t r = 0; r < p.r; ++r)
    for (int64_t s = 0; s < p.s; ++s)
      tap[static_cast<size_t>(r * p.s + s)] =
          (r % p.stride_h * p.stride_w + s % p.stride_w) * 9 + r / p.stride_h * 3 + s / p.stride_w;
  return tap;
}

// x' (a padded copy of the input) and, dilated, y' or dy' (q.k output planes per image) within
// half the workspace limit, else false.
template <class T>
bool phase_buffers(const Conv2dParams& p, const Conv2dParams& q, T*& xq, T*& yq) {
  const double x_elems = static_cast<double>(q.n * q.c) * static_cast<double>(q.h * q.w);
  const double y_elems = dilated(p) ? static_cast<double>(q.n * q.k) * static_cast<double>(q.oh * q.ow) : 0;
  if ((x_elems + y_elems) * sizeof(T) > static_cast<double>(workspace_limit()) / 2) return false;
  xq = call_buffer<T>(4, static_cast<size_t>(x_elems));
  yq = y_elems > 0 ? call_buffer<T>(5, static_cast<size_t>(y_elems)) : nullptr;
  return true;
}

// Dilated: y'[(n, a, b)][k][i][j] <-> y[n][k][dh*i + a][dw*j + b], y' -> y (outputs past y
// dropped) or y -> y' (zeros past y). One output row of y meets the dw planes b of its phase a.
template <class T, bool ToY>
void phase_outputs(const Conv2dParams& p, const Conv2dParams& q, std::conditional_t<ToY, T*, const T*> y,
                   std::conditional_t<ToY, const T*, T*> yq, int nt) {
  const int64_t dh = p.dil_h, dw = p.dil_w, span = dw * q.ow, pstride = q.k * q.oh * q.ow;
  parallel_for(p.n * p.k, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(span));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / p.k, k = i % p.k;
      auto* yk = y + i * p.oh * p.ow;
      for (int64_t a = 0; a < dh; ++a) {
        // plane (n, a, 0) of y', channel k; the planes b follow one image (q.k planes) apart
        auto* qa = yq + (((n * dh + a) * dw) * q.k + k) * q.oh * q.ow;
        for (int64_t r = 0; r < q.oh; ++r) {
          const int64_t oy = dh * r + a;
          if constexpr (ToY) {
            if (oy >= p.oh) break;
            interleave(qa + r * q.ow, pstride, dw, q.ow, row.data());
            std::memcpy(yk + oy * p.ow, row.data(), sizeof(T) * static_cast<size_t>(p.ow));
          } else {
            if (oy >= p.oh) {
              for (int64_t b = 0; b < dw; ++b) std::fill(qa + b * pstride + r * q.ow, qa + b * pstride + (r + 1) * q.ow, T(0));
              continue;
            }
            std::memcpy(row.data(), yk + oy * p.ow, sizeof(T) * static_cast<size_t>(p.ow));
            std::fill(row.begin() + p.ow, row.end(), T(0));
            deal(row.data(), dw, q.ow, qa + r * q.ow, pstride);
          }
        }
      }
    }
  });
}

template <class T>
bool fwd_phases(const ConvArgs<T>& a, const Conv2dParams& q, int nt);
template <class T>
bool bwd_weight_phases(const ConvArgs<T>& a, const Conv2dParams& q, const T* dy, T* dw, int nt);
template <class T>
bool bwd_data_phases(const Conv2dParams& p, const Conv2dParams& q, const T* dy, const T* w, T* dx, int nt);

}  // namespace

template <class T>
bool conv2d_fwd_winograd(const ConvArgs<T>& a, int nt) {
  const Conv2dParams& p = *a.p;
  Conv2dParams q;
  if (phase_split(p, q)) return fwd_phases(a, q, nt);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  for (int64_t g = 0; g < p.groups; ++g) {
    Problem<T> pr = forward_problem(a, g);
    pr.y = a.y + g * kg * p.oh * p.ow, pr.y_img = p.k * p.oh * p.ow, pr.y_ch = p.oh * p.ow;
    pr.bias = a.b ? a.b + g * kg : nullptr;
    pr.w = a.w + g * kg * cg * 9, pr.flip = false;
    if (!run(pr, nt)) return false;  // the same plan for every group: fails on the first
  }
  return true;
}

// dx = dy correlated with the flipped filters, channels swapped, padding 2 - pad (stride 1).
template <class T>
bool conv2d_bwd_data_winograd(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt) {
  Conv2dParams q;
  if (phase_split(p, q)) return bwd_data_phases(p, q, dy, w, dx, nt);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  for (int64_t g = 0; g < p.groups; ++g) {
    Problem<T> pr{};
    pr.n = p.n, pr.cin = kg, pr.kout = cg, pr.hout = p.h, pr.wout = p.w, pr.hin = p.oh, pr.win = p.ow;
    pr.top = 2 - p.pad_t, pr.left = 2 - p.pad_l;
    pr.x = dy + g * kg * p.oh * p.ow, pr.x_img = p.k * p.oh * p.ow, pr.x_ch = p.oh * p.ow;
    pr.y = dx + g * cg * p.h * p.w, pr.y_img = p.c * p.h * p.w, pr.y_ch = p.h * p.w;
    pr.bias = nullptr;
    pr.w = w + g * kg * cg * 9, pr.so = 9, pr.si = cg * 9, pr.flip = true;
    if (!run(pr, nt)) return false;
  }
  return true;
}

template <class T>
bool conv2d_bwd_weight_winograd(const ConvArgs<T>& a, const T* dy, T* dw, int nt) {
  const Conv2dParams& p = *a.p;
  Conv2dParams q;
  if (phase_split(p, q)) return bwd_weight_phases(a, q, dy, dw, nt);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  const int64_t ohw = p.oh * p.ow;
  for (int64_t g = 0; g < p.groups; ++g) {
    if (!run_wgrad(forward_problem(a, g), dy + g * kg * ohw, p.k * ohw, ohw, dw + g * kg * cg * 9, nt)) return false;
  }
  return true;
}

namespace {

template <class T>
ConvArgs<T> phase_args(const Conv2dParams& q, const T* xq) {
  ConvArgs<T> b{};
  b.p = &q;
  b.x = xq;
  return b;  // no padding: the row/column maps stay null
}

// The filters of the stride-phase layer (zero past the kernel).
template <class T>
std::vector<T> phase_filters(const Conv2dParams& p, const Conv2dParams& q, const T* w) {
  std::vector<T> wq(static_cast<size_t>(q.k * q.c * 9), T(0));
  const std::vector<int64_t> tap = phase_taps(p);
  const int64_t rs = p.r * p.s, cstep = p.stride_h * p.stride_w * 9;
  for (int64_t kc = 0; kc < p.k * p.c; ++kc)
    for (int64_t t = 0; t < rs; ++t) wq[static_cast<size_t>(kc * cstep + tap[static_cast<size_t>(t)])] = w[kc * rs + t];
  return wq;
}

// Zero padding: dx' = the phase layer's input gradient (dy, or its dilation phases, against the
// phase filters), then every input pixel takes the value of its phase position; padded positions
// are dropped and positions no window reads get 0.
template <class T>
bool bwd_data_phases(const Conv2dParams& p, const Conv2dParams& q, const T* dy, const T* w, T* dx, int nt) {
  T *dxq, *dyq;
  if (!phase_buffers(p, q, dxq, dyq)) return false;
  if (dilated(p)) {
    phase_outputs<T, false>(p, q, dy, dyq, nt);
    if (!conv2d_bwd_data_winograd(q, static_cast<const T*>(dyq), w, dxq, nt)) return false;
  } else {
    const std::vector<T> wq = phase_filters(p, q, w);
    if (!conv2d_bwd_data_winograd(q, dy, wq.data(), dxq, nt)) return false;
  }
  const bool dil = dilated(p);
  const int64_t sh = dil ? p.dil_h : p.stride_h, sw = dil ? p.dil_w : p.stride_w;
  // Row r of phase a: its sw planes b are interleaved back into the padded row, whose columns
  // [pad_l, pad_l + w) are dx's (columns past the phase planes are 0).
  const int64_t span = sw * q.w, pstride = (dil ? q.c : 1) * q.h * q.w;
  parallel_for(p.n * p.c, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(std::max(span, p.pad_l + p.w)), T(0));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / p.c, c = i % p.c;
      const T* base = dxq + (dil ? n * sh * sw * q.c + c : n * q.c + c * sh * sw) * q.h * q.w;
      T* dst = dx + i * p.h * p.w;
      for (int64_t ih = 0; ih < p.h; ++ih, dst += p.w) {
        const int64_t pr = ih + p.pad_t, a = pr % sh, r = pr / sh;
        if (r >= q.h) {
          std::fill(dst, dst + p.w, T(0));
          continue;
        }
        interleave(base + ((dil ? a * sw * q.c : a * sw) * q.h + r) * q.w, pstride, sw, q.w, row.data());
        std::memcpy(dst, row.data() + p.pad_l, sizeof(T) * static_cast<size_t>(p.w));
      }
    }
  });
  return true;
}

template <class T>
bool fwd_phases(const ConvArgs<T>& a, const Conv2dParams& q, int nt) {
  const Conv2dParams& p = *a.p;
  T *xq, *yq;
  if (!phase_buffers(p, q, xq, yq)) return false;
  phase_input(p, q, a, xq, nt);
  if (dilated(p)) {
    Problem<T> pr = forward_problem(phase_args(q, xq), 0);
    pr.y = yq, pr.y_img = q.k * q.oh * q.ow, pr.y_ch = q.oh * q.ow;
    pr.bias = a.b;
    pr.w = a.w, pr.flip = false;
    if (!run(pr, nt)) return false;
    phase_outputs<T, true>(p, q, a.y, yq, nt);
    return true;
  }
  const std::vector<T> wq = phase_filters(p, q, a.w);
  Problem<T> pr = forward_problem(phase_args(q, xq), 0);
  pr.y = a.y, pr.y_img = p.k * p.oh * p.ow, pr.y_ch = p.oh * p.ow;
  pr.bias = a.b;
  pr.w = wq.data(), pr.flip = false;
  return run(pr, nt);
}

template <class T>
bool bwd_weight_phases(const ConvArgs<T>& a, const Conv2dParams& q, const T* dy, T* dw, int nt) {
  const Conv2dParams& p = *a.p;
  T *xq, *dyq;
  if (!phase_buffers(p, q, xq, dyq)) return false;
  phase_input(p, q, a, xq, nt);
  if (dilated(p)) {
    phase_outputs<T, false>(p, q, dy, dyq, nt);
    return run_wgrad(forward_problem(phase_args(q, xq), 0), dyq, q.k * q.oh * q.ow, q.oh * q.ow, dw, nt);
  }
  std::vector<T> dwq(static_cast<size_t>(q.k * q.c * 9));
  if (!run_wgrad(forward_problem(phase_args(q, xq), 0), dy, p.k * p.oh * p.ow, p.oh * p.ow, dwq.data(), nt))
    return false;
  const std::vector<int64_t> tap = phase_taps(p);
  const int64_t rs = p.r * p.s, cstep = p.stride_h * p.stride_w * 9;
  for (int64_t kc = 0; kc < p.k * p.c; ++kc)
    for (int64_t t = 0; t < rs; ++t) dw[kc * rs + t] = dwq[static_cast<size_t>(kc * cstep + tap[static_cast<size_t>(t)])];
  return true;
}

}  // namespace

template bool conv2d_fwd_winograd<float>(const ConvArgs<float>&, int);
template bool conv2d_fwd_winograd<double>(const ConvArgs<double>&, int);
template bool conv2d_bwd_data_winograd<float>(const Conv2dParams&, const float*, const float*, float*, int);
template bool conv2d_bwd_data_winograd<double>(const Conv2dParams&, const double*, const double*, double*, int);
template bool conv2d_bwd_weight_winograd<float>(const ConvArgs<float>&, const float*, float*, int);
template bool conv2d_bwd_weight_winograd<double>(const ConvArgs<double>&, const double*, double*, int);

}  // namespace pyconv
