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

// Runs over the elements [0, rows * n) of a row-major [rows, n] tensor in tasks of about `grain`
// elements (parallel_for): per task, state = make_state() (a PhiloxStream, whose buffer carries over
// the task's rows); per row piece, row(state, b, begin, end) with the flat element range
// [begin, end) inside row b. The sampling steps' CPU kernels share this walk.
template <typename MakeState, typename RowFn>
inline void parallel_rows(int64_t rows, int64_t n, int64_t grain, MakeState&& make_state, RowFn&& row) {
  parallel_for(rows * n, grain, [&](int64_t begin, int64_t end) {
    auto state = make_state();
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / n;
      const int64_t stop = (b + 1) * n < end ? (b + 1) * n : end;
      row(state, b, i, stop);
      i = stop;
    }
  });
}

// block(i0, kLanes) over the full blocks of [begin, end) (a compile-time width on the hot path),
// then block(i0, m) on the tail of m < kLanes elements.
template <int kLanes, typename BlockFn>
inline void for_blocks(int64_t begin, int64_t end, BlockFn&& block) {
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) block(i, kLanes);
  if (i < end) block(i, static_cast<int>(end - i));
}

}  // namespace genfast
