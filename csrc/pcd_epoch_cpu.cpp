// One epoch of PCD-k in an RBM on the CPU: every mini-batch update of genfast.sklearn's
// BernoulliRBM.fit in one C++ call, so that a 10-row mini-batch pays no Python, dispatch or
// allocation (about 100 us per update through the per-batch op path, against a few us of
// arithmetic). Arithmetic and stream positions: csrc/include/genfast/pcd_epoch_math.h;
// specification: genfast/reference/pcd_epoch.py; measurements: docs/kernels/pcd_epoch.md.
//
// The updates are sequential, so the epoch runs on one thread; the mini-batches are small (the
// default is 10 rows), so every operand stays in L1/L2. The weight is held transposed, W^T
// [V, Hp] (H padded to 16 with zeros), so that both the hidden pre-activations (sum over the
// nonzero v_i of v_i W^T[i, :]) and the update (W^T[i, :] += a hs[r, :] for each nonzero v_ri)
// are contiguous AXPYs over H that skip the zero entries of the data and of the binary chains
// (the op rejects non-finite inputs, so skipping 0 * w is exact). The visible pre-activations
// are dot products of W^T's rows with the hidden sample.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "genfast/gibbs_math.h"
#include "genfast/pcd_epoch_math.h"
#include "genfast/philox_cpu.h"
#include "pcd_epoch_cpu.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace genfast {
namespace {

constexpr int64_t kLane = 16;  // floats per AVX-512 vector: H is padded to a multiple of it

inline int64_t pad16(int64_t n) { return (n + kLane - 1) / kLane * kLane; }

// out[t] = number p + t of the stream (uniform, uncapped, or normal), t < n.
template <bool kNormal>
void stream_numbers(uint64_t seed, uint64_t p, int64_t n, float* out) {
  // Numbers per request: at most PhiloxStream::kNumbers - 3, a multiple of 16.
  constexpr int kReq = 64;
  PhiloxStream<kNormal> stream(seed);
  for (int64_t t = 0; t < n; t += kReq) {
    const int m = static_cast<int>(std::min<int64_t>(kReq, n - t));
    const float* src = stream.numbers(p + static_cast<uint64_t>(t), m);
    for (int l = 0; l < m; ++l) out[t + l] = src[l];
  }
}

// out[0:ncols] (+)= sum_t a[t] rows[idx[t], 0:ncols] (stride ld, ncols a multiple of 16): the
// hidden pre-activations (rows of W^T, weighted by a row's nonzero visible values) and the update
// of a row of W^T (rows of hs, weighted by the nonzero values of a visible unit in the batch).
// With AVX-512, 16 vectors of out (256 columns) stay in registers over the whole list.
template <typename T>
inline void axpy_rows(const T* rows, int64_t ld, const int32_t* idx, const T* a, int64_t nnz, int64_t ncols, T* out,
                      bool accumulate) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
  constexpr int kVecs = 16;  // zmm accumulators per pass: H = 256 (the default) in one pass
  for (int64_t g = 0; g < ncols; g += kLane * kVecs) {
    const int nq = static_cast<int>(std::min<int64_t>(kVecs, (ncols - g) / kLane));
    __m512 acc[kVecs];
#pragma GCC unroll 16
    for (int q = 0; q < kVecs; ++q)
      acc[q] = (q < nq && accumulate) ? _mm512_loadu_ps(out + g + kLane * q) : _mm512_setzero_ps();
    for (int64_t t = 0; t < nnz; ++t) {
      const float* row = rows + idx[t] * ld + g;
      const __m512 av = _mm512_set1_ps(a[t]);
#pragma GCC unroll 16
      for (int q = 0; q < kVecs; ++q)
        if (q < nq) acc[q] = _mm512_fmadd_ps(av, _mm512_loadu_ps(row + kLane * q), acc[q]);
    }
#pragma GCC unroll 16
    for (int q = 0; q < kVecs; ++q)
      if (q < nq) _mm512_storeu_ps(out + g + kLane * q, acc[q]);
  }
    return;
  }
  if constexpr (std::is_same<T, double>::value) {  // float64 inputs: 8 lanes, 128 columns per pass
    constexpr int kVecs = 16;
    for (int64_t g = 0; g < ncols; g += 8 * kVecs) {
      const int nq = static_cast<int>(std::min<int64_t>(kVecs, (ncols - g) / 8));
      __m512d acc[kVecs];
#pragma GCC unroll 16
      for (int q = 0; q < kVecs; ++q)
        acc[q] = (q < nq && accumulate) ? _mm512_loadu_pd(out + g + 8 * q) : _mm512_setzero_pd();
      for (int64_t t = 0; t < nnz; ++t) {
        const double* row = rows + idx[t] * ld + g;
        const __m512d av = _mm512_set1_pd(a[t]);
#pragma GCC unroll 16
        for (int q = 0; q < kVecs; ++q)
          if (q < nq) acc[q] = _mm512_fmadd_pd(av, _mm512_loadu_pd(row + 8 * q), acc[q]);
      }
#pragma GCC unroll 16
      for (int q = 0; q < kVecs; ++q)
        if (q < nq) _mm512_storeu_pd(out + g + 8 * q, acc[q]);
    }
    return;
  }
