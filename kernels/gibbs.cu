// k steps of block Gibbs sampling in an RBM on CUDA, the whole chain in one launch. The
// arithmetic and the Philox counters are the shared header csrc/include/genfast/gibbs_math.h
// (the CPU kernel calls the same functions); specification: genfast/reference/gibbs.py.
//
// Each thread block owns kBM chains for all k steps. A half-step is the product
// state[kBM, K] @ M[K, N] (hidden: K = V, N = H, M = W^T; visible: K = H, N = V, M = W) in
// kBN-wide column tiles, staged through shared memory in kBK-deep slices; W is read through L2
// (0.8 MB in fp32 at V=784, H=256: it stays resident for the whole launch). Each chain's float32
// state lives in a [B, V + H] scratch row that only its block touches (L1/L2 resident);
// __syncthreads() between half-steps makes the block's global writes visible to the block.
//
// This file also holds the one host entry point of both CUDA Gibbs kernels (gibbs_cuda, at the
// end); the tensor-core kernel is kernels/gibbs_mma.cu.
#include "cuda_utils.cuh"
#include "genfast/gibbs_math.h"
#include "genfast/philox.h"
#include "gibbs.h"
#include "gibbs_args.cuh"

namespace genfast {
namespace {

// 4 row pairs x 64 column lanes, 2 x 4 outputs a thread, 8 chains a block (docs/kernels/gibbs.md; not swept).
constexpr int kThreads = 256;
constexpr int kBM = 8;
constexpr int kBN = 256;
constexpr int kBK = 32;
constexpr int kRowsPerThread = 2;
constexpr int kColsPerThread = 4;
constexpr int kLanes = 64;
static_assert(kThreads == (kBM / kRowsPerThread) * kLanes, "thread layout");
static_assert(kBN == kLanes * kColsPerThread, "column layout");
static_assert(kBM * kBK == kThreads, "one state element per thread per slice");

using GibbsArgs = GibbsIO;  // the SIMT kernel needs nothing more

// acc[r][q] for rows row0 + 2 rg + r, columns n0 + lane + 64 q, of one half-step's product.
// kHidden: A = v part of the state (or v_in at step 0), M = W^T; else A = h part, M = W.
template <typename T, bool kHidden>
__device__ __forceinline__ void tile_product(const GibbsArgs& P, int64_t row0, int64_t n0, bool from_input,
                                             float (*As)[kBK], float (*Ws)[kBN + 1],
                                             float acc[kRowsPerThread][kColsPerThread]) {
  const int t = threadIdx.x;
  const int rg = t / kLanes, lane = t % kLanes;
  const int64_t K = kHidden ? P.V : P.H;
  const int64_t N = kHidden ? P.H : P.V;
  const int64_t ld = P.V + P.H;
  const T* W = static_cast<const T*>(P.weight);
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int q = 0; q < kColsPerThread; ++q) acc[r][q] = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    {  // state slice: one element per thread
      const int r = t / kBK, kk = t % kBK;
      const int64_t row = row0 + r, kg = k0 + kk;
      float a = 0.0f;
      if (row < P.B && kg < K) {
        if (kHidden && from_input) {
          a = load_f32<T>(static_cast<const T*>(P.v_in), row * P.V + kg);
        } else {
          a = P.state[row * ld + (kHidden ? 0 : P.V) + kg];
        }
      }
      As[r][kk] = a;
    }
    // weight slice [kBK, kBN], coalesced along W's contiguous (visible) dimension
#pragma unroll 4
    for (int e = t; e < kBK * kBN; e += kThreads) {
      int kk, c;
      int64_t src;
      bool ok;
      if (kHidden) {  // M[kg, n] = W[n, kg]: consecutive threads walk kg
        kk = e % kBK;
        c = e / kBK;
        ok = n0 + c < N && k0 + kk < K;
        src = (n0 + c) * P.V + (k0 + kk);
      } else {  // M[kg, n] = W[kg, n]: consecutive threads walk n
        c = e % kBN;
        kk = e / kBN;
        ok = n0 + c < N && k0 + kk < K;
        src = (k0 + kk) * P.V + (n0 + c);
      }
      Ws[kk][c] = ok ? load_f32<T>(W, src) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kBK; ++kk) {
      float a[kRowsPerThread];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) a[r] = As[rg * kRowsPerThread + r][kk];
#pragma unroll
      for (int q = 0; q < kColsPerThread; ++q) {
        const float w = Ws[kk][lane + kLanes * q];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) acc[r][q] = fmaf(a[r], w, acc[r][q]);
      }
    }
    __syncthreads();  // the slices are overwritten by the next iteration
  }
}

