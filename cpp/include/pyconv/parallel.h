// Threads: pyconv's own worker pool behind parallel_for, and the process-wide thread count.
//
// Workers spin briefly after a job and then sleep on a futex, so they do not hold cores that
// numpy's BLAS, torch or other processes want next (an OpenMP team spins for as long as its
// runtime's process-wide policy says). A worker that has not started its range (asleep, or
// preempted) leaves it to the others instead of holding the call up.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

namespace pyconv {

int num_threads();          // threads the next operator call will use
void set_num_threads(int n);
int default_num_threads();  // PYCONV_NUM_THREADS, OMP_NUM_THREADS, else the CPUs this process may use

// Microseconds a worker spins for the next job before it sleeps (PYCONV_SPIN_US overrides).
int spin_us();
void set_spin_us(int us);

// Threads worth waking for `work` multiply-adds (or element visits): below kWorkPerThread per
// extra thread, handing a chunk to a sleeping worker costs more than it saves.
inline int threads_for(int64_t work, int threads) {
  constexpr int64_t kWorkPerThread = int64_t{1} << 15;
  const int64_t useful = work / kWorkPerThread;
  return useful < 1 ? 1 : (useful < threads ? static_cast<int>(useful) : threads);
}

// Jobs run on the calling thread's team of an OpenMP runtime already loaded in the process (the
// shared library at `path`, e.g. torch's libgomp) instead of pyconv's workers: a host whose idle
// OpenMP workers spin between its own calls then shares its threads with pyconv instead of
// competing with it for the cores. set_host_openmp returns "" on success, else why not (nothing
// changes); an empty path goes back to pyconv's pool.
std::string set_host_openmp(const std::string& path);
std::string host_openmp();        // the path in use, or ""

namespace detail {
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end);
// Runs fn over [0, n) in contiguous chunks (a few per thread) on the calling thread and up to
// threads - 1 pool workers; as one call fn(ctx, 0, n) when called from inside a parallel region
// or while another thread's call holds the pool. Rethrows the first exception a chunk threw.
void run_parallel(int64_t n, int threads, ChunkFn fn, void* ctx);
}  // namespace detail

// Runs fn(begin, end) over [0, n) on up to `threads` threads, in contiguous chunks whose
// boundaries depend only on n and `threads`. fn must give the same results however [0, n) is
// split (reductions stay inside an index's own outputs), so results do not depend on threads.
template <class F>
void parallel_for(int64_t n, int threads, F&& fn) {
  if (n <= 0) return;
  if (threads > n) threads = static_cast<int>(n);
  if (threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  detail::run_parallel(n, threads, [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
                       const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace pyconv
