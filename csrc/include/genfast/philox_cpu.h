// Philox4x32-10 for 16 consecutive counters at once on the CPU. With AVX2, hand-written:
// GCC's auto-vectorisation of the 32x32->64-bit products widens to 64-bit lanes and measured
// 6.4 ns per element here (EPYC, one thread); this version, two independent 8-lane chains for
// instruction-level parallelism, 2.5 ns. One chain: 2.9 ns; four chains: 2.0-2.5 ns but slower
// once the normal conversion is added (register spills). Same numbers as philox4x32_10().
#pragma once
#include "genfast/philox.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace genfast {

constexpr int kPhiloxBlock = 16;

#if defined(__AVX2__)
inline void mulhilo8(__m256i c, __m256i m, __m256i& hi, __m256i& lo) {
  __m256i e = _mm256_mul_epu32(c, m);
  __m256i o = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xAA);
  lo = _mm256_mullo_epi32(c, m);
}
#endif

// x0[k], x1[k] = the first two Philox words for counter position p0 + k, k < 16.
inline void philox_block16(uint64_t seed, uint64_t p0, uint32_t* x0, uint32_t* x1) {
#if defined(__AVX2__)
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  __m256i c0[2], c1[2], c2[2], c3[2];
  for (int h = 0; h < 2; ++h) {
    uint64_t p = p0 + 8u * h;
    __m256i base = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(p)));
    c0[h] = _mm256_add_epi32(base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    // the low word wrapped past 2^32 in these lanes: carry one into the high word
    __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0[h], sign));
    c1[h] = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(p >> 32))), wrapped);
    c2[h] = _mm256_setzero_si256();
    c3[h] = _mm256_setzero_si256();
  }
  for (int r = 0; r < 10; ++r) {
    const __m256i kv0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i kv1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int h = 0; h < 2; ++h) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(c0[h], m0, hi0, lo0);
      mulhilo8(c2[h], m1, hi1, lo1);
      c0[h] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[h]), kv0);
      c1[h] = lo1;
      c2[h] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[h]), kv1);
      c3[h] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x0 + 8 * h), c0[h]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x1 + 8 * h), c1[h]);
  }
#else
  for (int k = 0; k < kPhiloxBlock; ++k) philox_words(seed, p0 + static_cast<uint64_t>(k), x0[k], x1[k]);
#endif
}

// out[k] = standard normal for counter position p0 + k, k < 16.
inline void normal_block16(uint64_t seed, uint64_t p0, float* out) {
  alignas(32) uint32_t x0[kPhiloxBlock], x1[kPhiloxBlock];
  philox_block16(seed, p0, x0, x1);
#pragma GCC ivdep
  for (int k = 0; k < kPhiloxBlock; ++k) out[k] = normal_from_bits(x0[k], x1[k]);
}

inline void uniform_block16(uint64_t seed, uint64_t p0, float* out) {
  alignas(32) uint32_t x0[kPhiloxBlock], x1[kPhiloxBlock];
  philox_block16(seed, p0, x0, x1);
#pragma GCC ivdep
  for (int k = 0; k < kPhiloxBlock; ++k) out[k] = uniform_from_bits(x0[k]);
}

}  // namespace genfast
