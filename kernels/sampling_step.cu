// The fused DDPM / DDIM sampling step on CUDA. The arithmetic is the shared header
// csrc/include/genfast/sampling_step_math.h (the CPU kernel calls the same functions); this
// file only maps threads to elements: gridDim.y walks the batch rows (per-row coefficients
// computed once per thread), gridDim.x covers a row.
#include "cuda_utils.cuh"
#include "genfast/philox.h"
#include "genfast/sampling_step_math.h"
#include "sampling_step.h"

namespace genfast {
namespace {

// 256 threads x 4 elements per thread; each warp covers 128 consecutive elements, 32 per load
// instruction, so every load is coalesced; the step is memory-bound and 4 independent loads per
// thread keep enough bytes in flight.
constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int kWarps = kThreads / 32;
constexpr int kWarpSpan = 32 * kPerThread;  // elements (and stream positions) per warp

template <typename V>
__global__ void __launch_bounds__(kThreads) sampling_step_kernel(const StepParams P) {
  using T = typename V::T;
  using TN = typename V::TN;
  // In-kernel noise: lane l of a warp computes the four normals of one Philox counter
  // (philox_normal4) and the warp exchanges them through this staging area, so one Philox call
  // serves four elements while the loads stay coalesced.
  __shared__ float4 zstage[kWarps][32];
  const StepTensors<T, TN> p(P);
  const int64_t* ph = p.philox;
  const int64_t n = P.n;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // first stream position (relative to the row's, rounded down to a counter) of this warp
  const int64_t w0 = static_cast<int64_t>(blockIdx.x) * kThreads * kPerThread + warp * kWarpSpan;
  for (int64_t b = blockIdx.y; b < P.batch; b += gridDim.y) {
    const RowCoeffs rc = step_row_coeffs(P, b);
    const ClampSpec cs = clamp_spec(P, rc);
    const bool draw = ph != nullptr && rc.noise_gate > 0.0f;
    // read once: after the first store the compiler would reload them (they might alias)
    const uint64_t seed = draw ? static_cast<uint64_t>(ph[0]) : 0;
    // Element j of row b is stream number p0 + j. Warps cover whole counters: the warp's chunk
    // k, lane l is position (p0 & ~3) + w0 + 32 k + l, element j = w0 + 32 k + l - (p0 & 3);
    // the grid has one more block column for the shift (sampling_step_cuda).
    const uint64_t p0 = draw ? static_cast<uint64_t>(ph[1]) + static_cast<uint64_t>(b * n) : 0;
    const int64_t jw = w0 - static_cast<int64_t>(p0 & 3u);
    // Two phases: every load of the thread's kPerThread elements first, then the arithmetic and
    // the stores, which the compiler must assume may alias the next element's inputs: per element,
    // they kept one element's loads in flight (docs/kernels/sampling_step.md).
    float gv[kPerThread], mvv[kPerThread], xv[kPerThread], zv[kPerThread];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = jw + 32 * k + lane;
      gv[k] = mvv[k] = xv[k] = zv[k] = 0.0f;
      if (j >= 0 && j < n) {
        const int64_t i = b * n + j;
        const int64_t im = b * P.mo_row_stride + j;
        float g = load_f32<T>(p.mo, im);
        if (p.mou) {
          float u = load_f32<T>(p.mou, im);
          g = u + P.guidance_scale * (g - u);
        }
        gv[k] = g * rc.scale;
        if (V::kLearned != kNotLearned) mvv[k] = load_f32<T>(p.mo, im + n);
        xv[k] = load_f32<T>(p.x, i);
        if (!draw && p.noise) zv[k] = load_f32<TN>(p.noise, i);
      }
    }
    if (draw) {  // uniform across the block: every lane takes part
      const uint64_t c = (p0 >> 2) + static_cast<uint64_t>(w0 / 4 + lane);
      float z4[4];
      philox_normal4(seed, c & 0x3fffffffffffffffull, z4);
      zstage[warp][lane] = make_float4(z4[0], z4[1], z4[2], z4[3]);
      __syncwarp();
      const float* zw = reinterpret_cast<const float*>(zstage[warp]);
#pragma unroll
      for (int k = 0; k < kPerThread; ++k) zv[k] = zw[32 * k + lane];
      __syncwarp();  // read before the next row overwrites it
    }
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = jw + 32 * k + lane;
      if (j < 0 || j >= n) continue;
      const int64_t i = b * n + j;
      float out, x0;
      step_element_t<V::kSched, V::kPred, V::kLearned>(rc, cs, P.use_clipped_model_output != 0, gv[k], mvv[k], xv[k],
                                                       zv[k], out, x0);
      store_f32<T>(p.prev, i, out);
      store_f32<T>(p.x0, i, x0);
    }
  }
}

}  // namespace

void sampling_step_cuda(const StepParams& P, uint64_t stream) {
  if (P.batch <= 0 || P.n <= 0) return;
  // with in-kernel noise, up to 3 stream positions before a row's first element (the kernel)
  const dim3 grid = row_grid(P.n + (P.philox ? 3 : 0), kThreads * kPerThread, P.batch, "sampling_step_cuda");
  dispatch_step(P, "genfast sampling_step_cuda", [&](auto v) {
    sampling_step_kernel<decltype(v)><<<grid, kThreads, 0, as_stream(stream)>>>(P);
  });
  cuda_check_launch(P.scheduler == kDDPM ? "ddpm_step" : "ddim_step");
}

}  // namespace genfast
