// Glow's invertible 1x1 convolution (actnorm folded into the weight) on the CPU: per image, the
// [C, C] x [C, HW] product of NCHW data plus a per-channel bias, with no transposes. Arithmetic:
// csrc/include/genfast/invconv_math.h, shared with kernels/invconv.cu.
//
// Blocking (GotoBLAS-like): the weight is packed once per call into k-major blocks of kMR rows.
// A task is one image and a group of strips of kNR pixels; each strip of the input ([C, kNR]) is
// packed into a float32 panel (converting fp16 / bf16 there, zero-padding the last strip), which
// stays in L1 (C = 512: 64 KiB, then L2) while every block of kMR output channels streams its
// packed weight past it. The kMR x kNR accumulators live in registers.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "genfast/invconv_math.h"
#include "genfast/parallel.h"
#include "genfast/simd16.h"
#include "invconv_cpu.h"

namespace genfast {
namespace {

// The register tile: kMR output channels x kNR pixels of accumulators, one panel load per kNR / 16
// vectors and one broadcast FMA per accumulator vector per k. AVX-512 (32 zmm): 12 x 32 = 24
// accumulators, faster than 6 x 16 and 4 x 64 (14 x 32 was unstable); AVX2 (16 ymm): 6 x 16 = 12.
#if !defined(GF_INVCONV_MR) && defined(__AVX512F__)
#define GF_INVCONV_MR 12
#define GF_INVCONV_NR 32
#endif
#ifndef GF_INVCONV_MR
#define GF_INVCONV_MR 6
#endif
#ifndef GF_INVCONV_NR
#define GF_INVCONV_NR 16
#endif
constexpr int kMR = GF_INVCONV_MR;
constexpr int kNR = GF_INVCONV_NR;
// Work per parallel chunk, in multiply-adds: about 10 us at ~60 GFLOP/s per core, enough to
// amortise the ~5 us OpenMP wake-up; 64x48x16x16 gives 64 tasks (one per image) for 2 threads.
constexpr int64_t kGrainMacs = 300000;
// Strips packed per task (see invconv_cpu): 8 instead of 1 gained 7% on 32x32 images; the cap of
// the packed panels, 64 K floats (256 KiB), stays in the 1 MiB L2 next to the weight.
constexpr int64_t kGroup = 8;
constexpr int64_t kGroupPanelFloats = 65536;

// Row conversions between the data type and the float32 panel / accumulators, as kNR / 16 rows of
// simd16.h (the bit-exact conversions of common.h, in AVX-512 for fp16 / bf16); for float16 with
// F16C the hardware conversion gives the same values (exact widening; round-to-nearest-even
// narrowing), 7x faster.
static_assert(kNR % kSimd16 == 0, "a row is whole 16-value rows of simd16.h");
template <typename T>
inline void load_row(const T* src, float* dst, int valid) {
  for (int j = 0; j < kNR; j += kSimd16) load16(dst + j, src + j, std::max(0, std::min(kSimd16, valid - j)));
}

template <typename T>
inline void store_row(T* dst, const float* v, int valid) {
  for (int j = 0; j < kNR; j += kSimd16) store16(dst + j, v + j, std::max(0, std::min(kSimd16, valid - j)));
}

#if defined(__F16C__)
static_assert(kNR % 8 == 0, "F16C conversions work on 8 lanes");
template <>
inline void load_row<half_t>(const half_t* src, float* dst, int valid) {
  if (valid < kNR) {
    for (int j = 0; j < kNR; ++j) dst[j] = j < valid ? load_f32<half_t>(src, j) : 0.0f;
    return;
  }
  for (int j = 0; j < kNR; j += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j));
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(h));
  }
}

template <>
inline void store_row<half_t>(half_t* dst, const float* v, int valid) {
  if (valid < kNR) {
    for (int j = 0; j < valid; ++j) store_f32<half_t>(dst, j, v[j]);
    return;
  }
  for (int j = 0; j < kNR; j += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(v + j), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), h);
  }
}
#endif

// One block of kMR output channels (rows i0.. of the weight, packed k-major in `wp`: the
// broadcasts walk memory sequentially) over one strip; rows at or beyond c were zero-padded and
// are not stored.
template <typename T>
inline void row_block(const float* wp, const float* bias, int64_t c, int64_t i0, const float* xp, T* ybase,
                      int64_t hw, int64_t p0, int valid) {
  float acc[kMR][kNR];
  for (int r = 0; r < kMR; ++r) {
    const float b = i0 + r < c ? invconv_bias(bias, i0 + r) : 0.0f;
    for (int j = 0; j < kNR; ++j) acc[r][j] = b;
  }
  invconv_tile_fma<kMR, kNR, 1, kMR>(acc, wp, 1, xp, kNR, 0, c);
  const int rows = c - i0 < kMR ? static_cast<int>(c - i0) : kMR;
  for (int r = 0; r < rows; ++r) store_row<T>(ybase + (i0 + r) * hw + p0, acc[r], valid);
}

