// genfast::randn / genfast::rand on the CPU: counter-based Philox4x32-10 (csrc/include/genfast/
// philox.h), four numbers per call, vectorised in blocks of counters (PhiloxStream) and parallel
// over chunks.
#include <math.h>

#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/random_math.h"
#include "random_cpu.h"

namespace genfast {
namespace {

// Numbers per store loop: a multiple of 16 (the widest vector), at most PhiloxStream::kNumbers - 3.
constexpr int kLanes = 64;
static_assert(kLanes <= PhiloxStream<true>::kNumbers - 3, "a request must fit in one refill");
// 16384 elements per task: about 50 us of work, far above the OpenMP wake-up cost.
constexpr int64_t kGrain = 16384;

template <typename T, bool kNormal>
void fill(const RandomParams& P) {
  T* out = reinterpret_cast<T*>(P.out);
  const uint64_t seed = P.seed, offset = P.offset;
  parallel_for(P.n, kGrain, [&](int64_t begin, int64_t end) {
    PhiloxStream<kNormal> stream(seed);
    for (int64_t i = begin; i < end; i += kLanes) {
      const int m = end - i < kLanes ? static_cast<int>(end - i) : kLanes;
      const float* buf = stream.numbers(offset + static_cast<uint64_t>(i), m);
#pragma GCC ivdep
      for (int k = 0; k < m; ++k) {
        float v = kNormal ? buf[k] : cap_uniform<T>(buf[k]);
        store_f32<T>(out, i + k, v);
      }
    }
  });
}

}  // namespace

void random_cpu(const RandomParams& P) {
  dispatch_dtype(P.dtype, P.normal ? "genfast._C.randn" : "genfast._C.rand", [&](auto t) {
    using T = tag_type<decltype(t)>;
    if (P.normal) {
      fill<T, true>(P);
    } else {
      fill<T, false>(P);
    }
  });
}

void fill_by_helper(uint64_t out_ptr, int64_t n, uint64_t seed, uint64_t offset, bool normal, bool block16) {
  float* out = reinterpret_cast<float*>(out_ptr);
  for (int64_t i = 0; i < n; i += block16 ? kPhiloxBlock : 1) {
    const uint64_t p = offset + static_cast<uint64_t>(i);
    if (!block16) {
      out[i] = normal ? philox_normal(seed, p) : philox_uniform(seed, p);
      continue;
    }
    float buf[kPhiloxBlock];
    if (normal) {
      normal_block16(seed, p, buf);
    } else {
      uniform_block16(seed, p, buf);
    }
    for (int64_t k = 0; k < kPhiloxBlock && i + k < n; ++k) out[i + k] = buf[k];
  }
}

}  // namespace genfast
