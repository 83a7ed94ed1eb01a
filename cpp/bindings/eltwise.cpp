// Elementwise bindings: ReLU and the bias gradient.
#include "bindings/marshal.h"
#include "pyconv/eltwise.h"

namespace pyconv {
namespace bind {

namespace {

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

}  // namespace

void bind_eltwise(py::module_& m) {
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
}

}  // namespace bind
}  // namespace pyconv
