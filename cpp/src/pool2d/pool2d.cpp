// Pooling operators: validation, output size (PyTorch's ceil_mode rule) and threads over planes.
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "pyconv/parallel.h"
#include "pyconv/pool2d.h"
#include "sizes.h"

namespace pyconv {

namespace {

#define REQUIRE(ok, msg) PYCONV_REQUIRE("pool2d", ok, msg)

// Element visits of one pass: output size times window size.
int pool_threads(const Pool2dParams& p) { return threads_for(p.n * p.c * p.oh * p.ow * p.kh * p.kw, num_threads()); }

// Runs fn(begin, end) over all planes, handed out in small chunks as threads ask for them: on a
// shared machine a preempted thread leaves its remaining planes to the other instead of holding
// up the call. Planes are independent, so results do not depend on which thread computes which.
template <class F>
void for_planes(const Pool2dParams& p, F&& fn) {
  const int64_t planes = p.n * p.c;
  const int nt = pool_threads(p);
  if (nt <= 1 || planes < 2) return fn(int64_t{0}, planes);
  const int64_t chunk = std::max<int64_t>(1, planes / (8 * nt));
  std::atomic<int64_t> next{0};
  parallel_for(nt, nt, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(chunk); b < planes; b = next.fetch_add(chunk)) fn(b, std::min(planes, b + chunk));
  });
}

void log_pool(const char* op) {
  if (!verbose()) return;
  const std::string what = std::string(op) + "_direct_" + isa_name(active_isa());
  log_choice(op, what.c_str());
}

}  // namespace

int64_t pool2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  int64_t out = floor_div(span + (ceil_mode ? stride - 1 : 0), stride) + 1;
  // The last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

void pool2d_validate(Pool2dParams& p) {
  REQUIRE(p.n >= 0, "batch size must be >= 0, got " + s(p.n));
  REQUIRE(p.c >= 1 && p.h >= 1 && p.w >= 1,
          "channels, height and width must be >= 1, got C=" + s(p.c) + " H=" + s(p.h) + " W=" + s(p.w));
  REQUIRE(p.kh >= 1 && p.kw >= 1, "kernel_size must be >= 1, got (" + s(p.kh) + ", " + s(p.kw) + ")");
  REQUIRE(p.stride_h >= 1 && p.stride_w >= 1, "stride must be >= 1, got (" + s(p.stride_h) + ", " + s(p.stride_w) + ")");
  REQUIRE(p.dil_h >= 1 && p.dil_w >= 1, "dilation must be >= 1, got (" + s(p.dil_h) + ", " + s(p.dil_w) + ")");
  REQUIRE(p.pad_h >= 0 && p.pad_w >= 0 && 2 * p.pad_h <= p.kh && 2 * p.pad_w <= p.kw,
          "padding must be between 0 and half the kernel_size, got padding (" + s(p.pad_h) + ", " + s(p.pad_w) +
              ") for kernel_size (" + s(p.kh) + ", " + s(p.kw) + ")");
  checked_numel({p.n, p.c, p.h, p.w}, "input");
  checked_numel({p.kh, p.kw, p.dil_h, p.dil_w}, "kernel_size");
  p.oh = pool2d_out_size(p.h, p.kh, p.stride_h, p.pad_h, p.dil_h, p.ceil_mode);
  p.ow = pool2d_out_size(p.w, p.kw, p.stride_w, p.pad_w, p.dil_w, p.ceil_mode);
  REQUIRE(p.oh >= 1 && p.ow >= 1, "output size (" + s(p.oh) + ", " + s(p.ow) + ") is too small for input (" + s(p.h) +
                                      ", " + s(p.w) + ")");
  checked_numel({p.n, p.c, p.oh, p.ow}, "output");
}

template <class T>
void max_pool2d_fwd(const Pool2dParams& p0, const T* x, T* y, int64_t* idx) {
  Pool2dParams p = p0;
  pool2d_validate(p);
  log_pool("max_pool2d_fwd");
  auto* fn = kernel_table<T>().max_pool2d_fwd_direct[static_cast<int>(active_isa())];
  for_planes(p, [&](int64_t b, int64_t e) { fn(p, x, y, idx, b, e); });
}

template <class T>
void max_pool2d_bwd(const Pool2dParams& p0, const T* dy, const T* x, const int64_t* idx, T* dx) {
  Pool2dParams p = p0;
  pool2d_validate(p);
  log_pool("max_pool2d_bwd");
  // Caller-provided indices are scattered into dx: each must address its own plane. The kernel
  // skips any that does not and reports the first; the smallest over all chunks is the error.
  auto* fn = kernel_table<T>().max_pool2d_bwd_direct[static_cast<int>(active_isa())];
  std::atomic<int64_t> bad{-1};
  for_planes(p, [&](int64_t b, int64_t e) {
    const int64_t r = fn(p, dy, x, idx, dx, b, e);
    if (r < 0) return;
    int64_t cur = bad.load();
    while ((cur < 0 || r < cur) && !bad.compare_exchange_weak(cur, r)) {
    }
  });
  if (const int64_t i = bad.load(); i >= 0)
    throw std::invalid_argument("max_pool2d_grad: indices must lie in [0, H*W) = [0, " + s(p.h * p.w) + "), got " +
                                s(idx[i]) + " at flat position " + s(i));
}

template <class T>
void avg_pool2d_fwd(const Pool2dParams& p0, const T* x, T* y) {
  Pool2dParams p = p0;
  pool2d_validate(p);
  log_pool("avg_pool2d_fwd");
  auto* fn = kernel_table<T>().avg_pool2d_fwd_direct[static_cast<int>(active_isa())];
  for_planes(p, [&](int64_t b, int64_t e) { fn(p, x, y, b, e); });
}

template <class T>
void avg_pool2d_bwd(const Pool2dParams& p0, const T* dy, T* dx) {
  Pool2dParams p = p0;
  pool2d_validate(p);
  log_pool("avg_pool2d_bwd");
  auto* fn = kernel_table<T>().avg_pool2d_bwd_direct[static_cast<int>(active_isa())];
  for_planes(p, [&](int64_t b, int64_t e) { fn(p, dy, dx, b, e); });
}

#define PYCONV_INSTANTIATE(T)                                                                     \
  template void max_pool2d_fwd<T>(const Pool2dParams&, const T*, T*, int64_t*);                  \
  template void max_pool2d_bwd<T>(const Pool2dParams&, const T*, const T*, const int64_t*, T*);   \
  template void avg_pool2d_fwd<T>(const Pool2dParams&, const T*, T*);                            \
  template void avg_pool2d_bwd<T>(const Pool2dParams&, const T*, T*);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
