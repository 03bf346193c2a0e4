// genfast::randn / rand on CUDA: one Philox4x32-10 evaluation per element (counter offset + i),
// the same functions as the CPU kernel (csrc/include/genfast/philox.h).
#include "cuda_utils.cuh"
#include "genfast/philox.h"
#include "launchers.h"

namespace genfast {
namespace {

// 256 threads, 4 elements per thread: Philox is ALU-bound, so occupancy matters more than ILP;
// 256 x 4 is the usual choice for elementwise generators (PyTorch's Philox kernels use
// 256-thread blocks with 4 outputs per thread).
constexpr int kThreads = 256;
constexpr int kPerThread = 4;

template <typename T, bool kNormal>
__global__ void random_kernel(T* __restrict__ out, int64_t n, const int64_t* __restrict__ philox) {
  const uint64_t seed = static_cast<uint64_t>(philox[0]);
  const uint64_t offset = static_cast<uint64_t>(philox[1]);
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kThreads * kPerThread + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t i = base + static_cast<int64_t>(k) * kThreads;
    if (i < n) {
      float v = kNormal ? philox_normal(seed, offset + static_cast<uint64_t>(i))
                        : cap_uniform<T>(philox_uniform(seed, offset + static_cast<uint64_t>(i)));
      store_f32<T>(out, i, v);
    }
  }
}

template <typename T>
void launch(uint64_t out, int64_t n, uint64_t philox, bool normal, cudaStream_t s) {
  const int64_t blocks = ceil_div(n, kThreads * kPerThread);
  if (blocks > 2147483647LL) throw std::runtime_error("genfast random_cuda: tensor too large");
  T* o = reinterpret_cast<T*>(out);
  const int64_t* ph = reinterpret_cast<const int64_t*>(philox);
  if (normal) {
    random_kernel<T, true><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(o, n, ph);
  } else {
    random_kernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(o, n, ph);
  }
  cuda_check_launch(normal ? "randn" : "rand");
}

}  // namespace

void random_cuda(uint64_t out, int64_t n, int32_t dtype, uint64_t philox, bool normal, uint64_t stream) {
  if (n <= 0) return;
  cudaStream_t s = as_stream(stream);
  if (dtype == kFloat32) return launch<float>(out, n, philox, normal, s);
  if (dtype == kFloat16) return launch<half_t>(out, n, philox, normal, s);
  if (dtype == kBFloat16) return launch<bf16_t>(out, n, philox, normal, s);
  throw std::invalid_argument("genfast random_cuda: unsupported dtype code");
}

}  // namespace genfast
