// Fully-connected layer on row-major matrices, on pyconv's GEMM and thread pool (so a network
// of pyconv layers drives one pool, not pyconv's and BLAS's).
//   linear_fwd:        y[m][n]  = sum_k x[m][k] w[n][k] (+ b[n])
//   linear_bwd_data:   dx[m][k] = sum_n dy[m][n] w[n][k]
//   linear_bwd_weight: dw[n][k] = sum_m dy[m][n] x[m][k]
// m rows (batch), k input features, n output features. Results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace pyconv {

template <class T>
void linear_fwd(int64_t m, int64_t k, int64_t n, const T* x, const T* w, const T* b, T* y);
template <class T>
void linear_bwd_data(int64_t m, int64_t k, int64_t n, const T* dy, const T* w, T* dx);
template <class T>
void linear_bwd_weight(int64_t m, int64_t k, int64_t n, const T* x, const T* dy, T* dw);

}  // namespace pyconv
