// k steps of block Gibbs sampling in an RBM on CUDA on the tensor cores (GibbsKernel::kMma of
// kernels/gibbs.h, opt-in; the default is the SIMT kernel of kernels/gibbs.cu), the whole chain in
// one launch. The epilogue's arithmetic (sigmoid, Philox counters and draws) is the shared header
// csrc/include/genfast/gibbs_math.h; specification: genfast/reference/gibbs.py.
//
// A tile of kBM = 16 chains is owned for all k steps by one thread block, or on sm_90 by a cluster
// of two. A half-step is C[16, N] = A[16, K] @ M[K, N] by mma.sync.m16n8k16 on bf16 terms of the
// float32 operands (three terms of W, one or three of the state: float32 accuracy), the warps of
// the tile sharing N; W streams from L2 straight into fragment registers
// (kernels/gibbs_mma_operands.cuh), the state operand lives in shared memory. The design, the
// accuracy argument and the expected cost are in docs/kernels/gibbs.md.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "cuda_utils.cuh"
#include "genfast/gibbs_math.h"
#include "genfast/philox.h"
#include "gibbs_args.cuh"
#include "gibbs_mma_operands.cuh"

namespace genfast {
namespace {

// kBM = 16 chains per tile, the M of mma.m16n8k16: each bf16 term of a W element serves all 16
// chains. 8 warps (256 threads) per CTA with up to 255 registers each. Not swept.
constexpr int kBM = 16;
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
// Epilogue scratch per warp: 16 rows x 40 floats (NT = 4, hidden: row stride 40 makes the
// fragments' 8-byte stores conflict-free), 16 x 32 with an XOR swizzle (NT = 4, visible), or
// 16 x 8 (NT = 1).
constexpr int kCsWarpFloats = 16 * 40;
constexpr int kCsBytes = kWarps * kCsWarpFloats * 4;
constexpr uint16_t kBf16One = 0x3f80;  // bf16 bits of 1.0

// GibbsIO (kernels/gibbs_args.cuh; its state scratch is used in chunked mode only) plus:
struct GibbsArgs : GibbsIO {
  int resident;          // 1: the state operands live in shared memory (docs/kernels/gibbs.md)
  int rsv, rsh;          // resident: row-pair strides (32-bit words) of the v and h buffers
  int rsc;               // chunked: row-pair stride of the staging buffer
  int64_t kc;            // chunked: K chunk, a multiple of 64
  int csize;             // CTAs per chain tile: 2 = a thread-block cluster (sm_90, resident mode)
  int gaussian;          // 1: Gaussian visible units (block-uniform branch, not a template: it
                         // only changes the epilogue and would double the compile time)
};

// ------------------------------------------------------------------ epilogue

// Column (within the sub-item) of fragment column c of tile j: hidden tiles are 8 consecutive W
// rows; visible fragment column c of tile j is the physical column NT c + j (vector loads).
template <bool kHidden, int NT>
__device__ __forceinline__ int sub_col(int j, int c) {
  return kHidden ? 8 * j + c : NT * c + j;
}
// Scratch index of (row, column): see kCsWarpFloats.
template <bool kHidden, int NT>
__device__ __forceinline__ int cs_index(int r, int c) {
  if constexpr (NT == 1) return r * 8 + c;
  if constexpr (kHidden) return r * 40 + c;
  return r * 32 + (c ^ (r & 7));
}

// The Philox key, read where it is used: a volatile load is not hoisted, so the compiler does not
// keep the key schedule of all 10 rounds live in registers across the whole kernel.
__device__ __forceinline__ uint64_t load_seed(const int64_t* philox) {
  uint64_t x;
  asm volatile("ld.global.nc.u64 %0, [%1];" : "=l"(x) : "l"(philox));
  return x;
}

// The draws of one sub-item (16 rows x 8 NT columns from n0). Resident mode writes the drawn
// states into the A buffer of the next product (Anext: term 0, row-pair stride rs words).
// In a 2-CTA cluster the states go to the partner's buffer (Aremote) as well.
template <typename T, bool kGaussian, bool kHidden, int NT>
__device__ __forceinline__ void epilogue(const GibbsArgs& P, const float (&acc)[4][4], float* Cs, uint16_t* Anext,
                                         uint16_t* Aremote, int rs, int64_t row0, int64_t n0, uint64_t base,
                                         bool last, int lane) {
  const int g = lane >> 2, q = lane & 3;
  const uint64_t seed = load_seed(P.philox);
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int r = g + 8 * hr;
      if constexpr (kHidden || NT == 1) {  // columns 2q, 2q + 1 are adjacent: one 8-byte store
        *reinterpret_cast<float2*>(&Cs[cs_index<kHidden, NT>(r, sub_col<kHidden, NT>(j, 2 * q))]) =
            make_float2(acc[j][2 * hr], acc[j][2 * hr + 1]);
      } else {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          Cs[cs_index<kHidden, NT>(r, sub_col<kHidden, NT>(j, 2 * q + e))] = acc[j][2 * hr + e];
        }
      }
    }
  }
  __syncwarp();
  constexpr int kCols = 8 * NT;
  const int64_t ld = P.V + P.H;
  const int64_t N = kHidden ? P.H : P.V;
  const int ts = 16 * rs;  // term stride in bf16 units
