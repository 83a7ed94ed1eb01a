// Elementwise operators: threads over aligned blocks of elements (bias_grad: over channels).
#include "kernels.h"
#include "pyconv/eltwise.h"
#include "pyconv/parallel.h"

namespace pyconv {

namespace {

// Elements per work block: whole cache lines, so threads never share one they write.
constexpr int64_t kBlock = 64;

// One element visit counts as one unit of threads_for's work: measured, two threads already pay
// off at 64K float elements (the workers are usually still spinning from the previous op).
int elt_threads(int64_t n) { return threads_for(n, num_threads()); }

template <class F>
void over_blocks(int64_t n, F&& fn) {
  parallel_for((n + kBlock - 1) / kBlock, elt_threads(n), [&](int64_t b, int64_t e) {
    fn(b * kBlock, e * kBlock < n ? e * kBlock : n);
  });
}

int isa_index() { return static_cast<int>(active_isa()); }

}  // namespace

template <class T>
void relu_fwd(const T* x, T* y, int64_t n) {
  auto* fn = kernel_table<T>().relu_fwd[isa_index()];
  over_blocks(n, [&](int64_t i0, int64_t i1) { fn(x, y, i0, i1); });
}

template <class T>
void relu_bwd(const T* dy, const T* x, T* dx, int64_t n) {
  auto* fn = kernel_table<T>().relu_bwd[isa_index()];
  over_blocks(n, [&](int64_t i0, int64_t i1) { fn(dy, x, dx, i0, i1); });
}

template <class T>
void clamp_add(T* y, const T* r, T lo, T hi, int64_t n) {
  auto* fn = kernel_table<T>().clamp_add[isa_index()];
  over_blocks(n, [&](int64_t i0, int64_t i1) { fn(y, r, lo, hi, i0, i1); });
}

template <class T>
void bias_grad(const T* dy, int64_t n, int64_t c, int64_t hw, T* db) {
  auto* fn = kernel_table<T>().bias_grad[isa_index()];
  parallel_for(c, elt_threads(n * c * hw), [&](int64_t c0, int64_t c1) { fn(dy, n, c, hw, db, c0, c1); });
}

#define PYCONV_INSTANTIATE(T)                                              \
  template void relu_fwd<T>(const T*, T*, int64_t);                       \
  template void relu_bwd<T>(const T*, const T*, T*, int64_t);             \
  template void clamp_add<T>(T*, const T*, T, T, int64_t);              \
  template void bias_grad<T>(const T*, int64_t, int64_t, int64_t, T*);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
