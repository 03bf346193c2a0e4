// k steps of block Gibbs sampling in an RBM on the CPU, the whole chain in C++ (no Python in
// the loop). Arithmetic and counters: csrc/include/genfast/gibbs_math.h (shared with
// kernels/gibbs.cu); specification: genfast/reference/gibbs.py; design and tuning sweeps:
// docs/kernels/gibbs.md.
//
// Chains are independent: each OpenMP task owns a block of chains (rows) and runs all k steps on
// them with no synchronisation. A half-step is a product state[R, K] @ M[K, N] (hidden: M = W^T,
// visible: M = W, packed in 16-column panels: csrc/gibbs/packed_weight.h) and a fused epilogue
// (bias, sigmoid, the Philox draws of 16 rows at once, compare) on each finished 16-column strip.
// Binary states are not multiplied but summed as bits (csrc/gibbs/binary_operand.h); real ones
// (Gaussian visible units, real v_in, or any state when W is not finite, where skipping zeros
// would drop a 0 * inf) go through the dense micro-kernel (csrc/gibbs/micro_kernel.h). The forms
// sum in different orders, which the reference's comparison rule allows.
#include <pybind11/pybind11.h>

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "genfast/gibbs_math.h"
#include "genfast/philox_cpu.h"
#include "genfast/simd16.h"
#include "gibbs_cpu.h"
#include "gibbs/binary_operand.h"
#include "gibbs/micro_kernel.h"
#include "gibbs/packed_weight.h"

namespace genfast {
namespace {

// Rows per task: ceil(B / 8) within [48, 256], a function of B alone (docs/kernels/gibbs.md, task_rows).
constexpr int64_t kMinTasks = 8;
constexpr int64_t kMinTaskRows = 48;
constexpr int64_t kMaxTaskRows = 256;
inline int64_t task_rows(int64_t B) {
  return std::min(kMaxTaskRows, std::max(kMinTaskRows, (B + kMinTasks - 1) / kMinTasks));
}
// Smallest call (k B V H multiply-adds, ~0.25 ms on one thread) worth a parallel region, whose
// join can stall on a descheduled worker: set from two measurements, not swept.
constexpr double kParallelWork = 16777216.0;

struct Plan {
  int64_t B, V, H, k;
  bool gaussian;
  float sigma, inv_sigma;
  uint64_t seed, offset;
};

// store16 for the outputs, which nothing reads again in the call: a float32 strip on a 64-byte
// boundary is one whole cache line, written by a non-temporal store that skips reading the line
// first (k = 1 calls 9% faster); fp16 / bf16 strips are half a line and gained nothing. Ordered by
// the _mm_sfence at the end of each task (gibbs_rows).
template <typename T>
inline void store16_streaming(T* dst, const float* x, int m) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    if (m == kNR && (reinterpret_cast<uintptr_t>(dst) & 63) == 0) return _mm512_stream_ps(dst, _mm512_loadu_ps(x));
  }
#endif
  store16(dst, x, m);
}

// Per-thread scratch, reused across calls (no page faults per call).
struct Scratch {
  std::vector<float> av, ah;
  AlignedFloats x;
  BinaryOperand lv, lh;
  AlignedFloats tab;
};
// Not inlined: GCC otherwise recomputes the thread_local's address through __tls_get_addr calls
// inside the loops of the functions that take its members (a step took 7.0 instead of 6.0 ms).
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
// four numbers.
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

// Rows per epilogue batch (gathers, then their Philox words together, then their draws): 16 was
// best or within noise of 8, 24 and 48 at H = 256 and 1024.
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
      store16_streaming(out.sample + b * N + n0, sm, m);
      store16_streaming(out.prob + b * N + n0, pr, m);
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

