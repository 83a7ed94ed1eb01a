// Driver of the blocked-layout conv forward (conv2d/nchwc_impl.h): the work split and the ISA.
#include <algorithm>

#include "kernels.h"
#include "pyconv/nchwc.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {

template <class T>
void conv2d_nchwc_fwd(const NchwcConv<T>& a0) {
  NchwcConv<T> a = a0;
  // A 1x1 stride-1 unpadded conv runs its whole plane as one row: tiles fill up across rows.
  if (a.r == 1 && a.s == 1 && a.sh == 1 && a.sw == 1 && a.pt == 0 && a.pl == 0 && a.oh == a.h && a.ow == a.w &&
      a.xh == a.w * a.xw) {
    a.w = a.h * a.w, a.ow = a.oh * a.ow, a.h = a.oh = 1;
  }
  NchwcWork wk{};
  const int64_t kb = (a.k + kNchwcBlock - 1) / kNchwcBlock;
  wk.tiles = a.depthwise ? kb : (kb + 1) / 2;
  wk.rows = a.oh;
  wk.cols = a.ow;
  // planes narrower than a 14-pixel tile: dense tiles across rows (blocked input only)
  if (!a.depthwise && a.ow < 14 && a.oh > 1 && a.xc == 1) wk.flat = true, wk.rows = 1, wk.cols = a.oh * a.ow;
  const int64_t cols = wk.cols;
  const int64_t macs = a.n * a.k * a.oh * a.ow * a.r * a.s * (a.depthwise ? 1 : a.c);
  const int nt = threads_for(macs / 8, num_threads());
  // Up to 8 tiles of 14 pixels per item (weights reused across them), fewer when that leaves
  // under 8 items per thread (a 7x7 plane with few filter blocks); the split never changes sums.
  wk.chunk = std::min<int64_t>(cols, 112);
  while (wk.chunk > 14 && a.n * wk.tiles * wk.rows * ((cols + wk.chunk - 1) / wk.chunk) < 8 * nt)
    wk.chunk = std::max<int64_t>(14, (wk.chunk / 2 + 13) / 14 * 14);
  wk.chunks = (cols + wk.chunk - 1) / wk.chunk;
  const int64_t items = a.n * wk.tiles * wk.rows * wk.chunks;
  auto* fn = kernel_table<T>().conv2d_nchwc_fwd[static_cast<int>(active_isa())];
  parallel_for(items, nt, [&](int64_t i0, int64_t i1) { fn(a, wk, i0, i1); });
}

template <class T>
void conv2d_nchwc_expand_dw(const NchwcConv<T>& e, const NchwcConv<T>& d) {
  NchwcWork wk{};
  wk.tiles = ((e.k + kNchwcBlock - 1) / kNchwcBlock + 1) / 2;
  const int64_t macs = e.n * e.k * e.h * e.w * e.c + d.n * d.k * d.oh * d.ow * d.r * d.s;
  const int nt = threads_for(macs / 8, num_threads());
  // bands of output rows: enough items for the threads; each band recomputes the expansion rows
  // its first output row shares with the band above ((d.r - 1)*d.dh - d.sh + 1 rows)
  wk.rows = 1;
  while (e.n * wk.tiles * wk.rows < 4 * nt && d.oh / (2 * wk.rows) >= 8) wk.rows *= 2;
  const int64_t ring = (d.r - 1) * d.dh + 1, ws = 2 * ring * e.w * kNchwcBlock;
  auto* fn = kernel_table<T>().conv2d_nchwc_expand_dw[static_cast<int>(active_isa())];
  parallel_for(e.n * wk.tiles * wk.rows, nt, [&](int64_t i0, int64_t i1) {
    Buffer<T> buf(static_cast<size_t>(ws));
    fn(e, d, wk, i0, i1, buf.get());
  });
}

template <class T>
void global_avg_pool2d_nchwc(const NchwcPool<T>& a) {
  const int64_t items = a.n * (a.x_blocked ? (a.c + kNchwcBlock - 1) / kNchwcBlock : a.c);
  auto* fn = kernel_table<T>().global_avg_pool2d_nchwc[static_cast<int>(active_isa())];
  parallel_for(items, threads_for(a.n * a.c * a.h * a.w, num_threads()), [&](int64_t i0, int64_t i1) { fn(a, i0, i1); });
}

template <class T>
void nchw_to_nchwc(const T* x, int64_t n, int64_t c, int64_t h, int64_t w, T* y) {
  constexpr int64_t B = kNchwcBlock, kChunk = 128;  // pixels per item: 8 KB of y, in L1 while 16 planes fill it
  const int64_t plane = h * w, cb = (c + B - 1) / B, chunks = (plane + kChunk - 1) / kChunk;
  parallel_for(n * cb * chunks, threads_for(n * cb * B * plane, num_threads()), [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t blk = it / chunks % cb, img = it / (chunks * cb);
      const int64_t q0 = it % chunks * kChunk, q1 = std::min(plane, q0 + kChunk);
      T* yb = y + (img * cb + blk) * plane * B;
      for (int64_t l = 0; l < B; ++l) {
        const int64_t ch = blk * B + l;
        if (ch >= c) {
          for (int64_t q = q0; q < q1; ++q) yb[q * B + l] = T(0);
          continue;
        }
        const T* xp = x + (img * c + ch) * plane;
        for (int64_t q = q0; q < q1; ++q) yb[q * B + l] = xp[q];
      }
    }
  });
}

template void conv2d_nchwc_fwd<float>(const NchwcConv<float>&);
template void conv2d_nchwc_fwd<double>(const NchwcConv<double>&);
template void conv2d_nchwc_expand_dw<float>(const NchwcConv<float>&, const NchwcConv<float>&);
template void conv2d_nchwc_expand_dw<double>(const NchwcConv<double>&, const NchwcConv<double>&);
template void global_avg_pool2d_nchwc<float>(const NchwcPool<float>&);
template void global_avg_pool2d_nchwc<double>(const NchwcPool<double>&);
template void nchw_to_nchwc<float>(const float*, int64_t, int64_t, int64_t, int64_t, float*);
template void nchw_to_nchwc<double>(const double*, int64_t, int64_t, int64_t, int64_t, double*);

}  // namespace pyconv
