// k steps of block Gibbs sampling in an RBM on the CPU, the whole chain in C++ (no Python in
// the loop). Arithmetic and counters: csrc/include/genfast/gibbs_math.h (shared with
// kernels/gibbs.cu); specification: genfast/reference/gibbs.py.
//
// Chains are independent, so each OpenMP task owns a block of chains (rows) and runs all k
// steps on them with no synchronisation. Each half-step is a product state[R, K] @ M[K, N]
// (hidden: K = V, N = H, M = W^T; visible: K = H, N = V, M = W, both packed into 16-column
// panels, and reused by the next call while W holds the same values: packed_for) followed by a
// fused epilogue (bias, sigmoid, the draws of 16 rows at once with one Philox call per four
// numbers, compare) on each finished 16-column strip.
//
// Binary states are not multiplied. A Bernoulli state is 0/1, so a row of state @ M is the sum
// of the rows of M that the state's ones select. The epilogue that draws a state records it as
// bits, and the next product reads it in one of two forms (BinaryOperand), chosen per task and
// half-step by counting the ones:
//  * a list of the active units: a 16-column strip costs one 64-byte load and add per one,
//    against one FMA per unit, zero or not, in a dense product (the loop is bound by L1 loads);
//  * 4-unit codes into per-task tables of the 16 subset sums of each group of 4 rows of M (the
//    "method of four Russians", Arlazarov et al. 1970): one load and add per 4 units whatever
//    their density, plus the tables. Lists win below ~1/3 density, codes above.
// Measured (one thread, V = 784, H = 256, B = 1000, k = 10, ~50% density, interleaved runs):
// 16.7 ms per step for the previous dense 6 x 16 FMA kernel, 8.4 with lists only, 6.9 with lists
// or codes in 48-row tasks, 6.0 in 125-row tasks (task_rows).
// h is always binary; v is binary for Bernoulli visible units after the first visible half-step,
// and for the first one when v_in holds only 0s and 1s (checked per task). Skipping the zeros is
// exact (0 * w adds +-0) as long as W is finite, which is checked once per call: a non-finite W,
// Gaussian visible states and real-valued v_in take the dense product, a cache-blocked 6 x 16 FMA
// micro-kernel (the BLIS design: Van Zee and van de Geijn 2015). The forms sum in different
// orders, which the reference's comparison rule allows (float rounding, genfast/reference/gibbs.py).
#include <pybind11/pybind11.h>

