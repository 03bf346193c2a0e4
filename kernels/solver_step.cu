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

template <typename T, typename TN, int K, bool kClamp>
__global__ void __launch_bounds__(kThreads) solver_step_kernel(const SolverParams P) {
  const SolverTensors<T> p(P);
  const TN* noise = reinterpret_cast<const TN*>(P.noise);
  const int64_t* ph = p.philox;
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
        float g = load_f32<T>(p.mo, i);
        if (p.mou) {
          const float u = load_f32<T>(p.mou, i);
          g = u + P.guidance_scale * (g - u);
        }
        gv[k] = g * r.scale;
        xv[k] = load_f32<T>(p.x, i);
        if (p.last) sv[k] = load_f32<T>(p.last, i);
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
      solver_element<T, K, kClamp>(r, round_m, p.y1 != nullptr, gv[k], xv[k], sv[k], hv[k][0], hv[k][1], hv[k][2], z,
                                   y2, m, y1);
      store_f32<T>(p.y2, i, y2);
      if (p.m) store_f32<T>(p.m, i, m);
      if (p.y1) store_f32<T>(p.y1, i, y1);
    }
  }
}

}  // namespace

void solver_step_cuda(const SolverParams& P, uint64_t stream) {
  if (P.batch <= 0 || P.n <= 0) return;
  const dim3 grid = row_grid(P.n, kThreads * kPerThread, P.batch, "solver_step_cuda");
  // the kernel reads the last sample and the unconditional output where given (no template flag)
  dispatch_solver(P, "genfast solver_step_cuda", [&](auto v) {
    using V = decltype(v);
    solver_step_kernel<typename V::T, typename V::TN, V::K, V::kClamp><<<grid, kThreads, 0, as_stream(stream)>>>(P);
  });
  cuda_check_launch("solver_step");
}

}  // namespace genfast
