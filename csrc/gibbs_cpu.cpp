// k steps of block Gibbs sampling in an RBM on the CPU, the whole chain in C++ (no Python in
// the loop). Arithmetic and counters: csrc/include/genfast/gibbs_math.h (shared with
// kernels/gibbs.cu); specification: genfast/reference/gibbs.py.
//
// Chains are independent, so each OpenMP task owns a block of chains (rows) and runs all k
// steps on them with no synchronisation. Each half-step is a product state[R, K] @ M[K, N]
// (hidden: K = V, N = H, M = W^T; visible: K = H, N = V, M = W) followed by a fused epilogue
// (bias, sigmoid, 16 Philox draws at once, compare) on each finished 16-column strip.
//
// Binary states as index lists. A Bernoulli state is 0/1, so a row of state @ M is the sum of
// the rows of M selected by the state's ones: with the active units of each chain kept as a
// list (built by the epilogue that draws them), a 16-column strip of the product costs one
// 64-byte load and one add per active unit, against one FMA per unit, active or not, in a dense
// product. At the ~50% density of the benchmark that is half the work, and the loop is bound by
// L1 loads (2 x 32 bytes a cycle on Zen 4), not by FMA issue. h is always binary; v is binary
// for Bernoulli visible units after the first visible half-step, and for the first one when
// v_in holds only 0s and 1s (checked per task). Skipping the zeros is exact (0 * w adds +-0)
// as long as W is finite, which is checked once per call: a non-finite W, Gaussian visible
// units and real-valued v_in take the dense product, a cache-blocked 6 x 16 FMA micro-kernel
// (the BLIS design: Van Zee and van de Geijn 2015). The two paths sum in different orders,
// which the reference's comparison rule allows (float rounding, genfast/reference/gibbs.py).
#include <pybind11/pybind11.h>

