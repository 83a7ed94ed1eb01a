// precision="bfloat16" forward: AMX tiles where the CPU, the OS and the ISA cap allow them, else
// the definition itself (operands rounded to bfloat16 in float32, then the float32 kernels).
#include <cstring>
#include <stdexcept>

#include "conv2d/bf16.h"
#include "kernels.h"
#include "pyconv/eltwise.h"
#include "pyconv/isa.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {

namespace {

// Round to nearest bfloat16, ties to even, kept as float32; NaN stays NaN.
void round_bf16(const float* src, float* dst, int64_t n, int threads) {
  parallel_for(n, threads_for(n, threads), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint32_t u;
      std::memcpy(&u, src + i, 4);
      if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        u |= 0x00400000u;
      } else {
        u += 0x7FFFu + ((u >> 16) & 1u);
      }
      u &= 0xFFFF0000u;
      std::memcpy(dst + i, &u, 4);
    }
  });
}

Conv2dParams weight_params(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups) {
  Conv2dParams p;
  p.k = k, p.c = cg * groups, p.r = r, p.s = s, p.groups = groups;
  return p;
}

// Tiles of 32 output channels x 32 k: too empty for depthwise and thin grouped layers, whose
// own float32 kernels run on the rounded operands instead.
bool amx_applies(const Conv2dParams& p) { return p.k / p.groups >= 16 && p.r * p.s * (p.c / p.groups) >= 16; }

}  // namespace

struct Bf16ConvWeights::Packed {
  Buffer<float> rounded;  // the float32 path's weights
  Buffer<uint16_t> tiles;  // the AMX layout; empty where AMX is not usable
};

Bf16ConvWeights::Bf16ConvWeights(const float* w, int64_t k_, int64_t cg_, int64_t r_, int64_t s_, int64_t groups_)
    : k(k_), cg(cg_), r(r_), s(s_), groups(groups_), packed_(new Packed) {
  if (k < 1 || cg < 1 || r < 1 || s < 1 || groups < 1 || k % groups)
    throw std::invalid_argument("bfloat16 weights: need k, c/groups, r, s, groups >= 1 with groups dividing k");
  const int64_t n = k * cg * r * s;
  const int threads = num_threads();
  packed_->rounded = Buffer<float>(static_cast<size_t>(n));
  round_bf16(w, packed_->rounded.get(), n, threads);
#if defined(PYCONV_HAVE_AMX)
  if (detected_isa() == Isa::amx && amx_applies(weight_params(k, cg, r, s, groups))) {
    const amx::WeightLayout l = amx::weight_layout(k, cg, r, s, groups);
    packed_->tiles = Buffer<uint16_t>(static_cast<size_t>(l.elems));
    amx::pack_weights(weight_params(k, cg, r, s, groups), w, packed_->tiles.get(), threads);
  }
#endif
}

Bf16ConvWeights::~Bf16ConvWeights() = default;

const char* conv2d_bf16_kernel() { return active_level() == Isa::amx ? "amx" : "float32"; }

bool conv2d_bf16_tiles(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups) {
#if defined(PYCONV_HAVE_AMX)
  return active_level() == Isa::amx && groups >= 1 && amx_applies(weight_params(k, cg, r, s, groups));
#else
  (void)k, (void)cg, (void)r, (void)s, (void)groups;
  return false;
#endif
}

void conv2d_fwd_bf16(const Conv2dParams& params, const float* x, const Bf16ConvWeights& w, const float* b, float* y,
                     const float* residual, float lo, float hi) {
  Conv2dParams p = params;
  conv2d_validate(p);
  if (p.k != w.k || p.c != w.cg * w.groups || p.r != w.r || p.s != w.s || p.groups != w.groups)
    throw std::invalid_argument("bfloat16 weights were packed for another shape or groups");
  if (!(lo <= hi)) throw std::invalid_argument("conv2d bfloat16: need lo <= hi");
  const int threads = num_threads();
  Epilogue ep;
  ep.residual = residual, ep.lo = lo, ep.hi = hi;
#if defined(PYCONV_HAVE_AMX)
  if (active_level() == Isa::amx && w.packed().tiles.get()) {
    log_choice("conv2d", "conv2d_fwd_bf16_amx");
    amx::conv2d_fwd_bf16(p, x, w.packed().tiles.get(), b, y, threads, ep);
    return;
  }
#endif
  log_choice("conv2d", "conv2d_fwd_bf16: float32 kernels on rounded operands");
  const int64_t nx = p.n * p.c * p.h * p.w;
  Buffer<float> xr(static_cast<size_t>(nx));
  round_bf16(x, xr.get(), nx, threads);
  conv2d_fwd<float>(p, xr.get(), w.packed().rounded.get(), b, y, ConvAlgo::automatic);
  if (ep.active()) clamp_add<float>(y, residual, lo, hi, p.n * p.k * p.oh * p.ow);
}

}  // namespace pyconv
