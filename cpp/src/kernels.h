// Kernel signatures and declarations (expanded from kernels.def). Kernels take pointers, sizes
// and a work range; they never allocate, never start threads and never touch Python.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "pyconv/conv2d.h"
#include "pyconv/gemm.h"
#include "conv2d/depthwise_blocked.h"
#include "pyconv/isa.h"
#include "pyconv/nchwc.h"
#include "pyconv/pool2d.h"

namespace pyconv {

// Everything a convolution kernel needs. row_map/col_map send a coordinate of the padded input
// (0 .. h+pad_t+pad_b-1, resp. w+pad_l+pad_r-1) to an input row/column, or -1 for a zero;
// they implement every padding mode. [col_lo[s], col_hi[s]) is the range of output columns
// whose tap s reads column ow*stride_w + s*dil_w - pad_l directly (no map needed).
template <class T>
struct ConvArgs {
  const Conv2dParams* p;
  const int64_t* row_map;
  const int64_t* col_map;
  const int64_t* col_lo;
  const int64_t* col_hi;
  const T* x;   // input          (fwd, bwd_weight, im2col)
  const T* w;   // weight         (fwd, bwd_data)
  const T* b;   // bias or null   (fwd)
  const T* dy;  // grad of output (bwd_data, bwd_weight)
  T* y;         // output         (fwd)
  T* dx;        // grad of input  (bwd_data, col2im)
  T* dw;        // grad of weight (bwd_weight)
  T* ws;        // this thread's scratch (direct kernels; conv2d_direct_ws_size elements) or null
};

// Scratch elements a direct kernel may use per thread (0: it needs none). With cg == 1
// (depthwise) the kernels work on padded planes: the input (or the gradient) padded through the
// maps, and for bwd_data a zero-stuffed copy of dy.
// With groups == 1 and C <= 4 (first layers) the weight gradient pads all C input planes.
inline int64_t conv2d_direct_ws_size(const Conv2dParams& p) {
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r;
  const int64_t uh = hp + (p.r - 1) * p.dil_h, uw = wp + (p.s - 1) * p.dil_w;
  int64_t n = 0;
  if (p.c / p.groups == 1) n = hp * wp + uh * uw + 256;
  if (p.groups == 1 && p.c <= 4) n = std::max<int64_t>(n, p.c * hp * wp + 64 + p.k * p.c * p.r * p.s * 16 + 256);
  return n;
}

// A stride-1 correlation of padded planes, register-blocked (conv2d_blocked_impl.h):
//   out[n][g*cout + o][i][j] = bias[g*cout + o]
//       + sum_{ci, r, s} wpk(g, o, ci, r, s) * P[n][g][ci][i + r*dh][j + s*dw]
// where P is the source plane [n][g*cin + ci] gathered through row_map (sh entries) and
// col_map (sw entries; -1 = zero; col_map[v] == v - col_off on [col_lo, col_hi)), with
// sh = out_h + (r-1)*dh and sw = out_w + (s-1)*dw. The forward maps the input through the
// padding maps; bwd_data maps grad_output into its zero frame, with the filters flipped and
// transposed. wpk[((g*nkb + kbi)*cin + ci)*r*s + tap][kb] holds output-channel block kbi
// (kb channels, zero-filled past cout). Work items it = (n*groups + g)*nkb + kbi; each call
// needs cin*ps elements of scratch (ps >= sh*sw + the overrun of the last vector tile).
template <class T>
struct BlockedConv {
  int64_t groups, cin, cout, r, s, dh, dw;
  const T* src;
  int64_t src_h, src_w;
  const int64_t* row_map;
  const int64_t* col_map;
  int64_t col_lo, col_hi, col_off;
  int64_t sh, sw, ps;
  int64_t out_h, out_w;
  T* out;
  const T* wpk;
  const T* bias;
  const int64_t* taps;  // [ci*r*s + tap]: ci*ps + r*dh*sw + s*dw, the step order of wpk
  int64_t kb, nkb;
  int nv;     // vectors per pixel tile: 1..4
  bool flat;  // tiles run along the flattened padded rows (narrow outputs)
};
// Output channels per register tile with nv == 1 (1/nv of that with nv vectors): accumulators fill
// the vector registers but a few (32 on AVX-512, 16 otherwise).
template <class T>
constexpr int kBlockedMaxKb(Isa isa) { return isa == Isa::avx512 ? 24 : 12; }
template <class T>
using conv2d_blocked_fn = void(const BlockedConv<T>&, int64_t i0, int64_t i1, T* ws);

// The weight gradient (conv2d_blocked_impl.h), images [n0, n1):
//   dw[g*cout + o][ci][r][s] += sum_{i,j} dy[n][g*cout + o][i][j] * P[n][g*cin + ci][i + r*dh][j + s*dw]
// with P the input padded through the maps (sh x sw). planes: for each image of the chunk and
// input channel a block of ps elements holding, for every tap s, P shifted s*dw columns left
// and cropped to ow columns (pitch ow, sh rows, pss elements per tap, zero tail), filled by
// conv2d_blocked_gather for input planes [p0, p1) (row: sw elements of scratch).
// dy_end bounds tail reads. Work items it = (g*nkb + kbi)*cin + ci, kb output channels each;
// ws: r*kb*s vectors of scratch (64-byte aligned) for the partial sums.
template <class T>
struct BlockedWgrad {
  int64_t n0, n1, groups, cin, cout, r, s, dh, dw;
  const T* planes;
  int64_t ps, pss;
  const T* dy;
  const T* dy_end;
  int64_t oh, ow;
  T* dwt;
  int64_t kb, nkb;
  // By filter (3x3 kernels, groups == 1, many filters): dyt holds the chunk's gradient
  // transposed, [n - n0][q][kp] (kp: cout rounded up to whole vectors, zero-filled), and work
  // item it = kvb*cin + ci is nvk vectors of filters x the 9 taps of input channel ci.
  bool by_filter;
  const T* dyt;
  int64_t kp;
  int nvk;
};
constexpr int kWgradMaxS = 7;
// Output channels per weight-gradient tile for s taps: kb*s accumulators, kb gradient vectors
// and one input vector in the registers.
constexpr int kWgradMaxKb(Isa isa, int s) {
  const int k = ((isa == Isa::avx512 ? 32 : 16) - 1) / (s + 1);
  return k < 1 ? 1 : k > 8 ? 8 : k;
}
template <class T>
using conv2d_blocked_gather_fn = void(const BlockedConv<T>&, const BlockedWgrad<T>&, int64_t p0, int64_t p1, T* planes,
                                      T* row);
template <class T>
using conv2d_blocked_wgrad_fn = void(const BlockedWgrad<T>&, int64_t i0, int64_t i1, T* ws);

// Work ranges: fwd over planes n*K + k; bwd_data over planes n*C + c; bwd_weight over weight
// planes k*(C/groups) + c (every image reduced, in order).
template <class T> using conv2d_fwd_direct_fn = void(const ConvArgs<T>&, int64_t, int64_t);
template <class T> using conv2d_bwd_data_direct_fn = void(const ConvArgs<T>&, int64_t, int64_t);
template <class T> using conv2d_bwd_weight_direct_fn = void(const ConvArgs<T>&, int64_t, int64_t);
// Adds columns cols[(cl*R + r)*S + s][q - q0] (image n, group g, output pixels [q0, q1)) back
// into dx for group-local channels [cl0, cl1): the gradient of im2col.
template <class T>
using conv2d_col2im_fn = void(const ConvArgs<T>&, int64_t n, int64_t g, int64_t q0, int64_t q1,
                              int64_t cl0, int64_t cl1, const T* cols);
// Implicit im2col: GEMM B panels packed straight from the input of image n, group g (no column
// buffer). conv2d_pack_cols: rows [k0, k0+kb) of the column matrix x pixels [q0, q0+nb);
// conv2d_pack_cols_t: its transpose, pixels [k0, k0+kb) x rows [q0, q0+nb). Both write NR-wide
// panels bp[panel][k][j], zero-padded to NR (the layout the GEMM micro-kernel reads).
template <class T>
using conv2d_pack_cols_fn = void(const ConvArgs<T>&, int64_t n, int64_t g, int64_t k0, int64_t kb, int64_t q0,
                                 int64_t nb, int nr, T* bp);
template <class T>
using conv2d_pack_cols_t_fn = conv2d_pack_cols_fn<T>;
// C[rows][NR] (+)= packed A (kc x MR, column-major panel; its first rows, 1 <= rows <= MR) *
// packed B (kc x NR, row-major panel). Rows of C past `rows` are not touched.
template <class T>
using gemm_ukernel_fn = void(int rows, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, bool accumulate,
                              const GemmEpilogue<T>* epilogue);
// Winograd F(4x4, 3x3) (conv2d/winograd_units.cpp): 4x4 output tiles from 6x6 input tiles, 36
// transform positions xi. A unit is a run of tiles (tile t = image * tiles_per_image + tile row *
// tiles_w + tile column) cut into vectors of the kernel's lane count; a segment is the part of one
// vector inside one tile row of one image.
struct WinoSeg {
  int64_t v, lane0, count;  // vector, its first lane and lane count
  int64_t n, th, tw;        // image, tile row, first tile column
  int64_t poff;             // plane element read by lane 0's (0, 0) input (may lie before the segment)
};
template <class T>
struct WinoTiles {
  int64_t cin, kout, kp;         // channels in and out; kout rounded up to the GEMM's MR
  int64_t hout, wout, win;       // output plane, input width
  const int64_t* rmap;           // padded row -> input row or -1 (4 * tiles_h + 2 entries)
  const int64_t* cmap;           // padded column -> input column or -1 (pw entries)
  int64_t pw, clo, chi, coff;    // plane width; cmap[q] == q - coff for q in [clo, chi)
  const T* x;                    // input channel 0 of image 0
  int64_t x_img, x_ch;           // input strides (elements) of an image and of a channel
  T* y;                          // output channel 0 of image 0
  int64_t y_img, y_ch;
  const T* bias;                 // or null
  const T* dy;                   // weight gradient: dy channel 0 of image 0 (hout x wout planes)
  int64_t dy_img, dy_ch;
  int64_t vnr;                   // panel width of V: the GEMM's NR, or tp (one panel per channel)
  const WinoSeg* segs;           // this unit's segments, in lane order
  int64_t nsegs, ntiles, tp;     // tiles in the unit, and rounded up to the GEMM's NR
  const int64_t* plane_rows;     // per image of the unit (from n0): first padded row, row count,
  int64_t n0, nimg;              //   element offset in the plane buffer (3 entries each)
};
// U[xi] = G g G^T for output channels (GEMM rows) of MR-panels [kp0, kp1), packed as the
// micro-kernel's A panels: xi block xi * kp * cin, C-block c0 (kc rows) at + c0 * kp, panel at
// + panel * MR * kb, element (c, lane) at + (c - c0) * MR + lane (rows past kout are zero).
// g(o, i, tap) = w[o * so + i * si + (flip ? 8 - tap : tap)].
template <class T>
using conv2d_winograd_filter_fn = void(const T* w, int64_t kout, int64_t cin, int64_t so, int64_t si, bool flip,
                                       int64_t kc, int64_t kp0, int64_t kp1, T* u);
// V[xi] = B^T d B for input channels [c0, c1) of the unit, as vnr-wide panels:
// v[((xi * (tp / vnr) + t / vnr) * cin + c) * vnr + t % vnr]. `plane` is this thread's scratch.
template <class T>
using conv2d_winograd_input_fn = void(const WinoTiles<T>&, int64_t c0, int64_t c1, T* plane, T* v);
// Weight gradient: D[xi] = A dy A^T (4x4 tiles of dy -> 6x6) for filters [k0, k1) of the unit,
// d[(xi * kout + k) * tp + t], tiles past the unit or the plane being zero.
template <class T>
using conv2d_winograd_dy_fn = void(const WinoTiles<T>&, int64_t k0, int64_t k1, T* plane, T* d);
// dW = G^T M G for rows [i0, i1) of M: m[((j / NR * mp + i) * 36 + xi) * NR + j % NR] (NR the
// GEMM's), dw[i * rs + j * cs + tap] for columns j < cols.
template <class T>
using conv2d_winograd_wout_fn = void(const T* m, int64_t mp, int64_t cols, int64_t i0, int64_t i1, T* dw, int64_t rs,
                                     int64_t cs);
// y = A^T m A (+ bias) for output channels [k0, k1) of the unit, m[(xi * kp + k) * tp + t].
template <class T>
using conv2d_winograd_output_fn = void(const WinoTiles<T>&, int64_t k0, int64_t k1, const T* m);
// Blocked-layout conv forward (pyconv/nchwc.h) over work items [i0, i1): it =
// ((n*tiles + t)*rows + row)*chunks + chunk, t a pair of 16-channel output blocks (depthwise:
// one block), a row of `rows` output rows (1 when a 1x1 stride-1 conv runs its plane as one
// row), `chunk` pixels per item along it.
struct NchwcWork {
  int64_t tiles, rows, cols, chunk, chunks;
  bool flat;  // dense tiles run along the flattened plane (rows == 1, cols == oh*ow)
};
template <class T>
using conv2d_nchwc_fwd_fn = void(const NchwcConv<T>&, const NchwcWork&, int64_t i0, int64_t i1);
// Blocked global average pooling (pyconv/nchwc.h) over items [i0, i1): it = n*C/16 + block.
template <class T>
using global_avg_pool2d_nchwc_fn = void(const NchwcPool<T>&, int64_t i0, int64_t i1);
// The fused expansion + depthwise conv (pyconv/nchwc.h): items (n*tiles + t)*rows + band, `rows`
// bands of output rows per image; ws: this thread's ring of expansion rows.
template <class T>
using conv2d_nchwc_expand_dw_fn = void(const NchwcConv<T>& e, const NchwcConv<T>& d, const NchwcWork&, int64_t i0,
                                       int64_t i1, T* ws);
// Pooling, over planes n*C + c.
template <class T>
using max_pool2d_fwd_direct_fn = void(const Pool2dParams&, const T* x, T* y, int64_t* idx,
                                      int64_t p0, int64_t p1);
// Returns the flat position of the first index outside [-1, H*W) in its planes (skipped), or -1.
template <class T>
using max_pool2d_bwd_direct_fn = int64_t(const Pool2dParams&, const T* dy, const T* x,
                                         const int64_t* idx, T* dx, int64_t p0, int64_t p1);
template <class T>
using avg_pool2d_fwd_direct_fn = void(const Pool2dParams&, const T* x, T* y, int64_t p0, int64_t p1);
template <class T>
using avg_pool2d_bwd_direct_fn = void(const Pool2dParams&, const T* dy, T* dx, int64_t p0, int64_t p1);
// y[i][j] = b[j] + x[i] . w[j] for rows i < m (m <= kGemvMaxRows), output features [j0, j1).
constexpr int64_t kGemvMaxRows = 4;
template <class T>
using linear_gemv_fn = void(const T* x, int64_t m, int64_t k, const T* w, const T* b, T* y, int64_t n, int64_t j0,
                            int64_t j1);
// Elementwise (pyconv/eltwise.h), over elements [i0, i1); bias_grad over channels [c0, c1).
template <class T>
using relu_fwd_fn = void(const T* x, T* y, int64_t i0, int64_t i1);
template <class T>
using relu_bwd_fn = void(const T* dy, const T* x, T* dx, int64_t i0, int64_t i1);
template <class T>
using clamp_add_fn = void(T* y, const T* r, T lo, T hi, int64_t i0, int64_t i1);
template <class T>
using bias_grad_fn = void(const T* dy, int64_t n, int64_t c, int64_t hw, T* db, int64_t c0, int64_t c1);

#define PYCONV_KERNEL(fam, op, dir, algo) \
  fam##_fn<float> PYCONV_KNAME(fam);      \
  fam##_fn<double> PYCONV_KNAME(fam);
#define PYCONV_CAT_(a, b) a##_##b
#define PYCONV_CAT(a, b) PYCONV_CAT_(a, b)

#define PYCONV_KNAME(fam) fam##_scalar
namespace scalar {
#include "kernels.def"
}
#undef PYCONV_KNAME
#if defined(PYCONV_HAVE_AVX2)
#define PYCONV_KNAME(fam) fam##_avx2
namespace avx2 {
#include "kernels.def"
}
#undef PYCONV_KNAME
#endif
#if defined(PYCONV_HAVE_AVX512)
#define PYCONV_KNAME(fam) fam##_avx512
namespace avx512 {
#include "kernels.def"
}
#undef PYCONV_KNAME
#endif
#undef PYCONV_KERNEL

// The dispatch table: tbl.<family>[isa] (null where that ISA was not compiled).
template <class T>
struct KernelTable {
#define PYCONV_KERNEL(fam, op, dir, algo) fam##_fn<T>* fam[kNumIsa] = {};
#include "kernels.def"
#undef PYCONV_KERNEL
};
template <class T>
const KernelTable<T>& kernel_table();

// PYCONV_VERBOSE=1: prints "pyconv: <op> -> <what>" to stderr once per distinct message (the
// implementation that ran); PYCONV_VERBOSE=2 also the ones skipped before it, with the reason.
void log_choice(const char* op, const char* what);
void log_line(const std::string& msg);  // the same, for any line
int verbose_level();  // 0 when unset, "" or "0"; 2 for values >= 2; else 1
inline bool verbose() { return verbose_level() > 0; }

}  // namespace pyconv
