// Rows of 16 values between a tensor of any kernel dtype and float32, for the CPU kernels: the
// fp16 / bf16 conversions of common.h (f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16) in
// AVX-512 integer vector operations, bit for bit the same values (NaN payloads, subnormals, ties
// to even; the one float multiply of each subnormal path is the scalar one's, so MXCSR's
// flush-to-zero flags act on both alike). The F16C instructions (vcvtph2ps / vcvtps2ph) would not
// do: they keep NaN payloads where the scalar code writes a canonical NaN. Without AVX-512 the
// scalar conversions run.
#pragma once
#include <cstring>
#include <type_traits>

#include "genfast/common.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace genfast {

constexpr int kSimd16 = 16;  // values per row

#if defined(__AVX512F__)
inline __m512 f16x16_to_f32(__m256i h) {
  const __m512i x = _mm512_cvtepu16_epi32(h);
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x8000)), 16);
  const __m512i exp = _mm512_and_si512(_mm512_srli_epi32(x, 10), _mm512_set1_epi32(0x1f));
  const __m512i man13 = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x3ff)), 13);
  __m512i r = _mm512_or_si512(_mm512_slli_epi32(_mm512_add_epi32(exp, _mm512_set1_epi32(112)), 23), man13);
  r = _mm512_mask_or_epi32(r, _mm512_cmpeq_epi32_mask(exp, _mm512_set1_epi32(0x1f)), man13,
                           _mm512_set1_epi32(0x7f800000));
  const __mmask16 sub = _mm512_cmpeq_epi32_mask(exp, _mm512_setzero_si512());
  if (sub) {  // man * 2^-24, exact; the sign is or-ed in below (the scalar code's -v)
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(man13, 13)),
                                   _mm512_set1_ps(5.9604644775390625e-8f));
    r = _mm512_mask_mov_epi32(r, sub, _mm512_castps_si512(v));
  }
  return _mm512_castsi512_ps(_mm512_or_si512(r, sign));
}

inline __m512 bf16x16_to_f32(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline __m256i f32x16_to_f16(__m512 xf) {
  const __m512i u = _mm512_castps_si512(xf);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000));
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 13), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(
      _mm512_sub_epi32(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0xfff)), odd),
                       _mm512_set1_epi32(0x38000000)),
      13);
  const __mmask16 sub = _mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(0x38800000));
  if (sub) {  // a * 2^24 rounded to an integer, ties to even, as the scalar code does it
    const __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(16777216.0f));
    __m512i iv = _mm512_cvttps_epi32(v);
    const __m512 frac = _mm512_sub_ps(v, _mm512_cvtepi32_ps(iv));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GT_OQ) |
                         (_mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_EQ_OQ) &
                          _mm512_test_epi32_mask(iv, _mm512_set1_epi32(1)));
    iv = _mm512_mask_add_epi32(iv, up, iv, _mm512_set1_epi32(1));
    r = _mm512_mask_mov_epi32(r, sub, iv);
  }
  r = _mm512_mask_mov_epi32(r, _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x477ff000)),
                            _mm512_set1_epi32(0x7c00));  // rounds to inf
  r = _mm512_mask_mov_epi32(r, _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000)),
                            _mm512_set1_epi32(0x7e00));  // NaN
  return _mm512_cvtepi32_epi16(_mm512_or_si512(r, sign));
}

inline __m256i f32x16_to_bf16(__m512 xf) {
  const __m512i u = _mm512_castps_si512(xf);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x0040));
  return _mm512_cvtepi32_epi16(r);
}
#endif

// x[l] = src[l] in fp32 for l < m, 0 for m <= l < 16. The full row is a fixed-size loop (vector
// moves): a variable-length one becomes a memcpy call per row.
template <typename T>
inline void load16(float* x, const T* src, int m) {
  if (m == kSimd16) {
    if constexpr (std::is_same<T, float>::value) {
      // one 64-byte copy: GCC assembled the 16 scalar loads below with vinsertps, 9x slower
      std::memcpy(x, src, sizeof(float) * kSimd16);
      return;
    }
#if defined(__AVX512F__)
    if constexpr (std::is_same<T, half_t>::value) {
      _mm512_storeu_ps(x, f16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
      return;
    }
    if constexpr (std::is_same<T, bf16_t>::value) {
      _mm512_storeu_ps(x, bf16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
      return;
    }
#endif
    for (int l = 0; l < kSimd16; ++l) x[l] = load_f32<T>(src, l);
  } else {
    for (int l = 0; l < kSimd16; ++l) x[l] = l < m ? load_f32<T>(src, l) : 0.0f;
  }
}

// dst[l] = x[l] in T for l < m.
template <typename T>
inline void store16(T* dst, const float* x, int m) {
  if (m == kSimd16) {
#if defined(__AVX512F__)
    if constexpr (std::is_same<T, half_t>::value) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), f32x16_to_f16(_mm512_loadu_ps(x)));
      return;
    }
    if constexpr (std::is_same<T, bf16_t>::value) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), f32x16_to_bf16(_mm512_loadu_ps(x)));
      return;
    }
#endif
    for (int l = 0; l < kSimd16; ++l) store_f32<T>(dst, l, x[l]);
  } else {
    for (int l = 0; l < m; ++l) store_f32<T>(dst, l, x[l]);
  }
}

}  // namespace genfast
