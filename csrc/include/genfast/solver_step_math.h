// The arithmetic of the general solver step (genfast.ops.solver_step), shared by the C++ CPU
// kernel (csrc/solver_step_cpu.cpp) and the CUDA kernel (kernels/solver_step.cu). The formula and
// the coefficient names are specified in genfast/reference/solver_step.py.
#pragma once
#include <math.h>

#include <stdexcept>
#include <string>

#include "genfast/common.h"

namespace genfast {

// Coefficient slots of one row, in the order of genfast/reference/solver_step.py COEFFICIENTS.
enum SolverCoef : int32_t {
  kCx = 0, kCg, kCz,             // m  = c_x x + c_g g + c_z z
  kTm, kTx, kUm, kUx,            // x_0 view v = t_m m + t_x x; after the clamp m = u_m v + u_x x
  kAx, kAs, kAm, kAh1, kAh2, kAh3, kAz,  // y1
  kBy, kBm, kBh1, kBh2, kBh3, kBz,       // y2
  kNumSolverCoef
};

enum ClampMode : int32_t { kClampNone = 0, kClampClip = 1, kClampThreshold = 2 };

constexpr int kSolverMaxHistory = 3;

// Every pointer is a device (or host) address passed from Python as an integer; the Python layer
// validated shapes, dtypes, devices and contiguity. Each of the B rows holds n elements.
struct SolverParams {
  uint64_t model_output = 0;         // [B, n]
  uint64_t model_output_uncond = 0;  // [B, n] or 0: classifier-free guidance
  uint64_t sample = 0;               // [B, n]  x
  uint64_t last_sample = 0;          // [B, n] or 0: s
  uint64_t history[kSolverMaxHistory] = {0, 0, 0};  // [B, n] each, h1 h2 h3 (most recent first)
  uint64_t noise = 0;                // [B, n] or 0
  uint64_t philox = 0;               // int64 [2] = (seed, offset) or 0
  uint64_t coefficients = 0;         // float32 [B or 1, kNumSolverCoef]
  uint64_t row_scale = 0;            // float32 [B] or 0: guidance-rescale factor per row
  uint64_t threshold = 0;            // float32 [B] or 0: dynamic-thresholding s per row
  uint64_t prev_sample = 0;          // out [B, n]  y2
  uint64_t converted = 0;            // out [B, n]  m, or 0
  uint64_t corrected = 0;            // out [B, n]  y1, or 0
  int64_t batch = 0;
  int64_t n = 0;
  int64_t coef_row_stride = 0;       // 0 (one row for all) or kNumSolverCoef
  int32_t dtype = kFloat32;          // of every [B, n] input and output except noise
  int32_t noise_dtype = kFloat32;
  int32_t num_history = 0;           // 0..3
  int32_t clamp_mode = kClampNone;
  int32_t round_converted = 1;       // round m to dtype before use (diffusers stores it so)
  float guidance_scale = 1.0f;
  float clip_sample_range = 1.0f;
};

// The typed pointers of P, unpacked once by the CPU and the CUDA kernel alike (mo: [B, n]).
template <typename T>
struct SolverTensors : GuidedStepInputs<T> {
  const T* last;  // [B, n] or null
  T* y2;          // out [B, n]  prev_sample
  T* m;           // out [B, n]  converted, or null
  T* y1;          // out [B, n]  corrected, or null
  GF_HD explicit SolverTensors(const SolverParams& P)
      : GuidedStepInputs<T>(P),
        last(reinterpret_cast<const T*>(P.last_sample)),
        y2(reinterpret_cast<T*>(P.prev_sample)),
        m(reinterpret_cast<T*>(P.converted)),
        y1(reinterpret_cast<T*>(P.corrected)) {}
};

// The row-constant part: coefficients, clamp bounds, guidance-rescale factor.
struct SolverRow {
  float c[kNumSolverCoef];
  float lo, hi, div;  // clamp of the x_0 view: v = min(max(v, lo), hi) / div
  float scale;        // guidance-rescale factor (1 when off)
};

GF_HD SolverRow solver_row(const SolverParams& P, int64_t b) {
  SolverRow r;
  const float* c = reinterpret_cast<const float*>(P.coefficients) + b * P.coef_row_stride;
#pragma unroll
  for (int k = 0; k < kNumSolverCoef; ++k) r.c[k] = c[k];
  r.lo = -P.clip_sample_range;
  r.hi = P.clip_sample_range;
  r.div = 1.0f;
  if (P.clamp_mode == kClampThreshold) {
    const float s = reinterpret_cast<const float*>(P.threshold)[b];
    r.lo = -s;
    r.hi = s;
    r.div = s;
  }
  r.scale = P.row_scale ? reinterpret_cast<const float*>(P.row_scale)[b] : 1.0f;
  return r;
}

// The value v would have after a round trip through dtype T (identity for float).
template <typename T> GF_HD float round_through(float v) { return Scalar<T>::load(Scalar<T>::store(v)); }
template <> GF_HD float round_through<float>(float v) { return v; }

// One element. g: the guided model output; x: the sample; s: the last sample (0 when absent);
// h0, h1, h2: the history values (only the first K are used); z: the noise (0 when absent).
// Writes y2, m and y1. round_m / round_y1: use m / y1 rounded to T, as stored. The coefficients
// are passed one by one (the row's array is copied into registers once by the caller's loop).
template <typename T, int K, bool kClamp>
GF_HD void solver_element(const SolverRow& r, bool round_m, bool round_y1, float g, float x, float s, float h0,
                          float h1, float h2, float z, float& y2_out, float& m_out, float& y1_out) {
  float m = r.c[kCx] * x + r.c[kCg] * g + r.c[kCz] * z;
  if (kClamp) {
    float v = r.c[kTm] * m + r.c[kTx] * x;
    // Comparisons, not fminf/fmaxf: they vectorise, and a NaN passes through as in torch.clamp.
    v = v < r.lo ? r.lo : v;
    v = (v > r.hi ? r.hi : v) / r.div;
    m = r.c[kUm] * v + r.c[kUx] * x;
  }
  if (round_m) m = round_through<T>(m);
  float y1 = r.c[kAx] * x + r.c[kAs] * s + r.c[kAm] * m + r.c[kAz] * z;
  float y2 = r.c[kBm] * m + r.c[kBz] * z;
  if (K >= 1) {
    y1 += r.c[kAh1] * h0;
    y2 += r.c[kBh1] * h0;
  }
  if (K >= 2) {
    y1 += r.c[kAh2] * h1;
    y2 += r.c[kBh2] * h1;
  }
  if (K >= 3) {
    y1 += r.c[kAh3] * h2;
    y2 += r.c[kBh3] * h2;
  }
  // When y1 is stored (UniPC's corrected sample, LCM's denoised), y2 uses the stored value, as
  // diffusers does; otherwise (Euler's x_hat) it stays in float32, as in diffusers.
  if (round_y1) y1 = round_through<T>(y1);
  y2_out = y2 + r.c[kBy] * y1;
  m_out = m;
  y1_out = y1;
}

// One compiled variant of the solver step. Every optional input is a template argument, so the CPU
// element loop has no branch and no conditional load and GCC vectorises it (a runtime-optional
// pointer left it scalar: 4x slower); the CUDA kernel takes T, TN, K and kClamp.
template <typename T_, typename TN_, int K_, bool kUncond_, bool kLast_, bool kClamp_>
struct SolverVariant {
  using T = T_;    // every [B, n] input and output except the noise
  using TN = TN_;  // the noise tensor (float when there is none)
  static constexpr int K = K_;  // history terms, 0..3
  static constexpr bool kUncond = kUncond_;
  static constexpr bool kLast = kLast_;
  static constexpr bool kClamp = kClamp_;
};

// fn(SolverVariant<...>{}) for the runtime dtypes, history length and flags of P: the one place
// where the solver step's runtime options become template arguments, for CPU and CUDA alike.
template <typename Fn>
inline void dispatch_solver(const SolverParams& P, const char* op, Fn&& fn) {
  if (P.num_history < 0 || P.num_history > kSolverMaxHistory) {
    throw std::invalid_argument(std::string(op) + ": num_history must be 0..3");
  }
  dispatch_dtype(P.dtype, P.noise ? P.noise_dtype : kFloat32, op, [&](auto t, auto tn) {
    dispatch_bool(P.model_output_uncond != 0, [&](auto u) {
      dispatch_bool(P.last_sample != 0, [&](auto l) {
        dispatch_bool(P.clamp_mode != kClampNone, [&](auto c) {
          using T = tag_type<decltype(t)>;
          using TN = tag_type<decltype(tn)>;
          constexpr bool U = decltype(u)::value, L = decltype(l)::value, C = decltype(c)::value;
          switch (P.num_history) {
            case 0: return fn(SolverVariant<T, TN, 0, U, L, C>{});
            case 1: return fn(SolverVariant<T, TN, 1, U, L, C>{});
            case 2: return fn(SolverVariant<T, TN, 2, U, L, C>{});
            default: return fn(SolverVariant<T, TN, 3, U, L, C>{});
          }
        });
      });
    });
  });
}

}  // namespace genfast