#include <math.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "genfast/gibbs_math.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace genfast {
namespace {

// Micro-tile of the dense product: 6 rows x 16 columns = 12 ymm accumulators + 2 for M + 1
// broadcast (of 16 registers), the BLIS haswell sgemm shape; the sparse forms use the same
// 16-column panels of M. zmm tiles of 8, 12 and 14 rows x 16 columns were no faster on the Zen 4
// here, whose AVX-512 FMAs issue at the AVX2 rate (Gaussian chain, H = 256, k = 10, one thread:
// 10.2 ms per step for 6 x 16 ymm, 10.3 / 10.5 / 11.4 for 8 / 12 / 14 x 16 zmm).
constexpr int kMR = 6;
constexpr int kNR = 16;
// K blocking of the dense product: a 16-column panel of M for kc <= 256 rows is 16 KiB and stays
// in L1 (32 KiB) while every micro-tile of the row block streams past it (the BLIS kc rule).
constexpr int64_t kKC = 256;
// Rows per task: ceil(B / 8) within [48, 256], a function of B only (never of the thread count,
// so that a chain's result does not depend on it: the form of a binary operand is chosen per
// task). More rows amortise the tables of the coded form over more lookups; at least 8 tasks,
// handed out dynamically, let one thread take over when the other is preempted (the 2-core
// machines are shared). Fixed-row sweep at B = 1000, H = 256, k = 10, ms per step (2 threads /
// 1 thread): 48 rows 3.57 / 6.77, 64 3.30 / 6.50, 96 3.24 / 6.34, 128 3.06 / 6.0, 168 2.97 / 5.9,
// 256 2.96 / 5.8, 500 2.88 / 5.65; then ceil(B / n) with n = 8, 6, 4, 2 tasks: 3.06 / 6.00,
// 3.01 / 5.87, 3.03 / 5.76, 2.87 / 5.64 (H = 1024, k = 4, 2 threads: 10.5, 10.6, 10.7, 10.0).
constexpr int64_t kMinTasks = 8;
constexpr int64_t kMinTaskRows = 48;
constexpr int64_t kMaxTaskRows = 256;
inline int64_t task_rows(int64_t B) {
  return std::min(kMaxTaskRows, std::max(kMinTaskRows, (B + kMinTasks - 1) / kMinTasks));
}
// Smallest call (k * B * V * H multiply-adds) worth a parallel region: a region waits at its end
// for a worker that the OS may not run for a while on the shared machines (measured: B = 64,
// V = 16, H = 10 took 8.0 ms on 2 threads against 0.044 ms on one, load average 4), and 2^24
// multiply-adds take ~0.25 ms on one thread here (6 ms per step of 4e8), so the split pays on an
// idle machine (fork/join in the tens of microseconds) and a stall costs at most a small multiple
// of the call. Not swept: set from these two measurements.
constexpr double kParallelWork = 16777216.0;
// K block of the list form (units per block): a 16-column panel block of at most kSparseKB rows
// (32 KiB at 512) is read by the R rows of a task before the next block. Swept before the coded
// form existed (speed-up over the previous dense kernel, median of interleaved runs; H = 256,
// k = 10, one thread / H = 1024, k = 4, two threads): no blocking 1.86 / 1.59, 256 units 1.86 /
// 1.70, 384 1.80 / 1.65, 512 1.96 / 1.93.
constexpr int64_t kSparseKB = 512;
// Units per table block of the coded form (BinaryOperand): 64 units = 16 groups of 16 entries,
// 16 KiB of tables per 16-column strip, in L1 with the panel block. Swept on one thread at
// V = 784, B = 1000, k = 10, ~50% density, 48-row tasks (ms per step, H = 256 / H = 1024): 32
// units 7.17 / 25.6, 48 7.28 / 25.1, 64 6.86 / 24.3, 96 7.18 / 25.1. Again with 125-row tasks
// (2 threads, H = 256 / H = 1024 at k = 4): 32 units 3.29 / 11.6, 48 3.27 / 11.6, 64 3.04 / 10.7,
// 128 3.07 / 10.9.
constexpr int64_t kTabUnits = 64;
// Cost of building one table entry, in gathered loads, in the choice between the two forms
// (codes when ones > R K / 4 + kTableCost 4 K, i.e. density > 1/4 + 4 kTableCost / R). Swept on
// one thread, H = 256, k = 10, biases shifted to set the density (ms per step for lists only /
// kTableCost 0.5 / 1 / 2): 12% 4.29 / 4.26 / 4.23 / 4.25, 27% 6.26 / 6.37 / 5.98 / 6.06, 38%
// 7.16 / 6.87 / 6.89 / 6.95, 62% 9.27 / 6.94 / 6.93 / 6.95, 82% 10.76 / 6.96 / 6.97 / 6.93.
constexpr double kTableCost = 1.0;

struct Plan {
  int64_t B, V, H, k;
  bool gaussian;
  float sigma, inv_sigma;
  uint64_t seed, offset;
};

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

// A float buffer on 64-byte boundaries: each 16-float row of a packed panel is then one cache line
// (a line-crossing 64-byte load costs two; the gather measured 1.5x slower on unaligned panels).
struct AlignedFloats {
  float* ptr = nullptr;
  size_t size = 0;
  AlignedFloats() = default;
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
  ~AlignedFloats() { std::free(ptr); }
  void reserve(size_t n) {  // at least n floats, contents unspecified
    if (n <= size) return;
    std::free(ptr);
    ptr = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
    if (!ptr) throw std::bad_alloc();
    size = n;
  }
  void assign(size_t n, float value) {
    reserve(n);
    std::fill(ptr, ptr + n, value);
  }
  float* data() { return ptr; }
  const float* data() const { return ptr; }
};

#if defined(__AVX512F__)
// 16 lanes of common.h's f16_to_f32 / f32_to_f16 / f32_to_bf16 in integer vector operations, bit for
// bit the same values (NaN payloads, subnormals, ties to even; the one float multiply of each
// subnormal path is the scalar one's, so MXCSR's flush-to-zero flags act on both alike). The F16C
// conversions (vcvtph2ps / vcvtps2ph) would not do: they keep NaN payloads where the scalar code
// writes a canonical NaN. The scalar conversions, branchy and not vectorised, took ~6 ms of a
// k = 1 float16 call (B = 1000, V = 784, H = 256, one thread: the four outputs, 2.1M values).
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

// x[l] = src[l] in fp32 for l < m, 0 for m <= l < 16; and dst[l] = x[l] for l < m. The full strip
// is a fixed-size loop (vector moves): a variable-length one becomes a memcpy call per strip.
template <typename T>
inline void load_strip(float* x, const T* src, int m) {
  if (m == kNR) {
    if constexpr (std::is_same<T, float>::value) {
      // one 64-byte copy: GCC assembled the 16 scalar loads below with vinsertps, which made the
      // scan of v_in (bits_from_states) 0.56 ms of a k = 1 call (B = 1000, V = 784, one thread;
      // 0.06 ms as a copy)
      std::memcpy(x, src, sizeof(float) * kNR);
      return;
    }
#if defined(__AVX512F__)
    if constexpr (std::is_same<T, half_t>::value) {
      _mm512_storeu_ps(x, f16x16_to_f32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
      return;
    }
    if constexpr (std::is_same<T, bf16_t>::value) {
      const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
      _mm512_storeu_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
      return;
    }
#endif
    for (int l = 0; l < kNR; ++l) x[l] = load_f32<T>(src, l);
  } else {
    for (int l = 0; l < kNR; ++l) x[l] = l < m ? load_f32<T>(src, l) : 0.0f;
  }
}
template <typename T>
inline void store_strip(T* dst, const float* x, int m) {
  if (m == kNR) {
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
    for (int l = 0; l < kNR; ++l) store_f32<T>(dst, l, x[l]);
  } else {
    for (int l = 0; l < m; ++l) store_f32<T>(dst, l, x[l]);
  }
}

// store_strip for the outputs, which nothing reads again in the call: in fp32, a strip on a
// 64-byte boundary (every strip when a row is a multiple of 64 bytes, as at V = 784, H = 256) is
// one whole cache line, written with a non-temporal store, which skips reading the line into the
// cache first. k = 1, B = 1000, V = 784, H = 256, one thread: 6.86 -> 6.23 ms per call; a consumer
// of the outputs (hp.T @ vo, vp.sum(0)) took 4.75 ms after either. Not for fp16 / bf16: a strip
// is half a line there, and the other half comes a panel later (no gain measured: 7.37 ms both,
// bf16 6.60 -> 6.81). The streaming stores are ordered by the _mm_sfence at the end of each task
// (gibbs_rows).
template <typename T>
inline void store_strip_streaming(T* dst, const float* x, int m) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    if (m == kNR && (reinterpret_cast<uintptr_t>(dst) & 63) == 0) return _mm512_stream_ps(dst, _mm512_loadu_ps(x));
  }
#endif
  store_strip(dst, x, m);
}

