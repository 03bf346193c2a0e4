// The fused DDPM / DDIM sampling step on the CPU: guidance, x0 prediction, clipping or dynamic
// thresholding, posterior mean and noise (counter-based Philox, generated in the same pass) in
// one pass over the tensor. Arithmetic: csrc/include/genfast/sampling_step_math.h, shared with
// kernels/sampling_step.cu.
#include <pybind11/pybind11.h>

#include <math.h>

#include "genfast/bind_params.h"
#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#include "genfast/sampling_step_math.h"

namespace genfast {
namespace {

// Elements per block of the per-element loop: 16, one AVX-512 vector. The noise comes from one
// PhiloxStream per task (csrc/include/genfast/philox_cpu.h): the elements of a task are
// consecutive numbers of the stream across row boundaries, so each Philox call serves four.
constexpr int kLanes = 16;
// 8192 elements per task (~25 us with noise): beat 2048 (overhead) and 32768 (an idle core).
constexpr int64_t kGrain = 8192;

template <typename T, typename TN, int kSched, int kPred, int kLearned>
void step_cpu(const StepParams& P) {
  const T* mo = reinterpret_cast<const T*>(P.model_output);
  const T* mou = reinterpret_cast<const T*>(P.model_output_uncond);
  const T* xs = reinterpret_cast<const T*>(P.sample);
  const TN* noise = reinterpret_cast<const TN*>(P.noise);
  T* prev = reinterpret_cast<T*>(P.prev_sample);
  T* x0o = reinterpret_cast<T*>(P.pred_original_sample);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = ph ? static_cast<uint64_t>(ph[0]) : 0;
  const uint64_t offset = ph ? static_cast<uint64_t>(ph[1]) : 0;
  const int64_t n = P.n;
  const bool use_clipped = P.use_clipped_model_output != 0;
  const float gs = P.guidance_scale;

  parallel_for(P.batch * n, kGrain, [&](int64_t begin, int64_t end) {
    PhiloxStream<true> stream(seed);
    alignas(64) float z[kLanes];
    int64_t i = begin;
    while (i < end) {
      const int64_t b = i / n;
      const int64_t seg_end = (b + 1) * n < end ? (b + 1) * n : end;
      const RowCoeffs rc = step_row_coeffs(P, b);
      const ClampSpec cs = clamp_spec(P, rc);
      const bool draw = ph != nullptr && rc.noise_gate > 0.0f;
      const float scale = rc.scale;
      const int64_t mo_shift = b * P.mo_row_stride - b * n;  // mo index = sample index + shift
      const T* mo_r = mo + mo_shift;
      const T* mou_r = mou ? mou + mo_shift : nullptr;
      // One block of m <= 16 elements starting at i; m is a compile-time 16 on the hot path.
      auto block = [&](int64_t i0, int m) {
        const float* zp = z;
        if (draw) {
          zp = stream.numbers(offset + static_cast<uint64_t>(i0), m);
        } else if (noise) {
          for (int k = 0; k < m; ++k) z[k] = load_f32<TN>(noise, i0 + k);
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
          float mv = kLearned != kNotLearned ? load_f32<T>(mo_r, i0 + k + n) : 0.0f;
          float x = load_f32<T>(xs, i0 + k);
          float out, x0;
          step_element_t<kSched, kPred, kLearned>(rc, cs, use_clipped, g, mv, x, zp[k], out, x0);
          store_f32<T>(prev, i0 + k, out);
          store_f32<T>(x0o, i0 + k, x0);
        }
      };
      for (; i + kLanes <= seg_end; i += kLanes) block(i, kLanes);
      if (i < seg_end) block(i, static_cast<int>(seg_end - i));
      i = seg_end;
    }
  });
}

template <typename T, typename TN>
struct StepLauncher {
  const StepParams& P;
  template <int kSched, int kPred, int kLearned>
  void operator()() const {
    step_cpu<T, TN, kSched, kPred, kLearned>(P);
  }
};

void sampling_step(const StepParams& P) {
  constexpr const char* kOp = "genfast._C.sampling_step";
  dispatch_dtype(P.dtype, kOp, [&](auto t) {
    dispatch_dtype(P.noise ? P.noise_dtype : kFloat32, kOp, [&](auto tn) {
      dispatch_step_mode(P, StepLauncher<tag_type<decltype(t)>, tag_type<decltype(tn)>>{P});
    });
  });
}

}  // namespace
}  // namespace genfast

GENFAST_REGISTER(sampling_step) {
  genfast::bind_step_params(m);
  genfast::def_params_op(m, "sampling_step", &genfast::sampling_step,
                         "Fused DDPM/DDIM step over validated, contiguous tensors (StepParams).");
}
