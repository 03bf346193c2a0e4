// k steps of block Gibbs sampling in an RBM on the CPU, the whole chain in C++ (no Python in
// the loop). Arithmetic and counters: csrc/include/genfast/gibbs_math.h (shared with
// kernels/gibbs.cu); specification: genfast/reference/gibbs.py.
//
// Chains are independent, so each OpenMP task owns a block of chains (rows) and runs all k
// steps on them with no synchronisation. Each half-step is a product state[R, K] @ M[K, N]
// (hidden: K = V, N = H, M = W^T; visible: K = H, N = V, M = W) by a cache-blocked 6 x 16 FMA
// micro-kernel (the BLIS design: Van Zee and van de Geijn 2015), whose epilogue applies the
// bias, the sigmoid, 16 Philox draws at once (philox_cpu.h) and the compare, and writes the
// samples straight into the packed operand of the next product.
#include <pybind11/pybind11.h>

#include <math.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "genfast/gibbs_math.h"
#include "genfast/parallel.h"
#include "genfast/philox_cpu.h"
#include "genfast/registry.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace genfast {
namespace {

// Micro-tile: 6 rows x 16 columns = 12 ymm accumulators + 2 for M + 1 broadcast (of 16
// registers), the BLIS haswell sgemm shape; one Philox block16 covers one tile row.
constexpr int kMR = 6;
constexpr int kNR = 16;
// K blocking: a 16-column panel of M for kc <= 256 rows is 16 KiB and stays in L1 (32 KiB)
// while every micro-tile of the row block streams past it (the BLIS kc rule: the kc x 16 panel
// of M plus one 6 x kc panel of the states fill about half of L1). Not swept: the machine was
// too loaded (load average 12-13 on 2 cores) for timings that separate kc choices.
constexpr int64_t kKC = 256;
// Rows per task: 48 (8 micro-tiles) makes 21 tasks at B = 1000, handed out dynamically, so a
// preempted thread (the 2-core machines are shared) does not hold up a static half of the
// batch. The packed states of a task (48 x 1040 floats, 200 KiB) stay in L2 (1 MiB per core on
// the EPYC here) next to the packed W^T (800 KiB). Not A/B-timed against static 120-row tasks:
// at load average 7-13 both ran 3.3-3.7x faster than the eager loop in the same run.
constexpr int64_t kTaskRows = 48;

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

// Per-thread scratch, reused across calls (no page faults per call).
struct Scratch {
  std::vector<float> av, ah, x;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// Where the epilogue of one half-step writes: the packed operand of the next product, and on
// the last step the outputs (dtype T), for rows [row0, row0 + R).
template <typename T>
struct HalfOut {
  float* packed;       // [tiles][N][6]: the sampled states, operand of the next product
  T* sample;           // [B, N] or nullptr (not the last step)
  T* prob;             // [B, N] or nullptr
  const T* bias;       // [N]
};

// One half-step for the R rows of a task: X = A @ M, then the fused epilogue.
template <typename T, bool kHidden, bool kGaussian>
void half_step(const Plan& P, int64_t row0, int64_t R, const float* A, int64_t K, int64_t N,
               const float* M, float* X, const HalfOut<T>& out, uint64_t step_base) {
  const int64_t tiles = (R + kMR - 1) / kMR;
  const int64_t np = (N + kNR - 1) / kNR;
  const int64_t ldx = np * kNR;
  const int64_t nkb = (K + kKC - 1) / kKC;
  const int64_t kc = (K + nkb - 1) / nkb;  // balanced K blocks
  alignas(64) uint32_t w0[kPhiloxBlock], w1[kPhiloxBlock];
  for (int64_t jp = 0; jp < np; ++jp) {
    const float* Mp = M + jp * K * kNR;
    for (int64_t p0 = 0; p0 < K; p0 += kc) {
      const int64_t kcur = std::min(kc, K - p0);
      const bool last_k = p0 + kcur == K;
      for (int64_t t = 0; t < tiles; ++t) {
        float* Ct = X + t * kMR * ldx + jp * kNR;
        micro_kernel(kcur, A + (t * K + p0) * kMR, Mp + p0 * kNR, Ct, ldx, p0 > 0);
        if (!last_k) continue;
        // Epilogue on the finished 6 x 16 tile while it is in L1.
        const int64_t n0 = jp * kNR;
        const int m = static_cast<int>(std::min<int64_t>(kNR, N - n0));
        for (int r = 0; r < kMR; ++r) {
          const int64_t lr = t * kMR + r;
          if (lr >= R) break;
          const int64_t b = row0 + lr;
          const uint64_t ctr = kHidden ? gibbs_hidden_counter(step_base, P.H, b, n0)
                                       : gibbs_visible_counter(step_base, P.B, P.V, P.H, b, n0);
          philox_block16(P.seed, ctr, w0, w1);
          const float* xr = Ct + r * ldx;
          float* pk = out.packed + (t * N + n0) * kMR + r;
          alignas(64) float pr[kNR], sm[kNR];
#pragma GCC ivdep
          for (int l = 0; l < kNR; ++l) {
            const float bias = l < m ? load_f32<T>(out.bias, n0 + l) : 0.0f;
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
          for (int l = 0; l < m; ++l) pk[l * kMR] = sm[l];
          if (out.sample) {
            for (int l = 0; l < m; ++l) {
              store_f32<T>(out.sample, b * N + n0 + l, sm[l]);
              store_f32<T>(out.prob, b * N + n0 + l, pr[l]);
            }
          }
        }
      }
    }
  }
}

template <typename T, bool kGaussian>
void gibbs_rows(const Plan& P, const T* v_in, const T* vbias, const T* hbias, const float* Mh,
                const float* Mv, T* v_out, T* h_out, T* v_prob, T* h_prob, int64_t row0, int64_t R) {
  const int64_t V = P.V, H = P.H;
  const int64_t tiles = (R + kMR - 1) / kMR;
  Scratch& s = scratch();
  s.av.assign(static_cast<size_t>(tiles * V * kMR), 0.0f);
  s.ah.assign(static_cast<size_t>(tiles * H * kMR), 0.0f);
  const int64_t ldx = ((std::max(V, H) + kNR - 1) / kNR) * kNR;
  if (static_cast<int64_t>(s.x.size()) < tiles * kMR * ldx) s.x.resize(static_cast<size_t>(tiles * kMR * ldx));
  for (int64_t lr = 0; lr < R; ++lr) {
    float* pk = s.av.data() + (lr / kMR) * V * kMR + lr % kMR;
    const T* src = v_in + (row0 + lr) * V;
    for (int64_t i = 0; i < V; ++i) pk[i * kMR] = load_f32<T>(src, i);
  }
  for (int64_t step = 0; step < P.k; ++step) {
    const bool last = step + 1 == P.k;
    const uint64_t base = gibbs_step_base(P.offset, step, P.B, V, H);
    HalfOut<T> ho{s.ah.data(), last ? h_out : nullptr, h_prob, hbias};
    half_step<T, true, kGaussian>(P, row0, R, s.av.data(), V, H, Mh, s.x.data(), ho, base);
    HalfOut<T> vo{s.av.data(), last ? v_out : nullptr, v_prob, vbias};
    half_step<T, false, kGaussian>(P, row0, R, s.ah.data(), H, V, Mv, s.x.data(), vo, base);
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
  const int64_t rows = kTaskRows;
  const int64_t ntasks = (P.B + rows - 1) / rows;
#if defined(GENFAST_WITH_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) if (ntasks > 1)
#endif
  for (int64_t task = 0; task < ntasks; ++task) {
    {
      const int64_t row0 = task * rows;
      const int64_t R = std::min(rows, P.B - row0);
      const T* vi = reinterpret_cast<const T*>(v_in);
      const T* vb = reinterpret_cast<const T*>(vbias);
      const T* hb = reinterpret_cast<const T*>(hbias);
      T* vo = reinterpret_cast<T*>(v_out);
      T* ho = reinterpret_cast<T*>(h_out);
      T* vp = reinterpret_cast<T*>(v_prob);
      T* hp = reinterpret_cast<T*>(h_prob);
      if (P.gaussian) {
        gibbs_rows<T, true>(P, vi, vb, hb, Mh.data(), Mv.data(), vo, ho, vp, hp, row0, R);
      } else {
        gibbs_rows<T, false>(P, vi, vb, hb, Mh.data(), Mv.data(), vo, ho, vp, hp, row0, R);
      }
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
