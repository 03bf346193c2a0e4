// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") and the
// conversions to uniform and normal floats that every genfast backend uses. The exact mapping
// is specified, in PyTorch integer arithmetic, in genfast/reference/random.py:
//
//   key      = (seed mod 2^32, (seed >> 32) mod 2^32)       seed as an unsigned 64-bit integer
//   number j = (offset + i) mod 2^64                         element i of a draw
//   counter  = (c mod 2^32, c >> 32, 0, 0),  c = j >> 2      one Philox call per 4 numbers
//   (x0, x1, x2, x3) = Philox4x32_10(counter, key),  number j uses word w = j mod 4
//   uniform u_j = (x_w >> 8) * 2^-24                         in [0, 1)
//   normal: Box-Muller on the pairs (a, b) = (x0, x1) and (x2, x3):
//           u1 = ((a >> 8) + 1) * 2^-24 in (0, 1],  u2 = (b >> 8) * 2^-24 in [0, 1)
//           r = sqrt(-2 log u1);  word 0 / 2: r cos(2 pi u2),  word 1 / 3: r sin(2 pi u2)
//
// This is the layout of cuRAND's curand_normal4 / curand_uniform4: the cosine and sine of a
// pair share its log and sqrt. philox_normal(seed, j) / philox_uniform(seed, j) give number j
// alone (one Philox call per number); philox_normal4 / philox_uniform4 give the four numbers of
// one counter, and csrc/include/genfast/philox_cpu.h vectorised blocks for the CPU.
//
// log, cos and sin are evaluated by the short polynomials below (within 2 ulp of the correctly
// rounded functions over the inputs that occur) so that GCC vectorises them on the CPU and the
// CUDA kernels compute the same numbers.
#pragma once
#include <math.h>

#include "genfast/common.h"

namespace genfast {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t x0, x1, x2, x3;
};

GF_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return Philox4{c0, c1, c2, c3};
}