// One half-step of the R rows of a task from the states of one layer (hidden: v, K = V; visible: h,
// K = H), binary (in the bits of its BinaryOperand, sparse_in) or dense (its packed panel), to the
// other (N units), drawn into its bits (sparse_out) or its packed panel and, on the last step, into
// the outputs (sample non-null).
template <typename T, bool kHidden, bool kGaussian>
inline void half_step(const Plan& P, int64_t row0, int64_t R, Scratch& s, bool sparse_in, bool sparse_out,
                      const float* M, T* sample, T* prob, const float* bias, uint64_t step_base) {
  const int64_t K = kHidden ? P.V : P.H, N = kHidden ? P.H : P.V;
  BinaryOperand& in_bits = kHidden ? s.lv : s.lh;
  BinaryOperand& out_bits = kHidden ? s.lh : s.lv;
  float* in_dense = (kHidden ? s.av : s.ah).data();
  float* out_dense = (kHidden ? s.ah : s.av).data();
  if (sparse_out) out_bits.reset(R, N);
  const HalfOut<T> out{sparse_out ? &out_bits : nullptr, sparse_out ? nullptr : out_dense, sample, prob, bias};
  if (sparse_in) {
    in_bits.prepare(R);
    sparse_half_step<T, kHidden, kGaussian>(P, row0, R, in_bits, K, N, M, s.x.data(), s.tab.data(), out, step_base);
  } else {
    dense_half_step<T, kHidden, kGaussian>(P, row0, R, in_dense, K, N, M, s.x.data(), out, step_base);
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
    half_step<T, true, kGaussian>(P, row0, R, s, sparse_v, sparse_h, Mh, last ? h_out : nullptr, h_prob, hbias,
                                  base);
    sparse_v = sparse_v_drawn;
    half_step<T, false, kGaussian>(P, row0, R, s, sparse_h, sparse_v, Mv, last ? v_out : nullptr, v_prob, vbias,
                                   base);
  }
#if defined(__AVX512F__)
  _mm_sfence();  // the outputs' streaming stores (store16_streaming) before the caller reads them
#endif
}

template <typename T>
void gibbs_typed(const Plan& P, const GibbsParams& G) {
  const T* W = reinterpret_cast<const T*>(G.weight);  // [H, V]
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
  for (int64_t i = 0; i < V; ++i) vb[i] = load_f32<T>(reinterpret_cast<const T*>(G.visible_bias), i);
  for (int64_t j = 0; j < H; ++j) hb[j] = load_f32<T>(reinterpret_cast<const T*>(G.hidden_bias), j);
  const int64_t rows = task_rows(P.B);
  const int64_t ntasks = (P.B + rows - 1) / rows;
#if defined(GENFAST_WITH_OPENMP)
  const bool parallel = ntasks > 1 && static_cast<double>(P.k) * P.B * V * H >= kParallelWork;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
#endif
  for (int64_t task = 0; task < ntasks; ++task) {
    const int64_t row0 = task * rows;
    const int64_t R = std::min(rows, P.B - row0);
    const T* vi = reinterpret_cast<const T*>(G.v_in);
    T* vo = reinterpret_cast<T*>(G.v_out);
    T* ho = reinterpret_cast<T*>(G.h_out);
    T* vp = reinterpret_cast<T*>(G.v_prob);
    T* hp = reinterpret_cast<T*>(G.h_prob);
    if (P.gaussian) {
      gibbs_rows<T, true>(P, w_finite, vi, vb.data(), hb.data(), Mh, Mv, vo, ho, vp, hp, row0, R);
    } else {
      gibbs_rows<T, false>(P, w_finite, vi, vb.data(), hb.data(), Mh, Mv, vo, ho, vp, hp, row0, R);
    }
  }
}

}  // namespace

void gibbs(const GibbsParams& G) {
  if (G.batch <= 0 || G.k <= 0) return;
  if (G.n_visible <= 0 || G.n_hidden <= 0) {
    throw pybind11::value_error("genfast._C.gibbs: n_visible and n_hidden must be >= 1");
  }
  const int64_t* ph = reinterpret_cast<const int64_t*>(G.philox);
  const float sigma = G.gaussian ? G.sigma : 1.0f;
  const Plan P{G.batch, G.n_visible, G.n_hidden, G.k, G.gaussian, sigma, 1.0f / sigma,
               static_cast<uint64_t>(ph[0]), static_cast<uint64_t>(ph[1])};
  dispatch_dtype(G.dtype, "genfast._C.gibbs", [&](auto t) { gibbs_typed<tag_type<decltype(t)>>(P, G); });
}

GibbsPackStats gibbs_pack_stats() {
  const PackedWeight& p = packed_weight();
  return {p.hits, p.misses};
}

}  // namespace genfast
