// Nearest-code search of vector quantisation on CUDA, fused with the quantise epilogue (gather,
// per-code counts and sums by atomics). The arithmetic is the shared header
// csrc/include/genfast/vq_math.h (the CPU kernel calls the same functions, in the same order,
// so the fp32 scores and indices are bit-identical to the CPU's); this file maps threads to
// tiles. Two kernels: the per-code scale and bias (one thread per code), then the search: a
// block takes kBM rows of z and walks the whole codebook in kBN-code tiles staged through
// shared memory in kBD-wide slices of D; each thread keeps a kTM x kTN register tile and a
// running (min, argmin) for its kTM rows; the 16 threads sharing rows reduce by warp shuffles.
// The N x K matrix is never written. All math is fp32 FMAs (SIMT) for every input dtype.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "cuda_utils.cuh"
#include "genfast/vq_math.h"
#include "vq.h"

namespace genfast {
namespace {

// 16 x 16 threads, 4 x 4 outputs each: a 64-row x 64-code tile per block iteration, 16 FMAs per
// 8 shared-memory loads; the classic SIMT sgemm shape for 256-thread blocks. kBD = 16 slices of
// D keep the two staged tiles at 2 x 16 x 65 floats (8.3 KiB), so many blocks fit an SM.
constexpr int kTX = 16;
constexpr int kTY = 16;
constexpr int kThreads = kTX * kTY;
constexpr int kTM = 4;
constexpr int kTN = 4;
constexpr int kBM = kTY * kTM;
constexpr int kBN = kTX * kTN;
constexpr int kBD = 16;

template <typename T>
__global__ void vq_coeffs_kernel(const T* __restrict__ e,  // [k, d]
                                 int64_t k, int64_t d, bool cosine,
                                 const float* __restrict__ scaling,  // [3] (s, eps * s, 1 / s)
                                 float* __restrict__ scale,  // [k]
                                 float* __restrict__ bias) {  // [k]
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= k) return;
  float s, b;
  vq_code_coeffs<T>(e + c * d, d, cosine, vq_scaling(scaling), s, b);
  scale[c] = s;
  bias[c] = b;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    vq_search_kernel(const T* __restrict__ z,         // [n, d]
                     const T* __restrict__ e,         // [k, d]
                     const float* __restrict__ scale,  // [k]
                     const float* __restrict__ bias,   // [k]
                     const float* __restrict__ scaling,  // [3] (s, eps * s, 1 / s)
                     int64_t n, int64_t k, int64_t d, bool cosine,
                     int64_t* __restrict__ indices,  // [n]
                     float* __restrict__ distances,  // [n]
                     T* __restrict__ z_q,            // [n, d] or null
                     float* __restrict__ counts,     // [k] or null
                     float* __restrict__ sums) {     // [k, d] or null
  __shared__ float zs[kBD][kBM + 1];
  __shared__ float ws[kBD][kBN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % kTX;
  const int ty = tid / kTX;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const VQScaling sc = vq_scaling(scaling);

  float bv[kTM];
  int64_t bi[kTM];
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    bv[i] = INFINITY;
    bi[i] = 0;
  }

  for (int64_t k0 = 0; k0 < k; k0 += kBN) {
    float acc[kTM][kTN];
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t code = k0 + tx + kTX * j;
      const float b = code < k ? bias[code] : INFINITY;
#pragma unroll
      for (int i = 0; i < kTM; ++i) acc[i][j] = b;
    }
    for (int64_t d0 = 0; d0 < d; d0 += kBD) {
      // Stage z[row0 : row0 + kBM, d0 : d0 + kBD] and w = scale * e for the code tile, zero-padded:
      // consecutive threads read consecutive columns of a row (coalesced).
      for (int q = tid; q < kBM * kBD; q += kThreads) {
        const int r = q / kBD;
        const int dd = q % kBD;
        const int64_t row = row0 + r;
        const int64_t col = d0 + dd;
        zs[dd][r] = (row < n && col < d) ? load_f32<T>(z, row * d + col) * sc.s : 0.0f;
      }
      for (int q = tid; q < kBN * kBD; q += kThreads) {
        const int c = q / kBD;
        const int dd = q % kBD;
        const int64_t code = k0 + c;
        const int64_t col = d0 + dd;
        ws[dd][c] = (code < k && col < d) ? scale[code] * (load_f32<T>(e, code * d + col) * sc.s) : 0.0f;
      }
      __syncthreads();
      // Padded columns add fmaf(0, 0, acc) = acc exactly, so the sum equals the CPU's over d terms.
#pragma unroll
      for (int dd = 0; dd < kBD; ++dd) {
        float a[kTM], b[kTN];
#pragma unroll
        for (int i = 0; i < kTM; ++i) a[i] = zs[dd][ty + kTY * i];
#pragma unroll
        for (int j = 0; j < kTN; ++j) b[j] = ws[dd][tx + kTX * j];
#pragma unroll
        for (int i = 0; i < kTM; ++i)
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] = vq_score_term(acc[i][j], a[i], b[j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
#pragma unroll
      for (int j = 0; j < kTN; ++j) {
        const int64_t code = k0 + tx + kTX * j;
        if (code < k && vq_better(acc[i][j], code, bv[i], bi[i])) {
          bv[i] = acc[i][j];
          bi[i] = code;
        }
      }
    }
  }

  // The 16 threads of a ty group are 16 consecutive lanes of one warp: a butterfly over lane
  // offsets 8..1 leaves every lane with the group's best (vq_better is a total order).
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int off = kTX / 2; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv[i], off);
      const long long oi = __shfl_xor_sync(0xffffffffu, static_cast<long long>(bi[i]), off);
      if (vq_better(ov, oi, bv[i], bi[i])) {
        bv[i] = ov;
        bi[i] = oi;
      }
    }
  }

