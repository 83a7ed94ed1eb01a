// Winograd F(4x4, 3x3) units: transformed filters, units of tiles, batched GEMMs, threads.
//
// Per call and group: U[xi] = G g G^T for the 36 positions xi (packed once as the GEMM's A
// panels). The output is cut into 4x4 tiles, numbered across images, and the tiles into units of
// `ntile` (a multiple of the GEMM's NR); per unit: V[xi] = B^T d B (the input transform writes the
// GEMM's packed B panels), M[xi] = U[xi] V[xi] by the GEMM micro-kernel for each xi, then
// y = A^T M A. A unit's V and M stay near L2 size. Units run in parallel when there are enough of
// them, otherwise the threads split one unit's channels / positions / filters; the unit size and
// every summation order depend on the shape only, so the bits do not depend on the thread count.
// The weight gradient (run_wgrad) reuses the input transform and tile layout; see there.
#include <algorithm>
#include <vector>

#include "conv2d/winograd_internal.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "sizes.h"
#include "workspace.h"

namespace pyconv {
namespace wino {

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
              uk(rows, kb, ux + i * pl.mr * kb, b, c + i * pl.mr * pl.tp, pl.tp, c0 > 0, nullptr);
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
constexpr int64_t kWgradChunks = 8;

template <class T>
bool run_wgrad(const Problem<T>& pr, const T* dy, int64_t dy_img, int64_t dy_ch, T* dw, int nt) {
  const Isa isa = active_isa();
  WgradPlan wp;
  if (!make_wgrad_plan(pr.n, pr.cin, pr.kout, pr.hout, pr.wout, isa, sizeof(T), wp)) return false;
  Plan& pl = wp.pl;
  if (pl.total == 0) {
    std::fill(dw, dw + pr.kout * pr.so, T(0));
    return true;
  }
  const GemmTile& gt = *wp.gt;
  const int64_t L = wp.L, cin = wp.cin, kout = wp.kout, rows = wp.rows, cols = wp.cols, mp = wp.mp, np = wp.np;
  const int64_t per_tile = wp.per_tile, m_elems = wp.m_elems, pw = wp.pw, room = wp.room, units = wp.units;
  const bool swap = wp.swap;
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
                 mx + (j * mp + (ic + i) * gt.nr) * kTiles, kTiles * gt.nr, acc || pc > 0, nullptr);
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


template bool run<float>(const Problem<float>&, int);
template bool run<double>(const Problem<double>&, int);
template bool run_wgrad<float>(const Problem<float>&, const float*, int64_t, int64_t, float*, int);
template bool run_wgrad<double>(const Problem<double>&, const double*, int64_t, int64_t, double*, int);

}  // namespace wino

using namespace wino;

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

template bool conv2d_fwd_winograd<float>(const ConvArgs<float>&, int);
template bool conv2d_fwd_winograd<double>(const ConvArgs<double>&, int);
template bool conv2d_bwd_data_winograd<float>(const Conv2dParams&, const float*, const float*, float*, int);
template bool conv2d_bwd_data_winograd<double>(const Conv2dParams&, const double*, const double*, double*, int);
template bool conv2d_bwd_weight_winograd<float>(const ConvArgs<float>&, const float*, float*, int);
template bool conv2d_bwd_weight_winograd<double>(const ConvArgs<double>&, const double*, double*, int);

}  // namespace pyconv
