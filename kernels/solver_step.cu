// The general solver step on CUDA (genfast.ops.solver_step). The arithmetic is the shared header
// csrc/include/genfast/solver_step_math.h (the CPU kernel calls the same functions); this file
// only maps threads to elements: gridDim.y walks the batch rows (the row's coefficients are read
// once per thread), gridDim.x covers a row, each thread loads all its elements before it stores.
#include <stdexcept>

#include "cuda_utils.cuh"
#include "genfast/philox.h"
#include "genfast/solver_step_math.h"
#include "solver_step.h"

namespace genfast {
namespace {

// 256 threads x 4 elements, strided by the block so every load is coalesced: the layout of the
// DDPM/DDIM step (kernels/sampling_step.cu), a memory-bound pass of the same kind.
constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kMaxGridY = 65535;

template <typename T, typename TN, int K, bool kClamp>
__global__ void __launch_bounds__(kThreads) solver_step_kernel(const SolverParams P) {
  const T* mo = reinterpret_cast<const T*>(P.model_output);
  const T* mou = reinterpret_cast<const T*>(P.model_output_uncond);
  const T* xs = reinterpret_cast<const T*>(P.sample);
  const T* ls = reinterpret_cast<const T*>(P.last_sample);
  const TN* noise = reinterpret_cast<const TN*>(P.noise);
  T* y2o = reinterpret_cast<T*>(P.prev_sample);
  T* m_o = reinterpret_cast<T*>(P.converted);
  T* y1o = reinterpret_cast<T*>(P.corrected);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = ph ? static_cast<uint64_t>(ph[0]) : 0;
  const uint64_t offset = ph ? static_cast<uint64_t>(ph[1]) : 0;
  const bool round_m = P.round_converted != 0;
  const int64_t n = P.n;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kThreads * kPerThread + threadIdx.x;
  for (int64_t b = blockIdx.y; b < P.batch; b += gridDim.y) {
    const SolverRow r = solver_row(P, b);
    float gv[kPerThread], xv[kPerThread], sv[kPerThread], zv[kPerThread], hv[kPerThread][kSolverMaxHistory];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = j0 + static_cast<int64_t>(k) * kThreads;
      gv[k] = xv[k] = sv[k] = zv[k] = 0.0f;
#pragma unroll
      for (int q = 0; q < kSolverMaxHistory; ++q) hv[k][q] = 0.0f;
      if (j < n) {
        const int64_t i = b * n + j;
        float g = load_f32<T>(mo, i);
        if (mou) {
          const float u = load_f32<T>(mou, i);
          g = u + P.guidance_scale * (g - u);
        }
        gv[k] = g * r.scale;
        xv[k] = load_f32<T>(xs, i);
        if (ls) sv[k] = load_f32<T>(ls, i);
#pragma unroll
        for (int q = 0; q < K; ++q) hv[k][q] = load_f32<T>(reinterpret_cast<const T*>(P.history[q]), i);
        if (!ph && noise) zv[k] = load_f32<TN>(noise, i);
      }
    }
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = j0 + static_cast<int64_t>(k) * kThreads;
      if (j >= n) break;
      const int64_t i = b * n + j;
      const float z = ph ? philox_normal(seed, offset + static_cast<uint64_t>(i)) : zv[k];
      float y2, m, y1;
      solver_element<T, K, kClamp>(r, round_m, y1o != nullptr, gv[k], xv[k], sv[k], hv[k][0], hv[k][1], hv[k][2], z,
                                   y2, m, y1);
      store_f32<T>(y2o, i, y2);
      if (m_o) store_f32<T>(m_o, i, m);
      if (y1o) store_f32<T>(y1o, i, y1);
    }
  }
}

template <typename T, typename TN, int K, bool kClamp>
void launch(const SolverParams& P, cudaStream_t s) {
  const int64_t bx = ceil_div(P.n, kThreads * kPerThread);
  if (bx > 2147483647LL) throw std::runtime_error("genfast solver_step_cuda: row too large");
  dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(P.batch < kMaxGridY ? P.batch : kMaxGridY));
  solver_step_kernel<T, TN, K, kClamp><<<grid, kThreads, 0, s>>>(P);
  cuda_check_launch("solver_step");
}

template <typename T, typename TN>
void by_mode(const SolverParams& P, cudaStream_t s) {
  const bool clamp = P.clamp_mode != kClampNone;
#define GF_SOLVER_K(KK)                                   \
  if (P.num_history == KK) {                              \
    if (clamp) return launch<T, TN, KK, true>(P, s);      \
    return launch<T, TN, KK, false>(P, s);                \
  }
  GF_SOLVER_K(0) GF_SOLVER_K(1) GF_SOLVER_K(2) GF_SOLVER_K(3)
#undef GF_SOLVER_K
  throw std::invalid_argument("genfast solver_step_cuda: num_history must be 0..3");
}

}  // namespace

void solver_step_cuda(const SolverParams& P, uint64_t stream) {
  if (P.batch <= 0 || P.n <= 0) return;
  constexpr const char* kOp = "genfast solver_step_cuda";
  cudaStream_t s = as_stream(stream);
  dispatch_dtype(P.dtype, kOp, [&](auto t) {
    dispatch_dtype(P.noise ? P.noise_dtype : kFloat32, kOp,
                   [&](auto tn) { by_mode<tag_type<decltype(t)>, tag_type<decltype(tn)>>(P, s); });
  });
}

}  // namespace genfast
