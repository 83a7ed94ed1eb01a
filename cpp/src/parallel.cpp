// The worker pool behind parallel_for (see pyconv/parallel.h for the contract).
//
// One job at a time: the calling thread publishes it under a new generation number, rings the
// bells of the workers it needs (a futex wake only for one that sleeps) and runs chunks itself
// like any of them. Each thread owns a contiguous range of the job's chunks and, when done with
// it, takes chunks off the end of the others' ranges; a range is one word (generation, next,
// end) changed by compare-and-swap, so a worker that wakes late for a finished job takes nothing
// and touches no stale state. Idle workers spin for spin_us() microseconds, then sleep on a
// futex (a condition variable where there is no futex). Threads are created on first use and
// again after fork(), whose child has none of its parent's threads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "pyconv/parallel.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#define PYCONV_FUTEX 1
#else
#include <condition_variable>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#include <pthread.h>
#define PYCONV_DLOPEN 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pyconv {
namespace {

constexpr int kMaxThreads = 1024;  // chunk indices fit a range word's 16-bit fields
constexpr int kDefaultSpinUs = 50;   // see benchmarks/threads.py and RESULTS.md
// Chunks per thread: one contiguous range each, as OpenMP's static schedule. A thread done early
// takes a range whose thread has not started (asleep, or preempted by another process); more,
// smaller chunks would balance a preempted thread's work too, but several kernels set up per
// chunk (padded planes, packed panels) and lost up to 1.8x with 4 (benchmarks/RESULTS.md, Threads).
constexpr int kChunksPerThread = 1;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;

// Sleep until *word != value (or spuriously); wake up to n sleepers of word.
class Waiter {
 public:
  void wait(std::atomic<uint32_t>& word, uint32_t value) {
#if defined(PYCONV_FUTEX)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return word.load() != value; });
#endif
  }
  void wake(std::atomic<uint32_t>& word, int n) {
#if defined(PYCONV_FUTEX)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
#else
    (void)word;
    (void)n;
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
#endif
  }

 private:
#if !defined(PYCONV_FUTEX)
  std::mutex mu_;
  std::condition_variable cv_;
#endif
};
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex words are plain 32-bit integers");

int parse_positive(const char* name) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  // OMP_NUM_THREADS may be a list ("4,2"): its first entry is the outer level's count.
  if (end != env && (*end == '\0' || *end == ',') && v >= 1) return static_cast<int>(std::min<long>(v, kMaxThreads));
  std::fprintf(stderr, "pyconv: ignoring %s=%s (expected a positive integer)\n", name, env);
  return 0;
}

// CPUs this process may run on: its affinity mask, and a cgroup CPU quota (containers).
int available_cpus() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  std::ifstream f("/sys/fs/cgroup/cpu.max");  // cgroup v2: "<quota> <period>" or "max <period>"
  std::string quota;
  long period = 0;
  if (f >> quota >> period && quota != "max" && period > 0) {
    const long q = std::atol(quota.c_str());
    if (q > 0) n = std::min<int>(n, static_cast<int>(std::max<long>(1, (q + period - 1) / period)));
  }
#endif
  return std::max(1, std::min(n, kMaxThreads));
}

// A host library's OpenMP runtime (torch's libgomp): jobs run on the caller's OpenMP team, whose
// workers spin after the host's own calls, instead of waking pyconv's workers next to them.
struct HostTeam {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned);  // GOMP_parallel
  int (*thread_num)();
  std::string path;
};

class Pool {
 public:
  // One caller at a time: false while another thread's job holds the pool.
  bool try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true);
  }
  void release() { busy_.store(false); }
  void run(int64_t n, int threads, detail::ChunkFn fn, void* ctx);
  void run_hosted(int64_t n, int threads, detail::ChunkFn fn, void* ctx, const HostTeam& host);

 private:
  void start(int64_t n, int threads, detail::ChunkFn fn, void* ctx);
  static void host_thread(void* arg);
  // Thread `s` of a job (0 the caller, s >= 1 worker s) owns a contiguous range of its chunks and
  // takes them from the front; when it runs out it takes other threads' from the back. Each
  // range is one word, (generation, next, end), changed only by compare-and-swap.
  struct alignas(64) Slot {
    std::atomic<uint64_t> range{0};
    std::atomic<uint32_t> bell{0};  // the last generation this slot's worker was called for
    std::atomic<int> sleeping{0};
  };
  static uint64_t range_word(uint32_t gen, int lo, int hi) {
    return static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(lo) << 16 | static_cast<uint64_t>(hi);
  }
  bool take(Slot& slot, uint32_t gen, bool from_back, int& chunk);
  void work(int self, uint32_t gen);
  void run_chunk(int chunk);
  void worker_main(int self);
  void grow(int workers);

  // The job: written by the caller before the range words, read after a successful take.
  detail::ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
  std::exception_ptr error_;
  std::mutex error_mu_;
  std::atomic<uint64_t> job_{0};  // gen << 32 | threads

  uint32_t gen_ = 0;  // caller side only (under busy_)
  std::atomic<uint32_t> done_{0};  // chunks finished in the current job
  std::atomic<int> caller_waiting_{0};
  Waiter waiter_;
  Slot slots_[kMaxThreads];
  std::atomic<int> nworkers_{0};  // grown by the caller, never shrunk
  std::atomic<bool> busy_{false};
};

