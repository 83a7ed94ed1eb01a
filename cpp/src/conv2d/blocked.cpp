// Driver of the register-blocked direct kernels (conv2d_blocked_impl.h): stride-1 forward in every
// padding mode, the input gradient with zero padding, and the weight gradient.
#include <algorithm>
#include <vector>

#include "conv2d/impl.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {

namespace {

// Tile shape for an out_h x out_w output read from sh x sw planes: nv = 1..4 vectors of pixels
// along the rows or along the flattened padded rows (whichever wastes fewer lanes) and kb
// filters, kb * nv accumulators in registers. Each (channel, tap) step issues nv + kb loads
// (two per cycle) for kb * nv FMAs (two per cycle, four cycles latency: at least 8 independent
// accumulators keep both units busy); the score is the useful share of the FMA throughput.
template <class T>
void plan_blocked(BlockedConv<T>& c, Isa isa) {
  const int64_t L = lanes<T>(isa);
  double best = -1;
  for (int nv = 1; nv <= 4; ++nv) {
    const int64_t P = nv * L, kbmax = kBlockedMaxKb<T>(isa) / nv;
    const int64_t nkb = ceil_div(c.cout, kbmax), kb = ceil_div(c.cout, nkb);
    const double row = static_cast<double>(c.out_h * c.out_w) / static_cast<double>(c.out_h * ceil_div(c.out_w, P) * P);
    const double flat = static_cast<double>(c.out_h * c.out_w) / static_cast<double>(ceil_div(c.out_h * c.sw, P) * P);
    const double acc = static_cast<double>(kb * nv);
    const double score = std::max(row, flat) * static_cast<double>(c.cout) / static_cast<double>(nkb * kb) *
                         std::min(1.0, acc / static_cast<double>(kb + nv)) * std::min(1.0, acc / 8.0);
    if (score > best + 1e-9) {
      best = score;
      c.nv = nv;
      c.flat = flat > row;
      c.nkb = nkb;
      c.kb = kb;
    }
  }
  c.ps = (c.sh * c.sw + c.nv * L + (c.s - 1) * c.dw + 15) / 16 * 16;
}

// The sizes of the blocked problem of a forward or input-gradient call (no pointers yet). The
// forward reads the input through its padding maps; the input gradient correlates dy, set in a
// zero frame of (R-1)*dil rows/columns and cropped by the padding, with the flipped filters.
template <class T>
BlockedConv<T> blocked_sizes(const Conv2dParams& p, ConvDir dir) {
  BlockedConv<T> c{};
  const bool fwd = dir == ConvDir::fwd;
  c.groups = p.groups;
  c.cin = (fwd ? p.c : p.k) / p.groups;
  c.cout = (fwd ? p.k : p.c) / p.groups;
  c.r = p.r, c.s = p.s, c.dh = p.dil_h, c.dw = p.dil_w;
  if (fwd) {
    c.src_h = p.h, c.src_w = p.w;
    c.col_off = p.pad_l, c.col_lo = p.pad_l, c.col_hi = p.pad_l + p.w;
    c.sh = p.h + p.pad_t + p.pad_b, c.sw = p.w + p.pad_l + p.pad_r;
    c.out_h = p.oh, c.out_w = p.ow;
  } else {
    c.src_h = p.oh, c.src_w = p.ow;
    c.sh = p.h + (p.r - 1) * p.dil_h, c.sw = p.w + (p.s - 1) * p.dil_w;
    const int64_t left = p.pad_l - (p.s - 1) * p.dil_w;
    c.col_off = -left;
    c.col_lo = std::clamp<int64_t>(-left, 0, c.sw);
    c.col_hi = std::clamp<int64_t>(p.ow - left, c.col_lo, c.sw);
    c.out_h = p.h, c.out_w = p.w;
  }
  return c;
}

// Weights in the blocked layout: wpk[((g*nkb + kbi)*cin + ci)*rs + t][kk]; the gradient of the
// input correlates with the filters flipped and input/output channels swapped.
template <class T>
void pack_blocked_weights(const BlockedConv<T>& c, const T* w, bool flip, T* wpk, int nt) {
  const int64_t rs = c.r * c.s, blocks = c.groups * c.nkb;
  parallel_for(blocks, nt, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t g = b / c.nkb, kbi = b % c.nkb;
      for (int64_t ci = 0; ci < c.cin; ++ci)
        for (int64_t t = 0; t < rs; ++t) {
          T* o = wpk + ((b * c.cin + ci) * rs + t) * c.kb;
          for (int64_t kk = 0; kk < c.kb; ++kk) {
            const int64_t co = kbi * c.kb + kk;
            if (co >= c.cout) o[kk] = T(0);
            else if (!flip) o[kk] = w[((g * c.cout + co) * c.cin + ci) * rs + t];
            else o[kk] = w[((g * c.cin + ci) * c.cout + co) * rs + (rs - 1 - t)];
          }
        }
    }
  });
}

