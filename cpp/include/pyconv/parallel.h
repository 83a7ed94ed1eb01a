// Threads: an OpenMP wrapper (serial when OpenMP is absent) and the process-wide thread count.
#pragma once
#include <cstdint>

#if defined(PYCONV_HAVE_OPENMP)
#include <omp.h>
#endif

namespace pyconv {

int num_threads();          // threads the next operator call will use
void set_num_threads(int n);
bool have_openmp();

// Threads worth waking for `work` multiply-adds (or element visits): waking an idle OpenMP team
// costs tens of microseconds, more than a tiny layer takes on one core.
inline int threads_for(int64_t work, int threads) {
  constexpr int64_t kWorkPerThread = int64_t{1} << 15;
  const int64_t useful = work / kWorkPerThread;
  return useful < 1 ? 1 : (useful < threads ? static_cast<int>(useful) : threads);
}

// Runs fn(begin, end) over [0, n) split into at most `threads` contiguous static chunks.
// Chunks depend only on n and threads; callers keep reductions inside a chunk's own outputs.
template <class F>
void parallel_for(int64_t n, int threads, F&& fn) {
  if (n <= 0) return;
  if (threads > n) threads = static_cast<int>(n);
#if defined(PYCONV_HAVE_OPENMP)
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t b = n * t / nt, e = n * (t + 1) / nt;
      if (b < e) fn(b, e);
    }
    return;
  }
#endif
  (void)threads;
  fn(int64_t{0}, n);
}

}  // namespace pyconv