// W [H, V] in the two panel layouts, in fp32 (bf16 / fp16 weights widened exactly): Mh
// [ceil(H/16)][V][16] = W^T panels (hidden half-step), Mv [ceil(V/16)][H][16] = W panels (visible
// half-step), zero-padded. Packed on the calling thread: on the shared 2-core machines a parallel
// region waits at its end for a descheduled worker, and a k = 1 call measured 1.5x faster (median,
// load average 3.6) with both packs serial than with each pack in its own parallel region.
//
// The packing of the calling thread's last call is kept and reused while W holds the same values:
// CD training updates W in place between calls (same pointer, same shape, new values), and a
// tensor's version counter misses writes through `.data`, NumPy views or other native code, and a
// new tensor can reuse a freed one's address, so no key can tell that the values are unchanged.
// The values themselves can: Mv holds every widened weight at a known place, and the packed panels
// and the finiteness flag are functions of those values alone, so when every widened weight equals
// its copy in Mv bit for bit, the packing is exactly what packing W again would give. The check
// reads W and Mv once (no writes, so the worker's cached copies stay valid) and stops at the first
// difference; an in-place update usually differs in the first strip, then costs nothing more.
struct PackedWeight {
  AlignedFloats Mh, Mv;
  int64_t H = 0, V = 0;  // H = 0: nothing packed yet
  bool finite = false;
  uint64_t hits = 0, misses = 0;  // calls that reused / repacked (tests read them)
};
PackedWeight& packed_weight() {
  static thread_local PackedWeight p;
  return p;
}

// Whether Mv (packed for the same H and V) holds exactly the widened values of W, bit for bit
// (so NaNs and signed zeros count; the zero padding of the last panel is compared too, against
// the zeros that load_strip pads with). 16 rows of W at a time, so that Mv is read in 1 KiB runs
// (16 consecutive rows of one panel): 0.042 / 0.19 ms at H = 256 / 1024 (V = 784, one thread)
// against 0.053 / 0.25 row by row, where each row visits every panel.
template <typename T>
bool packed_matches(const T* W, int64_t H, int64_t V, const float* Mv) {
  const int64_t npv = (V + kNR - 1) / kNR;
  for (int64_t j0 = 0; j0 < H; j0 += kNR) {
    const int64_t j1 = std::min(H, j0 + kNR);
    uint32_t diff = 0;
    for (int64_t ip = 0; ip < npv; ++ip) {
      const int m = static_cast<int>(std::min<int64_t>(kNR, V - ip * kNR));
      for (int64_t j = j0; j < j1; ++j) {
        alignas(64) float x[kNR];
        load_strip(x, W + j * V + ip * kNR, m);
        const float* ov = Mv + (ip * H + j) * kNR;
#if defined(__AVX512F__)
        diff |= _mm512_cmpneq_epi32_mask(_mm512_castps_si512(_mm512_load_ps(x)),
                                         _mm512_castps_si512(_mm512_load_ps(ov)));
#else
        alignas(64) uint32_t a[kNR], b[kNR];
        std::memcpy(a, x, sizeof(a));
        std::memcpy(b, ov, sizeof(b));
        for (int l = 0; l < kNR; ++l) diff |= a[l] ^ b[l];
#endif
      }
    }
    if (diff) return false;
  }
  return true;
}

// Packs W into P.Mh and P.Mv, tile by tile: a 16 x 16 tile of W (16 rows of one Mh panel, 16
// columns of one Mv panel) is read once, its rows go to Mv and its columns to Mh, so both layouts
// are written in whole cache lines in order (the previous row-by-row pack wrote Mh with a stride
// of 64 bytes and zero-filled it first): 0.10 / 0.45 ms at H = 256 / 1024 (V = 784, one thread)
// against 0.20 / 0.87. Records H, V and whether every weight is finite.
template <typename T>
void pack_weight(const T* W, int64_t H, int64_t V, PackedWeight& P) {
  const int64_t nph = (H + kNR - 1) / kNR, npv = (V + kNR - 1) / kNR;
  P.Mh.reserve(static_cast<size_t>(nph * V * kNR));
  P.Mv.reserve(static_cast<size_t>(npv * H * kNR));
  float* Mh = P.Mh.data();
  float* Mv = P.Mv.data();
  // x - x is 0 for a finite x and NaN otherwise; per-lane sums keep the loop vectorised
  alignas(64) float fin[kNR] = {};
  for (int64_t jp = 0; jp < nph; ++jp) {
    const int rows = static_cast<int>(std::min<int64_t>(kNR, H - jp * kNR));
    for (int64_t ip = 0; ip < npv; ++ip) {
      const int m = static_cast<int>(std::min<int64_t>(kNR, V - ip * kNR));
      alignas(64) float t[kNR][kNR];  // t[r][l] = W[16 jp + r][16 ip + l], zero-padded
      for (int r = 0; r < kNR; ++r) {
        if (r < rows) {
          load_strip(t[r], W + (jp * kNR + r) * V + ip * kNR, m);
          float* ov = Mv + (ip * H + jp * kNR + r) * kNR;
          for (int l = 0; l < kNR; ++l) {
            ov[l] = t[r][l];
            fin[l] += t[r][l] - t[r][l];
          }
        } else {
          for (int l = 0; l < kNR; ++l) t[r][l] = 0.0f;
        }
      }
      float* oh = Mh + (jp * V + ip * kNR) * kNR;  // rows 16 ip + l of panel jp
      for (int l = 0; l < m; ++l)
        for (int r = 0; r < kNR; ++r) oh[l * kNR + r] = t[r][l];
    }
  }
  float all = 0.0f;
  for (int l = 0; l < kNR; ++l) all += fin[l];
  P.H = H;
  P.V = V;
  P.finite = all == 0.0f;
}

