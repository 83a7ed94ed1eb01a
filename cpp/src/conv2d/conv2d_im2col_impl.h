// conv2d_im2col_<isa> / conv2d_col2im_<isa>
// Columns for a range of output pixels of one image and group:
//   cols[(cl*R + r)*S + s][q - q0] = padded x[n][g*C/g + cl][oh*sh + r*dh][ow*sw + s*dw],
//   q = oh*OW + ow in [q0, q1)
// and its transpose, which adds such columns back into dx (the gradient of im2col).
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
void im2col(const ConvArgs<T>& a, int64_t n, int64_t g, int64_t q0, int64_t q1, int64_t row0,
            int64_t row1, T* cols) {
  const Conv2dParams& p = *a.p;
  const int64_t cg = p.c / p.groups, np = q1 - q0;
  for (int64_t row = row0; row < row1; ++row) {
    const int64_t cl = row / (p.r * p.s), r = (row / p.s) % p.r, s = row % p.s;
    const T* xc = a.x + (n * p.c + g * cg + cl) * p.h * p.w;
    T* dst_row = cols + row * np;
    const int64_t tap = s * p.dil_w, off = tap - p.pad_l;
    for_row_segments(p.ow, q0, q1, [&](int64_t oh, int64_t ow0, int64_t ow1, int64_t d) {
      T* dst = dst_row + d - ow0;  // dst[ow] for ow in [ow0, ow1)
      const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
      if (ih < 0) {
        for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] = T(0);
        return;
      }
      const T* xr = xc + ih * p.w;
      const int64_t lo = a.col_lo[s] < ow0 ? ow0 : (a.col_lo[s] > ow1 ? ow1 : a.col_lo[s]);
      const int64_t hi = a.col_hi[s] > ow1 ? ow1 : (a.col_hi[s] < lo ? lo : a.col_hi[s]);
      for (int64_t ow = ow0; ow < lo; ++ow) {
        const int64_t iw = a.col_map[ow * p.stride_w + tap];
        dst[ow] = iw >= 0 ? xr[iw] : T(0);
      }
      if (p.stride_w == 1) {
#pragma omp simd
        for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow + off];
      } else {
#pragma omp simd
        for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow * p.stride_w + off];
      }
      for (int64_t ow = hi; ow < ow1; ++ow) {
        const int64_t iw = a.col_map[ow * p.stride_w + tap];
        dst[ow] = iw >= 0 ? xr[iw] : T(0);
      }
    });
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

}  // namespace

void PYCONV_CAT(conv2d_im2col, PYCONV_ISA)(const ConvArgs<float>& a, int64_t n, int64_t g,
                                           int64_t q0, int64_t q1, int64_t r0, int64_t r1,
                                           float* cols) {
  im2col<float>(a, n, g, q0, q1, r0, r1, cols);
}
void PYCONV_CAT(conv2d_im2col, PYCONV_ISA)(const ConvArgs<double>& a, int64_t n, int64_t g,
                                           int64_t q0, int64_t q1, int64_t r0, int64_t r1,
                                           double* cols) {
  im2col<double>(a, n, g, q0, q1, r0, r1, cols);
}
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

}  // namespace PYCONV_ISA
}  // namespace pyconv
