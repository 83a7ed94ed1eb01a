// Linear layer operators: each product as one GEMM, oriented so that the narrow side of C runs
// along the micro-kernel's rows (MR) rather than its wider columns (NR).
#include <algorithm>

#include "kernels.h"
#include "pyconv/gemm.h"
#include "pyconv/linear.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {
namespace {

// C[M][N] = A * B (+ bias[j] on every row). With N narrower than a column panel and M wider,
// C^T = B^T A^T is computed into scratch and transposed: its rows fill MR-row panels instead of
// a mostly empty NR-column one. The sums are the same either way (K is never split).
template <class T>
void product(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
             int64_t csb, const T* bias, T* C) {
  // The GEMM runs ~30 multiply-adds in the time threads_for's unit of work assumes (measured:
  // 128 x 128 -> 10 lost at 2 threads, 128 x 512 -> 128 gained 1.3-1.6x; benchmarks/threads.py).
  const int threads = threads_for(M * N * K / 32, num_threads());
  const int nr = gemm_tile<T>(active_isa()).nr;
  GemmEpilogue<T> e;  // the bias goes with the GEMM's stores
  if (N < nr && M > N) {
    Buffer<T> ct(static_cast<size_t>(N * M));
    T* c = ct.get();
    e.row_bias = bias;
    gemm<T>(N, M, K, B, csb, rsb, A, csa, rsa, c, M, false, threads, bias != nullptr ? &e : nullptr);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * N + j] = c[j * M + i];
    return;
  }
  e.col_bias = bias;
  gemm<T>(M, N, K, A, rsa, csa, B, rsb, csb, C, N, false, threads, bias != nullptr ? &e : nullptr);
}

}  // namespace

template <class T>
void linear_fwd(int64_t m, int64_t k, int64_t n, const T* x, const T* w, const T* b, T* y) {
  if (m >= 1 && m <= kGemvMaxRows) {  // a matrix-vector product: stream w once, split over output features
    auto* fn = kernel_table<T>().linear_gemv[static_cast<int>(active_isa())];
    parallel_for(n, threads_for(m * n * k / 4, num_threads()),
                 [&](int64_t j0, int64_t j1) { fn(x, m, k, w, b, y, n, j0, j1); });
    return;
  }
  product<T>(m, n, k, x, k, 1, w, 1, k, b, y);  // B(kk, j) = w[j][kk]
}

template <class T>
void linear_bwd_data(int64_t m, int64_t k, int64_t n, const T* dy, const T* w, T* dx) {
  product<T>(m, k, n, dy, n, 1, w, k, 1, nullptr, dx);
}

template <class T>
void linear_bwd_weight(int64_t m, int64_t k, int64_t n, const T* x, const T* dy, T* dw) {
  product<T>(n, k, m, dy, 1, n, x, k, 1, nullptr, dw);  // A(j, i) = dy[i][j]
}

#define PYCONV_INSTANTIATE(T)                                                             \
  template void linear_fwd<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*); \
  template void linear_bwd_data<T>(int64_t, int64_t, int64_t, const T*, const T*, T*);      \
  template void linear_bwd_weight<T>(int64_t, int64_t, int64_t, const T*, const T*, T*);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
