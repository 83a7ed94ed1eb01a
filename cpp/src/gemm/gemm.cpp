// GEMM driver: packing and the five loops around the micro-kernel (BLIS's structure).
// Threads split the columns of C (or its rows when C is narrow), each thread running the serial
// loops on its part with its own packing buffers; K is never split, so results are identical
// for any thread count.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "gemm/gemm_driver.h"
#include "workspace.h"

namespace pyconv {
namespace {

// Packs a kb x nb block of B into NR-column panels: bp[panel][k][j], zero-padded to NR columns.
// Row-contiguous B (csb == 1) is dealt row by row (each source row read once, sequentially);
// column-contiguous B (rsb == 1, the transposed operand of the weight gradient) is a transposing
// pack.
template <class T>
void pack_b(int64_t kb, int64_t nb, const T* B, int64_t rsb, int64_t csb, int nr, Isa isa, T* bp) {
  if (csb == 1) {
    gemm_pack_n_kernel<T>(isa)(B, rsb, kb, nb, bp);
    return;
  }
  gemm_pack_t_fn<T>* pack_tr = gemm_pack_t_kernel<T>(isa);
  for (int64_t j0 = 0; j0 < nb; j0 += nr) {
    const int64_t cols = std::min<int64_t>(nr, nb - j0);
    if (rsb == 1) {
      pack_tr(B + j0 * csb, csb, cols, kb, nr, bp);
    } else {
      for (int64_t k = 0; k < kb; ++k) {
        const T* src = B + k * rsb + j0 * csb;
        int64_t j = 0;
        for (; j < cols; ++j) bp[k * nr + j] = src[j * csb];
        for (; j < nr; ++j) bp[k * nr + j] = T(0);
      }
    }
    bp += kb * nr;
  }
}

}  // namespace

template <class T>
void gemm_isa(Isa isa, int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
              int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate, int nthreads, const GemmEpilogue<T>* ep,
              const T* prepacked_a) {
  const int nr = gemm_tile<T>(isa).nr;
  auto pack = [&](int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) {
    pack_b(kb, nb, B + pc * rsb + jc * csb, rsb, csb, nr, isa, bp);
  };
  gemm_custom_b<T>(isa, M, N, K, A, rsa, csa, pack, C, ldc, accumulate, nthreads, ep, prepacked_a);
}

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate, int nthreads, const GemmEpilogue<T>* ep,
          const T* prepacked_a) {
  gemm_isa<T>(active_isa(), M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, nthreads, ep, prepacked_a);
}

template void gemm_isa<float>(Isa, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                              int64_t, int64_t, float*, int64_t, bool, int, const GemmEpilogue<float>*,
                              const float*);
template void gemm_isa<double>(Isa, int64_t, int64_t, int64_t, const double*, int64_t, int64_t, const double*,
                               int64_t, int64_t, double*, int64_t, bool, int, const GemmEpilogue<double>*,
                               const double*);
template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                          int64_t, int64_t, float*, int64_t, bool, int, const GemmEpilogue<float>*,
                          const float*);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double*, int64_t, bool, int,
                           const GemmEpilogue<double>*, const double*);

}  // namespace pyconv
