// pybind11 bindings: marshal numpy arrays, release the GIL around every kernel call.
// Argument checking for users lives in pyconv/functional.py; the checks here are the cheap
// C++ second line (std::invalid_argument -> ValueError), so a direct caller cannot crash us.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "pyconv/conv2d.h"
#include "pyconv/eltwise.h"
#include "pyconv/gemm.h"
#include "pyconv/isa.h"
#include "pyconv/linear.h"
#include "pyconv/parallel.h"
#include "pyconv/pool2d.h"
#include "sizes.h"

namespace py = pybind11;
using namespace pyconv;

// threadpoolctl finds pyconv's pool by these two symbols (the controller is pyconv/_threads.py).
extern "C" {
PYBIND11_EXPORT int pyconv_get_num_threads() { return num_threads(); }
PYBIND11_EXPORT void pyconv_set_num_threads(int n) {
  try {
    set_num_threads(std::max(1, std::min(n, 1024)));
  } catch (...) {  // nothing may unwind into ctypes
  }
}
}

namespace {

using I2 = std::array<int64_t, 2>;
using I4 = std::array<int64_t, 4>;

std::atomic<bool> g_poison{false};

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Same kind and size (and native byte order) as `dt`; dtype objects compare by identity in
// pybind11, and numpy may hand us an equal but distinct descriptor.
bool same_dtype(const py::dtype& a, const py::dtype& dt) {
  return a.kind() == dt.kind() && a.itemsize() == dt.itemsize() && a.byteorder() != '>';
}

void check_array(const py::array& a, const char* name, py::ssize_t ndim, const py::dtype& dt) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(a));
  if (!same_dtype(a.dtype(), dt))
    throw std::invalid_argument(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                                std::string(py::str(dt)));
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous and aligned");
}

void check_shape(const py::array& a, const char* name, const std::vector<int64_t>& want) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(static_cast<py::ssize_t>(i)) == want[i];
  if (!ok) {
    std::string w = "(";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
    throw std::invalid_argument(std::string(name) + " has shape " + shape_str(a) + ", expected " + w + ")");
  }
}

// A new C-contiguous array (numpy's constructor directly: py::array_t's shape containers cost
// more than a lecture-sized kernel).
template <class T>
py::array_t<T> new_array(int nd, const int64_t* shape) {
  static_assert(sizeof(Py_intptr_t) == sizeof(int64_t), "numpy dimensions are 64-bit");
  const auto& api = py::detail::npy_api::get();
  PyObject* o = api.PyArray_NewFromDescr_(api.PyArray_Type_, py::dtype::of<T>().release().ptr(), nd,
                                          reinterpret_cast<const Py_intptr_t*>(shape), nullptr, nullptr, 0, nullptr);
  if (o == nullptr) throw py::error_already_set();
  auto a = py::reinterpret_steal<py::array_t<T>>(o);
  if (g_poison.load()) {
    T* p = a.mutable_data();
    const T v = std::is_floating_point<T>::value ? std::numeric_limits<T>::quiet_NaN() : std::numeric_limits<T>::min();
    for (py::ssize_t i = 0; i < a.size(); ++i) p[i] = v;
  }
  return a;
}

template <class T>
py::array_t<T> new_array(const std::vector<int64_t>& shape) {
  return new_array<T>(static_cast<int>(shape.size()), shape.data());
}

template <class T>
const T* data(const py::array& a) { return static_cast<const T*>(a.data()); }

Conv2dParams conv_params(const I4& in, const I4& wshape, const I2& stride, const I4& pad, const I2& dil,
                         int64_t groups, int mode) {
  if (mode < 0 || mode > 3) throw std::invalid_argument("padding_mode code must be 0..3, got " + std::to_string(mode));
  Conv2dParams p;
  p.n = in[0]; p.c = in[1]; p.h = in[2]; p.w = in[3];
  p.k = wshape[0]; p.r = wshape[2]; p.s = wshape[3];
  p.groups = groups;
  if (groups >= 1 && wshape[1] * groups != in[1])
    throw std::invalid_argument("conv2d: input has " + std::to_string(in[1]) + " channels but weight expects " +
                                std::to_string(wshape[1] * groups) + " (weight.shape[1] * groups)");
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_t = pad[0]; p.pad_b = pad[1]; p.pad_l = pad[2]; p.pad_r = pad[3];
  p.dil_h = dil[0]; p.dil_w = dil[1];
  p.mode = static_cast<PadMode>(mode);
  conv2d_validate(p);
  return p;
}

ConvAlgo conv_algo(int algo) {
  if (algo < 0 || algo > 3) throw std::invalid_argument("algo code must be 0..3, got " + std::to_string(algo));
  return static_cast<ConvAlgo>(algo);
}

I4 shape4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

// Work (multiply-adds or element visits) from which a call releases the GIL: below it, releasing
// and re-acquiring costs more than the kernel and other Python threads gain nothing.
constexpr double kNoGilWork = 1 << 14;

