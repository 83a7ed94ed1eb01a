// conv2d_col2im_<isa>, conv2d_pack_cols[_t]_<isa>
// The im2col column matrix of one image and group,
//   cols[(cl*R + r)*S + s][q] = padded x[n][g*C/g + cl][oh*sh + r*dh][ow*sw + s*dw], q = oh*OW + ow,
// is never materialised for the forward and weight-gradient passes: pack_cols / pack_cols_t write
// its GEMM panels straight from the input. col2im adds a tile of such columns (computed by the
// input-gradient GEMM) back into dx.
#include <cstdint>
#include <cstring>

#include "gemm/pack_t.h"
#include "kernels.h"
#include "pyconv/gemm.h"

// The copies here are short (a panel row, an output row's run): GCC would turn their loops into
// memcpy calls, each costing more than the copy.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

namespace pyconv {
namespace PYCONV_ISA {
namespace {

constexpr int kVecBytes = isa_vec_bytes(Isa::PYCONV_ISA);

// dst[i] = src[i * sw] for i < n, where src[0, avail) is readable. Strides 2 and 4 (ResNet
// downsampling, AlexNet's first layer) take every other element of two vectors, once or twice;
// the last vector overlaps the one before instead of ending in a scalar tail.
template <class T>
inline void strided_copy(const T* __restrict src, int64_t n, int64_t sw, int64_t avail, T* __restrict dst) {
  typedef T V __attribute__((vector_size(kVecBytes)));
  constexpr int VL = kVecBytes / static_cast<int>(sizeof(T));
  auto even = [](V u, V v) { return pack_detail::take_even<V, VL>(u, v, std::make_index_sequence<VL>()); };
  auto vec_at = [&](int64_t i) {  // outputs [i, i + VL)
    const T* s = src + i * sw;
    V v0, v1, v2, v3;
    std::memcpy(&v0, s, sizeof(V));
    if (sw == 1) return v0;
    std::memcpy(&v1, s + VL, sizeof(V));
    if (sw == 2) return even(v0, v1);
    std::memcpy(&v2, s + 2 * VL, sizeof(V));
    std::memcpy(&v3, s + 3 * VL, sizeof(V));
    return even(even(v0, v1), even(v2, v3));
  };
  if ((sw == 1 || sw == 2 || sw == 4) && n >= VL && n * sw <= avail) {
    for (int64_t i = 0; i + VL <= n; i += VL) {
      const V o = vec_at(i);
      std::memcpy(dst + i, &o, sizeof(V));
    }
    if (n % VL != 0) {
      const V o = vec_at(n - VL);
      std::memcpy(dst + n - VL, &o, sizeof(V));
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i * sw];
}

// Calls fn(oh, ow0, ow1, dst_offset) for the output-row segments covering pixels [q0, q1).
template <class F>
inline void for_row_segments(int64_t ow_n, int64_t q0, int64_t q1, F&& fn) {
  int64_t q = q0;
  while (q < q1) {
    const int64_t oh = q / ow_n, ow0 = q % ow_n;
    const int64_t ow1 = ow0 + q1 - q < ow_n ? ow0 + q1 - q : ow_n;
    fn(oh, ow0, ow1, q - q0);
    q += ow1 - ow0;
  }
}

template <class T>
void col2im(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t q0, int64_t q1, int64_t cl0,
            int64_t cl1, const T* cols) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, np = q1 - q0;
  for (int64_t cl = cl0; cl < cl1; ++cl) {
    T* dxc = a.dx + (n * p.c + g * cg + cl) * p.h * p.w;
    for (int64_t r = 0; r < p.r; ++r) {
      for (int64_t s = 0; s < p.s; ++s) {
        const T* src_row = cols + ((cl * p.r + r) * p.s + s) * np;
        const int64_t tap = s * p.dil_w, off = tap - p.pad_l;
        for_row_segments(p.ow, q0, q1, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t d) {
          const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
          if (ih < 0) return;
          const T* src = src_row + d - ow0;  // src[ow] for ow in [ow0, ow1)
          T* xr = dxc + ih * p.w;
          const int64_t lo = a.col_lo[s] < ow0 ? ow0 : (a.col_lo[s] > ow1 ? ow1 : a.col_lo[s]);
          const int64_t hi = a.col_hi[s] > ow1 ? ow1 : (a.col_hi[s] < lo ? lo : a.col_hi[s]);
          for (int64_t ow = ow0; ow < lo; ++ow) {
            const int64_t iw = a.col_map[ow * p.stride_w + tap];
            if (iw >= 0) xr[iw] += src[ow];
          }
          if (p.stride_w == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow + off] += src[ow];
          } else {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * p.stride_w + off] += src[ow];
          }
          for (int64_t ow = hi; ow < ow1; ++ow) {
            const int64_t iw = a.col_map[ow * p.stride_w + tap];
            if (iw >= 0) xr[iw] += src[ow];
          }
        });
      }
    }
  }
}

