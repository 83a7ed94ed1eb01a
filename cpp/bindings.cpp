// pybind11 bindings: marshal numpy arrays, release the GIL around every kernel call.
// Argument checking for users lives in pyconv/functional.py; the checks here are the cheap
// C++ second line (std::invalid_argument -> ValueError), so a direct caller cannot crash us.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "pyconv/conv2d.h"
#include "pyconv/eltwise.h"
#include "pyconv/gemm.h"
#include "pyconv/isa.h"
#include "pyconv/parallel.h"
#include "pyconv/pool2d.h"
#include "sizes.h"

namespace py = pybind11;
using namespace pyconv;

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

template <class T>
py::array_t<T> new_array(const std::vector<int64_t>& shape) {
  py::array_t<T> a(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  if (g_poison.load()) {
    T* p = a.mutable_data();
    const T v = std::is_floating_point<T>::value ? std::numeric_limits<T>::quiet_NaN() : std::numeric_limits<T>::min();
    for (py::ssize_t i = 0; i < a.size(); ++i) p[i] = v;
  }
  return a;
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
  auto y = new_array<T>({p.n, p.k, p.oh, p.ow});
  T* yp = y.mutable_data();
  const ConvAlgo a = conv_algo(algo);
  {
    py::gil_scoped_release nogil;
    conv2d_fwd<T>(p, data<T>(x), data<T>(w), bp, yp, a);
  }
  return std::move(y);
}

template <class T>
py::array conv2d_bwd_data_t(const py::array& dy, const py::array& w, I4 in, I2 stride, I4 pad, I2 dil,
                            int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(dy, "grad_output", 4, dt);
  check_array(w, "weight", 4, dt);
  const Conv2dParams p = conv_params(in, shape4(w), stride, pad, dil, groups, mode);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  auto dx = new_array<T>({p.n, p.c, p.h, p.w});
  T* dxp = dx.mutable_data();
  const ConvAlgo a = conv_algo(algo);
  {
    py::gil_scoped_release nogil;
    conv2d_bwd_data<T>(p, data<T>(dy), data<T>(w), dxp, a);
  }
  return std::move(dx);
}

template <class T>
py::array conv2d_bwd_weight_t(const py::array& x, const py::array& dy, I4 wshape, I2 stride, I4 pad, I2 dil,
                              int64_t groups, int mode, int algo) {
  const auto dt = py::dtype::of<T>();
  check_array(x, "input", 4, dt);
  check_array(dy, "grad_output", 4, dt);
  const Conv2dParams p = conv_params(shape4(x), wshape, stride, pad, dil, groups, mode);
  check_shape(dy, "grad_output", {p.n, p.k, p.oh, p.ow});
  auto dw = new_array<T>({wshape[0], wshape[1], wshape[2], wshape[3]});
  T* dwp = dw.mutable_data();
  const ConvAlgo a = conv_algo(algo);
  {
    py::gil_scoped_release nogil;
    conv2d_bwd_weight<T>(p, data<T>(x), data<T>(dy), dwp, a);
  }
  return std::move(dw);
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

// (y, indices), or (y, None) without return_indices: the kernel then tracks no indices.
template <class T>
py::tuple max_pool2d_fwd_t(const py::array& x, I2 k, I2 stride, I2 pad, I2 dil, bool ceil_mode, bool with_idx) {
  check_array(x, "input", 4, py::dtype::of<T>());
  const Pool2dParams p = pool_params(shape4(x), k, stride, pad, dil, ceil_mode);
  auto y = new_array<T>({p.n, p.c, p.oh, p.ow});
  py::object idx = py::none();
  int64_t* ip = nullptr;
  if (with_idx) {
    auto a = new_array<int64_t>({p.n, p.c, p.oh, p.ow});
    ip = a.mutable_data();
    idx = std::move(a);
  }
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_fwd<T>(p, data<T>(x), yp, ip);
  }
  return py::make_tuple(y, idx);
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
  auto dx = new_array<T>({p.n, p.c, p.h, p.w});
  T* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_bwd<T>(p, data<T>(dy), data<T>(x), ip, dxp);
  }
  return std::move(dx);
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
  auto y = new_array<T>({p.n, p.c, p.oh, p.ow});
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    avg_pool2d_fwd<T>(p, data<T>(x), yp);
  }
  return std::move(y);
}

template <class T>
py::array avg_pool2d_bwd_t(const py::array& dy, I4 in, I2 k, I2 stride, I2 pad, bool ceil_mode, bool cip,
                           int64_t divisor) {
  check_array(dy, "grad_output", 4, py::dtype::of<T>());
  const Pool2dParams p = avg_params(in, k, stride, pad, ceil_mode, cip, divisor);
  check_shape(dy, "grad_output", {p.n, p.c, p.oh, p.ow});
  auto dx = new_array<T>({p.n, p.c, p.h, p.w});
  T* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    avg_pool2d_bwd<T>(p, data<T>(dy), dxp);
  }
  return std::move(dx);
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
    py::gil_scoped_release nogil;
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
    py::gil_scoped_release nogil;
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
    py::gil_scoped_release nogil;
    bias_grad<T>(data<T>(dy), s[0], s[1], s[2] * s[3], dbp);
  }
  return std::move(db);
}

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
  m.def("pool2d_out_size", &pool2d_out_size, py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
        py::arg("dilation"), py::arg("ceil_mode"));

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
  m.def("have_openmp", &have_openmp);
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
#if defined(_OPENMP)
    d["openmp"] = static_cast<long>(_OPENMP);
#else
    d["openmp"] = py::none();
#endif
    return d;
  });
}
