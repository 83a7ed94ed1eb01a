// Driver of implicit im2col + GEMM (conv2d_im2col_impl.h, gemm/): the forward and the weight
// gradient pack the GEMM's panels straight from the input, the input gradient goes through column
// tiles bounded by the workspace limit; 1x1 stride-1 layers are a plain GEMM on the input.
#include <algorithm>
#include <limits>

#include "conv2d/impl.h"
#include "gemm/gemm_driver.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {

namespace {

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

// Pointwise layers on small planes run the batch as one GEMM of n * ohw columns: the NR-wide
// panels then run across image boundaries instead of ending every image with a ragged panel (a
// 7x7 plane fills 49 of 64 columns on AVX-512), the weights are packed once instead of once per
// image, and the weight gradient sums over n * ohw instead of adding n products of depth ohw.
// Used while a batch's copy of the output (and, for the weight gradient, of both operands) stays
// within the workspace budget; the copies live in the calling thread's call buffers 0 and 1
// (reused between calls: no page faults per call).
bool merge_images(const Conv2dParams& p, int nr, size_t elem, ConvDir dir) {
  if (!is_pointwise(p) || p.n < 2) return false;
  const int64_t ohw = p.oh * p.ow;
  const int64_t per_image = p.n * ((ohw + nr - 1) / nr * nr), merged = (p.n * ohw + nr - 1) / nr * nr;
  // The weight gradient copies both operands: measured to win in the orientation that splits
  // well over threads (fewer filters than channels, transposed below) or on 7x7 planes with large
  // weights; at batch 2 or 13x13 with more filters than channels the copies cost more than they
  // save (benchmarks/RESULTS.md, "Pointwise layers on small planes").
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups;
  const bool small = dir == ConvDir::bwd_weight
                         ? p.n >= 4 && ohw <= 256 && (kg < cg || (ohw < 64 && kg * cg >= (int64_t{1} << 18)))
                         : merged * 10 <= per_image * 9;
  const int64_t copy = dir == ConvDir::bwd_weight ? p.n * ohw * (p.c + p.k) : p.n * ohw * std::max(p.c, p.k) / p.groups;
  return small && static_cast<size_t>(copy) * elem <= workspace_limit() / 2;
}

// pack_b of B(k, j) = src[(j / ohw) * img + k * ohw + j % ohw]: the images' planes side by side.
template <class T>
struct BatchColumns {
  const T* src;
  int64_t img, ohw;
  int nr;
  void operator()(int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) const {
    for (int64_t j0 = 0; j0 < nb; j0 += nr, bp += kb * nr) {
      const int64_t cols = std::min<int64_t>(nr, nb - j0);
      for (int64_t jj = 0; jj < cols;) {  // runs of columns within one image
        const int64_t j = jc + j0 + jj, q = j % ohw, len = std::min(cols - jj, ohw - q);
        const T* s = src + j / ohw * img + pc * ohw + q;
        for (int64_t k = 0; k < kb; ++k) std::copy(s + k * ohw, s + k * ohw + len, bp + k * nr + jj);
        jj += len;
      }
      for (int64_t k = 0; k < kb; ++k) std::fill(bp + k * nr + cols, bp + (k + 1) * nr, T(0));
    }
  }
};

// dst[n * img + i * ohw + q] = src[i * ld + n * ohw + q] (+ res at dst's index, then clamped):
// rows [0, rows) of a batch-wide GEMM result back into the images' planes.
template <class T>
void scatter_images(const T* src, int64_t rows, int64_t n, int64_t ohw, int64_t img, T* dst, const T* res, T lo, T hi,
                    int nt) {
  const int64_t ld = n * ohw;
  const bool clamp = lo > -std::numeric_limits<T>::infinity() || hi < std::numeric_limits<T>::infinity();
  parallel_for(rows * n, nt, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / n, m = r % n;
      const T* s = src + i * ld + m * ohw;
      T* d = dst + m * img + i * ohw;
      if (res == nullptr && !clamp) {
        std::copy(s, s + ohw, d);
        continue;
      }
      const T* rr = res != nullptr ? res + m * img + i * ohw : nullptr;
      for (int64_t q = 0; q < ohw; ++q) {
        T v = rr != nullptr ? s[q] + rr[q] : s[q];
        v = v < lo ? lo : v;
        d[q] = v > hi ? hi : v;
      }
    }
  });
}

// dst[i * n * ohw + m * ohw + q] = src[m * img + i * ohw + q] for rows i < rows: the batch's planes
// side by side, one row per channel.
template <class T>
void gather_images(const T* src, int64_t rows, int64_t n, int64_t ohw, int64_t img, T* dst, int nt) {
  parallel_for(rows * n, nt, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / n, m = r % n;
      const T* s = src + m * img + i * ohw;
      std::copy(s, s + ohw, dst + i * n * ohw + m * ohw);
    }
  });
}

}  // namespace