#include <math.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "genfast/gibbs_math.h"
#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace genfast {
namespace {

// Micro-tile of the dense product: 6 rows x 16 columns = 12 ymm accumulators + 2 for M + 1
// broadcast (of 16 registers), the BLIS haswell sgemm shape; one Philox block16 covers one tile
// row, and the sparse path uses the same 16-column panels of M.
constexpr int kMR = 6;
constexpr int kNR = 16;
// K blocking of the dense product: a 16-column panel of M for kc <= 256 rows is 16 KiB and stays
// in L1 (32 KiB) while every micro-tile of the row block streams past it (the BLIS kc rule).
constexpr int64_t kKC = 256;
// Rows per task: 48 (8 micro-tiles) makes 21 tasks at B = 1000, handed out dynamically, so a
// preempted thread (the 2-core machines are shared) does not hold up a static half of the
// batch.
#ifndef GX_ROWS
#define GX_ROWS 48
#endif
constexpr int64_t kTaskRows = GX_ROWS;
// K block of the sparse product (units per block): a 16-column panel block of kSparseKB rows
// (kSparseKB * 64 bytes) stays in L1 (32 KiB) while the lists of a task stream past it.
#ifndef GX_KB
#define GX_KB 384
#endif
constexpr int64_t kSparseKB = GX_KB;

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
// combination is fixed, so a chain's sums do not depend on the thread that computes them.
inline void gather_strip(const float* __restrict__ Mp, const uint32_t* __restrict__ off, int64_t n,
                         float* __restrict__ out, bool accumulate) {
#ifdef GX_NO_GATHER
  for (int l = 0; l < 16; ++l) out[l] = 0.01f * (off[0] & 7);
  return;
#endif
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

// Packs M[K, N] (element (p, n) read by `at`) into panels [ceil(N/16)][K][16], zero-padded.
template <typename At>
void pack_panels(int64_t K, int64_t N, At at, std::vector<float>& out) {
  const int64_t np = (N + kNR - 1) / kNR;
  out.assign(static_cast<size_t>(np * K * kNR), 0.0f);
  float* o = out.data();
  parallel_for(np, 1, [&](int64_t b, int64_t e) {
    for (int64_t jp = b; jp < e; ++jp)
      for (int64_t p = 0; p < K; ++p)
        for (int64_t l = 0; l < kNR && jp * kNR + l < N; ++l) o[(jp * K + p) * kNR + l] = at(p, jp * kNR + l);
  });
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

// Appends the units n0 + l (l < m, n0 a multiple of 16) whose sample s[l] is 1 to row r's lists.
inline void append_active(ActiveLists& L, int64_t r, int64_t n0, int m, const float* s) {
  const int64_t q = n0 / L.kb;
  int64_t& cnt = L.cnt[r * L.nkb + q];
  uint32_t* dst = L.list(r, q) + cnt;
#if defined(__AVX512F__)
  const __mmask16 live = static_cast<__mmask16>((1u << m) - 1u);
  const __mmask16 on = _mm512_mask_cmp_ps_mask(live, _mm512_loadu_ps(s), _mm512_set1_ps(0.5f), _CMP_GT_OQ);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i offs = _mm512_slli_epi32(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(n0)), lane), 4);
  // compress in a register, then a plain store (a compress straight to memory is microcoded on Zen 4)
  _mm512_storeu_si512(dst, _mm512_maskz_compress_epi32(on, offs));
  cnt += __builtin_popcount(static_cast<unsigned>(on));
#else
  int64_t c = 0;
  for (int l = 0; l < m; ++l) {
    dst[c] = static_cast<uint32_t>((n0 + l) * kNR);
    c += s[l] > 0.5f;
  }
  cnt += c;
#endif
}

// Per-thread scratch, reused across calls (no page faults per call).
struct Scratch {
  std::vector<float> av, ah, x;
  ActiveLists lv, lh;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// Where the epilogue of one half-step writes its samples: the next product's operand (an active
// list, or for Gaussian visible units the dense packed [tiles][N][6] panel) and, on the last step,
// the outputs (dtype T) for rows [row0, row0 + R).
template <typename T>
struct HalfOut {
  ActiveLists* list;   // or nullptr
  float* packed;       // or nullptr
  T* sample;           // [B, N] or nullptr (not the last step)
  T* prob;             // [B, N] or nullptr
  const float* bias;   // [ceil(N / 16) * 16], fp32, zero-padded
};

// The fused epilogue of one finished 16-column strip xr[16] of local row lr, columns n0 + l (l < m).
template <typename T, bool kHidden, bool kGaussian>
inline void epilogue(const Plan& P, int64_t row0, int64_t lr, int64_t n0, int m, int64_t N, const float* xr,
                     const HalfOut<T>& out, uint64_t step_base) {
  alignas(64) uint32_t w0[kPhiloxBlock], w1[kPhiloxBlock];
  alignas(64) float pr[kNR], sm[kNR];
  const int64_t b = row0 + lr;
  const uint64_t ctr = kHidden ? gibbs_hidden_counter(step_base, P.H, b, n0)
                               : gibbs_visible_counter(step_base, P.B, P.V, P.H, b, n0);
#ifdef GX_NO_PHILOX
  for (int l = 0; l < 16; ++l) { w0[l] = (ctr + l) * 2654435761u; w1[l] = w0[l] ^ 12345; }
#else
  philox_block16(P.seed, ctr, w0, w1);
#endif
#pragma GCC ivdep
  for (int l = 0; l < kNR; ++l) {
    const float bias = out.bias[n0 + l];
    float pm;
    if (kHidden) {
      pm = gibbs_hidden_prob(xr[l], bias, P.inv_sigma);
      sm[l] = gibbs_draw<false>(w0[l], w1[l], pm, 1.0f);
    } else {
      pm = gibbs_visible_mean<kGaussian>(xr[l], bias, P.sigma);
      sm[l] = gibbs_draw<kGaussian>(w0[l], w1[l], pm, P.sigma);
    }
    pr[l] = pm;
  }
  if (out.list) {
    append_active(*out.list, lr, n0, m, sm);
  } else {
    float* pk = out.packed + ((lr / kMR) * N + n0) * kMR + lr % kMR;
    for (int l = 0; l < m; ++l) pk[l * kMR] = sm[l];
  }
  if (out.sample) {
    for (int l = 0; l < m; ++l) {
      store_f32<T>(out.sample, b * N + n0 + l, sm[l]);
      store_f32<T>(out.prob, b * N + n0 + l, pr[l]);
    }
  }
}

// One half-step for the R rows of a task from binary states: X = (active lists) @ M, then the
// epilogue. Per 16-column panel of M, K block by K block so that the block of the panel stays in L1
// while the R rows stream their lists past it.
template <typename T, bool kHidden, bool kGaussian>
void sparse_half_step(const Plan& P, int64_t row0, int64_t R, ActiveLists& in, int64_t K, int64_t N,
                      const float* M, float* X, const HalfOut<T>& out, uint64_t step_base) {
  const int64_t np = (N + kNR - 1) / kNR;
  for (int64_t jp = 0; jp < np; ++jp) {
    const float* Mp = M + jp * K * kNR;
    const int64_t n0 = jp * kNR;
    const int m = static_cast<int>(std::min<int64_t>(kNR, N - n0));
    for (int64_t q = 0; q < in.nkb; ++q) {
      const bool last_q = q + 1 == in.nkb;
      for (int64_t r = 0; r < R; ++r) {
        float* xr = X + r * kNR;
        gather_strip(Mp, in.list(r, q), in.cnt[r * in.nkb + q], xr, q > 0);
        if (last_q) epilogue<T, kHidden, kGaussian>(P, row0, r, n0, m, N, xr, out, step_base);
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
        for (int r = 0; r < kMR && t * kMR + r < R; ++r)
          epilogue<T, kHidden, kGaussian>(P, row0, t * kMR + r, n0, m, N, Ct + r * ldx, out, step_base);
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
  // Which operands are active lists: h always (binary) and v for Bernoulli visible units, as long
  // as W is finite; v_in when it holds only 0s and 1s.
  const bool sparse_h = w_finite;
  const bool sparse_v_drawn = w_finite && !kGaussian;
  bool sparse_v = w_finite;
  for (int64_t i = 0; sparse_v && i < R * V; ++i) {
    const float x = load_f32<T>(v_in + row0 * V, i);
    sparse_v = x == 0.0f || x == 1.0f;
  }
  if (!sparse_v || !sparse_v_drawn) s.av.assign(static_cast<size_t>(tiles * V * kMR), 0.0f);
  if (!sparse_h) s.ah.assign(static_cast<size_t>(tiles * H * kMR), 0.0f);
  const int64_t ldx = ((std::max(V, H) + kNR - 1) / kNR) * kNR;
  if (static_cast<int64_t>(s.x.size()) < tiles * kMR * ldx) s.x.resize(static_cast<size_t>(tiles * kMR * ldx));
  if (sparse_v) {
    s.lv.reset(R, V);
    for (int64_t r = 0; r < R; ++r) {
      const T* src = v_in + (row0 + r) * V;
      for (int64_t q = 0; q < s.lv.nkb; ++q) {
        uint32_t* dst = s.lv.list(r, q);
        int64_t c = 0;
        for (int64_t i = q * s.lv.kb; i < std::min(V, (q + 1) * s.lv.kb); ++i) {
          dst[c] = static_cast<uint32_t>(i * kNR);
          c += load_f32<T>(src, i) != 0.0f;
        }
        s.lv.cnt[r * s.lv.nkb + q] = c;
      }
    }
  } else {
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
      sparse_half_step<T, true, kGaussian>(P, row0, R, s.lv, V, H, Mh, s.x.data(), ho, base);
    } else {
      dense_half_step<T, true, kGaussian>(P, row0, R, s.av.data(), V, H, Mh, s.x.data(), ho, base);
    }
    sparse_v = sparse_v_drawn;
    if (sparse_v) s.lv.reset(R, V);
    HalfOut<T> vo{sparse_v ? &s.lv : nullptr, sparse_v ? nullptr : s.av.data(), last ? v_out : nullptr, v_prob,
                  vbias};
    if (sparse_h) {
      sparse_half_step<T, false, kGaussian>(P, row0, R, s.lh, H, V, Mv, s.x.data(), vo, base);
    } else {
      dense_half_step<T, false, kGaussian>(P, row0, R, s.ah.data(), H, V, Mv, s.x.data(), vo, base);
    }
  }
}

template <typename T>
void gibbs_typed(const Plan& P, uint64_t v_in, uint64_t weight, uint64_t vbias, uint64_t hbias,
                 uint64_t v_out, uint64_t h_out, uint64_t v_prob, uint64_t h_prob) {
  const T* W = reinterpret_cast<const T*>(weight);  // [H, V]
  const int64_t V = P.V, H = P.H;
  // Both operands packed once per call in fp32 (bf16 / fp16 weights widened here: fp32
  // accumulation from the weights' exact values).
  std::vector<float> Mh, Mv;
  pack_panels(V, H, [&](int64_t i, int64_t j) { return load_f32<T>(W, j * V + i); }, Mh);  // W^T
  pack_panels(H, V, [&](int64_t j, int64_t i) { return load_f32<T>(W, j * V + i); }, Mv);  // W
  bool w_finite = true;
  for (float x : Mv) w_finite &= std::isfinite(x);
  // Biases in fp32, zero-padded to whole 16-column strips, so the epilogue loop has no tail.
  std::vector<float> vb((V + kNR - 1) / kNR * kNR, 0.0f), hb((H + kNR - 1) / kNR * kNR, 0.0f);
  for (int64_t i = 0; i < V; ++i) vb[i] = load_f32<T>(reinterpret_cast<const T*>(vbias), i);
  for (int64_t j = 0; j < H; ++j) hb[j] = load_f32<T>(reinterpret_cast<const T*>(hbias), j);
  const int64_t rows = kTaskRows;
  const int64_t ntasks = (P.B + rows - 1) / rows;
#if defined(GENFAST_WITH_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) if (ntasks > 1)
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
      gibbs_rows<T, true>(P, w_finite, vi, vb.data(), hb.data(), Mh.data(), Mv.data(), vo, ho, vp, hp, row0, R);
    } else {
      gibbs_rows<T, false>(P, w_finite, vi, vb.data(), hb.data(), Mh.data(), Mv.data(), vo, ho, vp, hp, row0, R);
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
}
