// The counter-based numbers of csrc/include/genfast/philox.h in vectorised blocks for the CPU:
// Philox4x32-10 for many counters at once (hand-written AVX-512 / AVX2: GCC's auto-vectorisation
// of the 32x32->64-bit products widens to 64-bit lanes, 2.6x slower), then the four numbers of
// each counter (Box-Muller on both word pairs, cosine and sine sharing the log and sqrt,
// GCC-vectorised), interleaved into stream order. Same numbers as philox_normal4 /
// philox_uniform4. Measurements: docs/kernels/random.md.
//
//   philox4_block<kNormal, NC>(seed, c, out)   out[4 l + w] = number 4 (c + l) + w, l < NC
//   PhiloxStream<kNormal>                      consecutive numbers from any position, in
//                                              refills of kStreamCounters counters
//   normal_block16 / uniform_block16           16 numbers from any position p0 (a fallback
//                                              for callers that cannot keep a stream)
#pragma once
#include <algorithm>

#include "genfast/philox.h"
#if defined(__AVX2__) || defined(__AVX512F__)
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

// The vector operations of the Philox rounds (philox4_vectors) in one instruction set: 8 lanes of
// AVX2 here, 16 of AVX-512 below. multiplier(m) is the operand mulhilo takes.
struct PhiloxLanes8 {
  using V = __m256i;
  static constexpr int kLanes = 8;
  static V load(const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store(uint32_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static V zero() { return _mm256_setzero_si256(); }
  static V set1(uint32_t k) { return _mm256_set1_epi32(static_cast<int>(k)); }
  static V multiplier(uint32_t m) { return _mm256_set1_epi32(static_cast<int>(m)); }
  static void mulhilo(V c, V m, V& hi, V& lo) { mulhilo8(c, m, hi, lo); }
  static V xor3(V a, V b, V c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
};
#endif

#if defined(__AVX512F__)
// Both halves of each 32 x 32 product from the two vpmuludq by masked in-lane shuffles, with no
// vpmulld: faster than shifts and masked moves, vpermt2d, or two 8-lane AVX2 chains.
inline void mulhilo16(__m512i c, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i e = _mm512_mul_epu32(c, m);                         // lanes 2t: 64-bit products
  const __m512i o = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);  // lanes 2t + 1
  hi = _mm512_mask_shuffle_epi32(o, 0x5555, e, _MM_PERM_DDBB);     // even lanes <- high dword of e
  lo = _mm512_mask_shuffle_epi32(e, 0xAAAA, o, _MM_PERM_CCAA);     // odd lanes <- low dword of o
}

struct PhiloxLanes16 {
  using V = __m512i;
  static constexpr int kLanes = 16;
  static V load(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static void store(uint32_t* p, V v) { _mm512_storeu_si512(p, v); }
  static V zero() { return _mm512_setzero_si512(); }
  static V set1(uint32_t k) { return _mm512_set1_epi32(static_cast<int>(k)); }
  static V multiplier(uint32_t m) { return _mm512_set1_epi64(m); }
  static void mulhilo(V c, V m, V& hi, V& lo) { mulhilo16(c, m, hi, lo); }
  static V xor3(V a, V b, V c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }  // three-way xor
};
#endif

#if defined(__AVX2__)
// philox4_lanes in vectors of L::kLanes lanes (L: PhiloxLanes8 or PhiloxLanes16): the rounds are
// a serial dependency chain per vector, so the NC / L::kLanes independent chains run interleaved.
template <typename L, int NC>
inline void philox4_vectors(uint32_t key0, uint32_t key1, const uint32_t* lo, const uint32_t* hi,
                            uint32_t (*x)[NC]) {
  using V = typename L::V;
  constexpr int G = NC / L::kLanes;
  const V m0 = L::multiplier(kPhiloxM0);
  const V m1 = L::multiplier(kPhiloxM1);
  V c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    c0[g] = L::load(lo + L::kLanes * g);
    c1[g] = L::load(hi + L::kLanes * g);
    c2[g] = L::zero();
    c3[g] = L::zero();
  }
  uint32_t k0 = key0, k1 = key1;
  for (int r = 0; r < 10; ++r) {
    const V kv0 = L::set1(k0);
    const V kv1 = L::set1(k1);
    for (int g = 0; g < G; ++g) {
      V hi0, lo0, hi1, lo1;
      L::mulhilo(c0[g], m0, hi0, lo0);
      L::mulhilo(c2[g], m1, hi1, lo1);
      c0[g] = L::xor3(hi1, c1[g], kv0);
      c1[g] = lo1;
      c2[g] = L::xor3(hi0, c3[g], kv1);
      c3[g] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int g = 0; g < G; ++g) {
    L::store(x[0] + L::kLanes * g, c0[g]);
    L::store(x[1] + L::kLanes * g, c1[g]);
    L::store(x[2] + L::kLanes * g, c2[g]);
    L::store(x[3] + L::kLanes * g, c3[g]);
  }
}
#endif

// x[w][l] = word w of Philox4x32-10 at the counter whose low and high 32-bit words are lo[l] and
// hi[l], for l < NC (a multiple of 8): in 16-lane AVX-512 vectors where NC allows, else in 8-lane
// AVX2 vectors, else one counter at a time.
template <int NC>
inline void philox4_lanes(uint64_t seed, const uint32_t* lo, const uint32_t* hi, uint32_t (*x)[NC]) {
  static_assert(NC % 8 == 0, "lanes come in multiples of 8");
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
#if defined(__AVX512F__)
  if constexpr (NC % 16 == 0) {
    philox4_vectors<PhiloxLanes16, NC>(key0, key1, lo, hi, x);
    return;
  }
#endif
#if defined(__AVX2__)
  philox4_vectors<PhiloxLanes8, NC>(key0, key1, lo, hi, x);
#else
  for (int l = 0; l < NC; ++l) {
    const Philox4 r = philox4x32_10(lo[l], hi[l], 0u, 0u, key0, key1);
    x[0][l] = r.x0;
    x[1][l] = r.x1;
    x[2][l] = r.x2;
    x[3][l] = r.x3;
  }
#endif
}

// The counters c + l (mod 2^62, the range of j >> 2), l < NC, as low and high words.
template <int NC>
inline void counter_words(uint64_t c, uint32_t* lo, uint32_t* hi) {
  for (int l = 0; l < NC; ++l) {
    const uint64_t cl = c + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(cl);
    hi[l] = static_cast<uint32_t>(cl >> 32) & 0x3fffffffu;
  }
}

// out[4 l + w] = w-th of a[l], b[l], c[l], d[l] for l < NC (a multiple of 8): four columns into
// stream order, by in-lane unpacks and 128-bit lane shuffles (a 4 x 4 transpose per 4 rows).
template <int NC>
inline void interleave4(const float* a, const float* b, const float* c, const float* d, float* out) {
  int l = 0;
#if defined(__AVX512F__)  // fills 10-15% faster than with the AVX2 loop alone (docs/kernels/random.md)
  for (; l + 16 <= NC; l += 16) {
    const __m512 A = _mm512_loadu_ps(a + l), B = _mm512_loadu_ps(b + l);
    const __m512 C = _mm512_loadu_ps(c + l), D = _mm512_loadu_ps(d + l);
    // per 128-bit lane q (rows 4q .. 4q + 3): ab_lo = a0 b0 a1 b1, ab_hi = a2 b2 a3 b3, ...
    const __m512d ab_lo = _mm512_castps_pd(_mm512_unpacklo_ps(A, B));
    const __m512d ab_hi = _mm512_castps_pd(_mm512_unpackhi_ps(A, B));
    const __m512d cd_lo = _mm512_castps_pd(_mm512_unpacklo_ps(C, D));
    const __m512d cd_hi = _mm512_castps_pd(_mm512_unpackhi_ps(C, D));
    // r_k lane q = row 4q + k: a b c d
    const __m512 r0 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_lo, cd_lo));
    const __m512 r1 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_lo, cd_lo));
    const __m512 r2 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_hi, cd_hi));
    const __m512 r3 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_hi, cd_hi));
    // output q = (r0, r1, r2, r3) lane q: a 4 x 4 transpose of 128-bit lanes
    const __m512 t0 = _mm512_shuffle_f32x4(r0, r1, 0x44);  // r0.0 r0.1 r1.0 r1.1
    const __m512 t1 = _mm512_shuffle_f32x4(r0, r1, 0xEE);  // r0.2 r0.3 r1.2 r1.3
    const __m512 t2 = _mm512_shuffle_f32x4(r2, r3, 0x44);
    const __m512 t3 = _mm512_shuffle_f32x4(r2, r3, 0xEE);
    _mm512_storeu_ps(out + 4 * l, _mm512_shuffle_f32x4(t0, t2, 0x88));
    _mm512_storeu_ps(out + 4 * l + 16, _mm512_shuffle_f32x4(t0, t2, 0xDD));
    _mm512_storeu_ps(out + 4 * l + 32, _mm512_shuffle_f32x4(t1, t3, 0x88));
    _mm512_storeu_ps(out + 4 * l + 48, _mm512_shuffle_f32x4(t1, t3, 0xDD));
  }
