// Winograd over phases: strided layers whose kernel spans 3 strides each way and dilated 3x3
// layers run as the stride-1 3x3 layer over the phases of their input (see phase_split).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "conv2d/winograd_internal.h"
#include "pyconv/parallel.h"
#include "sizes.h"
#include "workspace.h"

namespace pyconv {
namespace wino {

namespace {

// f(sw) with sw a compile-time constant for 2-4 phases, so that the compiler vectorises the
// interleaved accesses of deal and interleave (shuffles instead of a scalar load and store per
// element); other widths run with the runtime value.
template <class F>
void with_phases(int64_t sw, F&& f) {
  switch (sw) {
    case 2: return f(std::integral_constant<int64_t, 2>{});
    case 3: return f(std::integral_constant<int64_t, 3>{});
    case 4: return f(std::integral_constant<int64_t, 4>{});
    default: return f(sw);
  }
}

// dst[b * pstride + col] = row[sw * col + b]: one padded row dealt to its sw phase planes.
template <class T>
void deal(const T* __restrict row, int64_t sw, int64_t n, T* __restrict dst, int64_t pstride) {
  with_phases(sw, [&](auto w) {
    for (int64_t col = 0; col < n; ++col)
      for (int64_t b = 0; b < w; ++b) dst[b * pstride + col] = row[w * col + b];
  });
}

// row[sw * col + b] = src[b * pstride + col]: the inverse of deal.
template <class T>
void interleave(const T* __restrict src, int64_t pstride, int64_t sw, int64_t n, T* __restrict row) {
  with_phases(sw, [&](auto w) {
    for (int64_t col = 0; col < n; ++col)
      for (int64_t b = 0; b < w; ++b) row[w * col + b] = src[b * pstride + col];
  });
}

// x' of phase_split (rows/columns past the padded input are zero; they meet only zero taps or
// produce outputs that are dropped).
template <class T>
void phase_input(const Conv2dParams& p, const Conv2dParams& q, const ConvArgs<T>& a, T* xq, int nt) {
  const bool dil = dilated(p);
  const int64_t sh = dil ? p.dil_h : p.stride_h, sw = dil ? p.dil_w : p.stride_w;
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r, span = sw * q.w;
  // The sw phase planes (a, 0..sw) of one channel are one plane apart (strided) or one image apart
  // (dilated): each padded row is built once and dealt out to them.
  const int64_t pstride = (dil ? q.c : 1) * q.h * q.w;
  parallel_for(p.n * p.c * sh, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(span));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / (p.c * sh), c = i / sh % p.c, ph = i % sh;
      const T* xc = a.x + (n * p.c + c) * p.h * p.w;
      T* dst = xq + (dil ? ((n * sh + ph) * sw * q.c + c) : (n * q.c + (c * sh + ph) * sw)) * q.h * q.w;
      const int64_t lo = std::min(p.pad_l, span), hi = std::clamp<int64_t>(p.pad_l + p.w, lo, span);
      for (int64_t r = 0; r < q.h; ++r, dst += q.w) {
        const int64_t pr = sh * r + ph, ir = pr < hp ? a.row_map[pr] : -1;
        if (ir < 0) {
          for (int64_t b = 0; b < sw; ++b) std::fill(dst + b * pstride, dst + b * pstride + q.w, T(0));
          continue;
        }
        const T* xr = xc + ir * p.w;
        for (int64_t pc = 0; pc < lo; ++pc) row[static_cast<size_t>(pc)] = a.col_map[pc] < 0 ? T(0) : xr[a.col_map[pc]];
        std::memcpy(row.data() + lo, xr + lo - p.pad_l, sizeof(T) * static_cast<size_t>(hi - lo));
        for (int64_t pc = hi; pc < span; ++pc) {
          const int64_t ic = pc < wp ? a.col_map[pc] : -1;
          row[static_cast<size_t>(pc)] = ic < 0 ? T(0) : xr[ic];
        }
        deal(row.data(), sw, q.w, dst, pstride);
      }
    }
  });
}

// Tap (r, s) of channel c sits at channel c * sh * sw + (r % sh) * sw + s % sw, tap (r / sh, s / sw):
// offsets (c * sh * sw * 9 +) tap[r * S + s] in one filter of q.
std::vector<int64_t> phase_taps(const Conv2dParams& p) {
  std::vector<int64_t> tap(static_cast<size_t>(p.r * p.s));
  for (int64_t r = 0; r < p.r; ++r)
    for (int64_t s = 0; s < p.s; ++s)
      tap[static_cast<size_t>(r * p.s + s)] =
          (r % p.stride_h * p.stride_w + s % p.stride_w) * 9 + r / p.stride_h * 3 + s / p.stride_w;
  return tap;
}