// Output columns [ow0, ow1) of output row oh for tap (r, s) of channel plane xc:
// dst[(ow - ow0) * ds] = padded x[oh*sh + r*dh][ow*sw + s*dw].
template <class T>
inline void tap_segment(const ConvArgs<T>& a, const T* xc, int64_t r, int64_t s, int64_t oh, int64_t ow0,
                        int64_t ow1, T* __restrict dst, int64_t ds) {
  const Conv2dParams& p = *a.p;
  dst -= ow0 * ds;  // dst[ow * ds]
  const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
  if (ih < 0) {
    for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow * ds] = T(0);
    return;
  }
  const T* __restrict xr = xc + ih * p.w;
  const int64_t tap = s * p.dil_w, off = tap - p.pad_l;
  const int64_t lo = a.col_lo[s] < ow0 ? ow0 : (a.col_lo[s] > ow1 ? ow1 : a.col_lo[s]);
  const int64_t hi = a.col_hi[s] > ow1 ? ow1 : (a.col_hi[s] < lo ? lo : a.col_hi[s]);
  for (int64_t ow = ow0; ow < lo; ++ow) {
    const int64_t iw = a.col_map[ow * p.stride_w + tap];
    dst[ow * ds] = iw >= 0 ? xr[iw] : T(0);
  }
  if (ds == 1 && p.stride_w == 1) {
#pragma omp simd
    for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow + off];
  } else if (ds == 1 && lo < hi) {
    strided_copy(xr + lo * p.stride_w + off, hi - lo, p.stride_w, p.w - (lo * p.stride_w + off), dst + lo);
  } else {
    const int64_t sw = p.stride_w;
    for (int64_t ow = lo; ow < hi; ++ow) dst[ow * ds] = xr[ow * sw + off];
  }
  for (int64_t ow = hi; ow < ow1; ++ow) {
    const int64_t iw = a.col_map[ow * p.stride_w + tap];
    dst[ow * ds] = iw >= 0 ? xr[iw] : T(0);
  }
}

// The output-row segments of pixels [q0, q1): at most kMax of them (one per output row).
template <int64_t kMax>
struct Segments {
  int64_t n = 0, oh[kMax], ow0[kMax], ow1[kMax], d[kMax];
  Segments(int64_t ow, int64_t q0, int64_t q1) {
    for_row_segments(ow, q0, q1, [&](int64_t h, int64_t a, int64_t b, int64_t off) {
      oh[n] = h, ow0[n] = a, ow1[n] = b, d[n] = off;
      ++n;
    });
  }
};

// dst[d + ow - ow0] = padded x[oh*sh + r*dh][ow*sw + s*dw] of channel plane xc for every segment.
// Without padding (the padded image copy) every tap is inside the plane: one run per segment.
template <class T, int64_t kMax>
inline void gather_tap(const ConvArgs<T>& a, const T* xc, int64_t r, int64_t s, const Segments<kMax>& sg, T* dst) {
  const Conv2dParams& p = *a.p;
  if (p.pad_t == 0 && p.pad_b == 0 && p.pad_l == 0 && p.pad_r == 0) {
    const T* base = xc + r * p.dil_h * p.w + s * p.dil_w;
    const int64_t avail = p.w - s * p.dil_w;
    for (int64_t i = 0; i < sg.n; ++i) {
      const int64_t c0 = sg.ow0[i] * p.stride_w, len = sg.ow1[i] - sg.ow0[i];
      const T* src = base + sg.oh[i] * p.stride_h * p.w + c0;
      strided_copy(src, len, p.stride_w, avail - c0, dst + sg.d[i]);
    }
    return;
  }
  for (int64_t i = 0; i < sg.n; ++i) tap_segment(a, xc, r, s, sg.oh[i], sg.ow0[i], sg.ow1[i], dst + sg.d[i], 1);
}