// Runs the blocked kernel; false (nothing done) when its padded planes exceed the workspace.
template <class T>
bool run_blocked(BlockedConv<T>& c, int64_t n, const T* w, bool flip, int nt) {
  const Isa isa = active_isa();
  plan_blocked(c, isa);
  if (static_cast<size_t>(c.cin * c.ps) * sizeof(T) > workspace_limit()) return false;
  Buffer<T> wpk(static_cast<size_t>(c.groups * c.nkb * c.cin * c.r * c.s * c.kb));
  pack_blocked_weights(c, w, flip, wpk.get(), nt);
  c.wpk = wpk.get();
  std::vector<int64_t> taps(static_cast<size_t>(c.cin * c.r * c.s));
  for (int64_t ci = 0, t = 0; ci < c.cin; ++ci)
    for (int64_t r = 0; r < c.r; ++r)
      for (int64_t s = 0; s < c.s; ++s) taps[static_cast<size_t>(t++)] = ci * c.ps + r * c.dh * c.sw + s * c.dw;
  c.taps = taps.data();
  auto* fn = kernel_table<T>().conv2d_blocked[static_cast<int>(isa)];
  parallel_for(n * c.groups * c.nkb, nt, [&](int64_t i0, int64_t i1) {
    fn(c, i0, i1, scratch<T>(0, static_cast<size_t>(c.cin * c.ps)));
  });
  return true;
}

// The weight gradient's plan: tiles, shifted-plane sizes, and how many images' planes (and
// transposed gradients) the workspace holds at once (0: not one).
template <class T>
int64_t plan_wgrad(const Conv2dParams& p, Isa isa, BlockedWgrad<T>& g, int64_t& image, int64_t& transposed) {
  const int64_t L = lanes<T>(isa), sz = static_cast<int64_t>(sizeof(T));
  const int64_t sh = p.h + p.pad_t + p.pad_b;
  g.groups = p.groups, g.cin = p.c / p.groups, g.cout = p.k / p.groups;
  g.r = p.r, g.s = p.s, g.dh = p.dil_h, g.dw = p.dil_w;
  g.pss = (sh * p.ow + L + 15) / 16 * 16;
  g.ps = g.pss * p.s;
  g.oh = p.oh, g.ow = p.ow;
  g.by_filter = wgrad_by_filter(p);
  g.kp = ceil_div(g.cout, L) * L;
  g.nvk = isa == Isa::avx512 ? 2 : 1;
  g.nkb = g.by_filter ? ceil_div(g.kp, g.nvk * L) : ceil_div(g.cout, kWgradMaxKb(isa, static_cast<int>(p.s)));
  g.kb = ceil_div(g.cout, g.nkb);
  image = p.c * g.ps * sz;                                // shifted planes of one image
  transposed = g.by_filter ? p.oh * p.ow * g.kp * sz : 0;  // its transposed gradient
  return static_cast<int64_t>(workspace_limit()) / (image + transposed);
}

}  // namespace

