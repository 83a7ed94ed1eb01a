// conv2d_col2im_<isa>, conv2d_pack_cols[_t]_<isa>
// The im2col column matrix of one image and group,
//   cols[(cl*R + r)*S + s][q] = padded x[n][g*C/g + cl][oh*sh + r*dh][ow*sw + s*dw], q = oh*OW + ow,
// is never materialised for the forward and weight-gradient passes: pack_cols / pack_cols_t write
// its GEMM panels straight from the input. col2im adds a tile of such columns (computed by the
// input-gradient GEMM) back into dx.
#include <cstdint>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

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
  } else {
    const int64_t sw = p.stride_w;
    for (int64_t ow = lo; ow < hi; ++ow) dst[ow * ds] = xr[ow * sw + off];
  }
  for (int64_t ow = hi; ow < ow1; ++ow) {
    const int64_t iw = a.col_map[ow * p.stride_w + tap];
    dst[ow * ds] = iw >= 0 ? xr[iw] : T(0);
  }
}

// Forward GEMM B straight from the input: rows [k0, k0+kb) (cl, r, s) x pixels [q0, q0+nb) into
// NR-wide panels bp[panel][k][j], zero-padded to NR.
template <class T>
void pack_cols(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t k0, int64_t kb, int64_t q0, int64_t nb, int nr,
               T* bp) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, hw = p.h * p.w;
  const T* xg = a.x + (n * p.c + g * cg) * hw;
  constexpr int kMaxSeg = 65;
  int64_t seg_oh[kMaxSeg], seg_a[kMaxSeg], seg_b[kMaxSeg], seg_d[kMaxSeg];
  for (int64_t j0 = 0; j0 < nb; j0 += nr) {
    const int64_t cnt = nb - j0 < nr ? nb - j0 : nr;
    T* panel = bp + (j0 / nr) * kb * nr;
    int nseg = 0;
    bool fits = true;
    for_row_segments(p.ow, q0 + j0, q0 + j0 + cnt, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t d) {
      if (nseg == kMaxSeg) {
        fits = false;
        return;
      }
      seg_oh[nseg] = oh;
      seg_a[nseg] = ow0;
      seg_b[nseg] = ow1;
      seg_d[nseg] = d;
      ++nseg;
    });
    int64_t cl = k0 / (p.r * p.s), r = (k0 / p.s) % p.r, s = k0 % p.s;
    for (int64_t k = 0; k < kb; ++k) {
      T* dst = panel + k * nr;
      const T* xc = xg + cl * hw;
      if (fits) {
        for (int i = 0; i < nseg; ++i) tap_segment(a, xc, r, s, seg_oh[i], seg_a[i], seg_b[i], dst + seg_d[i], 1);
      } else {
        for_row_segments(p.ow, q0 + j0, q0 + j0 + cnt, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t d) {
          tap_segment(a, xc, r, s, oh, ow0, ow1, dst + d, 1);
        });
      }
      for (int64_t j = cnt; j < nr; ++j) dst[j] = T(0);
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
// [q0, q0+nb) (cl, r, s) into NR-wide panels bp[panel][k][j], zero-padded to NR.
template <class T>
void pack_cols_t(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t k0, int64_t kb, int64_t q0, int64_t nb,
                 int nr, T* bp) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, hw = p.h * p.w;
  const T* xg = a.x + (n * p.c + g * cg) * hw;
  for (int64_t j0 = 0; j0 < nb; j0 += nr) {
    const int64_t cnt = nb - j0 < nr ? nb - j0 : nr;
    T* panel = bp + (j0 / nr) * kb * nr;
    for (int64_t j = 0; j < cnt; ++j) {
      const int64_t row = q0 + j0 + j;
      const int64_t cl = row / (p.r * p.s), r = (row / p.s) % p.r, s = row % p.s;
      const T* xc = xg + cl * hw;
      for_row_segments(p.ow, k0, k0 + kb, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t d) {
        tap_segment(a, xc, r, s, oh, ow0, ow1, panel + d * nr + j, nr);
      });
    }
    if (cnt < nr)
      for (int64_t k = 0; k < kb; ++k)
        for (int64_t j = cnt; j < nr; ++j) panel[k * nr + j] = T(0);
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
