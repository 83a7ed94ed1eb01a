// conv2d operator: validation, padding maps, algorithm choice, workspace and threads.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "pyconv/conv2d.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "sizes.h"
#include "conv2d/winograd.h"
#include "gemm/gemm_driver.h"
#include "workspace.h"

namespace pyconv {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("conv2d: " + msg); }

// The message is built only on failure: validation runs on every call, tiny ones included.
#define REQUIRE(ok, msg) \
  do {                   \
    if (!(ok)) fail(msg); \
  } while (0)

int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// int64 entries, inline up to kInline: the maps of lecture-sized calls cost no heap allocation.
class SmallVec {
 public:
  explicit SmallVec(int64_t n) : heap_(n > kInline ? new int64_t[static_cast<size_t>(n)] : nullptr) {}
  SmallVec(const SmallVec&) = delete;
  SmallVec& operator=(const SmallVec&) = delete;
  int64_t* data() { return heap_ ? heap_.get() : inline_; }
  const int64_t* data() const { return heap_ ? heap_.get() : inline_; }
  int64_t& operator[](int64_t i) { return data()[i]; }
  int64_t operator[](int64_t i) const { return data()[i]; }

 private:
  static constexpr int64_t kInline = 64;
  int64_t inline_[kInline];
  std::unique_ptr<int64_t[]> heap_;
};

// Padded coordinate -> input coordinate (or -1 for a zero) for one dimension, into m.
void pad_map(int64_t size, int64_t before, int64_t after, PadMode mode, SmallVec& m) {
  for (int64_t q = 0; q < size + before + after; ++q) {
    int64_t i = q - before;
    if (i < 0 || i >= size) {
      switch (mode) {
        case PadMode::zeros: i = -1; break;
        case PadMode::reflect: i = i < 0 ? -i : 2 * (size - 1) - i; break;
        case PadMode::replicate: i = i < 0 ? 0 : size - 1; break;
        case PadMode::circular: i = ((i % size) + size) % size; break;
      }
    }
    m[q] = i;
  }
}

// The maps and interior column ranges every kernel uses (see ConvArgs).
struct ConvMaps {
  SmallVec row, col, lo, hi;
  explicit ConvMaps(const Conv2dParams& p)
      : row(p.h + p.pad_t + p.pad_b), col(p.w + p.pad_l + p.pad_r), lo(p.s), hi(p.s) {
    pad_map(p.h, p.pad_t, p.pad_b, p.mode, row);
    pad_map(p.w, p.pad_l, p.pad_r, p.mode, col);
    for (int64_t s = 0; s < p.s; ++s) {
      const int64_t off = s * p.dil_w - p.pad_l;  // input column = ow*stride_w + off
      const int64_t l = std::clamp<int64_t>(ceil_div(-off, p.stride_w), 0, p.ow);
      const int64_t h = std::clamp<int64_t>(floor_div(p.w - 1 - off, p.stride_w) + 1, l, p.ow);
      lo[s] = l;
      hi[s] = h;
    }
  }
  template <class T>
  ConvArgs<T> args(const Conv2dParams& p) const {
    ConvArgs<T> a{};
    a.p = &p;
    a.row_map = row.data();
    a.col_map = col.data();
    a.col_lo = lo.data();
    a.col_hi = hi.data();
    return a;
  }
};

// Multiply-adds of one direction (all three do the same number), saturating: only a thread
// count is derived from it.
int64_t macs(const Conv2dParams& p) {
  const double m = static_cast<double>(p.n * p.k * p.oh * p.ow) * static_cast<double>((p.c / p.groups) * p.r * p.s);
  return m > 1e18 ? int64_t{1000000000000000000} : static_cast<int64_t>(m);
}

bool is_pointwise(const Conv2dParams& p) {
  return p.r == 1 && p.s == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_t == 0 &&
         p.pad_b == 0 && p.pad_l == 0 && p.pad_r == 0;
}

// The register-blocked stride-1 path of the direct algorithm (conv2d_blocked_impl.h): the
// forward of every padding mode and, zero padding only, the gradient of the input.
bool blocked_applies(const Conv2dParams& p, ConvDir dir) {
  if (p.stride_h != 1 || p.stride_w != 1 || p.c / p.groups < 2 || dir == ConvDir::bwd_weight) return false;
  return dir == ConvDir::fwd || p.mode == PadMode::zeros;
}

