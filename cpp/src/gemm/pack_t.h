// Transposing panel pack: dst[k*w + i] = src[i*ld + k] (i < rows, else 0) for k < len, i < w.
// The GEMM operands whose K runs along memory (the weight gradient's dy and input columns, a
// transposed A or B) are packed with it: VL x VL blocks transposed in registers (log2(VL) rounds
// of two-vector interleaves) instead of one scalar store per element.
// The template is instantiated per ISA (vector width VB bytes); gemm_pack_t_<isa> exports it to
// the generic GEMM driver.
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>

#include "pyconv/isa.h"

namespace pyconv {

namespace pack_detail {

template <class V, int VL, size_t... I>
inline V zip_lo(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>((I % 2) * VL + I / 2)...);
}
template <class V, int VL, size_t... I>
inline V zip_hi(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>((I % 2) * VL + VL / 2 + I / 2)...);
}

// Elements 0, 2, 4, ... of the concatenation of a and b.
template <class V, int VL, size_t... I>
inline V take_even(V a, V b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(2 * I)...);
}

// m[i] = row i in, m[j] = column j out. Each round interleaves rows i and i + VL/2 into rows
// 2i, 2i+1: a perfect shuffle of the flattened block, i.e. a rotation of its index bits; log2(VL)
// rounds swap the row and column bits.
template <class V, int VL>
inline void transpose(V* m) {
  for (int round = 1; round < VL; round *= 2) {
    V t[VL];
#pragma GCC unroll 16
    for (int i = 0; i < VL / 2; ++i) {
      t[2 * i] = zip_lo<V, VL>(m[i], m[i + VL / 2], std::make_index_sequence<VL>());
      t[2 * i + 1] = zip_hi<V, VL>(m[i], m[i + VL / 2], std::make_index_sequence<VL>());
    }
#pragma GCC unroll 16
    for (int i = 0; i < VL; ++i) m[i] = t[i];
  }
}

}  // namespace pack_detail

template <int VB, class T>
inline void pack_t(const T* src, int64_t ld, int64_t rows, int64_t len, int w, T* __restrict dst) {
  typedef T V __attribute__((vector_size(VB)));
  constexpr int VL = VB / static_cast<int>(sizeof(T));
  const int groups = (w + VL - 1) / VL;
  // Whole vectors are stored even where w is not a multiple of VL: a store past the group's
  // width lands on later k rows' first columns, which the groups to its left (done later, hence
  // the reverse order) or the next k of the same group overwrite. Stores that would pass the end
  // of dst[0, len*w) are exact.
  for (int gi = groups - 1; gi >= 0; --gi) {
    const int i0 = gi * VL, ncol = w - i0 < VL ? w - i0 : VL;
    const int64_t nrow = rows - i0 < 0 ? 0 : rows - i0 > VL ? VL : rows - i0;
    const T* s0 = src + i0 * ld;
    for (int64_t k = 0; k < len; k += VL) {
      const int64_t nk = len - k < VL ? len - k : VL;
      V m[VL];
      if (nk == VL) {
#pragma GCC unroll 16
        for (int i = 0; i < VL; ++i) {
          V v{};
          if (i < nrow) std::memcpy(&v, s0 + i * ld + k, sizeof(V));
          m[i] = v;
        }
      } else {
        for (int i = 0; i < VL; ++i) {
          T tmp[VL] = {};
          for (int64_t j = 0; i < nrow && j < nk; ++j) tmp[j] = s0[i * ld + k + j];
          std::memcpy(&m[i], tmp, sizeof(V));
        }
      }
      pack_detail::transpose<V, VL>(m);
      if (nk == VL && (k + VL - 1) * w + i0 + VL <= len * w) {
#pragma GCC unroll 16
        for (int j = 0; j < VL; ++j) std::memcpy(dst + (k + j) * w + i0, &m[j], sizeof(V));
        continue;
      }
      for (int64_t j = 0; j < nk; ++j) {
        T* d = dst + (k + j) * w + i0;
        if ((k + j) * w + i0 + VL <= len * w) {
          std::memcpy(d, &m[j], sizeof(V));
        } else {
          T tmp[VL];
          std::memcpy(tmp, &m[j], sizeof(V));
          for (int i = 0; i < ncol; ++i) d[i] = tmp[i];
        }
      }
    }
  }
}