// The packing of W for this call: the calling thread's last one when it holds the same values.
template <typename T>
const PackedWeight& packed_for(const T* W, int64_t H, int64_t V) {
  PackedWeight& P = packed_weight();
  if (P.H == H && P.V == V && packed_matches(W, H, V, P.Mv.data())) {
    ++P.hits;
  } else {
    P.H = 0;  // not valid while packing (an exception leaves it empty)
    pack_weight(W, H, V, P);
    ++P.misses;
  }
  return P;
}

// The active units of each chain of a task, split by K block: the list of row r and block q holds
// the float offsets p * 16 (ascending) of the ones p in [q kb, (q + 1) kb) of the state, offsets
// into a [K][16] panel. 16 slots of slack per list let a 16-lane compress store run past its end.
struct ActiveLists {
  std::vector<uint32_t> off;  // [R][nkb][kb + 16]
  std::vector<int64_t> cnt;   // [R][nkb]
  int64_t kb = 0, nkb = 0;
  void reset(int64_t R, int64_t K) {
    nkb = (K + kSparseKB - 1) / kSparseKB;
    kb = ((K + nkb - 1) / nkb + kNR - 1) / kNR * kNR;  // balanced blocks, whole 16-unit strips
    const int64_t need = R * nkb * (kb + kNR);
    if (static_cast<int64_t>(off.size()) < need) off.resize(static_cast<size_t>(need));
    cnt.assign(static_cast<size_t>(R * nkb), 0);
  }
  uint32_t* list(int64_t r, int64_t q) { return off.data() + (r * nkb + q) * (kb + kNR); }
};

// Appends the units n0 + l (n0 a multiple of 16, in K block q) whose bit l of `on` is set to row
// r's list of block q.
inline void append_active(ActiveLists& L, int64_t r, int64_t q, int64_t n0, uint32_t on) {
  int64_t& cnt = L.cnt[r * L.nkb + q];
  uint32_t* dst = L.list(r, q) + cnt;
#if defined(__AVX512F__)
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i offs = _mm512_slli_epi32(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(n0)), lane), 4);
  // compress in a register, then a plain store (a compress straight to memory is reported to be
  // microcoded and slow on Zen 4; not measured here)
  _mm512_storeu_si512(dst, _mm512_maskz_compress_epi32(static_cast<__mmask16>(on), offs));
  cnt += __builtin_popcount(on);
#else
  int64_t c = 0;
  for (int l = 0; l < kNR; ++l) {
    dst[c] = static_cast<uint32_t>((n0 + l) * kNR);
    c += (on >> l) & 1u;
  }
  cnt += c;
#endif
}

// Bit l set where s[l] (a 0/1 sample) is 1, l < 16.
inline uint32_t ones_mask(const float* s) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(s), _mm512_set1_ps(0.5f), _CMP_GT_OQ);
#elif defined(__AVX2__)
  const __m256 half = _mm256_set1_ps(0.5f);
  const int lo = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), half, _CMP_GT_OQ));
  const int hi = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 8), half, _CMP_GT_OQ));
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 8);
#else
  uint32_t on = 0;
  for (int l = 0; l < kNR; ++l) on |= static_cast<uint32_t>(s[l] > 0.5f) << l;
  return on;
#endif
}

// A binary operand of the sparse product: the states of the R chains of a task over K units, as
// drawn (bits: bit l of strip s of row r is unit 16 s + l), and in the form the product reads,
// chosen per task and half-step from the number of ones:
//  * active lists (ActiveLists): a 16-column strip of state @ M costs one load and add per one;
//  * 4-unit codes: the strip is a sum over the K/4 groups of 4 units of a table entry
//    T[g][code] = sum of the rows of M that the group's code selects (the "method of four
//    Russians"), one load and add per group whatever the density, plus the tables, 16 entries
//    per group and strip, built per task. Codes are offsets (g' 16 + code) 16 into the table of
//    the K block of kTabUnits units that holds group g (g' = g within the block).
struct BinaryOperand {
  std::vector<uint16_t> bits;  // [R][ns]
  int64_t K = 0, ns = 0, ng = 0;
  bool coded = false;
  ActiveLists lists;
  std::vector<uint32_t> codes;  // [R][ng]
  void reset(int64_t R, int64_t units) {
    K = units;
    ns = (K + kNR - 1) / kNR;
    ng = (K + 3) / 4;
    bits.assign(static_cast<size_t>(R * ns), 0);
  }
  // Builds the form the next product reads: codes when the ones outnumber the lookups plus the
  // table entries (cost model in loads: ones, against R ng + kTableCost 16 ng), else lists.
  void prepare(int64_t R) {
    int64_t ones = 0;
    for (uint16_t w : bits) ones += __builtin_popcount(w);
    const double lookups = static_cast<double>(R * ng), entries = 16.0 * static_cast<double>(ng);
    coded = static_cast<double>(ones) > lookups + kTableCost * entries;
    if (coded) {
      if (static_cast<int64_t>(codes.size()) < R * ng) codes.resize(static_cast<size_t>(R * ng));
      constexpr int64_t gpb = kTabUnits / 4;  // groups per table block
      for (int64_t r = 0; r < R; ++r) {
        uint32_t* cr = codes.data() + r * ng;
        const uint16_t* br = bits.data() + r * ns;
        for (int64_t st = 0; st < ns; ++st) {
          const uint32_t w = br[st];
          for (int64_t i = 0; i < 4 && 4 * st + i < ng; ++i) {
            const int64_t g = 4 * st + i;
            cr[g] = static_cast<uint32_t>(((g % gpb) * 16 + ((w >> (4 * i)) & 15u)) * kNR);
          }
        }
      }
    } else {
      lists.reset(R, K);
      for (int64_t r = 0; r < R; ++r) {
        const uint16_t* br = bits.data() + r * ns;
        int64_t q = 0;
        for (int64_t st = 0; st < ns; ++st) {
          if (st * kNR >= (q + 1) * lists.kb) ++q;
          append_active(lists, r, q, st * kNR, br[st]);
        }
      }
    }
  }
};