// Tile shape for an out_h x out_w output read from sh x sw planes: nv = 1..4 vectors of pixels
// along the rows or along the flattened padded rows (whichever wastes fewer lanes) and kb
// filters, kb * nv accumulators in registers. Each (channel, tap) step issues nv + kb loads
// (two per cycle) for kb * nv FMAs (two per cycle, four cycles latency: at least 8 independent
// accumulators keep both units busy); the score is the useful share of the FMA throughput.
template <class T>
void plan_blocked(BlockedConv<T>& c, Isa isa) {
  const int64_t L = (isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16) / static_cast<int64_t>(sizeof(T));
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

// The input x as the source of padded planes (through the padding maps).
template <class T>
BlockedConv<T> input_planes(const Conv2dParams& p, const ConvMaps& maps, const T* x) {
  BlockedConv<T> c{};
  c.groups = p.groups;
  c.cin = p.c / p.groups;
  c.src = x, c.src_h = p.h, c.src_w = p.w;
  c.row_map = maps.row.data(), c.col_map = maps.col.data();
  c.col_off = p.pad_l, c.col_lo = p.pad_l, c.col_hi = p.pad_l + p.w;
  c.sh = p.h + p.pad_t + p.pad_b, c.sw = p.w + p.pad_l + p.pad_r;
  return c;
}

template <class T>
bool blocked_fwd(const Conv2dParams& p, const ConvMaps& maps, const T* x, const T* w, const T* b, T* y, int nt) {
  BlockedConv<T> c = input_planes(p, maps, x);
  c.cout = p.k / p.groups;
  c.r = p.r, c.s = p.s, c.dh = p.dil_h, c.dw = p.dil_w;
  c.out_h = p.oh, c.out_w = p.ow, c.out = y, c.bias = b;
  return run_blocked(c, p.n, w, false, nt);
}

// dx = the correlation of dy, set in a zero frame of (R-1)*dil rows/columns and cropped by the
// padding, with the flipped filters (stride 1, zero padding).
template <class T>
bool blocked_bwd_data(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt) {
  BlockedConv<T> c{};
  c.groups = p.groups;
  c.cin = p.k / p.groups;
  c.cout = p.c / p.groups;
  c.r = p.r, c.s = p.s, c.dh = p.dil_h, c.dw = p.dil_w;
  c.src = dy, c.src_h = p.oh, c.src_w = p.ow;
  c.sh = p.h + (p.r - 1) * p.dil_h, c.sw = p.w + (p.s - 1) * p.dil_w;
  const int64_t top = p.pad_t - (p.r - 1) * p.dil_h, left = p.pad_l - (p.s - 1) * p.dil_w;
  SmallVec rows(c.sh), cols(c.sw);
  for (int64_t u = 0; u < c.sh; ++u) rows[u] = u + top >= 0 && u + top < p.oh ? u + top : -1;
  for (int64_t v = 0; v < c.sw; ++v) cols[v] = v + left >= 0 && v + left < p.ow ? v + left : -1;
  c.row_map = rows.data(), c.col_map = cols.data();
  c.col_off = -left;
  c.col_lo = std::clamp<int64_t>(-left, 0, c.sw);
  c.col_hi = std::clamp<int64_t>(p.ow - left, c.col_lo, c.sw);
  c.out_h = p.h, c.out_w = p.w, c.out = dx, c.bias = nullptr;
  return run_blocked(c, p.n, w, true, nt);
}

// The weight gradient's register-blocked path: stride 1, at most kWgradMaxS taps per row; not
// first layers (C <= 4), whose own kernel pads every input plane once and is faster there
// (2 threads: 128x3x32x32, 32 3x3 filters 1.67 vs 2.45 ms; 8x3x224x224, 64 7x7: 27.5 vs 39.6).
bool blocked_wgrad_applies(const Conv2dParams& p) {
  return p.stride_h == 1 && p.stride_w == 1 && p.c / p.groups >= 2 && p.s <= kWgradMaxS && !(p.groups == 1 && p.c <= 4);
}

// Its by-filter tiles (3x3, one group, enough filters to fill the vectors over filters), while
// one image's transposed gradient fits in L2 (every input channel's tiles read all of it).
bool wgrad_by_filter(const Conv2dParams& p) {
  return p.r == 3 && p.s == 3 && p.groups == 1 && p.c >= 8 && p.k >= 32 &&
         p.oh * p.ow * (p.k + 15) / 16 * 16 * 4 <= (int64_t{1} << 20);
}

// Gathers the shifted input planes of as many images at a time as the workspace holds and as
// keep them and their gradient planes within 1.5 MiB, in L2 from the gather to the last tile
// that reads them; then accumulates each chunk into dw in image order.
template <class T>
bool blocked_bwd_weight(const Conv2dParams& p, const ConvMaps& maps, const T* x, const T* dy, T* dw, int nt) {
  const Isa isa = active_isa();
  const int64_t L = (isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16) / static_cast<int64_t>(sizeof(T));
  const int64_t sz = static_cast<int64_t>(sizeof(T)), ohw = p.oh * p.ow;
  const BlockedConv<T> c = input_planes(p, maps, x);
  BlockedWgrad<T> g{};
  g.groups = p.groups, g.cin = p.c / p.groups, g.cout = p.k / p.groups;
  g.r = p.r, g.s = p.s, g.dh = p.dil_h, g.dw = p.dil_w;
  g.pss = (c.sh * p.ow + L + 15) / 16 * 16;
  g.ps = g.pss * p.s;
  g.dy = dy, g.dy_end = dy + p.n * p.k * ohw, g.oh = p.oh, g.ow = p.ow;
  g.dwt = dw;
  g.by_filter = wgrad_by_filter(p);
  g.kp = ceil_div(g.cout, L) * L;
  g.nvk = isa == Isa::avx512 ? 2 : 1;
  g.nkb = g.by_filter ? ceil_div(g.kp, g.nvk * L) : ceil_div(g.cout, kWgradMaxKb(isa, static_cast<int>(p.s)));
  g.kb = ceil_div(g.cout, g.nkb);
  const int64_t image = p.c * g.ps * sz;                     // shifted planes of one image
  const int64_t transposed = g.by_filter ? ohw * g.kp * sz : 0;  // its transposed gradient
  const int64_t budget = static_cast<int64_t>(workspace_limit()) / (image + transposed);
  if (budget < 1) return false;
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
          for (int64_t k = 0; k < p.k; ++k) out[q * g.kp + k] = dy[(n * p.k + k) * ohw + q];
          for (int64_t k = p.k; k < g.kp; ++k) out[q * g.kp + k] = T(0);
        }
      }
    });
    const int64_t items = g.by_filter ? g.nkb * g.cin : g.groups * g.nkb * g.cin;
    parallel_for(items, nt, [&](int64_t i0, int64_t i1) { fn(g, i0, i1, scratch<T>(1, part)); });
  }
  return true;
}

