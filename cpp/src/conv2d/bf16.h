// bfloat16 convolution kernels, for the dispatcher in bf16.cpp.
#pragma once
#include <cstdint>
#include <limits>

#include "pyconv/conv2d.h"

namespace pyconv {

// y = min(max(y + residual, lo), hi) after the conv and bias (residual may be null).
struct Epilogue {
  const float* residual = nullptr;
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  bool active() const { return residual || lo > -std::numeric_limits<float>::infinity() || hi < std::numeric_limits<float>::infinity(); }
};

namespace amx {

// The packed weights (both kernels): groups x mp rows (output channels per group padded to 32) of kp bf16
// (k = r * s * ce, ce = in-channels per group rounded up to even, padded to 32).
struct WeightLayout {
  int64_t mg = 0, ce = 0, kp = 0, mp = 0, elems = 0;
};
WeightLayout weight_layout(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups);
// Uses p.k, p.c, p.groups, p.r, p.s only.
void pack_weights(const Conv2dParams& p, const float* w, uint16_t* a, int threads);
// Validated parameters; x, y float32 NCHW; a from pack_weights; b may be null. On AMX tiles, or
// without them (tiles false) with vdpbf16ps on the same layouts.
void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const uint16_t* a, const float* b, float* y, int threads,
                     const Epilogue& ep, bool tiles);

}  // namespace amx
}  // namespace pyconv