// T[g'][c][16] = sum over the bits b of c of Mb[(4 g' + b) 16 .. + 16): the tables of the groups of
// one K block of a [K][16] panel, Mb its first row, `rows` (<= kTabUnits) its rows.
inline void build_tables(const float* __restrict__ Mb, int64_t rows, float* __restrict__ T) {
  const int64_t groups = (rows + 3) / 4;
  alignas(64) static const float kZero[kNR] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const float* r[4];
    for (int b = 0; b < 4; ++b) r[b] = 4 * g + b < rows ? Mb + (4 * g + b) * kNR : kZero;
    float* Tg = T + g * 16 * kNR;
#if defined(__AVX512F__)
    const __m512 r0 = _mm512_load_ps(r[0]), r1 = _mm512_load_ps(r[1]);
    const __m512 r2 = _mm512_load_ps(r[2]), r3 = _mm512_load_ps(r[3]);
    const __m512 lo[4] = {_mm512_setzero_ps(), r0, r1, _mm512_add_ps(r0, r1)};  // codes 0-3
    const __m512 hi[4] = {_mm512_setzero_ps(), r2, r3, _mm512_add_ps(r2, r3)};  // codes 0, 4, 8, 12
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c) _mm512_store_ps(Tg + (4 * h + c) * kNR, _mm512_add_ps(hi[h], lo[c]));
#else
    alignas(64) float lo[4][kNR], hi[4][kNR];
    for (int l = 0; l < kNR; ++l) {
      lo[0][l] = 0.0f, lo[1][l] = r[0][l], lo[2][l] = r[1][l], lo[3][l] = r[0][l] + r[1][l];
      hi[0][l] = 0.0f, hi[1][l] = r[2][l], hi[2][l] = r[3][l], hi[3][l] = r[2][l] + r[3][l];
    }
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < kNR; ++l) Tg[(4 * h + c) * kNR + l] = hi[h][l] + lo[c][l];
#endif
  }
}

// The states v[R, K] as bits when every value is 0 or 1 (returns false otherwise).
template <typename T>
bool bits_from_states(const T* v, int64_t R, int64_t K, BinaryOperand& op) {
  op.reset(R, K);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t n0 = 0; n0 < K; n0 += kNR) {
      const int m = static_cast<int>(std::min<int64_t>(kNR, K - n0));
      alignas(64) float x[kNR];
      load_strip(x, v + r * K + n0, m);
      // compares without branches: a branch per value mispredicts on random 0/1 data
#if defined(__AVX512F__)
      const __m512 xv = _mm512_load_ps(x);
      const uint32_t on = _mm512_cmp_ps_mask(xv, _mm512_set1_ps(1.0f), _CMP_EQ_OQ);
      if ((on | _mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_EQ_OQ)) != 0xFFFFu) return false;
#else
      uint32_t on = 0, other = 0;
      for (int l = 0; l < kNR; ++l) {
        on |= static_cast<uint32_t>(x[l] == 1.0f) << l;
        other |= (static_cast<uint32_t>(x[l] != 0.0f) & static_cast<uint32_t>(x[l] != 1.0f)) << l;
      }
      if (other) return false;
#endif
      op.bits[r * op.ns + n0 / kNR] = static_cast<uint16_t>(on);
    }
  }
  return true;
}

// Per-thread scratch, reused across calls (no page faults per call).
struct Scratch {
  std::vector<float> av, ah;
  AlignedFloats x;
  BinaryOperand lv, lh;
  AlignedFloats tab;
};
// Not inlined: GCC otherwise propagates the thread_local's address into clones of the functions
// that take its members (BinaryOperand::prepare, sparse_half_step) and recomputes it there, in
// their loops, through __tls_get_addr calls (general-dynamic TLS in a shared object). Measured on
// one thread, B = 1000, V = 784, H = 256, interleaved runs: 7.0 -> 6.0 ms per step at k = 10.
__attribute__((noinline)) Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// Where the epilogue of one half-step writes its samples: the next product's operand (the bits of
// a binary operand, or for Gaussian visible units the dense packed [tiles][N][6] panel) and, on
// the last step, the outputs (dtype T) for rows [row0, row0 + R).
template <typename T>
struct HalfOut {
  BinaryOperand* bin;  // or nullptr
  float* packed;       // or nullptr
  T* sample;           // [B, N] or nullptr (not the last step)
  T* prob;             // [B, N] or nullptr
  const float* bias;   // [ceil(N / 16) * 16], fp32, zero-padded
};

// Most Philox counters an epilogue batch needs: kEpiRows rows of 16 numbers at any stream
// position, 4 counters per row when it starts on a counter boundary and 5 otherwise; rounded
// up to whole blocks of 32 counters (two independent 16-lane chains on AVX-512).
constexpr int kEpiRowsMax = 16;
constexpr int kEpiCounters = (kEpiRowsMax * 5 + 31) / 32 * 32;