#endif
  if (!accumulate)
    for (int64_t j = 0; j < ncols; ++j) out[j] = T(0);
  for (int64_t t = 0; t < nnz; ++t) {
    const T* row = rows + idx[t] * ld;
    const T av = a[t];
#pragma GCC ivdep
    for (int64_t j = 0; j < ncols; ++j) out[j] += av * row[j];
  }
}

#if defined(__AVX512F__)
// The 16 sums of v[0..15] as one vector (lane l = sum of v[l]'s lanes): a transpose-and-add tree.
inline __m512 reduce16(const __m512* v) {
  __m512 t[8], u[4];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k)  // lanes 0-7: 8 partial sums of v[2k], lanes 8-15: of v[2k + 1]
    t[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
#pragma GCC unroll 4
  for (int m = 0; m < 4; ++m)  // 128-bit chunk c: 4 partial sums of v[4m + c]
    u[m] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], 0xDD));
  const __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(u[0], u[1]), _mm512_unpackhi_ps(u[0], u[1]));
  const __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(u[2], u[3]), _mm512_unpackhi_ps(u[2], u[3]));
  const __m512d a = _mm512_castps_pd(s01), b = _mm512_castps_pd(s23);
  // lane 4c + m: the sum of v[4m + c]
  const __m512 f = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f);
}
#endif

// out[l] = sum_j rows[l, j] h[j] over Hp (a multiple of 16), l < m <= 16 (rows of stride ld):
// 16 visible pre-activations from the rows of W^T and a hidden sample; out[l >= m] = 0.
template <typename T>
inline void dots16(const T* rows, int64_t ld, int m, const T* h, int64_t Hp, T* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
  __m512 acc[kLane];
#pragma GCC unroll 16
  for (int l = 0; l < kLane; ++l) acc[l] = _mm512_setzero_ps();
  for (int64_t j = 0; j < Hp; j += kLane) {
    const __m512 hv = _mm512_loadu_ps(h + j);
#pragma GCC unroll 16
    for (int l = 0; l < kLane; ++l)
      if (l < m) acc[l] = _mm512_fmadd_ps(_mm512_loadu_ps(rows + l * ld + j), hv, acc[l]);
  }
  _mm512_storeu_ps(out, reduce16(acc));
    return;
  }
  if constexpr (std::is_same<T, double>::value) {
    __m512d acc[kLane];
#pragma GCC unroll 16
    for (int l = 0; l < kLane; ++l) acc[l] = _mm512_setzero_pd();
    for (int64_t j = 0; j < Hp; j += 8) {
      const __m512d hv = _mm512_loadu_pd(h + j);
#pragma GCC unroll 16
      for (int l = 0; l < kLane; ++l)
        if (l < m) acc[l] = _mm512_fmadd_pd(_mm512_loadu_pd(rows + l * ld + j), hv, acc[l]);
    }
#pragma GCC unroll 16
    for (int l = 0; l < kLane; ++l) out[l] = _mm512_reduce_add_pd(acc[l]);
    return;
  }