const char* algo_name(ConvAlgo a) {
  return a == ConvAlgo::direct ? "direct" : a == ConvAlgo::winograd ? "winograd_f4x4" : "im2col";
}
const char* dir_name(ConvDir d) {
  return d == ConvDir::fwd ? "fwd" : d == ConvDir::bwd_data ? "bwd_data" : "bwd_weight";
}

ConvAlgo resolve(const Conv2dParams& p, ConvDir dir, ConvAlgo algo) {
  if (algo == ConvAlgo::automatic) algo = conv2d_choose_algo(p, dir);
  const bool not_winograd = algo == ConvAlgo::winograd && !winograd_applies(p, dir);
  if (not_winograd) algo = ConvAlgo::im2col;
  if (verbose()) {
    const Isa isa = active_isa();
    std::string what = std::string("conv2d_") + dir_name(dir) + "_" + algo_name(algo) + "_" + isa_name(isa);
    if (not_winograd) what += " (winograd not applicable)";
    if (algo == ConvAlgo::winograd && p.stride_h * p.stride_w * p.dil_h * p.dil_w > 1) what += " (phases)";
    if (algo == ConvAlgo::direct && (dir == ConvDir::bwd_weight ? blocked_wgrad_applies(p) : blocked_applies(p, dir)))
      what += " (register-blocked)";
    if (algo == ConvAlgo::im2col) {
      const GemmTile& t = gemm_tile<float>(isa);
      what += std::string(is_pointwise(p) ? " (1x1: gemm only)" : "") + " + gemm_ukernel_" +
              s(t.mr) + "x" + s(t.nr) + "_" + isa_name(isa);
    }
    log_choice("conv2d", what.c_str());
  }
  return algo;
}

// The calling thread's scratch for a direct kernel (null when it needs none or the planes would
// exceed the workspace budget; the kernel then takes its general path).
template <class T>
ConvArgs<T> with_scratch(const ConvArgs<T>& a, const Conv2dParams& p) {
  ConvArgs<T> b = a;
  const int64_t n = conv2d_direct_ws_size(p);
  b.ws = n > 0 && static_cast<size_t>(n) * sizeof(T) <= workspace_limit() ? scratch<T>(0, static_cast<size_t>(n)) : nullptr;
  return b;
}

// Depthwise grad-input with one filter per channel, stride 1 and zero padding no wider than the
// kernel extent: the depthwise forward of dy with each filter flipped and padding extent - pad,
// whose output is exactly the input's size. One pass, where the general kernel copies dy into a
// zero frame and folds a padded gradient back through the maps (2 threads, 32x112x112, 3x3:
// 1.67x -> 2.17x torch at batch 1, 1.29x -> 1.67x at batch 8).
template <class T>
bool depthwise_bwd_data_as_fwd(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt) {
  const int64_t eh = (p.r - 1) * p.dil_h, ew = (p.s - 1) * p.dil_w;
  if (p.groups != p.c || p.k != p.c || p.stride_h != 1 || p.stride_w != 1 || p.mode != PadMode::zeros ||
      p.pad_t > eh || p.pad_b > eh || p.pad_l > ew || p.pad_r > ew)
    return false;
  Conv2dParams q = p;
  q.h = p.oh, q.w = p.ow;
  q.pad_t = eh - p.pad_t, q.pad_b = eh - p.pad_b, q.pad_l = ew - p.pad_l, q.pad_r = ew - p.pad_r;
  conv2d_validate(q);
  const int64_t ws = conv2d_direct_ws_size(q);
  if (q.oh != p.h || q.ow != p.w || static_cast<size_t>(ws) * sizeof(T) > workspace_limit()) return false;
  const int64_t rs = p.r * p.s;
  Buffer<T> flipped(static_cast<size_t>(p.c * rs));
  for (int64_t c = 0; c < p.c; ++c)
    for (int64_t t = 0; t < rs; ++t) flipped.get()[c * rs + t] = w[c * rs + rs - 1 - t];
  const ConvMaps maps(q);
  ConvArgs<T> a = maps.args<T>(q);
  a.x = dy;
  a.w = flipped.get();
  a.y = dx;
  auto* fn = kernel_table<T>().conv2d_fwd_direct[static_cast<int>(active_isa())];
  parallel_for(q.n * q.k, nt, [&](int64_t b0, int64_t b1) { fn(with_scratch(a, q), b0, b1); });
  return true;
}


// im2col tiling: output pixels per tile (as many as the workspace budget allows, at least one)
// and how many images may run at once, each with its own column buffer, within the budget.
// The tile depends on the shape only, never on the thread count, so neither does the order in
// which col2im or the weight gradient accumulate.
struct TilePlan {
  int64_t tile;
  int image_threads;
};

TilePlan plan_tiles(const Conv2dParams& p, size_t elem_size, int nt) {
  const int64_t rows = p.c / p.groups * p.r * p.s;
  const int64_t ohw = p.oh * p.ow;
  const int64_t budget = std::max<int64_t>(1, static_cast<int64_t>(workspace_limit() / elem_size));
  // At most ~4 MiB of columns per tile (at least 256 pixels): the GEMM writes them and col2im
  // reads them back while they are still in cache, instead of streaming a 64 MiB buffer.
  constexpr int64_t kCacheTileBytes = int64_t{4} << 20;
  const int64_t cached = std::max<int64_t>(256, kCacheTileBytes / static_cast<int64_t>(elem_size) / rows);
  int64_t t = std::max<int64_t>(1, std::min(budget, cached * rows) / rows);
  if (t >= 64) t = t / 64 * 64;
  t = std::min(t, ohw);
  const int64_t bufs = std::max<int64_t>(1, budget / (rows * t));
  const int image_threads = static_cast<int>(std::min<int64_t>({nt, bufs, std::max<int64_t>(p.n, 1)}));
  return {t, image_threads};
}