// The forward of every padding mode and, zero padding only, the gradient of the input, stride 1;
// the weight gradient: stride 1, at most kWgradMaxS taps per row, not first layers (C <= 4),
// whose own kernel pads every input plane once and is faster there (benchmarks/RESULTS.md,
// "Algorithm selection").
const char* blocked_guard(const Conv2dParams& p, ConvDir dir) {
  if (p.stride_h != 1 || p.stride_w != 1) return "needs stride 1";
  if (p.c / p.groups < 2) return "needs >= 2 input channels per group";
  if (dir == ConvDir::bwd_weight) {
    if (p.s > kWgradMaxS) return "the weight gradient needs a kernel width <= 7";
    if (p.groups == 1 && p.c <= 4) return "first layers (C <= 4) take the first-layer weight-gradient kernel";
    return nullptr;
  }
  if (dir == ConvDir::bwd_data && p.mode != PadMode::zeros) return "the input gradient needs zero padding";
  return nullptr;
}

const char* blocked_fit(const Conv2dParams& p, ConvDir dir, size_t elem, int) {
  const Isa isa = active_isa();
  if (dir == ConvDir::bwd_weight) {
    int64_t image, transposed;
    const bool ok = elem == 8 ? [&] { BlockedWgrad<double> g{}; return plan_wgrad(p, isa, g, image, transposed) >= 1; }()
                              : [&] { BlockedWgrad<float> g{}; return plan_wgrad(p, isa, g, image, transposed) >= 1; }();
    return ok ? nullptr : "one image's shifted input planes exceed the workspace limit";
  }
  auto fits = [&](auto c) {
    plan_blocked(c, isa);
    return static_cast<size_t>(c.cin * c.ps) * elem <= workspace_limit();
  };
  const bool ok = elem == 8 ? fits(blocked_sizes<double>(p, dir)) : fits(blocked_sizes<float>(p, dir));
  return ok ? nullptr : "its padded planes exceed the workspace limit";
}

// Its by-filter tiles (3x3, one group, enough filters to fill the vectors over filters), while
// one image's transposed gradient fits in L2 (every input channel's tiles read all of it).
bool wgrad_by_filter(const Conv2dParams& p) {
  return p.r == 3 && p.s == 3 && p.groups == 1 && p.c >= 8 && p.k >= 32 &&
         p.oh * p.ow * (p.k + 15) / 16 * 16 * 4 <= (int64_t{1} << 20);
}

template <class T>
bool blocked_fwd(ConvCall<T>& k) {
  const Conv2dParams& p = k.p;
  BlockedConv<T> c = blocked_sizes<T>(p, ConvDir::fwd);
  c.src = k.a.x;
  c.row_map = k.maps.row.data(), c.col_map = k.maps.col.data();
  c.out = k.a.y, c.bias = k.a.b;
  return run_blocked(c, p.n, k.a.w, false, k.nt);
}

template <class T>
bool blocked_bwd_data(ConvCall<T>& k) {
  const Conv2dParams& p = k.p;
  BlockedConv<T> c = blocked_sizes<T>(p, ConvDir::bwd_data);
  c.src = k.a.dy;
  const int64_t top = p.pad_t - (p.r - 1) * p.dil_h, left = p.pad_l - (p.s - 1) * p.dil_w;
  SmallVec rows(c.sh), cols(c.sw);
  for (int64_t u = 0; u < c.sh; ++u) rows[u] = u + top >= 0 && u + top < p.oh ? u + top : -1;
  for (int64_t v = 0; v < c.sw; ++v) cols[v] = v + left >= 0 && v + left < p.ow ? v + left : -1;
  c.row_map = rows.data(), c.col_map = cols.data();
  c.out = k.a.dx, c.bias = nullptr;
  return run_blocked(c, p.n, k.a.w, true, k.nt);
}