#endif
  for (int l = 0; l < kLane; ++l) {
    T s[kLane] = {};
    if (l < m) {
      for (int64_t j = 0; j < Hp; j += kLane) {
#pragma GCC ivdep
        for (int q = 0; q < kLane; ++q) s[q] += rows[l * ld + j + q] * h[j + q];
      }
    }
    T t = T(0);
    for (int q = 0; q < kLane; ++q) t += s[q];
    out[l] = t;
  }
}

// The nonzero entries of v[0:V]: their indices and values; returns their count. Branch-free
// (each entry is written, the count advances only past nonzeros): digits-like data is zero at
// random places, and the mispredicted branches of an `if` cost 20% of an epoch.
template <typename T>
inline int64_t nonzeros(const T* v, int64_t V, int32_t* idx, T* val) {
  int64_t n = 0;
  for (int64_t i = 0; i < V; ++i) {
    idx[n] = static_cast<int32_t>(i);
    val[n] = v[i];
    n += v[i] != T(0);
  }
  return n;
}

// The half-steps' arithmetic in the compute type: float32 is gibbs_math.h's (the Gibbs op's
// kernels); float64 (float64 inputs) evaluates the same formulas with the double exp, as the
// float64 reference does (torch.sigmoid).
//
// exp in double without a library call, so that GCC vectorises the sigmoid loops (glibc's vector
// exp is only declared under -ffast-math; the scalar call took most of a float64 epoch): x =
// n ln2 + r by Cody-Waite (n by the 1.5 * 2^52 rounding trick, as poly_exp), e^r by its Taylor
// polynomial of degree 13 on |r| <= ln2 / 2 (truncation below 2^-53), 2^n from the exponent bits.
// x is clamped to [-708, 709]: e^x stays a normal double (1 / (1 + e^x) is then 0 or 1 to double
// precision where the clamp acts).
inline double exp_f64(double x) {
  const double t = x > 709.0 ? 709.0 : (x < -708.0 ? -708.0 : x);
  const double kShift = 6755399441055744.0;  // 1.5 * 2^52
  const double kd = t * 1.4426950408889634 + kShift;
  const double n = kd - kShift;
  double r = t - n * 6.93147180369123816490e-01;  // ln2, high part (exact in n * hi)
  r = r - n * 1.90821492927058770002e-10;         // ln2, low part
  double p = 1.0 / 6227020800.0;                  // 1 / 13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t kb, sb;
  std::memcpy(&kb, &kd, sizeof kb);
  std::memcpy(&sb, &kShift, sizeof sb);
  const uint64_t scale_bits = ((kb - sb) + 1023u) << 52;  // n + 1023 in the exponent field
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}
inline float hidden_prob(float acc, float c, float inv_sigma) { return gibbs_hidden_prob(acc, c, inv_sigma); }
inline double hidden_prob(double acc, double c, double inv_sigma) {
  return 1.0 / (1.0 + exp_f64(-(c + inv_sigma * acc)));
}
template <bool kGaussian>
inline float visible_mean(float acc, float b, float sigma) { return gibbs_visible_mean<kGaussian>(acc, b, sigma); }
template <bool kGaussian>
inline double visible_mean(double acc, double b, double sigma) {
  return kGaussian ? b + sigma * acc : 1.0 / (1.0 + exp_f64(-(b + acc)));
}
// The draw from a Philox number r (a float32 uniform or normal), as gibbs_draw in type T.
template <bool kGaussian, typename T>
inline T draw(float r, T p_or_mean, T sigma) {
  if (kGaussian) return p_or_mean + sigma * static_cast<T>(r);
  return static_cast<T>(r) < p_or_mean ? T(1) : T(0);
}

