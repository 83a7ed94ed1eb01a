// conv2d_{fwd,bwd_data,bwd_weight}_direct_<isa>
//   input x[N][C][H][W]   weight w[K][C/g][R][S]   output y[N][K][OH][OW]
// Direct convolution as row AXPYs over output rows (vectorised along the output width), with
// padding of every mode through the row/column maps. Each work item owns its output plane, so
// the summation order is fixed and independent of the thread count.
#include <cstdint>

#include "kernels.h"

namespace pyconv {
namespace PYCONV_ISA {
namespace {

#include "conv2d/conv_row.h"
#include "simd.h"
#include "conv2d/depthwise.h"

template <class T>
void fwd(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  const Conv2dParams& p = *a.p;
  if (p.c == p.groups && a.ws != nullptr) return dw_fwd(a, p0, p1);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t n = plane / p.k, k = plane % p.k, g = k / kg;
    const T bias = a.b ? a.b[k] : T(0);
    for (int64_t oh = 0; oh < p.oh; ++oh) {
      T* yr = a.y + (plane * p.oh + oh) * p.ow;
      for (int64_t ow = 0; ow < p.ow; ++ow) yr[ow] = bias;
      for (int64_t cl = 0; cl < cg; ++cl) {
        const T* xc = a.x + (n * p.c + g * cg + cl) * hw;
        const T* wk = a.w + (k * cg + cl) * rs;
        for (int64_t r = 0; r < p.r; ++r) {
          const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
          if (ih < 0) continue;
          for (int64_t s = 0; s < p.s; ++s)
            row_axpy(yr, xc + ih * p.w, wk[r * p.s + s], p.ow, p.stride_w, s * p.dil_w,
                     s * p.dil_w - p.pad_l, a.col_lo[s], a.col_hi[s], a.col_map);
        }
      }
    }
  }
}

template <class T>
void bwd_data(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  const Conv2dParams& p = *a.p;
  if (p.c == p.groups && a.ws != nullptr) return dw_bwd_data(a, p0, p1);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t n = plane / p.c, c = plane % p.c, g = c / cg, cl = c % cg;
    T* dx = a.dx + plane * hw;
    for (int64_t i = 0; i < hw; ++i) dx[i] = T(0);
    for (int64_t k = g * kg; k < (g + 1) * kg; ++k) {
      const T* wk = a.w + (k * cg + cl) * rs;
      for (int64_t oh = 0; oh < p.oh; ++oh) {
        const T* dyr = a.dy + ((n * p.k + k) * p.oh + oh) * p.ow;
        for (int64_t r = 0; r < p.r; ++r) {
          const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
          if (ih < 0) continue;
          for (int64_t s = 0; s < p.s; ++s)
            row_scatter(dx + ih * p.w, dyr, wk[r * p.s + s], p.ow, p.stride_w, s * p.dil_w,
                        s * p.dil_w - p.pad_l, a.col_lo[s], a.col_hi[s], a.col_map);
        }
      }
    }
  }
}

template <class T>
void bwd_weight(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  const Conv2dParams& p = *a.p;
  if (p.c == p.groups && a.ws != nullptr) return dw_bwd_weight(a, p0, p1);
  if (p.groups == 1 && p.c <= kSmallC && a.ws != nullptr) return small_c_bwd_weight(a, p0, p1);
  const int64_t cg = p.c / p.groups, kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t k = plane / cg, cl = plane % cg, g = k / kg;
    T* dw = a.dw + plane * rs;
    for (int64_t i = 0; i < rs; ++i) dw[i] = T(0);
    for (int64_t n = 0; n < p.n; ++n) {
      const T* xc = a.x + (n * p.c + g * cg + cl) * hw;
      for (int64_t oh = 0; oh < p.oh; ++oh) {
        const T* dyr = a.dy + ((n * p.k + k) * p.oh + oh) * p.ow;
        for (int64_t r = 0; r < p.r; ++r) {
          const int64_t ih = a.row_map[oh * p.stride_h + r * p.dil_h];
          if (ih < 0) continue;
          for (int64_t s = 0; s < p.s; ++s)
            dw[r * p.s + s] += row_dot(dyr, xc + ih * p.w, p.ow, p.stride_w, s * p.dil_w,
                                       s * p.dil_w - p.pad_l, a.col_lo[s], a.col_hi[s], a.col_map);
        }
      }
    }
  }
}

}  // namespace

#define PYCONV_EXPORT(fam, impl)                                                          \
  void PYCONV_CAT(fam, PYCONV_ISA)(const ConvArgs<float>& a, int64_t p0, int64_t p1) {    \
    impl<float>(a, p0, p1);                                                               \
  }                                                                                       \
  void PYCONV_CAT(fam, PYCONV_ISA)(const ConvArgs<double>& a, int64_t p0, int64_t p1) {   \
    impl<double>(a, p0, p1);                                                              \
  }
PYCONV_EXPORT(conv2d_fwd_direct, fwd)
PYCONV_EXPORT(conv2d_bwd_data_direct, bwd_data)
PYCONV_EXPORT(conv2d_bwd_weight_direct, bwd_weight)
#undef PYCONV_EXPORT

}  // namespace PYCONV_ISA
}  // namespace pyconv
