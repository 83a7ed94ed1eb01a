// Linear-layer bindings: its three products.
#include "bindings/marshal.h"
#include "pyconv/linear.h"

namespace pyconv {
namespace bind {

namespace {

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

}  // namespace

void bind_linear(py::module_& m) {
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
}

}  // namespace bind
}  // namespace pyconv
