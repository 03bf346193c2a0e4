// The arithmetic of the fused DDPM / DDIM sampling step, shared by the C++ CPU kernel
// (csrc/sampling_step_cpu.cpp) and the CUDA kernel (kernels/sampling_step.cu). The formulas
// follow diffusers' DDPMScheduler.step / DDIMScheduler.step term by term, in float32, and
// the references in genfast/reference/sampling_step.py; see there for the equations.
#pragma once
#include <math.h>

#include "genfast/common.h"
#include "genfast/philox.h"

namespace genfast {

enum Scheduler : int32_t { kDDPM = 0, kDDIM = 1 };
enum PredictionType : int32_t { kEpsilon = 0, kSample = 1, kVPrediction = 2 };
enum VarianceType : int32_t {
  kFixedSmall = 0,
  kFixedSmallLog = 1,
  kFixedLarge = 2,
  kFixedLargeLog = 3,
  kLearned = 4,
  kLearnedRange = 5,
};

// Every pointer is a device (or host) address passed from Python as an integer; the Python
// layer validated shapes, dtypes, devices and contiguity. Rows are batch elements; each row of
// `sample` holds n contiguous elements.
struct StepParams {
  uint64_t model_output = 0;         // [B, mo_row_stride]; the first n elements of a row are the
                                     // prediction, the next n the learned variance (if any)
  uint64_t model_output_uncond = 0;  // [B, mo_row_stride] or 0: classifier-free guidance
  uint64_t sample = 0;               // [B, n]  x_t
  uint64_t noise = 0;                // [B, n] or 0
  uint64_t timestep = 0;             // int64 [B] or [1]
  uint64_t prev_timestep = 0;        // int64 [B] or [1]
  uint64_t alphas_cumprod = 0;       // float32 [num_train_timesteps]
  uint64_t row_scale = 0;            // float32 [B] or 0: guidance-rescale factor per row
  uint64_t threshold = 0;            // float32 [B] or 0: dynamic-thresholding s per row
  uint64_t philox = 0;               // int64 [2] = (seed, offset) or 0
  uint64_t prev_sample = 0;          // out [B, n]
  uint64_t pred_original_sample = 0; // out [B, n]
  int64_t batch = 0;
  int64_t n = 0;
  int64_t mo_row_stride = 0;
  int64_t t_stride = 0;       // 0: one timestep for all rows, 1: one per row
  int32_t dtype = kFloat32;   // of model_output, sample, outputs
  int32_t noise_dtype = kFloat32;
  int32_t scheduler = kDDPM;
  int32_t prediction_type = kEpsilon;
  int32_t variance_type = kFixedSmall;
  int32_t clip_sample = 0;
  int32_t use_clipped_model_output = 0;
  float clip_sample_range = 1.0f;
  float final_alpha_cumprod = 1.0f;  // alpha_prod_t_prev when prev_timestep < 0
  float eta = 0.0f;
  float guidance_scale = 1.0f;
};

// The typed pointers of P, unpacked once by the CPU and the CUDA kernel alike (mo: [B, mo_row_stride]).
template <typename T, typename TN>
struct StepTensors : GuidedStepInputs<T> {
  const TN* noise;  // [B, n] or null
  T* prev;          // out [B, n]
  T* x0;            // out [B, n]
  GF_HD explicit StepTensors(const StepParams& P)
      : GuidedStepInputs<T>(P),
        noise(reinterpret_cast<const TN*>(P.noise)),
        prev(reinterpret_cast<T*>(P.prev_sample)),
        x0(reinterpret_cast<T*>(P.pred_original_sample)) {}
};

struct RowCoeffs {
  float sqrt_a;        // sqrt(alpha_prod_t)
  float sqrt_b;        // sqrt(beta_prod_t)
  float c_x0;          // DDPM: posterior-mean coefficient of x0; DDIM: sqrt(alpha_prod_t_prev)
  float c_xt;          // DDPM: posterior-mean coefficient of x_t; DDIM: sqrt(1 - a_prev - std^2)
  float std;           // standard deviation of the added noise (fixed variance types, DDIM)
  float log_var_min;   // learned_range: log of the clamped posterior variance
  float log_var_max;   // learned_range: log(beta_t)
  float noise_gate;    // 1 where noise is added to this row, else 0
  float thr;           // dynamic-thresholding s, or 0 when off
  float scale;         // guidance-rescale factor (1 when off)
};

GF_HD RowCoeffs step_row_coeffs(const StepParams& P, int64_t b) {
  const int64_t* ts = reinterpret_cast<const int64_t*>(P.timestep);
  const int64_t* pts = reinterpret_cast<const int64_t*>(P.prev_timestep);
  const float* ac = reinterpret_cast<const float*>(P.alphas_cumprod);
  int64_t t = ts[b * P.t_stride];
  int64_t pt = pts[b * P.t_stride];
  float a_t = ac[t];
  float a_prev = pt >= 0 ? ac[pt] : P.final_alpha_cumprod;
  float beta_t = 1.0f - a_t;
  float beta_prev = 1.0f - a_prev;
  RowCoeffs rc;
  rc.sqrt_a = sqrtf(a_t);
  rc.sqrt_b = sqrtf(beta_t);
  rc.log_var_min = 0.0f;
  rc.log_var_max = 0.0f;
  if (P.scheduler == kDDPM) {
    float cur_alpha = a_t / a_prev;
    float cur_beta = 1.0f - cur_alpha;
    rc.c_x0 = (sqrtf(a_prev) * cur_beta) / beta_t;
    rc.c_xt = sqrtf(cur_alpha) * beta_prev / beta_t;
    float var = beta_prev / beta_t * cur_beta;
    var = var < 1e-20f ? 1e-20f : var;
    switch (P.variance_type) {
      case kFixedSmall: rc.std = sqrtf(var); break;
      case kFixedSmallLog: rc.std = expf(0.5f * logf(var)); break;
      case kFixedLarge: rc.std = sqrtf(cur_beta); break;
      case kFixedLargeLog: rc.std = expf(0.5f * logf(cur_beta)); break;
      default: rc.std = 0.0f; break;  // learned types: per element
    }
    if (P.variance_type == kLearnedRange) {
      rc.log_var_min = logf(var);
      rc.log_var_max = logf(cur_beta);
    }
    rc.noise_gate = t > 0 ? 1.0f : 0.0f;
  } else {
    const float r = a_t / a_prev;
    float var = (beta_prev / beta_t) * (1.0f - r);
    rc.std = P.eta * sqrtf(var);
    rc.c_x0 = sqrtf(a_prev);
    // 1 - a_prev - std^2 rewritten without cancellation (the reference's form):
    // (1 - a_prev) ((1 - eta^2)(1 - a_t) + eta^2 a_t (1 - a_prev) / a_prev) / (1 - a_t), a sum of terms >= 0.
    // As 1 - a_prev - std^2 it cancels to rounding noise at eta = 1 near t = T (sqrt of noise times
    // eps: errors of 5% in bfloat16 outputs, issue 14). Clamped at 0 (eta > 1) by a comparison, not
    // fmaxf: a NaN (0 / 0 coefficients) stays NaN, as torch.clamp in the reference.
    const float eta2 = P.eta * P.eta;
    const float rest = beta_prev * ((1.0f - eta2) * beta_t + eta2 * (a_t * beta_prev / a_prev)) / beta_t;
    rc.c_xt = sqrtf(rest < 0.0f ? 0.0f : rest);
    rc.noise_gate = P.eta > 0.0f ? 1.0f : 0.0f;
  }
  rc.thr = P.threshold ? reinterpret_cast<const float*>(P.threshold)[b] : 0.0f;
  rc.scale = P.row_scale ? reinterpret_cast<const float*>(P.row_scale)[b] : 1.0f;
  return rc;
}

// Compile-time mode of the per-element arithmetic, so that the CPU loop has no branches and
// vectorises: the scheduler, the prediction type, and the learned-variance mode.
enum LearnedMode : int32_t { kNotLearned = 0, kLearnedStd = 1, kLearnedRangeStd = 2 };

GF_HD int32_t learned_mode(const StepParams& P) {
  if (P.scheduler != kDDPM) return kNotLearned;
  if (P.variance_type == kLearned) return kLearnedStd;
  if (P.variance_type == kLearnedRange) return kLearnedRangeStd;
  return kNotLearned;
}

// Row-constant clamp of x0: clip_sample to [-r, r], or dynamic thresholding to [-s, s] / s.
struct ClampSpec {
  bool on;
  float lo, hi, div;
};

GF_HD ClampSpec clamp_spec(const StepParams& P, const RowCoeffs& rc) {
  // On whenever a threshold was passed: a NaN s (a NaN in the row's x0) must give a NaN row, as in
  // the reference and diffusers, not switch thresholding off.
  if (P.threshold) return ClampSpec{true, -rc.thr, rc.thr, rc.thr};
  if (P.clip_sample) return ClampSpec{true, -P.clip_sample_range, P.clip_sample_range, 1.0f};
  return ClampSpec{false, 0.0f, 0.0f, 1.0f};
}

// One element. mo: the (guided) model prediction; mo_var: the learned-variance channel value
// (unused for fixed types); x: x_t; z: standard-normal noise (ignored where the gate is 0).
template <int kSched, int kPred, int kLearned>
GF_HD void step_element_t(const RowCoeffs& rc, const ClampSpec& cs, bool use_clipped, float mo,
                          float mo_var, float x, float z, float& prev_out, float& x0_out) {
  float x0, eps;
  if (kPred == kEpsilon) {
    x0 = (x - rc.sqrt_b * mo) / rc.sqrt_a;
    eps = mo;
  } else if (kPred == kSample) {
    x0 = mo;
    eps = (x - rc.sqrt_a * x0) / rc.sqrt_b;
  } else {
    x0 = rc.sqrt_a * x - rc.sqrt_b * mo;
    eps = rc.sqrt_a * mo + rc.sqrt_b * x;
  }
  // Comparisons, not fminf/fmaxf: GCC vectorises these (fminf's NaN rules made it a scalar
  // libcall, 4x slower for the whole step), and a NaN passes through as in torch.clamp.
  float lo_c = x0 < cs.lo ? cs.lo : x0;
  float clamped = (lo_c > cs.hi ? cs.hi : lo_c) / cs.div;
  x0 = cs.on ? clamped : x0;
  float out;
  if (kSched == kDDPM) {
    out = rc.c_x0 * x0 + rc.c_xt * x;
    float std = rc.std;
    if (kLearned == kLearnedStd) {
      std = sqrtf(mo_var);
    } else if (kLearned == kLearnedRangeStd) {
      float frac = (mo_var + 1.0f) / 2.0f;
      std = expf(0.5f * (frac * rc.log_var_max + (1.0f - frac) * rc.log_var_min));
    }
    float noisy = out + std * z;
    out = rc.noise_gate > 0.0f ? noisy : out;
  } else {
    float eps_c = (x - rc.sqrt_a * x0) / rc.sqrt_b;
    eps = use_clipped ? eps_c : eps;
    out = rc.c_x0 * x0 + rc.c_xt * eps;
    float noisy = out + rc.std * z;
    out = rc.noise_gate > 0.0f ? noisy : out;
  }
  prev_out = out;
  x0_out = x0;
}

// One compiled variant of the step: element types and modes as template arguments, so that the
// CPU loop has no branches and vectorises.
template <typename T_, typename TN_, int kSched_, int kPred_, int kLearned_>
struct StepVariant {
  using T = T_;    // model_output, sample and the outputs
  using TN = TN_;  // the noise tensor (float when there is none)
  static constexpr int kSched = kSched_;
  static constexpr int kPred = kPred_;
  static constexpr int kLearned = kLearned_;
};

// fn(StepVariant<...>{}) for the runtime dtypes and modes of P: the one place where the step's
// runtime options become template arguments, for the CPU and the CUDA kernel alike.
template <typename Fn>
inline void dispatch_step(const StepParams& P, const char* op, Fn&& fn) {
  const int32_t lm = learned_mode(P);
  dispatch_dtype(P.dtype, P.noise ? P.noise_dtype : kFloat32, op, [&](auto t, auto tn) {
    using T = tag_type<decltype(t)>;
    using TN = tag_type<decltype(tn)>;
#define GF_PRED_CASES(S, L)                                                 \
  switch (P.prediction_type) {                                              \
    case kEpsilon: return fn(StepVariant<T, TN, S, kEpsilon, L>{});         \
    case kSample: return fn(StepVariant<T, TN, S, kSample, L>{});           \
    default: return fn(StepVariant<T, TN, S, kVPrediction, L>{});           \
  }
    if (P.scheduler == kDDIM) { GF_PRED_CASES(kDDIM, kNotLearned) }
    if (lm == kLearnedStd) { GF_PRED_CASES(kDDPM, kLearnedStd) }
    if (lm == kLearnedRangeStd) { GF_PRED_CASES(kDDPM, kLearnedRangeStd) }
    GF_PRED_CASES(kDDPM, kNotLearned)
#undef GF_PRED_CASES
  });
}

}  // namespace genfast