const char* pointwise_guard(const Conv2dParams& p, ConvDir) {
  return is_pointwise(p) ? nullptr : "needs a 1x1 kernel, stride 1 and no padding";
}

int64_t conv2d_column_bytes(const Conv2dParams& p0, size_t elem_size, int threads) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  if (is_pointwise(p) || p.n == 0) return 0;
  const TilePlan plan = plan_tiles(p, elem_size, threads_for(macs(p), threads));
  const int64_t rows = p.c / p.groups * p.r * p.s;
  return rows * plan.tile * static_cast<int64_t>(elem_size) * std::max(plan.image_threads, 1);
}

template <class T>
bool im2col_fwd(ConvCall<T>& call) {
  const Conv2dParams& p = call.p;
  const ConvMaps& maps = call.maps;
  const ConvArgs<T>& a = call.a;
  const int nt = call.nt;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const T* x = a.x;
  const T* w = a.w;
  const T* b = a.b;
  T* y = a.y;
  auto* pack = tbl.conv2d_pack_cols[isa];
  const int nr = gemm_tile<T>(static_cast<Isa>(isa)).nr;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
  const int64_t ohw = p.oh * p.ow, hw = p.h * p.w;
  const bool pointwise = is_pointwise(p);
  const PaddedImage pad(p, sizeof(T), static_cast<int>(std::min<int64_t>(nt, p.n)));
  ConvArgs<T> ap = pad.maps.args<T>(pad.p);
  // y[n][g*kg + i][q] = bias + sum_j w[g*kg + i][j] * cols[j][q]; the GEMM packs its B panels of
  // cols straight from x or its padded copy (implicit im2col: no column buffer); 1x1
  // convolutions use x as is. Bias and the fused epilogue (residual, clamp) go with the GEMM's
  // stores: no other pass over y.
  const Im2colWeights<T>* packed = call.packed && call.packed->isa == static_cast<Isa>(isa) ? call.packed : nullptr;
  const bool epi = b != nullptr || call.res != nullptr || call.lo > -std::numeric_limits<T>::infinity() ||
                   call.hi < std::numeric_limits<T>::infinity();
  if (merge_images(p, nr, sizeof(T), ConvDir::fwd)) {
    const int64_t cols = p.n * ohw;
    T* yb = call_buffer<T>(0, static_cast<size_t>(kg * cols));
    for (int64_t g = 0; g < p.groups; ++g) {
      GemmEpilogue<T> e;
      e.row_bias = b != nullptr ? b + g * kg : nullptr;
      if (call.res == nullptr) e.lo = call.lo, e.hi = call.hi;
      const T* pa = packed ? packed->data.data() + g * packed->group_elems : nullptr;
      gemm_custom_b<T>(static_cast<Isa>(isa), kg, cols, rows, w + g * kg * rows, rows, 1,
                       BatchColumns<T>{x + g * cg * hw, p.c * hw, ohw, nr}, yb, cols, false, nt, &e, pa);
      const T* res = call.res != nullptr ? call.res + g * kg * ohw : nullptr;
      constexpr T inf = std::numeric_limits<T>::infinity();
      scatter_images<T>(yb, kg, p.n, ohw, p.k * ohw, y + g * kg * ohw, res, res ? call.lo : -inf,
                        res ? call.hi : inf, nt);
    }
    call.epilogue_done = true;
    return true;
  }
  auto image = [&](int64_t n, T* xp, int64_t, int gemm_threads) {
    T* yn = y + n * p.k * ohw;
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
      GemmEpilogue<T> e;
      e.row_bias = b != nullptr ? b + g * kg : nullptr;
      e.res = call.res != nullptr ? call.res + (n * p.k + g * kg) * ohw : nullptr;
      e.ldr = ohw;
      e.lo = call.lo;
      e.hi = call.hi;
      const T* pa = packed ? packed->data.data() + g * packed->group_elems : nullptr;
      if (pointwise) {
        gemm_isa<T>(static_cast<Isa>(isa), kg, ohw, rows, wg, rows, 1, x + (n * p.c + g * cg) * hw, hw, 1, yg, ohw,
                    false, gemm_threads, epi ? &e : nullptr, pa);
        continue;
      }
      auto pack_b = [&](int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) { pack(src, sn, g, pc, kb, jc, nb, nr, bp); };
      gemm_custom_b<T>(static_cast<Isa>(isa), kg, ohw, rows, wg, rows, 1, pack_b, yg, ohw, false, gemm_threads,
                       epi ? &e : nullptr, pa);
    }
  };
  for_each_image<T>(p, nt, !pointwise && pad.use ? pad.size() : 0, image);
  call.epilogue_done = true;
  return true;
}