// Forward GEMM B straight from the input: rows [k0, k0+kb) (cl, r, s) x pixels [q0, q0+nb) into
// NR-wide panels bp[panel][k][j], zero-padded to NR. Each row (tap) is gathered for up to kChunk
// pixels at once (long runs along the output rows) and then dealt to the panels in vectors.
template <class T>
void pack_cols(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t k0, int64_t kb, int64_t q0, int64_t nb, int nr,
               T* bp) {
  typedef T V __attribute__((vector_size(kVecBytes)));
  constexpr int VL = kVecBytes / static_cast<int>(sizeof(T));
  constexpr int64_t kChunk = 512;
  static_assert(kChunk % gemm_max_nr() == 0, "chunks must hold whole panels");
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, hw = p.h * p.w;
  const T* xg = a.x + (n * p.c + g * cg) * hw;
  alignas(64) T row[kChunk];
  for (int64_t c0 = 0; c0 < nb; c0 += kChunk) {
    const int64_t cn = nb - c0 < kChunk ? nb - c0 : kChunk;
    const Segments<kChunk> sg(p.ow, q0 + c0, q0 + c0 + cn);
    T* base = bp + (c0 / nr) * kb * nr;
    int64_t cl = k0 / (p.r * p.s), r = (k0 / p.s) % p.r, s = k0 % p.s;
    for (int64_t k = 0; k < kb; ++k) {
      gather_tap(a, xg + cl * hw, r, s, sg, row);
      T* dst = base + k * nr;
      int64_t j0 = 0;
      for (; j0 + nr <= cn; j0 += nr, dst += kb * nr)
        for (int j = 0; j < nr; j += VL) std::memcpy(dst + j, row + j0 + j, sizeof(V));
      if (j0 < cn) {
        int64_t j = 0;
        for (; j < cn - j0; ++j) dst[j] = row[j0 + j];
        for (; j < nr; ++j) dst[j] = T(0);
      }
      if (++s == p.s) {
        s = 0;
        if (++r == p.r) {
          r = 0;
          ++cl;
        }
      }
    }
  }
}

// Weight-gradient GEMM B (the column matrix transposed): pixels [k0, k0+kb) x rows
// [q0, q0+nb) (cl, r, s) into NR-wide panels bp[panel][k][j], zero-padded to NR. A panel's rows
// are gathered along the pixels (as the forward does), then transposed in registers.
template <class T>
void pack_cols_t(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t k0, int64_t kb, int64_t q0, int64_t nb,
                 int nr, T* bp) {
  constexpr int64_t kLen = 256;
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, hw = p.h * p.w;
  const T* xg = a.x + (n * p.c + g * cg) * hw;
  alignas(64) T rows[gemm_max_nr() * kLen];
  for (int64_t kk = 0; kk < kb; kk += kLen) {
    const int64_t len = kb - kk < kLen ? kb - kk : kLen;
    const Segments<kLen> sg(p.ow, k0 + kk, k0 + kk + len);
    int64_t cl = q0 / (p.r * p.s), r = (q0 / p.s) % p.r, s = q0 % p.s;
    for (int64_t j0 = 0; j0 < nb; j0 += nr) {
      const int64_t cnt = nb - j0 < nr ? nb - j0 : nr;
      for (int64_t j = 0; j < cnt; ++j) {
        gather_tap(a, xg + cl * hw, r, s, sg, rows + j * len);
        if (++s == p.s) {
          s = 0;
          if (++r == p.r) {
            r = 0;
            ++cl;
          }
        }
      }
      pack_t<kVecBytes>(rows, len, cnt, len, nr, bp + (j0 / nr) * kb * nr + kk * nr);
    }
  }
}

}  // namespace

void PYCONV_CAT(conv2d_col2im, PYCONV_ISA)(const ConvArgs<float>& a, int64_t n, int64_t g,
                                           int64_t q0, int64_t q1, int64_t c0, int64_t c1,
                                           const float* cols) {
  col2im<float>(a, n, g, q0, q1, c0, c1, cols);
}
void PYCONV_CAT(conv2d_col2im, PYCONV_ISA)(const ConvArgs<double>& a, int64_t n, int64_t g,
                                           int64_t q0, int64_t q1, int64_t c0, int64_t c1,
                                           const double* cols) {
  col2im<double>(a, n, g, q0, q1, c0, c1, cols);
}

#define PYCONV_EXPORT_PACK(fam, impl, T)                                                          \
  void PYCONV_CAT(fam, PYCONV_ISA)(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t k0, int64_t kb, \
                                   int64_t q0, int64_t nb, int nr, T* bp) {                        \
    impl<T>(a, n, g, k0, kb, q0, nb, nr, bp);                                                      \
  }
PYCONV_EXPORT_PACK(conv2d_pack_cols, pack_cols, float)
PYCONV_EXPORT_PACK(conv2d_pack_cols, pack_cols, double)
PYCONV_EXPORT_PACK(conv2d_pack_cols_t, pack_cols_t, float)
PYCONV_EXPORT_PACK(conv2d_pack_cols_t, pack_cols_t, double)
#undef PYCONV_EXPORT_PACK

}  // namespace PYCONV_ISA
}  // namespace pyconv
