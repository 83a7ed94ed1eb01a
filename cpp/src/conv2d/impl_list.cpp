// The conv2d implementation lists, one per direction, in the order entries are tried (in the
// manner of oneDNN's cpu_convolution_list.cpp). An entry is a guard (applies, or why not), a fit
// (its buffers fit the workspace limit, or why not) and a run that does the call or declines for
// workspace. "auto" tries the entries of the algorithm the selection table picks
// (selection.cpp); algo=X tries the entries of X; either then falls back explicitly to im2col,
// which always runs. PYCONV_VERBOSE=1 logs the entry that ran, PYCONV_VERBOSE=2 also each entry
// tried before it with the reason it did not run.
#include <string>

#include "conv2d/depthwise_blocked.h"
#include "conv2d/impl.h"
#include "conv2d/winograd.h"
#include "gemm/gemm_driver.h"
#include "pyconv/eltwise.h"
#include "pyconv/parallel.h"

namespace pyconv {

namespace {

template <class T>
using ConvRun = bool (*)(ConvCall<T>&);

struct ConvImpl {
  ConvAlgo algo;
  const char* note;  // what the log adds after <op>_<dir>_<algo>_<isa>
  ConvGuard guard;   // null: always applies
  ConvFit fit;       // null: never declines
  ConvRun<float> run_f;
  ConvRun<double> run_d;
  template <class T>
  ConvRun<T> run() const {
    if constexpr (sizeof(T) == 4) return run_f;
    else return run_d;
  }
};

template <class T>
bool wino_fwd(ConvCall<T>& c) { return conv2d_fwd_winograd(c.a, c.nt); }
template <class T>
bool wino_bwd_data(ConvCall<T>& c) { return conv2d_bwd_data_winograd(c.p, c.a.dy, c.a.w, c.a.dx, c.nt); }
template <class T>
bool wino_bwd_weight(ConvCall<T>& c) { return conv2d_bwd_weight_winograd(c.a, c.a.dy, c.a.dw, c.nt); }

// Channel-blocked depthwise kernels (depthwise_blocked.cpp): taken for outputs narrower than the
// NCHW kernels' vectors fill.
const char* dw_blocked_guard(const Conv2dParams& p, ConvDir dir) {
  return conv2d_dw_blocked_applies(p, dir) ? nullptr
                                           : "not depthwise, or outputs wide enough for the NCHW kernels";
}
template <class T>
bool dw_blocked_fwd(ConvCall<T>& c) {
  const ConvArgs<T>& a = c.a;
  return conv2d_dw_blocked<T>(c.p, a.row_map, a.col_map, ConvDir::fwd, a.x, a.w, a.b, nullptr, a.y, nullptr, nullptr,
                              c.nt);
}
template <class T>
bool dw_blocked_bwd_data(ConvCall<T>& c) {
  const ConvArgs<T>& a = c.a;
  return conv2d_dw_blocked<T>(c.p, a.row_map, a.col_map, ConvDir::bwd_data, nullptr, a.w, nullptr, a.dy, nullptr, a.dx,
                              nullptr, c.nt);
}
template <class T>
bool dw_blocked_bwd_weight(ConvCall<T>& c) {
  const ConvArgs<T>& a = c.a;
  return conv2d_dw_blocked<T>(c.p, a.row_map, a.col_map, ConvDir::bwd_weight, a.x, nullptr, nullptr, a.dy, nullptr,
                              nullptr, a.dw, c.nt);
}

#define PYCONV_RUN(fn) fn<float>, fn<double>

const ConvImpl kFwd[] = {
    {ConvAlgo::winograd, "", winograd_guard, winograd_fit, PYCONV_RUN(wino_fwd)},
    {ConvAlgo::winograd, " (phases)", winograd_phases_guard, winograd_fit, PYCONV_RUN(wino_fwd)},
    {ConvAlgo::direct, " (channel-blocked depthwise)", dw_blocked_guard, nullptr, PYCONV_RUN(dw_blocked_fwd)},
    {ConvAlgo::direct, " (register-blocked)", blocked_guard, blocked_fit, PYCONV_RUN(blocked_fwd)},
    {ConvAlgo::direct, "", nullptr, nullptr, PYCONV_RUN(direct_fwd)},
    {ConvAlgo::im2col, " (1x1: gemm only)", pointwise_guard, nullptr, PYCONV_RUN(im2col_fwd)},
    {ConvAlgo::im2col, "", nullptr, nullptr, PYCONV_RUN(im2col_fwd)},
};
const ConvImpl kBwdData[] = {
    {ConvAlgo::winograd, "", winograd_guard, winograd_fit, PYCONV_RUN(wino_bwd_data)},
    {ConvAlgo::winograd, " (phases)", winograd_phases_guard, winograd_fit, PYCONV_RUN(wino_bwd_data)},
    {ConvAlgo::direct, " (channel-blocked depthwise)", dw_blocked_guard, nullptr, PYCONV_RUN(dw_blocked_bwd_data)},
    {ConvAlgo::direct, " (register-blocked)", blocked_guard, blocked_fit, PYCONV_RUN(blocked_bwd_data)},
    {ConvAlgo::direct, " (depthwise as forward)", depthwise_as_fwd_guard, depthwise_as_fwd_fit,
     PYCONV_RUN(depthwise_bwd_data_as_fwd)},
    {ConvAlgo::direct, "", nullptr, nullptr, PYCONV_RUN(direct_bwd_data)},
    {ConvAlgo::im2col, " (1x1: gemm only)", pointwise_guard, nullptr, PYCONV_RUN(im2col_bwd_data)},
    {ConvAlgo::im2col, "", nullptr, nullptr, PYCONV_RUN(im2col_bwd_data)},
};
const ConvImpl kBwdWeight[] = {
    {ConvAlgo::winograd, "", winograd_guard, winograd_fit, PYCONV_RUN(wino_bwd_weight)},
    {ConvAlgo::winograd, " (phases)", winograd_phases_guard, winograd_fit, PYCONV_RUN(wino_bwd_weight)},
    {ConvAlgo::direct, " (channel-blocked depthwise)", dw_blocked_guard, nullptr,
     PYCONV_RUN(dw_blocked_bwd_weight)},
    {ConvAlgo::direct, " (register-blocked)", blocked_guard, blocked_fit, PYCONV_RUN(blocked_bwd_weight)},
    {ConvAlgo::direct, "", nullptr, nullptr, PYCONV_RUN(direct_bwd_weight)},
    {ConvAlgo::im2col, " (1x1: gemm only)", pointwise_guard, nullptr, PYCONV_RUN(im2col_bwd_weight)},
    {ConvAlgo::im2col, "", nullptr, nullptr, PYCONV_RUN(im2col_bwd_weight)},
};
#undef PYCONV_RUN

constexpr ConvAlgo kFallback = ConvAlgo::im2col;

struct ImplList {
  const ConvImpl* begin;
  const ConvImpl* end;
};

ImplList impl_list(ConvDir dir) {
  switch (dir) {
    case ConvDir::fwd: return {std::begin(kFwd), std::end(kFwd)};
    case ConvDir::bwd_data: return {std::begin(kBwdData), std::end(kBwdData)};
    default: return {std::begin(kBwdWeight), std::end(kBwdWeight)};
  }
}

// conv2d_<dir>_<algo>_<isa><note>, plus the GEMM micro-kernel for im2col.
std::string entry_name(const ConvImpl& e, ConvDir dir, Isa isa) {
  std::string s = std::string("conv2d_") + dir_name(dir) + "_" + algo_log_name(e.algo) + "_" + isa_name(isa) + e.note;
  if (e.algo == ConvAlgo::im2col) {
    const GemmTile& t = gemm_tile<float>(isa);
    s += " + gemm_ukernel_" + std::to_string(t.mr) + "x" + std::to_string(t.nr) + "_" + isa_name(isa);
  }
  return s;
}

// Why the entries of `wanted` did not run, for the fallback's log line.
std::string fallback_note(ConvAlgo wanted, const char* declined) {
  if (declined == nullptr) return std::string(" (") + algo_name(wanted) + " not applicable)";
  return std::string(" (") + algo_name(wanted) + " declined: " + declined + ")";
}

void log_skip(const ConvImpl& e, ConvDir dir, const char* why) {
  if (verbose_level() < 2) return;
  log_line("conv2d: skipped " + entry_name(e, dir, active_isa()) + ": " + why);
}

// Walks the list as a call does; run(e) returns false when e declined. Returns the entry that ran
// and sets `fell_back` / `declined` (the first decline among the wanted algorithm's entries).
template <class Run>
const ConvImpl* walk(const Conv2dParams& p, ConvDir dir, ConvAlgo algo, Run&& run, bool& fell_back,
                     const char*& declined) {
  const ImplList list = impl_list(dir);
  const ConvAlgo wanted = algo == ConvAlgo::automatic ? conv2d_choose_algo(p, dir) : algo;
  fell_back = false;
  declined = nullptr;
  for (ConvAlgo want : {wanted, kFallback}) {
    for (const ConvImpl* e = list.begin; e != list.end; ++e) {
      if (e->algo != want) continue;
      if (const char* why = e->guard ? e->guard(p, dir) : nullptr) {
        run.skip(*e, why);
        continue;
      }
      const char* why_not = nullptr;
      if (run(*e, why_not)) return e;
      if (declined == nullptr && want == wanted) declined = why_not;
      run.skip(*e, why_not);
    }
    if (want == kFallback) break;
    fell_back = true;
  }
  return nullptr;  // unreachable: the fallback's last entry always runs
}

template <class T>
struct Runner {
  ConvCall<T>& call;
  ConvDir dir;
  bool operator()(const ConvImpl& e, const char*& why) const {
    if (e.run<T>()(call)) return true;
    why = e.fit ? e.fit(call.p, dir, sizeof(T), call.nt) : nullptr;
    if (why == nullptr) why = "declined";
    return false;
  }
  void skip(const ConvImpl& e, const char* why) const { log_skip(e, dir, why); }
};

template <class T>
void conv2d_run(ConvDir dir, ConvAlgo algo, ConvCall<T>& call) {
  bool fell_back;
  const char* declined;
  const ConvImpl* e = walk(call.p, dir, algo, Runner<T>{call, dir}, fell_back, declined);
  if (verbose() && e != nullptr) {
    const ConvAlgo wanted = algo == ConvAlgo::automatic ? conv2d_choose_algo(call.p, dir) : algo;
    std::string what = entry_name(*e, dir, active_isa());
    if (fell_back) what += fallback_note(wanted, declined);
    log_choice("conv2d", what.c_str());
  }
}

template <class T>
void conv2d_call(ConvDir dir, const Conv2dParams& p0, ConvAlgo algo, const T* x, const T* w, const T* b, const T* dy,
                 T* y, T* dx, T* dw, const T* res = nullptr, T lo = -std::numeric_limits<T>::infinity(),
                 T hi = std::numeric_limits<T>::infinity(), const Im2colWeights<T>* packed = nullptr) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  const ConvMaps maps(p);
  ConvCall<T> call{p, maps, maps.args<T>(p), threads_for(macs(p), num_threads())};
  call.a.x = x, call.a.w = w, call.a.b = b, call.a.dy = dy;
  call.a.y = y, call.a.dx = dx, call.a.dw = dw;
  call.res = res, call.lo = lo, call.hi = hi, call.packed = packed;
  conv2d_run(dir, algo, call);
  if ((res || lo > -std::numeric_limits<T>::infinity() || hi < std::numeric_limits<T>::infinity()) &&
      !call.epilogue_done)
    clamp_add<T>(y, res, lo, hi, p.n * p.k * p.oh * p.ow);
}

}  // namespace

