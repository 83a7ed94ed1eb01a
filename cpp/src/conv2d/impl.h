// Internal to the conv2d operator: one call as the implementation lists see it, and the guards
// and runs of every algorithm family's drivers (blocked.cpp, direct.cpp, im2col.cpp, winograd*).
//
// A guard returns nullptr when its entry applies to the shape, else why not; a fit returns
// nullptr when the entry's buffers fit the workspace limit (for elements of `elem` bytes and
// `nt` threads), else why not; a run does the whole call and returns true, or returns false
// having written nothing when its buffers do not fit (the same condition as its fit).
#pragma once
#include <cstddef>
#include <limits>

#include "conv2d/conv_maps.h"
#include "kernels.h"
#include "pyconv/conv2d.h"

namespace pyconv {

template <class T>
struct ConvCall {
  const Conv2dParams& p;  // validated
  const ConvMaps& maps;
  ConvArgs<T> a;          // maps and the direction's arrays (x, w, b, y / dy, w, dx / x, dy, dw)
  int nt;                 // threads for this call
  // Forward epilogue after the bias: y = clamp(y + res, lo, hi) (conv2d_fwd_fused). An
  // implementation that applies it sets epilogue_done; otherwise conv2d_fwd_fused does after.
  const T* res = nullptr;
  T lo = -std::numeric_limits<T>::infinity(), hi = std::numeric_limits<T>::infinity();
  bool epilogue_done = false;
  const Im2colWeights<T>* packed = nullptr;  // im2col's GEMM A, packed once (inference)
};

using ConvGuard = const char* (*)(const Conv2dParams&, ConvDir);
using ConvFit = const char* (*)(const Conv2dParams&, ConvDir, size_t elem, int nt);

// Register-blocked direct kernels (blocked.cpp).
const char* blocked_guard(const Conv2dParams& p, ConvDir dir);
const char* blocked_fit(const Conv2dParams& p, ConvDir dir, size_t elem, int nt);
bool wgrad_by_filter(const Conv2dParams& p);
template <class T> bool blocked_fwd(ConvCall<T>& c);
template <class T> bool blocked_bwd_data(ConvCall<T>& c);
template <class T> bool blocked_bwd_weight(ConvCall<T>& c);

// Row-AXPY direct kernels, and the depthwise input gradient run as a forward (direct.cpp).
const char* depthwise_as_fwd_guard(const Conv2dParams& p, ConvDir dir);
const char* depthwise_as_fwd_fit(const Conv2dParams& p, ConvDir dir, size_t elem, int nt);
template <class T> bool depthwise_bwd_data_as_fwd(ConvCall<T>& c);
template <class T> bool direct_fwd(ConvCall<T>& c);
template <class T> bool direct_bwd_data(ConvCall<T>& c);
template <class T> bool direct_bwd_weight(ConvCall<T>& c);

// Implicit im2col + GEMM, and 1x1 layers as a plain GEMM (im2col.cpp).
const char* pointwise_guard(const Conv2dParams& p, ConvDir dir);
template <class T> bool im2col_fwd(ConvCall<T>& c);
template <class T> bool im2col_bwd_data(ConvCall<T>& c);
template <class T> bool im2col_bwd_weight(ConvCall<T>& c);

}  // namespace pyconv
