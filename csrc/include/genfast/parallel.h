// OpenMP helpers for the CPU kernels.
#pragma once
#include <cstdint>
#if defined(GENFAST_WITH_OPENMP)
#include <omp.h>
#endif

namespace genfast {

inline int num_threads() {
#if defined(GENFAST_WITH_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Runs fn(begin, end) over [0, total) in chunks of `grain` elements, in parallel when the work
// is large enough to amortise the thread wake-up (about 5 us with libgomp here).
template <typename Fn>
inline void parallel_for(int64_t total, int64_t grain, Fn&& fn) {
  if (total <= 0) return;
  int64_t nchunks = (total + grain - 1) / grain;
#if defined(GENFAST_WITH_OPENMP)
  if (nchunks > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      int64_t b = c * grain;
      int64_t e = b + grain < total ? b + grain : total;
      fn(b, e);
    }
    return;
  }
#endif
  for (int64_t c = 0; c < nchunks; ++c) {
    int64_t b = c * grain;
    int64_t e = b + grain < total ? b + grain : total;
    fn(b, e);
  }
}

}  // namespace genfast
