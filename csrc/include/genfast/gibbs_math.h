// The arithmetic of block Gibbs sampling in a restricted Boltzmann machine, shared by the C++
// CPU kernel (csrc/gibbs_cpu.cpp) and the CUDA kernel (kernels/gibbs.cu). The specification,
// including the Philox counter of every Bernoulli / Gaussian draw, is the pure-PyTorch
// reference genfast/reference/gibbs.py; the formulas are those of Hinton (2010), "A practical
// guide to training restricted Boltzmann machines", sections 3 and 13.2:
//
//   hidden half-step:   h_prob = sigmoid(c + (v W^T) / sigma),   h = [u < h_prob]
//   visible half-step:  Bernoulli visible: v_prob = sigmoid(b + h W),         v = [u < v_prob]
//                       Gaussian visible:  v_mean = b + sigma * (h W),        v = v_mean + sigma z
//
// (sigma = 1 for Bernoulli visible units), with u = Philox uniform and z = Philox normal number
// at the stream position of the element (gibbs_hidden_counter / gibbs_visible_counter below;
// number p comes from Philox counter p >> 2, word p & 3: csrc/include/genfast/philox.h).
#pragma once
#include <math.h>

#include "genfast/common.h"
#include "genfast/philox.h"

namespace genfast {

// The arguments of one call, from genfast/ops/gibbs.py (which validated shapes, dtypes, devices
// and contiguity). Pointers are host or device addresses passed as integers.
struct GibbsParams {
  uint64_t v_in = 0;          // [B, V] dtype: the chains' starting states
  uint64_t weight = 0;        // [H, V] dtype
  uint64_t visible_bias = 0;  // [V] dtype
  uint64_t hidden_bias = 0;   // [H] dtype
  uint64_t philox = 0;        // int64 [2] = (seed, offset)
  uint64_t v_out = 0;         // out [B, V] dtype: the last visible sample
  uint64_t h_out = 0;         // out [B, H] dtype: the last hidden sample
  uint64_t v_prob = 0;        // out [B, V] dtype: p(v = 1 | h), or the Gaussian mean
  uint64_t h_prob = 0;        // out [B, H] dtype: p(h = 1 | v)
  uint64_t state = 0;         // CUDA only: float32 [B, V + H] scratch of the chains' states
  int64_t batch = 0;          // B
  int64_t n_visible = 0;      // V
  int64_t n_hidden = 0;       // H
  int64_t k = 0;              // Gibbs steps
  int32_t dtype = kFloat32;
  bool gaussian = false;      // Gaussian visible units of standard deviation sigma
  float sigma = 1.0f;
};

// Stream positions. One full step s of a [B] batch of chains consumes B * (H + V) numbers:
// first the B x H hidden draws (row-major), then the B x V visible draws, so step s starts at
// offset + s * B * (H + V) and no two draws of one call share a number.
GF_HD uint64_t gibbs_step_base(uint64_t offset, int64_t s, int64_t B, int64_t V, int64_t H) {
  return offset + static_cast<uint64_t>(s) * static_cast<uint64_t>(B) * static_cast<uint64_t>(H + V);
}
GF_HD uint64_t gibbs_hidden_counter(uint64_t step_base, int64_t H, int64_t b, int64_t j) {
  return step_base + static_cast<uint64_t>(b) * static_cast<uint64_t>(H) + static_cast<uint64_t>(j);
}
GF_HD uint64_t gibbs_visible_counter(uint64_t step_base, int64_t B, int64_t V, int64_t H, int64_t b,
                                     int64_t i) {
  return step_base + static_cast<uint64_t>(B) * static_cast<uint64_t>(H) +
         static_cast<uint64_t>(b) * static_cast<uint64_t>(V) + static_cast<uint64_t>(i);
}

// exp(x) by Cephes' expf polynomial (within 2 ulp of the correctly rounded value) with the
// power of two formed by the 1.5 * 2^23 rounding trick: no float->int conversion, so GCC
// vectorises it and a NaN stays NaN. x is clamped to [-87.3, 88.7] (no overflow to inf).
GF_HD float poly_exp(float x) {
  float t = x > 88.7f ? 88.7f : (x < -87.3f ? -87.3f : x);
  const float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the mantissa
  float kd = t * 1.44269504f + kShift;
  float n = kd - kShift;
  float r = t - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  // 2^n from the integer sitting in kd's low mantissa bits: n in [-126, 128]; split the scale
  // in two factors so that 2^128 (x near 88.7) does not overflow the exponent field.
  uint32_t nb = f32_bits(kd) - f32_bits(kShift);  // n as a two's-complement 32-bit integer
  uint32_t n1 = static_cast<uint32_t>(static_cast<int32_t>(nb) >> 1);
  uint32_t n2 = nb - n1;
  return y * bits_f32((n1 + 127u) << 23) * bits_f32((n2 + 127u) << 23);
}

// The logistic function 1 / (1 + exp(-x)); 0 for x below -88.7 (to float precision), 1 above
// 16.7, NaN for NaN.
GF_HD float gibbs_sigmoid(float x) { return 1.0f / (1.0f + poly_exp(-x)); }

// hidden unit j of chain b: acc = sum_i v_bi W_ji (fp32 accumulation).
GF_HD float gibbs_hidden_prob(float acc, float c, float inv_sigma) {
  return gibbs_sigmoid(c + inv_sigma * acc);
}

// visible unit i of chain b: acc = sum_j h_bj W_ji. Bernoulli: the probability; Gaussian: the mean.
template <bool kGaussian>
GF_HD float gibbs_visible_mean(float acc, float b, float sigma) {
  return kGaussian ? b + sigma * acc : gibbs_sigmoid(b + acc);
}

// The random number of the unit at stream position p: a uniform for a Bernoulli unit, a normal
// for a Gaussian one (one Philox call per unit; csrc/gibbs_cpu.cpp draws them in blocks).
template <bool kGaussian>
GF_HD float gibbs_random(uint64_t seed, uint64_t p) {
  return kGaussian ? philox_normal(seed, p) : philox_uniform(seed, p);
}

// The draw of one unit from its random number r (gibbs_random): Bernoulli 1.0 where r < p (r a
// uniform in [0, 1) with 24 random bits, so p = 0 never fires and p = 1 always does), or
// mean + sigma * r (r a standard normal).
template <bool kGaussian>
GF_HD float gibbs_draw(float r, float p_or_mean, float sigma) {
  if (kGaussian) return p_or_mean + sigma * r;
  return r < p_or_mean ? 1.0f : 0.0f;
}

}  // namespace genfast
