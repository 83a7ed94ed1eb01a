// Shared by every binding file: array checks and allocation, the GIL, dtype dispatch, the fast
// path's readers of Python objects, and the canonicalisation of convolution and pooling
// arguments (one place, used by the checked bindings and the fast entry points alike).
// Bindings only marshal: validation of parameters is the operators' (std::invalid_argument ->
// ValueError), argument checking for users is pyconv/functional/'s.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pyconv/conv2d.h"
#include "pyconv/pool2d.h"
#include "pyconv/registry.h"

namespace pyconv {
namespace bind {

namespace py = pybind11;

using I2 = std::array<int64_t, 2>;
using I4 = std::array<int64_t, 4>;

// set_poison(True): every new output array is filled with NaN before a kernel writes it (tests).
inline std::atomic<bool> g_poison{false};

// set_float32_precision("bfloat16"): float32 conv2d forward calls on arrays default to bfloat16
// (the fast entry point then hands them to Python's precision handling).
inline std::atomic<bool> g_bf16_default{false};

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Same kind and size (and native byte order) as `dt`; dtype objects compare by identity in
// pybind11, and numpy may hand us an equal but distinct descriptor.
inline bool same_dtype(const py::dtype& a, const py::dtype& dt) {
  return a.kind() == dt.kind() && a.itemsize() == dt.itemsize() && a.byteorder() != '>';
}

inline void check_array(const py::array& a, const char* name, py::ssize_t ndim, const py::dtype& dt) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(a));
  if (!same_dtype(a.dtype(), dt))
    throw std::invalid_argument(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                                std::string(py::str(dt)));
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous and aligned");
}