// Gathers the shifted input planes of as many images at a time as the workspace holds and as
// keep them and their gradient planes within 1.5 MiB, in L2 from the gather to the last tile
// that reads them; then accumulates each chunk into dw in image order.
template <class T>
bool blocked_bwd_weight(ConvCall<T>& k) {
  const Conv2dParams& p = k.p;
  const T* dy = k.a.dy;
  T* dw = k.a.dw;
  const int nt = k.nt;
  const Isa isa = active_isa();
  const int64_t L = lanes<T>(isa);
  const int64_t sz = static_cast<int64_t>(sizeof(T)), ohw = p.oh * p.ow;
  BlockedConv<T> c = blocked_sizes<T>(p, ConvDir::fwd);
  c.src = k.a.x;
  c.row_map = k.maps.row.data(), c.col_map = k.maps.col.data();
  BlockedWgrad<T> g{};
  int64_t image, transposed;
  const int64_t budget = plan_wgrad(p, isa, g, image, transposed);
  if (budget < 1) return false;
  g.dy = dy, g.dy_end = dy + p.n * p.k * ohw;
  g.dwt = dw;
  const int64_t cached = std::max<int64_t>(1, (int64_t{3} << 19) / (image + std::max(transposed, p.k * ohw * sz)));
  const int64_t chunk = std::min({budget, cached, p.n});
  Buffer<T> planes(static_cast<size_t>(chunk * image / sz));
  Buffer<T> dyt(static_cast<size_t>(chunk * transposed / sz));
  g.planes = planes.get();
  g.dyt = dyt.get();
  std::fill(dw, dw + p.k * g.cin * p.r * p.s, T(0));
  const KernelTable<T>& tbl = kernel_table<T>();
  auto* gather = tbl.conv2d_blocked_gather[static_cast<int>(isa)];
  auto* fn = tbl.conv2d_blocked_wgrad[static_cast<int>(isa)];
  const size_t part = static_cast<size_t>(p.r * g.kb * p.s * L);
  constexpr int64_t kTq = 64;  // transpose blocks of 64 pixels x every filter
  for (int64_t n0 = 0; n0 < p.n; n0 += chunk) {
    g.n0 = n0, g.n1 = std::min(p.n, n0 + chunk);
    const int64_t first = n0 * p.c, qb = ceil_div(ohw, kTq);
    parallel_for((g.n1 - n0) * p.c + (g.by_filter ? (g.n1 - n0) * qb : 0), nt, [&](int64_t q0, int64_t q1) {
      const int64_t planes_n = (g.n1 - n0) * p.c, imgs = g.n1 - n0;
      // Channel-major, as the weight-gradient items below: a thread gathers the planes it reads.
      for (int64_t j = q0; j < std::min(q1, planes_n); ++j) {
        const int64_t pl = j % imgs * p.c + j / imgs;
        gather(c, g, first + pl, first + pl + 1, planes.get() + pl * g.ps, scratch<T>(0, static_cast<size_t>(c.sw)));
      }
      for (int64_t b = std::max(q0, planes_n) - planes_n; b < q1 - planes_n; ++b) {
        const int64_t n = n0 + b / qb, qa = b % qb * kTq, qe = std::min(ohw, qa + kTq);
        T* out = dyt.get() + (n - n0) * ohw * g.kp;
        for (int64_t q = qa; q < qe; ++q) {
          for (int64_t kk = 0; kk < p.k; ++kk) out[q * g.kp + kk] = dy[(n * p.k + kk) * ohw + q];
          for (int64_t kk = p.k; kk < g.kp; ++kk) out[q * g.kp + kk] = T(0);
        }
      }
    });
    const int64_t items = g.by_filter ? g.nkb * g.cin : g.groups * g.nkb * g.cin;
    parallel_for(items, nt, [&](int64_t i0, int64_t i1) { fn(g, i0, i1, scratch<T>(1, part)); });
  }
  return true;
}

#define PYCONV_INSTANTIATE(T)                         \
  template bool blocked_fwd<T>(ConvCall<T>&);        \
  template bool blocked_bwd_data<T>(ConvCall<T>&);   \
  template bool blocked_bwd_weight<T>(ConvCall<T>&);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