// x' (a padded copy of the input) and, dilated, y' or dy' (q.k output planes per image) within
// half the workspace limit, else false.
template <class T>
bool phase_buffers(const Conv2dParams& p, const Conv2dParams& q, T*& xq, T*& yq) {
  const double x_elems = static_cast<double>(q.n * q.c) * static_cast<double>(q.h * q.w);
  const double y_elems = dilated(p) ? static_cast<double>(q.n * q.k) * static_cast<double>(q.oh * q.ow) : 0;
  if ((x_elems + y_elems) * sizeof(T) > static_cast<double>(workspace_limit()) / 2) return false;
  xq = call_buffer<T>(4, static_cast<size_t>(x_elems));
  yq = y_elems > 0 ? call_buffer<T>(5, static_cast<size_t>(y_elems)) : nullptr;
  return true;
}

// Dilated: y'[(n, a, b)][k][i][j] <-> y[n][k][dh*i + a][dw*j + b], y' -> y (outputs past y
// dropped) or y -> y' (zeros past y). One output row of y meets the dw planes b of its phase a.
template <class T, bool ToY>
void phase_outputs(const Conv2dParams& p, const Conv2dParams& q, std::conditional_t<ToY, T*, const T*> y,
                   std::conditional_t<ToY, const T*, T*> yq, int nt) {
  const int64_t dh = p.dil_h, dw = p.dil_w, span = dw * q.ow, pstride = q.k * q.oh * q.ow;
  parallel_for(p.n * p.k, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(span));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / p.k, k = i % p.k;
      auto* yk = y + i * p.oh * p.ow;
      for (int64_t a = 0; a < dh; ++a) {
        // plane (n, a, 0) of y', channel k; the planes b follow one image (q.k planes) apart
        auto* qa = yq + (((n * dh + a) * dw) * q.k + k) * q.oh * q.ow;
        for (int64_t r = 0; r < q.oh; ++r) {
          const int64_t oy = dh * r + a;
          if constexpr (ToY) {
            if (oy >= p.oh) break;
            interleave(qa + r * q.ow, pstride, dw, q.ow, row.data());
            std::memcpy(yk + oy * p.ow, row.data(), sizeof(T) * static_cast<size_t>(p.ow));
          } else {
            if (oy >= p.oh) {
              for (int64_t b = 0; b < dw; ++b) std::fill(qa + b * pstride + r * q.ow, qa + b * pstride + (r + 1) * q.ow, T(0));
              continue;
            }
            std::memcpy(row.data(), yk + oy * p.ow, sizeof(T) * static_cast<size_t>(p.ow));
            std::fill(row.begin() + p.ow, row.end(), T(0));
            deal(row.data(), dw, q.ow, qa + r * q.ow, pstride);
          }
        }
      }
    }
  });
}

template <class T>
ConvArgs<T> phase_args(const Conv2dParams& q, const T* xq) {
  ConvArgs<T> b{};
  b.p = &q;
  b.x = xq;
  return b;  // no padding: the row/column maps stay null
}

// The filters of the stride-phase layer (zero past the kernel).
template <class T>
std::vector<T> phase_filters(const Conv2dParams& p, const Conv2dParams& q, const T* w) {
  std::vector<T> wq(static_cast<size_t>(q.k * q.c * 9), T(0));
  const std::vector<int64_t> tap = phase_taps(p);
  const int64_t rs = p.r * p.s, cstep = p.stride_h * p.stride_w * 9;
  for (int64_t kc = 0; kc < p.k * p.c; ++kc)
    for (int64_t t = 0; t < rs; ++t) wq[static_cast<size_t>(kc * cstep + tap[static_cast<size_t>(t)])] = w[kc * rs + t];
  return wq;
}

}  // namespace