template <typename T>
void invconv_cpu(const InvConvParams& P) {
  const T* x = reinterpret_cast<const T*>(P.x);
  T* y = reinterpret_cast<T*>(P.y);
  const float* w = reinterpret_cast<const float*>(P.w);
  const float* bias = reinterpret_cast<const float*>(P.bias);
  const int64_t c = P.c, hw = P.hw;
  // The weight packed once per call (O(C^2)): block b holds rows b*kMR.. as wp[(b*C + k)*kMR + r],
  // zero-padded to a whole block, so the broadcasts of one k step read 48 contiguous bytes instead
  // of twelve rows C*4 bytes apart (26% faster at C = 96).
  const int64_t blocks = (c + kMR - 1) / kMR;
  std::vector<float> packed(static_cast<size_t>(blocks * c * kMR), 0.0f);
  for (int64_t i = 0; i < c; ++i) {
    const int64_t b = i / kMR, r = i - b * kMR;
    for (int64_t k = 0; k < c; ++k) packed[(b * c + k) * kMR + r] = w[i * c + k];
  }
  const float* wp = packed.data();
  // A task is one image and a group of up to kGroup strips, packed together: each input row is
  // then read in runs of kGroup * kNR contiguous pixels, easier on the hardware prefetchers than
  // C separate 128-byte pieces 4 KiB apart.
  const int64_t strips = (hw + kNR - 1) / kNR;
  const int64_t group = std::max<int64_t>(1, std::min<int64_t>(kGroup, kGroupPanelFloats / (c * kNR)));
  const int64_t groups = (strips + group - 1) / group;
  const int64_t macs_per_task = c * c * kNR * group;
  const int64_t grain = macs_per_task >= kGrainMacs ? 1 : kGrainMacs / macs_per_task;
  parallel_for(P.n * groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> panel(static_cast<size_t>(c * kNR * group));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t img = t / groups;
      const int64_t s0 = (t - img * groups) * group;
      const int64_t s1 = std::min(strips, s0 + group);
      const T* xb = x + img * c * hw;
      T* yb = y + img * c * hw;
      for (int64_t k = 0; k < c; ++k) {
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t p0 = s * kNR;
          const int valid = static_cast<int>(hw - p0 < kNR ? hw - p0 : kNR);
          load_row<T>(xb + k * hw + p0, panel.data() + ((s - s0) * c + k) * kNR, valid);
        }
      }
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t p0 = s * kNR;
        const int valid = static_cast<int>(hw - p0 < kNR ? hw - p0 : kNR);
        const float* xp = panel.data() + (s - s0) * c * kNR;
        for (int64_t b = 0; b < blocks; ++b) {
          row_block<T>(wp + b * c * kMR, bias, c, b * kMR, xp, yb, hw, p0, valid);
        }
      }
    }
  });
}

}  // namespace

void invconv(const InvConvParams& P) {
  if (P.n <= 0 || P.c <= 0 || P.hw <= 0) return;
  dispatch_dtype(P.dtype, "genfast._C.invconv1x1", [&](auto t) { invconv_cpu<tag_type<decltype(t)>>(P); });
}

namespace {

// The memo of invconv_fold_lu_cached (invconv_cpu.h): ~2 (C^2 + 4C) floats per thread.
struct FoldMemo {
  int64_t c = -1;
  bool reverse = false, has_s = false, has_b = false;
  std::vector<int64_t> perm;
  std::vector<float> in;  // lower, upper, sign_s, log_s, act_s, act_b (those present), back to back
  std::vector<float> w, bias;
  double log_abs_det = 0.0;
  int32_t status = 0;
};

bool same_floats(const float* a, const float* b, int64_t n) {
  return n == 0 || std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

}  // namespace

int32_t invconv_fold_lu_cached(int64_t c, const int64_t* perm, const float* lower, const float* upper,
                               const float* sign_s, const float* log_s, const float* act_s, const float* act_b,
                               bool reverse, float* w, float* bias, double* log_abs_det) {
  thread_local FoldMemo memo;
  const bool has_s = act_s != nullptr, has_b = act_b != nullptr;
  const int64_t cc = c * c;
  const float* parts[] = {lower, upper, sign_s, log_s, act_s, act_b};
  const int64_t sizes[] = {cc, cc, c, c, has_s ? c : 0, has_b ? c : 0};
  bool hit = memo.c == c && memo.reverse == reverse && memo.has_s == has_s && memo.has_b == has_b &&
             std::memcmp(memo.perm.data(), perm, static_cast<size_t>(c) * sizeof(int64_t)) == 0;
  for (int i = 0, off = 0; hit && i < 6; off += static_cast<int>(sizes[i]), ++i) {
    hit = same_floats(memo.in.data() + off, parts[i], sizes[i]);
  }
  if (!hit) {
    std::vector<double> scratch(static_cast<size_t>(2 * cc + c));
    std::vector<unsigned char> seen(static_cast<size_t>(c));
    memo.w.resize(static_cast<size_t>(cc));
    memo.bias.resize(static_cast<size_t>(c));
    memo.status = invconv_fold_lu(c, perm, lower, upper, sign_s, log_s, act_s, act_b, reverse, memo.w.data(),
                                  memo.bias.data(), scratch.data(), seen.data(), &memo.log_abs_det);
    memo.perm.assign(perm, perm + c);
    memo.in.clear();
    for (int i = 0; i < 6; ++i) memo.in.insert(memo.in.end(), parts[i], parts[i] + sizes[i]);
    memo.c = c;
    memo.reverse = reverse;
    memo.has_s = has_s;
    memo.has_b = has_b;
  }
  std::memcpy(w, memo.w.data(), static_cast<size_t>(cc) * sizeof(float));
  std::memcpy(bias, memo.bias.data(), static_cast<size_t>(c) * sizeof(float));
  *log_abs_det = memo.log_abs_det;
  return memo.status;
}

}  // namespace genfast