thread_local bool tls_in_region = false;  // a pool worker, or a caller inside its own job

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int> g_threads{0};
std::atomic<int> g_spin_us{-1};

std::atomic<const HostTeam*> g_host{nullptr};
std::mutex g_host_mu;  // serialises set_host_openmp (HostTeams are never freed: a job may hold one)

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  Pool* fresh = new Pool();  // never deleted: its workers may still be asleep in it at exit
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread's came first (no worker started in ours yet)
  return *p;
}

#if defined(__unix__) || defined(__APPLE__)
// The child of fork() has only the forking thread: start over with a fresh pool (the old one,
// and any job it was running in another thread, are abandoned).
// The host's runtime is dropped too: libgomp's team does not survive fork either.
void reset_after_fork() {
  g_pool.store(nullptr);
  g_host.store(nullptr);
}
[[maybe_unused]] const int g_atfork = pthread_atfork(nullptr, nullptr, &reset_after_fork);
#endif

// Spins until ready() or spin_us() has passed; returns ready().
template <class F>
bool spin_until(F&& ready) {
  if (ready()) return true;
  const auto deadline = Clock::now() + std::chrono::microseconds(spin_us());
  for (int i = 1; !ready(); ++i) {
    cpu_relax();
    if ((i & 63) == 0 && Clock::now() >= deadline) return ready();
  }
  return true;
}

bool Pool::take(Slot& slot, uint32_t gen, bool from_back, int& chunk) {
  uint64_t w = slot.range.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(w >> 32) != gen) return false;
    const int lo = static_cast<int>((w >> 16) & 0xffff), hi = static_cast<int>(w & 0xffff);
    if (lo >= hi) return false;
    const uint64_t next = from_back ? range_word(gen, lo, hi - 1) : range_word(gen, lo + 1, hi);
    if (slot.range.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
      chunk = from_back ? hi - 1 : lo;
      return true;
    }
  }
}

void Pool::run_chunk(int chunk) {
  // The job cannot change before done_ counts every chunk, this one included: read it first.
  const int chunks = chunks_;
  const int64_t b = n_ * chunk / chunks, e = n_ * (chunk + 1) / chunks;
  try {
    fn_(ctx_, b, e);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!error_) error_ = std::current_exception();
  }
  if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(chunks) && caller_waiting_.load() != 0)
    waiter_.wake(done_, 1);
}

void Pool::work(int self, uint32_t gen) {
  const uint64_t job = job_.load(std::memory_order_acquire);
  if (static_cast<uint32_t>(job >> 32) != gen) return;  // woke late: that job is over
  const int threads = static_cast<int>(job & 0xffff);
  int chunk;
  while (take(slots_[self], gen, false, chunk)) run_chunk(chunk);
  for (int d = 1; d < threads; ++d) {
    Slot& other = slots_[(self + d) % threads];
    while (take(other, gen, true, chunk)) run_chunk(chunk);
  }
}

void Pool::worker_main(int self) {
  tls_in_region = true;
  Slot& slot = slots_[self];
  uint32_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return slot.bell.load(std::memory_order_acquire) != seen; })) {
      slot.sleeping.store(1);
      while (slot.bell.load() == seen) waiter_.wait(slot.bell, seen);
      slot.sleeping.store(0);
    }
    seen = slot.bell.load(std::memory_order_acquire);
    work(self, seen);
  }
}

void Pool::grow(int workers) {
  for (int have = nworkers_.load(); have < workers; ++have) {
    try {
      std::thread([this, have] { worker_main(have + 1); }).detach();
    } catch (const std::system_error&) {
      return;  // no more threads: the caller and the existing workers take every chunk
    }
    nworkers_.store(have + 1);
  }
}

void Pool::start(int64_t n, int threads, detail::ChunkFn fn, void* ctx) {
  const int chunks = static_cast<int>(std::min<int64_t>(n, static_cast<int64_t>(threads) * kChunksPerThread));
  fn_ = fn;
  ctx_ = ctx;
  n_ = n;
  chunks_ = chunks;
  error_ = nullptr;
  done_.store(0);
  const uint32_t gen = ++gen_;
  for (int s = 0; s < threads; ++s)
    slots_[s].range.store(range_word(gen, chunks * s / threads, chunks * (s + 1) / threads), std::memory_order_release);
  job_.store(static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(threads), std::memory_order_release);
}

