// linear_gemv_<isa>: y[i][j] = b[j] + sum_k x[i][k] w[j][k] for the m (< kGemvMaxRows) rows of a
// small batch and the output features j in [j0, j1). A fully-connected layer at batch 1-4 is a
// matrix-vector product whose cost is reading w once: rows of w stream through R accumulators
// per input row (no packing, which would copy all of w for one use). Each y[i][j] is one
// thread's, summed in a fixed order (L lanes over k, then the lanes), so results do not depend
// on the thread count.
#include <cstdint>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

template <class T>
inline T hsum(typename V<T>::vec v) {
  T s = T(0);
  for (int t = 0; t < V<T>::L; ++t) s += v[t];
  return s;
}

// R rows of w against M rows of x.
template <class T, int R, int M>
void gemv_block(const T* __restrict x, int64_t k, const T* __restrict w, const T* b, T* __restrict y, int64_t n,
                int64_t j) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  vec acc[M][R];
  for (int i = 0; i < M; ++i)
    for (int r = 0; r < R; ++r) acc[i][r] = vec{};
  int64_t kk = 0;
  for (; kk + L <= k; kk += L) {
    vec wv[R];
    for (int r = 0; r < R; ++r) wv[r] = loadu(w + (j + r) * k + kk);
    for (int i = 0; i < M; ++i) {
      const vec xv = loadu(x + i * k + kk);
      for (int r = 0; r < R; ++r) acc[i][r] += xv * wv[r];
    }
  }
  for (int i = 0; i < M; ++i)
    for (int r = 0; r < R; ++r) {
      T s = hsum<T>(acc[i][r]);
      for (int64_t q = kk; q < k; ++q) s += x[i * k + q] * w[(j + r) * k + q];
      y[i * n + j + r] = b ? s + b[j + r] : s;
    }
}

template <class T, int M>
void gemv_rows(const T* x, int64_t k, const T* w, const T* b, T* y, int64_t n, int64_t j0, int64_t j1) {
  // M*R accumulators + R loads fit 32 (16) registers; at least 8 (4) independent sums in flight.
  constexpr int R = (kVecBytes >= 64 ? 4 : 2) * (M == 1 ? 2 : 1);
  int64_t j = j0;
  for (; j + R <= j1; j += R) gemv_block<T, R, M>(x, k, w, b, y, n, j);
  for (; j < j1; ++j) gemv_block<T, 1, M>(x, k, w, b, y, n, j);
}

template <class T>
void linear_gemv_k(const T* x, int64_t m, int64_t k, const T* w, const T* b, T* y, int64_t n, int64_t j0,
                   int64_t j1) {
  switch (m) {
    case 1: return gemv_rows<T, 1>(x, k, w, b, y, n, j0, j1);
    case 2: return gemv_rows<T, 2>(x, k, w, b, y, n, j0, j1);
    case 3: return gemv_rows<T, 3>(x, k, w, b, y, n, j0, j1);
    default: return gemv_rows<T, 4>(x, k, w, b, y, n, j0, j1);
  }
}

}  // namespace

#define PYCONV_EXPORT_T(T)                                                                               \
  void PYCONV_CAT(linear_gemv, PYCONV_ISA)(const T* x, int64_t m, int64_t k, const T* w, const T* b, T* y, \
                                           int64_t n, int64_t j0, int64_t j1) {                          \
    linear_gemv_k<T>(x, m, k, w, b, y, n, j0, j1);                                                       \
  }
PYCONV_EXPORT_T(float)
PYCONV_EXPORT_T(double)
#undef PYCONV_EXPORT_T

}  // namespace PYCONV_ISA
}  // namespace pyconv