// Zero padding: dx' = the phase layer's input gradient (dy, or its dilation phases, against the
// phase filters), then every input pixel takes the value of its phase position; padded positions
// are dropped and positions no window reads get 0.
template <class T>
bool bwd_data_phases(const Conv2dParams& p, const Conv2dParams& q, const T* dy, const T* w, T* dx, int nt) {
  T *dxq, *dyq;
  if (!phase_buffers(p, q, dxq, dyq)) return false;
  if (dilated(p)) {
    phase_outputs<T, false>(p, q, dy, dyq, nt);
    if (!conv2d_bwd_data_winograd(q, static_cast<const T*>(dyq), w, dxq, nt)) return false;
  } else {
    const std::vector<T> wq = phase_filters(p, q, w);
    if (!conv2d_bwd_data_winograd(q, dy, wq.data(), dxq, nt)) return false;
  }
  const bool dil = dilated(p);
  const int64_t sh = dil ? p.dil_h : p.stride_h, sw = dil ? p.dil_w : p.stride_w;
  // Row r of phase a: its sw planes b are interleaved back into the padded row, whose columns
  // [pad_l, pad_l + w) are dx's (columns past the phase planes are 0).
  const int64_t span = sw * q.w, pstride = (dil ? q.c : 1) * q.h * q.w;
  parallel_for(p.n * p.c, nt, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(static_cast<size_t>(std::max(span, p.pad_l + p.w)), T(0));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / p.c, c = i % p.c;
      const T* base = dxq + (dil ? n * sh * sw * q.c + c : n * q.c + c * sh * sw) * q.h * q.w;
      T* dst = dx + i * p.h * p.w;
      for (int64_t ih = 0; ih < p.h; ++ih, dst += p.w) {
        const int64_t pr = ih + p.pad_t, a = pr % sh, r = pr / sh;
        if (r >= q.h) {
          std::fill(dst, dst + p.w, T(0));
          continue;
        }
        interleave(base + ((dil ? a * sw * q.c : a * sw) * q.h + r) * q.w, pstride, sw, q.w, row.data());
        std::memcpy(dst, row.data() + p.pad_l, sizeof(T) * static_cast<size_t>(p.w));
      }
    }
  });
  return true;
}

template <class T>
bool fwd_phases(const ConvArgs<T>& a, const Conv2dParams& q, int nt) {
  const Conv2dParams& p = *a.p;
  T *xq, *yq;
  if (!phase_buffers(p, q, xq, yq)) return false;
  phase_input(p, q, a, xq, nt);
  if (dilated(p)) {
    Problem<T> pr = forward_problem(phase_args(q, xq), 0);
    pr.y = yq, pr.y_img = q.k * q.oh * q.ow, pr.y_ch = q.oh * q.ow;
    pr.bias = a.b;
    pr.w = a.w, pr.flip = false;
    if (!run(pr, nt)) return false;
    phase_outputs<T, true>(p, q, a.y, yq, nt);
    return true;
  }
  const std::vector<T> wq = phase_filters(p, q, a.w);
  Problem<T> pr = forward_problem(phase_args(q, xq), 0);
  pr.y = a.y, pr.y_img = p.k * p.oh * p.ow, pr.y_ch = p.oh * p.ow;
  pr.bias = a.b;
  pr.w = wq.data(), pr.flip = false;
  return run(pr, nt);
}

template <class T>
bool bwd_weight_phases(const ConvArgs<T>& a, const Conv2dParams& q, const T* dy, T* dw, int nt) {
  const Conv2dParams& p = *a.p;
  T *xq, *dyq;
  if (!phase_buffers(p, q, xq, dyq)) return false;
  phase_input(p, q, a, xq, nt);
  if (dilated(p)) {
    phase_outputs<T, false>(p, q, dy, dyq, nt);
    return run_wgrad(forward_problem(phase_args(q, xq), 0), dyq, q.k * q.oh * q.ow, q.oh * q.ow, dw, nt);
  }
  std::vector<T> dwq(static_cast<size_t>(q.k * q.c * 9));
  if (!run_wgrad(forward_problem(phase_args(q, xq), 0), dy, p.k * p.oh * p.ow, p.oh * p.ow, dwq.data(), nt))
    return false;
  const std::vector<int64_t> tap = phase_taps(p);
  const int64_t rs = p.r * p.s, cstep = p.stride_h * p.stride_w * 9;
  for (int64_t kc = 0; kc < p.k * p.c; ++kc)
    for (int64_t t = 0; t < rs; ++t) dw[kc * rs + t] = dwq[static_cast<size_t>(kc * cstep + tap[static_cast<size_t>(t)])];
  return true;
}


#define PYCONV_INSTANTIATE(T)                                                                              \
  template bool fwd_phases<T>(const ConvArgs<T>&, const Conv2dParams&, int);                              \
  template bool bwd_weight_phases<T>(const ConvArgs<T>&, const Conv2dParams&, const T*, T*, int);         \
  template bool bwd_data_phases<T>(const Conv2dParams&, const Conv2dParams&, const T*, const T*, T*, int);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace wino
}  // namespace pyconv
