// The _core module: registers every op family's bindings (conv2d.cpp, pool2d.cpp,
// eltwise.cpp, linear.cpp) and the runtime: registry names, kernels, ISAs, threads, workspace.
#include <string>
#include <vector>

#include "bindings/marshal.h"
#include "kernels.h"
#include "pyconv/gemm.h"
#include "pyconv/isa.h"
#include "pyconv/parallel.h"
#include "sizes.h"

using namespace pyconv;
namespace py = pybind11;

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

namespace pyconv {
namespace bind {
void bind_conv2d(py::module_& m);
void bind_pool2d(py::module_& m);
void bind_eltwise(py::module_& m);
void bind_linear(py::module_& m);
}  // namespace bind
}  // namespace pyconv

namespace {

std::vector<std::string> names(const char* const* table, int n) { return std::vector<std::string>(table, table + n); }

// One row per compiled kernel, from kernels.def: name (<family>_<isa>; GEMM micro-kernels carry
// their tile, one row per dtype), family, op, direction, algo, isa.
py::list kernel_rows() {
  py::list rows;
  auto row = [&](const std::string& name, const char* fam, const char* op, const char* dir, const char* algo, Isa isa) {
    py::dict d;
    d["name"] = name;
    d["family"] = fam;
    d["op"] = op;
    d["direction"] = dir;
    d["algo"] = algo;
    d["isa"] = isa_name(isa);
    rows.append(d);
  };
  for (Isa isa : compiled_isas()) {
    const std::string sfx = std::string("_") + isa_name(isa);
    if (kernel_table<float>().gemm_ukernel[static_cast<int>(isa)] == nullptr) continue;  // amx: bf16 only
#define PYCONV_KERNEL(fam, op, dir, algo)                                                              \
  if (std::string(#fam) == "gemm_ukernel") {                                                          \
    const GemmTile& ts = gemm_tile<float>(isa);                                                       \
    const GemmTile& td = gemm_tile<double>(isa);                                                      \
    row("sgemm_ukernel_" + std::to_string(ts.mr) + "x" + std::to_string(ts.nr) + sfx, #fam, #op, #dir, #algo, isa); \
    row("dgemm_ukernel_" + std::to_string(td.mr) + "x" + std::to_string(td.nr) + sfx, #fam, #op, #dir, #algo, isa); \
  } else {                                                                                            \
    row(#fam + sfx, #fam, #op, #dir, #algo, isa);                                                     \
  }
#include "kernels.def"
#undef PYCONV_KERNEL
  }
#if defined(PYCONV_HAVE_AMX)
  row("conv2d_fwd_bf16_avx512_bf16", "conv2d_fwd_bf16", "conv2d", "fwd", "im2col", Isa::avx512_bf16);
  row("conv2d_fwd_bf16_amx", "conv2d_fwd_bf16", "conv2d", "fwd", "im2col", Isa::amx);
#endif
  return rows;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyconv C++ core (use pyconv.functional; these functions expect validated arguments)";
  m.attr("__version__") = PYCONV_VERSION;

  bind::bind_conv2d(m);
  bind::bind_pool2d(m);
  bind::bind_eltwise(m);
  bind::bind_linear(m);

  // The registry (cpp/include/pyconv/registry.def), in its order.
  m.def("algorithms", [] { return names(registry::kAlgoNames, kNumConvAlgo); }, "Names algo= accepts, 'auto' first.");
  m.def("padding_modes", [] { return names(registry::kPadModeNames, kNumPadMode); });
  m.def("directions", [] { return names(registry::kDirNames, kNumConvDir); });
  m.def("isas", [] { return names(registry::kIsaNames, kNumIsa); }, "Every ISA pyconv knows, lowest first.");
  m.def("kernels", &kernel_rows,
        "The compiled kernels: dicts of name (<family>_<isa>), family, op, direction, algo and isa (kernels.def).");
  m.def("compiled_isas", [] {
    std::vector<std::string> v;
    for (Isa i : compiled_isas()) v.push_back(isa_name(i));
    return v;
  });
  m.def("cpu_isa", [] { return std::string(isa_name(detected_isa())); });
  m.def("get_max_isa", [] { return std::string(isa_name(max_isa())); });
  m.def("set_max_isa", [](const std::string& name) { set_max_isa(isa_from_name(name)); });
  m.def("active_isa", [] { return std::string(isa_name(active_level())); }, "The capped level (the bfloat16 levels included).");
  m.def("kernel_isa", [] { return std::string(isa_name(active_isa())); }, "The level the float kernels run at.");
  m.def("conv2d_bf16_kernel", [] { return std::string(conv2d_bf16_kernel()); },
        "What precision='bfloat16' convolutions run on now: 'amx', 'avx512_bf16' or 'float32' (rounded operands).");
  m.def("conv2d_bf16_native", &conv2d_bf16_native,
        "Whether weights (k, c/groups, r, s) in `groups` groups run on a bfloat16 kernel (AMX tiles, vdpbf16ps) now.");
  m.def("cpu_features", &cpu_features);
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", &pyconv::set_num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("get_spin_us", &spin_us);
  m.def("set_spin_us", &set_spin_us);
  m.def("set_host_openmp", &pyconv::set_host_openmp, py::arg("path"));
  m.def("get_host_openmp", &pyconv::host_openmp);
  m.def("get_workspace_limit", &workspace_limit);
  m.def("set_workspace_limit", &set_workspace_limit);
  m.def("set_float32_precision", [](const std::string& name) {
    if (name != "float32" && name != "bfloat16")
      throw std::invalid_argument("precision must be 'float32' or 'bfloat16', got '" + name + "'");
    bind::g_bf16_default.store(name == "bfloat16");
  });
  m.def("get_float32_precision", [] { return std::string(bind::g_bf16_default.load() ? "bfloat16" : "float32"); });
  m.def("set_poison", [](bool on) { bind::g_poison.store(on); }, "Fill every output with NaN before kernels write it (tests).");
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