// Runs image(n, buf, tile, threads) for every image: whole images in parallel when the
// workspace budget has room for a column buffer per thread, else one image at a time with the
// threads inside im2col/GEMM. Both give identical results (the tile is the same).
// own_buf >= 0: no column tiles; whole images always run in parallel, each thread with a buffer
// of own_buf elements (pointwise: none; implicit im2col: a padded image).
template <class T, class F>
void for_each_image(const Conv2dParams& p, int nt, int64_t own_buf, F&& image) {
  TilePlan plan = plan_tiles(p, sizeof(T), nt);
  if (own_buf >= 0) plan.image_threads = static_cast<int>(std::min<int64_t>(nt, std::max<int64_t>(p.n, 1)));
  const size_t buf_size = static_cast<size_t>(own_buf >= 0 ? own_buf : p.c / p.groups * p.r * p.s * plan.tile);
  if (plan.image_threads > 1) {
    parallel_for(p.n, plan.image_threads, [&](int64_t n0, int64_t n1) {
      Buffer<T> buf(buf_size);
      for (int64_t n = n0; n < n1; ++n) image(n, buf.get(), plan.tile, 1);
    });
  } else {
    Buffer<T> buf(buf_size);
    for (int64_t n = 0; n < p.n; ++n) image(n, buf.get(), plan.tile, nt);
  }
}

// Implicit im2col gathers every tap of every output row from a copy of the image padded through
// the maps, the geometry below (no padding, same output): each gather is then one run, strided
// by the stride, with no edge cases, which matters when output rows are short. The copy is one
// pass over the image; the gathers read it R*S times. Used when `threads` copies fit the
// workspace budget.
struct PaddedImage {
  Conv2dParams p;
  ConvMaps maps;
  bool use;
  static Conv2dParams padded(Conv2dParams q) {
    q.h += q.pad_t + q.pad_b;
    q.w += q.pad_l + q.pad_r;
    q.pad_t = q.pad_b = q.pad_l = q.pad_r = 0;
    q.mode = PadMode::zeros;
    return q;
  }
  PaddedImage(const Conv2dParams& p0, size_t elem_size, int threads)
      : p(padded(p0)),
        maps(p),
        use(static_cast<double>(p.c) * static_cast<double>(p.h) * static_cast<double>(p.w) * threads *
                static_cast<double>(elem_size) <=
            static_cast<double>(workspace_limit())) {}
  int64_t size() const { return p.c * p.h * p.w; }
  // xp = image x (p0's geometry) padded through p0's maps, channels split over `threads` (at
  // batch 1 a serial copy would run before the parallel GEMM).
  template <class T>
  void fill(const Conv2dParams& p0, const ConvMaps& m0, const T* x, T* xp, int threads) const {
    parallel_for(p0.c, threads, [&](int64_t c0, int64_t c1) { fill_channels(p0, m0, x, xp, c0, c1); });
  }
  template <class T>
  void fill_channels(const Conv2dParams& p0, const ConvMaps& m0, const T* x, T* xp, int64_t c0, int64_t c1) const {
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t u = 0; u < p.h; ++u) {
        T* d = xp + (c * p.h + u) * p.w;
        const int64_t ih = m0.row[static_cast<size_t>(u)];
        if (ih < 0) {
          std::fill(d, d + p.w, T(0));
          continue;
        }
        const T* src = x + (c * p0.h + ih) * p0.w;
        for (int64_t v = 0; v < p.w; ++v) {
          if (v == p0.pad_l) {  // the interior maps to itself in every mode
            std::copy(src, src + p0.w, d + v);
            v += p0.w - 1;
            continue;
          }
          const int64_t iw = m0.col[static_cast<size_t>(v)];
          d[v] = iw < 0 ? T(0) : src[iw];
        }
      }
    }
  }
};

}  // namespace

int64_t conv2d_column_bytes(const Conv2dParams& p0, size_t elem_size, int threads) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  if (is_pointwise(p) || p.n == 0) return 0;
  const TilePlan plan = plan_tiles(p, elem_size, threads_for(macs(p), threads));
  const int64_t rows = p.c / p.groups * p.r * p.s;
  return rows * plan.tile * static_cast<int64_t>(elem_size) * std::max(plan.image_threads, 1);
}

