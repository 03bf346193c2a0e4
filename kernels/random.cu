// genfast::randn / rand on CUDA: one Philox4x32-10 evaluation per four consecutive numbers
// (counter (offset + i) >> 2), the same functions as the CPU kernel (csrc/include/genfast/
// philox.h).
#include "cuda_utils.cuh"
#include "genfast/philox.h"
#include "genfast/random_math.h"
#include "random.h"

namespace genfast {
namespace {

// 256 threads, 4 numbers per thread from one Philox call: Philox is ALU-bound, so occupancy
// matters more than ILP; 256 x 4 is the usual choice for elementwise generators (PyTorch's
// Philox kernels use 256-thread blocks with 4 outputs per thread).
constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kWarps = kThreads / 32;
constexpr int kWarpSpan = 32 * kPerThread;  // numbers per warp

template <typename T, bool kNormal>
__global__ void random_kernel(T* __restrict__ out, int64_t n, const int64_t* __restrict__ philox) {
  // Lane l computes the four numbers of one counter; the warp exchanges them here so that each
  // store instruction writes 32 consecutive elements.
  __shared__ float4 stage[kWarps][32];
  const uint64_t seed = static_cast<uint64_t>(philox[0]);
  const uint64_t offset = static_cast<uint64_t>(philox[1]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // The warp covers stream positions (offset & ~3) + w0 + [0, 128): whole counters. Its element
  // for chunk k, lane l is w0 + 32 k + l - (offset & 3); the launcher adds a block for the shift.
  const int64_t w0 = static_cast<int64_t>(blockIdx.x) * kThreads * kPerThread + warp * kWarpSpan;
  const uint64_t c = ((offset >> 2) + static_cast<uint64_t>(w0 / 4 + lane)) & 0x3fffffffffffffffull;
  float v[4];
  if (kNormal) {
    philox_normal4(seed, c, v);
  } else {
    philox_uniform4(seed, c, v);
#pragma unroll
    for (int w = 0; w < 4; ++w) v[w] = cap_uniform<T>(v[w]);
  }
  stage[warp][lane] = make_float4(v[0], v[1], v[2], v[3]);
  __syncwarp();
  const float* sw = reinterpret_cast<const float*>(stage[warp]);
  const int64_t jw = w0 - static_cast<int64_t>(offset & 3u);
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t i = jw + 32 * k + lane;
    if (i >= 0 && i < n) store_f32<T>(out, i, sw[32 * k + lane]);
  }
}

}  // namespace

void random_cuda(const RandomParams& P, uint64_t stream) {
  if (P.n <= 0) return;
  // up to 3 stream positions before element 0 when offset is not a multiple of 4
  const int64_t blocks = ceil_div(P.n + 3, kThreads * kPerThread);
  if (blocks > 2147483647LL) throw std::runtime_error("genfast random_cuda: tensor too large");
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  dispatch_dtype(P.dtype, "genfast random_cuda", [&](auto t) {
    using T = tag_type<decltype(t)>;
    T* out = reinterpret_cast<T*>(P.out);
    const unsigned grid = static_cast<unsigned>(blocks);
    if (P.normal) {
      random_kernel<T, true><<<grid, kThreads, 0, as_stream(stream)>>>(out, P.n, ph);
    } else {
      random_kernel<T, false><<<grid, kThreads, 0, as_stream(stream)>>>(out, P.n, ph);
    }
  });
  cuda_check_launch(P.normal ? "randn" : "rand");
}

}  // namespace genfast