// Bytes of W^T's column chunk that the hidden half-step keeps in L1 while every row of the batch
// passes over it (the chunk is 128 columns at V = 64; L1 holds 48 KB here): set from the cache
// size, not swept; the rows-outer order re-read all 64 KB of W^T from L2 for each row.
constexpr int64_t kChunkBytes = 32768;

// out[r, 0:Hp] = sigmoid(c + inv_sigma v_r W^T) for the rows v_r [V] (rows[r]), skipping zeros;
// lists holds [n][V] indices and values of the nonzero entries.
template <typename T>
inline void hidden_probs_rows(const T* const* rows, int64_t n, const T* wt, const T* c, int64_t V, int64_t Hp,
                              T inv_sigma, int32_t* idx, T* val, int64_t* nnz, T* out) {
  for (int64_t r = 0; r < n; ++r) nnz[r] = nonzeros(rows[r], V, idx + r * V, val + r * V);
  const int64_t chunk = std::max(kLane, std::min(Hp, kChunkBytes / (int64_t(sizeof(T)) * V) / kLane * kLane));
  for (int64_t g = 0; g < Hp; g += chunk) {
    const int64_t w = std::min(chunk, Hp - g);
    for (int64_t r = 0; r < n; ++r) {
      T* o = out + r * Hp + g;
      axpy_rows(wt + g, Hp, idx + r * V, val + r * V, nnz[r], w, o, false);
#pragma GCC ivdep
      for (int64_t j = 0; j < w; ++j) o[j] = hidden_prob(o[j], c[g + j], inv_sigma);
    }
  }
}