inline void check_shape(const py::array& a, const char* name, const std::vector<int64_t>& want) {
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

inline I4 shape4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

// Work (multiply-adds or element visits) from which a call releases the GIL: below it, releasing
// and re-acquiring costs more than the kernel and other Python threads gain nothing.
constexpr double kNoGilWork = 1 << 14;

struct NoGil {
  std::optional<py::gil_scoped_release> release;
  explicit NoGil(double work) {
    if (work >= kNoGilWork) release.emplace();
  }
};

// (N, C, H, W), or (C, H, W) for an unbatched call (N = 1).
template <class T>
py::array_t<T> new_nchw(bool unbatched, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t s[4] = {n, c, h, w};
  return unbatched ? new_array<T>(3, s + 1) : new_array<T>(4, s);
}

// The output of an inference call: a new array, or the caller's `out` (exact shape and dtype,
// C-contiguous, writeable, sharing no memory with the inputs) so that a graph executor can reuse
// its buffers instead of having every large output page-faulted in afresh.
template <class T>
py::array_t<T> out_or_new(const py::object& out, const std::vector<int64_t>& shape,
                          std::initializer_list<const py::array*> inputs) {
  const auto nd = static_cast<py::ssize_t>(shape.size());
  if (out.is_none()) return new_array<T>(static_cast<int>(nd), shape.data());
  if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy array or None");
  auto a = py::reinterpret_borrow<py::array>(out);
  check_array(a, "out", nd, py::dtype::of<T>());
  check_shape(a, "out", shape);
  if (!a.writeable()) throw std::invalid_argument("out must be writeable");
  const char* o0 = static_cast<const char*>(a.data());
  const char* o1 = o0 + a.nbytes();
  for (const py::array* in : inputs) {
    if (in == nullptr || !in->ptr() || in->nbytes() == 0) continue;
    const char* i0 = static_cast<const char*>(in->data());
    if (i0 < o1 && o0 < i0 + in->nbytes()) throw std::invalid_argument("out must not share memory with an input");
  }
  auto y = py::reinterpret_borrow<py::array_t<T>>(a);
  if (g_poison.load()) {
    T* p = y.mutable_data();
    for (py::ssize_t i = 0; i < y.size(); ++i) p[i] = std::numeric_limits<T>::quiet_NaN();
  }
  return y;
}

// Calls f<float> or f<double> by the dtype of `a`.
template <class R, class F32, class F64>
R by_dtype(const py::array& a, const char* name, F32&& f32, F64&& f64) {
  if (same_dtype(a.dtype(), py::dtype::of<float>())) return f32();
  if (same_dtype(a.dtype(), py::dtype::of<double>())) return f64();
  throw py::type_error(std::string(name) + " must be float32 or float64, got " + std::string(py::str(a.dtype())));
}

// Elementwise ops take any shape (C-contiguous); results have the input's shape.
inline std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

inline void check_any_shape(const py::array& a, const char* name, const py::dtype& dt) {
  if (!same_dtype(a.dtype(), dt))
    throw std::invalid_argument(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                                std::string(py::str(dt)));
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous and aligned");
}

// "a, b, c" from a registry name table (for messages).
inline std::string names_of(const char* const* names, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += std::string(i ? ", " : "") + names[i];
  return s;
}

// A registry code received from Python, else throws naming the argument.
inline int registry_code(int code, int n, const char* what) {
  if (code < 0 || code >= n)
    throw std::invalid_argument(std::string(what) + " code must be 0.." + std::to_string(n - 1) + ", got " +
                                std::to_string(code));
  return code;
}

// The convolution's hyper-parameters in canonical form: what both entry points hand to
// conv_params (the checked bindings receive them so from Python; the fast path parses them).
struct ConvHyper {
  I2 stride{1, 1}, dil{1, 1};
  I4 pads{};  // top, bottom, left, right
  int64_t groups = 1;
  PadMode mode = PadMode::zeros;
  ConvAlgo algo = ConvAlgo::automatic;
};

inline ConvHyper conv_hyper(const I2& stride, const I4& pads, const I2& dil, int64_t groups, int mode, int algo) {
  ConvHyper h;
  h.stride = stride, h.pads = pads, h.dil = dil, h.groups = groups;
  h.mode = static_cast<PadMode>(registry_code(mode, kNumPadMode, "padding_mode"));
  h.algo = static_cast<ConvAlgo>(registry_code(algo, kNumConvAlgo, "algo"));
  return h;
}

// Validated parameters for these shapes; throws std::invalid_argument.
inline Conv2dParams conv_params(const I4& in, const I4& wshape, const ConvHyper& h) {
  Conv2dParams p;
  p.n = in[0]; p.c = in[1]; p.h = in[2]; p.w = in[3];
  p.k = wshape[0]; p.r = wshape[2]; p.s = wshape[3];
  p.groups = h.groups;
  if (h.groups >= 1 && wshape[1] * h.groups != in[1])
    throw std::invalid_argument("conv2d: input has " + std::to_string(in[1]) + " channels but weight expects " +
                                std::to_string(wshape[1] * h.groups) + " (weight.shape[1] * groups)");
  p.stride_h = h.stride[0]; p.stride_w = h.stride[1];
  p.pad_t = h.pads[0]; p.pad_b = h.pads[1]; p.pad_l = h.pads[2]; p.pad_r = h.pads[3];
  p.dil_h = h.dil[0]; p.dil_w = h.dil[1];
  p.mode = h.mode;
  conv2d_validate(p);
  return p;
}

inline Conv2dParams conv_params(const I4& in, const I4& wshape, const I2& stride, const I4& pad, const I2& dil,
                                int64_t groups, int mode) {
  return conv_params(in, wshape, conv_hyper(stride, pad, dil, groups, mode, 0));
}

inline Pool2dParams pool_params(const I4& in, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode) {
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


inline Pool2dParams avg_params(const I4& in, I2 k, I2 stride, I2 pad, bool ceil_mode, bool count_include_pad,
                        int64_t divisor) {
  Pool2dParams p = pool_params(in, k, stride, pad, {1, 1}, ceil_mode);
  p.count_include_pad = count_include_pad;
  p.divisor = divisor;
  return p;
}


// The fast path's readers: an object in canonical form (exact ndarrays of one float dtype,
// C-contiguous, aligned, native byte order; exact ints, pairs of them as tuples, bools and
// strings) yields its value, anything else false / -1, so that the caller returns None and the
// validating Python path handles it.
namespace fast {

using npy = py::detail::npy_api;

// Outputs larger than this take the validating path, which first checks them against memory.
constexpr double kMaxBytes = double(int64_t{1} << 30);

// The numpy type number of an ndarray the kernels can read as is, else -1.
inline int array_num(py::handle o) {
  const auto& api = npy::get();
  if (Py_TYPE(o.ptr()) != api.PyArray_Type_) return -1;
  const auto* a = py::detail::array_proxy(o.ptr());
  constexpr int need = npy::NPY_ARRAY_C_CONTIGUOUS_ | npy::NPY_ARRAY_ALIGNED_;
  if ((a->flags & need) != need) return -1;
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  return d->byteorder == '>' ? -1 : d->type_num;
}

inline int float_num(py::handle o) {
  const int t = array_num(o);
  return t == npy::NPY_FLOAT_ || t == npy::NPY_DOUBLE_ ? t : -1;
}

inline bool as_int(py::handle o, int64_t& v) {
  if (!PyLong_CheckExact(o.ptr())) return false;
  int overflow = 0;
  v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
  return overflow == 0;
}

// An int or a tuple of two ints.
inline bool as_pair(py::handle o, I2& v) {
  if (PyTuple_CheckExact(o.ptr()))
    return PyTuple_GET_SIZE(o.ptr()) == 2 && as_int(PyTuple_GET_ITEM(o.ptr(), 0), v[0]) &&
           as_int(PyTuple_GET_ITEM(o.ptr(), 1), v[1]);
  if (!as_int(o, v[0])) return false;
  v[1] = v[0];
  return true;
}

inline bool as_bool(py::handle o, bool& v) {
  if (o.ptr() != Py_True && o.ptr() != Py_False) return false;
  v = o.ptr() == Py_True;
  return true;
}

// Position of the string o in a name table of n entries (the registry's), or -1.
inline int choice(py::handle o, const char* const* names, int n) {
  if (!PyUnicode_CheckExact(o.ptr())) return -1;
  for (int i = 0; i < n; ++i)
    if (PyUnicode_CompareWithASCIIString(o.ptr(), names[i]) == 0) return i;
  return -1;
}

inline bool is_string(py::handle o, const char* s) {
  return PyUnicode_CheckExact(o.ptr()) && PyUnicode_CompareWithASCIIString(o.ptr(), s) == 0;
}

// An (N, C, H, W) shape with N >= 1 from a 4-D array/tuple, or from a 3-D one (unbatched, N = 1)
// when allowed. N = 0 takes the validating path.
inline bool batched(int nd, const int64_t* d, bool allow3, I4& s, bool& unbatched) {
  unbatched = nd == 3;
  if (nd == 4) s = {d[0], d[1], d[2], d[3]};
  else if (nd == 3 && allow3) s = {1, d[0], d[1], d[2]};
  else return false;
  return s[0] >= 1;
}

inline bool array_shape(py::handle a, bool allow3, I4& s, bool& unbatched) {
  const auto* p = py::detail::array_proxy(a.ptr());
  return batched(p->nd, reinterpret_cast<const int64_t*>(p->dimensions), allow3, s, unbatched);
}

inline bool tuple_shape(py::handle o, bool allow3, I4& s, bool& unbatched) {
  if (!PyTuple_CheckExact(o.ptr())) return false;
  const Py_ssize_t nd = PyTuple_GET_SIZE(o.ptr());
  if (nd != 3 && nd != 4) return false;
  int64_t d[4];
  for (Py_ssize_t i = 0; i < nd; ++i)
    if (!as_int(PyTuple_GET_ITEM(o.ptr(), i), d[i])) return false;
  return batched(static_cast<int>(nd), d, allow3, s, unbatched);
}

// The array has shape (n, c, h, w), without n when unbatched.
inline bool has_shape(py::handle a, bool unbatched, int64_t n, int64_t c, int64_t h, int64_t w) {
  const auto* p = py::detail::array_proxy(a.ptr());
  const int64_t want[4] = {n, c, h, w};
  const int off = unbatched ? 1 : 0;
  if (p->nd != 4 - off) return false;
  for (int i = 0; i < p->nd; ++i)
    if (p->dimensions[i] != want[i + off]) return false;
  return true;
}

inline bool is_vector(py::handle a, int64_t n) {
  const auto* p = py::detail::array_proxy(a.ptr());
  return p->nd == 1 && p->dimensions[0] == n;
}

inline double bytes(int64_t a, int64_t b, int64_t c, int64_t d, int itemsize) {
  return static_cast<double>(a) * static_cast<double>(b) * static_cast<double>(c) * static_cast<double>(d) * itemsize;
}

inline int itemsize(int num) { return num == npy::NPY_FLOAT_ ? 4 : 8; }

template <class T>
const T* ptr(py::handle a) { return reinterpret_cast<const T*>(py::detail::array_proxy(a.ptr())->data); }

// Convolution hyper-parameters as functional.conv2d takes them (padding: int, pair, "valid" or
// "same"), for a weight of shape ws; false if not canonical.
inline bool parse_conv_hyper(py::handle s, py::handle pad, py::handle d, py::handle g, py::handle m, py::handle a,
                             const I4& ws, ConvHyper& h) {
  const int mode = choice(m, registry::kPadModeNames, kNumPadMode);
  const int algo = choice(a, registry::kAlgoNames, kNumConvAlgo);
  if (!as_pair(s, h.stride) || !as_pair(d, h.dil) || !as_int(g, h.groups) || mode < 0 || algo < 0) return false;
  h.mode = static_cast<PadMode>(mode);
  h.algo = static_cast<ConvAlgo>(algo);
  I2 pp;
  if (as_pair(pad, pp)) {
    h.pads = {pp[0], pp[0], pp[1], pp[1]};
  } else if (is_string(pad, "valid")) {
    h.pads = {0, 0, 0, 0};
  } else {
    if (!is_string(pad, "same") || h.stride[0] != 1 || h.stride[1] != 1 ||
        !conv2d_same_pads(h.dil[0], ws[2], h.pads[0], h.pads[1]) || !conv2d_same_pads(h.dil[1], ws[3], h.pads[2], h.pads[3]))
      return false;
  }
  return true;
}

// Validated parameters, or false where the C++ checks would throw.
inline bool params(const I4& in, const I4& ws, const ConvHyper& h, Conv2dParams& p) {
  try {
    p = conv_params(in, ws, h);
  } catch (const std::invalid_argument&) {
    return false;
  }
  return true;
}

}  // namespace fast

}  // namespace bind
}  // namespace pyconv
