// GEMM driver: packing and the five loops around the micro-kernel (BLIS's structure), as a
// template over how B is packed, so that the convolution can pack B panels straight from the
// NCHW input (implicit im2col) instead of from a column buffer.
// Threads split the columns of C (or its rows when C is narrow), each thread running the serial
// loops on its part with its own packing buffers; K is never split, so results are identical
// for any thread count.
//
// pack_b(pc, kb, jc, nb, bp): pack B rows [pc, pc+kb) x columns [jc, jc+nb) into NR-column
// panels bp[panel][k][j], zero-padded to NR columns.
#pragma once
#include <algorithm>
#include <cstdint>

#include "gemm/pack_t.h"
#include "kernels.h"
#include "pyconv/gemm.h"
#include "pyconv/parallel.h"
#include "workspace.h"

namespace pyconv {
namespace gemm_detail {

// Packs an mb x kb block of A into MR-row panels: ap[panel][k][i], zero-padded to MR rows.
// Row-major A (csa == 1: the weights, or dy in the weight gradient) is a transposing pack.
template <class T>
void pack_a(int64_t mb, int64_t kb, const T* A, int64_t rsa, int64_t csa, int mr, gemm_pack_t_fn<T>* pack_tr,
            T* ap) {
  for (int64_t i0 = 0; i0 < mb; i0 += mr) {
    const int64_t rows = std::min<int64_t>(mr, mb - i0);
    if (csa == 1) {
      pack_tr(A + i0 * rsa, rsa, rows, kb, mr, ap);
    } else {
      for (int64_t k = 0; k < kb; ++k) {
        const T* src = A + i0 * rsa + k * csa;
        int64_t i = 0;
        for (; i < rows; ++i) ap[k * mr + i] = src[i * rsa];
        for (; i < mr; ++i) ap[k * mr + i] = T(0);
      }
    }
    ap += kb * mr;
  }
}

// A packed once for the whole call: block (pc, ic) of the serial loops at
// (pc / kc) * (Mp * kc) + ic * kb (Mp = M rounded up to MR), shared by every thread and column
// block instead of being packed again per thread and per nc columns.
template <class T>
struct PrepackedA {
  const T* data = nullptr;
  int64_t mp = 0;  // M rounded up to MR
};

template <class T, class PackB>
void gemm_serial(const GemmTile& t, gemm_ukernel_fn<T>* uk, gemm_pack_t_fn<T>* pack_tr, int64_t M, int64_t N,
                 int64_t K, const T* A, int64_t rsa, int64_t csa, PackB&& pack_b, T* C, int64_t ldc, bool accumulate,
                 const GemmEpilogue<T>* ep, PrepackedA<T> pre = {}, int64_t pre_row0 = 0) {
  const int mr = t.mr, nr = t.nr;
  T* ap = pre.data ? nullptr : scratch<T>(0, static_cast<size_t>(t.mc * t.kc));
  T* bp = scratch<T>(1, static_cast<size_t>(t.kc * (t.nc + nr)));
  alignas(64) T edge[14 * 32];  // largest tile in kGemmTiles
  for (int64_t jc = 0; jc < N; jc += t.nc) {  // loop 5: columns of C, nc at a time
    const int64_t nb = std::min(t.nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += t.kc) {  // loop 4: K, kc at a time (never parallel)
      const int64_t kb = std::min(t.kc, K - pc);
      const bool acc = accumulate || pc > 0;
      const bool last = pc + kb >= K;  // the epilogue goes with the last K block's store
      pack_b(pc, kb, jc, nb, bp);
      for (int64_t ic = 0; ic < M; ic += t.mc) {  // loop 3: rows of C, mc at a time
        const int64_t mb = std::min(t.mc, M - ic);
        if (pre.data != nullptr) {  // rows [pre_row0 + ic, ...) of the prepacked A (pre_row0 % MR == 0)
          ap = const_cast<T*>(pre.data) + (pc / t.kc) * (pre.mp * t.kc) + (pre_row0 + ic) * kb;
        } else {
          pack_a(mb, kb, A + ic * rsa + pc * csa, rsa, csa, mr, pack_tr, ap);
        }
        for (int64_t jr = 0; jr < nb; jr += nr) {  // loop 2: NR-column micro-panels
          const int64_t cols = std::min<int64_t>(nr, nb - jr);
          for (int64_t ir = 0; ir < mb; ir += mr) {  // loop 1: MR-row micro-panels
            const int64_t rows = std::min<int64_t>(mr, mb - ir);
            T* c = C + (ic + ir) * ldc + jc + jr;
            const T* a = ap + ir * kb;
            const T* b = bp + jr * kb;
            const GemmEpilogue<T> e = last && ep ? ep->at(ic + ir, jc + jr) : GemmEpilogue<T>{};
            if (cols == nr) {
              uk(static_cast<int>(rows), kb, a, b, c, ldc, acc, last && ep ? &e : nullptr);
              continue;
            }
            // Edge columns: the rows into a buffer, then the valid part (same sums, same bits).
            uk(static_cast<int>(rows), kb, a, b, edge, nr, false, nullptr);
            for (int64_t i = 0; i < rows; ++i)
              for (int64_t j = 0; j < cols; ++j) {
                const T v = acc ? c[i * ldc + j] + edge[i * nr + j] : edge[i * nr + j];
                c[i * ldc + j] = last && ep ? e.apply(v, i, j) : v;
              }
          }
        }
      }
    }
  }
}

// A (M x K) packed for the whole call into buf (mp * K elements, mp = M rounded up to MR): the
// layout PrepackedA reads.
template <class T>
void prepack_a(const GemmTile& t, gemm_pack_t_fn<T>* pack_tr, int64_t M, int64_t K, const T* A, int64_t rsa,
               int64_t csa, T* buf, int nthreads) {
  const int64_t mp = (M + t.mr - 1) / t.mr * t.mr;
  const int64_t kblocks = (K + t.kc - 1) / t.kc, mblocks = (M + t.mc - 1) / t.mc;
  parallel_for(kblocks * mblocks, nthreads, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t pc = (b / mblocks) * t.kc, ic = (b % mblocks) * t.mc;
      const int64_t kb = std::min(t.kc, K - pc), mb = std::min(t.mc, M - ic);
      pack_a(mb, kb, A + ic * rsa + pc * csa, rsa, csa, t.mr, pack_tr, buf + (pc / t.kc) * (mp * t.kc) + ic * kb);
    }
  });
}

}  // namespace gemm_detail