#pragma unroll 2
  for (int e = lane; e < kBM * kCols; e += 32) {
    const int r = e / kCols, c = e % kCols;
    const int64_t row = row0 + r, col = n0 + c;
    if (row >= P.B || col >= N) continue;
    const float a = Cs[cs_index<kHidden, NT>(r, c)];
    if constexpr (kHidden) {
      const float p = gibbs_hidden_prob(a, load_f32<T>(static_cast<const T*>(P.hbias), col), P.inv_sigma);
      const float u = gibbs_random<false>(seed, gibbs_hidden_counter(base, P.H, row, col));
      const float h = gibbs_draw<false>(u, p, 1.0f);
      if (P.resident) {
        const int i = a_index(r, static_cast<int>(col), rs);
        const uint16_t b = h != 0.0f ? kBf16One : 0;
        Anext[i] = b;
        if (Aremote) Aremote[i] = b;
      } else {
        P.state[row * ld + P.V + col] = h;
      }
      if (last) {
        store_f32<T>(static_cast<T*>(P.h_out), row * P.H + col, h);
        store_f32<T>(static_cast<T*>(P.h_prob), row * P.H + col, p);
      }
    } else {
      const float m = gibbs_visible_mean<kGaussian>(a, load_f32<T>(static_cast<const T*>(P.vbias), col), P.sigma);
      // (the draw is named u, not r: r is the tile row, used by a_index below)
      const float u = gibbs_random<kGaussian>(seed, gibbs_visible_counter(base, P.B, P.V, P.H, row, col));
      const float v = gibbs_draw<kGaussian>(u, m, P.sigma);
      if (P.resident) {
        const int i = a_index(r, static_cast<int>(col), rs);
        if constexpr (kGaussian) {
          uint16_t t1, t2, t3;
          split_state(v, t1, t2, t3);
          Anext[i] = t1;
          Anext[ts + i] = t2;
          Anext[2 * ts + i] = t3;
          if (Aremote) {
            Aremote[i] = t1;
            Aremote[ts + i] = t2;
            Aremote[2 * ts + i] = t3;
          }
        } else {  // 0/1: the next hidden product reads term 0 only
          const uint16_t b = v != 0.0f ? kBf16One : 0;
          Anext[i] = b;
          if (Aremote) Aremote[i] = b;
        }
      } else {
        P.state[row * ld + col] = v;
      }
      if (last) {
        store_f32<T>(static_cast<T*>(P.v_out), row * P.V + col, v);
        store_f32<T>(static_cast<T*>(P.v_prob), row * P.V + col, m);
      }
    }
  }
  __syncwarp();  // the scratch tile is rewritten by the next sub-item
}

// ------------------------------------------------------------------ staging of A