struct NoGil {
  std::optional<py::gil_scoped_release> release;
  explicit NoGil(double work) {
    if (work >= kNoGilWork) release.emplace();
  }
};

double conv_work(const Conv2dParams& p) {
  return static_cast<double>(p.n * p.k * p.oh * p.ow) * static_cast<double>(p.c / p.groups * p.r * p.s);
}
double pool_work(const Pool2dParams& p) { return static_cast<double>(p.n * p.c * p.oh * p.ow) * static_cast<double>(p.kh * p.kw); }

// (N, C, H, W), or (C, H, W) for an unbatched call (N = 1).
template <class T>
py::array_t<T> new_nchw(bool unbatched, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t s[4] = {n, c, h, w};
  return unbatched ? new_array<T>(3, s + 1) : new_array<T>(4, s);
}

// The operators on validated parameters and arrays, shared by the checked bindings and the fast
// entry points below.
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

// (y, indices), or (y, None) without indices: the kernel then tracks none.
template <class T>
py::tuple run_max_pool2d_fwd(const Pool2dParams& p, const T* x, bool with_idx, bool unbatched) {
  auto y = new_nchw<T>(unbatched, p.n, p.c, p.oh, p.ow);
  py::object idx = py::none();
  int64_t* ip = nullptr;
  if (with_idx) {
    auto a = new_nchw<int64_t>(unbatched, p.n, p.c, p.oh, p.ow);
    ip = a.mutable_data();
    idx = std::move(a);
  }
  T* yp = y.mutable_data();
  {
    NoGil nogil(pool_work(p));
    max_pool2d_fwd<T>(p, x, yp, ip);
  }
  return py::make_tuple(y, idx);
}

template <class T>
py::array run_max_pool2d_bwd(const Pool2dParams& p, const T* dy, const T* x, const int64_t* idx, bool unbatched) {
  auto dx = new_nchw<T>(unbatched, p.n, p.c, p.h, p.w);
  T* dxp = dx.mutable_data();
  {
    NoGil nogil(pool_work(p));
    max_pool2d_bwd<T>(p, dy, x, idx, dxp);
  }
  return std::move(dx);
}

template <class T>
py::array run_avg_pool2d_fwd(const Pool2dParams& p, const T* x, bool unbatched) {
  auto y = new_nchw<T>(unbatched, p.n, p.c, p.oh, p.ow);
  T* yp = y.mutable_data();
  {
    NoGil nogil(pool_work(p));
    avg_pool2d_fwd<T>(p, x, yp);
  }
  return std::move(y);
}

template <class T>
py::array run_avg_pool2d_bwd(const Pool2dParams& p, const T* dy, bool unbatched) {
  auto dx = new_nchw<T>(unbatched, p.n, p.c, p.h, p.w);
  T* dxp = dx.mutable_data();
  {
    NoGil nogil(pool_work(p));
    avg_pool2d_bwd<T>(p, dy, dxp);
  }
  return std::move(dx);
}

template <class T>
py::array conv2d_fwd_t(const py::array& x, const py::array& w, const py::object& b, I2 stride, I4 pad, I2 dil,
                       int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(w, "weight", 4, dt);
  const Conv2dParams p = conv_params(shape4(x), shape4(w), stride, pad, dil, groups, mode);
  const T* bp = nullptr;
  py::array bias;
  if (!b.is_none()) {
    bias = py::array(b);
    check_array(bias, "bias", 1, dt);
    check_shape(bias, "bias", {p.k});
    bp = data<T>(bias);
  }
  return run_conv2d_fwd<T>(p, data<T>(x), data<T>(w), bp, conv_algo(algo), false);
}

template <class T>
py::array conv2d_bwd_data_t(const py::array& dy, const py::array& w, I4 in, I2 stride, I4 pad, I2 dil,
                            int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(dy, "grad_output", 4, dt);
  check_array(w, "weight", 4, dt);
  const Conv2dParams p = conv_params(in, shape4(w), stride, pad, dil, groups, mode);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  return run_conv2d_bwd_data<T>(p, data<T>(dy), data<T>(w), conv_algo(algo), false);
}

template <class T>
py::array conv2d_bwd_weight_t(const py::array& x, const py::array& dy, I4 wshape, I2 stride, I4 pad, I2 dil,
                              int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(dy, "grad_output", 4, dt);
  const Conv2dParams p = conv_params(shape4(x), wshape, stride, pad, dil, groups, mode);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  return run_conv2d_bwd_weight<T>(p, data<T>(x), data<T>(dy), conv_algo(algo));
}

Pool2dParams pool_params(const I4& in, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode) {
  Pool2dParams p;
  p.n = in[0]; p.c = in[1]; p.h = in[2]; p.w = in[3];
  p.kh = k[0]; p.kw = k[1];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_h = pad[0]; p.pad_w = pad[1];
  p.dil_h = dil[0]; p.dil_w = dil[1];
  p.ceil_mode = ceil_mode;
  pool2d_validate(p);
  return p;
}