void Pool::run(int64_t n, int threads, detail::ChunkFn fn, void* ctx) {
  grow(threads - 1);
  start(n, threads, fn, ctx);
  const uint32_t gen = gen_;
  // Ring exactly this job's workers; a spinning one sees its bell without a system call.
  const int workers = std::min(threads - 1, nworkers_.load());
  for (int w = 1; w <= workers; ++w) {
    slots_[w].bell.store(gen);
    if (slots_[w].sleeping.load() != 0) waiter_.wake(slots_[w].bell, 1);
  }

  work(0, gen);

  const uint32_t all = static_cast<uint32_t>(chunks_);
  if (!spin_until([&] { return done_.load(std::memory_order_acquire) == all; })) {
    caller_waiting_.store(1);
    for (uint32_t d; (d = done_.load()) != all;) waiter_.wait(done_, d);
    caller_waiting_.store(0);
  }
  if (error_) std::rethrow_exception(error_);
}

void Pool::host_thread(void* arg) {
  auto& [pool, host] = *static_cast<std::pair<Pool*, const HostTeam*>*>(arg);
  Pool& p = *pool;
  const uint64_t job = p.job_.load(std::memory_order_acquire);
  const int threads = static_cast<int>(job & 0xffff);
  const bool was = tls_in_region;
  tls_in_region = true;
  // Team thread t takes slot t's range first; a team smaller than asked for leaves the other
  // ranges to be taken from the back, a larger one (never asked for) only takes leftovers.
  p.work(host->thread_num() % threads, static_cast<uint32_t>(job >> 32));
  tls_in_region = was;
}

void Pool::run_hosted(int64_t n, int threads, detail::ChunkFn fn, void* ctx, const HostTeam& host) {
  start(n, threads, fn, ctx);
  // The region ends at the team's barrier: every chunk taken has run when it returns.
  std::pair<Pool*, const HostTeam*> arg{this, &host};
  host.parallel(&Pool::host_thread, &arg, static_cast<unsigned>(threads), 0);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace

namespace detail {
void run_parallel(int64_t n, int threads, ChunkFn fn, void* ctx) {
  threads = std::min(threads, kMaxThreads);
  if (tls_in_region) return fn(ctx, 0, n);  // nested: this thread is already one of a job's
  Pool& p = pool();
  if (!p.try_acquire()) return fn(ctx, 0, n);  // another thread's call has the pool
  tls_in_region = true;
  struct Release {
    Pool& p;
    ~Release() {
      tls_in_region = false;
      p.release();
    }
  } release{p};
  const HostTeam* host = g_host.load(std::memory_order_acquire);
  if (host != nullptr) p.run_hosted(n, threads, fn, ctx, *host);
  else p.run(n, threads, fn, ctx);
}
}  // namespace detail

std::string set_host_openmp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_host_mu);
  if (path.empty()) {
    g_host.store(nullptr, std::memory_order_release);
    return "";
  }
#if defined(PYCONV_DLOPEN)
  // RTLD_NOLOAD: only a runtime the process has already loaded (the host's own copy).
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr) return "not loaded in this process: " + path;
  auto* parallel = reinterpret_cast<void (*)(void (*)(void*), void*, unsigned, unsigned)>(dlsym(lib, "GOMP_parallel"));
  auto* thread_num = reinterpret_cast<int (*)()>(dlsym(lib, "omp_get_thread_num"));
  if (parallel == nullptr || thread_num == nullptr) {
    dlclose(lib);
    return "no GOMP_parallel / omp_get_thread_num in " + path;
  }
  // The handle stays open (the runtime must outlive every job started on it).
  g_host.store(new HostTeam{parallel, thread_num, path}, std::memory_order_release);
  return "";
#else
  return "not supported on this platform";
#endif
}

std::string host_openmp() {
  const HostTeam* host = g_host.load(std::memory_order_acquire);
  return host == nullptr ? std::string() : host->path;
}

int default_num_threads() {
  if (int n = parse_positive("PYCONV_NUM_THREADS")) return n;
  if (int n = parse_positive("OMP_NUM_THREADS")) return n;
  return available_cpus();
}

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    int expected = 0;
    g_threads.compare_exchange_strong(expected, default_num_threads());
    n = g_threads.load();
  }
  return n;
}

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                                std::to_string(n));
  g_threads.store(n);
}

int spin_us() {
  int us = g_spin_us.load(std::memory_order_relaxed);
  if (us < 0) {
    const char* env = std::getenv("PYCONV_SPIN_US");
    us = kDefaultSpinUs;
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && v >= 0 && v <= 1000000) us = static_cast<int>(v);
      else std::fprintf(stderr, "pyconv: ignoring PYCONV_SPIN_US=%s (expected 0..1000000)\n", env);
    }
    g_spin_us.store(us);
  }
  return us;
}

void set_spin_us(int us) {
  if (us < 0 || us > 1000000)
    throw std::invalid_argument("spin time must be in [0, 1000000] microseconds, got " + std::to_string(us));
  g_spin_us.store(us);
}

}  // namespace pyconv
