// ISA detection and capping, the kernel table and verbose logging.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "pyconv/isa.h"
#include "sizes.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define PYCONV_X86_CPUID 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pyconv {

namespace {

using registry::kIsaNames;

// 'scalar', 'avx2', 'avx512' (for messages).
std::string isa_list(const char* sep) {
  std::string s;
  for (int i = 0; i < kNumIsa; ++i) s += std::string(i ? sep : "") + kIsaNames[i];
  return s;
}

#if defined(PYCONV_X86_CPUID)
bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
  unsigned r[4] = {};
  if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1u;
}
enum { EAX, EBX, ECX, EDX };
#endif

// AMX tiles with bf16: CPUID, the OS saving the tile state (XCR0 bits 17-18), and Linux's
// per-process permission for the 8 KiB of tile data (arch_prctl ARCH_REQ_XCOMP_PERM).
bool amx_usable() {
#if defined(PYCONV_X86_CPUID) && defined(__linux__) && defined(PYCONV_HAVE_AMX)
  if (!cpuid_bit(7, 0, EDX, 24) || !cpuid_bit(7, 0, EDX, 22) || !cpuid_bit(1, 0, ECX, 27)) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// vdpbf16ps (CPUID 7.1 EAX bit 5); the zmm state is checked with avx512f by the caller.
bool bf16_dot_usable() {
#if defined(PYCONV_X86_CPUID) && defined(PYCONV_HAVE_AMX)
  return cpuid_bit(7, 1, EAX, 5);
#else
  return false;
#endif
}

Isa detect() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider register state (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma"))
    return amx_usable() ? Isa::amx : bf16_dot_usable() ? Isa::avx512_bf16 : Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::scalar;
}

int initial_cap() {
  const char* env = std::getenv("PYCONV_MAX_ISA");
  if (env == nullptr || *env == '\0') return kNumIsa - 1;
  for (int i = 0; i < kNumIsa; ++i)
    if (std::string(env) == kIsaNames[i]) return i;
  std::fprintf(stderr, "pyconv: ignoring PYCONV_MAX_ISA=%s (expected one of %s)\n", env, isa_list(", ").c_str());
  return kNumIsa - 1;
}

std::atomic<int> g_cap{initial_cap()};

}  // namespace

Isa isa_from_name(const std::string& name) {
  for (int i = 0; i < kNumIsa; ++i)
    if (name == kIsaNames[i]) return static_cast<Isa>(i);
  throw std::invalid_argument("isa must be one of '" + isa_list("', '") + "', got '" + name + "'");
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> v{Isa::scalar};
#if defined(PYCONV_HAVE_AVX2)
  v.push_back(Isa::avx2);
#endif
#if defined(PYCONV_HAVE_AVX512)
  v.push_back(Isa::avx512);
#endif
#if defined(PYCONV_HAVE_AMX)  // one source file holds both bfloat16 kernels
  v.push_back(Isa::avx512_bf16);
  v.push_back(Isa::amx);
#endif
  return v;
}

Isa best_compiled_isa() { return compiled_isas().back(); }

Isa max_isa() { return static_cast<Isa>(g_cap.load()); }
void set_max_isa(Isa isa) { g_cap.store(static_cast<int>(isa)); }

Isa active_level() {
  int a = std::min(static_cast<int>(detected_isa()), g_cap.load());
  static const std::vector<Isa> built = compiled_isas();
  while (a > 0 && std::find(built.begin(), built.end(), static_cast<Isa>(a)) == built.end()) --a;
  return static_cast<Isa>(a);
}

Isa active_isa() {
  int a = static_cast<int>(active_level());
  // Float kernels exist for scalar < avx2 < avx512 (unless one was disabled in between).
  while (a > 0 && kernel_table<float>().gemm_ukernel[a] == nullptr) --a;
  return static_cast<Isa>(a);
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> f;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#define PYCONV_FEATURE(name) \
  if (__builtin_cpu_supports(name)) f.push_back(name);
  PYCONV_FEATURE("sse4.2")
  PYCONV_FEATURE("avx")
  PYCONV_FEATURE("avx2")
  PYCONV_FEATURE("fma")
  PYCONV_FEATURE("avx512f")
  PYCONV_FEATURE("avx512vl")
  PYCONV_FEATURE("avx512bw")
  PYCONV_FEATURE("avx512dq")
#undef PYCONV_FEATURE
#endif
#if defined(PYCONV_X86_CPUID)
  if (cpuid_bit(7, 1, EAX, 5)) f.push_back("avx512_bf16");
  if (cpuid_bit(7, 0, EDX, 24)) f.push_back("amx_tile");
  if (cpuid_bit(7, 0, EDX, 22)) f.push_back("amx_bf16");
#endif
  return f;
}

template <class T>
static KernelTable<T> make_table() {
  KernelTable<T> t;
#define PYCONV_KERNEL(fam, op, dir, algo) t.fam[0] = &scalar::fam##_scalar;
#include "kernels.def"
#undef PYCONV_KERNEL
#if defined(PYCONV_HAVE_AVX2)
#define PYCONV_KERNEL(fam, op, dir, algo) t.fam[1] = &avx2::fam##_avx2;
#include "kernels.def"
#undef PYCONV_KERNEL
#endif
#if defined(PYCONV_HAVE_AVX512)
#define PYCONV_KERNEL(fam, op, dir, algo) t.fam[2] = &avx512::fam##_avx512;
#include "kernels.def"
#undef PYCONV_KERNEL
#endif
  return t;
}

template <class T>
const KernelTable<T>& kernel_table() {
  static const KernelTable<T> t = make_table<T>();
  return t;
}
template const KernelTable<float>& kernel_table<float>();
template const KernelTable<double>& kernel_table<double>();

int verbose_level() {
  static const int v = [] {
    const char* e = std::getenv("PYCONV_VERBOSE");
    if (e == nullptr || *e == '\0' || std::string(e) == "0") return 0;
    return std::atoi(e) >= 2 ? 2 : 1;
  }();
  return v;
}

void log_choice(const char* op, const char* what) { log_line(std::string(op) + " -> " + what); }

void log_line(const std::string& msg) {
  if (!verbose()) return;
  static std::mutex mu;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mu);
  if (seen.insert(msg).second) std::fprintf(stderr, "pyconv: %s\n", msg.c_str());
}

}  // namespace pyconv

namespace pyconv {
namespace {
std::atomic<size_t> g_workspace_limit{size_t{64} << 20};
}
size_t workspace_limit() { return g_workspace_limit.load(); }
void set_workspace_limit(size_t bytes) {
  if (bytes == 0) throw std::invalid_argument("workspace limit must be > 0 bytes");
  g_workspace_limit.store(bytes);
}
}  // namespace pyconv
