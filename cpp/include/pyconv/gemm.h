// Blocked GEMM (BLIS-style five loops around an MR x NR register micro-kernel).
//   C[M][N] (+)= A[M][K] * B[K][N]
//   A(i,k) = A[i*rsa + k*csa], B(k,j) = B[k*rsb + j*csb], C(i,j) = C[i*ldc + j]
// Any strides, so transposed operands cost nothing but a different packing walk.
// Work is split over the columns (or rows) of C only, never over K, so the result does not
// depend on the thread count.
#pragma once
#include <cstdint>
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

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B,
          int64_t rsb, int64_t csb, T* C, int64_t ldc, bool accumulate, int nthreads);

}  // namespace pyconv