// Row-contiguous pack: dst[panel][k][j] = src[k*ld + panel*NR + j] (j < nb, else 0), whole NR-wide
// pieces copied as fixed-size blocks.
template <int NR, class T>
inline void pack_n(const T* src, int64_t ld, int64_t kb, int64_t nb, T* __restrict dst) {
  const int64_t panel = kb * NR;
  for (int64_t k = 0; k < kb; ++k) {
    const T* s = src + k * ld;
    T* d = dst + k * NR;
    int64_t j0 = 0;
    for (; j0 + NR <= nb; j0 += NR, d += panel) std::memcpy(d, s + j0, NR * sizeof(T));
    if (j0 < nb) {
      int64_t j = 0;
      for (; j < nb - j0; ++j) d[j] = s[j0 + j];
      for (; j < NR; ++j) d[j] = T(0);
    }
  }
}

template <class T>
using gemm_pack_t_fn = void(const T* src, int64_t ld, int64_t rows, int64_t len, int w, T* dst);
// pack_n with the NR of the ISA's tile.
template <class T>
using gemm_pack_n_fn = void(const T* src, int64_t ld, int64_t kb, int64_t nb, T* dst);

#define PYCONV_PACK_T_DECL(isa)                                                                     \
  namespace isa {                                                                                   \
  void gemm_pack_t_##isa(const float* src, int64_t ld, int64_t rows, int64_t len, int w, float* dst); \
  void gemm_pack_t_##isa(const double* src, int64_t ld, int64_t rows, int64_t len, int w, double* dst); \
  void gemm_pack_n_##isa(const float* src, int64_t ld, int64_t kb, int64_t nb, float* dst);              \
  void gemm_pack_n_##isa(const double* src, int64_t ld, int64_t kb, int64_t nb, double* dst);            \
  }
PYCONV_PACK_T_DECL(scalar)
#if defined(PYCONV_HAVE_AVX2)
PYCONV_PACK_T_DECL(avx2)
#endif
#if defined(PYCONV_HAVE_AVX512)
PYCONV_PACK_T_DECL(avx512)
#endif
#undef PYCONV_PACK_T_DECL

// The packs of `isa` (an ISA the caller already resolved, so compiled in).
template <class T>
gemm_pack_t_fn<T>* gemm_pack_t_kernel(Isa isa) {
#if defined(PYCONV_HAVE_AVX512)
  if (isa == Isa::avx512) return static_cast<gemm_pack_t_fn<T>*>(&avx512::gemm_pack_t_avx512);
#endif
#if defined(PYCONV_HAVE_AVX2)
  if (isa == Isa::avx2) return static_cast<gemm_pack_t_fn<T>*>(&avx2::gemm_pack_t_avx2);
#endif
  (void)isa;
  return static_cast<gemm_pack_t_fn<T>*>(&scalar::gemm_pack_t_scalar);
}

template <class T>
gemm_pack_n_fn<T>* gemm_pack_n_kernel(Isa isa) {
#if defined(PYCONV_HAVE_AVX512)
  if (isa == Isa::avx512) return static_cast<gemm_pack_n_fn<T>*>(&avx512::gemm_pack_n_avx512);
#endif
#if defined(PYCONV_HAVE_AVX2)
  if (isa == Isa::avx2) return static_cast<gemm_pack_n_fn<T>*>(&avx2::gemm_pack_n_avx2);
#endif
  (void)isa;
  return static_cast<gemm_pack_n_fn<T>*>(&scalar::gemm_pack_n_scalar);
}

}  // namespace pyconv