template <class T>
py::tuple max_pool2d_fwd_t(const py::array& x, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode, bool with_idx) {
  check_array(x, "input", 4, py::dtype::of<T>());
  const Pool2dParams p = pool_params(shape4(x), k, stride, pad, dil, ceil_mode);
  return run_max_pool2d_fwd<T>(p, data<T>(x), with_idx, false);
}

template <class T>
py::array max_pool2d_bwd_t(const py::array& dy, const py::array& x, const py::object& indices, I2 k, I2 stride,
                           I2 pad, I2 dil, bool ceil_mode) {
  const auto dt = py::dtype::of<T>();
  check_array(dy, "grad_output", 4, dt);
  check_array(x, "input", 4, dt);
  const Pool2dParams p = pool_params(shape4(x), k, stride, pad, dil, ceil_mode);
  check_shape(dy, "grad_output", {p.n, p.c, p.oh, p.ow});
  const int64_t* ip = nullptr;
  py::array idx;
  if (!indices.is_none()) {
    idx = py::array(indices);
    check_array(idx, "indices", 4, py::dtype::of<int64_t>());
    check_shape(idx, "indices", {p.n, p.c, p.oh, p.ow});
    ip = data<int64_t>(idx);
  }
  return run_max_pool2d_bwd<T>(p, data<T>(dy), data<T>(x), ip, false);
}

Pool2dParams avg_params(const I4& in, I2 k, I2 stride, I2 pad, bool ceil_mode, bool count_include_pad,
                        int64_t divisor) {
  Pool2dParams p = pool_params(in, k, stride, pad, {1, 1}, ceil_mode);
  p.count_include_pad = count_include_pad;
  p.divisor = divisor;
  return p;
}

template <class T>
py::array avg_pool2d_fwd_t(const py::array& x, I2 k, I2 stride, I2 pad, bool ceil_mode, bool cip, int64_t divisor) {
  check_array(x, "input", 4, py::dtype::of<T>());
  const Pool2dParams p = avg_params(shape4(x), k, stride, pad, ceil_mode, cip, divisor);
  return run_avg_pool2d_fwd<T>(p, data<T>(x), false);
}

template <class T>
py::array avg_pool2d_bwd_t(const py::array& dy, I4 in, I2 k, I2 stride, I2 pad, bool ceil_mode, bool cip,
                           int64_t divisor) {
  check_array(dy, "grad_output", 4, py::dtype::of<T>());
  const Pool2dParams p = avg_params(in, k, stride, pad, ceil_mode, cip, divisor);
  check_shape(dy, "grad_output", {p.n, p.c, p.oh, p.ow});
  return run_avg_pool2d_bwd<T>(p, data<T>(dy), false);
}

// Calls f<float> or f<double> by the dtype of `a`.
template <class R, class F32, class F64>
R by_dtype(const py::array& a, const char* name, F32&& f32, F64&& f64) {
  if (same_dtype(a.dtype(), py::dtype::of<float>())) return f32();
  if (same_dtype(a.dtype(), py::dtype::of<double>())) return f64();
  throw py::type_error(std::string(name) + " must be float32 or float64, got " + std::string(py::str(a.dtype())));
}

// Elementwise ops take any shape (C-contiguous); results have the input's shape.
std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

void check_any_shape(const py::array& a, const char* name, const py::dtype& dt) {
  if (!same_dtype(a.dtype(), dt))
    throw std::invalid_argument(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                                std::string(py::str(dt)));
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous and aligned");
}

template <class T>
py::array relu_fwd_t(const py::array& x) {
  check_any_shape(x, "input", py::dtype::of<T>());
  auto y = new_array<T>(shape_of(x));
  T* yp = y.mutable_data();
  {
    NoGil nogil(static_cast<double>(x.size()));
    relu_fwd<T>(data<T>(x), yp, x.size());
  }
  return std::move(y);
}

template <class T>
py::array relu_bwd_t(const py::array& dy, const py::array& x) {
  const auto dt = py::dtype::of<T>();
  check_any_shape(dy, "grad_output", dt);
  check_any_shape(x, "input", dt);
  check_shape(dy, "grad_output", shape_of(x));
  auto dx = new_array<T>(shape_of(x));
  T* dxp = dx.mutable_data();
  {
    NoGil nogil(static_cast<double>(x.size()));
    relu_bwd<T>(data<T>(dy), data<T>(x), dxp, x.size());
  }
  return std::move(dx);
}

template <class T>
py::array bias_grad_t(const py::array& dy) {
  check_array(dy, "grad_output", 4, py::dtype::of<T>());
  const I4 s = shape4(dy);
  auto db = new_array<T>({s[1]});
  T* dbp = db.mutable_data();
  {
    NoGil nogil(static_cast<double>(dy.size()));
    bias_grad<T>(data<T>(dy), s[0], s[1], s[2] * s[3], dbp);
  }
  return std::move(db);
}

