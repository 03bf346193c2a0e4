// The two inner loops of the CPU Gibbs kernel's products state[R, K] @ M[K, N], M packed in
// panels of kNR = 16 columns (csrc/gibbs/packed_weight.h): the dense FMA micro-kernel for real
// states, and the gather of panel rows for binary states (csrc/gibbs/binary_operand.h). Private to
// csrc/gibbs_cpu.cpp; design and sweeps: docs/kernels/gibbs.md.
#pragma once
#include <math.h>

#include <cstdint>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "genfast/simd16.h"

namespace genfast {
namespace {

// Dense micro-tile, 6 rows x 16 columns (12 ymm accumulators): zmm tiles of 8-14 rows were no
// faster on Zen 4, whose AVX-512 FMAs issue at the AVX2 rate.
constexpr int kMR = 6;
constexpr int kNR = kSimd16;
// K block of the dense product: a 16-column panel of kc <= 256 rows (16 KiB) stays in L1.
constexpr int64_t kKC = 256;

// C[6, 16] (row stride ldc) = (accumulate ? C : 0) + A[kc, 6]^T-packed x Bp[kc, 16]-packed.
inline void micro_kernel(int64_t kc, const float* __restrict__ A, const float* __restrict__ Bp,
                         float* __restrict__ C, int64_t ldc, bool accumulate) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 c[kMR][2];
  for (int r = 0; r < kMR; ++r) {
    c[r][0] = accumulate ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
    c[r][1] = accumulate ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(Bp + p * kNR);
    const __m256 b1 = _mm256_loadu_ps(Bp + p * kNR + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + p * kMR + r);
      c[r][0] = _mm256_fmadd_ps(a, b0, c[r][0]);
      c[r][1] = _mm256_fmadd_ps(a, b1, c[r][1]);
    }
  }
  for (int r = 0; r < kMR; ++r) {
    _mm256_storeu_ps(C + r * ldc, c[r][0]);
    _mm256_storeu_ps(C + r * ldc + 8, c[r][1]);
  }
#else
  float c[kMR][kNR];
  for (int r = 0; r < kMR; ++r)
    for (int l = 0; l < kNR; ++l) c[r][l] = accumulate ? C[r * ldc + l] : 0.0f;
  for (int64_t p = 0; p < kc; ++p)
    for (int r = 0; r < kMR; ++r)
      for (int l = 0; l < kNR; ++l) c[r][l] = fmaf(A[p * kMR + r], Bp[p * kNR + l], c[r][l]);
  for (int r = 0; r < kMR; ++r)
    for (int l = 0; l < kNR; ++l) C[r * ldc + l] = c[r][l];
#endif
}

// out[16] = (accumulate ? out : 0) + sum over t < n of Mp[off[t] .. off[t] + 16): the 16-column
// strip of state @ M for one chain whose active units sit at float offsets off[] of the panel.
// Several independent accumulators hide the add latency (3 cycles on Zen 4); their order of
// combination is fixed, so a chain's sums never depend on the thread that computes them (they can
// on the other chains of its task, through the choice of form, see BinaryOperand).
inline void gather_strip(const float* __restrict__ Mp, const uint32_t* __restrict__ off, int64_t n,
                         float* __restrict__ out, bool accumulate) {
#if defined(__AVX512F__)
  __m512 a0 = accumulate ? _mm512_loadu_ps(out) : _mm512_setzero_ps();
  __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(Mp + off[t]));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(Mp + off[t + 1]));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(Mp + off[t + 2]));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(Mp + off[t + 3]));
  }
  for (; t < n; ++t) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(Mp + off[t]));
  _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
  __m256 a0 = accumulate ? _mm256_loadu_ps(out) : _mm256_setzero_ps();
  __m256 b0 = accumulate ? _mm256_loadu_ps(out + 8) : _mm256_setzero_ps();
  __m256 a1 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
  __m256 a3 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const float* p0 = Mp + off[t];
    const float* p1 = Mp + off[t + 1];
    const float* p2 = Mp + off[t + 2];
    const float* p3 = Mp + off[t + 3];
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p0));
    b0 = _mm256_add_ps(b0, _mm256_loadu_ps(p0 + 8));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p1));
    b1 = _mm256_add_ps(b1, _mm256_loadu_ps(p1 + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p2));
    b2 = _mm256_add_ps(b2, _mm256_loadu_ps(p2 + 8));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p3));
    b3 = _mm256_add_ps(b3, _mm256_loadu_ps(p3 + 8));
  }
  for (; t < n; ++t) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(Mp + off[t]));
    b0 = _mm256_add_ps(b0, _mm256_loadu_ps(Mp + off[t] + 8));
  }
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  _mm256_storeu_ps(out + 8, _mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
#else
  float a[4][kNR];
  for (int l = 0; l < kNR; ++l) {
    a[0][l] = accumulate ? out[l] : 0.0f;
    a[1][l] = a[2][l] = a[3][l] = 0.0f;
  }
  int64_t t = 0;
  for (; t + 4 <= n; t += 4)
    for (int q = 0; q < 4; ++q)
      for (int l = 0; l < kNR; ++l) a[q][l] += Mp[off[t + q] + l];
  for (; t < n; ++t)
    for (int l = 0; l < kNR; ++l) a[0][l] += Mp[off[t] + l];
  for (int l = 0; l < kNR; ++l) out[l] = (a[0][l] + a[1][l]) + (a[2][l] + a[3][l]);
#endif
}

}  // namespace
}  // namespace genfast
