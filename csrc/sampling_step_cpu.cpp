// The fused DDPM / DDIM sampling step on the CPU: guidance, x0 prediction, clipping or dynamic
// thresholding, posterior mean and noise (counter-based Philox, generated in the same pass) in
// one pass over the tensor. Arithmetic: csrc/include/genfast/sampling_step_math.h, shared with
// kernels/sampling_step.cu.
#include <math.h>

#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/sampling_step_math.h"
#include "sampling_step_cpu.h"

namespace genfast {
namespace {

// Elements per block of the per-element loop: 16, one AVX-512 vector. The noise comes from one
// PhiloxStream per task (csrc/include/genfast/philox_cpu.h): the elements of a task are
// consecutive numbers of the stream across row boundaries, so each Philox call serves four.
constexpr int kLanes = 16;
// 8192 elements per task (~25 us with noise): beat 2048 (overhead) and 32768 (an idle core).
constexpr int64_t kGrain = 8192;

template <typename V>
void step_cpu(const StepParams& P) {
  using T = typename V::T;
  using TN = typename V::TN;
  const StepTensors<T, TN> p(P);
  const uint64_t seed = p.philox ? static_cast<uint64_t>(p.philox[0]) : 0;
  const uint64_t offset = p.philox ? static_cast<uint64_t>(p.philox[1]) : 0;
  const int64_t n = P.n;
  const bool use_clipped = P.use_clipped_model_output != 0;
  const float gs = P.guidance_scale;

  auto row = [&](PhiloxStream<true>& stream, int64_t b, int64_t begin, int64_t end) {
    alignas(64) float z[kLanes];
    const RowCoeffs rc = step_row_coeffs(P, b);
    const ClampSpec cs = clamp_spec(P, rc);
    const bool draw = p.philox != nullptr && rc.noise_gate > 0.0f;
    const float scale = rc.scale;
    const int64_t mo_shift = b * P.mo_row_stride - b * n;  // mo index = sample index + shift
    const T* mo_r = p.mo + mo_shift;
    const T* mou_r = p.mou ? p.mou + mo_shift : nullptr;
    // One block of m <= 16 elements starting at i0; m is a compile-time 16 on the hot path.
    for_blocks<kLanes>(begin, end, [&](int64_t i0, int m) {
      const float* zp = z;
      if (draw) {
        zp = stream.numbers(offset + static_cast<uint64_t>(i0), m);
      } else if (p.noise) {
        for (int k = 0; k < m; ++k) z[k] = load_f32<TN>(p.noise, i0 + k);
      } else {
        for (int k = 0; k < kLanes; ++k) z[k] = 0.0f;
      }
#pragma GCC ivdep
      for (int k = 0; k < m; ++k) {
        float g = load_f32<T>(mo_r, i0 + k);
        if (mou_r) {
          float u = load_f32<T>(mou_r, i0 + k);
          g = u + gs * (g - u);
        }
        g *= scale;
        float mv = V::kLearned != kNotLearned ? load_f32<T>(mo_r, i0 + k + n) : 0.0f;
        float x = load_f32<T>(p.x, i0 + k);
        float out, x0;
        step_element_t<V::kSched, V::kPred, V::kLearned>(rc, cs, use_clipped, g, mv, x, zp[k], out, x0);
        store_f32<T>(p.prev, i0 + k, out);
        store_f32<T>(p.x0, i0 + k, x0);
      }
    });
  };
  parallel_rows(P.batch, n, kGrain, [&] { return PhiloxStream<true>(seed); }, row);
}

}  // namespace

void sampling_step(const StepParams& P) {
  dispatch_step(P, "genfast._C.sampling_step", [&](auto v) { step_cpu<decltype(v)>(P); });
}

}  // namespace genfast