// Linear: x (m, k), w (n, k), dy (m, n), all C-contiguous of one dtype (functional.py flattens
// the leading dimensions).
template <class T>
py::array linear_fwd_t(const py::array& x, const py::array& w, const py::object& b) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 2, dt);
  check_array(w, "weight", 2, dt);
  const int64_t m = x.shape(0), k = x.shape(1), n = w.shape(0);
  check_shape(w, "weight", {n, k});
  const T* bp = nullptr;
  if (!b.is_none()) {
    const py::array ba = b.cast<py::array>();
    check_array(ba, "bias", 1, dt);
    check_shape(ba, "bias", {n});
    bp = data<T>(ba);
  }
  auto y = new_array<T>({m, n});
  T* yp = y.mutable_data();
  {
    NoGil nogil(static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
    linear_fwd<T>(m, k, n, data<T>(x), data<T>(w), bp, yp);
  }
  return std::move(y);
}

template <class T>
py::array linear_bwd_data_t(const py::array& dy, const py::array& w) {
  const auto dt = py::dtype::of<T>();
  check_array(dy, "grad_output", 2, dt);
  check_array(w, "weight", 2, dt);
  const int64_t m = dy.shape(0), n = dy.shape(1), k = w.shape(1);
  check_shape(w, "weight", {n, k});
  auto dx = new_array<T>({m, k});
  T* dxp = dx.mutable_data();
  {
    NoGil nogil(static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
    linear_bwd_data<T>(m, k, n, data<T>(dy), data<T>(w), dxp);
  }
  return std::move(dx);
}

template <class T>
py::array linear_bwd_weight_t(const py::array& x, const py::array& dy) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 2, dt);
  check_array(dy, "grad_output", 2, dt);
  const int64_t m = x.shape(0), k = x.shape(1), n = dy.shape(1);
  check_shape(dy, "grad_output", {m, n});
  auto dw = new_array<T>({n, k});
  T* dwp = dw.mutable_data();
  {
    NoGil nogil(static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
    linear_bwd_weight<T>(m, k, n, data<T>(x), data<T>(dy), dwp);
  }
  return std::move(dw);
}