// C[M][N] (+)= A * B with B supplied by pack_b (see above), then the epilogue if any.
// `isa` is resolved once by the caller, so its packing and the micro-kernel agree on the tile
// even if the ISA cap changes meanwhile.
template <class T, class PackB>
void gemm_custom_b(Isa isa, int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, PackB&& pack_b,
                   T* C, int64_t ldc, bool accumulate, int nthreads, const GemmEpilogue<T>* ep = nullptr,
                   const T* prepacked_a = nullptr) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const T v = accumulate ? C[i * ldc + j] : T(0);
        C[i * ldc + j] = ep ? ep->apply(v, i, j) : v;
      }
    return;
  }
  const GemmTile& t = gemm_tile<T>(isa);
  gemm_ukernel_fn<T>* uk = kernel_table<T>().gemm_ukernel[static_cast<int>(isa)];
  gemm_pack_t_fn<T>* pack_tr = gemm_pack_t_kernel<T>(isa);
  const int64_t col_panels = (N + t.nr - 1) / t.nr, row_panels = (M + t.mr - 1) / t.mr;
  const bool split_cols = nthreads > 1 && (col_panels >= 2 || row_panels >= 2) &&
                          (col_panels >= 2 * static_cast<int64_t>(nthreads) || col_panels >= row_panels);
  // Prepack A when it would otherwise be packed more than once (several threads over the
  // columns, or several nc blocks), within a few MiB of the calling thread's scratch.
  gemm_detail::PrepackedA<T> pre;
  const int64_t mp = row_panels * t.mr;
  const int64_t col_blocks = (N + t.nc - 1) / t.nc;
  constexpr int64_t kMaxPrepackBytes = int64_t{16} << 20;
  if (prepacked_a != nullptr) {  // packed by the caller for this ISA's tile (gemm_detail::prepack_a)
    pre.data = prepacked_a;
    pre.mp = mp;
  } else if ((split_cols || col_blocks > 1) && mp * K * static_cast<int64_t>(sizeof(T)) <= kMaxPrepackBytes) {
    T* buf = scratch<T>(2, static_cast<size_t>(mp * K));
    gemm_detail::prepack_a(t, pack_tr, M, K, A, rsa, csa, buf, split_cols ? nthreads : 1);
    pre.data = buf;
    pre.mp = mp;
  }
  if (nthreads <= 1 || (col_panels < 2 && row_panels < 2)) {
    gemm_detail::gemm_serial(t, uk, pack_tr, M, N, K, A, rsa, csa, pack_b, C, ldc, accumulate, ep, pre);
  } else if (split_cols) {
    parallel_for(col_panels, nthreads, [&](int64_t p0, int64_t p1) {
      const int64_t j0 = p0 * t.nr, j1 = std::min(N, p1 * t.nr);
      auto shifted = [&](int64_t pc, int64_t kb, int64_t jc, int64_t nb, T* bp) { pack_b(pc, kb, j0 + jc, nb, bp); };
      const GemmEpilogue<T> e = ep ? ep->at(0, j0) : GemmEpilogue<T>{};
      gemm_detail::gemm_serial(t, uk, pack_tr, M, j1 - j0, K, A, rsa, csa, shifted, C + j0, ldc, accumulate,
                               ep ? &e : nullptr, pre);
    });
  } else {
    parallel_for(row_panels, nthreads, [&](int64_t p0, int64_t p1) {
      const int64_t i0 = p0 * t.mr, i1 = std::min(M, p1 * t.mr);
      const GemmEpilogue<T> e = ep ? ep->at(i0, 0) : GemmEpilogue<T>{};
      gemm_detail::gemm_serial(t, uk, pack_tr, i1 - i0, N, K, A + i0 * rsa, rsa, csa, pack_b, C + i0 * ldc, ldc, accumulate,
                               ep ? &e : nullptr, pre, i0);
    });
  }
}

}  // namespace pyconv
