// The arithmetic of Glow's invertible 1x1 convolution with actnorm folded into its weight
// (Kingma & Dhariwal 2018, sec. 3.1-3.2), shared by the C++ CPU kernel (csrc/invconv_cpu.cpp)
// and the CUDA kernel (kernels/invconv.cu). Both apply, per image and per pixel,
//
//     y[n, i, p] = bias[i] + sum_k w[i, k] * x[n, k, p]      (NCHW, p = h * W + w)
//
// where w = W diag(s_actnorm) and bias = W b_actnorm (or, for the inverse, w = diag(1/s) W^-1 and
// bias = -b / s) were folded once per parameter change by the Python layer
// (genfast/ops/invconv.py). The accumulation order is part of the specification: start from
// bias[i], then one fused multiply-add per k in ascending order. The CPU micro-kernel and every
// CUDA thread follow it, so the two agree bit for bit in float32.
#pragma once
#include <math.h>

#include "genfast/common.h"

#if defined(__CUDACC__)
#define GF_INVCONV_UNROLL _Pragma("unroll")
#else
#define GF_INVCONV_UNROLL _Pragma("GCC unroll 16")
#endif

namespace genfast {

// The arguments of one call, from genfast/ops/invconv.py (which validated shapes, dtypes, devices
// and contiguity). Pointers are host or device addresses passed as integers.
struct InvConvParams {
  uint64_t x = 0;     // [N, C, HW] in `dtype`, contiguous
  uint64_t w = 0;     // [C, C] float32, row-major: w[i * C + k] (output channel i, input k)
  uint64_t bias = 0;  // [C] float32, or 0 for none
  uint64_t y = 0;     // out [N, C, HW] in `dtype`, contiguous
  int64_t n = 0;
  int64_t c = 0;
  int64_t hw = 0;
  int32_t dtype = kFloat32;
};

// One MR x NR tile of outputs over the input channels k0 <= k < k1:
//   acc[r][j] <- fma(w[r * ldw + k * SK], xp[k * ldx + j * SJ], acc[r][j])   for k ascending.
// `w` points at the tile's first weight row (rows ldw apart, input channels SK apart: the CPU
// packs each block of MR rows k-major, ldw = 1 and SK = MR; CUDA reads a row-major shared tile,
// SK = 1), `xp` at its first pixel in an fp32 panel of the input (pixels SJ apart: 1 on the
// CPU, the thread-block width on CUDA, where neighbouring threads take neighbouring pixels).
template <int MR, int NR, int SJ = 1, int SK = 1>
GF_HD void invconv_tile_fma(float (&acc)[MR][NR], const float* w, int64_t ldw, const float* xp,
                            int64_t ldx, int64_t k0, int64_t k1) {
  for (int64_t k = k0; k < k1; ++k) {
    const float* xk = xp + k * ldx;
    GF_INVCONV_UNROLL
    for (int r = 0; r < MR; ++r) {
      const float wv = w[r * ldw + k * SK];
      GF_INVCONV_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] = fmaf(wv, xk[j * SJ], acc[r][j]);
    }
  }
}

// The initial value of output channel i's accumulator.
GF_HD float invconv_bias(const float* bias, int64_t i) { return bias ? bias[i] : 0.0f; }

// ---------------------------------------------------------------------------------------------
// Folding the LU parameters and actnorm into (w, bias) in one call (the O(C^2)-O(C^3) set-up of
// genfast.ops.actnorm_invconv, which otherwise takes a dozen small tensor ops), with the checks
// that need the values. Forward: W = P L U', U' = U + diag(sign_s exp(log_s)) (Glow eq. (10));
// w = W diag(s), bias = W b. Reverse: W^-1 = U'^-1 L^-1 P^T from the two triangular inverses
// (forward substitution for the unit lower L, backward for U'), never a dense inverse;
// w = diag(1/s) W^-1, bias = -b / s. Arithmetic in double, results rounded to float32 once.
// `perm` gives P = I[perm] (row i of W is row perm[i] of L U'). `act_s` / `act_b` may be null.
// `scratch`: 2 * C * C + C doubles; `seen`: C bytes. Returns a status (0: valid) and writes
// sum(log_s) + sum(log|s|) to *log_abs_det (per pixel).
enum InvConvFoldStatus : int32_t {
  kFoldOk = 0,
  kFoldBadPerm = 1,       // perm is not a permutation of 0..C-1
  kFoldBadSign = 2,       // sign_s holds something other than +1 / -1
  kFoldZeroScale = 3,     // act_s has a zero entry
  kFoldNonFiniteScale = 4, // act_s has a NaN or infinite entry
  kFoldNonFiniteLower = 5, // lower has a NaN or infinite entry
  kFoldNonFiniteUpper = 6, // upper has a NaN or infinite entry
  kFoldNonFiniteBias = 7,  // act_b has a NaN or infinite entry
  kFoldLogScaleRange = 8   // log_s outside [kLogScaleMin, kLogScaleMax] (NaN included)
};

// exp(log_s) must be a finite, normal float32 (the weights are float32): e^88.7 overflows and
// e^-87.4 is subnormal. genfast/ops/invconv.py uses the same bounds (LOG_S_RANGE).
constexpr float kLogScaleMin = -87.0f;
constexpr float kLogScaleMax = 88.0f;