// Fast entry points: pyconv.functional calls these first with the user's arguments as given. They
// run the operator in one call when every argument is already in canonical form (exact ndarrays of
// one float dtype, C-contiguous, aligned, native byte order; exact ints, pairs of them as tuples,
// bools and strings) and valid, and return None for anything else, including every error: the
// validating Python path then converts what it may and raises the error with its message.
namespace fast {

using npy = py::detail::npy_api;

// Outputs larger than this take the validating path, which first checks them against memory.
constexpr double kMaxBytes = double(int64_t{1} << 30);

// The numpy type number of an ndarray the kernels can read as is, else -1.
int array_num(py::handle o) {
  const auto& api = npy::get();
  if (Py_TYPE(o.ptr()) != api.PyArray_Type_) return -1;
  const auto* a = py::detail::array_proxy(o.ptr());
  constexpr int need = npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_;
  if ((a->flags & need) != need) return -1;
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  return d->byteorder == '>' ? -1 : d->type_num;
}

int float_num(py::handle o) {
  const int t = array_num(o);
  return t == npy::NPY_FLOAT_ || t == npy::NPY_DOUBLE_ ? t : -1;
}

bool as_int(py::handle o, int64_t& v) {
  if (!PyLong_CheckExact(o.ptr())) return false;
  int overflow = 0;
  v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
  return overflow == 0;
}

// An int or a tuple of two ints.
bool as_pair(py::handle o, I2& v) {
  if (PyTuple_CheckExact(o.ptr()))
    return PyTuple_GET_SIZE(o.ptr()) == 2 && as_int(PyTuple_GET_ITEM(o.ptr(), 0), v[0]) &&
           as_int(PyTuple_GET_ITEM(o.ptr(), 1), v[1]);
  if (!as_int(o, v[0])) return false;
  v[1] = v[0];
  return true;
}

bool as_bool(py::handle o, bool& v) {
  if (o.ptr() != Py_True && o.ptr() != Py_False) return false;
  v = o.ptr() == Py_True;
  return true;
}

// Position of the string o among names, or -1.
int choice(py::handle o, std::initializer_list<const char*> names) {
  if (!PyUnicode_CheckExact(o.ptr())) return -1;
  int i = 0;
  for (const char* s : names) {
    if (PyUnicode_CompareWithASCIIString(o.ptr(), s) == 0) return i;
    ++i;
  }
  return -1;
}

// An (N, C, H, W) shape with N >= 1 from a 4-D array/tuple, or from a 3-D one (unbatched, N = 1)
// when allowed. N = 0 takes the validating path.
bool batched(int nd, const int64_t* d, bool allow3, I4& s, bool& unbatched) {
  unbatched = nd == 3;
  if (nd == 4) s = {d[0], d[1], d[2], d[3]};
  else if (nd == 3 && allow3) s = {1, d[0], d[1], d[2]};
  else return false;
  return s[0] >= 1;
}

bool array_shape(py::handle a, bool allow3, I4& s, bool& unbatched) {
  const auto* p = py::detail::array_proxy(a.ptr());
  return batched(p->nd, reinterpret_cast<const int64_t*>(p->dimensions), allow3, s, unbatched);
}

bool tuple_shape(py::handle o, bool allow3, I4& s, bool& unbatched) {
  if (!PyTuple_CheckExact(o.ptr())) return false;
  const Py_ssize_t nd = PyTuple_GET_SIZE(o.ptr());
  if (nd != 3 && nd != 4) return false;
  int64_t d[4];
  for (Py_ssize_t i = 0; i < nd; ++i)
    if (!as_int(PyTuple_GET_ITEM(o.ptr(), i), d[i])) return false;
  return batched(static_cast<int>(nd), d, allow3, s, unbatched);
}

// The array has shape (n, c, h, w), without n when unbatched.
bool has_shape(py::handle a, bool unbatched, int64_t n, int64_t c, int64_t h, int64_t w) {
  const auto* p = py::detail::array_proxy(a.ptr());
  const int64_t want[4] = {n, c, h, w};
  const int off = unbatched ? 1 : 0;
  if (p->nd != 4 - off) return false;
  for (int i = 0; i < p->nd; ++i)
    if (p->dimensions[i] != want[i + off]) return false;
  return true;
}

bool is_vector(py::handle a, int64_t n) {
  const auto* p = py::detail::array_proxy(a.ptr());
  return p->nd == 1 && p->dimensions[0] == n;
}

double bytes(int64_t a, int64_t b, int64_t c, int64_t d, int itemsize) {
  return static_cast<double>(a) * static_cast<double>(b) * static_cast<double>(c) * static_cast<double>(d) * itemsize;
}

int itemsize(int num) { return num == npy::NPY_FLOAT_ ? 4 : 8; }

template <class T>
const T* ptr(py::handle a) { return reinterpret_cast<const T*>(py::detail::array_proxy(a.ptr())->data); }

// Convolution hyper-parameters as functional.conv2d takes them; false if not canonical.
struct ConvHyper {
  I2 stride, dil;
  int64_t groups;
  int mode, algo;
  py::handle padding;
  bool parse(py::handle s, py::handle pad, py::handle d, py::handle g, py::handle m, py::handle a) {
    mode = choice(m, {"zeros", "reflect", "replicate", "circular"});
    algo = choice(a, {"auto", "direct", "im2col", "winograd"});
    padding = pad;
    return as_pair(s, stride) && as_pair(d, dil) && as_int(g, groups) && mode >= 0 && algo >= 0;
  }
  // Validated parameters for these shapes (the C++ checks; false where they would throw).
  bool params(const I4& in, const I4& ws, Conv2dParams& p) const {
    I4 pads;
    I2 pp;
    if (as_pair(padding, pp)) {
      pads = {pp[0], pp[0], pp[1], pp[1]};
    } else if (choice(padding, {"valid"}) == 0) {
      pads = {0, 0, 0, 0};
    } else {
      // "same": stride 1; the extra pixel of an even kernel goes bottom/right.
      int64_t th, tw;
      if (choice(padding, {"same"}) != 0 || stride[0] != 1 || stride[1] != 1 || dil[0] < 1 || dil[1] < 1 ||
          __builtin_mul_overflow(dil[0], ws[2] - 1, &th) || __builtin_mul_overflow(dil[1], ws[3] - 1, &tw))
        return false;
      pads = {th / 2, th - th / 2, tw / 2, tw - tw / 2};
    }
    try {
      p = conv_params(in, ws, stride, pads, dil, groups, mode);
    } catch (const std::invalid_argument&) {
      return false;
    }
    return true;
  }
};

py::object conv2d_fwd(py::handle x, py::handle w, py::handle b, py::handle stride, py::handle padding,
                      py::handle dilation, py::handle groups, py::handle mode, py::handle algo) {
  const int t = float_num(x);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper hp;
  Conv2dParams p;
  if (t < 0 || array_num(w) != t || !(b.is_none() || array_num(b) == t) || !array_shape(x, true, in, unbatched) ||
      !array_shape(w, false, ws, u) || !hp.parse(stride, padding, dilation, groups, mode, algo) || !hp.params(in, ws, p) ||
      !(b.is_none() || is_vector(b, p.k)) || bytes(p.n, p.k, p.oh, p.ow, itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = static_cast<ConvAlgo>(hp.algo);
  if (t == npy::NPY_FLOAT_)
    return run_conv2d_fwd<float>(p, ptr<float>(x), ptr<float>(w), b.is_none() ? nullptr : ptr<float>(b), a, unbatched);
  return run_conv2d_fwd<double>(p, ptr<double>(x), ptr<double>(w), b.is_none() ? nullptr : ptr<double>(b), a, unbatched);
}

py::object conv2d_bwd_data(py::handle dy, py::handle w, py::handle input_shape, py::handle stride, py::handle padding,
                           py::handle dilation, py::handle groups, py::handle mode, py::handle algo) {
  const int t = float_num(dy);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper hp;
  Conv2dParams p;
  if (t < 0 || array_num(w) != t || !tuple_shape(input_shape, true, in, unbatched) || !array_shape(w, false, ws, u) ||
      !hp.parse(stride, padding, dilation, groups, mode, algo) || !hp.params(in, ws, p) ||
      !has_shape(dy, unbatched, p.n, p.k, p.oh, p.ow) || bytes(p.n, p.c, p.h, p.w, itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = static_cast<ConvAlgo>(hp.algo);
  if (t == npy::NPY_FLOAT_) return run_conv2d_bwd_data<float>(p, ptr<float>(dy), ptr<float>(w), a, unbatched);
  return run_conv2d_bwd_data<double>(p, ptr<double>(dy), ptr<double>(w), a, unbatched);
}

py::object conv2d_bwd_weight(py::handle x, py::handle dy, py::handle weight_shape, py::handle stride,
                             py::handle padding, py::handle dilation, py::handle groups, py::handle mode,
                             py::handle algo) {
  const int t = float_num(x);
  I4 in, ws;
  bool unbatched, u;
  ConvHyper hp;
  Conv2dParams p;
  if (t < 0 || array_num(dy) != t || !array_shape(x, true, in, unbatched) || !tuple_shape(weight_shape, false, ws, u) ||
      !hp.parse(stride, padding, dilation, groups, mode, algo) || !hp.params(in, ws, p) ||
      !has_shape(dy, unbatched, p.n, p.k, p.oh, p.ow) || bytes(ws[0], ws[1], ws[2], ws[3], itemsize(t)) > kMaxBytes)
    return py::none();
  const ConvAlgo a = static_cast<ConvAlgo>(hp.algo);
  if (t == npy::NPY_FLOAT_) return run_conv2d_bwd_weight<float>(p, ptr<float>(x), ptr<float>(dy), a);
  return run_conv2d_bwd_weight<double>(p, ptr<double>(x), ptr<double>(dy), a);
}

// Pooling geometry as functional's pooling functions take it (stride None or () = kernel_size).
bool pool_geometry(const I4& in, py::handle k, py::handle s, py::handle pad, I2 dil, py::handle ceil, Pool2dParams& p) {
  I2 kk, ss, pp;
  bool cm;
  if (!as_pair(k, kk) || !as_pair(pad, pp) || !as_bool(ceil, cm)) return false;
  if (s.is_none() || (PyTuple_CheckExact(s.ptr()) && PyTuple_GET_SIZE(s.ptr()) == 0)) ss = kk;
  else if (!as_pair(s, ss)) return false;
  try {
    p = pool_params(in, kk, ss, pp, dil, cm);
  } catch (const std::invalid_argument&) {
    return false;
  }
  return true;
}

bool avg_options(py::handle cip, py::handle divisor, Pool2dParams& p) {
  int64_t d = 0;
  if (!as_bool(cip, p.count_include_pad)) return false;
  if (!divisor.is_none() && (!as_int(divisor, d) || d == 0 || d > (int64_t{1} << 62) || d < -(int64_t{1} << 62)))
    return false;
  p.divisor = d;
  return true;
}

py::object max_pool2d(py::handle x, py::handle k, py::handle s, py::handle pad, py::handle dilation, py::handle ceil,
                      py::handle return_indices) {
  const int t = float_num(x);
  I4 in;
  I2 dil;
  bool unbatched, with_idx;
  Pool2dParams p;
  if (t < 0 || !array_shape(x, true, in, unbatched) || !as_pair(dilation, dil) || !as_bool(return_indices, with_idx) ||
      !pool_geometry(in, k, s, pad, dil, ceil, p) || bytes(p.n, p.c, p.oh, p.ow, itemsize(t) + (with_idx ? 8 : 0)) > kMaxBytes)
    return py::none();
  py::tuple r = t == npy::NPY_FLOAT_ ? run_max_pool2d_fwd<float>(p, ptr<float>(x), with_idx, unbatched)
                                     : run_max_pool2d_fwd<double>(p, ptr<double>(x), with_idx, unbatched);
  return with_idx ? py::object(r) : py::object(r[0]);
}

py::object max_pool2d_grad(py::handle dy, py::handle x, py::handle k, py::handle s, py::handle pad,
                           py::handle dilation, py::handle ceil, py::handle indices) {
  const int t = float_num(x);
  I4 in;
  I2 dil;
  bool unbatched;
  Pool2dParams p;
  if (t < 0 || array_num(dy) != t || !array_shape(x, true, in, unbatched) || !as_pair(dilation, dil) ||
      !pool_geometry(in, k, s, pad, dil, ceil, p) || !has_shape(dy, unbatched, p.n, p.c, p.oh, p.ow) ||
      !(indices.is_none() || (array_num(indices) == npy::NPY_INT64_ && has_shape(indices, unbatched, p.n, p.c, p.oh, p.ow))) ||
      bytes(p.n, p.c, p.h, p.w, itemsize(t)) > kMaxBytes)
    return py::none();
  const int64_t* ip = indices.is_none() ? nullptr : ptr<int64_t>(indices);
  if (t == npy::NPY_FLOAT_) return run_max_pool2d_bwd<float>(p, ptr<float>(dy), ptr<float>(x), ip, unbatched);
  return run_max_pool2d_bwd<double>(p, ptr<double>(dy), ptr<double>(x), ip, unbatched);
}

py::object avg_pool2d(py::handle x, py::handle k, py::handle s, py::handle pad, py::handle ceil, py::handle cip,
                      py::handle divisor) {
  const int t = float_num(x);
  I4 in;
  bool unbatched;
  Pool2dParams p;
  if (t < 0 || !array_shape(x, true, in, unbatched) || !pool_geometry(in, k, s, pad, {1, 1}, ceil, p) ||
      !avg_options(cip, divisor, p) || bytes(p.n, p.c, p.oh, p.ow, itemsize(t)) > kMaxBytes)
    return py::none();
  if (t == npy::NPY_FLOAT_) return run_avg_pool2d_fwd<float>(p, ptr<float>(x), unbatched);
  return run_avg_pool2d_fwd<double>(p, ptr<double>(x), unbatched);
}

py::object avg_pool2d_grad(py::handle dy, py::handle input_shape, py::handle k, py::handle s, py::handle pad,
                           py::handle ceil, py::handle cip, py::handle divisor) {
  const int t = float_num(dy);
  I4 in;
  bool unbatched;
  Pool2dParams p;
  if (t < 0 || !tuple_shape(input_shape, true, in, unbatched) || !pool_geometry(in, k, s, pad, {1, 1}, ceil, p) ||
      !avg_options(cip, divisor, p) || !has_shape(dy, unbatched, p.n, p.c, p.oh, p.ow) ||
      bytes(p.n, p.c, p.h, p.w, itemsize(t)) > kMaxBytes)
    return py::none();
  if (t == npy::NPY_FLOAT_) return run_avg_pool2d_bwd<float>(p, ptr<float>(dy), unbatched);
  return run_avg_pool2d_bwd<double>(p, ptr<double>(dy), unbatched);
}

}  // namespace fast

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (Isa isa : compiled_isas()) {
    const std::string sfx = std::string("_") + isa_name(isa);
#define PYCONV_KERNEL(fam, op, dir, algo)                                                     \
  if (std::string(#fam) == "gemm_ukernel") {                                                 \
    const GemmTile& ts = gemm_tile<float>(isa);                                              \
    const GemmTile& td = gemm_tile<double>(isa);                                             \
    names.push_back("sgemm_ukernel_" + std::to_string(ts.mr) + "x" + std::to_string(ts.nr) + sfx); \
    names.push_back("dgemm_ukernel_" + std::to_string(td.mr) + "x" + std::to_string(td.nr) + sfx); \
  } else {                                                                                   \
    names.push_back(#fam + sfx);                                                             \
  }
#include "kernels.def"
#undef PYCONV_KERNEL
  }
  return names;
}

#define PYCONV_STR_(x) #x
#define PYCONV_STR(x) PYCONV_STR_(x)

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyconv C++ core (use pyconv.functional; these functions expect validated arguments)";
  m.attr("__version__") = PYCONV_VERSION;

  m.def("conv2d_fwd", [](py::array x, py::array w, py::object b, I2 stride, I4 pad, I2 dil, int64_t groups, int mode,
                         int algo) {
    return by_dtype<py::array>(x, "input", [&] { return conv2d_fwd_t<float>(x, w, b, stride, pad, dil, groups, mode, algo); },
                               [&] { return conv2d_fwd_t<double>(x, w, b, stride, pad, dil, groups, mode, algo); });
  });
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
  m.def("conv2d_choose_algo", [](I4 in, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, int mode, int dir) {
    const Conv2dParams p = conv_params(in, ws, stride, pad, dil, groups, mode);
    if (dir < 0 || dir > 2) throw std::invalid_argument("direction code must be 0..2");
    const ConvAlgo a = conv2d_choose_algo(p, static_cast<ConvDir>(dir));
    return a == ConvAlgo::direct ? "direct" : a == ConvAlgo::winograd ? "winograd" : "im2col";
  });
  m.def("conv2d_column_bytes", [](I4 in, I4 ws, I2 stride, I4 pad, I2 dil, int64_t groups, int mode, size_t itemsize) {
    return conv2d_column_bytes(conv_params(in, ws, stride, pad, dil, groups, mode), itemsize, num_threads());
  });
  m.def("max_pool2d_fwd", [](py::array x, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode, bool with_idx) {
    return by_dtype<py::tuple>(x, "input", [&] { return max_pool2d_fwd_t<float>(x, k, stride, pad, dil, ceil_mode, with_idx); },
                               [&] { return max_pool2d_fwd_t<double>(x, k, stride, pad, dil, ceil_mode, with_idx); });
  }, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("pad"), py::arg("dilation"), py::arg("ceil_mode"),
     py::arg("with_indices") = true);
  m.def("max_pool2d_bwd", [](py::array dy, py::array x, py::object idx, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode) {
    return by_dtype<py::array>(dy, "grad_output", [&] { return max_pool2d_bwd_t<float>(dy, x, idx, k, stride, pad, dil, ceil_mode); },
                               [&] { return max_pool2d_bwd_t<double>(dy, x, idx, k, stride, pad, dil, ceil_mode); });
  });
  m.def("avg_pool2d_fwd", [](py::array x, I2 k, I2 stride, I2 pad, bool ceil_mode, bool cip, int64_t divisor) {
    return by_dtype<py::array>(x, "input", [&] { return avg_pool2d_fwd_t<float>(x, k, stride, pad, ceil_mode, cip, divisor); },
                               [&] { return avg_pool2d_fwd_t<double>(x, k, stride, pad, ceil_mode, cip, divisor); });
  });
  m.def("avg_pool2d_bwd", [](py::array dy, I4 in, I2 k, I2 stride, I2 pad, bool ceil_mode, bool cip, int64_t divisor) {
    return by_dtype<py::array>(dy, "grad_output", [&] { return avg_pool2d_bwd_t<float>(dy, in, k, stride, pad, ceil_mode, cip, divisor); },
                               [&] { return avg_pool2d_bwd_t<double>(dy, in, k, stride, pad, ceil_mode, cip, divisor); });
  });
  m.def("relu_fwd", [](py::array x) {
    return by_dtype<py::array>(x, "input", [&] { return relu_fwd_t<float>(x); }, [&] { return relu_fwd_t<double>(x); });
  });
  m.def("relu_bwd", [](py::array dy, py::array x) {
    return by_dtype<py::array>(x, "input", [&] { return relu_bwd_t<float>(dy, x); },
                               [&] { return relu_bwd_t<double>(dy, x); });
  });
  m.def("bias_grad", [](py::array dy) {
    return by_dtype<py::array>(dy, "grad_output", [&] { return bias_grad_t<float>(dy); },
                               [&] { return bias_grad_t<double>(dy); });
  });
  m.def("linear_fwd", [](py::array x, py::array w, py::object b) {
    return by_dtype<py::array>(x, "input", [&] { return linear_fwd_t<float>(x, w, b); },
                               [&] { return linear_fwd_t<double>(x, w, b); });
  });
  m.def("linear_bwd_data", [](py::array dy, py::array w) {
    return by_dtype<py::array>(dy, "grad_output", [&] { return linear_bwd_data_t<float>(dy, w); },
                               [&] { return linear_bwd_data_t<double>(dy, w); });
  });
  m.def("linear_bwd_weight", [](py::array x, py::array dy) {
    return by_dtype<py::array>(x, "input", [&] { return linear_bwd_weight_t<float>(x, dy); },
                               [&] { return linear_bwd_weight_t<double>(x, dy); });
  });
  m.def("pool2d_out_size", &pool2d_out_size, py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
        py::arg("dilation"), py::arg("ceil_mode"));

  m.def("conv2d_fwd_fast", &fast::conv2d_fwd);
  m.def("conv2d_bwd_data_fast", &fast::conv2d_bwd_data);
  m.def("conv2d_bwd_weight_fast", &fast::conv2d_bwd_weight);
  m.def("max_pool2d_fast", &fast::max_pool2d);
  m.def("max_pool2d_grad_fast", &fast::max_pool2d_grad);
  m.def("avg_pool2d_fast", &fast::avg_pool2d);
  m.def("avg_pool2d_grad_fast", &fast::avg_pool2d_grad);

  m.def("kernels", &kernel_names, "Names of the compiled kernels, <family>_<isa>.");
  m.def("compiled_isas", [] {
    std::vector<std::string> v;
    for (Isa i : compiled_isas()) v.push_back(isa_name(i));
    return v;
  });
  m.def("cpu_isa", [] { return std::string(isa_name(detected_isa())); });
  m.def("get_max_isa", [] { return std::string(isa_name(max_isa())); });
  m.def("set_max_isa", [](const std::string& name) { set_max_isa(isa_from_name(name)); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("cpu_features", &cpu_features);
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", &pyconv::set_num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("get_spin_us", &spin_us);
  m.def("set_spin_us", &set_spin_us);
  m.def("get_workspace_limit", &workspace_limit);
  m.def("set_workspace_limit", &set_workspace_limit);
  m.def("set_poison", [](bool on) { g_poison.store(on); }, "Fill every output with NaN before kernels write it (tests).");
  m.def("build_info", [] {
    py::dict d;
#if defined(__clang__)
    d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#else
    d["compiler"] = "unknown";
#endif
    d["cplusplus"] = static_cast<long>(__cplusplus);
    return d;
  });
}
