// Public C++ API of the elementwise and reduction operators of a training step.
//   relu_fwd:  y = x <= 0 ? 0 : x      (NaN propagates; -0 gives +0)
//   relu_bwd:  dx = x <= 0 ? 0 : dy    (x may be relu's input or its output: same mask; NaN x passes dy)
//   clamp_add: y = min(max(y + r, lo), hi) in place (r null: no add; NaN propagates)
//   bias_grad: db[c] = sum over n, hw of dy[n][c][hw]   (the conv bias gradient)
// Flat arrays of n elements (bias_grad: dy[n][c][hw]); every result depends only on the
// element(s) it reads, never on the thread count.
#pragma once
#include <cstdint>

namespace pyconv {

template <class T>
void relu_fwd(const T* x, T* y, int64_t n);
template <class T>
void relu_bwd(const T* dy, const T* x, T* dx, int64_t n);
template <class T>
void clamp_add(T* y, const T* r, T lo, T hi, int64_t n);
template <class T>
void bias_grad(const T* dy, int64_t n, int64_t c, int64_t hw, T* db);

}  // namespace pyconv
