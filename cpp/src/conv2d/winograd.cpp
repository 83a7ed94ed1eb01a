// Winograd F(4x4, 3x3) operator: plan, transformed filters, units of tiles, batched GEMMs, threads.
//
// Per call and group: U[xi] = G g G^T for the 36 positions xi (packed once as the GEMM's A
// panels). The output is cut into 4x4 tiles, numbered across images, and the tiles into units of
// `ntile` (a multiple of the GEMM's NR); per unit: V[xi] = B^T d B (the input transform writes the
// GEMM's packed B panels), M[xi] = U[xi] V[xi] by the GEMM micro-kernel for each xi, then
// y = A^T M A. A unit's V and M stay near L2 size. Units run in parallel when there are enough of
// them, otherwise the threads split one unit's channels / positions / filters; the unit size and
// every summation order depend on the shape only, so the bits do not depend on the thread count.
#include "conv2d/winograd.h"

#include <algorithm>
#include <vector>

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
bool make_plan(int64_t n, int64_t cin, int64_t kout, int64_t hout, int64_t wout, Isa isa, size_t elem, Plan& pl) {
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

template <class T>
bool run(const Problem<T>& pr, int nt) {
  const Isa isa = active_isa();
  Plan pl{};
  if (!make_plan(pr.n, pr.cin, pr.kout, pr.hout, pr.wout, isa, sizeof(T), pl)) return false;
  if (pl.total == 0) return true;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int ii = static_cast<int>(isa);
  auto* filter = tbl.conv2d_winograd_filter[ii];
  auto* input = tbl.conv2d_winograd_input[ii];
  auto* output = tbl.conv2d_winograd_output[ii];
  auto* uk = tbl.gemm_ukernel[ii];
  const int64_t pw = 4 * pl.tiles_w + 2, prow = 4 * pl.tiles_h + 2;
  // Padded row/column -> input row/column (or -1), over every row/column a tile reads.
  std::vector<int64_t> rmap(static_cast<size_t>(prow)), cmap(static_cast<size_t>(pw));
  for (int64_t r = 0; r < prow; ++r) {
    const int64_t i = r - pr.top;
    rmap[static_cast<size_t>(r)] = pr.row_map ? (r < pr.hp ? pr.row_map[r] : -1) : (i >= 0 && i < pr.hin ? i : -1);
  }
  for (int64_t q = 0; q < pw; ++q) {
    const int64_t i = q - pr.left;
    cmap[static_cast<size_t>(q)] = pr.col_map ? (q < pr.wp ? pr.col_map[q] : -1) : (i >= 0 && i < pr.win ? i : -1);
  }
  WinoTiles<T> base{};
  base.cin = pr.cin;
  base.hout = pr.hout;
  base.wout = pr.wout;
  base.win = pr.win;
  base.rmap = rmap.data();
  base.cmap = cmap.data();
  base.pw = pw;
  base.coff = pr.left;
  base.clo = std::clamp<int64_t>(pr.left, 0, pw);
  base.chi = std::clamp<int64_t>(pr.left + pr.win, base.clo, pw);
  base.x = pr.x;
  base.x_img = pr.x_img;
  base.x_ch = pr.x_ch;
  base.y_img = pr.y_img;
  base.y_ch = pr.y_ch;
  base.tp = pl.tp;

  Buffer<T> u(static_cast<size_t>(pl.u_elems));
  for (int64_t k0 = 0; k0 < pr.kout; k0 += pl.kchunk) {
    const int64_t kout = std::min(pl.kchunk, pr.kout - k0), kp = cdiv(kout, pl.mr) * pl.mr;
    parallel_for(kp / pl.mr, nt, [&](int64_t p0, int64_t p1) {
      filter(pr.w + k0 * pr.so, kout, pr.cin, pr.so, pr.si, pr.flip, pl.kc, p0, p1, u.get());
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
          const T* ux = u.get() + xi * kp * pr.cin + c0 * kp;
          for (int64_t j = 0; j < npan; ++j) {
            const T* b = v + xi * xs_v + (j * pr.cin + c0) * pl.nr;
            T* c = m + xi * xs_m + j * pl.nr;
            for (int64_t i = 0; i < kp / pl.mr; ++i) uk(kb, ux + i * pl.mr * kb, b, c + i * pl.mr * pl.tp, pl.tp, c0 > 0);
          }
        }
    };
    auto setup = [&](int64_t unit, UnitLayout& ul, WinoTiles<T>& t) {
      const int64_t g0 = unit * pl.ntile, g1 = std::min(pl.total, g0 + pl.ntile);
      layout_unit(pl, g0, g1, pw, ul);
      t = wt;
      t.segs = ul.segs.data();
      t.nsegs = static_cast<int64_t>(ul.segs.size());
      t.ntiles = g1 - g0;
      t.plane_rows = ul.planes.data();
      t.n0 = ul.n0;
      t.nimg = static_cast<int64_t>(ul.planes.size() / 3);
    };
    const size_t v_elems = static_cast<size_t>(kTiles * pl.tp * pr.cin), m_elems = static_cast<size_t>(kTiles * kp * pl.tp);
    const int64_t room = static_cast<int64_t>(workspace_limit() / sizeof(T)) - pl.u_elems;
    const int unit_threads = static_cast<int>(std::min<int64_t>(nt, std::max<int64_t>(1, room / pl.unit_elems)));
    if (pl.units >= 3 * static_cast<int64_t>(unit_threads) && unit_threads > 1) {
      parallel_for(pl.units, unit_threads, [&](int64_t a, int64_t b) {
        Buffer<T> v(v_elems), m(m_elems), plane(static_cast<size_t>(pl.plane_elems));
        UnitLayout ul;
        WinoTiles<T> t;
        for (int64_t unit = a; unit < b; ++unit) {
          setup(unit, ul, t);
          input(t, 0, pr.cin, plane.get(), v.get());
          gemms(v.get(), m.get(), 0, kTiles);
          output(t, 0, kout, m.get());
        }
      });
      continue;
    }
    Buffer<T> v(v_elems), m(m_elems);
    UnitLayout ul;
    WinoTiles<T> t;
    for (int64_t unit = 0; unit < pl.units; ++unit) {
      setup(unit, ul, t);
      parallel_for(pr.cin, nt, [&](int64_t c0, int64_t c1) {
        input(t, c0, c1, scratch<T>(0, static_cast<size_t>(pl.plane_elems)), v.get());
      });
      parallel_for(kTiles, nt, [&](int64_t x0, int64_t x1) { gemms(v.get(), m.get(), x0, x1); });
      parallel_for(kout, nt, [&](int64_t a, int64_t b) { output(t, a, b, m.get()); });
    }
  }
  return true;
}

}  // namespace

