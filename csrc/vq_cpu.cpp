// Nearest-code search of vector quantisation on the CPU, fused with the quantise step's
// epilogue (gather of the chosen codes, per-code counts and sums for EMA codebook updates):
// genfast.ops.vq_nearest / vq_quantize. Arithmetic: csrc/include/genfast/vq_math.h, shared with
// kernels/vq.cu.
//
// A fused micro-kernel rather than a BLAS product per tile plus an argmin: the product alone took
// longer than this whole kernel, and the BLAS route writes and re-reads a [tile, K] buffer that
// this kernel never forms (docs/kernels/vq.md).
//
// Layout: the codebook is packed once per call into blocks of kNR codes, w[block][d][kNR] with
// w = scale_k * e_kd and a bias row (vq_math.h); padded codes get w = 0, bias = +inf. A task
// takes kMB rows of z, packs them into panels zp[panel][d][kMR] (fp32, zero-padded rows), and
// for each panel and code block runs a kMR x kNR register tile over d with one FMA per term,
// then folds the tile into a per-row, per-lane running (min, argmin) kept in L1; the lanes are
// reduced (ties to the lowest index) once all codes are seen. Extra memory: the packed
// codebook (K*D + K floats) and per-task panels: O(K*D + rows per task * D).
#include <pybind11/pybind11.h>

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "genfast/parallel.h"
#include "genfast/vq_math.h"
#include "vq_cpu.h"

