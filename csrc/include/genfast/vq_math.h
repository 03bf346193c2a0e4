// The arithmetic of the nearest-code search of vector quantisation (genfast.ops.vq_nearest /
// vq_quantize), shared by the C++ CPU kernel (csrc/vq_cpu.cpp) and the CUDA kernel
// (kernels/vq.cu); the pure-PyTorch oracle is genfast/reference/vq.py.
//
// The N x K distance matrix is never formed. For a row z and a code e_k the kernels minimise
//     score_k = bias_k + sum_d z_d * w_kd,     w_kd = scale_k * e_kd
// over k, where
//     squared Euclidean: scale_k = -2,             bias_k = |e_k|^2
//                        (|z - e_k|^2 = |z|^2 + score_k and |z|^2 does not depend on k);
//     cosine similarity: scale_k = -1 / |e_k|,     bias_k = 0
//                        (cos(z, e_k) = -score_k / |z|, so argmax cos = argmin score).
// The sum runs over d in increasing order with one fused multiply-add per term, starting from
// bias_k, on every backend (CPU SIMD lanes, CUDA fp32 path): the scores, hence the indices, are
// bit-identical between the CPU and the CUDA fp32 kernels. Ties go to the lowest index
// (torch.argmin's rule). The returned distance is recomputed from the chosen code directly,
// sum_d (z_d - e_d)^2 (or the cosine), which is more accurate than the expanded formula.
#pragma once
#include <math.h>

#include "genfast/common.h"

namespace genfast {

// The arguments of one call, from genfast/ops/vq.py (which validated shapes, dtypes, devices and
// contiguity). Pointers are host or device addresses passed as integers; 0 skips an output.
struct VqParams {
  uint64_t z = 0;          // [n, d] dtype: the rows to quantise
  uint64_t codebook = 0;   // [k, d] dtype
  uint64_t indices = 0;    // out int64 [n]: the nearest code of each row
  uint64_t distances = 0;  // out float32 [n]: its squared distance, or cosine similarity
  uint64_t z_q = 0;        // out [n, d] dtype: the chosen codes, or 0
  uint64_t counts = 0;     // out float32 [k], zeroed by the caller: rows per code, or 0
  uint64_t sums = 0;       // out float32 [k, d], zeroed by the caller: sum of the rows per code, or 0
  uint64_t workspace = 0;  // CUDA only: float32 [2 k] device scratch (per-code scale and bias)
  uint64_t scaling = 0;    // float32 [3] (s, eps * s, 1 / s): the power-of-two scaling below, or 0 for none
  int64_t n = 0;
  int64_t k = 0;
  int64_t d = 0;
  int32_t dtype = kFloat32;
  bool cosine = false;     // cosine similarity instead of the squared Euclidean distance
};

// torch.nn.functional.normalize's eps: a code or row of norm below it counts as norm eps.
constexpr float kVQNormEps = 1e-12f;

// Overflow / underflow policy. Every backend multiplies z and the codebook by one power of two s
// (exact, so the ranking is unchanged) chosen by the Python layer (genfast/ops/vq.py,
// _scaling): s = 1 for ordinary magnitudes, and otherwise such that the largest |value| times s
// lies in [2, 4): float32 squares of |x| ~ 1e19 overflow (every score inf, index 0) and those of
// |x| ~ 1e-25 underflow (every score 0), where the float64 reference is right. The normalisation
// eps scales with the data (eps * s), so the cosine rule max(|e|, eps) is the reference's, and
// returned squared distances are multiplied back by (1/s)^2.
struct VQScaling {
  float s;      // the power of two applied to z and the codebook
  float eps;    // kVQNormEps * s
  float inv_s;  // 1 / s
};

GF_HD VQScaling vq_scaling(const float* p) {  // p: float32 [3] = (s, eps * s, 1 / s), or null
  if (p == nullptr) return VQScaling{1.0f, kVQNormEps, 1.0f};
  return VQScaling{p[0], p[1], p[2]};
}

// scale_k and bias_k of one code row e[0:d] (see the header comment), in the scaled domain.
template <typename T>
GF_HD void vq_code_coeffs(const T* e, int64_t d, bool cosine, const VQScaling& sc, float& scale, float& bias) {
  float ss = 0.0f;
  for (int64_t j = 0; j < d; ++j) {
    const float v = load_f32<T>(e, j) * sc.s;
    ss = fmaf(v, v, ss);
  }
  if (cosine) {
    scale = -1.0f / fmaxf(sqrtf(ss), sc.eps);
    bias = 0.0f;
  } else {
    scale = -2.0f;  // a power of two: w = -2 e is exact
    bias = ss;
  }
}

// One term of the score: acc + z_d * w_kd, fused (one rounding), as the SIMD FMA lanes do.
GF_HD float vq_score_term(float acc, float z, float w) { return fmaf(z, w, acc); }

// True when (v, i) beats the running best (bv, bi): smaller score, ties to the lower index.
GF_HD bool vq_better(float v, int64_t i, float bv, int64_t bi) { return v < bv || (v == bv && i < bi); }

// The returned value for row z and its chosen code e: the squared Euclidean distance
// sum_d (z_d - e_d)^2, or the cosine similarity z.e / (max(|z|, eps) max(|e|, eps)), computed on
// the scaled values; the squared distance is scaled back by (1/s)^2 (two exact multiplications,
// inf only where the true value exceeds float32's range, as the reference's cast).
template <typename T>
GF_HD float vq_final_distance(const T* z, const T* e, int64_t d, bool cosine, const VQScaling& sc) {
  if (!cosine) {
    float acc = 0.0f;
    for (int64_t j = 0; j < d; ++j) {
      const float diff = load_f32<T>(z, j) * sc.s - load_f32<T>(e, j) * sc.s;
      acc = fmaf(diff, diff, acc);
    }
    return acc * sc.inv_s * sc.inv_s;
  }
  float dot = 0.0f, zz = 0.0f, ee = 0.0f;
  for (int64_t j = 0; j < d; ++j) {
    const float a = load_f32<T>(z, j) * sc.s;
    const float b = load_f32<T>(e, j) * sc.s;
    dot = fmaf(a, b, dot);
    zz = fmaf(a, a, zz);
    ee = fmaf(b, b, ee);
  }
  return dot / (fmaxf(sqrtf(zz), sc.eps) * fmaxf(sqrtf(ee), sc.eps));
}

}  // namespace genfast
