// Driver of the channel-blocked depthwise kernels (conv2d/depthwise_blocked.h): weights packed
// per channel block, bands of rows sized from the shape, work items over threads.
#include <algorithm>

#include "kernels.h"
#include "pyconv/parallel.h"
#include "sizes.h"
#include "workspace.h"

namespace pyconv {

bool conv2d_dw_blocked_applies(const Conv2dParams& p, ConvDir dir) {
  return p.groups == p.c && p.k == p.c && (dir != ConvDir::bwd_data || p.mode == PadMode::zeros);
}

template <class T>
bool conv2d_dw_blocked(const Conv2dParams& p, const int64_t* row_map, const int64_t* col_map, ConvDir dir,
                       const T* x, const T* w, const T* b, const T* dy, T* y, T* dx, T* dw, int nt) {
  const Isa isa = active_isa();
  const int64_t L = isa_vec_bytes(isa) / static_cast<int64_t>(sizeof(T));
  // Narrow outputs only: rows of at least one vector (the forward and grad-input) or two (the
  // weight gradient) fill the NCHW kernels' vectors (depthwise.h) with no reorder
  // (benchmarks/RESULTS.md, "Real-model layers": AVX-512 float wins at 7 and 14 output columns,
  // 28 for the weight gradient; AVX2 at 7, and 14 only for the weight gradient).
  if (p.ow >= (dir == ConvDir::bwd_weight ? 2 * L : L)) return false;
  const int64_t rs = p.r * p.s, ncb = (p.c + L - 1) / L;
  // Bands of about 1024 pixels: a band's blocked rows stay in L2 between gather, core and scatter.
  const int64_t rows = dir == ConvDir::bwd_data ? p.h : p.oh, cols = dir == ConvDir::bwd_data ? p.w : p.ow;
  const int64_t band = std::clamp<int64_t>(1024 / std::max<int64_t>(cols, 1), 1, rows);
  const int64_t ws = dw_blocked_ws(p, dir, band, L);
  if (static_cast<size_t>(ws) * sizeof(T) > workspace_limit()) return false;
  Buffer<T> wb(w != nullptr ? static_cast<size_t>(ncb * rs * L) : 0);  // no weights: bwd_weight
  Buffer<T> bb(b != nullptr ? static_cast<size_t>(ncb * L) : 0);
  if (w != nullptr)
    for (int64_t cb = 0; cb < ncb; ++cb)
      for (int64_t t = 0; t < rs; ++t)
        for (int64_t l = 0; l < L; ++l) {
          const int64_t c = cb * L + l;
          // bwd_data reads the taps as stored (its core matches each input pixel to its taps)
          wb.get()[(cb * rs + t) * L + l] = c < p.c ? w[c * rs + t] : T(0);
        }
  if (b != nullptr)
    for (int64_t c = 0; c < ncb * L; ++c) bb.get()[c] = c < p.c ? b[c] : T(0);
  DwBlocked<T> d{};
  d.p = &p;
  d.row_map = row_map, d.col_map = col_map;
  d.ncb = ncb, d.band = band, d.nband = (rows + band - 1) / band;
  d.x = x, d.dy = dy, d.y = y, d.dx = dx, d.dw = dw;
  d.wb = wb.get(), d.bb = bb.get();
  const KernelTable<T>& tbl = kernel_table<T>();
  const int i = static_cast<int>(isa);
  auto* fn = dir == ConvDir::fwd        ? tbl.conv2d_dw_blocked_fwd[i]
             : dir == ConvDir::bwd_data ? tbl.conv2d_dw_blocked_bwd_data[i]
                                        : tbl.conv2d_dw_blocked_bwd_weight[i];
  const int64_t items = dir == ConvDir::bwd_weight ? ncb : p.n * ncb * d.nband;
  parallel_for(items, nt, [&](int64_t i0, int64_t i1) { fn(d, i0, i1, scratch<T>(0, static_cast<size_t>(ws))); });
  return true;
}

#define PYCONV_INSTANTIATE(T)                                                                                  \
  template bool conv2d_dw_blocked<T>(const Conv2dParams&, const int64_t*, const int64_t*, ConvDir, const T*, \
                                     const T*, const T*, const T*, T*, T*, T*, int);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