// The epilogue of one half-step's column tile n0 (hidden: N = H; visible: N = V): each in-range
// unit of acc (rows row0 + 2 rg + r, columns n0 + lane + 64 q) gets its probability (Gaussian:
// mean) and its draw, written to the chain state and, on the last step, to the outputs.
template <typename T, bool kHidden, bool kGaussian>
__device__ __forceinline__ void tile_epilogue(const GibbsArgs& P, int64_t row0, int64_t n0, uint64_t seed,
                                              uint64_t base, bool last,
                                              const float acc[kRowsPerThread][kColsPerThread]) {
  const int t = threadIdx.x;
  const int rg = t / kLanes, lane = t % kLanes;
  const int64_t N = kHidden ? P.H : P.V;
  const int64_t ld = P.V + P.H;
  const int64_t col0 = kHidden ? P.V : 0;  // where this layer starts in a state row
  const T* bias = static_cast<const T*>(kHidden ? P.hbias : P.vbias);
  T* out = static_cast<T*>(kHidden ? P.h_out : P.v_out);
  T* prob = static_cast<T*>(kHidden ? P.h_prob : P.v_prob);
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t row = row0 + rg * kRowsPerThread + r;
#pragma unroll
    for (int q = 0; q < kColsPerThread; ++q) {
      const int64_t j = n0 + lane + kLanes * q;
      if (row >= P.B || j >= N) continue;
      float p, x;
      if constexpr (kHidden) {
        p = gibbs_hidden_prob(acc[r][q], load_f32<T>(bias, j), P.inv_sigma);
        x = gibbs_draw<false>(gibbs_random<false>(seed, gibbs_hidden_counter(base, P.H, row, j)), p, 1.0f);
      } else {
        p = gibbs_visible_mean<kGaussian>(acc[r][q], load_f32<T>(bias, j), P.sigma);
        x = gibbs_draw<kGaussian>(gibbs_random<kGaussian>(seed, gibbs_visible_counter(base, P.B, P.V, P.H, row, j)),
                                  p, P.sigma);
      }
      P.state[row * ld + col0 + j] = x;
      if (last) {
        store_f32<T>(out, row * N + j, x);
        store_f32<T>(prob, row * N + j, p);
      }
    }
  }
}

template <typename T, bool kGaussian>
__global__ void __launch_bounds__(kThreads) gibbs_kernel(const GibbsArgs P) {
  __shared__ float As[kBM][kBK];
  __shared__ float Ws[kBK][kBN + 1];  // +1: the transposed (hidden) fill is conflict-free
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const uint64_t seed = static_cast<uint64_t>(P.philox[0]);
  const uint64_t offset = static_cast<uint64_t>(P.philox[1]);
  float acc[kRowsPerThread][kColsPerThread];
  for (int64_t s = 0; s < P.k; ++s) {
    const bool last = s + 1 == P.k;
    const uint64_t base = gibbs_step_base(offset, s, P.B, P.V, P.H);
    // hidden half-step
    for (int64_t n0 = 0; n0 < P.H; n0 += kBN) {
      tile_product<T, true>(P, row0, n0, s == 0, As, Ws, acc);
      tile_epilogue<T, true, kGaussian>(P, row0, n0, seed, base, last, acc);
    }
    __syncthreads();  // h complete before the visible half-step reads it
    // visible half-step
    for (int64_t n0 = 0; n0 < P.V; n0 += kBN) {
      tile_product<T, false>(P, row0, n0, false, As, Ws, acc);
      tile_epilogue<T, false, kGaussian>(P, row0, n0, seed, base, last, acc);
    }
    __syncthreads();  // v complete before the next hidden half-step reads it
  }
}

}  // namespace

template <typename T>
void launch_gibbs_simt(const GibbsIO& P, bool gaussian, cudaStream_t s) {
  const int64_t blocks = ceil_div(P.B, kBM);
  if (blocks > 2147483647LL) throw std::runtime_error("genfast gibbs_cuda: batch too large");
  if (gaussian) {
    gibbs_kernel<T, true><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(P);
  } else {
    gibbs_kernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(P);
  }
  cuda_check_launch("gibbs");
}
template void launch_gibbs_simt<float>(const GibbsIO&, bool, cudaStream_t);
template void launch_gibbs_simt<half_t>(const GibbsIO&, bool, cudaStream_t);
template void launch_gibbs_simt<bf16_t>(const GibbsIO&, bool, cudaStream_t);

void gibbs_cuda(const GibbsParams& params, GibbsKernel kernel, uint64_t stream) {
  GibbsIO P{};
  if (!gibbs_io(P, params)) return;
  cudaStream_t s = as_stream(stream);
  dispatch_dtype(params.dtype, "genfast gibbs_cuda", [&](auto t) {
    using T = tag_type<decltype(t)>;
    if (kernel == GibbsKernel::kMma) {
      launch_gibbs_mma<T>(P, params.gaussian, s);
    } else {
      launch_gibbs_simt<T>(P, params.gaussian, s);
    }
  });
}

}  // namespace genfast