template <class T>
Im2colWeights<T> conv2d_pack_im2col_weights(const T* w, int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups) {
  Im2colWeights<T> pw;
  pw.isa = active_isa();
  pw.k = k, pw.cg = cg, pw.r = r, pw.s = s, pw.groups = groups;
  const GemmTile& t = gemm_tile<T>(pw.isa);
  const int64_t kg = k / groups, rows = cg * r * s;
  pw.group_elems = (kg + t.mr - 1) / t.mr * t.mr * rows;
  pw.data.resize(static_cast<size_t>(pw.group_elems * groups));
  for (int64_t g = 0; g < groups; ++g)
    gemm_detail::prepack_a(t, gemm_pack_t_kernel<T>(pw.isa), kg, rows, w + g * kg * rows, rows, 1,
                           pw.data.data() + g * pw.group_elems, num_threads());
  return pw;
}

template <class T>
bool im2col_bwd_data(ConvCall<T>& call) {
  const Conv2dParams& p = call.p;
  const ConvArgs<T>& a = call.a;
  const int nt = call.nt;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const T* dy = a.dy;
  const T* w = a.w;
  T* dx = a.dx;
  auto* col2im = tbl.conv2d_col2im[isa];
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
  const int64_t ohw = p.oh * p.ow, hw = p.h * p.w;
  const bool pointwise = is_pointwise(p);
  const int nr = gemm_tile<T>(static_cast<Isa>(isa)).nr;
  if (merge_images(p, nr, sizeof(T), ConvDir::bwd_data)) {
    const int64_t cols = p.n * ohw;
    T* xb = call_buffer<T>(0, static_cast<size_t>(cg * cols));
    for (int64_t g = 0; g < p.groups; ++g) {
      gemm_custom_b<T>(static_cast<Isa>(isa), cg, cols, kg, w + g * kg * rows, 1, rows,
                       BatchColumns<T>{dy + g * kg * ohw, p.k * ohw, ohw, nr}, xb, cols, false, nt);
      scatter_images<T>(xb, cg, p.n, ohw, p.c * hw, dx + g * cg * hw, nullptr,
                        -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::infinity(), nt);
    }
    return true;
  }
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
    return true;
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
  return true;
}

template <class T>
bool im2col_bwd_weight(ConvCall<T>& call) {
  const Conv2dParams& p = call.p;
  const ConvMaps& maps = call.maps;
  const ConvArgs<T>& a = call.a;
  const int nt = call.nt;
  const KernelTable<T>& tbl = kernel_table<T>();
  const int isa = static_cast<int>(active_isa());
  const T* x = a.x;
  const T* dy = a.dy;
  T* dw = a.dw;
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, rows = cg * p.r * p.s;
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
  // channels and scale poorly: benchmarks/RESULTS.md, "Algorithm selection"), then transposed.
  const bool transposed = pointwise && kg < rows;
  if (merge_images(p, nr, sizeof(T), ConvDir::bwd_weight)) {
    const int64_t cols = p.n * ohw;
    T* xb = call_buffer<T>(0, static_cast<size_t>(p.c * cols));
    T* db = call_buffer<T>(1, static_cast<size_t>(p.k * cols));
    gather_images<T>(x, p.c, p.n, ohw, p.c * hw, xb, nt);
    gather_images<T>(dy, p.k, p.n, ohw, p.k * ohw, db, nt);
    Buffer<T> dwt(transposed ? static_cast<size_t>(kg * rows) : 0);
    for (int64_t g = 0; g < p.groups; ++g) {
      const T* xg = xb + g * cg * cols;
      const T* dyg = db + g * kg * cols;
      T* dwg = dw + g * kg * rows;
      if (!transposed) {
        gemm<T>(kg, rows, cols, dyg, cols, 1, xg, 1, cols, dwg, rows, false, nt);
        continue;
      }
      gemm<T>(rows, kg, cols, xg, cols, 1, dyg, 1, cols, dwt.get(), kg, false, nt);
      for (int64_t j = 0; j < rows; ++j)
        for (int64_t i = 0; i < kg; ++i) dwg[i * rows + j] = dwt.get()[j * kg + i];
    }
    return true;
  }
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
    return true;
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
  return true;
}

#define PYCONV_INSTANTIATE(T)                        \
  template bool im2col_fwd<T>(ConvCall<T>&);        \
  template bool im2col_bwd_data<T>(ConvCall<T>&);   \
  template bool im2col_bwd_weight<T>(ConvCall<T>&);  \
  template Im2colWeights<T> conv2d_pack_im2col_weights<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