// Columns [0, klen) of rows row0 .. row0 + 15 of src(row, kk) into the A buffer (three bf16
// terms by split_state, row-pair stride rs words, terms 8 rs words apart), zero-padded to a
// multiple of 16 columns and for rows >= B. Returns, for the whole block, whether any a2 or a3
// is non-zero (the states are not exact in bf16); the __syncthreads_or is also the barrier
// after the writes.
template <typename Src>
__device__ bool stage(uint16_t* A, int rs, int64_t row0, int64_t B, int klen, Src src) {
  const int kpad = (klen + 15) & ~15;
  const int ts = 16 * rs;
  int real = 0;
  for (int kk = threadIdx.x; kk < kpad; kk += kThreads) {
#pragma unroll 4
    for (int r = 0; r < kBM; ++r) {
      const int64_t row = row0 + r;
      const float a = (row < B && kk < klen) ? src(row, kk) : 0.0f;
      uint16_t t1, t2, t3;
      split_state(a, t1, t2, t3);
      const int i = a_index(r, kk, rs);
      A[i] = t1;
      A[ts + i] = t2;
      A[2 * ts + i] = t3;
      real |= (t2 | t3) & 0x7fff;
    }
  }
  return __syncthreads_or(real) != 0;
}

// ------------------------------------------------------------------ one half-step

// Sub-items of a warp that owns cnt tiles: cnt / 4 of 4 tiles, then cnt % 4 of 1 tile; the
// element-wise fallback (kVec = false) takes single tiles only (half the code to compile).
template <bool kVec>
__device__ __forceinline__ int sub_items(int cnt) { return kVec ? cnt / 4 + cnt % 4 : cnt; }