Conv2dPlan conv2d_plan(const Conv2dParams& p0, ConvDir dir, ConvAlgo algo, size_t elem_size) {
  Conv2dParams p = p0;
  conv2d_validate(p);
  const int nt = threads_for(macs(p), num_threads());
  Conv2dPlan plan;
  struct Dry {
    const Conv2dParams& p;
    ConvDir dir;
    size_t elem;
    int nt;
    Conv2dPlan& plan;
    bool operator()(const ConvImpl& e, const char*& why) const {
      why = e.fit ? e.fit(p, dir, elem, nt) : nullptr;
      return why == nullptr;
    }
    void skip(const ConvImpl& e, const char* why) const { plan.skipped.emplace_back(entry_name(e, dir, active_isa()), why); }
  };
  const char* declined;
  const ConvImpl* e = walk(p, dir, algo, Dry{p, dir, elem_size, nt, plan}, plan.fallback, declined);
  plan.entry = entry_name(*e, dir, active_isa());
  plan.algo = e->algo;
  return plan;
}

template <class T>
void conv2d_fwd(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y, ConvAlgo algo) {
  conv2d_call<T>(ConvDir::fwd, p, algo, x, w, b, nullptr, y, nullptr, nullptr);
}
template <class T>
void conv2d_fwd_fused(const Conv2dParams& p, const T* x, const T* w, const T* b, T* y, ConvAlgo algo, const T* res,
                      T lo, T hi, const Im2colWeights<T>* packed) {
  if (packed && (packed->k != p.k || packed->cg != p.c / p.groups || packed->r != p.r || packed->s != p.s ||
                 packed->groups != p.groups))
    throw std::invalid_argument("packed weights of another shape than the weight");
  conv2d_call<T>(ConvDir::fwd, p, algo, x, w, b, nullptr, y, nullptr, nullptr, res, lo, hi, packed);
}
template <class T>
void conv2d_bwd_data(const Conv2dParams& p, const T* dy, const T* w, T* dx, ConvAlgo algo) {
  conv2d_call<T>(ConvDir::bwd_data, p, algo, nullptr, w, nullptr, dy, nullptr, dx, nullptr);
}
template <class T>
void conv2d_bwd_weight(const Conv2dParams& p, const T* x, const T* dy, T* dw, ConvAlgo algo) {
  conv2d_call<T>(ConvDir::bwd_weight, p, algo, x, nullptr, nullptr, dy, nullptr, nullptr, dw);
}

#define PYCONV_INSTANTIATE(T)                                                                  \
  template void conv2d_fwd<T>(const Conv2dParams&, const T*, const T*, const T*, T*, ConvAlgo); \
  template void conv2d_fwd_fused<T>(const Conv2dParams&, const T*, const T*, const T*, T*, ConvAlgo, const T*, T, T, \
                                     const Im2colWeights<T>*);                                                     \
  template void conv2d_bwd_data<T>(const Conv2dParams&, const T*, const T*, T*, ConvAlgo);     \
  template void conv2d_bwd_weight<T>(const Conv2dParams&, const T*, const T*, T*, ConvAlgo);
PYCONV_INSTANTIATE(float)
PYCONV_INSTANTIATE(double)
#undef PYCONV_INSTANTIATE

}  // namespace pyconv
