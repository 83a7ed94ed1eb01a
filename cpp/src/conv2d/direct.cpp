// Driver of the row-AXPY direct kernels (conv2d_direct_impl.h, depthwise.h): every shape, and the
// depthwise input gradient run as a depthwise forward.
#include <algorithm>

#include "conv2d/impl.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {

namespace {

// The calling thread's scratch for a direct kernel (null when it needs none or the planes would
// exceed the workspace budget; the kernel then takes its general path).
template <class T>
ConvArgs<T> with_scratch(const ConvArgs<T>& a, const Conv2dParams& p) {
  ConvArgs<T> b = a;
  const int64_t n = conv2d_direct_ws_size(p);
  b.ws = n > 0 && static_cast<size_t>(n) * sizeof(T) <= workspace_limit() ? scratch<T>(0, static_cast<size_t>(n)) : nullptr;
  return b;
}

// The depthwise forward whose output is the input gradient: dy padded by extent - pad.
Conv2dParams depthwise_as_fwd_params(const Conv2dParams& p) {
  const int64_t eh = (p.r - 1) * p.dil_h, ew = (p.s - 1) * p.dil_w;
  Conv2dParams q = p;
  q.h = p.oh, q.w = p.ow;
  q.pad_t = eh - p.pad_t, q.pad_b = eh - p.pad_b, q.pad_l = ew - p.pad_l, q.pad_r = ew - p.pad_r;
  conv2d_validate(q);
  return q;
}

template <class T>
void run_direct(const ConvArgs<T>& a, const Conv2dParams& p, conv2d_fwd_direct_fn<T>* fn, int64_t items, int nt) {
  parallel_for(items, nt, [&](int64_t b0, int64_t b1) { fn(with_scratch(a, p), b0, b1); });
}

}  // namespace

// Depthwise grad-input with one filter per channel, stride 1 and zero padding no wider than the
// kernel extent: the depthwise forward of dy with each filter flipped and padding extent - pad,
// whose output is exactly the input's size. One pass, where the general kernel copies dy into a
// zero frame and folds a padded gradient back through the maps (benchmarks/RESULTS.md,
// "Algorithm selection").
const char* depthwise_as_fwd_guard(const Conv2dParams& p, ConvDir dir) {
  const int64_t eh = (p.r - 1) * p.dil_h, ew = (p.s - 1) * p.dil_w;
  if (dir != ConvDir::bwd_data) return "input gradient only";
  if (p.groups != p.c || p.k != p.c) return "needs one filter per channel (depthwise, multiplier 1)";
  if (p.stride_h != 1 || p.stride_w != 1) return "needs stride 1";
  if (p.mode != PadMode::zeros) return "needs zero padding";
  if (p.pad_t > eh || p.pad_b > eh || p.pad_l > ew || p.pad_r > ew) return "needs padding within the kernel extent";
  const Conv2dParams q = depthwise_as_fwd_params(p);
  if (q.oh != p.h || q.ow != p.w) return "the forward's output would not be the input's size";
  return nullptr;
}

const char* depthwise_as_fwd_fit(const Conv2dParams& p, ConvDir, size_t elem, int) {
  const int64_t ws = conv2d_direct_ws_size(depthwise_as_fwd_params(p));
  return static_cast<size_t>(ws) * elem <= workspace_limit() ? nullptr : "its padded planes exceed the workspace limit";
}

template <class T>
bool depthwise_bwd_data_as_fwd(ConvCall<T>& c) {
  const Conv2dParams& p = c.p;
  const Conv2dParams q = depthwise_as_fwd_params(p);
  if (depthwise_as_fwd_fit(p, ConvDir::bwd_data, sizeof(T), c.nt) != nullptr) return false;
  const int64_t rs = p.r * p.s;
  Buffer<T> flipped(static_cast<size_t>(p.c * rs));
  for (int64_t ch = 0; ch < p.c; ++ch)
    for (int64_t t = 0; t < rs; ++t) flipped.get()[ch * rs + t] = c.a.w[ch * rs + rs - 1 - t];
  const ConvMaps maps(q);
  ConvArgs<T> a = maps.args<T>(q);
  a.x = c.a.dy;
  a.w = flipped.get();
  a.y = c.a.dx;
  run_direct(a, q, kernel_table<T>().conv2d_fwd_direct[static_cast<int>(active_isa())], q.n * q.k, c.nt);
  return true;
}

// Work ranges: fwd over planes n*K + k; bwd_data over planes n*C + c; bwd_weight over weight
// planes k*(C/groups) + c.
template <class T>
bool direct_fwd(ConvCall<T>& c) {
  run_direct(c.a, c.p, kernel_table<T>().conv2d_fwd_direct[static_cast<int>(active_isa())], c.p.n * c.p.k, c.nt);
  return true;
}

template <class T>
bool direct_bwd_data(ConvCall<T>& c) {
  run_direct(c.a, c.p, kernel_table<T>().conv2d_bwd_data_direct[static_cast<int>(active_isa())], c.p.n * c.p.c, c.nt);
  return true;
}

template <class T>
bool direct_bwd_weight(ConvCall<T>& c) {
  const int64_t items = c.p.k * (c.p.c / c.p.groups);
  run_direct(c.a, c.p, kernel_table<T>().conv2d_bwd_weight_direct[static_cast<int>(active_isa())], items, c.nt);
  return true;
}

#define PYCONV_INSTANTIATE(T)                               \
  template bool depthwise_bwd_data_as_fwd<T>(ConvCall<T>&); \
  template bool direct_fwd<T>(ConvCall<T>&);               \
  template bool direct_bwd_data<T>(ConvCall<T>&);          \
  template bool direct_bwd_weight<T>(ConvCall<T>&);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
