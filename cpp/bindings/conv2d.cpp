// conv2d bindings: the checked entry points (arrays and canonical codes from functional.py), the
// fast ones (the user's arguments as given; None when not canonical), the algorithm queries.
#include <cmath>

#include "bindings/marshal.h"
#include "pyconv/eltwise.h"
#include "pyconv/nchwc.h"
#include "pyconv/parallel.h"

namespace pyconv {
namespace bind {

namespace {

double conv_work(const Conv2dParams& p) {
  return static_cast<double>(p.n * p.k * p.oh * p.ow) * static_cast<double>(p.c / p.groups * p.r * p.s);
}

// The operators on validated parameters and arrays, shared by the checked and the fast path.
template <class T>
py::array run_conv2d_fwd(const Conv2dParams& p, const T* x, const T* w, const T* b, ConvAlgo a, bool unbatched) {
  auto y = new_nchw<T>(unbatched, p.n, p.k, p.oh, p.ow);
  T* yp = y.mutable_data();
  {
    NoGil nogil(conv_work(p));
    conv2d_fwd<T>(p, x, w, b, yp, a);
  }
  return std::move(y);
}

template <class T>
py::array run_conv2d_bwd_data(const Conv2dParams& p, const T* dy, const T* w, ConvAlgo a, bool unbatched) {
  auto dx = new_nchw<T>(unbatched, p.n, p.c, p.h, p.w);
  T* dxp = dx.mutable_data();
  {
    NoGil nogil(conv_work(p));
    conv2d_bwd_data<T>(p, dy, w, dxp, a);
  }
  return std::move(dx);
}

template <class T>
py::array run_conv2d_bwd_weight(const Conv2dParams& p, const T* x, const T* dy, ConvAlgo a) {
  auto dw = new_nchw<T>(false, p.k, p.c / p.groups, p.r, p.s);
  T* dwp = dw.mutable_data();
  {
    NoGil nogil(conv_work(p));
    conv2d_bwd_weight<T>(p, x, dy, dwp, a);
  }
  return std::move(dw);
}

template <class T>
py::array conv2d_fwd_t(const py::array& x, const py::array& w, const py::object& b, I2 stride, I4 pad, I2 dil,
                       int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(w, "weight", 4, dt);
  const ConvHyper h = conv_hyper(stride, pad, dil, groups, mode, algo);
  const Conv2dParams p = conv_params(shape4(x), shape4(w), h);
  const T* bp = nullptr;
  py::array bias;
  if (!b.is_none()) {
    bias = py::array(b);
    check_array(bias, "bias", 1, dt);
    check_shape(bias, "bias", {p.k});
    bp = data<T>(bias);
  }
  return run_conv2d_fwd<T>(p, data<T>(x), data<T>(w), bp, h.algo, false);
}

// The fused epilogue's operands: bias (k,), residual shaped as the output, lo <= hi.
template <class T>
struct EpilogueArrays {
  py::array bias, res;
  const T* b = nullptr;
  const T* r = nullptr;
  EpilogueArrays(const py::object& bo, const py::object& ro, const Conv2dParams& p, double lo, double hi,
                 const char* fn) {
    const auto dt = py::dtype::of<T>();
    if (!bo.is_none()) {
      bias = py::array(bo);
      check_array(bias, "bias", 1, dt);
      check_shape(bias, "bias", {p.k});
      b = data<T>(bias);
    }
    if (!ro.is_none()) {
      res = py::array(ro);
      check_array(res, "residual", 4, dt);
      check_shape(res, "residual", {p.n, p.k, p.oh, p.ow});
      r = data<T>(res);
    }
    if (std::isnan(lo) || std::isnan(hi) || lo > hi)
      throw std::invalid_argument(std::string(fn) + ": need lo <= hi, got lo=" + std::to_string(lo) + ", hi=" +
                                  std::to_string(hi));
  }
};

// The inference conv: y = clamp(conv(x, w) + b + residual, lo, hi) in one call without the GIL
// (in im2col's GEMM stores, else one pass while y is warm); packed: w packed once for im2col.
template <class T>
py::array conv2d_fwd_fused_t(const py::array& x, const py::array& w, const py::object& b, I2 stride, I4 pad, I2 dil,
                             int64_t groups, int algo, const py::object& residual, double lo, double hi,
                             const py::object& out, const py::object& packed) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(w, "weight", 4, dt);
  const ConvHyper h = conv_hyper(stride, pad, dil, groups, 0, algo);
  const Conv2dParams p = conv_params(shape4(x), shape4(w), h);
  const EpilogueArrays<T> e(b, residual, p, lo, hi, "conv2d_fwd_fused");
  std::shared_ptr<Im2colWeights<T>> keep;
  const Im2colWeights<T>* pw = nullptr;
  if (!packed.is_none()) {
    if constexpr (std::is_same_v<T, float>) {
      if (!py::isinstance<Im2colWeights<float>>(packed)) throw py::type_error("packed must be an Im2colWeights or None");
      keep = packed.cast<std::shared_ptr<Im2colWeights<float>>>();
      pw = keep.get();
    } else {
      throw py::type_error("packed weights are float32; the input is float64");
    }
  }
  const T* bp = e.b;
  const T* rp = e.r;
  auto y = out_or_new<T>(out, {p.n, p.k, p.oh, p.ow}, {&x, &w, &e.bias, &e.res});
  T* yp = y.mutable_data();
  {
    NoGil nogil(conv_work(p));
    conv2d_fwd_fused<T>(p, data<T>(x), data<T>(w), bp, yp, h.algo, rp, static_cast<T>(lo), static_cast<T>(hi), pw);
  }
  return std::move(y);
}

// The blocked-layout inference conv (pyconv/nchwc.h). x: (N, C, H, W), or blocked (N, ceil(C/16),
// H, W, 16) with C given as `channels`; w packed: dense (ceil(K/16), ceil(C/16), R, S, 16, 16),
// depthwise (ceil(C/16), R, S, 16) on blocked x; b: (16 * ceil(K/16),) or None; y and residual
// blocked when y_blocked, else NCHW.
template <class T>
struct NchwcCall {
  NchwcConv<T> a{};
  std::vector<int64_t> ys;  // the output's shape
  py::array bias, res;
};

// The checked problem for input x of shape xs (5-D: blocked) at xp; a.y not set yet.
template <class T>
NchwcCall<T> nchwc_call(const std::vector<int64_t>& xs, const T* xp, int64_t channels, const py::array& w, int64_t k,
                        const py::object& bo, I2 stride, I4 pad, I2 dil, bool y_blocked, const py::object& ro,
                        double lo, double hi) {
  const auto dt = py::dtype::of<T>();
  constexpr int64_t B = kNchwcBlock;
  const auto blocks = [](int64_t c) { return (c + B - 1) / B; };
  const bool xb = xs.size() == 5;
  if (channels < 1 || k < 1)
    throw std::invalid_argument("channels and out_channels must be >= 1, got " + std::to_string(channels) + " and " +
                                std::to_string(k));
  if (xb && (xs[1] != blocks(channels) || xs[4] != B))
    throw std::invalid_argument("blocked input must have shape (N, " + std::to_string(blocks(channels)) +
                                ", H, W, 16) for channels=" + std::to_string(channels));
  if (!xb && xs[1] != channels)
    throw std::invalid_argument("input has " + std::to_string(xs[1]) + " channels, channels=" + std::to_string(channels));
  const bool dw = w.ndim() == 4;
  check_array(w, "packed weight", dw ? 4 : 6, dt);
  if (dw) {
    if (!xb) throw std::invalid_argument("the depthwise blocked conv needs a blocked input");
    if (k != channels)
      throw std::invalid_argument("depthwise: out_channels=" + std::to_string(k) + " != channels=" + std::to_string(channels));
    check_shape(w, "packed weight", {blocks(channels), w.shape(1), w.shape(2), B});
  } else {
    check_shape(w, "packed weight", {blocks(k), blocks(channels), w.shape(2), w.shape(3), B, B});
  }
  NchwcCall<T> call;
  NchwcConv<T>& a = call.a;
  a.n = xs[0], a.c = channels, a.h = xs[2], a.w = xs[3];
  a.k = k, a.r = w.shape(dw ? 1 : 2), a.s = w.shape(dw ? 2 : 3);
  a.sh = stride[0], a.sw = stride[1], a.pt = pad[0], a.pl = pad[2], a.dh = dil[0], a.dw = dil[1];
  if (a.sh < 1 || a.sw < 1 || a.dh < 1 || a.dw < 1 || pad[0] < 0 || pad[1] < 0 || pad[2] < 0 || pad[3] < 0)
    throw std::invalid_argument("stride and dilation must be >= 1 and padding >= 0");
  if (a.h + pad[0] + pad[1] < a.dh * (a.r - 1) + 1 || a.w + pad[2] + pad[3] < a.dw * (a.s - 1) + 1)
    throw std::invalid_argument("the kernel (" + std::to_string(a.r) + ", " + std::to_string(a.s) +
                                ") is larger than the padded input (" + std::to_string(a.h) + ", " +
                                std::to_string(a.w) + ")");
  a.oh = (a.h + pad[0] + pad[1] - a.dh * (a.r - 1) - 1) / a.sh + 1;
  a.ow = (a.w + pad[2] + pad[3] - a.dw * (a.s - 1) - 1) / a.sw + 1;
  a.depthwise = dw;
  if (xb) a.xc = 1, a.xw = B, a.xh = a.w * B, a.xcb = a.h * a.w * B, a.xn = blocks(a.c) * a.xcb;
  else a.xw = 1, a.xh = a.w, a.xc = a.h * a.w, a.xcb = B * a.xc, a.xn = a.c * a.xc;
  call.ys = y_blocked ? std::vector<int64_t>{a.n, blocks(k), a.oh, a.ow, B} : std::vector<int64_t>{a.n, k, a.oh, a.ow};
  if (!bo.is_none()) {
    call.bias = py::array(bo);
    check_array(call.bias, "bias", 1, dt);
    check_shape(call.bias, "bias", {blocks(k) * B});
    a.b = data<T>(call.bias);
  }
  if (!ro.is_none()) {
    call.res = py::array(ro);
    check_array(call.res, "residual", static_cast<py::ssize_t>(call.ys.size()), dt);
    check_shape(call.res, "residual", call.ys);
    a.res = data<T>(call.res);
  }
  if (std::isnan(lo) || std::isnan(hi) || lo > hi)
    throw std::invalid_argument("conv2d_fwd_nchwc: need lo <= hi, got lo=" + std::to_string(lo) + ", hi=" + std::to_string(hi));
  a.lo = static_cast<T>(lo), a.hi = static_cast<T>(hi);
  a.x = xp, a.wp = data<T>(w), a.y_blocked = y_blocked;
  return call;
}

template <class T>
py::array conv2d_fwd_nchwc_t(const py::array& x, int64_t channels, const py::array& w, int64_t k, const py::object& bo,
                             I2 stride, I4 pad, I2 dil, bool y_blocked, const py::object& ro, double lo, double hi,
                             const py::object& out) {
  check_array(x, "input", x.ndim() == 5 ? 5 : 4, py::dtype::of<T>());
  NchwcCall<T> c = nchwc_call<T>(shape_of(x), data<T>(x), channels, w, k, bo, stride, pad, dil, y_blocked, ro, lo, hi);
  auto y = out_or_new<T>(out, c.ys, {&x, &w, &c.bias, &c.res});
  NchwcConv<T>& a = c.a;
  a.y = y.mutable_data();
  {
    NoGil nogil(static_cast<double>(a.n * a.k * a.oh * a.ow * a.r * a.s * (a.depthwise ? 1 : a.c)));
    conv2d_nchwc_fwd<T>(a);
  }
  return std::move(y);
}

// A 1x1 expansion (we, be, lo_e, hi_e: to `expanded` channels) and a depthwise conv of its output
// (wd, bd, stride, pad, dilation, residual, lo, hi) in one call, the expansion never stored.
template <class T>
py::array conv2d_fwd_nchwc_expand_dw_t(const py::array& x, int64_t channels, const py::array& we, int64_t ke,
                                       const py::object& be, double lo_e, double hi_e, const py::array& wd,
                                       const py::object& bd, I2 stride, I4 pad, I2 dil, bool y_blocked,
                                       const py::object& ro, double lo, double hi, const py::object& out) {
  check_array(x, "input", x.ndim() == 5 ? 5 : 4, py::dtype::of<T>());
  if (we.ndim() != 6 || we.shape(2) != 1 || we.shape(3) != 1)
    throw std::invalid_argument("the expansion's packed weight must be a dense 1x1 one, got shape " + shape_str(we));
  if (wd.ndim() != 4) throw std::invalid_argument("the depthwise packed weight must be 4-D, got shape " + shape_str(wd));
  NchwcCall<T> e = nchwc_call<T>(shape_of(x), data<T>(x), channels, we, ke, be, {1, 1}, {0, 0, 0, 0}, {1, 1}, true,
                                 py::none(), lo_e, hi_e);
  const std::vector<int64_t> es = {e.a.n, (ke + kNchwcBlock - 1) / kNchwcBlock, e.a.oh, e.a.ow, kNchwcBlock};
  NchwcCall<T> d = nchwc_call<T>(es, nullptr, ke, wd, ke, bd, stride, pad, dil, y_blocked, ro, lo, hi);
  auto y = out_or_new<T>(out, d.ys, {&x, &we, &wd, &e.bias, &d.bias, &d.res});
  d.a.y = y.mutable_data();
  {
    NoGil nogil(static_cast<double>(e.a.n * ke * (e.a.h * e.a.w * channels + d.a.oh * d.a.ow * d.a.r * d.a.s)));
    conv2d_nchwc_expand_dw<T>(e.a, d.a);
  }
  return std::move(y);
}

// Global average pooling of a blocked input (N, ceil(C/16), H, W, 16) to (N, C, 1, 1) or blocked.
template <class T>
py::array global_avg_pool2d_nchwc_t(const py::array& x, int64_t channels, bool y_blocked, const py::object& out) {
  constexpr int64_t B = kNchwcBlock;
  if (x.ndim() == 4) {  // NCHW in and out
    check_array(x, "input", 4, py::dtype::of<T>());
    if (channels != x.shape(1) || y_blocked)
      throw std::invalid_argument("an NCHW input needs channels == input.shape[1] and an NCHW output, got channels=" +
                                  std::to_string(channels) + " for input " + shape_str(x));
    NchwcPool<T> a{};
    a.n = x.shape(0), a.c = channels, a.h = x.shape(2), a.w = x.shape(3), a.x_blocked = false;
    auto y = out_or_new<T>(out, std::vector<int64_t>{a.n, a.c, 1, 1}, {&x});
    a.x = data<T>(x), a.y = y.mutable_data(), a.y_blocked = false;
    {
      NoGil nogil(static_cast<double>(x.size()));
      global_avg_pool2d_nchwc<T>(a);
    }
    return std::move(y);
  }
  check_array(x, "input", 5, py::dtype::of<T>());
  if (channels < 1 || x.shape(1) != (channels + B - 1) / B || x.shape(4) != B)
    throw std::invalid_argument("blocked input must have shape (N, " + std::to_string((channels + B - 1) / B) +
                                ", H, W, 16) for channels=" + std::to_string(channels) + ", got " + shape_str(x));
  NchwcPool<T> a{};
  a.n = x.shape(0), a.c = channels, a.h = x.shape(2), a.w = x.shape(3);
  const std::vector<int64_t> ys = y_blocked ? std::vector<int64_t>{a.n, x.shape(1), 1, 1, B}
                                            : std::vector<int64_t>{a.n, channels, 1, 1};
  auto y = out_or_new<T>(out, ys, {&x});
  a.x = data<T>(x), a.y = y.mutable_data(), a.y_blocked = y_blocked;
  {
    NoGil nogil(static_cast<double>(x.size()));
    global_avg_pool2d_nchwc<T>(a);
  }
  return std::move(y);
}

template <class T>
py::array nchw_to_blocked_t(const py::array& x, const py::object& out) {
  check_array(x, "input", 4, py::dtype::of<T>());
  const int64_t B = kNchwcBlock, n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  auto y = out_or_new<T>(out, std::vector<int64_t>{n, (c + B - 1) / B, h, w, B}, {&x});
  {
    NoGil nogil(static_cast<double>(x.size()));
    nchw_to_nchwc<T>(data<T>(x), n, c, h, w, y.mutable_data());
  }
  return std::move(y);
}

// precision="bfloat16": float32 in and out, operands rounded to bfloat16, fp32 accumulation.
// `w` is a float32 array (rounded and packed for this call) or a Bf16ConvWeights packed once.
std::shared_ptr<Bf16ConvWeights> pack_bf16(const py::array& w, int64_t groups) {
  check_array(w, "weight", 4, py::dtype::of<float>());
  if (groups < 1) throw std::invalid_argument("groups must be >= 1, got " + std::to_string(groups));
  if (w.shape(0) % groups)
    throw std::invalid_argument("groups=" + std::to_string(groups) + " must divide out_channels=" + std::to_string(w.shape(0)));
  const float* wp = data<float>(w);
  const int64_t k = w.shape(0), cg = w.shape(1), r = w.shape(2), s = w.shape(3);
  NoGil nogil(static_cast<double>(w.size()));
  return std::make_shared<Bf16ConvWeights>(wp, k, cg, r, s, groups);
}

py::array conv2d_fwd_bf16_t(const py::array& x, const py::object& w, const py::object& b, I2 stride, I4 pad, I2 dil,
                            int64_t groups, int mode, const py::object& residual, double lo, double hi,
                            const py::object& out) {
  const auto dt = py::dtype::of<float>();
  check_array(x, "input", 4, dt);
  std::shared_ptr<Bf16ConvWeights> pw;
  py::array wa;
  I4 ws;
  if (py::isinstance<Bf16ConvWeights>(w)) {
    pw = w.cast<std::shared_ptr<Bf16ConvWeights>>();
    ws = {pw->k, pw->cg, pw->r, pw->s};
  } else {
    wa = py::array(w);
    check_array(wa, "weight", 4, dt);
    ws = shape4(wa);
  }
  const Conv2dParams p = conv_params(shape4(x), ws, conv_hyper(stride, pad, dil, groups, mode, 0));
  const EpilogueArrays<float> e(b, residual, p, lo, hi, "conv2d_fwd_bf16");
  const float* bp = e.b;
  const float* rp = e.r;
  auto y = out_or_new<float>(out, {p.n, p.k, p.oh, p.ow}, {&x, &wa, &e.bias, &e.res});
  float* yp = y.mutable_data();
  const float* xp = data<float>(x);
  const float* wp = pw ? nullptr : data<float>(wa);
  {
    NoGil nogil(conv_work(p));
    if (pw)
      conv2d_fwd_bf16(p, xp, *pw, bp, yp, rp, static_cast<float>(lo), static_cast<float>(hi));
    else
      conv2d_fwd_bf16(p, xp, wp, bp, yp, rp, static_cast<float>(lo), static_cast<float>(hi));
  }
  return std::move(y);
}

template <class T>
py::array conv2d_bwd_data_t(const py::array& dy, const py::array& w, I4 in, I2 stride, I4 pad, I2 dil,
                            int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(dy, "grad_output", 4, dt);
  check_array(w, "weight", 4, dt);
  const ConvHyper h = conv_hyper(stride, pad, dil, groups, mode, algo);
  const Conv2dParams p = conv_params(in, shape4(w), h);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  return run_conv2d_bwd_data<T>(p, data<T>(dy), data<T>(w), h.algo, false);
}

template <class T>
py::array conv2d_bwd_weight_t(const py::array& x, const py::array& dy, I4 wshape, I2 stride, I4 pad, I2 dil,
                              int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(dy, "grad_output", 4, dt);
  const ConvHyper h = conv_hyper(stride, pad, dil, groups, mode, algo);
  const Conv2dParams p = conv_params(shape4(x), wshape, h);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  return run_conv2d_bwd_weight<T>(p, data<T>(x), data<T>(dy), h.algo);
}

}  // namespace

// The fast entry points (marshal.h's readers; None for anything not canonical).
namespace fast {

using npy = py::detail::npy_api;

py::object conv2d_fwd(py::handle x, py::handle w, py::handle b, py::handle stride, py::handle padding,
                      py::handle dilation, py::handle groups, py::handle mode, py::handle algo) {
  const int t = float_num(x);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper h;
  Conv2dParams p;
  if (t < 0 || (t == npy::NPY_FLOAT_ && g_bf16_default.load(std::memory_order_relaxed)) || array_num(w) != t || !(b.is_none() || array_num(b) == t) || !array_shape(x, true, in, unbatched) ||
      !array_shape(w, false, ws, u) || !parse_conv_hyper(stride, padding, dilation, groups, mode, algo, ws, h) || !params(in, ws, h, p) ||
      !(b.is_none() || is_vector(b, p.k)) || bytes(p.n, p.k, p.oh, p.ow, itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = h.algo;
  if (t == npy::NPY_FLOAT_)
    return run_conv2d_fwd<float>(p, ptr<float>(x), ptr<float>(w), b.is_none() ? nullptr : ptr<float>(b), a, unbatched);
  return run_conv2d_fwd<double>(p, ptr<double>(x), ptr<double>(w), b.is_none() ? nullptr : ptr<double>(b), a, unbatched);
}

py::object conv2d_bwd_data(py::handle dy, py::handle w, py::handle input_shape, py::handle stride, py::handle padding,
                           py::handle dilation, py::handle groups, py::handle mode, py::handle algo) {
  const int t = float_num(dy);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper h;
  Conv2dParams p;
  if (t < 0 || array_num(w) != t || !tuple_shape(input_shape, true, in, unbatched) || !array_shape(w, false, ws, u) ||
      !parse_conv_hyper(stride, padding, dilation, groups, mode, algo, ws, h) || !params(in, ws, h, p) ||
      !has_shape(dy, unbatched, p.n, p.k, p.oh, p.ow) || bytes(p.n, p.c, p.h, p.w, itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = h.algo;
  if (t == npy::NPY_FLOAT_) return run_conv2d_bwd_data<float>(p, ptr<float>(dy), ptr<float>(w), a, unbatched);
  return run_conv2d_bwd_data<double>(p, ptr<double>(dy), ptr<double>(w), a, unbatched);
}

py::object conv2d_bwd_weight(py::handle x, py::handle dy, py::handle weight_shape, py::handle stride,
                             py::handle padding, py::handle dilation, py::handle groups, py::handle mode,
                             py::handle algo) {
  const int t = float_num(x);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper h;
  Conv2dParams p;
  if (t < 0 || array_num(dy) != t || !array_shape(x, true, in, unbatched) || !tuple_shape(weight_shape, false, ws, u) ||
      !parse_conv_hyper(stride, padding, dilation, groups, mode, algo, ws, h) || !params(in, ws, h, p) ||
      !has_shape(dy, unbatched, p.n, p.k, p.oh, p.ow) || bytes(ws[0], ws[1], ws[2], ws[3], itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = h.algo;
  if (t == npy::NPY_FLOAT_) return run_conv2d_bwd_weight<float>(p, ptr<float>(x), ptr<float>(dy), a);
  return run_conv2d_bwd_weight<double>(p, ptr<double>(x), ptr<double>(dy), a);
}

}  // namespace fast

namespace {

ConvDir direction_of(const std::string& name) {
  const int d = registry_index(registry::kDirNames, kNumConvDir, name.c_str());
  if (d < 0) throw std::invalid_argument("direction must be one of " + names_of(registry::kDirNames, kNumConvDir) + ", got '" + name + "'");
  return static_cast<ConvDir>(d);
}

ConvAlgo algo_of(const std::string& name) {
  const int a = registry_index(registry::kAlgoNames, kNumConvAlgo, name.c_str());
  if (a < 0) throw std::invalid_argument("algo must be one of " + names_of(registry::kAlgoNames, kNumConvAlgo) + ", got '" + name + "'");
  return static_cast<ConvAlgo>(a);
}

PadMode mode_of(const std::string& name) {
  const int m = registry_index(registry::kPadModeNames, kNumPadMode, name.c_str());
  if (m < 0) throw std::invalid_argument("padding_mode must be one of " + names_of(registry::kPadModeNames, kNumPadMode) + ", got '" + name + "'");
  return static_cast<PadMode>(m);
}

}  // namespace

void bind_conv2d(py::module_& m) {
  m.def("conv2d_fwd", [](py::array x, py::array w, py::object b, I2 stride, I4 pad, I2 dil, int64_t groups, int mode,
                         int algo) {
    return by_dtype<py::array>(x, "input", [&] { return conv2d_fwd_t<float>(x, w, b, stride, pad, dil, groups, mode, algo); },
                               [&] { return conv2d_fwd_t<double>(x, w, b, stride, pad, dil, groups, mode, algo); });
  });
  m.def("conv2d_fwd_nchwc", [](py::array x, int64_t channels, py::array w, int64_t k, py::object b, I2 stride, I4 pad,
                               I2 dil, bool y_blocked, py::object residual, double lo, double hi, py::object out) {
    return by_dtype<py::array>(x, "input",
        [&] { return conv2d_fwd_nchwc_t<float>(x, channels, w, k, b, stride, pad, dil, y_blocked, residual, lo, hi, out); },
        [&] { return conv2d_fwd_nchwc_t<double>(x, channels, w, k, b, stride, pad, dil, y_blocked, residual, lo, hi, out); });
  }, py::arg("x"), py::arg("channels"), py::arg("w"), py::arg("out_channels"), py::arg("b"), py::arg("stride"),
     py::arg("pad"), py::arg("dilation"), py::arg("y_blocked"), py::arg("residual") = py::none(),
     py::arg("lo") = -std::numeric_limits<double>::infinity(), py::arg("hi") = std::numeric_limits<double>::infinity(),
     py::kw_only(), py::arg("out") = py::none(),
     "Conv forward on the NCHW16c layout (pyconv/nchwc.h): weights packed by pyconv.inference.nchwc.");
  m.def("conv2d_fwd_nchwc_expand_dw", [](py::array x, int64_t channels, py::array we, int64_t ke, py::object be,
                                         double lo_e, double hi_e, py::array wd, py::object bd, I2 stride, I4 pad,
                                         I2 dil, bool y_blocked, py::object residual, double lo, double hi,
                                         py::object out) {
    return by_dtype<py::array>(x, "input",
        [&] { return conv2d_fwd_nchwc_expand_dw_t<float>(x, channels, we, ke, be, lo_e, hi_e, wd, bd, stride, pad, dil,
                                                         y_blocked, residual, lo, hi, out); },
        [&] { return conv2d_fwd_nchwc_expand_dw_t<double>(x, channels, we, ke, be, lo_e, hi_e, wd, bd, stride, pad, dil,
                                                          y_blocked, residual, lo, hi, out); });
  }, py::arg("x"), py::arg("channels"), py::arg("w_expand"), py::arg("expanded"), py::arg("b_expand"),
     py::arg("lo_expand"), py::arg("hi_expand"), py::arg("w_dw"), py::arg("b_dw"), py::arg("stride"), py::arg("pad"),
     py::arg("dilation"), py::arg("y_blocked"), py::arg("residual") = py::none(),
     py::arg("lo") = -std::numeric_limits<double>::infinity(), py::arg("hi") = std::numeric_limits<double>::infinity(),
     py::kw_only(), py::arg("out") = py::none(),
     "A 1x1 expansion then a depthwise conv on NCHW16c in one call, the expansion never stored.");
  m.def("global_avg_pool2d_nchwc", [](py::array x, int64_t channels, bool y_blocked, py::object out) {
    return by_dtype<py::array>(x, "input", [&] { return global_avg_pool2d_nchwc_t<float>(x, channels, y_blocked, out); },
                               [&] { return global_avg_pool2d_nchwc_t<double>(x, channels, y_blocked, out); });
  }, py::arg("x"), py::arg("channels"), py::arg("y_blocked"), py::kw_only(), py::arg("out") = py::none(),
     "Global average pooling of an NCHW16c input (5-D) or an NCHW one (4-D, NCHW output).");
  m.def("nchw_to_blocked", [](py::array x, py::object out) {
    return by_dtype<py::array>(x, "input", [&] { return nchw_to_blocked_t<float>(x, out); },
                               [&] { return nchw_to_blocked_t<double>(x, out); });
  }, py::arg("x"), py::kw_only(), py::arg("out") = py::none(),
     "NCHW (N, C, H, W) to NCHW16c (N, ceil(C/16), H, W, 16), the lanes past C zero.");
  m.def("conv2d_fwd_fused", [](py::array x, py::array w, py::object b, I2 stride, I4 pad, I2 dil, int64_t groups,
                               int algo, py::object residual, double lo, double hi, py::object out, py::object packed) {
    return by_dtype<py::array>(x, "input", [&] { return conv2d_fwd_fused_t<float>(x, w, b, stride, pad, dil, groups, algo, residual, lo, hi, out, packed); },
                               [&] { return conv2d_fwd_fused_t<double>(x, w, b, stride, pad, dil, groups, algo, residual, lo, hi, out, packed); });
  }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("pad"), py::arg("dilation"),
     py::arg("groups"), py::arg("algo"), py::arg("residual") = py::none(),
     py::arg("lo") = -std::numeric_limits<double>::infinity(), py::arg("hi") = std::numeric_limits<double>::infinity(),
     py::kw_only(), py::arg("out") = py::none(), py::arg("packed") = py::none());
  py::class_<Im2colWeights<float>, std::shared_ptr<Im2colWeights<float>>>(
      m, "Im2colWeights", "float32 convolution weights packed once for im2col's GEMM (inference graphs).")
      .def(py::init([](const py::array& w, int64_t groups) {
             check_array(w, "weight", 4, py::dtype::of<float>());
             if (groups < 1 || w.shape(0) % groups)
               throw std::invalid_argument("groups=" + std::to_string(groups) + " must be >= 1 and divide out_channels=" +
                                           std::to_string(w.shape(0)));
             NoGil nogil(static_cast<double>(w.size()));
             return std::make_shared<Im2colWeights<float>>(conv2d_pack_im2col_weights<float>(
                 data<float>(w), w.shape(0), w.shape(1), w.shape(2), w.shape(3), groups));
           }),
           py::arg("weight"), py::arg("groups") = 1)
      .def_property_readonly("shape", [](const Im2colWeights<float>& w) { return py::make_tuple(w.k, w.cg, w.r, w.s); })
      .def_readonly("groups", &Im2colWeights<float>::groups)
      .def_property_readonly("isa", [](const Im2colWeights<float>& w) { return std::string(isa_name(w.isa)); });
  py::class_<Bf16ConvWeights, std::shared_ptr<Bf16ConvWeights>>(
      m, "Bf16ConvWeights", "Convolution weights rounded to bfloat16 and packed once (precision='bfloat16').")
      .def(py::init(&pack_bf16), py::arg("weight"), py::arg("groups") = 1)
      .def_property_readonly("shape", [](const Bf16ConvWeights& w) { return py::make_tuple(w.k, w.cg, w.r, w.s); })
      .def_readonly("groups", &Bf16ConvWeights::groups);
  m.def("conv2d_fwd_bf16", &conv2d_fwd_bf16_t, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("pads"), py::arg("dilation"), py::arg("groups"), py::arg("mode"), py::arg("residual") = py::none(),
        py::arg("lo") = -std::numeric_limits<double>::infinity(), py::arg("hi") = std::numeric_limits<double>::infinity(),
        py::kw_only(), py::arg("out") = py::none());
  m.def("conv2d_bwd_data", [](py::array dy, py::array w, I4 in, I2 stride, I4 pad, I2 dil, int64_t groups, int mode,
                              int algo) {
    return by_dtype<py::array>(dy, "grad_output", [&] { return conv2d_bwd_data_t<float>(dy, w, in, stride, pad, dil, groups, mode, algo); },
                               [&] { return conv2d_bwd_data_t<double>(dy, w, in, stride, pad, dil, groups, mode, algo); });
  });
  m.def("conv2d_bwd_weight", [](py::array x, py::array dy, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, int mode,
                                int algo) {
    return by_dtype<py::array>(x, "input", [&] { return conv2d_bwd_weight_t<float>(x, dy, ws, stride, pad, dil, groups, mode, algo); },
                               [&] { return conv2d_bwd_weight_t<double>(x, dy, ws, stride, pad, dil, groups, mode, algo); });
  });
  m.def("conv2d_fwd_fast", &fast::conv2d_fwd);
  m.def("conv2d_bwd_data_fast", &fast::conv2d_bwd_data);
  m.def("conv2d_bwd_weight_fast", &fast::conv2d_bwd_weight);

  m.def("conv2d_choose_algo", [](I4 in, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, int mode, int dir) {
    const Conv2dParams p = conv_params(in, ws, stride, pad, dil, groups, mode);
    const ConvDir d = static_cast<ConvDir>(registry_code(dir, kNumConvDir, "direction"));
    return std::string(algo_name(conv2d_choose_algo(p, d)));
  });
  m.def(
      "conv2d_plan",
      [](I4 in, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, const std::string& mode, const std::string& direction,
         const std::string& algo, size_t itemsize) {
        if (itemsize != 4 && itemsize != 8) throw std::invalid_argument("itemsize must be 4 or 8");
        const Conv2dParams p = conv_params(in, ws, stride, pad, dil, groups, static_cast<int>(mode_of(mode)));
        const Conv2dPlan plan = conv2d_plan(p, direction_of(direction), algo_of(algo), itemsize);
        py::dict d;
        d["entry"] = plan.entry;
        d["algo"] = std::string(algo_name(plan.algo));
        d["fallback"] = plan.fallback;
        d["skipped"] = plan.skipped;
        return d;
      },
      py::arg("input_shape"), py::arg("weight_shape"), py::arg("stride"), py::arg("pads"), py::arg("dilation"),
      py::arg("groups"), py::arg("padding_mode"), py::arg("direction"), py::arg("algo") = "auto",
      py::arg("itemsize") = 4,
      "The implementation-list entry a call would run now (workspace limit, threads, ISA): entry (as PYCONV_VERBOSE "
      "logs it), algo, fallback, and the entries skipped before it with their reasons.");
  m.def("conv2d_column_bytes", [](I4 in, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, int mode, size_t itemsize) {
    return conv2d_column_bytes(conv_params(in, ws, stride, pad, dil, groups, mode), itemsize, num_threads());
  });
}

}  // namespace bind
}  // namespace pyconv