// The numbers at stream positions pos[i] + l (l < 16) of rows i < n (uniforms, or normals for
// Gaussian draws), as rows of the buffer num: row i's are num[start[i] + l]. The counters of
// all rows are listed (each row's consecutively, so that its numbers sit in stream order) and
// computed together in vector blocks (csrc/include/genfast/philox_cpu.h): one Philox call per
// four numbers, against one per number before (16 rows of 16 lanes each).
template <bool kNormal>
inline void rows_numbers(uint64_t seed, const uint64_t* pos, int n, float* num, int* start) {
  alignas(64) uint32_t lo[kEpiCounters], hi[kEpiCounters];
  alignas(64) uint32_t x[4][32];
  int t = 0;
  for (int i = 0; i < n; ++i) {
    const uint64_t c = pos[i] >> 2;
    const int s = static_cast<int>(pos[i] & 3u);
    start[i] = 4 * t + s;
    for (int q = 0; q < (s ? 5 : 4); ++q, ++t) {
      const uint64_t cq = c + static_cast<uint64_t>(q);
      lo[t] = static_cast<uint32_t>(cq);
      hi[t] = static_cast<uint32_t>(cq >> 32) & 0x3fffffffu;  // counters wrap at 2^62
    }
  }
  const int blocks = (t + 15) / 16;  // of 16 counters
  for (int k = t; k < blocks * 16; ++k) lo[k] = hi[k] = 0u;
  int b = 0;
  for (; b + 2 <= blocks; b += 2) {
    philox4_lanes<32>(seed, lo + 16 * b, hi + 16 * b, x);
    numbers_from_words<kNormal, 32>(x, num + 64 * b);
  }
  if (b < blocks) {
    uint32_t(*x16)[16] = reinterpret_cast<uint32_t(*)[16]>(&x[0][0]);
    philox4_lanes<16>(seed, lo + 16 * b, hi + 16 * b, x16);
    numbers_from_words<kNormal, 16>(x16, num + 64 * b);
  }
}

// Rows per epilogue batch: the gathers of kEpiRows rows, then their Philox words together, then
// their draws. Swept on one thread (ms per step, H = 256, k = 10; two interleaved runs): 2 rows
// 7.23, 4 7.11, 8 6.90 / 6.90, 16 6.78 / 6.90, 24 6.93, 48 6.80; H = 1024, k = 3: 2 24.8, 4
// 24.7, 8 23.9 / 23.6, 16 23.3 / 23.2, 24 23.4, 48 23.1.
constexpr int kEpiRows = 16;
static_assert(kEpiRows <= kEpiRowsMax, "rows_numbers sizes its buffers for kEpiRowsMax rows");

// The fused epilogue of n <= kEpiRows finished 16-column strips: local rows lr0 + i, columns
// n0 + l (l < m), sums at X + i * ldx.
template <typename T, bool kHidden, bool kGaussian>
inline void epilogue_rows(const Plan& P, int64_t row0, int64_t lr0, int n, int64_t n0, int m, int64_t N,
                          const float* X, int64_t ldx, const HalfOut<T>& out, uint64_t step_base) {
  alignas(64) float num[4 * kEpiCounters];
  uint64_t pos[kEpiRows];
  int start[kEpiRows];
  for (int i = 0; i < n; ++i) {
    const int64_t b = row0 + lr0 + i;
    pos[i] = kHidden ? gibbs_hidden_counter(step_base, P.H, b, n0)
                     : gibbs_visible_counter(step_base, P.B, P.V, P.H, b, n0);
  }
  rows_numbers<!kHidden && kGaussian>(P.seed, pos, n, num, start);
  for (int i = 0; i < n; ++i) {
    const int64_t lr = lr0 + i, b = row0 + lr;
    const float* xr = X + i * ldx;
    const float* rn = num + start[i];
    alignas(64) float pr[kNR], sm[kNR];
#pragma GCC ivdep
    for (int l = 0; l < kNR; ++l) {
      const float bias = out.bias[n0 + l];
      float pm;
      if (kHidden) {
        pm = gibbs_hidden_prob(xr[l], bias, P.inv_sigma);
        sm[l] = gibbs_draw<false>(rn[l], pm, 1.0f);
      } else {
        pm = gibbs_visible_mean<kGaussian>(xr[l], bias, P.sigma);
        sm[l] = gibbs_draw<kGaussian>(rn[l], pm, P.sigma);
      }
      pr[l] = pm;
    }
    if (out.bin) {
      out.bin->bits[lr * out.bin->ns + n0 / kNR] = static_cast<uint16_t>(ones_mask(sm) & ((1u << m) - 1u));
    } else {
      float* pk = out.packed + ((lr / kMR) * N + n0) * kMR + lr % kMR;
      for (int l = 0; l < m; ++l) pk[l * kMR] = sm[l];
    }
    if (out.sample) {
      store_strip_streaming(out.sample + b * N + n0, sm, m);
      store_strip_streaming(out.prob + b * N + n0, pr, m);
    }
  }
}

// One half-step for the R rows of a task from binary states: X = (binary operand) @ M, then the
// epilogue. Per 16-column panel of M, K block by K block so that the block of the panel (active
// lists) or its tables (codes) stay in L1 while the R rows stream their lists past it.
template <typename T, bool kHidden, bool kGaussian>
void sparse_half_step(const Plan& P, int64_t row0, int64_t R, BinaryOperand& in, int64_t K, int64_t N,
                      const float* M, float* X, float* tab, const HalfOut<T>& out, uint64_t step_base) {
  const int64_t np = (N + kNR - 1) / kNR;
  constexpr int64_t gpb = kTabUnits / 4;
  const int64_t nq = in.coded ? (in.ng + gpb - 1) / gpb : in.lists.nkb;
  for (int64_t jp = 0; jp < np; ++jp) {
    const float* Mp = M + jp * K * kNR;
    const int64_t n0 = jp * kNR;
    const int m = static_cast<int>(std::min<int64_t>(kNR, N - n0));
    for (int64_t q = 0; q < nq; ++q) {
      const bool last_q = q + 1 == nq;
      int64_t groups = 0;
      if (in.coded) {
        const int64_t rows = std::min(kTabUnits, K - q * kTabUnits);
        build_tables(Mp + q * kTabUnits * kNR, rows, tab);
        groups = (rows + 3) / 4;
      }
      for (int64_t r0 = 0; r0 < R; r0 += kEpiRows) {
        const int nr = static_cast<int>(std::min<int64_t>(kEpiRows, R - r0));
        for (int i = 0; i < nr; ++i) {
          const int64_t r = r0 + i;
          if (in.coded) {
            gather_strip(tab, in.codes.data() + r * in.ng + q * gpb, groups, X + r * kNR, q > 0);
          } else {
            gather_strip(Mp, in.lists.list(r, q), in.lists.cnt[r * in.lists.nkb + q], X + r * kNR, q > 0);
          }
        }
        if (last_q)
          epilogue_rows<T, kHidden, kGaussian>(P, row0, r0, nr, n0, m, N, X + r0 * kNR, kNR, out, step_base);
      }
    }
  }
}

