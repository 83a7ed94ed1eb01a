// Public C++ API of the convolution operator (no pybind11 here).
//
//   input  x[N][C][H][W]        weight w[K][C/groups][R][S]     bias b[K]
//   output y[N][K][OH][OW]      OH = (H + pad_t + pad_b - dil_h*(R-1) - 1) / stride_h + 1   (floor)
//
// Cross-correlation, as torch.nn.functional.conv2d. Non-zero padding modes behave as
// F.pad(x, mode) followed by an unpadded convolution, without materialising the padded copy.
// Every entry point validates its parameters (std::invalid_argument), chooses an algorithm,
// splits work over pyconv's worker threads and is safe to call from several threads at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pyconv/registry.h"  // PadMode, ConvAlgo, ConvDir

namespace pyconv {

struct Conv2dParams {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t k = 0, r = 0, s = 0;         // weight: k x (c/groups) x r x s
  int64_t groups = 1;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_t = 0, pad_b = 0, pad_l = 0, pad_r = 0;
  PadMode mode = PadMode::zeros;
  int64_t oh = 0, ow = 0;  // filled in by conv2d_validate
};

// Checks every field and fills in oh/ow (the rule above); throws std::invalid_argument naming
// the field.
void conv2d_validate(Conv2dParams& p);

// padding="same" (stride 1) in one dimension: dil*(k-1) in total, the extra pixel of an odd total
// after (bottom/right). False when dil or k is below 1 or the total overflows.
bool conv2d_same_pads(int64_t dil, int64_t k, int64_t& before, int64_t& after);

// The "auto" rule (conv2d/selection.cpp): the algorithm whose entries auto tries first.
ConvAlgo conv2d_choose_algo(const Conv2dParams& p, ConvDir dir);

// Which implementation-list entry a call would run (conv2d/impl_list.cpp), for elements of
// elem_size bytes at the current workspace limit and thread count: its name as PYCONV_VERBOSE
// logs it, its algorithm, whether it is the explicit fallback, and each entry tried before it
// with the reason it did not run.
struct Conv2dPlan {
  std::string entry;
  ConvAlgo algo = ConvAlgo::automatic;
  bool fallback = false;
  std::vector<std::pair<std::string, std::string>> skipped;
};
Conv2dPlan conv2d_plan(const Conv2dParams& p, ConvDir dir, ConvAlgo algo, size_t elem_size);

// Bytes of im2col column buffers one call allocates with `threads` threads. Only the input-
// gradient pass has them (the forward and weight-gradient passes pack GEMM panels straight from
// the input); 0 for 1x1 stride-1 layers. Bounded by workspace_limit().
int64_t conv2d_column_bytes(const Conv2dParams& p, size_t elem_size, int threads);

template <class T>
void conv2d_fwd(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y, ConvAlgo algo);
// Weights packed once for im2col's GEMM (inference graphs): per group, the A operand's MR-row
// panels for the tile of the ISA active when packed; any other ISA packs per call as usual.
template <class T>
struct Im2colWeights {
  Isa isa = Isa::scalar;
  int64_t k = 0, cg = 0, r = 0, s = 0, groups = 1, group_elems = 0;
  std::vector<T> data;
};
template <class T>
Im2colWeights<T> conv2d_pack_im2col_weights(const T* w, int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups);

// The inference conv: y = clamp(conv(x, w) + b + res, lo, hi) (res: null or shaped as y). The
// algorithms whose stores can take it (im2col's GEMM) apply it in registers; the others get one
// pass over y after the conv. packed (optional, from w): im2col's GEMM reads it instead of packing w.
template <class T>
void conv2d_fwd_fused(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y, ConvAlgo algo, const T* res,
                      T lo, T hi, const Im2colWeights<T>* packed = nullptr);
template <class T>
void conv2d_bwd_data(const Conv2dParams& p, const T* dy, const T* w, T* dx, ConvAlgo algo);
template <class T>
void conv2d_bwd_weight(const Conv2dParams& p, const T* x, const T* dy, T* dw, ConvAlgo algo);

// precision="bfloat16" (conv2d/bf16.cpp): float32 in and out; x and w rounded to bfloat16 (ties
// to even), their products summed in float32. On AMX tiles when the level is amx (subnormal
// operands then count as zero, as the instructions define), else the rounded operands go through
// the float32 kernels. Weights are rounded and packed once (Bf16ConvWeights, for inference).
class Bf16ConvWeights {
 public:
  Bf16ConvWeights(const float* w, int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups);
  ~Bf16ConvWeights();
  Bf16ConvWeights(const Bf16ConvWeights&) = delete;
  Bf16ConvWeights& operator=(const Bf16ConvWeights&) = delete;
  const int64_t k, cg, r, s, groups;
  const float* rounded() const;   // w rounded, float32 (the float32 path's)
  const uint16_t* tiles() const;  // the AMX layout (null without AMX kernels)

 private:
  struct Packed;
  std::unique_ptr<Packed> packed_;
};
// y = min(max(conv(x, w) + b + residual, lo), hi); b and residual may be null. w packed once, or
// float32 w[k][c/groups][r][s] packed for this call.
void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const Bf16ConvWeights& w, const float* b, float* y,
                     const float* residual, float lo, float hi);
void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const float* w, const float* b, float* y,
                     const float* residual, float lo, float hi);

}  // namespace pyconv