// The four words of Philox counter c (< 2^62: c = j >> 2 for number j) under key `seed`.
GF_HD Philox4 philox_counter(uint64_t seed, uint64_t c) {
  return philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

GF_HD float uniform_from_bits(uint32_t x) { return static_cast<float>(x >> 8) * 5.9604644775390625e-8f; }

// log(x) for normal positive floats: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), then
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, by its odd series to s^9.
GF_HD float poly_log(float x) {
  uint32_t u = f32_bits(x);
  int32_t e = static_cast<int32_t>((u >> 23) & 0xffu) - 127;
  float m = bits_f32((u & 0x7fffffu) | 0x3f800000u);
  bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  float s = (m - 1.0f) / (m + 1.0f);
  float s2 = s * s;
  float p = 0.11111111f;
  p = p * s2 + 0.14285715f;
  p = p * s2 + 0.2f;
  p = p * s2 + 0.33333334f;
  p = p * s2 + 1.0f;
  return static_cast<float>(e) * 0.69314718f + 2.0f * s * p;
}

// cos(2 pi u) and sin(2 pi u) for u in [0, 1): reduce to r in [-1/2, 1/2), then by quarter
// turns q to f in [-1/8, 1/8]; x = 2 pi f in [-pi/4, pi/4] where the Taylor series of cos to
// x^8 and of sin to x^9 are exact to 3e-8. All reductions are exact in float32. Both outputs
// come from the same two series (cos(x + q pi/2) and sin(x + q pi/2) swap and negate them), so
// a Box-Muller pair costs one evaluation.
GF_HD void poly_sincos_2pi(float u, float& sin_out, float& cos_out) {
  float r = u >= 0.5f ? u - 1.0f : u;
  float qf = floorf(4.0f * r + 0.5f);  // -2 .. 2
  float f = r - 0.25f * qf;
  float x = 6.28318531f * f;
  float x2 = x * x;
  float c = 2.48015873e-5f;
  c = c * x2 - 1.38888889e-3f;
  c = c * x2 + 4.16666667e-2f;
  c = c * x2 - 0.5f;
  c = c * x2 + 1.0f;
  float s = 2.75573192e-6f;
  s = s * x2 - 1.98412698e-4f;
  s = s * x2 + 8.33333333e-3f;
  s = s * x2 - 0.166666667f;
  s = (s * x2 + 1.0f) * x;
  int q = static_cast<int>(qf) & 3;  // -2 -> 2, -1 -> 3
  // cos(x + q pi/2) = c, -s, -c, s;  sin(x + q pi/2) = s, c, -s, -c  for q = 0, 1, 2, 3
  float cv = (q & 1) ? s : c;
  float sv = (q & 1) ? c : s;
  cos_out = (q == 1 || q == 2) ? -cv : cv;
  sin_out = (q & 2) ? -sv : sv;
}

// Box-Muller of one word pair (a, b): z_cos for the pair's first word, z_sin for its second.
GF_HD void normal_pair_from_bits(uint32_t a, uint32_t b, float& z_cos, float& z_sin) {
  float u1 = static_cast<float>((a >> 8) + 1u) * 5.9604644775390625e-8f;
  float u2 = static_cast<float>(b >> 8) * 5.9604644775390625e-8f;
  float r = sqrtf(-2.0f * poly_log(u1));
  float s, c;
  poly_sincos_2pi(u2, s, c);
  z_cos = r * c;
  z_sin = r * s;
}

// Largest value below 1 in the output dtype: a uniform must stay in [0, 1) after rounding
// (genfast/reference/random.py, UNIFORM_CAP).
template <typename T> GF_HD float uniform_cap() { return 0.99999994f; }
template <> GF_HD float uniform_cap<half_t>() { return 0.99951171875f; }
template <> GF_HD float uniform_cap<bf16_t>() { return 0.99609375f; }

// A uniform capped for dtype T; a comparison, not fminf, so the CPU loop vectorises.
template <typename T> GF_HD float cap_uniform(float u) {
  const float cap = uniform_cap<T>();
  return u > cap ? cap : u;
}

// z[w] = normal number 4 c + w, w < 4: the four normals of counter c.
GF_HD void philox_normal4(uint64_t seed, uint64_t c, float (&z)[4]) {
  const Philox4 x = philox_counter(seed, c);
  normal_pair_from_bits(x.x0, x.x1, z[0], z[1]);
  normal_pair_from_bits(x.x2, x.x3, z[2], z[3]);
}

// u[w] = uniform number 4 c + w, w < 4 (uncapped: cap_uniform<T> for fp16 / bf16 outputs).
GF_HD void philox_uniform4(uint64_t seed, uint64_t c, float (&u)[4]) {
  const Philox4 x = philox_counter(seed, c);
  u[0] = uniform_from_bits(x.x0);
  u[1] = uniform_from_bits(x.x1);
  u[2] = uniform_from_bits(x.x2);
  u[3] = uniform_from_bits(x.x3);
}

// Normal number p of the stream alone: one Philox call for one number. Where a thread needs
// several consecutive numbers, philox_normal4 (one call for four) is cheaper.
GF_HD float philox_normal(uint64_t seed, uint64_t p) {
  const Philox4 x = philox_counter(seed, p >> 2);
  const uint32_t w = static_cast<uint32_t>(p) & 3u;
  float z_cos, z_sin;
  normal_pair_from_bits(w & 2u ? x.x2 : x.x0, w & 2u ? x.x3 : x.x1, z_cos, z_sin);
  return w & 1u ? z_sin : z_cos;
}

// Uniform number p of the stream alone (uncapped).
GF_HD float philox_uniform(uint64_t seed, uint64_t p) {
  const Philox4 x = philox_counter(seed, p >> 2);
  const uint32_t w = static_cast<uint32_t>(p) & 3u;
  return uniform_from_bits(w == 0 ? x.x0 : w == 1 ? x.x1 : w == 2 ? x.x2 : x.x3);
}

}  // namespace genfast