// One half-step for the R rows of a task from real states: X = A @ M by the dense micro-kernel,
// then the epilogue on each finished 6 x 16 tile while it is in L1.
template <typename T, bool kHidden, bool kGaussian>
void dense_half_step(const Plan& P, int64_t row0, int64_t R, const float* A, int64_t K, int64_t N,
                     const float* M, float* X, const HalfOut<T>& out, uint64_t step_base) {
  const int64_t tiles = (R + kMR - 1) / kMR;
  const int64_t np = (N + kNR - 1) / kNR;
  const int64_t ldx = np * kNR;
  const int64_t nkb = (K + kKC - 1) / kKC;
  const int64_t kc = (K + nkb - 1) / nkb;  // balanced K blocks
  for (int64_t jp = 0; jp < np; ++jp) {
    const float* Mp = M + jp * K * kNR;
    for (int64_t p0 = 0; p0 < K; p0 += kc) {
      const int64_t kcur = std::min(kc, K - p0);
      const bool last_k = p0 + kcur == K;
      for (int64_t t = 0; t < tiles; ++t) {
        float* Ct = X + t * kMR * ldx + jp * kNR;
        micro_kernel(kcur, A + (t * K + p0) * kMR, Mp + p0 * kNR, Ct, ldx, p0 > 0);
        if (!last_k) continue;
        const int64_t n0 = jp * kNR;
        const int m = static_cast<int>(std::min<int64_t>(kNR, N - n0));
        const int rows = static_cast<int>(std::min<int64_t>(kMR, R - t * kMR));
        for (int i = 0; i < rows; i += kEpiRows)
          epilogue_rows<T, kHidden, kGaussian>(P, row0, t * kMR + i, std::min(kEpiRows, rows - i), n0, m, N,
                                               Ct + i * ldx, ldx, out, step_base);
      }
    }
  }
}

template <typename T, bool kGaussian>
void gibbs_rows(const Plan& P, bool w_finite, const T* v_in, const float* vbias, const float* hbias, const float* Mh,
                const float* Mv, T* v_out, T* h_out, T* v_prob, T* h_prob, int64_t row0, int64_t R) {
  const int64_t V = P.V, H = P.H;
  const int64_t tiles = (R + kMR - 1) / kMR;
  Scratch& s = scratch();
  // Which operands are binary (BinaryOperand): h always, and v for Bernoulli visible units, as
  // long as W is finite; v_in when it holds only 0s and 1s. The others are dense packed panels.
  const bool sparse_h = w_finite;
  const bool sparse_v_drawn = w_finite && !kGaussian;
  bool sparse_v = w_finite && bits_from_states(v_in + row0 * V, R, V, s.lv);
  s.tab.reserve(static_cast<size_t>(kTabUnits / 4 * 16 * kNR));
  if (!sparse_v || !sparse_v_drawn) s.av.assign(static_cast<size_t>(tiles * V * kMR), 0.0f);
  if (!sparse_h) s.ah.assign(static_cast<size_t>(tiles * H * kMR), 0.0f);
  const int64_t ldx = ((std::max(V, H) + kNR - 1) / kNR) * kNR;
  s.x.reserve(static_cast<size_t>(tiles * kMR * ldx));
  if (!sparse_v) {
    for (int64_t lr = 0; lr < R; ++lr) {
      float* pk = s.av.data() + (lr / kMR) * V * kMR + lr % kMR;
      const T* src = v_in + (row0 + lr) * V;
      for (int64_t i = 0; i < V; ++i) pk[i * kMR] = load_f32<T>(src, i);
    }
  }
  for (int64_t step = 0; step < P.k; ++step) {
    const bool last = step + 1 == P.k;
    const uint64_t base = gibbs_step_base(P.offset, step, P.B, V, H);
    if (sparse_h) s.lh.reset(R, H);
    HalfOut<T> ho{sparse_h ? &s.lh : nullptr, sparse_h ? nullptr : s.ah.data(), last ? h_out : nullptr, h_prob,
                  hbias};
    if (sparse_v) {
      s.lv.prepare(R);
      sparse_half_step<T, true, kGaussian>(P, row0, R, s.lv, V, H, Mh, s.x.data(), s.tab.data(), ho, base);
    } else {
      dense_half_step<T, true, kGaussian>(P, row0, R, s.av.data(), V, H, Mh, s.x.data(), ho, base);
    }
    sparse_v = sparse_v_drawn;
    if (sparse_v) s.lv.reset(R, V);
    HalfOut<T> vo{sparse_v ? &s.lv : nullptr, sparse_v ? nullptr : s.av.data(), last ? v_out : nullptr, v_prob,
                  vbias};
    if (sparse_h) {
      s.lh.prepare(R);
      sparse_half_step<T, false, kGaussian>(P, row0, R, s.lh, H, V, Mv, s.x.data(), s.tab.data(), vo, base);
    } else {
      dense_half_step<T, false, kGaussian>(P, row0, R, s.ah.data(), H, V, Mv, s.x.data(), vo, base);
    }
  }
#if defined(__AVX512F__)
  _mm_sfence();  // the outputs' streaming stores (store_strip_streaming) before the caller reads them
#endif
}