void conv2d_validate(Conv2dParams& p) {
  REQUIRE(p.n >= 0, "batch size must be >= 0, got " + s(p.n));
  REQUIRE(p.c >= 1 && p.h >= 1 && p.w >= 1,
          "input channels, height and width must be >= 1, got C=" + s(p.c) + " H=" + s(p.h) + " W=" + s(p.w));
  REQUIRE(p.k >= 1 && p.r >= 1 && p.s >= 1,
          "weight sizes must be >= 1, got K=" + s(p.k) + " R=" + s(p.r) + " S=" + s(p.s));
  REQUIRE(p.groups >= 1, "groups must be >= 1, got " + s(p.groups));
  REQUIRE(p.c % p.groups == 0 && p.k % p.groups == 0,
          "groups=" + s(p.groups) + " must divide input channels " + s(p.c) + " and output channels " + s(p.k));
  REQUIRE(p.stride_h >= 1 && p.stride_w >= 1,
          "stride must be >= 1, got (" + s(p.stride_h) + ", " + s(p.stride_w) + ")");
  REQUIRE(p.dil_h >= 1 && p.dil_w >= 1, "dilation must be >= 1, got (" + s(p.dil_h) + ", " + s(p.dil_w) + ")");
  REQUIRE(p.pad_t >= 0 && p.pad_b >= 0 && p.pad_l >= 0 && p.pad_r >= 0, "padding must be >= 0");
  if (p.mode == PadMode::reflect)
    REQUIRE(p.pad_t < p.h && p.pad_b < p.h && p.pad_l < p.w && p.pad_r < p.w,
            "reflect padding must be smaller than the input size");
  if (p.mode == PadMode::circular)
    REQUIRE(p.pad_t <= p.h && p.pad_b <= p.h && p.pad_l <= p.w && p.pad_r <= p.w,
            "circular padding must not exceed the input size");
  checked_numel({p.n, p.c, p.h, p.w}, "input");
  checked_numel({p.k, p.c / p.groups, p.r, p.s}, "weight");
  const int64_t eh = checked_add(checked_mul(p.dil_h, p.r - 1, "dilation"), 1, "dilation");
  const int64_t ew = checked_add(checked_mul(p.dil_w, p.s - 1, "dilation"), 1, "dilation");
  const int64_t ph = checked_add(p.h, checked_add(p.pad_t, p.pad_b, "padding"), "padding");
  const int64_t pw = checked_add(p.w, checked_add(p.pad_l, p.pad_r, "padding"), "padding");
  REQUIRE(eh <= ph && ew <= pw, "kernel (" + s(eh) + ", " + s(ew) + ") is larger than the padded input (" +
                                    s(ph) + ", " + s(pw) + ")");
  p.oh = (ph - eh) / p.stride_h + 1;
  p.ow = (pw - ew) / p.stride_w + 1;
  checked_numel({p.n, p.k, p.oh, p.ow}, "output");
}

// "auto": 1x1 stride-1 unpadded convolutions are a plain GEMM on the input (no column copy).
// One input channel per group (depthwise; cg == 1) runs the direct kernels' depthwise path
// (padded planes, taps accumulated in registers) while the channel multiplier kg is small
// (bwd_data rebuilds a zero-stuffed dy plane per filter, so it keeps that only for kg <= 2).
// Otherwise implicit im2col + GEMM, unless a group has fewer than 4 filters (the GEMM's M cannot
// fill the micro-kernel; grouped layers).
// Measured 2026-11-26, 1 thread (the shared 2-core machine was loaded), AVX-512, float32,
// GFLOP/s fwd / bwd_data / bwd_weight, direct vs im2col:
//   shape (x; w; groups)                 direct              im2col
//   64x1x28x28;  6x1x5x5   (kg 6)         32 /  4 / 16         21 / 18 / 12
//   64x1x28x28;  32x1x3x3  (kg 32)        24 /  4 / 14         45 / 36 / 16
//   8x32x56x56;  64x1x3x3; g32 (kg 2)     26 /  8 / 24          7 /  8 /  3
//   8x64x56x56;  64x2x3x3; g32 (cg 2)     15 / 14 /  8          8 / 10 /  4
//   64x6x12x12;  16x6x5x5                  5 /  3 /  2         30 / 20 / 20
//   128x3x32x32; 32x3x3x3                  9 /  9 /  4         86 / 62 / 37
//   1x3x32x32;   6x3x5x5                   9 /  8 /  4         20 / 18 / 12
// and after the first-layer weight-gradient kernel (direct bwd_weight vs im2col bwd_weight):
//   128x3x32x32; 32x3x3x3 pad 1           77 vs 34       1x3x32x32; 10x3x5x5 pad 2   54 vs 16
//   8x3x224x224; 64x3x11x11 stride 4      22 vs 91 (element-wise loads: stays im2col)
// (2 threads, unloaded moments: 1x32x112x112 depthwise 3x3 direct 46 / 28 / 29 vs torch 30 / 28 / 32.)
ConvAlgo conv2d_choose_algo(const Conv2dParams& p, ConvDir dir) {
  // 3x3 stride 1, >= 32 tiles: Winograd (its error bound and measurements: winograd.cpp).
  if (winograd_preferred(p, dir)) return ConvAlgo::winograd;
  if (is_pointwise(p)) return ConvAlgo::im2col;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  if (cg == 1) {
    if (kg <= 2) return ConvAlgo::direct;
    if (kg <= 8 && dir != ConvDir::bwd_data) return ConvAlgo::direct;
    return ConvAlgo::im2col;
  }
  // First layers' weight gradient (C <= 4): the direct kernel's register-blocked dot products
  // beat packing a 27-row column matrix per image (strides 1-2; wider strides load element-wise).
  if (dir == ConvDir::bwd_weight && p.groups == 1 && p.c <= 4 && p.stride_w <= 2) return ConvAlgo::direct;
  // Stride 1: the register-blocked direct kernels (no packing at all) while their working set
  // stays in cache: the forward and grad-input read cin padded planes per tile; the weight
  // gradient tiles filters x taps over pixel vectors for few filters, or (3x3, >= 32 filters)
  // vectors of filters x 9 taps over a transposed gradient that must fit in L2.
  // Measured 1 thread (loaded machine), float32, GFLOP/s direct vs im2col (before the
  // vectorised im2col packing):
  //   64x16x16x16;  20x16x5x5 pad 2     fwd 168 / 53   bwd_data 160 / 38   bwd_weight 129 / 39
  //   64x20x8x8;    20x20x5x5 pad 2     fwd 108 / 33   bwd_data 108 / 27   bwd_weight  74 / 26
  //   128x32x32x32; 64x32x3x3 pad 1     fwd 165 / 101  bwd_data 152 / 69   bwd_weight 133 / 77
  //   128x64x16x16; 128x64x3x3 pad 1    fwd 144 / 135  bwd_data 149 / 125  bwd_weight  93 / 75
  //   8x64x56x56;   64x64x3x3 pad 1     fwd 156 / 130  bwd_data 157 / 131  bwd_weight 108 / 59
  //   1x64x56x56;   64x64x3x3 pad 2 dil 2  fwd 170 / 124  bwd_data 164 / 126  bwd_weight 167 / 98
  //   1x128x112x112; 128x128x3x3 pad 1  fwd 119 / 154  bwd_data 113 / 165  bwd_weight  33 / 78
  //   1x256x56x56;  256x256x3x3 pad 1   fwd 115 / 177  bwd_data 117 / 179  bwd_weight  55 / 98
  // (3x3 forward and grad-input mostly run Winograd, above; these rows matter for the rest.)
  // After the vectorised im2col packing (1 thread, CPU time, loaded machine), weight gradient
  // by pixel vectors vs im2col: the crossover is near 16 filters for 3x3 and between 32 and 48
  // for 5x5 (direct here before its L1 blocking, which took the 5x5 kg 20 row to 129):
  //   64x32x16x16, 3x3 pad 1:  kg 12  55 / 45   kg 16  48 / 50   kg 20  45 / 61   kg 24  53 / 69
  //   8x64x56x56,  3x3 pad 1:  kg 16  51 / 54   kg 20  55 / 67   kg 24  55 / 79
  //   64x16x16x16, 5x5 pad 2:  kg 20  85 / 60   kg 24  85 / 69   kg 32  84 / 75   kg 48  87 / 97
  //   16x32x32x32, 5x5 pad 2:  kg 32 106 / 87   kg 48  96 / 108
  // One image on a plane under 8x8 with > 64 channels in and out (ResNet's 512@7 at batch 1): the
  // GEMM beats the register-blocked kernels in all three directions (benchmarks/RESULTS.md,
  // "Real-model layers").
  const bool small_plane_one_image = p.n == 1 && p.oh * p.ow < 64 && cg > 64 && kg > 64;
  if (p.stride_h == 1 && p.stride_w == 1 && !small_plane_one_image) {
    if (dir == ConvDir::bwd_weight) {
      // By filter only for small batches: at batch 128 its per-chunk passes (two images fit L2)
      // lose to im2col (2 threads, quiet: CIFAR 32->64 23.2 vs 21.4 ms, 64->128 22.3 vs 18.6),
      // while dilated 64@56 wins at batch 1 and 8 (0.85 vs 1.15 ms, 6.2 vs 7.0).
      if (blocked_wgrad_applies(p) && ((wgrad_by_filter(p) && p.n <= 16) || kg <= (p.s >= 5 ? 32 : 16)))
        return ConvAlgo::direct;
    } else if (blocked_applies(p, dir)) {
      const bool fwd = dir == ConvDir::fwd;
      const int64_t cin = fwd ? cg : kg;
      const int64_t sh = fwd ? p.h + p.pad_t + p.pad_b : p.h + (p.r - 1) * p.dil_h;
      const int64_t sw = fwd ? p.w + p.pad_l + p.pad_r : p.w + (p.s - 1) * p.dil_w;
      if (cin <= 64 || cin * sh * sw * 4 <= (int64_t{256} << 10)) return ConvAlgo::direct;
    }
  }
  return kg >= 4 ? ConvAlgo::im2col : ConvAlgo::direct;
}