template <typename T, bool kGaussian>
void epoch(const PcdEpochParams& P) {
  const int64_t N = P.n, V = P.n_visible, H = P.n_hidden, C = P.n_chains, bs = P.batch_size, k = P.k;
  const int64_t Hp = pad16(H);
  const int64_t* ph = reinterpret_cast<const int64_t*>(P.philox);
  const uint64_t seed = static_cast<uint64_t>(ph[0]);
  uint64_t pos = static_cast<uint64_t>(ph[1]);
  const T* x = reinterpret_cast<const T*>(P.x);
  T* weight = reinterpret_cast<T*>(P.weight);
  T* bvis = reinterpret_cast<T*>(P.visible_bias);
  T* chid = reinterpret_cast<T*>(P.hidden_bias);
  T* chain = reinterpret_cast<T*>(P.v_chain);
  T* h_out = reinterpret_cast<T*>(P.h_chain);
  // the half-steps take sigma and 1 / sigma rounded to float32, as the Gibbs op (and its
  // reference) does; the update takes 1 / sigma in double, as the estimator's update
  const float sigma32 = kGaussian ? static_cast<float>(P.sigma) : 1.0f;
  const T sigma = static_cast<T>(sigma32);
  const T inv_sigma = static_cast<T>(1.0f / sigma32);
  const double inv_s = kGaussian ? 1.0 / P.sigma : 1.0;

  std::vector<T> wt(static_cast<size_t>(V * Hp), T(0));  // W^T, zero-padded columns
  for (int64_t j = 0; j < H; ++j)
    for (int64_t i = 0; i < V; ++i) wt[i * Hp + j] = weight[j * V + i];
  std::vector<T> c(static_cast<size_t>(Hp), T(0));
  std::copy(chid, chid + H, c.begin());
  const int64_t rows_max = std::min(bs, N) + C;
  std::vector<T> hs(static_cast<size_t>(rows_max * Hp)), acc(static_cast<size_t>(Hp));
  std::vector<T> hp(static_cast<size_t>(C * Hp)), h(static_cast<size_t>(C * Hp), T(0));
  std::vector<T> state(static_cast<size_t>(C * V)), next(static_cast<size_t>(C * V));
  std::vector<float> nh(static_cast<size_t>(C * H)), nv(static_cast<size_t>(C * V + kLane));
  const int64_t lists = std::max(V, rows_max);  // longest nonzero list: a row's V or a column's rows
  std::vector<int32_t> idx(static_cast<size_t>(lists));
  std::vector<T> val(static_cast<size_t>(lists)), vsum(static_cast<size_t>(V));
  std::vector<T> bpad(static_cast<size_t>(pad16(V)), T(0));  // b, zero-padded to whole vectors
  std::vector<const T*> rowp(static_cast<size_t>(rows_max));          // the rows of a hidden half-step
  std::vector<int32_t> lidx(static_cast<size_t>(rows_max * V));           // their nonzero lists
  std::vector<T> lval(static_cast<size_t>(rows_max * V));
  std::vector<int64_t> lnnz(static_cast<size_t>(rows_max));
  std::copy(bvis, bvis + V, bpad.begin());
  std::copy(chain, chain + C * V, state.begin());

  for (int64_t start = 0; start < N; start += bs) {
    const int64_t nb = std::min(bs, N - start);
    const T* vpos = x + start * V;
    // 1. hidden probabilities of the data rows and of the chains, under the current parameters
    for (int64_t r = 0; r < nb + C; ++r) {
      rowp[r] = r < nb ? vpos + r * V : state.data() + (r - nb) * V;
    }
    hidden_probs_rows(rowp.data(), nb + C, wt.data(), c.data(), V, Hp, inv_sigma, lidx.data(), lval.data(),
                      lnnz.data(), hs.data());
    // 2. the chains advance k steps into `next` (the update needs them as they were)
    const int64_t R = pcd_call_rows(nb, C, k), shift = pcd_chain_shift(nb, k);
    const T* cur = state.data();
    for (int64_t s = 0; s < k && C > 0; ++s) {
      const T* probs = hs.data() + nb * Hp;
      if (s > 0) {
        for (int64_t r = 0; r < C; ++r) rowp[r] = cur + r * V;
        hidden_probs_rows(rowp.data(), C, wt.data(), c.data(), V, Hp, inv_sigma, lidx.data(), lval.data(),
                          lnnz.data(), hp.data());
        probs = hp.data();
      }
      stream_numbers<false>(seed, pcd_hidden_start(pos, s, R, shift, V, H), C * H, nh.data());
      for (int64_t r = 0; r < C; ++r) {
#pragma GCC ivdep
        for (int64_t j = 0; j < H; ++j) h[r * Hp + j] = draw<false>(nh[r * H + j], probs[r * Hp + j], T(1));
      }
      stream_numbers<kGaussian>(seed, pcd_visible_start(pos, s, R, shift, V, H), C * V, nv.data());
      // block of 16 visible units outer, chains inner: the block's 16 rows of W^T stay in L1
      for (int64_t i0 = 0; i0 < V; i0 += kLane) {
        const int m = static_cast<int>(std::min<int64_t>(kLane, V - i0));
        for (int64_t r = 0; r < C; ++r) {
          alignas(64) T pre[kLane], smp[kLane];
          dots16(wt.data() + i0 * Hp, Hp, m, h.data() + r * Hp, Hp, pre);
          const T* bi = bpad.data() + i0;
          const float* ri = nv.data() + r * V + i0;  // nv is padded by kLane numbers
#pragma GCC ivdep
          for (int l = 0; l < kLane; ++l)
            smp[l] = draw<kGaussian>(ri[l], visible_mean<kGaussian>(pre[l], bi[l], sigma), sigma);
          for (int l = 0; l < m; ++l) next[r * V + i0 + l] = smp[l];
        }
      }
      cur = next.data();
    }
    pos += pcd_batch_counters(nb, C, k, V, H);
    // 3. the update, with the chains before this mini-batch's steps
    const T lr = static_cast<T>(P.learning_rate / static_cast<double>(nb));
    const T coef_w = static_cast<T>(P.learning_rate / static_cast<double>(nb) * inv_s);
    const T coef_b = static_cast<T>(P.learning_rate / static_cast<double>(nb) * inv_s * inv_s);
    // W^T[i, :] += sum_r (+-coef_w v[r, i]) hs[r, :] over the rows where v[r, i] != 0
    for (int64_t i = 0; i < V; ++i) {
      int64_t nnz = 0;
      for (int64_t r = 0; r < nb; ++r) {  // branch-free, as nonzeros()
        const T v = vpos[r * V + i];
        idx[nnz] = static_cast<int32_t>(r);
        val[nnz] = coef_w * v;
        nnz += v != T(0);
      }
      for (int64_t r = 0; r < C; ++r) {
        const T v = state[r * V + i];
        idx[nnz] = static_cast<int32_t>(nb + r);
        val[nnz] = -coef_w * v;
        nnz += v != T(0);
      }
      axpy_rows(hs.data(), Hp, idx.data(), val.data(), nnz, Hp, wt.data() + i * Hp, true);
    }
    for (int64_t j = 0; j < Hp; ++j) acc[j] = T(0);
    for (int64_t r = 0; r < nb + C; ++r) {
      const T sg = r < nb ? T(1) : T(-1);
      const T* hr = hs.data() + r * Hp;
#pragma GCC ivdep
      for (int64_t j = 0; j < Hp; ++j) acc[j] += sg * hr[j];
    }
#pragma GCC ivdep
    for (int64_t j = 0; j < H; ++j) c[j] += lr * acc[j];
    for (int64_t i = 0; i < V; ++i) vsum[i] = T(0);
    for (int64_t r = 0; r < nb + C; ++r) {
      const T sg = r < nb ? T(1) : T(-1);
      const T* vr = r < nb ? vpos + r * V : state.data() + (r - nb) * V;
#pragma GCC ivdep
      for (int64_t i = 0; i < V; ++i) vsum[i] += sg * vr[i];
    }
    for (int64_t i = 0; i < V; ++i) {
      bvis[i] += coef_b * vsum[i];
      bpad[i] = bvis[i];
    }
    // 4. the chains move on
    if (C > 0) state.swap(next);
  }

  for (int64_t j = 0; j < H; ++j)
    for (int64_t i = 0; i < V; ++i) weight[j * V + i] = wt[i * Hp + j];
  std::copy(c.begin(), c.begin() + H, chid);
  std::copy(state.begin(), state.end(), chain);
  for (int64_t r = 0; r < C; ++r)
    for (int64_t j = 0; j < H; ++j) h_out[r * H + j] = N > 0 ? h[r * Hp + j] : T(0);
}