template <typename T, bool kVec, bool kHidden>
__device__ __forceinline__ void half_step(const GibbsArgs& P, int64_t s, uint32_t* Abuf, float* Cs, int64_t row0,
                                          int rank, uint64_t base) {
  // the tile's warps (kWarps per CTA, csize CTAs) share N
  const int warp = rank * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  const int nwarps = P.csize * kWarps;
  const int64_t K = kHidden ? P.V : P.H;
  const int64_t N = kHidden ? P.H : P.V;
  const bool last = s + 1 == P.k;
  const T* W = static_cast<const T*>(P.weight);
  const bool resident = P.resident != 0;
  const int64_t ld = P.V + P.H;

  // A of this product and, in resident mode, the buffer of the next product's A
  uint32_t* A;
  uint32_t* Anext;
  int rs, rs_next;
  int64_t kc;
  if (resident) {
    uint32_t* Av = Abuf;
    uint32_t* Ah = Abuf + 3 * 8 * P.rsv;
    A = kHidden ? Av : Ah;
    rs = kHidden ? P.rsv : P.rsh;
    Anext = kHidden ? Ah : Av;
    rs_next = kHidden ? P.rsh : P.rsv;
    kc = K;
  } else {
    A = Anext = Abuf;
    rs = rs_next = P.rsc;
    kc = P.kc;
  }
  const int ts = 8 * rs;
  const int64_t nchunks = (K + kc - 1) / kc;

  // A terms: h is 0/1; v is 0/1 for Bernoulli units after step 0, real for Gaussian ones;
  // v_in is checked when it is staged
  int at = 1;
  if (kHidden && s > 0) at = P.gaussian ? 3 : 1;
  if (kHidden && s == 0 && resident) {
    const T* vin = static_cast<const T*>(P.v_in);
    const int64_t V = P.V;
    __syncthreads();
    at = stage(reinterpret_cast<uint16_t*>(A), rs, row0, P.B, static_cast<int>(K),
               [=](int64_t row, int kk) { return load_f32<T>(vin, row * V + kk); })
             ? 3
             : 1;
  }

  // this warp's tiles [tb, tb + cnt) (32-bit: the host checks N < 2^31 - 8); every warp runs
  // the same number of rounds (chunked mode stages A with block barriers inside the round loop)
  const int tiles = static_cast<int>((N + 7) / 8);
  const int tb = static_cast<int>(static_cast<int64_t>(warp) * tiles / nwarps);
  const int cnt = static_cast<int>(static_cast<int64_t>(warp + 1) * tiles / nwarps) - tb;
  const int r_lo = sub_items<kVec>(tiles / nwarps), r_hi = sub_items<kVec>((tiles + nwarps - 1) / nwarps);
  const int rounds = r_lo > r_hi ? r_lo : r_hi;
  const int n4 = kVec ? cnt / 4 : 0;
  for (int r = 0; r < rounds; ++r) {
    int nt = 0;
    int t0 = 0;
    if (r < n4) {
      nt = 4;
      t0 = tb + 4 * r;
    } else if (r < sub_items<kVec>(cnt)) {
      nt = 1;
      t0 = tb + 4 * n4 + (r - n4);
    }
    const int64_t n0 = 8 * static_cast<int64_t>(t0);
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t kbeg = c * kc;
      const int klen = static_cast<int>(kc < K - kbeg ? kc : K - kbeg);
      if (!resident && (nchunks > 1 || r == 0)) {
        __syncthreads();  // every warp is done with the previous chunk
        bool real;
        uint16_t* A16 = reinterpret_cast<uint16_t*>(A);
        if (kHidden && s == 0) {
          const T* vin = static_cast<const T*>(P.v_in);
          const int64_t V = P.V;
          real = stage(A16, rs, row0, P.B, klen,
                       [=](int64_t row, int kk) { return load_f32<T>(vin, row * V + kbeg + kk); });
        } else {
          const float* st = P.state + (kHidden ? 0 : P.V) + kbeg;
          real = stage(A16, rs, row0, P.B, klen, [=](int64_t row, int kk) { return st[row * ld + kk]; });
        }
        at = kHidden && real ? 3 : 1;
      }
      if (kVec && nt == 4) {
        if (kHidden && at == 3) {
          mma_chunk_checked<T, kHidden, kVec ? 4 : 1, kHidden ? 3 : 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts,
                                                                             acc, lane);
        } else {
          mma_chunk_checked<T, kHidden, kVec ? 4 : 1, 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        }
      } else if (nt == 1) {
        if (kHidden && at == 3) {
          mma_chunk_checked<T, kHidden, 1, kHidden ? 3 : 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        } else {
          mma_chunk_checked<T, kHidden, 1, 1, kVec>(W, P.V, N, n0, kbeg, klen, A, rs, ts, acc, lane);
        }
      }
    }
    uint16_t* An16 = reinterpret_cast<uint16_t*>(Anext);
    uint16_t* Ar16 = P.csize > 1 ? cluster_map(An16, rank ^ 1) : nullptr;
    if (kVec && nt == 4) {
      if (!kHidden && P.gaussian) {
        epilogue<T, true, kHidden, 4>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      } else {
        epilogue<T, false, kHidden, 4>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      }
    } else if (nt == 1) {
      if (!kHidden && P.gaussian) {
        epilogue<T, true, kHidden, 1>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      } else {
        epilogue<T, false, kHidden, 1>(P, acc, Cs, An16, Ar16, rs_next, row0, n0, base, last, lane);
      }
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kThreads, 1) gibbs_kernel(const GibbsArgs P) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* Cs = reinterpret_cast<float*>(smem) + (threadIdx.x >> 5) * kCsWarpFloats;
  uint32_t* Abuf = reinterpret_cast<uint32_t*>(smem + kCsBytes);
  const int rank = P.csize > 1 ? cluster_rank() : 0;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x / P.csize) * kBM;
  const uint64_t offset = static_cast<uint64_t>(P.philox[1]);
  // zero A: its padding columns and the rows past B must hold 0 (0 * garbage could be NaN);
  // in a cluster, before the partner may write into it
  const int words = P.resident ? 8 * (3 * P.rsv + P.rsh) : 8 * 3 * P.rsc;
  for (int i = threadIdx.x; i < words; i += kThreads) Abuf[i] = 0u;
  tile_barrier(P.csize);
  for (int64_t s = 0; s < P.k; ++s) {
    const uint64_t base = gibbs_step_base(offset, s, P.B, P.V, P.H);
    half_step<T, kVec, true>(P, s, Abuf, Cs, row0, rank, base);
    tile_barrier(P.csize);  // h complete before the visible half-step reads it
    half_step<T, kVec, false>(P, s, Abuf, Cs, row0, rank, base);
    tile_barrier(P.csize);  // v complete before the next hidden half-step reads it (and, in a
                            // cluster, no CTA exits while its partner still writes into it)
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
void launch_kernel(GibbsArgs P, bool vec, bool try_cluster, size_t smem, unsigned tiles, cudaStream_t s) {
  auto kernel = vec ? gibbs_kernel<T, true> : gibbs_kernel<T, false>;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
             "gibbs (shared memory size)");
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 2;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  P.csize = 1;
  if (try_cluster) {
    // only a binary compiled for sm_90 has the cluster code, and the cluster must fit
    cudaFuncAttributes fa;
    cuda_check(cudaFuncGetAttributes(&fa, kernel), "gibbs (function attributes)");
    if (fa.binaryVersion >= 90) {
      cfg.gridDim = dim3(2 * tiles);
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      int clusters = 0;
      const cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg);
      if (e == cudaSuccess && clusters >= 1) {
        P.csize = 2;
      } else {
        (void)cudaGetLastError();  // not an error of ours: run without clusters
      }
    }
  }
  cfg.gridDim = dim3(P.csize * tiles);
  cfg.attrs = P.csize > 1 ? attr : nullptr;
  cfg.numAttrs = P.csize > 1 ? 1 : 0;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, P), "gibbs");
  cuda_check_launch("gibbs");
}

}  // namespace