namespace genfast {
namespace {

// ------------------------------------------------------------------ SIMD lanes per ISA
#if defined(__AVX512F__)
constexpr int kVW = 16;
using vf = __m512;
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline vf vset1(float x) { return _mm512_set1_ps(x); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline void vbest(float* bv, int32_t* bi, vf acc, int32_t k0) {
  const vf best = _mm512_loadu_ps(bv);
  const __mmask16 m = _mm512_cmp_ps_mask(acc, best, _CMP_LT_OQ);
  const __m512i cur = _mm512_add_epi32(_mm512_set1_epi32(k0),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  _mm512_storeu_ps(bv, _mm512_mask_mov_ps(best, m, acc));
  const __m512i idx = _mm512_loadu_si512(bi);
  _mm512_storeu_si512(bi, _mm512_mask_mov_epi32(idx, m, cur));
}
// Register tile 12 rows x 2 vectors (32 codes): 24 of the 32 zmm registers as accumulators, 14
// loads per 24 FMAs; faster than 8 x 2, 6 x 4 and 4 x 4.
constexpr int kMR = 12;
constexpr int kNV = 2;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kVW = 8;
using vf = __m256;
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline vf vset1(float x) { return _mm256_set1_ps(x); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline void vbest(float* bv, int32_t* bi, vf acc, int32_t k0) {
  const vf best = _mm256_loadu_ps(bv);
  const vf m = _mm256_cmp_ps(acc, best, _CMP_LT_OQ);
  const __m256i cur = _mm256_add_epi32(_mm256_set1_epi32(k0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_storeu_ps(bv, _mm256_blendv_ps(best, acc, m));
  const vf idx = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bi)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(bi),
                      _mm256_castps_si256(_mm256_blendv_ps(idx, _mm256_castsi256_ps(cur), m)));
}
// The classic 6 x 16 AVX2 register tile: 12 accumulators + 2 code loads + 1 broadcast of 16 ymm.
constexpr int kMR = 6;
constexpr int kNV = 2;
#else
// Portable fallback: 4 lanes of plain floats (GCC vectorises what it can).
constexpr int kVW = 4;
struct vf {
  float v[4];
};
inline vf vload(const float* p) { return vf{{p[0], p[1], p[2], p[3]}}; }
inline vf vset1(float x) { return vf{{x, x, x, x}}; }
inline vf vfma(vf a, vf b, vf c) {
  for (int l = 0; l < 4; ++l) c.v[l] = fmaf(a.v[l], b.v[l], c.v[l]);
  return c;
}
inline void vbest(float* bv, int32_t* bi, vf acc, int32_t k0) {
  for (int l = 0; l < 4; ++l) {
    if (acc.v[l] < bv[l]) {
      bv[l] = acc.v[l];
      bi[l] = k0 + l;
    }
  }
}
constexpr int kMR = 4;
constexpr int kNV = 2;
#endif

constexpr int kNR = kNV * kVW;  // codes per register tile
// Rows per task: 8 panels. At N=65536 that is 680+ tasks, so the static split over 2 threads is
// even; the per-task buffers (panels, per-lane best) stay in L1 for D <= 64.
constexpr int64_t kMB = 8 * kMR;
// Codes per L2-resident chunk: the chunk's packed weights take at most 256 KiB (L2 is 1 MiB a
// core here), so for large K*D the panel loop re-reads the chunk from L2, not from memory.
constexpr int64_t kChunkBytes = 256 * 1024;

// One kMR x kNR register tile: acc[r][j] = bias[j] + sum_d zp[d][r] * wp[d][j] (vq_score_term,
// d ascending), folded into the running per-lane best of its rows.
inline void micro_tile(const float* __restrict__ zp,  // [D][kMR]
                       const float* __restrict__ wp,  // [D][kNR]
                       const float* __restrict__ bias,  // [kNR]
                       int64_t d, float* __restrict__ best_v,  // [kMR][kNR]
                       int32_t* __restrict__ best_i, int32_t k0) {
  vf acc[kMR][kNV];
#pragma GCC unroll 16
  for (int v = 0; v < kNV; ++v) {
    const vf b = vload(bias + v * kVW);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) acc[r][v] = b;
  }
  for (int64_t j = 0; j < d; ++j) {
    vf w[kNV];
#pragma GCC unroll 16
    for (int v = 0; v < kNV; ++v) w[v] = vload(wp + j * kNR + v * kVW);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const vf zb = vset1(zp[j * kMR + r]);
#pragma GCC unroll 16
      for (int v = 0; v < kNV; ++v) acc[r][v] = vfma(zb, w[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < kNV; ++v) vbest(best_v + r * kNR + v * kVW, best_i + r * kNR + v * kVW, acc[r][v], k0 + v * kVW);
  }
}

template <typename T>
void vq_cpu(const VqParams& P) {
  const T* z = reinterpret_cast<const T*>(P.z);          // [n, d]
  const T* cb = reinterpret_cast<const T*>(P.codebook);  // [k, d]
  int64_t* indices = reinterpret_cast<int64_t*>(P.indices);  // [n]
  float* distances = reinterpret_cast<float*>(P.distances);  // [n]
  T* z_q = reinterpret_cast<T*>(P.z_q);                      // [n, d] or null
  float* counts = reinterpret_cast<float*>(P.counts);        // [k] or null
  float* sums = reinterpret_cast<float*>(P.sums);            // [k, d] or null
  const int64_t n = P.n, k = P.k, d = P.d;
  const VQScaling sc = vq_scaling(reinterpret_cast<const float*>(P.scaling));  // power-of-two scaling (vq_math.h)
  const int64_t nblocks = (k + kNR - 1) / kNR;

  // Packed codebook: w[block][d][kNR] and bias[block * kNR + j].
  std::vector<float> w(static_cast<size_t>(nblocks * d * kNR));
  std::vector<float> bias(static_cast<size_t>(nblocks * kNR));
  parallel_for(nblocks, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* wb = w.data() + b * d * kNR;
      for (int jj = 0; jj < kNR; ++jj) {
        const int64_t code = b * kNR + jj;
        if (code < k) {
          float scale, bs;
          vq_code_coeffs<T>(cb + code * d, d, P.cosine, sc, scale, bs);
          bias[b * kNR + jj] = bs;
          for (int64_t j = 0; j < d; ++j) wb[j * kNR + jj] = scale * (load_f32<T>(cb, code * d + j) * sc.s);
        } else {
          bias[b * kNR + jj] = std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j < d; ++j) wb[j * kNR + jj] = 0.0f;
        }
      }
    }
  });

  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkBytes / (d * kNR * 4));
  const bool stats = counts != nullptr;
  const int nthreads = num_threads();
  // Per-thread statistics in double, O(threads * K * D). Under dynamic scheduling which thread
  // takes which rows varies, but sums of float32 values in double are exact unless they span
  // more than 2^29 in magnitude, so the float32 result is reproducible in practice; counts are exact.
  std::vector<double> t_counts(stats ? static_cast<size_t>(nthreads * k) : 0, 0.0);
  std::vector<double> t_sums(stats ? static_cast<size_t>(nthreads * k * d) : 0, 0.0);

