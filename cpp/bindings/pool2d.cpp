// Pooling bindings: checked and fast entry points of max and average pooling.
#include "bindings/marshal.h"

namespace pyconv {
namespace bind {

namespace {

double pool_work(const Pool2dParams& p) { return static_cast<double>(p.n * p.c * p.oh * p.ow) * static_cast<double>(p.kh * p.kw); }

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

}  // namespace

// The fast entry points (marshal.h's readers; None for anything not canonical).
namespace fast {

using npy = py::detail::npy_api;

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

void bind_pool2d(py::module_& m) {
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
  m.def("pool2d_out_size", &pool2d_out_size, py::arg("size"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
        py::arg("dilation"), py::arg("ceil_mode"));
  m.def("max_pool2d_fast", &fast::max_pool2d);
  m.def("max_pool2d_grad_fast", &fast::max_pool2d_grad);
  m.def("avg_pool2d_fast", &fast::avg_pool2d);
  m.def("avg_pool2d_grad_fast", &fast::avg_pool2d_grad);
}

}  // namespace bind
}  // namespace pyconv
