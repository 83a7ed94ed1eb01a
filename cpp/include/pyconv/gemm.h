// Blocked GEMM (BLIS-style five loops around an MR x NR register micro-kernel).
//   C[M][N] (+)= A[M][K] * B[K][N]
// prepacked_a: A already in the packed layout (conv2d_pack_im2col_weights), else packed here.
//   A(i,k) = A[i*rsa + k*csa], B(k,j) = B[k*rsb + j*csb], C(i,j) = C[i*ldc + j]
// Any strides, so transposed operands cost nothing but a different packing walk.
// Work is split over the columns (or rows) of C only, never over K, so the result does not
// depend on the thread count.
#pragma once
#include <cstdint>
#include <limits>
#include "pyconv/isa.h"

namespace pyconv {

struct GemmTile {
  int mr, nr;           // micro-kernel tile (registers)
  int64_t mc, kc, nc;   // cache blocks: A block mc x kc, B panel kc x nc
};

// One row per ISA: float tile, double tile. The micro-kernels are instantiated from this table.
constexpr GemmTile kGemmTiles[3][2] = {
    /* scalar (SSE2) */ {{6, 8, 144, 256, 1024}, {6, 4, 144, 256, 1024}},
    /* avx2 + fma    */ {{6, 16, 144, 256, 1024}, {6, 8, 144, 256, 1024}},
    /* avx512        */ {{14, 32, 168, 256, 1024}, {14, 16, 168, 256, 1024}},
};

constexpr int gemm_max_nr() {
  int m = 0;
  for (const auto& isa : kGemmTiles)
    for (const GemmTile& t : isa) m = t.nr > m ? t.nr : m;
  return m;
}

template <class T>
constexpr const GemmTile& gemm_tile(Isa isa) {
  return kGemmTiles[static_cast<int>(isa)][sizeof(T) == 8 ? 1 : 0];
}

// Applied as C's last K block is stored, while the tile is in registers:
//   C(i,j) = clamp(sum + row_bias[i] + col_bias[j] + res[i*ldr + j], lo, hi)
// (null pointers: no term; clamp as torch.clamp, NaN passes). A convolution's bias, residual and
// ReLU / ReLU6 without another pass over the output.
template <class T>
struct GemmEpilogue {
  const T* row_bias = nullptr;
  const T* col_bias = nullptr;
  const T* res = nullptr;
  int64_t ldr = 0;
  T lo = -std::numeric_limits<T>::infinity();
  T hi = std::numeric_limits<T>::infinity();
  // The same epilogue for the block of C starting at row i, column j.
  GemmEpilogue at(int64_t i, int64_t j) const {
    GemmEpilogue e = *this;
    if (row_bias) e.row_bias += i;
    if (col_bias) e.col_bias += j;
    if (res) e.res += i * ldr + j;
    return e;
  }
  // One element (the driver's edge columns; the micro-kernel does the same on vectors).
  T apply(T v, int64_t i, int64_t j) const {
    if (row_bias) v += row_bias[i];
    if (col_bias) v += col_bias[j];
    if (res) v += res[i * ldr + j];
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
  }
};

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate, int nthreads,
          const GemmEpilogue<T>* epilogue = nullptr, const T* prepacked_a = nullptr);
// The same on the given ISA's tile (a prepacked_a was packed for one ISA: the caller resolves it
// once, so that a concurrent set_max_isa cannot mix tiles).
template <class T>
void gemm_isa(Isa isa, int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
              int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate, int nthreads,
              const GemmEpilogue<T>* epilogue = nullptr, const T* prepacked_a = nullptr);

}  // namespace pyconv