  // Dynamic scheduling over row blocks: a statically split loop waits at its end for whichever
  // thread the OS descheduled; dynamically the other thread takes the remaining blocks (156
  // instead of 216 ms on a loaded machine, the same without contention).
  const int64_t ntasks = (n + kMB - 1) / kMB;
  auto task = [&](int64_t t) {
    const int64_t r0 = t * kMB;
    const int64_t r1 = std::min(n, r0 + kMB);
    const int64_t rows = r1 - r0;
    const int64_t npanels = (rows + kMR - 1) / kMR;
    std::vector<float> zp(static_cast<size_t>(npanels * d * kMR), 0.0f);
    std::vector<float> best_v(static_cast<size_t>(npanels * kMR * kNR), std::numeric_limits<float>::infinity());
    std::vector<int32_t> best_i(static_cast<size_t>(npanels * kMR * kNR), 0);
    for (int64_t r = 0; r < rows; ++r) {
      float* p = zp.data() + (r / kMR) * d * kMR + (r % kMR);
      const T* zr = z + (r0 + r) * d;
      for (int64_t j = 0; j < d; ++j) p[j * kMR] = load_f32<T>(zr, j) * sc.s;
    }
    for (int64_t c0 = 0; c0 < nblocks; c0 += chunk_blocks) {
      const int64_t c1 = std::min(nblocks, c0 + chunk_blocks);
      for (int64_t p = 0; p < npanels; ++p) {
        const float* zpp = zp.data() + p * d * kMR;
        float* bv = best_v.data() + p * kMR * kNR;
        int32_t* bi = best_i.data() + p * kMR * kNR;
        for (int64_t b = c0; b < c1; ++b) {
          micro_tile(zpp, w.data() + b * d * kNR, bias.data() + b * kNR, d, bv, bi, static_cast<int32_t>(b * kNR));
        }
      }
    }
#if defined(GENFAST_WITH_OPENMP)
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    for (int64_t r = 0; r < rows; ++r) {
      const float* bv = best_v.data() + r * kNR;  // panels are contiguous: row r at r * kNR
      const int32_t* bi = best_i.data() + r * kNR;
      float v = bv[0];
      int64_t idx = bi[0];
      for (int jj = 1; jj < kNR; ++jj) {
        if (vq_better(bv[jj], bi[jj], v, idx)) {
          v = bv[jj];
          idx = bi[jj];
        }
      }
      const int64_t row = r0 + r;
      const T* zr = z + row * d;
      const T* er = cb + idx * d;
      indices[row] = idx;
      distances[row] = vq_final_distance<T>(zr, er, d, P.cosine, sc);
      if (z_q) {
        T* q = z_q + row * d;
        for (int64_t j = 0; j < d; ++j) q[j] = er[j];
      }
      if (stats) {
        t_counts[tid * k + idx] += 1.0;
        double* s = t_sums.data() + (tid * k + idx) * d;
        for (int64_t j = 0; j < d; ++j) s[j] += load_f32<T>(zr, j);
      }
    }
  };
#if defined(GENFAST_WITH_OPENMP)
  if (ntasks > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntasks; ++t) task(t);
  } else {
    task(0);
  }
#else
  for (int64_t t = 0; t < ntasks; ++t) task(t);
#endif

  if (stats) {
    parallel_for(k, 64, [&](int64_t k0, int64_t k1) {
      for (int64_t c = k0; c < k1; ++c) {
        double cnt = 0.0;
        for (int t = 0; t < nthreads; ++t) cnt += t_counts[t * k + c];
        counts[c] = static_cast<float>(cnt);
        if (sums) {
          for (int64_t j = 0; j < d; ++j) {
            double s = 0.0;
            for (int t = 0; t < nthreads; ++t) s += t_sums[(t * k + c) * d + j];
            sums[c * d + j] = static_cast<float>(s);
          }
        }
      }
    });
  }
}

}  // namespace

void vq_quantize(const VqParams& P) {
  constexpr const char* kOp = "genfast._C.vq_quantize";
  if (P.n <= 0) {
    float* counts = reinterpret_cast<float*>(P.counts);
    float* sums = reinterpret_cast<float*>(P.sums);
    if (counts) {
      for (int64_t c = 0; c < P.k; ++c) counts[c] = 0.0f;
      if (sums)
        for (int64_t i = 0; i < P.k * P.d; ++i) sums[i] = 0.0f;
    }
    return;
  }
  if (P.k <= 0 || P.d <= 0) throw pybind11::value_error("genfast._C.vq_quantize: empty codebook");
  if (P.k > 2147483647LL) throw pybind11::value_error("genfast._C.vq_quantize: more than 2^31 - 1 codes");
  dispatch_dtype(P.dtype, kOp, [&](auto t) { vq_cpu<tag_type<decltype(t)>>(P); });
}

}  // namespace genfast