template <class T>
void conv2d_fwd(const Conv2dParams& p0, const T* x, const T* w, const T* b, T* y, ConvAlgo algo) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  algo = resolve(p, ConvDir::fwd, algo);
  const ConvMaps maps(p);
  ConvArgs<T> a = maps.args<T>(p);
  a.x = x;
  a.w = w;
  a.b = b;
  a.y = y;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const int nt = threads_for(macs(p), num_threads());
  if (algo == ConvAlgo::winograd && conv2d_fwd_winograd(a, nt)) return;
  if (algo == ConvAlgo::direct) {
    if (conv2d_dw_blocked_applies(p, ConvDir::fwd) &&
        conv2d_dw_blocked<T>(p, a.row_map, a.col_map, ConvDir::fwd, x, w, b, nullptr, y, nullptr, nullptr, nt))
      return;
    if (blocked_applies(p, ConvDir::fwd) && blocked_fwd(p, maps, x, w, b, y, nt)) return;
    auto* fn = tbl.conv2d_fwd_direct[isa];
    parallel_for(p.n * p.k, nt, [&](int64_t b0, int64_t b1) { fn(with_scratch(a, p), b0, b1); });
    return;
  }
  auto* pack = tbl.conv2d_pack_cols[isa];
  const int nr = gemm_tile<T>(static_cast<Isa>(isa)).nr;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
  const int64_t ohw = p.oh * p.ow, hw = p.h * p.w;
  const bool pointwise = is_pointwise(p);
  const PaddedImage pad(p, sizeof(T), static_cast<int>(std::min<int64_t>(nt, p.n)));
  ConvArgs<T> ap = pad.maps.args<T>(pad.p);
  // y[n][g*kg + i][q] = bias + sum_j w[g*kg + i][j] * cols[j][q]; the GEMM packs its B panels of
  // cols straight from x or its padded copy (implicit im2col: no column buffer); 1x1
  // convolutions use x as is.
  auto image = [&](int64_t n, T* xp, int64_t, int gemm_threads) {
    T* yn = y + n * p.k * ohw;
    if (b != nullptr)
      for (int64_t k = 0; k < p.k; ++k) std::fill(yn + k * ohw, yn + (k + 1) * ohw, b[k]);
    ConvArgs<T> src = a;
    int64_t sn = n;
    if (!pointwise && pad.use) {
      pad.fill(p, maps, x + n * p.c * hw, xp, gemm_threads);
      src = ap;
      src.x = xp;
      sn = 0;
    }
    for (int64_t g = 0; g < p.groups; ++g) {
      const T* wg = w + g * kg * rows;
      T* yg = yn + g * kg * ohw;
      if (pointwise) {
        gemm<T>(kg, ohw, rows, wg, rows, 1, x + (n * p.c + g * cg) * hw, hw, 1, yg, ohw, b != nullptr, gemm_threads);
        continue;
      }
      auto pack_b = [&](int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) { pack(src, sn, g, pc, kb, jc, nb, nr, bp); };
      gemm_custom_b<T>(static_cast<Isa>(isa), kg, ohw, rows, wg, rows, 1, pack_b, yg, ohw, b != nullptr, gemm_threads);
    }
  };
  for_each_image<T>(p, nt, !pointwise && pad.use ? pad.size() : 0, image);
}