template <typename T>
void launch_gibbs_mma(const GibbsIO& io, bool gaussian, cudaStream_t s) {
  GibbsArgs P{};
  static_cast<GibbsIO&>(P) = io;
  const int64_t blocks = ceil_div(P.B, kBM);
  if (blocks > 2147483647LL) throw std::runtime_error("genfast gibbs_cuda: batch too large");
  if (P.V > 2147483000LL || P.H > 2147483000LL) throw std::runtime_error("genfast gibbs_cuda: V or H too large");
  int dev = 0, major = 0, smem_max = 0, sms = 0;
  cuda_check(cudaGetDevice(&dev), "gibbs (device)");
  cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "gibbs (device)");
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "gibbs (device)");
  if (major < 8) throw std::runtime_error("genfast gibbs_cuda: needs a GPU of compute capability 8.0 or newer");
  cuda_check(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "gibbs (device)");
  // row-pair strides: at least the padded K, 16 mod 32 words (conflict-free fragment loads)
  const int64_t rsv = round_up(P.V, 32) + 16, rsh = round_up(P.H, 32) + 16;
  const int64_t resident_bytes = kCsBytes + 4 * 8 * (3 * rsv + rsh);
  size_t smem;
  if (resident_bytes <= smem_max) {
    P.resident = 1;
    P.rsv = static_cast<int>(rsv);
    P.rsh = static_cast<int>(rsh);
    P.rsc = 0;
    P.kc = 0;
    smem = static_cast<size_t>(resident_bytes);
  } else {
    // chunked: the largest multiple of 64 whose staging buffer (3 terms, stride kc + 16) fits
    int64_t kc = ((smem_max - kCsBytes) / (4 * 8 * 3) - 16) / 64 * 64;
    kc = std::min(kc, round_up(std::max(P.V, P.H), 64));
    if (kc < 64) throw std::runtime_error("genfast gibbs_cuda: not enough shared memory on this GPU");
    P.resident = 0;
    P.rsv = P.rsh = 0;
    P.rsc = static_cast<int>(kc + 16);
    P.kc = kc;
    smem = static_cast<size_t>(kCsBytes + 4 * 8 * 3 * P.rsc);
  }
  // vector loads of 4 elements along V: rows must start on a vector boundary
  const bool vec = P.V % 4 == 0 && reinterpret_cast<uintptr_t>(P.weight) % (4 * sizeof(T)) == 0;
  // two CTAs per chain tile when one CTA per tile would leave half the SMs idle (B = 1000:
  // 63 tiles on 132 SMs): the products and the epilogue of a tile are split between two SMs;
  // the total W traffic from L2 stays the same
  const bool try_cluster = major >= 9 && P.resident && 2 * blocks <= sms;
  P.gaussian = gaussian ? 1 : 0;
  launch_kernel<T>(P, vec, try_cluster, smem, static_cast<unsigned>(blocks), s);
}
template void launch_gibbs_mma<float>(const GibbsIO&, bool, cudaStream_t);
template void launch_gibbs_mma<half_t>(const GibbsIO&, bool, cudaStream_t);
template void launch_gibbs_mma<bf16_t>(const GibbsIO&, bool, cudaStream_t);

}  // namespace genfast