// True when no value of p[0:n] is NaN or inf (a NaN fails the comparison), in one vectorised pass.
template <typename T>
bool all_finite(const T* p, int64_t n) {
  int bad = 0;
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) bad |= !(std::abs(p[i]) <= std::numeric_limits<T>::max());
  return bad == 0;
}

template <typename T>
int checked_epoch(const PcdEpochParams& P) {
  const uint64_t ptrs[5] = {P.x, P.weight, P.visible_bias, P.hidden_bias, P.v_chain};
  const int64_t sizes[5] = {P.n * P.n_visible, P.n_hidden * P.n_visible, P.n_visible, P.n_hidden,
                            P.n_chains * P.n_visible};
  for (int a = 0; a < 5; ++a)
    if (!all_finite(reinterpret_cast<const T*>(ptrs[a]), sizes[a])) return a + 1;
  if (P.gaussian) {
    epoch<T, true>(P);
  } else {
    epoch<T, false>(P);
  }
  return 0;
}

}  // namespace

// 0, or 1 + the position of the first input with a non-finite value in (x, weight, visible_bias,
// hidden_bias, v_chain), in which case nothing is computed: the op's non-finite policy, checked
// here in one single-threaded pass rather than by torch.isfinite (whose 2-thread pool stalled
// for milliseconds per call on the loaded 2-core machine, more than the epoch itself).
int pcd_epoch(const PcdEpochParams& P) { return P.float64 ? checked_epoch<double>(P) : checked_epoch<float>(P); }

}  // namespace genfast