template <typename T>
void gibbs_typed(const Plan& P, uint64_t v_in, uint64_t weight, uint64_t vbias, uint64_t hbias,
                 uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob) {
  const T* W = reinterpret_cast<const T*>(weight);  // [H, V]
  const int64_t V = P.V, H = P.H;
  // The packed weights, owned by the calling thread and kept across its calls (packed_for): a
  // fresh buffer per call (1.6 MB at H = 256) cost 0.7 ms of page faults per call here. The
  // workers read them through these pointers (a thread_local named inside the parallel loop is
  // the worker's own).
  const PackedWeight& packed = packed_for(W, H, V);
  const bool w_finite = packed.finite;
  const float* Mh = packed.Mh.data();
  const float* Mv = packed.Mv.data();
  // Biases in fp32, zero-padded to whole 16-column strips, so the epilogue loop has no tail.
  std::vector<float> vb((V + kNR - 1) / kNR * kNR, 0.0f), hb((H + kNR - 1) / kNR * kNR, 0.0f);
  for (int64_t i = 0; i < V; ++i) vb[i] = load_f32<T>(reinterpret_cast<const T*>(vbias), i);
  for (int64_t j = 0; j < H; ++j) hb[j] = load_f32<T>(reinterpret_cast<const T*>(hbias), j);
  const int64_t rows = task_rows(P.B);
  const int64_t ntasks = (P.B + rows - 1) / rows;
#if defined(GENFAST_WITH_OPENMP)
  const bool parallel = ntasks > 1 && static_cast<double>(P.k) * P.B * V * H >= kParallelWork;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
#endif
  for (int64_t task = 0; task < ntasks; ++task) {
    const int64_t row0 = task * rows;
    const int64_t R = std::min(rows, P.B - row0);
    const T* vi = reinterpret_cast<const T*>(v_in);
    T* vo = reinterpret_cast<T*>(v_out);
    T* ho = reinterpret_cast<T*>(h_out);
    T* vp = reinterpret_cast<T*>(v_prob);
    T* hp = reinterpret_cast<T*>(h_prob);
    if (P.gaussian) {
      gibbs_rows<T, true>(P, w_finite, vi, vb.data(), hb.data(), Mh, Mv, vo, ho, vp, hp, row0, R);
    } else {
      gibbs_rows<T, false>(P, w_finite, vi, vb.data(), hb.data(), Mh, Mv, vo, ho, vp, hp, row0, R);
    }
  }
}

void gibbs(uint64_t v_in, uint64_t weight, uint64_t vbias, uint64_t hbias, uint64_t philox, uint64_t v_out,
           uint64_t h_out, uint64_t v_prob, uint64_t h_prob, int64_t B, int64_t V, int64_t H, int64_t k,
           int32_t dtype, bool gaussian, float sigma) {
  if (B <= 0 || k <= 0) return;
  if (V <= 0 || H <= 0) throw pybind11::value_error("genfast._C.gibbs: n_visible and n_hidden must be >= 1");
  const int64_t* ph = reinterpret_cast<const int64_t*>(philox);
  Plan P{B, V, H, k, gaussian, gaussian ? sigma : 1.0f, gaussian ? 1.0f / sigma : 1.0f,
         static_cast<uint64_t>(ph[0]), static_cast<uint64_t>(ph[1])};
  if (dtype == kFloat32) return gibbs_typed<float>(P, v_in, weight, vbias, hbias, v_out, h_out, v_prob, h_prob);
  if (dtype == kFloat16) return gibbs_typed<half_t>(P, v_in, weight, vbias, hbias, v_out, h_out, v_prob, h_prob);
  if (dtype == kBFloat16) return gibbs_typed<bf16_t>(P, v_in, weight, vbias, hbias, v_out, h_out, v_prob, h_prob);
  throw pybind11::value_error("genfast._C.gibbs: unsupported dtype code");
}

}  // namespace
}  // namespace genfast

GENFAST_REGISTER(gibbs) {
  namespace py = pybind11;
  m.def(
      "gibbs",
      [](uint64_t v_in, uint64_t weight, uint64_t vbias, uint64_t hbias, uint64_t philox, uint64_t v_out,
         uint64_t h_out, uint64_t v_prob, uint64_t h_prob, int64_t B, int64_t V, int64_t H, int64_t k,
         int32_t dtype, bool gaussian, float sigma) {
        py::gil_scoped_release nogil;
        genfast::gibbs(v_in, weight, vbias, hbias, philox, v_out, h_out, v_prob, h_prob, B, V, H, k, dtype,
                       gaussian, sigma);
      },
      py::arg("v_in"), py::arg("weight"), py::arg("visible_bias"), py::arg("hidden_bias"), py::arg("philox"),
      py::arg("v_out"), py::arg("h_out"), py::arg("v_prob"), py::arg("h_prob"), py::arg("batch"),
      py::arg("n_visible"), py::arg("n_hidden"), py::arg("k"), py::arg("dtype"), py::arg("gaussian"),
      py::arg("sigma"),
      "k block-Gibbs steps of an RBM over validated, contiguous CPU tensors (v_in [B, V], weight [H, V], "
      "biases [V] / [H], philox int64 [2]); writes the last samples and probabilities.");
  m.def(
      "gibbs_pack_stats",
      []() {
        const genfast::PackedWeight& p = genfast::packed_weight();
        py::dict d;
        d["hits"] = p.hits;
        d["misses"] = p.misses;
        return d;
      },
      "Calls of gibbs on this thread that reused the packed weights of its previous call (hits: W held "
      "the same values) or packed W again (misses); for tests.");
}
