// precision="bfloat16" forward: AMX tiles where the CPU, the OS and the ISA cap allow them, else
// AVX512-BF16's vdpbf16ps on the same packed operands, else the definition itself (operands
// rounded to bfloat16 in float32, then the float32 kernels).
#include <cstring>
#include <mutex>
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

// Blocks of 32 output channels x 32 k: too empty for depthwise and thin grouped layers, whose
// own float32 kernels run on the rounded operands instead.
bool native_applies(const Conv2dParams& p) { return p.k / p.groups >= 16 && p.r * p.s * (p.c / p.groups) >= 16; }

}  // namespace

// Both forms are made on first use: a level cap (set_max_isa) may switch between them.
struct Bf16ConvWeights::Packed {
  Buffer<float> source;   // the weights as given
  Buffer<float> rounded;  // the float32 path's weights
  Buffer<uint16_t> tiles;  // the bfloat16 kernels' layout
  std::once_flag rounded_once, tiles_once;
};

Bf16ConvWeights::Bf16ConvWeights(const float* w, int64_t k_, int64_t cg_, int64_t r_, int64_t s_, int64_t groups_)
    : k(k_), cg(cg_), r(r_), s(s_), groups(groups_), packed_(new Packed) {
  if (k < 1 || cg < 1 || r < 1 || s < 1 || groups < 1 || k % groups)
    throw std::invalid_argument("bfloat16 weights: need k, c/groups, r, s, groups >= 1 with groups dividing k");
  const size_t n = static_cast<size_t>(k * cg * r * s);
  packed_->source = Buffer<float>(n);
  std::memcpy(packed_->source.get(), w, n * sizeof(float));
  if (conv2d_bf16_native(k, cg, r, s, groups))
    tiles();
  else
    rounded();
}

const float* Bf16ConvWeights::rounded() const {
  Packed& q = *packed_;
  std::call_once(q.rounded_once, [&] {
    const int64_t n = k * cg * r * s;
    q.rounded = Buffer<float>(static_cast<size_t>(n));
    round_bf16(q.source.get(), q.rounded.get(), n, num_threads());
  });
  return q.rounded.get();
}

const uint16_t* Bf16ConvWeights::tiles() const {
#if defined(PYCONV_HAVE_AMX)
  Packed& q = *packed_;
  std::call_once(q.tiles_once, [&] {
    const amx::WeightLayout l = amx::weight_layout(k, cg, r, s, groups);
    q.tiles = Buffer<uint16_t>(static_cast<size_t>(l.elems));
    amx::pack_weights(weight_params(k, cg, r, s, groups), q.source.get(), q.tiles.get(), num_threads());
  });
  return q.tiles.get();
#else
  return nullptr;
#endif
}

Bf16ConvWeights::~Bf16ConvWeights() = default;

const char* conv2d_bf16_kernel() {
  const Isa level = active_level();
  return level == Isa::amx ? "amx" : level == Isa::avx512_bf16 ? "avx512_bf16" : "float32";
}

bool conv2d_bf16_native(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups) {
#if defined(PYCONV_HAVE_AMX)
  return active_level() >= Isa::avx512_bf16 && groups >= 1 && native_applies(weight_params(k, cg, r, s, groups));
#else
  (void)k, (void)cg, (void)r, (void)s, (void)groups;
  return false;
#endif
}

namespace {

// One call, weights either packed (pw) or as given (w: packed into this thread's call buffers,
// which stay mapped for the next call).
void run_bf16(const Conv2dParams& params, const float* x, const Bf16ConvWeights* pw, const float* w, const float* b,
              float* y, const float* residual, float lo, float hi) {
  Conv2dParams p = params;
  conv2d_validate(p);
  if (pw && (p.k != pw->k || p.c != pw->cg * pw->groups || p.r != pw->r || p.s != pw->s || p.groups != pw->groups))
    throw std::invalid_argument("bfloat16 weights were packed for another shape or groups");
  if (!(lo <= hi)) throw std::invalid_argument("conv2d bfloat16: need lo <= hi");
  const int threads = num_threads();
  Epilogue ep;
  ep.residual = residual, ep.lo = lo, ep.hi = hi;
  const int64_t cg = p.c / p.groups;
#if defined(PYCONV_HAVE_AMX)
  if (conv2d_bf16_native(p.k, cg, p.r, p.s, p.groups)) {
    const bool tiles = active_level() == Isa::amx;
    log_choice("conv2d", tiles ? "conv2d_fwd_bf16_amx" : "conv2d_fwd_bf16_avx512_bf16");
    const uint16_t* a = nullptr;
    if (pw) {
      a = pw->tiles();
    } else {
      const amx::WeightLayout l = amx::weight_layout(p.k, cg, p.r, p.s, p.groups);
      uint16_t* buf = call_buffer<uint16_t>(7, static_cast<size_t>(l.elems));
      amx::pack_weights(p, w, buf, threads);
      a = buf;
    }
    amx::conv2d_fwd_bf16(p, x, a, b, y, threads, ep, tiles);
    return;
  }
#endif
  log_choice("conv2d", "conv2d_fwd_bf16: float32 kernels on rounded operands");
  const int64_t nx = p.n * p.c * p.h * p.w, nw = p.k * cg * p.r * p.s;
  float* xr = call_buffer<float>(6, static_cast<size_t>(nx));
  round_bf16(x, xr, nx, threads);
  const float* wr = nullptr;
  if (pw) {
    wr = pw->rounded();
  } else {
    float* buf = call_buffer<float>(7, static_cast<size_t>(nw));
    round_bf16(w, buf, nw, threads);
    wr = buf;
  }
  conv2d_fwd<float>(p, xr, wr, b, y, ConvAlgo::automatic);
  if (ep.active()) clamp_add<float>(y, residual, lo, hi, p.n * p.k * p.oh * p.ow);
}

}  // namespace

void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const Bf16ConvWeights& w, const float* b, float* y,
                     const float* residual, float lo, float hi) {
  run_bf16(p, x, &w, nullptr, b, y, residual, lo, hi);
}

void conv2d_fwd_bf16(const Conv2dParams& p, const float* x, const float* w, const float* b, float* y,
                     const float* residual, float lo, float hi) {
  run_bf16(p, x, nullptr, w, b, y, residual, lo, hi);
}

}  // namespace pyconv