GF_HD int32_t invconv_fold_lu(int64_t c, const int64_t* perm, const float* lower, const float* upper,
                              const float* sign_s, const float* log_s, const float* act_s,
                              const float* act_b, bool reverse, float* w, float* bias, double* scratch,
                              unsigned char* seen, double* log_abs_det) {
  for (int64_t i = 0; i < c; ++i) seen[i] = 0;
  for (int64_t i = 0; i < c; ++i) {
    const int64_t p = perm[i];
    if (p < 0 || p >= c || seen[p]) return kFoldBadPerm;
    seen[p] = 1;
  }
  for (int64_t i = 0; i < c; ++i) {
    if (sign_s[i] != 1.0f && sign_s[i] != -1.0f) return kFoldBadSign;
  }
  double total = 0.0;
  if (act_s) {
    for (int64_t i = 0; i < c; ++i) {
      if (act_s[i] == 0.0f) return kFoldZeroScale;
    }
    for (int64_t i = 0; i < c; ++i) {
      if (!isfinite(act_s[i])) return kFoldNonFiniteScale;
      total += log(fabs(static_cast<double>(act_s[i])));
    }
  }
  for (int64_t i = 0; i < c * c; ++i) {
    if (!isfinite(lower[i])) return kFoldNonFiniteLower;
  }
  for (int64_t i = 0; i < c * c; ++i) {
    if (!isfinite(upper[i])) return kFoldNonFiniteUpper;
  }
  if (act_b) {
    for (int64_t i = 0; i < c; ++i) {
      if (!isfinite(act_b[i])) return kFoldNonFiniteBias;
    }
  }
  for (int64_t i = 0; i < c; ++i) {
    // written so that NaN fails too
    if (!(log_s[i] >= kLogScaleMin && log_s[i] <= kLogScaleMax)) return kFoldLogScaleRange;
  }
  for (int64_t i = 0; i < c; ++i) total += log_s[i];
  *log_abs_det = total;
  double* a = scratch;          // [C, C]
  double* t = scratch + c * c;  // [C, C]
  double* row = t + c * c;      // [C]
  if (!reverse) {
    // U' as doubles in t (row k: zeros left of the diagonal), then a = L U' row by row:
    // a[i, :] = U'[i, :] + sum_{k < i} lower[i, k] U'[k, :]
    for (int64_t k = 0; k < c; ++k) {
      double* tk = t + k * c;
      for (int64_t j = 0; j < c; ++j) tk[j] = j > k ? upper[k * c + j] : 0.0;
      tk[k] = sign_s[k] * exp(static_cast<double>(log_s[k]));
    }
    for (int64_t i = 0; i < c; ++i) {
      double* ai = a + i * c;
      const double* ti = t + i * c;
      for (int64_t j = 0; j < c; ++j) ai[j] = ti[j];
      for (int64_t k = 0; k < i; ++k) {
        const double l = lower[i * c + k];
        const double* tk = t + k * c;
        for (int64_t j = k; j < c; ++j) ai[j] += l * tk[j];
      }
    }
    for (int64_t i = 0; i < c; ++i) {
      const double* wi = a + perm[i] * c;
      double acc = 0.0;
      for (int64_t j = 0; j < c; ++j) {
        w[i * c + j] = static_cast<float>(act_s ? wi[j] * act_s[j] : wi[j]);
        if (act_b) acc += wi[j] * act_b[j];
      }
      bias[i] = static_cast<float>(acc);
    }
    return kFoldOk;
  }
  // t = L^-1 (unit lower): t[i, :] = e_i - sum_{k < i} lower[i, k] t[k, :]
  for (int64_t i = 0; i < c; ++i) {
    double* ti = t + i * c;
    for (int64_t j = 0; j < c; ++j) ti[j] = j == i ? 1.0 : 0.0;
    for (int64_t k = 0; k < i; ++k) {
      const double l = lower[i * c + k];
      const double* tk = t + k * c;
      for (int64_t j = 0; j <= k; ++j) ti[j] -= l * tk[j];
    }
  }
  // a = U'^-1 (upper), bottom row first: a[i, :] = (e_i - sum_{k > i} U[i, k] a[k, :]) / d_i
  for (int64_t i = c - 1; i >= 0; --i) {
    double* ai = a + i * c;
    for (int64_t j = 0; j < c; ++j) ai[j] = j == i ? 1.0 : 0.0;
    for (int64_t k = i + 1; k < c; ++k) {
      const double u = upper[i * c + k];
      const double* ak = a + k * c;
      for (int64_t j = k; j < c; ++j) ai[j] -= u * ak[j];
    }
    const double d = sign_s[i] * exp(static_cast<double>(log_s[i]));
    for (int64_t j = i; j < c; ++j) ai[j] /= d;
  }
  // W^-1 = U'^-1 L^-1 P^T: row i of U'^-1 L^-1, then column j of the result is column perm[j]
  for (int64_t i = 0; i < c; ++i) {
    const double* ai = a + i * c;
    for (int64_t j = 0; j < c; ++j) row[j] = 0.0;
    for (int64_t k = i; k < c; ++k) {
      const double v = ai[k];
      const double* tk = t + k * c;
      for (int64_t j = 0; j <= k; ++j) row[j] += v * tk[j];
    }
    const double inv_s = act_s ? 1.0 / act_s[i] : 1.0;
    for (int64_t j = 0; j < c; ++j) w[i * c + j] = static_cast<float>(row[perm[j]] * inv_s);
    bias[i] = static_cast<float>(act_b ? -act_b[i] * inv_s : 0.0);
  }
  return kFoldOk;
}

}  // namespace genfast