#endif
#if defined(__AVX2__)
  for (; l + 8 <= NC; l += 8) {
    const __m256 A = _mm256_loadu_ps(a + l), B = _mm256_loadu_ps(b + l);
    const __m256 C = _mm256_loadu_ps(c + l), D = _mm256_loadu_ps(d + l);
    const __m256d ab_lo = _mm256_castps_pd(_mm256_unpacklo_ps(A, B));
    const __m256d ab_hi = _mm256_castps_pd(_mm256_unpackhi_ps(A, B));
    const __m256d cd_lo = _mm256_castps_pd(_mm256_unpacklo_ps(C, D));
    const __m256d cd_hi = _mm256_castps_pd(_mm256_unpackhi_ps(C, D));
    const __m256 r0 = _mm256_castpd_ps(_mm256_unpacklo_pd(ab_lo, cd_lo));  // rows 0 | 4
    const __m256 r1 = _mm256_castpd_ps(_mm256_unpackhi_pd(ab_lo, cd_lo));  // rows 1 | 5
    const __m256 r2 = _mm256_castpd_ps(_mm256_unpacklo_pd(ab_hi, cd_hi));  // rows 2 | 6
    const __m256 r3 = _mm256_castpd_ps(_mm256_unpackhi_pd(ab_hi, cd_hi));  // rows 3 | 7
    _mm256_storeu_ps(out + 4 * l, _mm256_permute2f128_ps(r0, r1, 0x20));
    _mm256_storeu_ps(out + 4 * l + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
    _mm256_storeu_ps(out + 4 * l + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
    _mm256_storeu_ps(out + 4 * l + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
  }
#endif
  for (; l < NC; ++l) {
    out[4 * l] = a[l];
    out[4 * l + 1] = b[l];
    out[4 * l + 2] = c[l];
    out[4 * l + 3] = d[l];
  }
}

// out[4 l + w] = the number of word w of x[.][l]: normals by Box-Muller on the pairs (x0, x1)
// and (x2, x3), or uniforms. Every loop is over the NC lanes, so GCC vectorises the polynomials.
template <bool kNormal, int NC>
inline void numbers_from_words(const uint32_t (*x)[NC], float* out) {
  alignas(64) float v[4][NC];
  if (kNormal) {
    for (int h = 0; h < 2; ++h) {
#pragma GCC ivdep
      for (int l = 0; l < NC; ++l) normal_pair_from_bits(x[2 * h][l], x[2 * h + 1][l], v[2 * h][l], v[2 * h + 1][l]);
    }
  } else {
    for (int w = 0; w < 4; ++w) {
#pragma GCC ivdep
      for (int l = 0; l < NC; ++l) v[w][l] = uniform_from_bits(x[w][l]);
    }
  }
  interleave4<NC>(v[0], v[1], v[2], v[3], out);
}

// out[4 l + w] = number 4 (c + l) + w of the stream (c < 2^62), l < NC: the 4 NC numbers of
// NC consecutive counters.
template <bool kNormal, int NC>
inline void philox4_block(uint64_t seed, uint64_t c, float* out) {
  alignas(64) uint32_t lo[NC], hi[NC];
  alignas(64) uint32_t x[4][NC];
  counter_words<NC>(c, lo, hi);
  philox4_lanes<NC>(seed, lo, hi, x);
  numbers_from_words<kNormal, NC>(x, out);
}

// Counters per refill of a PhiloxStream: 32 (128 numbers) gives AVX-512 two independent chains
// and AVX2 four, and keeps the buffer (512 bytes) in L1.
constexpr int kStreamCounters = 32;

// Consecutive numbers of one stream (normals or uncapped uniforms) from any position, 4 x
// kStreamCounters at a time: a kernel whose consecutive blocks read consecutive positions pays
// one Philox call per four numbers, whatever the alignment of its first position. A request
// that does not fit in the current refill starts a new one at its own first counter (at most 3
// numbers of the old one are computed again), so requests are never split: one pointer, no copy
// (up to 20% faster than splitting requests over two refills and copying them out).
template <bool kNormal>
class PhiloxStream {
 public:
  static constexpr int kNumbers = 4 * kStreamCounters;

  explicit PhiloxStream(uint64_t seed) : seed_(seed) {}

  // A pointer to numbers p .. p + m - 1 (mod 2^64) of the stream, m <= kNumbers - 3, valid
  // until the next call.
  inline const float* numbers(uint64_t p, int m) {
    uint64_t d = p - base_;
    if (!filled_ || d > static_cast<uint64_t>(kNumbers - m)) {
      base_ = p & ~uint64_t{3};
      filled_ = true;
      philox4_block<kNormal, kStreamCounters>(seed_, base_ >> 2, buf_);
      d = p & 3u;
    }
    return buf_ + d;
  }

 private:
  uint64_t seed_;
  uint64_t base_ = 0;  // position of buf_[0], a multiple of 4
  bool filled_ = false;
  alignas(64) float buf_[kNumbers];
};

// out[k] = number p0 + k of the stream, k < 16, from any p0: the 4 or 5 counters that hold
// them, computed in one 8-counter block. A stream (PhiloxStream) is cheaper for runs of blocks.
template <bool kNormal>
inline void numbers_block16(uint64_t seed, uint64_t p0, float* out) {
  alignas(64) float buf[32];
  philox4_block<kNormal, 8>(seed, p0 >> 2, buf);
  const int s = static_cast<int>(p0 & 3u);
  for (int k = 0; k < kPhiloxBlock; ++k) out[k] = buf[s + k];
}

// out[k] = standard normal number p0 + k, k < 16.
inline void normal_block16(uint64_t seed, uint64_t p0, float* out) { numbers_block16<true>(seed, p0, out); }

// out[k] = uniform number p0 + k (uncapped), k < 16.
inline void uniform_block16(uint64_t seed, uint64_t p0, float* out) { numbers_block16<false>(seed, p0, out); }

}  // namespace genfast