  // Epilogue (no more shuffles below, so threads may diverge).
  for (int i = 0; i < kTM; ++i) {
    const int64_t row = row0 + ty + kTY * i;
    if (row >= n) continue;
    const int64_t idx = bi[i];
    const T* zr = z + row * d;
    const T* er = e + idx * d;
    if (tx == 0) {
      indices[row] = idx;
      distances[row] = vq_final_distance<T>(zr, er, d, cosine, sc);
      if (counts) atomicAdd(counts + idx, 1.0f);
    }
    if (z_q) {
      for (int64_t j = tx; j < d; j += kTX) z_q[row * d + j] = er[j];
    }
    if (sums) {
      for (int64_t j = tx; j < d; j += kTX) atomicAdd(sums + idx * d + j, load_f32<T>(zr, j));
    }
  }
}

template <typename T>
void launch(const VqParams& P, cudaStream_t s) {
  const int64_t n = P.n, k = P.k, d = P.d;
  const bool cosine = P.cosine;
  const T* zp = reinterpret_cast<const T*>(P.z);
  const T* ep = reinterpret_cast<const T*>(P.codebook);
  float* scale = reinterpret_cast<float*>(P.workspace);
  float* bias = scale + k;
  const float* scl = reinterpret_cast<const float*>(P.scaling);
  const int64_t cblocks = ceil_div(k, 256);
  const int64_t sblocks = ceil_div(n, kBM);
  if (cblocks > INT_MAX || sblocks > INT_MAX) throw std::runtime_error("genfast vq_quantize_cuda: tensor too large");
  vq_coeffs_kernel<T><<<static_cast<unsigned>(cblocks), 256, 0, s>>>(ep, k, d, cosine, scl, scale, bias);
  cuda_check_launch("vq_quantize (code coefficients)");
  vq_search_kernel<T><<<static_cast<unsigned>(sblocks), kThreads, 0, s>>>(
      zp, ep, scale, bias, scl, n, k, d, cosine, reinterpret_cast<int64_t*>(P.indices),
      reinterpret_cast<float*>(P.distances), reinterpret_cast<T*>(P.z_q), reinterpret_cast<float*>(P.counts),
      reinterpret_cast<float*>(P.sums));
  cuda_check_launch("vq_quantize (search)");
}

}  // namespace

void vq_quantize_cuda(const VqParams& P, uint64_t stream) {
  if (P.n <= 0) return;
  if (P.k <= 0 || P.d <= 0) throw std::invalid_argument("genfast vq_quantize_cuda: empty codebook");
  if (P.k > INT_MAX) throw std::invalid_argument("genfast vq_quantize_cuda: more than 2^31 - 1 codes");
  cudaStream_t s = as_stream(stream);
  dispatch_dtype(P.dtype, "genfast vq_quantize_cuda", [&](auto t) { launch<tag_type<decltype(t)>>(P, s); });
}

}  // namespace genfast
