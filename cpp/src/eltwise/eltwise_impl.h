// relu_fwd_<isa>, relu_bwd_<isa> (work range: elements [i0, i1)) and bias_grad_<isa> (work range:
// channels [c0, c1)), vectorised with the GCC vector extensions of simd.h.
//   relu: `x <= 0 ? 0 : v` is false for NaN, so NaN passes (forward: x; backward: dy), as torch's
//   clamp_min / threshold_backward; the mask is the same for relu's input and its output.
//   clamp_add: y = clamp(y + r, lo, hi) in place (r may be null: no add); the comparisons are
//   false for NaN, so NaN passes as in torch.clamp. The conv epilogue (residual, ReLU, ReLU6, Clip).
//   bias_grad: per channel, 4*L running sums in T over every image's plane in order, then the
//   lanes (and the scalar tail's sum) added in double; one thread owns a channel.
#include <cstdint>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "simd.h"

template <class T>
void relu_fwd_k(const T* __restrict x, T* __restrict y, int64_t i0, int64_t i1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const vec z{};
  int64_t i = i0;
  for (; i + 2 * L <= i1; i += 2 * L) {
    const vec a = loadu(x + i), b = loadu(x + i + L);
    storeu(y + i, a <= z ? z : a);
    storeu(y + i + L, b <= z ? z : b);
  }
  for (; i + L <= i1; i += L) {
    const vec a = loadu(x + i);
    storeu(y + i, a <= z ? z : a);
  }
  for (; i < i1; ++i) y[i] = x[i] <= T(0) ? T(0) : x[i];
}

template <class T>
void relu_bwd_k(const T* __restrict dy, const T* __restrict x, T* __restrict dx, int64_t i0, int64_t i1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const vec z{};
  int64_t i = i0;
  for (; i + 2 * L <= i1; i += 2 * L) {
    const vec a = loadu(x + i), b = loadu(x + i + L);
    storeu(dx + i, a <= z ? z : loadu(dy + i));
    storeu(dx + i + L, b <= z ? z : loadu(dy + i + L));
  }
  for (; i + L <= i1; i += L) {
    const vec a = loadu(x + i);
    storeu(dx + i, a <= z ? z : loadu(dy + i));
  }
  for (; i < i1; ++i) dx[i] = x[i] <= T(0) ? T(0) : dy[i];
}

template <class T>
void clamp_add_k(T* __restrict y, const T* __restrict r, T lo, T hi, int64_t i0, int64_t i1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const vec vlo = vec{} + lo, vhi = vec{} + hi;
  int64_t i = i0;
  for (; i + L <= i1; i += L) {
    vec a = loadu(y + i);
    if (r) a += loadu(r + i);
    a = a < vlo ? vlo : a;
    storeu(y + i, a > vhi ? vhi : a);
  }
  for (; i < i1; ++i) {
    T a = r ? y[i] + r[i] : y[i];
    a = a < lo ? lo : a;
    y[i] = a > hi ? hi : a;
  }
}

template <class T>
void bias_grad_k(const T* dy, int64_t n, int64_t c, int64_t hw, T* db, int64_t c0, int64_t c1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  for (int64_t k = c0; k < c1; ++k) {
    vec a0{}, a1{}, a2{}, a3{};
    T tail = T(0);
    for (int64_t img = 0; img < n; ++img) {
      const T* p = dy + (img * c + k) * hw;
      int64_t i = 0;
      for (; i + 4 * L <= hw; i += 4 * L) {
        a0 += loadu(p + i);
        a1 += loadu(p + i + L);
        a2 += loadu(p + i + 2 * L);
        a3 += loadu(p + i + 3 * L);
      }
      for (; i + L <= hw; i += L) a0 += loadu(p + i);
      for (; i < hw; ++i) tail += p[i];
    }
    const vec a = (a0 + a1) + (a2 + a3);
    double s = tail;
    for (int t = 0; t < L; ++t) s += a[t];
    db[k] = static_cast<T>(s);
  }
}

}  // namespace

#define PYCONV_EXPORT_T(T)                                                                                   \
  void PYCONV_CAT(relu_fwd, PYCONV_ISA)(const T* x, T* y, int64_t i0, int64_t i1) { relu_fwd_k<T>(x, y, i0, i1); } \
  void PYCONV_CAT(relu_bwd, PYCONV_ISA)(const T* dy, const T* x, T* dx, int64_t i0, int64_t i1) {          \
    relu_bwd_k<T>(dy, x, dx, i0, i1);                                                                        \
  }                                                                                                          \
  void PYCONV_CAT(clamp_add, PYCONV_ISA)(T* y, const T* r, T lo, T hi, int64_t i0, int64_t i1) {        \
    clamp_add_k<T>(y, r, lo, hi, i0, i1);                                                                    \
  }                                                                                                          \
  void PYCONV_CAT(bias_grad, PYCONV_ISA)(const T* dy, int64_t n, int64_t c, int64_t hw, T* db, int64_t c0,  \
                                         int64_t c1) {                                                       \
    bias_grad_k<T>(dy, n, c, hw, db, c0, c1);                                                                \
  }
PYCONV_EXPORT_T(float)
PYCONV_EXPORT_T(double)
#undef PYCONV_EXPORT_T

}  // namespace PYCONV_ISA
}  // namespace pyconv