template <class T>
void conv2d_bwd_data(const Conv2dParams& p0, const T* dy, const T* w, T* dx, ConvAlgo algo) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  algo = resolve(p, ConvDir::bwd_data, algo);
  const ConvMaps maps(p);
  ConvArgs<T> a = maps.args<T>(p);
  a.dy = dy;
  a.w = w;
  a.dx = dx;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const int nt = threads_for(macs(p), num_threads());
  if (algo == ConvAlgo::winograd && conv2d_bwd_data_winograd(p, dy, w, dx, nt)) return;
  if (algo == ConvAlgo::direct) {
    if (conv2d_dw_blocked_applies(p, ConvDir::bwd_data) &&
        conv2d_dw_blocked<T>(p, a.row_map, a.col_map, ConvDir::bwd_data, nullptr, w, nullptr, dy, nullptr, dx, nullptr, nt))
      return;
    if (blocked_applies(p, ConvDir::bwd_data) && blocked_bwd_data(p, dy, w, dx, nt)) return;
    if (depthwise_bwd_data_as_fwd(p, dy, w, dx, nt)) return;
    auto* fn = tbl.conv2d_bwd_data_direct[isa];
    parallel_for(p.n * p.c, nt, [&](int64_t b0, int64_t b1) { fn(with_scratch(a, p), b0, b1); });
    return;
  }
  auto* col2im = tbl.conv2d_col2im[isa];
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
  const int64_t ohw = p.oh * p.ow, hw = p.h * p.w;
  const bool pointwise = is_pointwise(p);
  // cols[j][q] = sum_i w[g*kg + i][j] * dy[n][g*kg + i][q], then col2im adds cols into dx.
  auto image = [&](int64_t n, T* cols, int64_t tile, int threads) {
    T* dxn = dx + n * p.c * hw;
    for (int64_t g = 0; g < p.groups; ++g) {
      const T* wg = w + g * kg * rows;
      const T* dyg = dy + (n * p.k + g * kg) * ohw;
      if (pointwise) {
        gemm<T>(rows, ohw, kg, wg, 1, rows, dyg, ohw, 1, dxn + g * cg * hw, hw, false, threads);
        continue;
      }
      std::fill(dxn + g * cg * hw, dxn + (g + 1) * cg * hw, T(0));
      for (int64_t q0 = 0; q0 < ohw; q0 += tile) {
        const int64_t q1 = std::min(ohw, q0 + tile);
        gemm<T>(rows, q1 - q0, kg, wg, 1, rows, dyg + q0, ohw, 1, cols, q1 - q0, false, threads);
        parallel_for(cg, threads, [&](int64_t c0, int64_t c1) { col2im(a, n, g, q0, q1, c0, c1, cols); });
      }
    }
  };
  const TilePlan plan = plan_tiles(p, sizeof(T), nt);
  if (pointwise || plan.image_threads > 1 || nt <= 1 || cg < 2) {
    for_each_image<T>(p, nt, pointwise ? 0 : -1, image);
    return;
  }
  // Fewer images than threads: one parallel region in which each thread owns a range of input
  // channels, i.e. its rows (cl, r, s) of the column matrix, for every image and tile: its own
  // GEMM rows and its own col2im, instead of two parallel regions per tile. Same tile, same
  // per-element sums as above, so the same bits.
  const int64_t rs = p.r * p.s, tile = plan.tile;
  parallel_for(cg, nt, [&](int64_t c0, int64_t c1) {
    Buffer<T> cols(static_cast<size_t>((c1 - c0) * rs * tile));
    for (int64_t n = 0; n < p.n; ++n) {
      T* dxn = dx + n * p.c * hw;
      for (int64_t g = 0; g < p.groups; ++g) {
        const T* wg = w + g * kg * rows + c0 * rs;  // columns [c0*rs, c1*rs) of the weight block
        const T* dyg = dy + (n * p.k + g * kg) * ohw;
        std::fill(dxn + (g * cg + c0) * hw, dxn + (g * cg + c1) * hw, T(0));
        for (int64_t q0 = 0; q0 < ohw; q0 += tile) {
          const int64_t q1 = std::min(ohw, q0 + tile), np = q1 - q0;
          gemm<T>((c1 - c0) * rs, np, kg, wg, 1, rows, dyg + q0, ohw, 1, cols.get(), np, false, 1);
          col2im(a, n, g, q0, q1, c0, c1, cols.get() - c0 * rs * np);  // col2im indexes rows from 0
        }
      }
    }
  });
}

