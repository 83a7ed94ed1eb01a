// GEMM micro-kernel, written once with GCC/Clang vector extensions and compiled per ISA:
// the vector width follows the ISA (16 bytes baseline SSE2, 32 AVX2, 64 AVX-512) and the
// tile (MR rows x NR columns) comes from kGemmTiles, so every ISA keeps MR*NR/VL accumulators
// in registers. Included with PYCONV_ISA set to the ISA's namespace name.
//
//   c[rows][NR] (+)= sum_k a[k][0..rows) (packed MR-row panel) x b[k][0..NR) (packed panel)
#include <cstdint>
#include <utility>

#include "gemm/pack_t.h"
#include "kernels.h"
#include "pyconv/gemm.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

constexpr Isa kIsa = Isa::PYCONV_ISA;
constexpr int kVecBytes = isa_vec_bytes(kIsa);

// ROWS <= MR rows of the tile (the panel keeps its MR stride): an edge panel of M (64 filters
// are 4 full panels and one of 8 rows) costs ROWS/MR of a full one instead of all of it.
template <class T, int ROWS>
void ukernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c, int64_t ldc,
             bool accumulate, const GemmEpilogue<T>* ep) {
  constexpr int VL = kVecBytes / static_cast<int>(sizeof(T));
  constexpr int MR = gemm_tile<T>(kIsa).mr;
  constexpr int NV = gemm_tile<T>(kIsa).nr / VL;
  static_assert(gemm_tile<T>(kIsa).nr % VL == 0, "NR must be a multiple of the vector length");
  static_assert(ROWS >= 1 && ROWS <= MR, "1 <= ROWS <= MR");
  typedef T vec __attribute__((vector_size(kVecBytes)));
  vec acc[ROWS][NV] = {};
  for (int64_t k = 0; k < kc; ++k) {
    vec bv[NV];
    for (int j = 0; j < NV; ++j) __builtin_memcpy(&bv[j], b + k * NV * VL + j * VL, sizeof(vec));
    for (int i = 0; i < ROWS; ++i) {
      // scalar * vector: a broadcast straight from memory (no `0 + a` add on the FMA ports).
      const T ai = a[k * MR + i];
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
    }
  }
  if (ep == nullptr) {
    for (int i = 0; i < ROWS; ++i) {
      for (int j = 0; j < NV; ++j) {
        T* dst = c + i * ldc + j * VL;
        vec v = acc[i][j];
        if (accumulate) {
          vec old;
          __builtin_memcpy(&old, dst, sizeof(vec));
          v += old;
        }
        __builtin_memcpy(dst, &v, sizeof(vec));
      }
    }
    return;
  }
  const vec lo = vec{} + ep->lo, hi = vec{} + ep->hi;
  vec cb[NV];
  for (int j = 0; j < NV; ++j) {
    cb[j] = vec{};
    if (ep->col_bias) __builtin_memcpy(&cb[j], ep->col_bias + j * VL, sizeof(vec));
  }
  for (int i = 0; i < ROWS; ++i) {
    const T rb = ep->row_bias ? ep->row_bias[i] : T(0);
    for (int j = 0; j < NV; ++j) {
      T* dst = c + i * ldc + j * VL;
      vec v = acc[i][j];
      if (accumulate) {
        vec old;
        __builtin_memcpy(&old, dst, sizeof(vec));
        v += old;
      }
      if (ep->row_bias) v += rb;
      if (ep->col_bias) v += cb[j];
      if (ep->res) {
        vec r;
        __builtin_memcpy(&r, ep->res + i * ep->ldr + j * VL, sizeof(vec));
        v += r;
      }
      v = v < lo ? lo : v;
      v = v > hi ? hi : v;
      __builtin_memcpy(dst, &v, sizeof(vec));
    }
  }
}

template <class T, int... R>
void ukernel_rows(int rows, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, bool accumulate,
                  const GemmEpilogue<T>* ep, std::integer_sequence<int, R...>) {
  using fn = void(int64_t, const T*, const T*, T*, int64_t, bool, const GemmEpilogue<T>*);
  static constexpr fn* table[] = {&ukernel<T, R + 1>...};
  table[rows - 1](kc, a, b, c, ldc, accumulate, ep);
}

template <class T>
void ukernel_any(int rows, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, bool accumulate,
                 const GemmEpilogue<T>* ep) {
  constexpr int MR = gemm_tile<T>(kIsa).mr;
  if (rows == MR) return ukernel<T, MR>(kc, a, b, c, ldc, accumulate, ep);
  ukernel_rows<T>(rows, kc, a, b, c, ldc, accumulate, ep, std::make_integer_sequence<int, MR>());
}

}  // namespace

void PYCONV_CAT(gemm_ukernel, PYCONV_ISA)(int rows, int64_t kc, const float* a, const float* b, float* c,
                                          int64_t ldc, bool accumulate, const GemmEpilogue<float>* ep) {
  ukernel_any<float>(rows, kc, a, b, c, ldc, accumulate, ep);
}
void PYCONV_CAT(gemm_ukernel, PYCONV_ISA)(int rows, int64_t kc, const double* a, const double* b, double* c,
                                          int64_t ldc, bool accumulate, const GemmEpilogue<double>* ep) {
  ukernel_any<double>(rows, kc, a, b, c, ldc, accumulate, ep);
}

void PYCONV_CAT(gemm_pack_t, PYCONV_ISA)(const float* src, int64_t ld, int64_t rows, int64_t len, int w,
                                         float* dst) {
  pack_t<kVecBytes>(src, ld, rows, len, w, dst);
}
void PYCONV_CAT(gemm_pack_t, PYCONV_ISA)(const double* src, int64_t ld, int64_t rows, int64_t len, int w,
                                         double* dst) {
  pack_t<kVecBytes>(src, ld, rows, len, w, dst);
}

void PYCONV_CAT(gemm_pack_n, PYCONV_ISA)(const float* src, int64_t ld, int64_t kb, int64_t nb, float* dst) {
  pack_n<gemm_tile<float>(kIsa).nr>(src, ld, kb, nb, dst);
}
void PYCONV_CAT(gemm_pack_n, PYCONV_ISA)(const double* src, int64_t ld, int64_t kb, int64_t nb, double* dst) {
  pack_n<gemm_tile<double>(kIsa).nr>(src, ld, kb, nb, dst);
}

}  // namespace PYCONV_ISA
}  // namespace pyconv