bool winograd_applies(const Conv2dParams& p, ConvDir dir) {
  if (p.r != 3 || p.s != 3 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  return dir == ConvDir::fwd || (dir == ConvDir::bwd_data && p.mode == PadMode::zeros);
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
bool winograd_preferred(const Conv2dParams& p, ConvDir dir) {
  if (!winograd_applies(p, dir)) return false;
  const bool fwd = dir == ConvDir::fwd;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  const int64_t cin = fwd ? cg : kg, cout = fwd ? kg : cg;
  const int64_t tiles = p.n * cdiv(fwd ? p.oh : p.h, 4) * cdiv(fwd ? p.ow : p.w, 4);
  return cin <= 512 && std::min(cin, cout) >= 8 && (cout >= 32 || 2 * cout >= cin) && tiles >= 32;
}

template <class T>
bool conv2d_fwd_winograd(const ConvArgs<T>& a, int nt) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  for (int64_t g = 0; g < p.groups; ++g) {
    Problem<T> pr{};
    pr.n = p.n, pr.cin = cg, pr.kout = kg, pr.hout = p.oh, pr.wout = p.ow, pr.hin = p.h, pr.win = p.w;
    pr.top = p.pad_t, pr.left = p.pad_l;
    pr.row_map = a.row_map, pr.col_map = a.col_map;
    pr.hp = p.h + p.pad_t + p.pad_b, pr.wp = p.w + p.pad_l + p.pad_r;
    pr.x = a.x + g * cg * p.h * p.w, pr.x_img = p.c * p.h * p.w, pr.x_ch = p.h * p.w;
    pr.y = a.y + g * kg * p.oh * p.ow, pr.y_img = p.k * p.oh * p.ow, pr.y_ch = p.oh * p.ow;
    pr.bias = a.b ? a.b + g * kg : nullptr;
    pr.w = a.w + g * kg * cg * 9, pr.so = cg * 9, pr.si = 9, pr.flip = false;
    if (!run(pr, nt)) return false;  // the same plan for every group: fails on the first
  }
  return true;
}

// dx = dy correlated with the flipped filters, channels swapped, padding 2 - pad (stride 1).
template <class T>
bool conv2d_bwd_data_winograd(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt) {
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

template bool conv2d_fwd_winograd<float>(const ConvArgs<float>&, int);
template bool conv2d_fwd_winograd<double>(const ConvArgs<double>&, int);
template bool conv2d_bwd_data_winograd<float>(const Conv2dParams&, const float*, const float*, float*, int);
template bool conv2d_bwd_data_winograd<double>(const Conv2dParams&, const double*, const double*, double*, int);

}  // namespace pyconv