template <class T>
void conv2d_bwd_weight(const Conv2dParams& p0, const T* x, const T* dy, T* dw, ConvAlgo algo) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  algo = resolve(p, ConvDir::bwd_weight, algo);
  const ConvMaps maps(p);
  ConvArgs<T> a = maps.args<T>(p);
  a.x = x;
  a.dy = dy;
  a.dw = dw;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const int nt = threads_for(macs(p), num_threads());
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
  if (algo == ConvAlgo::winograd && conv2d_bwd_weight_winograd(a, dy, dw, nt)) return;
  if (algo == ConvAlgo::direct) {
    if (conv2d_dw_blocked_applies(p, ConvDir::bwd_weight) &&
        conv2d_dw_blocked<T>(p, a.row_map, a.col_map, ConvDir::bwd_weight, x, nullptr, nullptr, dy, nullptr, nullptr, dw, nt))
      return;
    if (blocked_wgrad_applies(p) && blocked_bwd_weight(p, maps, x, dy, dw, nt)) return;
    auto* fn = tbl.conv2d_bwd_weight_direct[isa];
    parallel_for(p.k * cg, nt, [&](int64_t b0, int64_t b1) { fn(with_scratch(a, p), b0, b1); });
    return;
  }
  auto* pack = tbl.conv2d_pack_cols_t[isa];
  const int nr = gemm_tile<T>(static_cast<Isa>(isa)).nr;
  const int64_t ohw = p.oh * p.ow, hw = p.h * p.w;
  const bool pointwise = is_pointwise(p);
  const PaddedImage pad(p, sizeof(T), static_cast<int>(std::min<int64_t>(nt, p.n)));
  ConvArgs<T> ap = pad.maps.args<T>(pad.p);
  // dw[g*kg + i][j] += sum_q dy[n][g*kg + i][q] * cols[j][q], images in order, q in the GEMM's
  // fixed kc blocks; B (cols transposed) is packed straight from x or its padded copy (implicit
  // im2col).
  // 1x1 with fewer filters than channels: dw^T = x dy^T, so that the GEMM's M is the larger side
  // (threads split its rows, each packing all of the small B; with M = filters they split the
  // channels and ResNet's 256->64 at batch 1 scaled 1.44x from 1 to 2 threads), then transposed.
  const bool transposed = pointwise && kg < rows;
  auto images = [&](int64_t n0, int64_t n1, T* dwc, int threads) {
    std::fill(dwc, dwc + p.k * rows, T(0));
    Buffer<T> dwt(transposed ? static_cast<size_t>(p.k * rows) : 0);  // per group: [channel][filter]
    Buffer<T> xp(!pointwise && pad.use ? static_cast<size_t>(pad.size()) : 0);
    ConvArgs<T> src = a;
    for (int64_t n = n0; n < n1; ++n) {
      int64_t sn = n;
      if (xp.get() != nullptr) {
        pad.fill(p, maps, x + n * p.c * hw, xp.get(), threads);
        src = ap;
        src.x = xp.get();
        sn = 0;
      }
      for (int64_t g = 0; g < p.groups; ++g) {
        const T* dyg = dy + (n * p.k + g * kg) * ohw;
        T* dwg = dwc + g * kg * rows;
        if (transposed) {
          gemm<T>(rows, kg, ohw, x + (n * p.c + g * cg) * hw, hw, 1, dyg, 1, ohw, dwt.get() + g * kg * rows, kg,
                  n > n0, threads);
          continue;
        }
        if (pointwise) {  // the input is the column matrix
          gemm<T>(kg, rows, ohw, dyg, ohw, 1, x + (n * p.c + g * cg) * hw, 1, hw, dwg, rows, true, threads);
          continue;
        }
        auto pack_b = [&](int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) {
          pack(src, sn, g, pc, kb, jc, nb, nr, bp);
        };
        gemm_custom_b<T>(static_cast<Isa>(isa), kg, rows, ohw, dyg, ohw, 1, pack_b, dwg, rows, true, threads);
      }
    }
    if (transposed && n1 > n0)
      for (int64_t g = 0; g < p.groups; ++g)
        for (int64_t j = 0; j < rows; ++j)
          for (int64_t i = 0; i < kg; ++i) dwc[(g * kg + i) * rows + j] = dwt.get()[g * kg * rows + j * kg + i];
  };
  // Batches split into a fixed number of image chunks (from the shape, never the thread count)
  // whose partial gradients are added in chunk order: one parallel region for the whole call
  // instead of one per image, and serial GEMMs that are not too small to share. Used while the
  // partial gradients stay small next to the workspace budget.
  constexpr int64_t kMaxChunks = 8;
  const int64_t wsize = p.k * rows;
  const int64_t chunks = std::min<int64_t>(p.n, kMaxChunks);
  const bool split = chunks > 1 && static_cast<size_t>((chunks - 1) * wsize) * sizeof(T) <= workspace_limit() / 4;
  if (!split) {
    images(0, p.n, dw, nt);
    return;
  }
  Buffer<T> partial(static_cast<size_t>((chunks - 1) * wsize));
  parallel_for(chunks, nt, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* dwc = c == 0 ? dw : partial.get() + (c - 1) * wsize;
      images(p.n * c / chunks, p.n * (c + 1) / chunks, dwc, 1);
    }
  });
  parallel_for(wsize, nt, [&](int64_t i0, int64_t i1) {
    for (int64_t c = 1; c < chunks; ++c) {
      const T* src = partial.get() + (c - 1) * wsize;
      for (int64_t i = i0; i < i1; ++i) dw[i] += src[i];
    }
  });
}

#define PYCONV_INSTANTIATE(T)                                                                  \
  template void conv2d_fwd<T>(const Conv2dParams&, const T*, const T*, const T*, T*, ConvAlgo); \
  template void conv2d_bwd_data<T>(const Conv2dParams&, const T*, const T*, T*, ConvAlgo);     \
  template void conv2d_bwd_weight<T>(const Conv2dParams&, const T*, const T*, T*, ConvAlgo);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
