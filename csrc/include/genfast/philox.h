// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") and the
// conversions to uniform and normal floats that every genfast backend uses. The exact mapping
// is specified, in PyTorch integer arithmetic, in genfast/reference/random.py:
//
//   key     = (seed mod 2^32, (seed >> 32) mod 2^32)        seed as an unsigned 64-bit integer
//   counter = (p mod 2^32, (p >> 32) mod 2^32, 0, 0)        p = offset + i, element i of a draw
//   (x0, x1, x2, x3) = Philox4x32_10(counter, key)
//   uniform u  = (x0 >> 8) * 2^-24                           in [0, 1)
//   normal  z  = sqrt(-2 log(u1)) * cos(2 pi u2)             Box-Muller, first output
//                u1 = ((x0 >> 8) + 1) * 2^-24 in (0, 1],  u2 = (x1 >> 8) * 2^-24 in [0, 1)
//
// log and cos are evaluated by the short polynomials below (within 2 ulp of the correctly
// rounded functions over the inputs that occur) so that GCC vectorises them on the CPU and the
// CUDA kernel computes bit-identical numbers.
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

// The two 32-bit words a draw needs, for counter position p (64-bit) under key `seed`.
GF_HD void philox_words(uint64_t seed, uint64_t p, uint32_t& x0, uint32_t& x1) {
  Philox4 r = philox4x32_10(static_cast<uint32_t>(p), static_cast<uint32_t>(p >> 32), 0u, 0u,
                            static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  x0 = r.x0;
  x1 = r.x1;
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

// cos(2 pi u) for u in [0, 1): reduce to r in [-1/2, 1/2), then by quarter turns q to
// f in [-1/8, 1/8]; x = 2 pi f in [-pi/4, pi/4] where the Taylor series to x^8 are exact to
// 3e-8. All reductions are exact in float32.
GF_HD float poly_cos_2pi(float u) {
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
  float v = (q & 1) ? s : c;
  bool neg = (q == 1) || (q == 2);
  return neg ? -v : v;
}

GF_HD float normal_from_bits(uint32_t x0, uint32_t x1) {
  float u1 = static_cast<float>((x0 >> 8) + 1u) * 5.9604644775390625e-8f;
  float u2 = static_cast<float>(x1 >> 8) * 5.9604644775390625e-8f;
  return sqrtf(-2.0f * poly_log(u1)) * poly_cos_2pi(u2);
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

GF_HD float philox_normal(uint64_t seed, uint64_t p) {
  uint32_t x0, x1;
  philox_words(seed, p, x0, x1);
  return normal_from_bits(x0, x1);
}

GF_HD float philox_uniform(uint64_t seed, uint64_t p) {
  uint32_t x0, x1;
  philox_words(seed, p, x0, x1);
  return uniform_from_bits(x0);
}

}  // namespace genfast
